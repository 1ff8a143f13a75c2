//! Arithmetic with broadcasting: add, sub, mul, div, maximum, minimum, neg,
//! and multiplication/addition by a constant scalar.
//!
//! A broadcasting op's backward reduces each input's gradient back to that
//! input's shape with `sum_to_shape`.

use polyhead_tensor::{Float, Tensor, shape};

use crate::error::{AutogradError, Result};
use crate::op::{BackwardContext, Op, backward_via_into};
use crate::tape::{Tape, Var};

/// Backward of a broadcasting binary op: `da` and `db` produce gradients in
/// the broadcast (output) shape; this reduces them to each input's shape.
fn binary_grads<T: Float>(
    ctx: &BackwardContext<'_, T>,
    grads: &mut [Option<Tensor<T>>],
    da: impl FnOnce() -> Result<Tensor<T>>,
    db: impl FnOnce() -> Result<Tensor<T>>,
) -> Result<()> {
    let [a, b] = [&ctx.inputs[0], &ctx.inputs[1]];
    grads[0] = ctx.grad_for(0, || Ok(da()?.sum_to_shape(a.shape())?))?;
    grads[1] = ctx.grad_for(1, || Ok(db()?.sum_to_shape(b.shape())?))?;
    Ok(())
}

struct Add;
impl<T: Float> Op<T> for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].add(x[1])?)
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let g = ctx.grad_output;
        binary_grads(ctx, grads, || Ok(g.clone()), || Ok(g.clone()))
    }
}

struct Sub;
impl<T: Float> Op<T> for Sub {
    fn name(&self) -> &'static str {
        "sub"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].sub(x[1])?)
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let g = ctx.grad_output;
        binary_grads(ctx, grads, || Ok(g.clone()), || Ok(g.neg()))
    }
}

struct Mul;
impl<T: Float> Op<T> for Mul {
    fn name(&self) -> &'static str {
        "mul"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].mul(x[1])?)
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let (g, a, b) = (ctx.grad_output, &ctx.inputs[0], &ctx.inputs[1]);
        binary_grads(ctx, grads, || Ok(g.mul(b)?), || Ok(g.mul(a)?))
    }
}

struct Div;
impl<T: Float> Op<T> for Div {
    fn name(&self) -> &'static str {
        "div"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].div(x[1])?)
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -out/b.
        let (g, b, out) = (ctx.grad_output, &ctx.inputs[1], ctx.output);
        binary_grads(
            ctx,
            grads,
            || Ok(g.div(b)?),
            || Ok(g.mul(out)?.div(b)?.neg()),
        )
    }
}

/// Elementwise maximum or minimum. At a tie the whole gradient goes to the
/// first operand (TensorFlow's choice; PyTorch splits it in half).
struct Extremum {
    max: bool,
}
impl<T: Float> Op<T> for Extremum {
    fn name(&self) -> &'static str {
        if self.max { "maximum" } else { "minimum" }
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(if self.max {
            x[0].maximum(x[1])?
        } else {
            x[0].minimum(x[1])?
        })
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let (a, b) = (&ctx.inputs[0], &ctx.inputs[1]);
        let max = self.max;
        // 1 where the first operand was selected, in the broadcast shape.
        let first = a.zip_map(b, "maximum", |x, y| {
            let picked = if max { x >= y } else { x <= y };
            if picked { T::ONE } else { T::ZERO }
        })?;
        let g = ctx.grad_output;
        binary_grads(
            ctx,
            grads,
            || Ok(g.mul(&first)?),
            || Ok(g.mul(&first.map(|m| T::ONE - m))?),
        )
    }
}

/// `x * factor + offset` for constants.
struct Affine<T> {
    factor: T,
    offset: T,
}
impl<T: Float> Op<T> for Affine<T> {
    fn name(&self) -> &'static str {
        "affine"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let (f, o) = (self.factor, self.offset);
        Ok(x[0].map(|v| v * f + o))
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        grads[0] = ctx.grad_for(0, || Ok(ctx.grad_output.mul_scalar(self.factor)))?;
        Ok(())
    }
}

/// `sum_i weights[i] * x_i` of same-shape values, added from left to right
/// (a weight of 1 multiplies nothing, so `x * 1 = x` exactly).
struct WeightedSum<T> {
    /// The weights of up to four terms (no allocation), or all of them.
    inline: [T; 4],
    heap: Vec<T>,
    len: usize,
}

impl<T: Float> WeightedSum<T> {
    fn new(weights: &[T]) -> Self {
        let mut inline = [T::ONE; 4];
        let heap = if weights.len() <= inline.len() {
            inline[..weights.len()].copy_from_slice(weights);
            Vec::new()
        } else {
            weights.to_vec()
        };
        WeightedSum {
            inline,
            heap,
            len: weights.len(),
        }
    }

    fn weights(&self) -> &[T] {
        if self.len <= self.inline.len() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}
impl<T: Float> Op<T> for WeightedSum<T> {
    fn name(&self) -> &'static str {
        "weighted_sum"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        if let Some(other) = x.iter().find(|v| !shape::same(v.shape(), x[0].shape())) {
            return Err(AutogradError::Op {
                op: "weighted_sum",
                message: format!(
                    "every term must have the same shape, got {:?} and {:?}",
                    x[0].shape(),
                    other.shape()
                ),
            });
        }
        let weights = self.weights();
        let term = |k: usize, v: T| {
            if weights[k] == T::ONE {
                v
            } else {
                v * weights[k]
            }
        };
        let shape = x[0].shape();
        if shape.is_empty() {
            // Scalar terms (losses): the same additions, no buffer.
            let mut total = term(0, x[0].item()?);
            for (k, xk) in x.iter().enumerate().skip(1) {
                total += term(k, xk.item()?);
            }
            return Ok(Tensor::scalar(total));
        }
        let mut total: Vec<T> = x[0].view().iter().map(|&v| term(0, v)).collect();
        for (k, xk) in x.iter().enumerate().skip(1) {
            for (t, &v) in total.iter_mut().zip(xk.view().iter()) {
                *t += term(k, v);
            }
        }
        Ok(Tensor::from_vec(total, shape)?)
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let g = ctx.grad_output;
        for ((k, &w), slot) in self.weights().iter().enumerate().zip(grads) {
            *slot = ctx.grad_for(k, || {
                Ok(match w {
                    w if w == T::ONE => g.clone(),
                    w => g.mul_scalar(w),
                })
            })?;
        }
        Ok(())
    }
}

impl<T: Float> Tape<T> {
    /// `sum_i weights[i] * terms[i]` as one recorded op: the weighted total
    /// of several losses (or any same-shape values), added from left to
    /// right. A weight of 1 multiplies nothing (`x * 1 = x` exactly, and its
    /// term's gradient is the upstream gradient itself). Errors when the
    /// lists differ in length, are empty, or the terms differ in shape.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::scalar(2.0));
    /// let b = tape.leaf(Tensor::scalar(10.0));
    /// let total = tape.weighted_sum(&[a, b], &[1.0, 0.5])?;
    /// assert_eq!(total.value().item()?, 7.0);
    /// let grads = tape.backward(total)?;
    /// assert_eq!((grads.wrt(a)?.item()?, grads.wrt(b)?.item()?), (1.0, 0.5));
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn weighted_sum<'t>(&'t self, terms: &[Var<'t, T>], weights: &[T]) -> Result<Var<'t, T>> {
        if terms.is_empty() || terms.len() != weights.len() {
            return Err(AutogradError::Op {
                op: "weighted_sum",
                message: format!(
                    "needs one weight per term and at least one term, got {} terms and {} weights",
                    terms.len(),
                    weights.len()
                ),
            });
        }
        self.apply(WeightedSum::new(weights), terms)
    }
}

// `add`, `sub`, ... return `Result` (broadcasting can fail, tapes can be
// mixed), so they cannot be the `std::ops` traits clippy suggests.
#[allow(clippy::should_implement_trait)]
impl<'t, T: Float> Var<'t, T> {
    /// `self + other` with NumPy broadcasting.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::ones(&[2, 3])?);
    /// let b = tape.leaf(Tensor::zeros(&[3])?);
    /// let grads = tape.backward(x.add(b)?.sum_all())?;
    /// assert_eq!(grads.wrt(b)?.to_vec(), vec![2.0, 2.0, 2.0]); // summed over the batch
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn add(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(Add, &[self, other])
    }

    /// `self - other` with broadcasting.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::scalar(3.0));
    /// let b = tape.leaf(Tensor::scalar(1.0));
    /// let g = tape.backward(a.sub(b)?)?;
    /// assert_eq!((g.wrt(a)?.item()?, g.wrt(b)?.item()?), (1.0, -1.0));
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn sub(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(Sub, &[self, other])
    }

    /// `self * other` (elementwise) with broadcasting.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::scalar(3.0));
    /// let b = tape.leaf(Tensor::scalar(5.0));
    /// let g = tape.backward(a.mul(b)?)?;
    /// assert_eq!((g.wrt(a)?.item()?, g.wrt(b)?.item()?), (5.0, 3.0));
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn mul(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(Mul, &[self, other])
    }

    /// `self / other` with broadcasting.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::scalar(3.0));
    /// let b = tape.leaf(Tensor::scalar(2.0));
    /// let grads = tape.backward(a.div(b)?)?;
    /// assert_eq!(grads.wrt(a)?.item()?, 0.5);
    /// assert_eq!(grads.wrt(b)?.item()?, -0.75);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn div(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(Div, &[self, other])
    }

    /// Elementwise maximum with broadcasting; at a tie the gradient goes to
    /// `self`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::from_vec(vec![1.0, 5.0], &[2])?);
    /// let floor = tape.leaf(Tensor::scalar(2.0));
    /// let y = a.maximum(floor)?;
    /// assert_eq!(y.value().to_vec(), vec![2.0, 5.0]);
    /// let g = tape.backward(y.sum_all())?;
    /// assert_eq!(g.wrt(a)?.to_vec(), vec![0.0, 1.0]);
    /// assert_eq!(g.wrt(floor)?.item()?, 1.0);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn maximum(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(Extremum { max: true }, &[self, other])
    }

    /// Elementwise minimum with broadcasting; at a tie the gradient goes to
    /// `self`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::from_vec(vec![1.0, 5.0], &[2])?);
    /// let cap = tape.constant(Tensor::scalar(2.0));
    /// let y = a.minimum(cap)?;
    /// assert_eq!(y.value().to_vec(), vec![1.0, 2.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(a)?.to_vec(), vec![1.0, 0.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn minimum(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(Extremum { max: false }, &[self, other])
    }

    /// `-self`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, -2.0], &[2])?);
    /// let y = x.neg();
    /// assert_eq!(y.value().to_vec(), vec![-1.0, 2.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![-1.0, -1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn neg(self) -> Var<'t, T> {
        self.scale(-T::ONE)
    }

    /// `self * factor` for a constant factor (a loss weight, say).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(3.0));
    /// assert_eq!(tape.backward(x.scale(0.5))?.wrt(x)?.item()?, 0.5);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn scale(self, factor: T) -> Var<'t, T> {
        self.apply_infallible(Affine {
            factor,
            offset: T::ZERO,
        })
    }

    /// `self + offset` for a constant offset.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, -2.0], &[2])?);
    /// let y = x.add_scalar(10.0);
    /// assert_eq!(y.value().to_vec(), vec![11.0, 8.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![1.0, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn add_scalar(self, offset: T) -> Var<'t, T> {
        self.apply_infallible(Affine {
            factor: T::ONE,
            offset,
        })
    }
}
