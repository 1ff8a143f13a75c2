//! Shape operations: reshape, transpose/permute and slicing (views, no copy
//! where the layout allows), concat, stack and broadcast_to.

use ndarray::{ArrayViewD, Axis, Dimension, IxDyn, Slice};

use crate::element::Float;
use crate::error::{Result, TensorError};
use crate::shape::{broadcast_dims, checked_len, normalize_axis, normalize_axis_for_rank};
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// The same elements (in row-major order) with a new shape. Shares the
    /// buffer when the tensor is contiguous; copies otherwise.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
    /// assert_eq!(t.reshape(&[3, 2])?.get(&[2, 0])?, 4.0);
    /// let err = t.reshape(&[4, 2]).unwrap_err();
    /// assert_eq!(err.to_string(), "reshape: 6 elements cannot have shape [4, 2] (8 elements)");
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let expected = checked_len("reshape", shape, size_of::<T>())?;
        if expected != self.len() {
            return Err(TensorError::ElementCount {
                op: "reshape",
                len: self.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        let source = self.to_contiguous();
        let array = source
            .to_shared()
            .into_shape_with_order(IxDyn(shape))
            .expect("reshape: element count was checked and the layout is contiguous");
        Ok(Tensor::from_shared(array))
    }

    /// Swaps two axes (a view: no data is copied).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// let tt = t.transpose(0, 1)?;
    /// assert_eq!(tt.shape(), &[3, 2]);
    /// assert_eq!(tt.to_vec(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn transpose(&self, axis0: isize, axis1: isize) -> Result<Tensor<T>> {
        let a = normalize_axis("transpose", axis0, self.shape())?;
        let b = normalize_axis("transpose", axis1, self.shape())?;
        let mut array = self.to_shared();
        array.swap_axes(a, b);
        Ok(Tensor::from_shared(array))
    }

    /// Reorders the axes: axis `i` of the result is axis `axes[i]` of `self`
    /// (a view: no data is copied). `axes` must be a permutation of `0..ndim`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::<f32>::zeros(&[2, 3, 4])?;
    /// assert_eq!(t.permute(&[2, 0, 1])?.shape(), &[4, 2, 3]);
    /// assert!(t.permute(&[0, 0, 1]).is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor<T>> {
        let mut seen = vec![false; self.ndim()];
        let valid = axes.len() == self.ndim()
            && axes
                .iter()
                .all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(TensorError::Invalid {
                op: "permute",
                message: format!(
                    "axes {axes:?} are not a permutation of 0..{} for shape {:?}",
                    self.ndim(),
                    self.shape()
                ),
            });
        }
        Ok(Tensor::from_shared(
            self.to_shared().permuted_axes(IxDyn(axes)),
        ))
    }

    /// The elements `start..end` along one axis (a view: no data is copied).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[3, 2])?;
    /// assert_eq!(t.slice_axis(0, 1, 3)?.to_vec(), vec![2.0, 3.0, 4.0, 5.0]);
    /// let err = t.slice_axis(0, 2, 5).unwrap_err();
    /// assert_eq!(err.to_string(), "slice_axis: range 2..5 is out of bounds for axis 0 of shape [3, 2]");
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn slice_axis(&self, axis: isize, start: usize, end: usize) -> Result<Tensor<T>> {
        let ax = normalize_axis("slice_axis", axis, self.shape())?;
        if start > end || end > self.shape()[ax] {
            return Err(TensorError::Invalid {
                op: "slice_axis",
                message: format!(
                    "range {start}..{end} is out of bounds for axis {axis} of shape {:?}",
                    self.shape()
                ),
            });
        }
        let mut array = self.to_shared();
        array.slice_axis_inplace(Axis(ax), Slice::from(start..end));
        Ok(Tensor::from_shared(array))
    }

    /// Joins tensors along an existing axis; all other axes must agree.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::<f32>::zeros(&[2, 3])?;
    /// let b = Tensor::<f32>::ones(&[1, 3])?;
    /// assert_eq!(Tensor::concat(&[a.clone(), b.clone()], 0)?.shape(), &[3, 3]);
    /// let err = Tensor::concat(&[a, b], 1).unwrap_err();
    /// assert_eq!(err.to_string(), "concat: along axis 1 every other axis must agree, got shapes [[2, 3], [1, 3]]");
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn concat(tensors: &[Tensor<T>], axis: isize) -> Result<Tensor<T>> {
        let first = tensors.first().ok_or_else(|| TensorError::Invalid {
            op: "concat",
            message: "needs at least one tensor".to_string(),
        })?;
        let ax = normalize_axis("concat", axis, first.shape())?;
        let agree = tensors.iter().all(|t| {
            t.ndim() == first.ndim()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == ax || a == b)
        });
        let total = tensors.iter().try_fold(0usize, |acc, t| {
            acc.checked_add(*t.shape().get(ax).unwrap_or(&0))
        });
        if !agree {
            return Err(TensorError::Invalid {
                op: "concat",
                message: format!(
                    "along axis {axis} every other axis must agree, got shapes {:?}",
                    shapes(tensors)
                ),
            });
        }
        let mut out_shape = first.shape().to_vec();
        out_shape[ax] = total.unwrap_or(usize::MAX);
        if total.is_none() {
            return Err(TensorError::Overflow {
                op: "concat",
                shape: out_shape,
            });
        }
        checked_len("concat", &out_shape, size_of::<T>())?;
        let views: Vec<ArrayViewD<'_, T>> = tensors.iter().map(|t| t.view()).collect();
        let array = ndarray::concatenate(Axis(ax), &views).expect("concat: shapes were checked");
        Ok(Tensor::from_array(array))
    }

    /// Joins equally shaped tensors along a new axis at position `axis`
    /// (`0..=ndim`; negative counts from the end of the result).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::<f32>::zeros(&[2, 3])?;
    /// assert_eq!(Tensor::stack(&[a.clone(), a.clone()], 0)?.shape(), &[2, 2, 3]);
    /// assert_eq!(Tensor::stack(&[a.clone(), a], -1)?.shape(), &[2, 3, 2]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn stack(tensors: &[Tensor<T>], axis: isize) -> Result<Tensor<T>> {
        let first = tensors.first().ok_or_else(|| TensorError::Invalid {
            op: "stack",
            message: "needs at least one tensor".to_string(),
        })?;
        let ax = normalize_axis_for_rank("stack", axis, first.shape(), first.ndim() + 1)?;
        if tensors.iter().any(|t| t.shape() != first.shape()) {
            return Err(TensorError::Invalid {
                op: "stack",
                message: format!(
                    "every tensor must have the same shape, got {:?}",
                    shapes(tensors)
                ),
            });
        }
        let mut out_shape = first.shape().to_vec();
        out_shape.insert(ax, tensors.len());
        checked_len("stack", &out_shape, size_of::<T>())?;
        let views: Vec<ArrayViewD<'_, T>> = tensors.iter().map(|t| t.view()).collect();
        let array = ndarray::stack(Axis(ax), &views).expect("stack: shapes were checked");
        Ok(Tensor::from_array(array))
    }

    /// Materialises the tensor broadcast to `shape` (NumPy rules; `shape`
    /// must be the broadcast of itself and the tensor's shape).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 2.0], &[2, 1])?;
    /// assert_eq!(t.broadcast_to(&[2, 3])?.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    /// assert!(t.broadcast_to(&[3, 3]).is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let err = || TensorError::Broadcast {
            op: "broadcast_to",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
        };
        if broadcast_dims("broadcast_to", self.shape(), shape)
            .map_err(|_| err())?
            .slice()
            != shape
        {
            return Err(err());
        }
        checked_len("broadcast_to", shape, size_of::<T>())?;
        let source = self.view();
        let view = source.broadcast(IxDyn(shape)).ok_or_else(err)?;
        Ok(Tensor::from_array(view.to_owned()))
    }
}

fn shapes<T: Float>(tensors: &[Tensor<T>]) -> Vec<Vec<usize>> {
    tensors.iter().map(|t| t.shape().to_vec()).collect()
}
