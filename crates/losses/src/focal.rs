//! Focal losses: cross-entropy scaled by `(1 - p_t)^gamma`, which turns
//! attention to the examples the model gets wrong.

use ndarray::{ArrayView1, ArrayViewMut1};
use polyhead_tensor::{Float, Tensor};

use crate::binary_cross_entropy::{bce_keras_probability, bce_logit_with};
use crate::config::{Config, config_builders, run_pointwise};
use crate::cross_entropy::KERAS_EPSILON;
use crate::error::{LossError, Result};
use crate::loss::Loss;
use crate::reduction::{Convention, LossOutput, finish, same_shape};
use crate::units::{Aggregate, rowwise, sigmoid_with};

/// Binary (sigmoid) focal loss: `alpha_t (1 - p_t)^gamma * BCE`, with
/// `p = sigmoid(x)`, `p_t = p y + (1 - p)(1 - y)` and
/// `alpha_t = alpha y + (1 - alpha)(1 - y)`. Keras'
/// `BinaryFocalCrossentropy` (class balancing only with
/// `apply_class_balancing`, mean over the last axis) and torchvision's
/// `sigmoid_focal_loss` (balancing whenever `alpha >= 0`, per element) under
/// [`Convention::PyTorch`]. From logits, the BCE is computed stably from the
/// logit, as Keras' TensorFlow backend and torchvision do.
///
/// ```
/// use polyhead_losses::{BinaryFocalLoss, Loss};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.0_f64], &[1, 1])?;
/// let y = Tensor::from_vec(vec![1.0_f64], &[1, 1])?;
/// let out = BinaryFocalLoss::from_logits().gamma(2.0).value_and_grad(&x, &y, None)?;
/// assert!((out.value.item()? - 0.25 * 2f64.ln()).abs() < 1e-15); // (1 - 0.5)^2 ln 2
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinaryFocalLoss {
    from_logits: bool,
    gamma: f64,
    alpha: Option<f64>,
    label_smoothing: f64,
    config: Config,
}
config_builders!(BinaryFocalLoss);

impl BinaryFocalLoss {
    /// Focal loss of logits; `gamma` 2, no class balancing.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![10.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryFocalLoss::from_logits().value_and_grad(&pred, &target, None)?;
    /// assert!(out.value.item()? < 1e-12); // confident and right: almost no loss
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_logits() -> Self {
        BinaryFocalLoss {
            from_logits: true,
            gamma: 2.0,
            alpha: None,
            label_smoothing: 0.0,
            config: Config::default(),
        }
    }

    /// Focal loss of probabilities (Keras clips them inside the BCE).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.5], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryFocalLoss::from_probabilities().gamma(0.0).value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 2f64.ln()).abs() < 1e-12); // gamma 0 is BCE
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_probabilities() -> Self {
        BinaryFocalLoss {
            from_logits: false,
            ..Self::from_logits()
        }
    }

    /// The focusing exponent (>= 0; 0 is plain BCE).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryFocalLoss::from_logits().gamma(0.0).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 2f64.ln());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gamma(mut self, gamma: f64) -> Self {
        self.gamma = gamma;
        self
    }

    /// Class balancing with weight `alpha` for positives and `1 - alpha` for
    /// negatives (Keras' `apply_class_balancing=True, alpha=...`,
    /// torchvision's `alpha >= 0`).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryFocalLoss::from_logits().gamma(0.0).alpha(0.25).value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 0.25 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = Some(alpha);
        self
    }

    /// Label smoothing `eps`: targets become `y (1 - eps) + eps / 2` (Keras).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = BinaryFocalLoss::from_logits().label_smoothing(1.0).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.grad.to_vec(), vec![0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn label_smoothing(mut self, eps: f64) -> Self {
        self.label_smoothing = eps;
        self
    }
}

/// `(1 - p_t)^gamma` and its derivative with respect to `1 - p_t`, defined
/// as 0 where `1 - p_t = 0` and `gamma < 1` (the term it multiplies is 0).
fn focus<T: Float>(one_minus_pt: T, gamma: T) -> (T, T) {
    let f = one_minus_pt.powf(gamma);
    let df = if gamma == T::ZERO {
        T::ZERO
    } else if one_minus_pt == T::ZERO {
        if gamma == T::ONE { T::ONE } else { T::ZERO }
    } else {
        gamma * one_minus_pt.powf(gamma - T::ONE)
    };
    (f, df)
}

impl<T: Float> Loss<T> for BinaryFocalLoss {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "binary_focal"
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
        const NAME: &str = "binary_focal";
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(LossError::Invalid {
                loss: NAME,
                message: format!("gamma must be >= 0, got {}", self.gamma),
            });
        }
        let gamma = T::from_f64(self.gamma);
        let alpha = self.alpha.map(T::from_f64);
        let eps = T::from_f64(self.label_smoothing);
        let half = T::from_f64(0.5);
        let from_logits = self.from_logits;
        run_pointwise(
            NAME,
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |x, y, _| {
                let y = y * (T::ONE - eps) + eps * half;
                // p and dp/d(pred); the BCE and dBCE/d(pred).
                let (p, dp, (bce, dbce)) = if from_logits {
                    let e = (-x.abs()).exp();
                    let p = sigmoid_with(x, e);
                    (
                        p,
                        p * (T::ONE - p),
                        bce_logit_with(x, y, T::ONE, e, e.ln_1p()),
                    )
                } else {
                    (x, T::ONE, bce_keras_probability(x, y))
                };
                let pt = y * p + (T::ONE - y) * (T::ONE - p);
                let (f, df) = focus(T::ONE - pt, gamma);
                // d(1 - p_t)/d(pred) = -(2y - 1) dp
                let d_one_minus_pt = -(y + y - T::ONE) * dp;
                let a = match alpha {
                    Some(a) => a * y + (T::ONE - a) * (T::ONE - y),
                    None => T::ONE,
                };
                let d = if bce == T::ZERO {
                    f * dbce
                } else {
                    f * dbce + df * d_one_minus_pt * bce
                };
                (a * f * bce, a * d)
            },
        )
    }
}

/// Categorical focal cross-entropy (Keras' `CategoricalFocalCrossentropy`):
/// `-sum_j alpha (1 - q_j)^gamma y_j ln q_j` over the class axis, where `q`
/// is the softmax of the logits (or the given probabilities), renormalised
/// and clipped to `[1e-7, 1 - 1e-7]` as Keras does. Defaults: `alpha`
/// 0.25, `gamma` 2.
///
/// ```
/// use polyhead_losses::{CategoricalFocalCrossEntropy, Loss};
/// use polyhead_tensor::Tensor;
/// let logits = Tensor::from_vec(vec![0.0_f64, 0.0], &[1, 2])?;
/// let y = Tensor::from_vec(vec![1.0_f64, 0.0], &[1, 2])?;
/// let out = CategoricalFocalCrossEntropy::from_logits().value_and_grad(&logits, &y, None)?;
/// assert!((out.value.item()? - 0.25 * 0.25 * 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoricalFocalCrossEntropy {
    from_logits: bool,
    alpha: f64,
    gamma: f64,
    config: Config,
}
config_builders!(CategoricalFocalCrossEntropy);

impl CategoricalFocalCrossEntropy {
    /// Of logits, with Keras' defaults `alpha = 0.25`, `gamma = 2`.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0, 0.0], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CategoricalFocalCrossEntropy::from_logits().gamma(0.0).alpha(1.0).value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 2f64.ln()).abs() < 1e-12); // plain CE
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_logits() -> Self {
        CategoricalFocalCrossEntropy {
            from_logits: true,
            alpha: 0.25,
            gamma: 2.0,
            config: Config::default(),
        }
    }

    /// Of probabilities.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.5, 0.5], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CategoricalFocalCrossEntropy::from_probabilities().value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 0.25 * 0.25 * 2f64.ln()).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_probabilities() -> Self {
        CategoricalFocalCrossEntropy {
            from_logits: false,
            ..Self::from_logits()
        }
    }

    /// The weighting factor.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.5, 0.5], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CategoricalFocalCrossEntropy::from_probabilities().alpha(1.0).gamma(0.0).value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 2f64.ln()).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// The focusing exponent (>= 0).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.5, 0.5], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CategoricalFocalCrossEntropy::from_probabilities().alpha(1.0).gamma(1.0).value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? - 0.5 * 2f64.ln()).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gamma(mut self, gamma: f64) -> Self {
        self.gamma = gamma;
        self
    }
}

impl<T: Float> Loss<T> for CategoricalFocalCrossEntropy {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "categorical_focal_cross_entropy"
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
        const NAME: &str = "categorical_focal_cross_entropy";
        same_shape(NAME, pred, target)?;
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(LossError::Invalid {
                loss: NAME,
                message: format!("gamma must be >= 0, got {}", self.gamma),
            });
        }
        let axis = match self.config.convention {
            Convention::Keras => pred.ndim() - 1,
            Convention::PyTorch => {
                if pred.ndim() >= 2 {
                    1
                } else {
                    0
                }
            }
        };
        let (alpha, gamma) = (T::from_f64(self.alpha), T::from_f64(self.gamma));
        let from_logits = self.from_logits;
        let units = rowwise(pred, target, axis, buffer, |x, y, g| {
            focal_row(x, y, g, from_logits, alpha, gamma)
        });
        finish(NAME, units, self.config.reduction, w)
    }
}

/// One row of the categorical focal loss; the gradient flows back through
/// clipping, renormalisation and (from logits) the softmax.
fn focal_row<T: Float>(
    x: ArrayView1<'_, T>,
    y: ArrayView1<'_, T>,
    mut g: ArrayViewMut1<'_, T>,
    from_logits: bool,
    alpha: T,
    gamma: T,
) -> T {
    let eps = T::from_f64(KERAS_EPSILON);
    let probs: Vec<T> = if from_logits {
        let m = x.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
        let e: Vec<T> = x.iter().map(|&v| (v - m).exp()).collect();
        let s: T = e.iter().copied().sum();
        e.into_iter().map(|v| v / s).collect()
    } else {
        x.to_vec()
    };
    let sum: T = probs.iter().copied().sum();
    let mut value = T::ZERO;
    // dL/dq (q = renormalised probabilities), zero where clipped.
    let mut dq = vec![T::ZERO; probs.len()];
    for (j, (&p, &yj)) in probs.iter().zip(y.iter()).enumerate() {
        let q = p / sum;
        let c = q.max(eps).min(T::ONE - eps);
        let (f, df) = focus(T::ONE - c, gamma);
        value -= alpha * f * yj * c.ln();
        if q >= eps && q <= T::ONE - eps {
            // d/dc of -alpha (1-c)^gamma y ln c
            dq[j] = -alpha * yj * (f / c - df * c.ln());
        }
    }
    // Back through q = p / sum.
    let dot: T = dq.iter().zip(&probs).map(|(&d, &p)| d * p / sum).sum();
    let dp: Vec<T> = dq.iter().map(|&d| (d - dot) / sum).collect();
    if from_logits {
        // Back through the softmax.
        let dot: T = dp.iter().zip(&probs).map(|(&d, &p)| d * p).sum();
        for ((gv, &d), &p) in g.iter_mut().zip(&dp).zip(&probs) {
            *gv = p * (d - dot);
        }
    } else {
        for (gv, &d) in g.iter_mut().zip(&dp) {
            *gv = d;
        }
    }
    value
}
