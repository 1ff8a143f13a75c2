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

    /// Replaces every element by its exponential. For `f32` this is a
    /// vectorisable polynomial (range reduction by ln 2, a degree-7
    /// polynomial in fused multiply-adds, exponent bits) within 1 ulp of the
    /// correctly rounded result on `[-87.3, 88]` (0.94 at worst against
    /// `f64::exp`, by an opt-in test of every input). Below -104 (`-inf`
    /// included: masked logits) the result is 0, as `f32::exp` gives, still
    /// vectorised; the rest (NaN, `x > 88`, subnormal results) is
    /// `f32::exp`'s, element by element. For `f64` it is `f64::exp`. Either
    /// way each result depends only on its own input, not on the rest of
    /// the slice.
    ///
    /// ```
    /// use polyhead_tensor::Float;
    /// let mut v = [0.0_f32, 1.0, -1.0, f32::NEG_INFINITY];
    /// f32::exp_slice(&mut v);
    /// assert!((v[1] - std::f32::consts::E).abs() <= 2.0 * f32::EPSILON * std::f32::consts::E);
    /// assert_eq!(v[3], 0.0);
    /// ```
    fn exp_slice(values: &mut [Self]) {
        for v in values {
            *v = v.exp();
        }
    }

    /// Replaces every element by its natural logarithm. For `f32` this is a
    /// vectorisable polynomial (exponent and mantissa from the bits, an
    /// odd series in `(m - 1) / (m + 1)`) within 1 ulp of the correctly
    /// rounded result for every positive normal input (tested against
    /// `f64::ln`); zero, subnormal, negative, infinite and NaN inputs fall
    /// back to `f32::ln`. For `f64` it is `f64::ln`. Each result depends
    /// only on its own input.
    ///
    /// ```
    /// use polyhead_tensor::Float;
    /// let mut v = [1.0_f32, std::f32::consts::E, 0.0];
    /// f32::ln_slice(&mut v);
    /// assert_eq!(v[0], 0.0);
    /// assert!((v[1] - 1.0).abs() <= 2.0 * f32::EPSILON);
    /// assert_eq!(v[2], f32::NEG_INFINITY);
    /// ```
    fn ln_slice(values: &mut [Self]) {
        for v in values {
            *v = v.ln();
        }
    }

    /// Replaces every element `x` by `ln(1 + x)`, accurate near 0. For `f32`
    /// on `[-0.5, 1]` (where softplus and BCE from logits take it:
    /// `ln(1 + e^-|x|)`) this is a vectorisable series in
    /// `s = x / (2 + x)` within 2 ulps of the correctly rounded result
    /// (1.28 at worst against `f64::ln_1p`, by a test of every input of that
    /// range); other inputs (infinite and NaN too) take `f32::ln_1p`,
    /// element by element. For `f64` it is `f64::ln_1p`. Each result depends
    /// only on its own input.
    ///
    /// ```
    /// use polyhead_tensor::Float;
    /// let mut v = [0.0_f32, 1e-10, std::f32::consts::E - 1.0, -1.0];
    /// f32::ln_1p_slice(&mut v);
    /// assert_eq!(v[0], 0.0);
    /// assert_eq!(v[1], 1e-10);
    /// assert!((v[2] - 1.0).abs() <= 2.0 * f32::EPSILON);
    /// assert_eq!(v[3], f32::NEG_INFINITY);
    /// ```
    fn ln_1p_slice(values: &mut [Self]) {
        for v in values {
            *v = v.ln_1p();
        }
    }

    /// The sum of each row of a row-major 4x4 block, added from left to
    /// right (`((r[0] + r[1]) + r[2]) + r[3]`, the order of a plain loop),
    /// times `scale`. Loss kernels use it for rows of four (bounding
    /// boxes); for `f32` on x86-64 it sums the four rows at once in SSE
    /// registers, with the same bits as the plain loop.
    ///
    /// ```
    /// use polyhead_tensor::Float;
    /// let block: [f32; 16] = std::array::from_fn(|i| i as f32);
    /// assert_eq!(f32::row_sums_4x4(&block, 0.5), [3.0, 11.0, 19.0, 27.0]);
    /// ```
    #[inline(always)]
    fn row_sums_4x4(block: &[Self; 16], scale: Self) -> [Self; 4] {
        std::array::from_fn(|r| {
            let row = &block[4 * r..4 * r + 4];
            (((row[0] + row[1]) + row[2]) + row[3]) * scale
        })
    }

    /// Writes the sum of each row of the row-major `block` (rows of `cols`
    /// elements, one result per element of `out`) into `out`, each added
    /// from left to right starting at 0 (the order of a plain loop). For
    /// `f32` on x86-64, four rows at a time in SSE registers (the rows
    /// transposed four columns at a time), with the same bits. Panics if
    /// `block` is not `out.len()` rows of `cols`.
    ///
    /// ```
    /// use polyhead_tensor::Float;
    /// let block: Vec<f32> = (0..30).map(|i| i as f32).collect();
    /// let mut sums = [0.0_f32; 3];
    /// f32::row_sums(&block, 10, &mut sums);
    /// assert_eq!(sums, [45.0, 145.0, 245.0]);
    /// ```
    #[inline(always)]
    fn row_sums(block: &[Self], cols: usize, out: &mut [Self]) {
        assert_eq!(
            block.len(),
            cols * out.len(),
            "row_sums: block is not out.len() rows of cols"
        );
        for (i, s) in out.iter_mut().enumerate() {
            *s = block[i * cols..(i + 1) * cols]
                .iter()
                .fold(Self::ZERO, |acc, &v| acc + v);
        }
    }

    /// Writes the largest element of each row of `block` into `out`, as
    /// [`Float::row_sums`] lays them out: a left-to-right fold from `-inf`
    /// that takes an element only when it is greater (so NaN elements are
    /// skipped, and of equal elements the first is kept). For `f32` on
    /// x86-64, four rows at a time in SSE registers, with the same bits.
    ///
    /// ```
    /// use polyhead_tensor::Float;
    /// let block = [1.0_f32, 5.0, f32::NAN, 2.0, -3.0, -1.0];
    /// let mut maxes = [0.0_f32; 2];
    /// f32::row_maxes(&block, 3, &mut maxes);
    /// assert_eq!(maxes, [5.0, 2.0]);
    /// ```
    #[inline(always)]
    fn row_maxes(block: &[Self], cols: usize, out: &mut [Self]) {
        assert_eq!(
            block.len(),
            cols * out.len(),
            "row_maxes: block is not out.len() rows of cols"
        );
        for (i, m) in out.iter_mut().enumerate() {
            *m = block[i * cols..(i + 1) * cols]
                .iter()
                .fold(Self::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        }
    }
}

/// `e^x` for `x` in `[-87.3, 88.0]` (so `2^n` stays a normal number): `x = n ln 2 + r` with `|r| <= ln 2 / 2`,
/// `e^r` by a degree-7 Taylor polynomial (truncation below 6e-9 relative),
/// times `2^n` built from the exponent bits. No branches, so loops over it
/// vectorise.
///
/// Every multiply-add is a fused `mul_add` (one rounding, one IEEE
/// operation): inside [`with_simd`](crate::simd::with_simd) on a CPU with
/// FMA it is one instruction per step (10 fewer instructions per vector
/// than separate multiplies and adds; measured with `cargo xtask bench`
/// against them, alternating: CE 65536x10 on two threads 411-421 ->
/// 334-351 us, CE 1024x10 on one 10.8-11.5 -> 9.5-10.4 us), and the worst
/// error fell from 1.22 to 0.94 ulps. Elsewhere it is the C library's
/// correctly rounded `fmaf`: the same bits, only slower (x86-64 CPUs
/// without FMA predate 2013).
#[inline(always)]
fn exp_f32_core(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a high part exact in f32 and a low correction.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (|x log2 e| < 2^22):
    // `f32::round` is a libm call on baseline x86-64 and would stop the loop
    // from vectorising.
    const ROUNDER: f32 = 12_582_912.0;
    let shifted = x.mul_add(LOG2E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = r.mul_add(1.0 / 5040.0, 1.0 / 720.0);
    let p = p.mul_add(r, 1.0 / 120.0);
    let p = p.mul_add(r, 1.0 / 24.0);
    let p = p.mul_add(r, 1.0 / 6.0);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    // `shifted`'s low mantissa bits hold `n` (offset by ROUNDER's bits): build
    // 2^n = (n + 127) << 23 with integer ops rather than a saturating `as` cast,
    // which does not vectorise.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// `ln x` for a positive normal `x`: `x = 2^e m` with `m` in
/// `[sqrt(1/2), sqrt(2))` read from the bits, `ln m = 2 atanh(s)` with
/// `s = (m - 1) / (m + 1)` (`|s| < 0.172`) by its odd series to `s^13`
/// (truncation below 1e-11 relative), arranged as in fdlibm's `logf`,
/// plus `e ln 2` in two parts. No branches, so loops over it vectorise.
#[inline(always)]
fn ln_f32_core(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    // The mantissa as a number in [1, 2); halve it above sqrt(2).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (exponent + big as i32) as f32;
    // f = m - 1 is exact (Sterbenz). ln(1 + f) = f - f^2/2 + s (f^2/2 + R)
    // with s = f / (2 + f) and R = 2/3 s^2 + 2/5 s^4 + ... (fdlibm's
    // arrangement): the leading term f carries no rounding error.
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let r = z
        * (2.0 / 3.0
            + z * (2.0 / 5.0
                + z * (2.0 / 7.0 + z * (2.0 / 9.0 + z * (2.0 / 11.0 + z * (2.0 / 13.0))))));
    let half_f2 = 0.5 * f * f;
    e * LN2_HI - ((half_f2 - (s * (half_f2 + r) + e * LN2_LO)) - f)
}

/// The `f32` override of [`Float::ln_slice`]: the polynomial for positive
/// normal inputs, `f32::ln` for the rest; per element, as for exp.
fn ln_slice_f32(values: &mut [f32]) {
    #[allow(clippy::manual_range_contains)]
    map_in_range(
        values,
        #[inline(always)]
        |x| (x >= f32::MIN_POSITIVE) & (x <= f32::MAX),
        ln_f32_core,
        f32::ln,
    );
}

/// `ln(1 + x)` for `x` in `[-0.5, 1]`, without forming `1 + x`:
/// `ln(1 + x) = 2 atanh(s)` with `s = x / (2 + x)` (`|s| <= 1/3`), by its
/// odd series to `s^19` (truncation below 3e-10 relative), arranged as in
/// fdlibm's `log1pf`, `x - (x^2/2 - s (x^2/2 + R))`, so that the leading
/// term `x` carries no rounding error. One division, no branches.
#[inline(always)]
fn ln_1p_f32_core(x: f32) -> f32 {
    let s = x / (2.0 + x);
    let z = s * s;
    let r = z
        * (2.0 / 3.0
            + z * (2.0 / 5.0
                + z * (2.0 / 7.0
                    + z * (2.0 / 9.0
                        + z * (2.0 / 11.0
                            + z * (2.0 / 13.0
                                + z * (2.0 / 15.0 + z * (2.0 / 17.0 + z * (2.0 / 19.0)))))))));
    let half_x2 = 0.5 * x * x;
    x - (half_x2 - s * (half_x2 + r))
}

/// The `f32` override of [`Float::ln_1p_slice`]: the series on
/// `[-0.5, 1]`, `f32::ln_1p` for the rest; per element.
fn ln_1p_slice_f32(values: &mut [f32]) {
    #[allow(clippy::manual_range_contains)]
    map_in_range(
        values,
        #[inline(always)]
        |x| (x >= -0.5) & (x <= 1.0),
        ln_1p_f32_core,
        f32::ln_1p,
    );
}

/// Replaces each value `x` by `fast(x)` where `in_range(x)`, else by
/// `slow(x)`, at the CPU's widest vectors
/// ([`with_simd`](crate::simd::with_simd); the closures should be
/// `#[inline(always)]`, so that they are compiled inside it and `fast`'s
/// fused multiply-adds are instructions, not calls). The common case,
/// every value in range, is one scan and one loop. Otherwise each chunk of
/// [`MAP_CHUNK`] values with one out of range gets `fast` on every value
/// (still vectorised) and then `slow` on the few out of range, from a copy
/// of its inputs: a slice with a masked logit or two costs about what one
/// without does. Either way a result depends only on its own input.
/// `in_range` should combine comparisons with `&`, not `&&` (which
/// branches), so the scan vectorises; `fast` must not panic on any input.
#[inline(always)]
fn map_in_range(
    values: &mut [f32],
    in_range: impl Fn(f32) -> bool,
    fast: impl Fn(f32) -> f32,
    slow: impl Fn(f32) -> f32,
) {
    let all_in_range = |values: &[f32]| values.iter().fold(true, |ok, &x| ok & in_range(x));
    crate::simd::with_simd(
        #[inline(always)]
        || {
            if all_in_range(values) {
                values.iter_mut().for_each(|v| *v = fast(*v));
                return;
            }
            for chunk in values.chunks_mut(MAP_CHUNK) {
                if all_in_range(chunk) {
                    chunk.iter_mut().for_each(|v| *v = fast(*v));
                    continue;
                }
                let mut inputs = [0.0; MAP_CHUNK];
                let inputs = &mut inputs[..chunk.len()];
                inputs.copy_from_slice(chunk);
                chunk.iter_mut().for_each(|v| *v = fast(*v));
                for (v, &x) in chunk.iter_mut().zip(inputs.iter()) {
                    if !in_range(x) {
                        *v = slow(x);
                    }
                }
            }
        },
    );
}

/// Values per chunk of [`map_in_range`]'s path for slices with values out
/// of range (measured on CE 1024x10 logits with one class masked at -1e9
/// in every row: 31 us with the whole slice element by element, 10 us, as
/// without the mask, with chunks of 256).
const MAP_CHUNK: usize = 256;

macro_rules! impl_float {
    ($t:ident $(, $exp_slice:path, $ln_slice:path, $ln_1p_slice:path, $row_sums_4x4:path, $row_sums:path, $row_maxes:path)?) => {
        impl Float for $t {
            $(
                fn exp_slice(values: &mut [Self]) {
                    $exp_slice(values)
                }
                fn ln_slice(values: &mut [Self]) {
                    $ln_slice(values)
                }
                fn ln_1p_slice(values: &mut [Self]) {
                    $ln_1p_slice(values)
                }
                #[inline(always)]
                fn row_sums_4x4(block: &[Self; 16], scale: Self) -> [Self; 4] {
                    $row_sums_4x4(block, scale)
                }
                #[inline(always)]
                fn row_sums(block: &[Self], cols: usize, out: &mut [Self]) {
                    $row_sums(block, cols, out)
                }
                #[inline(always)]
                fn row_maxes(block: &[Self], cols: usize, out: &mut [Self]) {
                    $row_maxes(block, cols, out)
                }
            )?
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

impl_float!(
    f32,
    exp_slice_f32,
    ln_slice_f32,
    ln_1p_slice_f32,
    crate::simd::row_sums_4x4_f32,
    crate::simd::row_sums_f32,
    crate::simd::row_maxes_f32
);
impl_float!(f64);

/// The `f32` override of [`Float::exp_slice`]: the polynomial for inputs
/// in its range, exactly 0 below -104 (where `e^x < 2^-150` and `f32::exp`
/// rounds to 0: masked logits at `-inf` or `-1e9` stay on the fast path),
/// and `f32::exp` for the rest (NaN, `x > 88`, and the subnormal results of
/// `[-104, -87.3)`), so those are exact. Each result depends on its own
/// input only, never on its neighbours: callers may split or join slices
/// freely.
fn exp_slice_f32(values: &mut [f32]) {
    // NaN compares false, so it takes f32::exp.
    #[allow(clippy::manual_range_contains)]
    map_in_range(
        values,
        #[inline(always)]
        |x| ((x >= -87.3) & (x <= 88.0)) | (x < -104.0),
        #[inline(always)]
        |x| if x < -104.0 { 0.0 } else { exp_f32_core(x) },
        f32::exp,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exponential's polynomial compiled for baseline x86-64, where each
    /// `mul_add` is a call to the C library's correctly rounded `fmaf`,
    /// gives the bits of `exp_slice`'s vectorised loop (FMA instructions on
    /// a CPU that has them): a CPU without FMA computes the same results.
    /// It compares the two only in an optimised build (`cargo test
    /// --release`); unoptimised, `mul_add` is a library call on both sides.
    #[test]
    fn exp_without_fma_instructions_gives_the_same_bits() {
        let n = 100_000;
        let xs: Vec<f32> = (0..=n)
            .map(|i| -87.3 + (88.0 + 87.3) * i as f32 / n as f32)
            .chain([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 0.5, 88.0, -87.3])
            .collect();
        let mut vectorised = xs.clone();
        f32::exp_slice(&mut vectorised);
        for (&x, &v) in xs.iter().zip(&vectorised) {
            let plain = exp_f32_core(std::hint::black_box(x));
            assert_eq!(plain.to_bits(), v.to_bits(), "x = {x}: {plain} vs {v}");
        }
    }
}
