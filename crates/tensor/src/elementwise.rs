//! Elementwise operations: binary ops with NumPy broadcasting, the reduction
//! that undoes broadcasting (`sum_to_shape`), and unary maps.

use ndarray::{ArrayD, Axis, Dimension, Zip};

use crate::element::Float;
use crate::error::{Result, TensorError};
use crate::shape::{self, broadcast_dims};
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// Combines two tensors elementwise after broadcasting them to a common
    /// shape; `op` names the operation in errors.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 2.0], &[2, 1])?;
    /// let b = Tensor::from_vec(vec![10.0_f32, 20.0, 30.0], &[3])?;
    /// let c = a.zip_map(&b, "hypot", |x, y| (x * x + y * y).sqrt())?;
    /// assert_eq!(c.shape(), &[2, 3]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn zip_map(
        &self,
        other: &Tensor<T>,
        op: &'static str,
        f: impl Fn(T, T) -> T,
    ) -> Result<Tensor<T>> {
        if shape::same(self.shape(), other.shape()) {
            if let (Some(a), Some(b)) = (self.as_slice(), other.as_slice()) {
                if self.ndim() > 0 {
                    // Contiguous fast path: a plain loop the compiler
                    // vectorises, into a pooled buffer.
                    return Ok(Tensor::from_fill(self.shape(), |out| {
                        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                            *o = f(x, y);
                        }
                    }));
                }
                return Ok(Tensor::scalar(f(a[0], b[0])));
            }
            let out = Zip::from(&self.view())
                .and(&other.view())
                .map_collect(|&a, &b| f(a, b));
            return Ok(Tensor::from_array(out));
        }
        let dims = broadcast_dims(op, self.shape(), other.shape())?;
        let shape = dims.slice();
        if let (Some(a), Some(b)) = (self.as_slice(), other.as_slice()) {
            // Row-major operands where one repeats along leading axes (a bias
            // row added to a batch): a plain loop over rows.
            if self.shape() == shape && repeats_as_rows(other.shape(), shape) {
                return Ok(Tensor::from_fill(shape, |out| per_row(a, b, out, &f)));
            }
            if other.shape() == shape && repeats_as_rows(self.shape(), shape) {
                return Ok(Tensor::from_fill(shape, |out| {
                    per_row(b, a, out, |y, x| f(x, y))
                }));
            }
        }
        let (a, b) = (self.view(), other.view());
        let a = a
            .broadcast(dims.clone())
            .expect("shape was checked by broadcast_dims");
        let b = b
            .broadcast(dims.clone())
            .expect("shape was checked by broadcast_dims");
        let out = Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y));
        Ok(Tensor::from_array(out))
    }

    /// Elementwise `self + other` with broadcasting.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 2.0], &[2])?;
    /// assert_eq!(a.add(&Tensor::scalar(1.0))?.to_vec(), vec![2.0, 3.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn add(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_map(other, "add", |a, b| a + b)
    }

    /// Elementwise `self - other` with broadcasting.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 2.0], &[2])?;
    /// assert_eq!(a.sub(&a)?.to_vec(), vec![0.0, 0.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn sub(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_map(other, "sub", |a, b| a - b)
    }

    /// Elementwise `self * other` with broadcasting.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 2.0], &[2])?;
    /// assert_eq!(a.mul(&a)?.to_vec(), vec![1.0, 4.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn mul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_map(other, "mul", |a, b| a * b)
    }

    /// Elementwise `self / other` with broadcasting (IEEE semantics: `x / 0`
    /// is infinite or NaN).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 2.0], &[2])?;
    /// assert_eq!(a.div(&Tensor::scalar(2.0))?.to_vec(), vec![0.5, 1.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn div(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_map(other, "div", |a, b| a / b)
    }

    /// Elementwise maximum with broadcasting; NaN in either operand gives NaN.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 5.0], &[2])?;
    /// assert_eq!(a.maximum(&Tensor::scalar(3.0))?.to_vec(), vec![3.0, 5.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn maximum(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_map(other, "maximum", |a, b| {
            if a.is_nan() || b.is_nan() {
                a + b
            } else if a >= b {
                a
            } else {
                b
            }
        })
    }

    /// Elementwise minimum with broadcasting; NaN in either operand gives NaN.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, 5.0], &[2])?;
    /// assert_eq!(a.minimum(&Tensor::scalar(3.0))?.to_vec(), vec![1.0, 3.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn minimum(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_map(other, "minimum", |a, b| {
            if a.is_nan() || b.is_nan() {
                a + b
            } else if a <= b {
                a
            } else {
                b
            }
        })
    }

    /// Sums a (broadcast) tensor down to `shape`, the shape it was broadcast
    /// from: leading axes are summed away and axes where `shape` has length 1
    /// are summed with keep-dims. This is the backward of broadcasting.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let g = Tensor::<f32>::ones(&[4, 2, 3])?;
    /// let r = g.sum_to_shape(&[2, 1])?;
    /// assert_eq!(r.shape(), &[2, 1]);
    /// assert_eq!(r.to_vec(), vec![12.0, 12.0]);
    /// assert!(g.sum_to_shape(&[4]).is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        if shape::same(self.shape(), shape) {
            return Ok(self.clone());
        }
        let err = || TensorError::Broadcast {
            op: "sum_to_shape",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
        };
        if broadcast_dims("sum_to_shape", self.shape(), shape)
            .map_err(|_| err())?
            .slice()
            != self.shape()
        {
            return Err(err());
        }
        let lead = self.ndim() - shape.len();
        if let Some(sum) = self.sum_leading_rows(lead, shape) {
            return Ok(sum);
        }
        let mut out: ArrayD<T> = self.view().to_owned();
        for _ in 0..lead {
            out = out.fold_axis(Axis(0), T::ZERO, |&acc, &v| acc + v);
        }
        for (axis, &len) in shape.iter().enumerate() {
            if len == 1 && out.shape()[axis] != 1 {
                out = out
                    .fold_axis(Axis(axis), T::ZERO, |&acc, &v| acc + v)
                    .insert_axis(Axis(axis));
            }
        }
        Ok(Tensor::from_array(out))
    }

    /// The fast path of [`Tensor::sum_to_shape`] for a row-major tensor
    /// reduced over its first axis only (a bias gradient: `[batch, n] ->
    /// [n]` or `[1, n]`): rows are added in order into one accumulator, the
    /// same additions in the same order as the general path, so the same
    /// bits.
    fn sum_leading_rows(&self, lead: usize, shape: &[usize]) -> Option<Tensor<T>> {
        let values = self.as_slice()?;
        let own = self.shape();
        // Target axes, left-padded with 1s to this tensor's rank.
        let target = |axis: usize| if axis < lead { 1 } else { shape[axis - lead] };
        // Exactly the first axis is summed: with more, the general path sums
        // one axis at a time, an order this loop does not reproduce.
        if own.is_empty() || target(0) != 1 || (1..own.len()).any(|a| target(a) != own[a]) {
            return None;
        }
        let inner: usize = own[1..].iter().product();
        if shape.is_empty() || inner == 0 {
            let mut sum = vec![T::ZERO; inner];
            for row in values.chunks_exact(inner.max(1)) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
            return Some(Tensor::from_contiguous(sum, shape));
        }
        Some(Tensor::from_fill(shape, |sum| {
            sum.fill(T::ZERO);
            for row in values.chunks_exact(inner) {
                sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
            }
        }))
    }

    /// Applies `f` to every element.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, -2.0], &[2])?;
    /// assert_eq!(a.map(|v| v * 3.0).to_vec(), vec![3.0, -6.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn map(&self, f: impl Fn(T) -> T) -> Tensor<T> {
        if let Some(a) = self.as_slice() {
            if self.ndim() == 0 {
                return Tensor::scalar(f(a[0]));
            }
            return Tensor::from_fill(self.shape(), |out| {
                for (o, &v) in out.iter_mut().zip(a) {
                    *o = f(v);
                }
            });
        }
        Tensor::from_array(self.view().map(|&v| f(v)))
    }

    /// `self + value` for every element.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![1.0_f32], &[1])?.add_scalar(2.0).to_vec(), vec![3.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn add_scalar(&self, value: T) -> Tensor<T> {
        self.map(|v| v + value)
    }

    /// `self * value` for every element.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f32, -2.0], &[2])?;
    /// assert_eq!(a.mul_scalar(0.5).add_scalar(1.0).to_vec(), vec![1.5, 0.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn mul_scalar(&self, value: T) -> Tensor<T> {
        self.map(|v| v * value)
    }

    /// `-self`.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![1.0_f32, -2.0], &[2])?;
    /// assert_eq!(t.neg().to_vec(), vec![-1.0, 2.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn neg(&self) -> Tensor<T> {
        self.map(|v| -v)
    }

    /// `e^self`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![0.0_f64, 1.0], &[2])?;
    /// assert_eq!(a.exp().to_vec(), vec![1.0, std::f64::consts::E]);
    /// assert_eq!(a.exp().ln().to_vec(), vec![0.0, 1.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn exp(&self) -> Tensor<T> {
        self.map(T::exp)
    }

    /// Natural logarithm (IEEE: `ln 0 = -inf`, negative gives NaN).
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![1.0_f64, 0.0], &[2])?;
    /// assert_eq!(t.ln().to_vec(), vec![0.0, f64::NEG_INFINITY]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn ln(&self) -> Tensor<T> {
        self.map(T::ln)
    }

    /// Square root (IEEE: negative gives NaN).
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![4.0_f32, 9.0], &[2])?;
    /// assert_eq!(t.sqrt().to_vec(), vec![2.0, 3.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn sqrt(&self) -> Tensor<T> {
        self.map(T::sqrt)
    }

    /// `self^p` for every element.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![2.0_f32, 3.0], &[2])?;
    /// assert_eq!(a.powf(2.0).to_vec(), vec![4.0, 9.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn powf(&self, p: T) -> Tensor<T> {
        self.map(|v| v.powf(p))
    }

    /// Absolute value.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![-4.0_f32, 9.0], &[2])?;
    /// assert_eq!(t.abs().to_vec(), vec![4.0, 9.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn abs(&self) -> Tensor<T> {
        self.map(T::abs)
    }

    /// Hyperbolic tangent.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![0.0_f32, 100.0], &[2])?;
    /// assert_eq!(t.tanh().to_vec(), vec![0.0, 1.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn tanh(&self) -> Tensor<T> {
        self.map(T::tanh)
    }

    /// The logistic sigmoid `1 / (1 + e^-x)`, computed without overflow for
    /// large `|x|`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![-1000.0_f32, 0.0, 1000.0], &[3])?;
    /// assert_eq!(a.sigmoid().to_vec(), vec![0.0, 0.5, 1.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn sigmoid(&self) -> Tensor<T> {
        self.map(sigmoid)
    }

    /// `max(x, 0)`; NaN stays NaN.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![-1.0_f32, 2.0], &[2])?;
    /// assert_eq!(a.relu().to_vec(), vec![0.0, 2.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn relu(&self) -> Tensor<T> {
        self.map(|v| {
            if v > T::ZERO || v.is_nan() {
                v
            } else {
                T::ZERO
            }
        })
    }

    /// Clamps every element to `[min, max]`; NaN stays NaN. An error if
    /// `min > max` or either bound is NaN.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![-2.0_f32, 0.5, 3.0], &[3])?;
    /// assert_eq!(a.clamp(-1.0, 1.0)?.to_vec(), vec![-1.0, 0.5, 1.0]);
    /// assert!(a.clamp(1.0, -1.0).is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn clamp(&self, min: T, max: T) -> Result<Tensor<T>> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(TensorError::Invalid {
                op: "clamp",
                message: format!("need min <= max, got min = {min}, max = {max}"),
            });
        }
        Ok(self.map(|v| {
            if v < min {
                min
            } else if v > max {
                max
            } else {
                v
            }
        }))
    }
}

/// The logistic sigmoid of one value, stable for any input.
///
/// ```
/// assert_eq!(polyhead_tensor::sigmoid(0.0_f64), 0.5);
/// assert_eq!(polyhead_tensor::sigmoid(-800.0_f64), 0.0);
/// ```
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// Whether `small`, broadcast to `out`, is one row-major block repeated:
/// its shape (left-padded with 1s) is all 1s up to some axis and equal to
/// `out` from there on.
fn repeats_as_rows(small: &[usize], out: &[usize]) -> bool {
    let pad = out.len() - small.len();
    let padded = |axis: usize| if axis < pad { 1 } else { small[axis - pad] };
    (0..=out.len()).any(|k| {
        (0..k).all(|axis| padded(axis) == 1) && (k..out.len()).all(|axis| padded(axis) == out[axis])
    })
}

/// `f(x, y)` for each element `x` of `full` and the element `y` of `row` at
/// the same position within a row (`full` is a whole number of rows),
/// written them into `out` (as long as `full`).
fn per_row<T: Float>(full: &[T], row: &[T], out: &mut [T], f: impl Fn(T, T) -> T) {
    if !row.is_empty() {
        for (chunk, out) in full
            .chunks_exact(row.len())
            .zip(out.chunks_exact_mut(row.len()))
        {
            for ((o, &x), &y) in out.iter_mut().zip(chunk).zip(row) {
                *o = f(x, y);
            }
        }
    }
}
