//! Reductions: sum, mean and max over one axis or over everything. Their
//! backward spreads the output gradient back over the reduced axis.

use ndarray::{Axis, Zip};
use polyhead_tensor::shape::normalize_axis;
use polyhead_tensor::{Float, Tensor};

use crate::error::Result;
use crate::op::{BackwardContext, Op};
use crate::tape::Var;

type Grads<T> = Result<Vec<Option<Tensor<T>>>>;

/// `g` (the gradient of a reduction over `axis`, or over everything when
/// `axis` is `None`) broadcast back to the input's shape.
fn spread<T: Float>(
    g: &Tensor<T>,
    input_shape: &[usize],
    axis: Option<usize>,
) -> Result<Tensor<T>> {
    let kept = match axis {
        Some(ax) => {
            let mut shape = input_shape.to_vec();
            shape[ax] = 1;
            g.reshape(&shape)?
        }
        None => g.reshape(&vec![1; input_shape.len()])?,
    };
    Ok(kept.broadcast_to(input_shape)?)
}

/// Sum (or mean, scaled by 1/n) over one axis or all axes.
struct Sum {
    axis: Option<isize>,
    keep_dims: bool,
    mean: bool,
}
impl<T: Float> Op<T> for Sum {
    fn name(&self) -> &'static str {
        if self.mean { "mean" } else { "sum" }
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(match (self.axis, self.mean) {
            (Some(a), false) => x[0].sum_axis(a, self.keep_dims)?,
            (Some(a), true) => x[0].mean_axis(a, self.keep_dims)?,
            (None, false) => x[0].sum_all(self.keep_dims),
            (None, true) => x[0]
                .mean_all()?
                .reshape(x[0].sum_all(self.keep_dims).shape())?,
        })
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let x = &ctx.inputs[0];
        let dx = ctx.grad_for(0, || {
            let ax = self
                .axis
                .map(|a| normalize_axis("sum", a, x.shape()))
                .transpose()?;
            let g = spread(ctx.grad_output, x.shape(), ax)?;
            if !self.mean {
                return Ok(g);
            }
            let n = match ax {
                Some(ax) => x.shape()[ax],
                None => x.len(),
            };
            Ok(g.mul_scalar(T::ONE / T::from_usize(n)))
        })?;
        Ok(vec![dx])
    }
}

/// Maximum over one axis; the gradient goes to the first maximal element of
/// each lane (the element `argmax` picks).
struct Max {
    axis: isize,
    keep_dims: bool,
}
impl<T: Float> Op<T> for Max {
    fn name(&self) -> &'static str {
        "max"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].max_axis(self.axis, self.keep_dims)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let x = &ctx.inputs[0];
        let dx = ctx.grad_for(0, || {
            let ax = normalize_axis("max", self.axis, x.shape())?;
            let arg = x.argmax_axis(self.axis, true)?;
            let mut kept = x.shape().to_vec();
            kept[ax] = 1;
            let g = ctx.grad_output.reshape(&kept)?;
            let mut dx = ndarray::ArrayD::from_elem(x.shape(), T::ZERO);
            Zip::from(dx.lanes_mut(Axis(ax)))
                .and(&arg.index_axis(Axis(ax), 0))
                .and(&g.view().index_axis(Axis(ax), 0))
                .for_each(|mut lane, &i, &gv| lane[i] = gv);
            Ok(Tensor::from_array(dx))
        })?;
        Ok(vec![dx])
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Sum over one axis (negative counts from the end).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?);
    /// assert_eq!(x.sum_axis(-1, false)?.value().to_vec(), vec![3.0, 7.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn sum_axis(self, axis: isize, keep_dims: bool) -> Result<Var<'t, T>> {
        self.apply(Sum {
            axis: Some(axis),
            keep_dims,
            mean: false,
        })
    }

    /// Sum of all elements, as a 0-dimensional value (a loss, typically).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::ones(&[2, 3])?);
    /// let s = x.sum_all();
    /// assert_eq!(s.value().item()?, 6.0);
    /// assert_eq!(tape.backward(s)?.wrt(x)?.to_vec(), vec![1.0; 6]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn sum_all(self) -> Var<'t, T> {
        self.apply_infallible(Sum {
            axis: None,
            keep_dims: false,
            mean: false,
        })
    }

    /// Mean over one axis; an error if the axis is empty.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 3.0, 5.0, 7.0], &[2, 2])?);
    /// let m = x.mean_axis(0, false)?;
    /// assert_eq!(m.value().to_vec(), vec![3.0, 5.0]);
    /// assert_eq!(tape.backward(m.sum_all())?.wrt(x)?.to_vec(), vec![0.5; 4]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn mean_axis(self, axis: isize, keep_dims: bool) -> Result<Var<'t, T>> {
        self.apply(Sum {
            axis: Some(axis),
            keep_dims,
            mean: true,
        })
    }

    /// Mean of all elements (0-dimensional); an error for an empty value.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::ones(&[4])?);
    /// assert_eq!(tape.backward(x.mean_all()?)?.wrt(x)?.to_vec(), vec![0.25; 4]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn mean_all(self) -> Result<Var<'t, T>> {
        self.apply(Sum {
            axis: None,
            keep_dims: false,
            mean: true,
        })
    }

    /// Maximum over one axis; the gradient flows to the first maximal
    /// element of each lane. An error if the axis is empty.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 9.0, 4.0, 4.0], &[2, 2])?);
    /// let m = x.max_axis(1, false)?;
    /// assert_eq!(m.value().to_vec(), vec![9.0, 4.0]);
    /// assert_eq!(tape.backward(m.sum_all())?.wrt(x)?.to_vec(), vec![0.0, 1.0, 1.0, 0.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn max_axis(self, axis: isize, keep_dims: bool) -> Result<Var<'t, T>> {
        self.apply(Max { axis, keep_dims })
    }
}
