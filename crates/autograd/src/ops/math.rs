//! Elementwise math functions and activations. Each is one line of
//! forward (`f(x)`) beside one line of derivative (`f'(x)`, given `x` and
//! the output `y = f(x)`), run through the shared [`Unary`] op; softmax and
//! log-softmax, which mix a whole axis, have ops of their own.

use ndarray::Zip;
use polyhead_tensor::special::{normal_cdf, normal_pdf};
use polyhead_tensor::{Float, Tensor, sigmoid};

use crate::error::Result;
use crate::op::{BackwardContext, Op, backward_via_into};
use crate::tape::Var;

type Grads<T> = Result<Vec<Option<Tensor<T>>>>;

/// An elementwise op given by its function and its derivative
/// `df(x, y)` where `y = f(x)`.
struct Unary<F, D> {
    name: &'static str,
    f: F,
    df: D,
}

impl<T: Float, F, D> Op<T> for Unary<F, D>
where
    F: Fn(T) -> T + 'static,
    D: Fn(T, T) -> T + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].map(&self.f))
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        grads[0] = ctx.grad_for(0, || {
            let (g, x, y) = (ctx.grad_output, ctx.inputs[0], ctx.output);
            // Row-major operands (the usual case): one loop into a pooled
            // buffer; other layouts through ndarray's Zip.
            if let (Some(gs), Some(xs), Some(ys)) = (g.as_slice(), x.as_slice(), y.as_slice())
                && x.ndim() > 0
                && gs.len() == xs.len()
                && ys.len() == xs.len()
            {
                return Ok(Tensor::from_fill(x.shape(), |out| {
                    for (((o, &g), &x), &y) in out.iter_mut().zip(gs).zip(xs).zip(ys) {
                        *o = g * (self.df)(x, y);
                    }
                }));
            }
            let out = Zip::from(&g.view())
                .and(&x.view())
                .and(&y.view())
                .map_collect(|&g, &x, &y| g * (self.df)(x, y));
            Ok(Tensor::from_array(out))
        })?;
        Ok(())
    }
}

impl<'t, T: Float> Var<'t, T> {
    fn unary(
        self,
        name: &'static str,
        f: impl Fn(T) -> T + 'static,
        df: impl Fn(T, T) -> T + 'static,
    ) -> Var<'t, T> {
        self.apply_infallible(Unary { name, f, df })
    }

    /// `e^x`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(1.0));
    /// assert_eq!(tape.backward(x.exp())?.wrt(x)?.item()?, std::f64::consts::E);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn exp(self) -> Var<'t, T> {
        self.unary("exp", T::exp, |_, y| y)
    }

    /// Natural logarithm.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2])?);
    /// let y = x.ln();
    /// assert_eq!(y.value().to_vec(), vec![0.0, std::f64::consts::LN_2]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![1.0, 0.5]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn ln(self) -> Var<'t, T> {
        self.unary("ln", T::ln, |x, _| T::ONE / x)
    }

    /// Square root.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![4.0, 16.0], &[2])?);
    /// let y = x.sqrt();
    /// assert_eq!(y.value().to_vec(), vec![2.0, 4.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![0.25, 0.125]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn sqrt(self) -> Var<'t, T> {
        self.unary("sqrt", T::sqrt, |_, y| T::from_f64(0.5) / y)
    }

    /// `x^p` for a constant exponent.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![3.0, -1.0], &[2])?);
    /// let y = x.powf(2.0);
    /// assert_eq!(y.value().to_vec(), vec![9.0, 1.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![6.0, -2.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn powf(self, p: T) -> Var<'t, T> {
        self.unary(
            "powf",
            move |x| x.powf(p),
            move |x, _| p * x.powf(p - T::ONE),
        )
    }

    /// `|x|`; its derivative at 0 is taken to be 0 (as in PyTorch and
    /// TensorFlow).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-3.0, 0.0, 2.0], &[3])?);
    /// let y = x.abs();
    /// assert_eq!(y.value().to_vec(), vec![3.0, 0.0, 2.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![-1.0, 0.0, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn abs(self) -> Var<'t, T> {
        self.unary("abs", T::abs, |x, _| {
            if x > T::ZERO {
                T::ONE
            } else if x < T::ZERO {
                -T::ONE
            } else {
                T::ZERO
            }
        })
    }

    /// Hyperbolic tangent.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![0.0], &[1])?);
    /// let y = x.tanh();
    /// assert_eq!(y.value().to_vec(), vec![0.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn tanh(self) -> Var<'t, T> {
        self.unary("tanh", T::tanh, |_, y| T::ONE - y * y)
    }

    /// The logistic sigmoid, stable for any input.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![0.0, -1000.0], &[2])?);
    /// let y = x.sigmoid();
    /// assert_eq!(y.value().to_vec(), vec![0.5, 0.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![0.25, 0.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn sigmoid(self) -> Var<'t, T> {
        self.unary("sigmoid", sigmoid, |_, y| y * (T::ONE - y))
    }

    /// `max(x, 0)`; its derivative at 0 is 0 (as in PyTorch).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-1.0, 0.0, 2.0], &[3])?);
    /// let grads = tape.backward(x.relu().sum_all())?;
    /// assert_eq!(grads.wrt(x)?.to_vec(), vec![0.0, 0.0, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn relu(self) -> Var<'t, T> {
        self.unary(
            "relu",
            |x| {
                if x > T::ZERO || x.is_nan() {
                    x
                } else {
                    T::ZERO
                }
            },
            |x, _| if x > T::ZERO { T::ONE } else { T::ZERO },
        )
    }

    /// `x` for positive `x`, `slope * x` otherwise (Keras' `negative_slope`,
    /// PyTorch's default 0.01); derivative at 0 is `slope`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![-2.0, 3.0], &[2])?);
    /// let y = x.leaky_relu(0.5);
    /// assert_eq!(y.value().to_vec(), vec![-1.0, 3.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(x)?.to_vec(), vec![0.5, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn leaky_relu(self, slope: T) -> Var<'t, T> {
        self.unary(
            "leaky_relu",
            move |x| if x > T::ZERO { x } else { slope * x },
            move |x, _| if x > T::ZERO { T::ONE } else { slope },
        )
    }

    /// GELU, exact form `x * Phi(x)` with `Phi` the standard normal CDF
    /// (PyTorch's default, Keras' `approximate=False`). Computed in f64.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(1.0));
    /// let y = x.gelu();
    /// assert!((y.value().item()? - 0.841_344_746_068_542_9).abs() < 1e-15);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn gelu(self) -> Var<'t, T> {
        self.unary(
            "gelu",
            |x| {
                let x = x.to_f64();
                T::from_f64(x * normal_cdf(x))
            },
            |x, _| {
                let x = x.to_f64();
                T::from_f64(normal_cdf(x) + x * normal_pdf(x))
            },
        )
    }
}

/// Softmax along an axis: backward `y * (g - sum(g * y))` along that axis.
struct Softmax {
    axis: isize,
}
impl<T: Float> Op<T> for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].softmax(self.axis)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let (g, y) = (ctx.grad_output, ctx.output);
        let dx = ctx.grad_for(0, || {
            let dot = g.mul(y)?.sum_axis(self.axis, true)?;
            Ok(g.sub(&dot)?.mul(y)?)
        })?;
        Ok(vec![dx])
    }
}

/// Log-softmax along an axis: backward `g - softmax(x) * sum(g)` along it.
struct LogSoftmax {
    axis: isize,
}
impl<T: Float> Op<T> for LogSoftmax {
    fn name(&self) -> &'static str {
        "log_softmax"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].log_softmax(self.axis)?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let (g, y) = (ctx.grad_output, ctx.output);
        let dx = ctx.grad_for(0, || {
            let total = g.sum_axis(self.axis, true)?;
            Ok(g.sub(&y.exp().mul(&total)?)?)
        })?;
        Ok(vec![dx])
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Softmax along `axis` (negative counts from the end), stable at any
    /// logit magnitude.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1000.0, -1000.0], &[1, 2])?);
    /// assert_eq!(x.softmax(-1)?.value().to_vec(), vec![1.0, 0.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn softmax(self, axis: isize) -> Result<Var<'t, T>> {
        self.apply(Softmax { axis })
    }

    /// Log-softmax along `axis`, exact where `ln(softmax)` would be `-inf`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![0.0, 0.0], &[2])?);
    /// let y = x.log_softmax(0)?;
    /// assert_eq!(y.value().to_vec(), vec![-std::f64::consts::LN_2; 2]);
    /// // Picking class 0: gradient is onehot - softmax.
    /// let picked = y.slice_axis(0, 0, 1)?.sum_all();
    /// assert_eq!(tape.backward(picked)?.wrt(x)?.to_vec(), vec![0.5, -0.5]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn log_softmax(self, axis: isize) -> Result<Var<'t, T>> {
        self.apply(LogSoftmax { axis })
    }
}
