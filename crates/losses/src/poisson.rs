//! Poisson negative log-likelihood of counts.

use polyhead_tensor::{Float, Tensor};

use crate::config::{Config, config_builders, run_pointwise};
use crate::cross_entropy::KERAS_EPSILON;
use crate::error::Result;
use crate::loss::Loss;
use crate::reduction::{Convention, LossOutput};
use crate::units::Aggregate;

/// Poisson loss of predicted rates against observed counts.
///
/// - On rates (default): `pred - target * ln(pred + eps)`, with Keras'
///   `eps = 1e-7` (PyTorch's `poisson_nll_loss(log_input=False)` uses
///   `1e-8`, the default under [`Convention::PyTorch`]).
/// - On log-rates ([`Poisson::log_input`]): `exp(pred) - target * pred`
///   (PyTorch's default).
/// - [`Poisson::full`] adds Stirling's term
///   `t ln t - t + 0.5 ln(2 pi t)` where `t > 1` (PyTorch's `full=True`).
///
/// ```
/// use polyhead_losses::{Loss, Poisson};
/// use polyhead_tensor::Tensor;
/// let rate = Tensor::from_vec(vec![2.0_f64], &[1, 1])?;
/// let count = Tensor::from_vec(vec![3.0_f64], &[1, 1])?;
/// let out = Poisson::new().value_and_grad(&rate, &count, None)?;
/// assert!((out.value.item()? - (2.0 - 3.0 * (2.0f64 + 1e-7).ln())).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Poisson {
    log_input: bool,
    full: bool,
    eps: Option<f64>,
    config: Config,
}
config_builders!(Poisson);

impl Poisson {
    /// Poisson loss on rates with the default convention and reduction.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![1.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![0.0], &[1, 1])?;
    /// let out = Poisson::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 1.0); // rate 1, no events
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the prediction is a log-rate (PyTorch's `log_input`).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![2.0], &[1, 1])?;
    /// let out = Poisson::new().log_input(true).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 1.0); // exp(0) - 2 * 0
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_input(mut self, log_input: bool) -> Self {
        self.log_input = log_input;
        self
    }

    /// Whether to add Stirling's approximation of `ln(target!)`.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = Poisson::new().log_input(true).full(true).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 1.0); // no Stirling term for a count of 1
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }

    /// The `eps` added to rates inside the logarithm.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![1.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = Poisson::new().eps(0.0).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 1.0); // 1 - 1 * ln 1
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = Some(eps);
        self
    }
}

impl<T: Float> Loss<T> for Poisson {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "poisson"
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
        let default_eps = match self.config.convention {
            Convention::Keras => KERAS_EPSILON,
            Convention::PyTorch => 1e-8,
        };
        let eps = T::from_f64(self.eps.unwrap_or(default_eps));
        let (log_input, full) = (self.log_input, self.full);
        let half_ln_2pi = T::from_f64(0.5 * (2.0 * std::f64::consts::PI).ln());
        let half = T::from_f64(0.5);
        run_pointwise(
            "poisson",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let (mut v, d) = if log_input {
                    let e = p.exp();
                    (e - t * p, e - t)
                } else {
                    (p - t * (p + eps).ln(), T::ONE - t / (p + eps))
                };
                if full && t > T::ONE {
                    v += t * t.ln() - t + half * t.ln() + half_ln_2pi;
                }
                (v, d)
            },
        )
    }
}
