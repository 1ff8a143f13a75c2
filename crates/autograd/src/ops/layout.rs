//! Shape ops: reshape, transpose, slice, concat and broadcast_to. Their
//! backward moves the gradient back to where each element came from.

use ndarray::{ArrayD, Axis, Slice};
use polyhead_tensor::shape::normalize_axis;
use polyhead_tensor::{Float, Tensor};

use crate::error::{AutogradError, Result};
use crate::op::{BackwardContext, Op};
use crate::tape::Var;

type Grads<T> = Result<Vec<Option<Tensor<T>>>>;

struct Reshape {
    shape: Vec<usize>,
}
impl<T: Float> Op<T> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].reshape(&self.shape)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let shape = ctx.inputs[0].shape();
        Ok(vec![
            ctx.grad_for(0, || Ok(ctx.grad_output.reshape(shape)?))?,
        ])
    }
}

struct Transpose {
    axes: (isize, isize),
}
impl<T: Float> Op<T> for Transpose {
    fn name(&self) -> &'static str {
        "transpose"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].transpose(self.axes.0, self.axes.1)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let (a, b) = self.axes;
        Ok(vec![
            ctx.grad_for(0, || Ok(ctx.grad_output.transpose(a, b)?))?,
        ])
    }
}

struct SliceAxis {
    axis: isize,
    start: usize,
    end: usize,
}
impl<T: Float> Op<T> for SliceAxis {
    fn name(&self) -> &'static str {
        "slice_axis"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].slice_axis(self.axis, self.start, self.end)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let x = &ctx.inputs[0];
        let dx = ctx.grad_for(0, || {
            let ax = normalize_axis("slice_axis", self.axis, x.shape())?;
            let mut dx = ArrayD::from_elem(x.shape(), T::ZERO);
            dx.slice_axis_mut(Axis(ax), Slice::from(self.start..self.end))
                .assign(&ctx.grad_output.view());
            Ok(Tensor::from_array(dx))
        })?;
        Ok(vec![dx])
    }
}

struct Concat {
    axis: isize,
}
impl<T: Float> Op<T> for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let owned: Vec<Tensor<T>> = x.iter().map(|t| (*t).clone()).collect();
        Ok(Tensor::concat(&owned, self.axis)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let mut start = 0;
        let ax = normalize_axis("concat", self.axis, ctx.grad_output.shape())?;
        let mut grads = Vec::with_capacity(ctx.inputs.len());
        for (i, x) in ctx.inputs.iter().enumerate() {
            let len = x.shape()[ax];
            grads.push(ctx.grad_for(i, || {
                Ok(ctx.grad_output.slice_axis(self.axis, start, start + len)?)
            })?);
            start += len;
        }
        Ok(grads)
    }
}

struct BroadcastTo {
    shape: Vec<usize>,
}
impl<T: Float> Op<T> for BroadcastTo {
    fn name(&self) -> &'static str {
        "broadcast_to"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].broadcast_to(&self.shape)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let shape = ctx.inputs[0].shape();
        Ok(vec![ctx.grad_for(0, || {
            Ok(ctx.grad_output.sum_to_shape(shape)?)
        })?])
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// The same elements with a new shape (row-major order).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::zeros(&[2, 3])?);
    /// assert_eq!(x.reshape(&[3, 2])?.shape(), vec![3, 2]);
    /// assert!(x.reshape(&[4]).is_err());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn reshape(self, shape: &[usize]) -> Result<Var<'t, T>> {
        self.apply(Reshape {
            shape: shape.to_vec(),
        })
    }

    /// Swaps two axes.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?);
    /// let xt = x.transpose(0, 1)?;
    /// assert_eq!(xt.shape(), vec![3, 2]);
    /// assert_eq!(tape.backward(xt.sum_all())?.wrt(x)?.shape(), &[2, 3]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn transpose(self, axis0: isize, axis1: isize) -> Result<Var<'t, T>> {
        self.apply(Transpose {
            axes: (axis0, axis1),
        })
    }

    /// The elements `start..end` along `axis`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?);
    /// let tail = x.slice_axis(0, 1, 3)?;
    /// assert_eq!(tail.value().to_vec(), vec![2.0, 3.0]);
    /// assert_eq!(tape.backward(tail.sum_all())?.wrt(x)?.to_vec(), vec![0.0, 1.0, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn slice_axis(self, axis: isize, start: usize, end: usize) -> Result<Var<'t, T>> {
        self.apply(SliceAxis { axis, start, end })
    }

    /// Materialises the value broadcast to `shape`; backward sums back.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let b = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2])?);
    /// let tiled = b.broadcast_to(&[3, 2])?;
    /// assert_eq!(tape.backward(tiled.sum_all())?.wrt(b)?.to_vec(), vec![3.0, 3.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn broadcast_to(self, shape: &[usize]) -> Result<Var<'t, T>> {
        self.apply(BroadcastTo {
            shape: shape.to_vec(),
        })
    }

    /// Joins values of one tape along an existing axis.
    ///
    /// ```
    /// use polyhead_autograd::{Tape, Var};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::ones(&[1, 2])?);
    /// let b = tape.leaf(Tensor::zeros(&[2, 2])?);
    /// assert_eq!(Var::concat(&[a, b], 0)?.shape(), vec![3, 2]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn concat(vars: &[Var<'t, T>], axis: isize) -> Result<Var<'t, T>> {
        let first = vars.first().ok_or_else(|| AutogradError::Op {
            op: "concat",
            message: "needs at least one value".to_string(),
        })?;
        first.tape.apply(Concat { axis }, vars)
    }
}
