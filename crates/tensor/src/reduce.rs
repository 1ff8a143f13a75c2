//! Reductions (sum, mean, max, argmax) over one axis or all axes, and the
//! numerically stable softmax and log-softmax.

use ndarray::{ArrayD, ArrayView1, ArrayViewMut1, Axis, IxDyn, Zip};

use crate::element::Float;
use crate::error::{Result, TensorError};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// The row-major (flat) index of the first NaN or infinity, if any; see
    /// [`first_non_finite`].
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![0.0_f32, 1.0, f32::NAN, 2.0], &[2, 2])?;
    /// assert_eq!(t.first_non_finite(), Some(2));
    /// assert_eq!(t.transpose(0, 1)?.first_non_finite(), Some(1));
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn first_non_finite(&self) -> Option<usize> {
        match self.as_slice() {
            Some(values) => first_non_finite(values),
            None => first_non_finite(&self.to_vec()),
        }
    }

    fn reduce_axis(
        &self,
        op: &'static str,
        axis: isize,
        keep_dims: bool,
        needs_elements: bool,
        f: impl Fn(ArrayView1<'_, T>) -> T,
    ) -> Result<Tensor<T>> {
        let ax = normalize_axis(op, axis, self.shape())?;
        if needs_elements && self.shape()[ax] == 0 {
            return Err(TensorError::EmptyReduction {
                op,
                axis,
                shape: self.shape().to_vec(),
            });
        }
        let out = self.view().map_axis(Axis(ax), f);
        Ok(Tensor::from_array(keep(out, ax, keep_dims)))
    }

    fn reduce_all(&self, keep_dims: bool, value: T) -> Tensor<T> {
        let shape = if keep_dims {
            vec![1; self.ndim()]
        } else {
            vec![]
        };
        Tensor::from_array(ArrayD::from_elem(IxDyn(&shape), value))
    }

    /// Sum over one axis (negative counts from the end); `keep_dims` leaves
    /// the axis in place with length 1.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.sum_axis(0, false)?.to_vec(), vec![4.0, 6.0]);
    /// assert_eq!(t.sum_axis(-1, true)?.shape(), &[2, 1]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn sum_axis(&self, axis: isize, keep_dims: bool) -> Result<Tensor<T>> {
        self.reduce_axis("sum", axis, keep_dims, false, |lane| {
            lane.iter().copied().sum()
        })
    }

    /// Sum of all elements: shape `[]`, or all ones with `keep_dims`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::<f32>::ones(&[2, 3])?;
    /// assert_eq!(t.sum_all(false).item()?, 6.0);
    /// assert_eq!(t.sum_all(true).shape(), &[1, 1]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn sum_all(&self, keep_dims: bool) -> Tensor<T> {
        self.reduce_all(keep_dims, self.view().iter().copied().sum())
    }

    /// Mean over one axis; an error if that axis is empty.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.mean_axis(1, false)?.to_vec(), vec![1.5, 3.5]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn mean_axis(&self, axis: isize, keep_dims: bool) -> Result<Tensor<T>> {
        self.reduce_axis("mean", axis, keep_dims, true, |lane| {
            lane.iter().copied().sum::<T>() / T::from_usize(lane.len())
        })
    }

    /// Mean of all elements (shape `[]`); an error for an empty tensor.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// assert_eq!(Tensor::<f64>::ones(&[4])?.mean_all()?.item()?, 1.0);
    /// assert!(Tensor::<f64>::ones(&[0])?.mean_all().is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn mean_all(&self) -> Result<Tensor<T>> {
        if self.is_empty() {
            return Err(TensorError::EmptyReduction {
                op: "mean",
                axis: -1,
                shape: self.shape().to_vec(),
            });
        }
        let sum: T = self.view().iter().copied().sum();
        Ok(self.reduce_all(false, sum / T::from_usize(self.len())))
    }

    /// Maximum over one axis (NaN if the lane holds a NaN); an error if the
    /// axis is empty.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 5.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.max_axis(1, false)?.to_vec(), vec![5.0, 4.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn max_axis(&self, axis: isize, keep_dims: bool) -> Result<Tensor<T>> {
        self.reduce_axis("max", axis, keep_dims, true, |lane| lane[argmax_lane(lane)])
    }

    /// Maximum of all elements (shape `[]`); an error for an empty tensor.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![1.0_f32, 5.0, 3.0], &[3])?;
    /// assert_eq!(t.max_all()?.item()?, 5.0);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn max_all(&self) -> Result<Tensor<T>> {
        let flat = self.to_vec();
        if flat.is_empty() {
            return Err(TensorError::EmptyReduction {
                op: "max",
                axis: -1,
                shape: self.shape().to_vec(),
            });
        }
        let idx = argmax_lane(ArrayView1::from(&flat[..]));
        Ok(self.reduce_all(false, flat[idx]))
    }

    /// Index of the maximum along one axis (the first on ties, the first NaN
    /// if there is one); an error if the axis is empty.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 5.0, 4.0, 3.0], &[2, 2])?;
    /// assert_eq!(t.argmax_axis(1, false)?.into_raw_vec_and_offset().0, vec![1, 0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn argmax_axis(&self, axis: isize, keep_dims: bool) -> Result<ArrayD<usize>> {
        let ax = normalize_axis("argmax", axis, self.shape())?;
        if self.shape()[ax] == 0 {
            return Err(TensorError::EmptyReduction {
                op: "argmax",
                axis,
                shape: self.shape().to_vec(),
            });
        }
        let out = self.view().map_axis(Axis(ax), argmax_lane);
        Ok(keep(out, ax, keep_dims))
    }

    /// Softmax along one axis, stable for any finite input (the lane maximum
    /// is subtracted before exponentiating). A lane that is entirely `-inf`
    /// has no defined softmax and gives NaN, as in NumPy and PyTorch. Along
    /// the last axis of a row-major tensor the exponentials use
    /// [`Float::exp_slice`] (for `f32` a vectorised polynomial within 1
    /// ulp), elsewhere the element type's `exp`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1000.0_f32, -1000.0], &[1, 2])?;
    /// assert_eq!(t.softmax(-1)?.to_vec(), vec![1.0, 0.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn softmax(&self, axis: isize) -> Result<Tensor<T>> {
        if let Some(out) = self.shifted_exp_rows("softmax", axis, |out, exps| {
            let inv = T::ONE / exps.iter().fold(T::ZERO, |s, &e| s + e);
            for (o, &e) in out.iter_mut().zip(exps) {
                *o = e * inv;
            }
        })? {
            return Ok(out);
        }
        self.map_lanes("softmax", axis, |input, mut out| {
            let m = input[argmax_lane(input)];
            let mut sum = T::ZERO;
            Zip::from(&mut out).and(input).for_each(|o, &x| {
                *o = (x - m).exp();
                sum += *o;
            });
            let inv = T::ONE / sum;
            out.mapv_inplace(|v| v * inv);
        })
    }

    /// Log-softmax along one axis: `x - max - ln(sum(exp(x - max)))`, exact
    /// for logits far beyond where `ln(softmax(x))` would give `-inf`. The
    /// exponentials are computed as for [`Tensor::softmax`].
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1000.0_f64, -1000.0], &[2])?;
    /// assert_eq!(t.log_softmax(0)?.to_vec(), vec![0.0, -2000.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor<T>> {
        if let Some(out) = self.shifted_exp_rows("log_softmax", axis, |out, exps| {
            let log_sum = exps.iter().fold(T::ZERO, |s, &e| s + e).ln();
            for o in out.iter_mut() {
                *o -= log_sum;
            }
        })? {
            return Ok(out);
        }
        self.map_lanes("log_softmax", axis, |input, mut out| {
            let m = input[argmax_lane(input)];
            let sum: T = input.iter().map(|&x| (x - m).exp()).sum();
            let log_sum = sum.ln();
            Zip::from(&mut out)
                .and(input)
                .for_each(|o, &x| *o = x - m - log_sum);
        })
    }

    /// The softmax family on a row-major tensor along its last axis, by
    /// blocks of rows: each row's `x - max` (the max as [`argmax_lane`]
    /// picks it) into the output, the exponentials of a whole block in one
    /// [`Float::exp_slice`] call (vectorised for `f32`, within 1 ulp;
    /// `f64::exp` for `f64`), then `finish(row, exp_row)` turns each
    /// shifted row into its result. `None` for other layouts and axes,
    /// which take the lane path.
    fn shifted_exp_rows(
        &self,
        op: &'static str,
        axis: isize,
        finish: impl Fn(&mut [T], &[T]),
    ) -> Result<Option<Tensor<T>>> {
        let ax = normalize_axis(op, axis, self.shape())?;
        let cols = self.shape()[ax];
        let (Some(x), true, true) = (self.as_slice(), ax + 1 == self.ndim(), cols > 0) else {
            return Ok(None);
        };
        // Whole rows per block, about 4096 elements.
        let n = (4096 / cols).max(1) * cols;
        let mut out = vec![T::ZERO; x.len()];
        let mut exps = vec![T::ZERO; n.min(x.len())];
        for (xb, ob) in x.chunks(n).zip(out.chunks_mut(n)) {
            for (xr, or) in xb.chunks_exact(cols).zip(ob.chunks_exact_mut(cols)) {
                let m = xr[argmax_lane(ArrayView1::from(xr))];
                for (o, &v) in or.iter_mut().zip(xr) {
                    *o = v - m;
                }
            }
            let eb = &mut exps[..ob.len()];
            eb.copy_from_slice(ob);
            T::exp_slice(eb);
            for (or, er) in ob.chunks_exact_mut(cols).zip(eb.chunks_exact(cols)) {
                finish(or, er);
            }
        }
        Ok(Some(Tensor::from_contiguous(out, self.shape())))
    }

    fn map_lanes(
        &self,
        op: &'static str,
        axis: isize,
        f: impl Fn(ArrayView1<'_, T>, ArrayViewMut1<'_, T>),
    ) -> Result<Tensor<T>> {
        let ax = normalize_axis(op, axis, self.shape())?;
        let mut out = ArrayD::from_elem(self.view().raw_dim(), T::ZERO);
        if self.shape()[ax] > 0 {
            Zip::from(out.lanes_mut(Axis(ax)))
                .and(self.view().lanes(Axis(ax)))
                .for_each(|o, i| f(i, o));
        }
        Ok(Tensor::from_array(out))
    }
}

/// The index of the first NaN or infinity in `values`, if any. The scan
/// multiplies every value by zero into 32 running sums (NaN for a NaN or
/// an infinity, else 0): eight independent vector additions per pass, with
/// AVX2 when the CPU has it (a 51k-parameter model's two optimizer scans:
/// 7.5 -> 5.3 us, then bound by the L2 cache's bandwidth). Only when a sum
/// is NaN is the index looked for.
///
/// ```
/// use polyhead_tensor::first_non_finite;
/// assert_eq!(first_non_finite(&[1.0_f32, 2.0, 3.0]), None);
/// assert_eq!(first_non_finite(&[1.0_f64, f64::NAN, f64::INFINITY]), Some(1));
/// ```
pub fn first_non_finite<T: Float>(values: &[T]) -> Option<usize> {
    if let Some(piece) = crate::parallel::piece_len(values.len(), PARALLEL_SCAN_MIN) {
        // Each thread scans a piece (a gradient whose halves two threads
        // wrote is read where it sits); the index is looked for only if
        // some piece is not all finite.
        let finite = std::sync::atomic::AtomicBool::new(true);
        crate::parallel::run_each(values.chunks(piece), |piece| {
            if !all_finite(piece) {
                finite.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        });
        return if finite.into_inner() {
            None
        } else {
            values.iter().position(|v| !v.is_finite())
        };
    }
    if all_finite(values) {
        None
    } else {
        values.iter().position(|v| !v.is_finite())
    }
}

/// Scans of at least this many values are split over the threads of an
/// awake pool.
const PARALLEL_SCAN_MIN: usize = 1 << 15;

/// `true` if every value is finite: every value times zero is added into 32
/// running sums, which stay 0 unless a value is NaN or infinite.
fn all_finite<T: Float>(values: &[T]) -> bool {
    let (chunks, tail) = values.as_chunks::<32>();
    let sums = crate::simd::with_simd(|| {
        let mut sums = [T::ZERO; 32];
        for chunk in chunks {
            for (sum, &v) in sums.iter_mut().zip(chunk) {
                *sum += v * T::ZERO;
            }
        }
        sums
    });
    sums.iter().chain(tail).all(|v| v.is_finite())
}

fn keep<A>(out: ArrayD<A>, axis: usize, keep_dims: bool) -> ArrayD<A> {
    if keep_dims {
        out.insert_axis(Axis(axis))
    } else {
        out
    }
}

/// Index of the largest element of a non-empty lane: first on ties, first NaN
/// if any.
fn argmax_lane<T: Float>(lane: ArrayView1<'_, T>) -> usize {
    let mut best = 0;
    for (i, &v) in lane.iter().enumerate() {
        if v.is_nan() {
            return i;
        }
        if v > lane[best] {
            best = i;
        }
    }
    best
}
