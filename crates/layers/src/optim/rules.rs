//! The update rules: how one parameter moves given its gradient and its
//! state slots. Each cites the formula it follows.

use polyhead_tensor::Float;

use crate::error::{LayerError, Result};

/// Which framework's formula an optimizer follows where they differ.
///
/// ```
/// use polyhead_layers::{Adam, OptimizerConvention};
/// let torch_adam = Adam::new(1e-3).convention(OptimizerConvention::PyTorch);
/// # let _ = torch_adam;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerConvention {
    /// Keras 3's formulas and default epsilons.
    #[default]
    Keras,
    /// PyTorch's formulas and default epsilons.
    PyTorch,
}

/// Stochastic gradient descent with optional momentum, Nesterov momentum
/// and L2 weight decay, with PyTorch's `torch.optim.SGD` formula:
/// `g += wd * w; b = momentum * b + g` (`b = g` at the first step);
/// `g = g + momentum * b` (Nesterov) or `b`; `w -= lr * g`. With a constant
/// rate this equals Keras' `SGD` (whose velocity is `-lr * b`).
///
/// ```
/// use polyhead_layers::Sgd;
/// let opt = Sgd::new(0.1).momentum(0.9).nesterov(true).build::<f32>();
/// assert_eq!(opt.learning_rate(), 0.1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub(crate) lr: f64,
    pub(crate) momentum: f64,
    pub(crate) nesterov: bool,
    pub(crate) weight_decay: f64,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Sgd::new(0.5).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![1.0], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.5)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(lr: f64) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// Momentum factor in `[0, 1)`.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Sgd::new(0.5).momentum(0.9).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![1.0], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.5)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Nesterov momentum (needs a momentum).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Sgd::new(0.5).momentum(0.5).nesterov(true).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![1.0], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.25)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// L2 weight decay added to the gradient.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Sgd::new(0.5).weight_decay(1.0).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.0], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.5)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
}

/// Adam (Kingma & Ba). Keras' formula (default):
/// `m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
/// w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, eps 1e-7.
/// PyTorch's: `w -= lr * m_hat / (sqrt(v_hat) + eps)` with bias-corrected
/// moments, eps 1e-8. `weight_decay` is L2 (added to the gradient); for
/// decoupled decay use [`Adam::decoupled_weight_decay`] (AdamW).
///
/// ```
/// use polyhead_layers::Adam;
/// let opt = Adam::new(1e-3).betas(0.9, 0.999).build::<f64>();
/// assert_eq!(opt.learning_rate(), 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub(crate) lr: f64,
    pub(crate) beta1: f64,
    pub(crate) beta2: f64,
    pub(crate) epsilon: Option<f64>,
    pub(crate) weight_decay: f64,
    pub(crate) decoupled: bool,
    pub(crate) convention: OptimizerConvention,
}

impl Adam {
    /// Adam with learning rate `lr`, betas 0.9 / 0.999.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Adam::new(0.1).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (1.0 - 0.1 * 0.5 * 0.001_f64.sqrt() / (0.5 * 0.001_f64.sqrt() + 1e-7))).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: None,
            weight_decay: 0.0,
            decoupled: false,
            convention: OptimizerConvention::Keras,
        }
    }

    /// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay,
    /// `w -= lr * wd * w` before the Adam step (Keras' and PyTorch's AdamW).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Adam::adamw(0.1, 0.0).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (1.0 - 0.1 * 0.5 * 0.001_f64.sqrt() / (0.5 * 0.001_f64.sqrt() + 1e-7))).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Adam {
            weight_decay,
            decoupled: true,
            ..Adam::new(lr)
        }
    }

    /// The moment decay rates.
    ///
    /// ```
    /// let _ = polyhead_layers::Adam::new(1e-3).betas(0.8, 0.99).build::<f32>();
    /// ```
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// The epsilon (default 1e-7 for Keras, 1e-8 for PyTorch).
    ///
    /// ```
    /// let _ = polyhead_layers::Adam::new(1e-3).epsilon(1e-8).build::<f32>();
    /// ```
    pub fn epsilon(mut self, eps: f64) -> Self {
        self.epsilon = Some(eps);
        self
    }

    /// L2 weight decay added to the gradient (PyTorch's `Adam(weight_decay)`).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Adam::new(0.1).weight_decay(0.0).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (1.0 - 0.1 * 0.5 * 0.001_f64.sqrt() / (0.5 * 0.001_f64.sqrt() + 1e-7))).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self.decoupled = false;
        self
    }

    /// Decoupled weight decay (AdamW).
    ///
    /// ```
    /// let _ = polyhead_layers::Adam::new(1e-3).decoupled_weight_decay(0.01).build::<f32>();
    /// ```
    pub fn decoupled_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self.decoupled = true;
        self
    }

    /// Keras' or PyTorch's formula.
    ///
    /// ```
    /// use polyhead_layers::{Adam, OptimizerConvention};
    /// let _ = Adam::new(1e-3).convention(OptimizerConvention::PyTorch).build::<f32>();
    /// ```
    pub fn convention(mut self, convention: OptimizerConvention) -> Self {
        self.convention = convention;
        self
    }
}

/// RMSprop. Keras' formula (default): `v = rho v + (1 - rho) g^2;
/// w -= lr g / sqrt(v + eps)` with rho 0.9, eps 1e-7. PyTorch's:
/// `w -= lr g / (sqrt(v) + eps)` with alpha 0.99, eps 1e-8.
///
/// ```
/// use polyhead_layers::RmsProp;
/// let opt = RmsProp::new(1e-3).rho(0.95).build::<f32>();
/// assert_eq!(opt.learning_rate(), 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    pub(crate) lr: f64,
    pub(crate) rho: Option<f64>,
    pub(crate) epsilon: Option<f64>,
    pub(crate) convention: OptimizerConvention,
}

impl RmsProp {
    /// RMSprop with learning rate `lr`.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = RmsProp::new(0.1).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (1.0 - 0.1 * 0.5 / (0.1_f64 * 0.25 + 1e-7).sqrt())).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(lr: f64) -> Self {
        RmsProp {
            lr,
            rho: None,
            epsilon: None,
            convention: OptimizerConvention::Keras,
        }
    }

    /// The decay of the squared-gradient average (Keras' `rho`, PyTorch's `alpha`).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = RmsProp::new(0.1).rho(0.0).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (1.0 - 0.1 * 0.5 / (0.25_f64 + 1e-7).sqrt())).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rho(mut self, rho: f64) -> Self {
        self.rho = Some(rho);
        self
    }

    /// The epsilon.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = RmsProp::new(0.1).rho(0.0).epsilon(0.0).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.9)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn epsilon(mut self, eps: f64) -> Self {
        self.epsilon = Some(eps);
        self
    }

    /// Keras' or PyTorch's formula.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = RmsProp::new(0.1).rho(0.0).epsilon(0.0).convention(OptimizerConvention::PyTorch).build();
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![0.5], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.9)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn convention(mut self, convention: OptimizerConvention) -> Self {
        self.convention = convention;
        self
    }
}

/// The rule an optimizer applies, with its settings resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    Sgd(Sgd),
    Adam(Adam),
    RmsProp(RmsProp),
}

impl Rule {
    /// The names of the state slots each parameter gets.
    pub(crate) fn slot_names(&self) -> &'static [&'static str] {
        match self {
            Rule::Sgd(s) if s.momentum != 0.0 => &["momentum"],
            Rule::Sgd(_) => &[],
            Rule::Adam(_) => &["m", "v"],
            Rule::RmsProp(_) => &["velocity"],
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(LayerError::Invalid {
                what: "optimizer",
                message,
            })
        };
        match *self {
            Rule::Sgd(s) if !(0.0..1.0).contains(&s.momentum) => {
                bad(format!("momentum must be in [0, 1), got {}", s.momentum))
            }
            Rule::Sgd(s) if s.nesterov && s.momentum == 0.0 => {
                bad("Nesterov momentum needs a momentum > 0".to_string())
            }
            Rule::Adam(a) if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2)) => {
                bad(format!(
                    "betas must be in [0, 1), got {} and {}",
                    a.beta1, a.beta2
                ))
            }
            _ => Ok(()),
        }
    }

    /// Writes into `w` the update of the current values `w_old` given their
    /// gradient, slots (updated in place) and the step number `t` (1 for
    /// the first step). Each loop starts an element from its old value, so
    /// copying and updating are one pass; `w`'s previous contents do not
    /// matter.
    pub(crate) fn update<T: Float>(
        &self,
        w_old: &[T],
        w: &mut [T],
        g: &[T],
        slots: &mut [&mut [T]],
        t: u64,
        lr: f64,
    ) {
        match *self {
            Rule::Sgd(s) => {
                let (lr, wd, mu) = (
                    T::from_f64(lr),
                    T::from_f64(s.weight_decay),
                    T::from_f64(s.momentum),
                );
                for (i, ((w, &w0), &g)) in w.iter_mut().zip(w_old).zip(g).enumerate() {
                    *w = w0;
                    let mut d = g + wd * *w;
                    if s.momentum != 0.0 {
                        let b = &mut slots[0][i];
                        *b = if t == 1 { d } else { mu * *b + d };
                        d = if s.nesterov { d + mu * *b } else { *b };
                    }
                    *w -= lr * d;
                }
            }
            Rule::Adam(a) => {
                let (b1, b2) = (a.beta1, a.beta2);
                let keras = a.convention == OptimizerConvention::Keras;
                let eps = a.epsilon.unwrap_or(if keras { 1e-7 } else { 1e-8 });
                let bc1 = 1.0 - b1.powi(t as i32);
                let bc2 = 1.0 - b2.powi(t as i32);
                let (tb1, tb2, teps) = (T::from_f64(b1), T::from_f64(b2), T::from_f64(eps));
                let one = T::ONE;
                let wd = T::from_f64(a.weight_decay);
                let tlr = T::from_f64(lr);
                let (m, v) = slots.split_at_mut(1);
                for (i, ((w, &w0), &g)) in w.iter_mut().zip(w_old).zip(g).enumerate() {
                    *w = w0;
                    let g = if a.decoupled {
                        *w -= tlr * wd * *w;
                        g
                    } else {
                        g + wd * *w
                    };
                    let (m, v) = (&mut m[0][i], &mut v[0][i]);
                    if keras {
                        *m += (g - *m) * (one - tb1);
                        *v += (g * g - *v) * (one - tb2);
                        let alpha = T::from_f64(lr * bc2.sqrt() / bc1);
                        *w -= alpha * *m / (v.sqrt() + teps);
                    } else {
                        *m = tb1 * *m + (one - tb1) * g;
                        *v = tb2 * *v + (one - tb2) * g * g;
                        let m_hat = *m / T::from_f64(bc1);
                        let v_hat = *v / T::from_f64(bc2);
                        *w -= tlr * m_hat / (v_hat.sqrt() + teps);
                    }
                }
            }
            Rule::RmsProp(r) => {
                let keras = r.convention == OptimizerConvention::Keras;
                let rho = T::from_f64(r.rho.unwrap_or(if keras { 0.9 } else { 0.99 }));
                let eps = T::from_f64(r.epsilon.unwrap_or(if keras { 1e-7 } else { 1e-8 }));
                let lr = T::from_f64(lr);
                for (i, ((w, &w0), &g)) in w.iter_mut().zip(w_old).zip(g).enumerate() {
                    *w = w0;
                    let v = &mut slots[0][i];
                    *v = rho * *v + (T::ONE - rho) * g * g;
                    let denom = if keras {
                        (*v + eps).sqrt()
                    } else {
                        v.sqrt() + eps
                    };
                    *w -= lr * g / denom;
                }
            }
        }
    }
}
