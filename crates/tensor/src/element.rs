//! The element trait: what polyhead needs of `f32` and `f64`.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::matmul::Gemm;

/// A floating-point element type: implemented for `f32` (training) and `f64`
/// (gradient checks and reference comparisons).
///
/// Every model, loss and gradient in polyhead is generic over `Float`, so the
/// same code runs in f64 for finite-difference checks and in f32 for speed.
///
/// ```
/// use polyhead_tensor::Float;
/// fn softplus<T: Float>(x: T) -> T {
///     // log(1 + e^x), stable for large x
///     x.max(T::ZERO) + (-x.abs()).exp().ln_1p()
/// }
/// assert!((softplus(0.0_f64) - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(softplus(1000.0_f32), 1000.0);
/// ```
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + PartialEq
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + ndarray::ScalarOperand
    + Gemm
    + 'static
{
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// Positive infinity.
    const INFINITY: Self;
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// Machine epsilon (the gap between 1 and the next number).
    const EPSILON: Self;
    /// The type's name as users write it: `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest.
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` exactly.
    fn to_f64(self) -> f64;
    /// Converts a count to this type, rounding to nearest.
    fn from_usize(v: usize) -> Self;
    /// e^self.
    fn exp(self) -> Self;
    /// e^self - 1, accurate near 0.
    fn exp_m1(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// ln(1 + self), accurate near 0.
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// self raised to a floating-point power.
    fn powf(self, p: Self) -> Self;
    /// self raised to an integer power.
    fn powi(self, p: i32) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// 1 for positive (and +0), -1 for negative (and -0), NaN for NaN.
    fn signum(self) -> Self;
    /// The larger of two numbers (ignores NaN, like `f64::max`).
    fn max(self, other: Self) -> Self;
    /// The smaller of two numbers (ignores NaN, like `f64::min`).
    fn min(self, other: Self) -> Self;
    /// `true` unless the value is NaN or infinite.
    fn is_finite(self) -> bool;
    /// `true` if the value is NaN.
    fn is_nan(self) -> bool;
}

macro_rules! impl_float {
    ($t:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = $t::INFINITY;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            const EPSILON: Self = $t::EPSILON;
            const NAME: &'static str = stringify!($t);

            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline]
            fn exp_m1(self) -> Self {
                $t::exp_m1(self)
            }
            #[inline]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                $t::ln_1p(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                $t::powf(self, p)
            }
            #[inline]
            fn powi(self, p: i32) -> Self {
                $t::powi(self, p)
            }
            #[inline]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                $t::tanh(self)
            }
            #[inline]
            fn signum(self) -> Self {
                $t::signum(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline]
            fn min(self, other: Self) -> Self {
                $t::min(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
        }
    };
}

impl_float!(f32);
impl_float!(f64);
