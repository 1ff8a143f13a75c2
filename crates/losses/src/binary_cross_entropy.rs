//! Binary cross-entropy, from logits or probabilities.

use polyhead_tensor::simd::with_simd;
use polyhead_tensor::{Float, Tensor};

use crate::config::{Config, config_builders, run_pointwise, run_pointwise_kernel};
use crate::cross_entropy::KERAS_EPSILON;
use crate::error::{LossError, Result};
use crate::loss::Loss;
use crate::reduction::{Convention, LossOutput};
use crate::units::{Aggregate, Pointwise, sigmoid_with};

/// Binary cross-entropy, one independent yes/no per element: Keras'
/// `BinaryCrossentropy`, PyTorch's `binary_cross_entropy` and
/// `binary_cross_entropy_with_logits`.
///
/// - From logits (recommended): `max(x, 0) - x y + ln(1 + e^-|x|)`, exact for
///   any logit; with `pos_weight` (PyTorch, one per last-axis class) the
///   positive term is multiplied: `-(pw y ln s(x) + (1 - y) ln(1 - s(x)))`.
/// - From probabilities: Keras' convention clips to `[1e-7, 1 - 1e-7]`;
///   PyTorch's clamps each logarithm at -100 and uses the gradient
///   `(p - y) / max(p (1 - p), 1e-12)` as PyTorch does.
/// - Label smoothing: `y (1 - eps) + eps / 2`.
/// - PyTorch's element `weight` is a sample weight broadcast against the
///   prediction: pass it as the `sample_weight` argument.
///
/// ```
/// use polyhead_losses::{BinaryCrossEntropy, Loss};
/// use polyhead_tensor::Tensor;
/// let logits = Tensor::from_vec(vec![0.0_f64, 1000.0], &[1, 2])?;
/// let y = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
/// let out = BinaryCrossEntropy::from_logits().value_and_grad(&logits, &y, None)?;
/// assert!((out.value.item()? - (2f64.ln() + 1000.0) / 2.0).abs() < 1e-12);
/// assert_eq!(out.grad.to_vec(), vec![-0.25, 0.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryCrossEntropy {
    from_logits: bool,
    label_smoothing: f64,
    pos_weight: Option<Vec<f64>>,
    config: Config,
}
config_builders!(BinaryCrossEntropy);

impl BinaryCrossEntropy {
    /// BCE of logits.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryCrossEntropy::from_logits().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 2f64.ln());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_logits() -> Self {
        BinaryCrossEntropy {
            from_logits: true,
            label_smoothing: 0.0,
            pos_weight: None,
            config: Config::default(),
        }
    }

    /// BCE of probabilities.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.5], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryCrossEntropy::from_probabilities().value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_probabilities() -> Self {
        BinaryCrossEntropy {
            from_logits: false,
            ..Self::from_logits()
        }
    }

    /// Label smoothing `eps` in `[0, 1]`: targets become `y (1 - eps) + eps / 2`.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryCrossEntropy::from_logits().label_smoothing(1.0).value_and_grad(&pred, &target, None)?;
    /// // Fully smoothed targets are 0.5: the gradient at logit 0 vanishes.
    /// assert_eq!(out.grad.to_vec(), vec![0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn label_smoothing(mut self, eps: f64) -> Self {
        self.label_smoothing = eps;
        self
    }

    /// Weight of the positive term, one per class of the last axis
    /// (PyTorch's `pos_weight`; logits only).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryCrossEntropy::from_logits().pos_weight(vec![3.0]).convention(Convention::PyTorch).value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 3.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pos_weight(mut self, weights: Vec<f64>) -> Self {
        self.pos_weight = Some(weights);
        self
    }
}

/// BCE of logit `x` against target `y`, with positive weight `pw`: value
/// and derivative, given `e = exp(-|x|)`, the one exponential both need
/// (`exp(-|-x|)` is the same number), and `l = ln(1 + e)`, the softplus
/// of `-|x|`.
#[inline(always)]
pub(crate) fn bce_logit_with<T: Float>(x: T, y: T, pw: T, e: T, l: T) -> (T, T) {
    if pw == T::ONE {
        (x.max(T::ZERO) - x * y + l, sigmoid_with(x, e) - y)
    } else {
        // -(pw y ln s(x) + (1 - y) ln(1 - s(x))) with ln s(x) = -softplus(-x)
        // = -(max(-x, 0) + l) (softplus and sigmoid of -x, whose
        // exp(-|-x|) is `e` too).
        let k = T::ONE + (pw - T::ONE) * y;
        (
            (T::ONE - y) * x + k * ((-x).max(T::ZERO) + l),
            (T::ONE - y) - k * sigmoid_with(-x, e),
        )
    }
}

/// Elements per pass of [`LogitKernel`]: its two stack buffers stay in L1.
const LOGIT_CHUNK: usize = 256;

/// The BCE-from-logits kernel on slices: per pass of [`LOGIT_CHUNK`]
/// elements, `e = exp(-|x|)` and `l = ln(1 + e)` by the vectorised
/// [`Float::exp_slice`] and [`Float::ln_1p_slice`] (for f32 polynomials
/// within 1 and 1.44 ulps; for f64 the library's functions, the same bits as
/// [`bce_logit`]), then each element's value and derivative from them in a
/// loop without calls. Measured with `cargo xtask bench`: see the README's
/// Performance section (`bce` rows).
struct LogitKernel<'a, T> {
    /// Label smoothing `eps`: targets become `y (1 - eps) + eps / 2`.
    eps: T,
    /// Positive weights, one per column; `None` when every one is 1.
    pos: Option<&'a [T]>,
}

impl<T: Float> Pointwise<T> for LogitKernel<'_, T> {
    /// An exponential and a logarithm per element: split over threads from
    /// 4k elements inside `with_awake_pool` (measured with `cargo xtask
    /// bench`, alternating runs: BCE 1024x10 on two threads 18.4-26.9 ->
    /// 11.4-15.0 us; 18.5-23.6 us on one).
    fn compute_bound(&self) -> bool {
        true
    }

    #[inline]
    fn terms_and_grads(
        &self,
        p: &[T],
        t: &[T],
        g: &mut [T],
        terms: &mut [T],
        cols: usize,
        factors: [T; 2],
    ) {
        // Plain values, not references, so that the vectorised loop below
        // keeps them in registers.
        let (eps, half) = (self.eps, T::from_f64(0.5));
        let smooth = move |y: T| y * (T::ONE - eps) + eps * half;
        let [a, b] = factors;
        let mut e = [T::ZERO; LOGIT_CHUNK];
        let mut l = [T::ZERO; LOGIT_CHUNK];
        // The column of each pass's first element.
        let mut col = 0;
        for (((p, t), g), terms) in p
            .chunks(LOGIT_CHUNK)
            .zip(t.chunks(LOGIT_CHUNK))
            .zip(g.chunks_mut(LOGIT_CHUNK))
            .zip(terms.chunks_mut(LOGIT_CHUNK))
        {
            let (e, l) = (&mut e[..p.len()], &mut l[..p.len()]);
            for (e, &x) in e.iter_mut().zip(p) {
                *e = -x.abs();
            }
            T::exp_slice(e);
            l.copy_from_slice(e);
            T::ln_1p_slice(l);
            match self.pos {
                // Compiled for the CPU's widest vectors: no calls are left
                // in the loop, and `sigmoid_with`'s two cases become one
                // division of a selected numerator (the same operation).
                None => with_simd(
                    #[inline(always)]
                    || {
                        let rows = p.iter().zip(t).zip(e.iter().zip(l.iter()));
                        for (((&x, &y), (&e, &l)), (term, g)) in
                            rows.zip(terms.iter_mut().zip(g.iter_mut()))
                        {
                            let y = smooth(y);
                            *term = x.max(T::ZERO) - x * y + l;
                            let numerator = if x >= T::ZERO { T::ONE } else { e };
                            *g = (numerator / (T::ONE + e) - y) * a * b;
                        }
                    },
                ),
                Some(pos) => {
                    let mut j = col;
                    for i in 0..p.len() {
                        let (v, d) = bce_logit_with(p[i], smooth(t[i]), pos[j], e[i], l[i]);
                        terms[i] = v;
                        g[i] = d * a * b;
                        j += 1;
                        if j == cols {
                            j = 0;
                        }
                    }
                }
            }
            col = (col + p.len()) % cols.max(1);
        }
    }
}

/// Keras' BCE of a probability clipped to `[eps, 1 - eps]`.
pub(crate) fn bce_keras_probability<T: Float>(p: T, y: T) -> (T, T) {
    let eps = T::from_f64(KERAS_EPSILON);
    let q = p.max(eps).min(T::ONE - eps);
    let v = -(y * q.ln() + (T::ONE - y) * (T::ONE - q).ln());
    let inside = p >= eps && p <= T::ONE - eps;
    let d = if inside {
        -y / q + (T::ONE - y) / (T::ONE - q)
    } else {
        T::ZERO
    };
    (v, d)
}

impl<T: Float> Loss<T> for BinaryCrossEntropy {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "binary_cross_entropy"
    }
    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        w: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        self.value_and_grad_into(pred, target, w, None)
    }

    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        w: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        const NAME: &str = "binary_cross_entropy";
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(LossError::Invalid {
                loss: NAME,
                message: format!(
                    "label_smoothing must be in [0, 1], got {}",
                    self.label_smoothing
                ),
            });
        }
        let cols = pred.shape().last().copied().unwrap_or(0);
        let pos: Vec<T> = match &self.pos_weight {
            None => vec![T::ONE; cols],
            Some(pw) if pw.len() != cols => {
                return Err(LossError::Weight {
                    loss: NAME,
                    message: format!("{} pos_weight values for a last axis of {cols}", pw.len()),
                });
            }
            Some(pw) if !self.from_logits => {
                return Err(LossError::Invalid {
                    loss: NAME,
                    message: format!(
                        "pos_weight {pw:?} needs logits (use BinaryCrossEntropy::from_logits)"
                    ),
                });
            }
            Some(pw) => pw.iter().map(|&v| T::from_f64(v)).collect(),
        };
        let eps = T::from_f64(self.label_smoothing);
        let half = T::from_f64(0.5);
        let smooth = move |y: T| y * (T::ONE - eps) + eps * half;
        let torch = self.config.convention == Convention::PyTorch;
        if self.from_logits {
            let kernel = LogitKernel {
                eps,
                pos: self.pos_weight.as_ref().map(|_| pos.as_slice()),
            };
            run_pointwise_kernel(
                NAME,
                self.config,
                Aggregate::Mean,
                pred,
                target,
                w,
                buffer,
                kernel,
            )
        } else if torch {
            let floor = T::from_f64(-100.0);
            let tiny = T::from_f64(f64::from(1e-12_f32));
            run_pointwise(
                NAME,
                self.config,
                Aggregate::Mean,
                pred,
                target,
                w,
                buffer,
                |p, y, _| {
                    let y = smooth(y);
                    let v = -(y * p.ln().max(floor) + (T::ONE - y) * (T::ONE - p).ln().max(floor));
                    (v, (p - y) / (p * (T::ONE - p)).max(tiny))
                },
            )
        } else {
            run_pointwise(
                NAME,
                self.config,
                Aggregate::Mean,
                pred,
                target,
                w,
                buffer,
                |p, y, _| bce_keras_probability(p, smooth(y)),
            )
        }
    }
}
