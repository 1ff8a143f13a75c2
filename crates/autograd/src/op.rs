//! The [`Op`] trait: one differentiable operation, forward and backward side
//! by side. Every built-in op implements it, and so can users (a fused loss,
//! a custom activation); the tape records any `Op` as one node.

use polyhead_tensor::{Float, Tensor};

use crate::error::{AutogradError, Result};

/// What an op's backward receives.
///
/// ```
/// use polyhead_autograd::BackwardContext;
/// use polyhead_tensor::Tensor;
/// let x = Tensor::<f64>::from_vec(vec![2.0], &[1])?;
/// let g = Tensor::<f64>::ones(&[1])?;
/// let ctx = BackwardContext { inputs: &[&x], output: &x, grad_output: &g, needs_grad: &[true] };
/// // The backward of the identity passes the gradient through.
/// assert_eq!(ctx.grad_for(0, || Ok(ctx.grad_output.clone()))?.unwrap().to_vec(), vec![1.0]);
/// # Ok::<(), polyhead_autograd::AutogradError>(())
/// ```
#[derive(Debug)]
pub struct BackwardContext<'a, T: Float> {
    /// The op's inputs, as they were in forward (by reference, as
    /// [`Op::forward`] gets them).
    pub inputs: &'a [&'a Tensor<T>],
    /// The op's output.
    pub output: &'a Tensor<T>,
    /// dL/d(output), the same shape as `output`.
    pub grad_output: &'a Tensor<T>,
    /// `needs_grad[i]` is false when input `i` does not lead to anything
    /// that wants a gradient; its gradient may be skipped (return `None`).
    pub needs_grad: &'a [bool],
}

impl<T: Float> BackwardContext<'_, T> {
    /// `Some(f())` when input `i` needs a gradient, else `None` (without
    /// calling `f`): the usual shape of an op's backward.
    ///
    /// ```
    /// # use polyhead_autograd::BackwardContext;
    /// # use polyhead_tensor::Tensor;
    /// let t = Tensor::<f64>::ones(&[1])?;
    /// let ctx = BackwardContext {
    ///     inputs: &[&t], output: &t, grad_output: &t, needs_grad: &[false],
    /// };
    /// assert!(ctx.grad_for(0, || Ok(t.clone()))?.is_none());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn grad_for(
        &self,
        i: usize,
        f: impl FnOnce() -> Result<Tensor<T>>,
    ) -> Result<Option<Tensor<T>>> {
        if self.needs_grad.get(i).copied().unwrap_or(false) {
            f().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A differentiable operation: its forward computation and, beside it, the
/// rule that turns dL/d(output) into dL/d(input) for each input.
///
/// Implement it for a custom op, record it with [`crate::Tape::apply`], and
/// check it with [`crate::gradcheck()`]:
///
/// ```
/// use polyhead_autograd::{gradcheck, BackwardContext, GradcheckOptions, Op, Result, Tape};
/// use polyhead_tensor::{Float, Tensor};
///
/// /// softplus(x) = ln(1 + e^x), fused into one node.
/// struct Softplus;
///
/// impl<T: Float> Op<T> for Softplus {
///     fn name(&self) -> &'static str {
///         "softplus"
///     }
///     fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>> {
///         Ok(inputs[0].map(|x| x.max(T::ZERO) + (-x.abs()).exp().ln_1p()))
///     }
///     fn backward(&self, ctx: &BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
///         // d/dx softplus(x) = sigmoid(x)
///         let dx = ctx.grad_for(0, || Ok(ctx.grad_output.mul(&ctx.inputs[0].sigmoid())?))?;
///         Ok(vec![dx])
///     }
/// }
///
/// let x = Tensor::from_vec(vec![-3.0, -0.5, 0.2, 4.0], &[4])?;
/// gradcheck(|tape: &Tape<f64>, v| tape.apply(Softplus, &[v[0]]), &[x], &GradcheckOptions::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Op<T: Float>: 'static {
    /// The op's name, used in error messages.
    fn name(&self) -> &'static str;

    /// Computes the output from the inputs. It may keep anything backward
    /// needs in `self` (the tape stores the op after this call).
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>>;

    /// Returns one entry per input: `Some(dL/d input)`, with the input's
    /// shape, for each input that needs a gradient, `None` for the others.
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>>;

    /// [`Op::backward`] into `grads`, one slot per input (each `None` on
    /// entry), instead of a new list: what the tape calls, with slots on
    /// its stack. The default calls [`Op::backward`] and moves its entries
    /// over; the built-in ops implement this and derive `backward` from it
    /// ([`backward_list`]), so that a training step allocates no list per
    /// op. An op of one's own need not.
    ///
    /// ```
    /// use polyhead_autograd::{BackwardContext, Op, Result, Tape, backward_list};
    /// use polyhead_tensor::{Float, Tensor};
    /// struct Double;
    /// impl<T: Float> Op<T> for Double {
    ///     fn name(&self) -> &'static str { "double" }
    ///     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
    ///         Ok(x[0].mul_scalar(T::from_f64(2.0)))
    ///     }
    ///     fn backward(&self, ctx: &BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
    ///         backward_list(self, ctx)
    ///     }
    ///     fn backward_into(&self, ctx: &BackwardContext<'_, T>, grads: &mut [Option<Tensor<T>>]) -> Result<()> {
    ///         grads[0] = ctx.grad_for(0, || Ok(ctx.grad_output.mul_scalar(T::from_f64(2.0))))?;
    ///         Ok(())
    ///     }
    /// }
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::ones(&[2])?);
    /// let y = tape.apply(Double, &[x])?.sum_all();
    /// assert_eq!(tape.backward(y)?.wrt(x)?.to_vec(), vec![2.0, 2.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let list = self.backward(ctx)?;
        if list.len() != grads.len() {
            return Err(AutogradError::Op {
                op: self.name(),
                message: format!(
                    "backward returned {} gradients for {} inputs",
                    list.len(),
                    grads.len()
                ),
            });
        }
        for (slot, g) in grads.iter_mut().zip(list) {
            *slot = g;
        }
        Ok(())
    }
}

/// [`Op::backward`] for an op that implements [`Op::backward_into`]: its
/// gradients as a list (see the example there).
pub fn backward_list<T: Float, O: Op<T> + ?Sized>(
    op: &O,
    ctx: &BackwardContext<'_, T>,
) -> Result<Vec<Option<Tensor<T>>>> {
    let mut grads = vec![None; ctx.inputs.len()];
    op.backward_into(ctx, &mut grads)?;
    Ok(grads)
}

/// The `backward` method of a built-in op that implements
/// [`Op::backward_into`] (its element type named `T`): the gradients as a
/// list, through [`backward_list`].
macro_rules! backward_via_into {
    () => {
        fn backward(
            &self,
            ctx: &$crate::op::BackwardContext<'_, T>,
        ) -> $crate::error::Result<Vec<Option<polyhead_tensor::Tensor<T>>>> {
            $crate::op::backward_list(self, ctx)
        }
    };
}
pub(crate) use backward_via_into;
