//! Kullback-Leibler divergence.

use polyhead_tensor::{Float, Tensor};

use crate::config::{Config, config_builders, run_pointwise};
use crate::cross_entropy::KERAS_EPSILON;
use crate::error::Result;
use crate::loss::Loss;
use crate::reduction::{Convention, LossOutput};
use crate::units::Aggregate;

/// KL divergence `sum y ln(y / p)` between a target distribution `y` and a
/// prediction.
///
/// - Keras' convention (`KLDivergence`, the default): the prediction holds
///   probabilities; both are clipped to `[1e-7, 1]`; the class (last) axis
///   is summed into one value per sample.
/// - PyTorch's convention (`kl_div`): the prediction holds
///   log-probabilities, each element is a value (`y (ln y - x)`, 0 where
///   `y = 0`), and [`crate::Reduction::BatchMean`] gives the true KL per
///   sample; with [`KlDivergence::log_target`] the target holds
///   log-probabilities too.
///
/// ```
/// use polyhead_losses::{KlDivergence, Loss};
/// use polyhead_tensor::Tensor;
/// let p = Tensor::from_vec(vec![0.5_f64, 0.5], &[1, 2])?;
/// let y = Tensor::from_vec(vec![1.0_f64, 0.0], &[1, 2])?;
/// let out = KlDivergence::new().value_and_grad(&p, &y, None)?;
/// // ln(1 / 0.5), plus the clipped term 1e-7 ln(1e-7 / 0.5) of the zero class
/// assert!((out.value.item()? - 2f64.ln()).abs() < 2e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KlDivergence {
    log_target: bool,
    config: Config,
}
config_builders!(KlDivergence);

impl KlDivergence {
    /// KL divergence with the default convention (Keras: probabilities in).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.5, 0.5], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![0.5, 0.5], &[1, 2])?;
    /// let out = KlDivergence::new().value_and_grad(&pred, &target, None)?;
    /// assert!(out.value.item()?.abs() < 1e-15); // identical distributions
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// PyTorch's `log_target`: the target holds log-probabilities.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let logp = Tensor::<f64>::from_vec(vec![0.5f64.ln(); 2], &[1, 2])?;
    /// let loss = KlDivergence::new().log_target(true).convention(Convention::PyTorch);
    /// assert!(loss.value_and_grad(&logp, &logp, None)?.value.item()?.abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }
}

impl<T: Float> Loss<T> for KlDivergence {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "kl_divergence"
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
        const NAME: &str = "kl_divergence";
        match self.config.convention {
            Convention::Keras => {
                let eps = T::from_f64(KERAS_EPSILON);
                run_pointwise(
                    NAME,
                    self.config,
                    Aggregate::Sum,
                    pred,
                    target,
                    w,
                    buffer,
                    |p, y, _| {
                        let (yc, pc) = (y.max(eps).min(T::ONE), p.max(eps).min(T::ONE));
                        let d = if p >= eps && p <= T::ONE {
                            -yc / pc
                        } else {
                            T::ZERO
                        };
                        (yc * (yc / pc).ln(), d)
                    },
                )
            }
            Convention::PyTorch => {
                let log_target = self.log_target;
                run_pointwise(
                    NAME,
                    self.config,
                    Aggregate::Sum,
                    pred,
                    target,
                    w,
                    buffer,
                    |x, y, _| {
                        if log_target {
                            let e = y.exp();
                            (e * (y - x), -e)
                        } else if y > T::ZERO {
                            (y * (y.ln() - x), -y)
                        } else {
                            (T::ZERO, -y)
                        }
                    },
                )
            }
        }
    }
}
