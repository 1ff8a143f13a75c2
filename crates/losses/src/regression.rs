//! Pointwise regression losses: squared, absolute, Huber and smooth L1,
//! log-cosh, percentage and squared-log errors. Under Keras' convention each
//! averages its last axis into one value per sample; under PyTorch's each
//! element is a value.

use polyhead_tensor::{Float, Tensor};

use crate::config::{Config, config_builders, run_pointwise};
use crate::cross_entropy::KERAS_EPSILON;
use crate::error::{LossError, Result};
use crate::loss::Loss;
use crate::reduction::LossOutput;
use crate::units::Aggregate;

/// `sign(e)` with `sign(0) = 0`: the subgradient of `|e|` at 0 that
/// TensorFlow and PyTorch both use.
fn sign<T: Float>(e: T) -> T {
    if e > T::ZERO {
        T::ONE
    } else if e < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    }
}

/// Mean squared error, `(pred - target)^2`: Keras' `MeanSquaredError`,
/// PyTorch's `mse_loss`.
///
/// ```
/// use polyhead_losses::{Loss, Mse};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![1.0_f64, 2.0, 3.0, 4.0], &[2, 2])?;
/// let target = Tensor::zeros(&[2, 2])?;
/// let out = Mse::new().value_and_grad(&pred, &target, None)?;
/// assert_eq!(out.value.item()?, 7.5);
/// assert_eq!(out.grad.to_vec(), vec![0.5, 1.0, 1.5, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Mse {
    config: Config,
}
config_builders!(Mse);

impl Mse {
    /// Mean squared error with the default convention (Keras) and reduction.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![3.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = Mse::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 4.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for Mse {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "mse"
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
        let two = T::from_f64(2.0);
        run_pointwise(
            "mse",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let e = p - t;
                (e * e, two * e)
            },
        )
    }
}

/// Mean absolute error, `|pred - target|`: Keras' `MeanAbsoluteError`,
/// PyTorch's `l1_loss`. The gradient at an exact match is 0.
///
/// ```
/// use polyhead_losses::{Loss, Mae};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![1.0_f64, -2.0, 0.0], &[1, 3])?;
/// let out = Mae::new().value_and_grad(&pred, &Tensor::zeros(&[1, 3])?, None)?;
/// assert_eq!(out.value.item()?, 1.0);
/// assert_eq!(out.grad.to_vec(), vec![1.0 / 3.0, -1.0 / 3.0, 0.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Mae {
    config: Config,
}
config_builders!(Mae);

impl Mae {
    /// Mean absolute error with the default convention and reduction.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![3.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = Mae::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 2.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for Mae {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "mae"
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
        run_pointwise(
            "mae",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let e = p - t;
                (e.abs(), sign(e))
            },
        )
    }
}

fn positive(loss: &'static str, name: &str, v: f64, allow_zero: bool) -> Result<()> {
    let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0));
    if ok {
        Ok(())
    } else {
        Err(LossError::Invalid {
            loss,
            message: format!(
                "{name} must be {}, got {v}",
                if allow_zero { ">= 0" } else { "> 0" }
            ),
        })
    }
}

/// Huber loss with threshold `delta`: `0.5 e^2` where `|e| <= delta`, else
/// `delta * (|e| - 0.5 delta)`. Keras' `Huber`, PyTorch's `huber_loss`.
///
/// ```
/// use polyhead_losses::{Huber, Loss};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![0.5_f64, 3.0], &[1, 2])?;
/// let out = Huber::new(1.0).value_and_grad(&pred, &Tensor::zeros(&[1, 2])?, None)?;
/// assert_eq!(out.value.item()?, (0.125 + 2.5) / 2.0);
/// assert_eq!(out.grad.to_vec(), vec![0.25, 0.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Huber {
    delta: f64,
    config: Config,
}
config_builders!(Huber);

impl Huber {
    /// Huber loss with threshold `delta` (> 0; Keras' and PyTorch's default is 1).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![3.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = Huber::new(0.5).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.875); // 0.5 * (2 - 0.25)
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(delta: f64) -> Self {
        Huber {
            delta,
            config: Config::default(),
        }
    }
}

impl<T: Float> Loss<T> for Huber {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "huber"
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
        positive("huber", "delta", self.delta, false)?;
        let d = T::from_f64(self.delta);
        let half = T::from_f64(0.5);
        run_pointwise(
            "huber",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let e = p - t;
                if e.abs() <= d {
                    (half * e * e, e)
                } else {
                    (d * (e.abs() - half * d), d * sign(e))
                }
            },
        )
    }
}

/// Smooth L1 loss with threshold `beta`: `0.5 e^2 / beta` where
/// `|e| < beta`, else `|e| - 0.5 beta`; `beta = 0` is plain L1. PyTorch's
/// `smooth_l1_loss` (equal to Huber with `delta = beta`, divided by `beta`).
///
/// ```
/// use polyhead_losses::{Convention, Loss, SmoothL1};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![0.5_f64, 3.0], &[2])?;
/// let loss = SmoothL1::new(1.0).convention(Convention::PyTorch);
/// let out = loss.value_and_grad(&pred, &Tensor::zeros(&[2])?, None)?;
/// assert_eq!(out.value.item()?, (0.125 + 2.5) / 2.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothL1 {
    beta: f64,
    config: Config,
}
config_builders!(SmoothL1);

impl SmoothL1 {
    /// Smooth L1 with threshold `beta` (>= 0; PyTorch's default is 1).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![3.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = SmoothL1::new(0.0).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 2.0); // beta 0 is L1
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(beta: f64) -> Self {
        SmoothL1 {
            beta,
            config: Config::default(),
        }
    }
}

impl<T: Float> Loss<T> for SmoothL1 {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "smooth_l1"
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
        positive("smooth_l1", "beta", self.beta, true)?;
        let b = T::from_f64(self.beta);
        let half = T::from_f64(0.5);
        run_pointwise(
            "smooth_l1",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let e = p - t;
                if e.abs() < b {
                    (half * e * e / b, e / b)
                } else {
                    (e.abs() - half * b, sign(e))
                }
            },
        )
    }
}

/// `log(cosh(pred - target))`, computed as `|e| + ln(1 + e^(-2|e|)) - ln 2`
/// (finite for any error): Keras' `LogCosh`. Keras subtracts `ln 2` as a
/// float32 constant, so its float64 values sit about 1.9e-9 lower; polyhead
/// uses the exact constant. The gradient is `tanh(e)`.
///
/// ```
/// use polyhead_losses::{LogCosh, Loss};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![1000.0_f64], &[1, 1])?;
/// let out = LogCosh::new().value_and_grad(&pred, &Tensor::zeros(&[1, 1])?, None)?;
/// assert_eq!(out.value.item()?, 1000.0 - 2f64.ln());
/// assert_eq!(out.grad.to_vec(), vec![1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LogCosh {
    config: Config,
}
config_builders!(LogCosh);

impl LogCosh {
    /// Log-cosh loss with the default convention and reduction.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![0.0], &[1, 1])?;
    /// let out = LogCosh::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for LogCosh {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "log_cosh"
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
        let ln2 = T::from_f64(std::f64::consts::LN_2);
        let two = T::from_f64(2.0);
        run_pointwise(
            "log_cosh",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let e = p - t;
                let a = e.abs();
                (a + (-two * a).exp().ln_1p() - ln2, e.tanh())
            },
        )
    }
}

/// Mean absolute percentage error, `100 |target - pred| / max(|target|, 1e-7)`:
/// Keras' `MeanAbsolutePercentageError`.
///
/// ```
/// use polyhead_losses::{Loss, MeanAbsolutePercentageError};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![110.0_f64], &[1, 1])?;
/// let target = Tensor::from_vec(vec![100.0_f64], &[1, 1])?;
/// let out = MeanAbsolutePercentageError::new().value_and_grad(&pred, &target, None)?;
/// assert!((out.value.item()? - 10.0).abs() < 1e-12);
/// assert_eq!(out.grad.to_vec(), vec![1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanAbsolutePercentageError {
    config: Config,
}
config_builders!(MeanAbsolutePercentageError);

impl MeanAbsolutePercentageError {
    /// MAPE with the default convention and reduction.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![2.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![4.0], &[1, 1])?;
    /// let out = MeanAbsolutePercentageError::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 50.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for MeanAbsolutePercentageError {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "mean_absolute_percentage_error"
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
        let eps = T::from_f64(KERAS_EPSILON);
        let hundred = T::from_f64(100.0);
        run_pointwise(
            "mean_absolute_percentage_error",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let scale = hundred / t.abs().max(eps);
                ((t - p).abs() * scale, sign(p - t) * scale)
            },
        )
    }
}

/// Mean squared logarithmic error,
/// `(ln(max(pred, 1e-7) + 1) - ln(max(target, 1e-7) + 1))^2`: Keras'
/// `MeanSquaredLogarithmicError`.
///
/// ```
/// use polyhead_losses::{Loss, MeanSquaredLogarithmicError};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![std::f64::consts::E - 1.0], &[1, 1])?;
/// let out = MeanSquaredLogarithmicError::new().value_and_grad(&pred, &Tensor::zeros(&[1, 1])?, None)?;
/// // The zero target is clipped to 1e-7 first, as in Keras.
/// let want = (1.0 - 1e-7_f64.ln_1p()).powi(2);
/// assert!((out.value.item()? - want).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanSquaredLogarithmicError {
    config: Config,
}
config_builders!(MeanSquaredLogarithmicError);

impl MeanSquaredLogarithmicError {
    /// MSLE with the default convention and reduction.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![1.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = MeanSquaredLogarithmicError::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for MeanSquaredLogarithmicError {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "mean_squared_logarithmic_error"
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
        let eps = T::from_f64(KERAS_EPSILON);
        let two = T::from_f64(2.0);
        run_pointwise(
            "mean_squared_logarithmic_error",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |p, t, _| {
                let lp = p.max(eps).ln_1p();
                let d = lp - t.max(eps).ln_1p();
                // At p == eps TensorFlow's maximum passes the gradient to p.
                let dp = if p >= eps {
                    T::ONE / (p.max(eps) + T::ONE)
                } else {
                    T::ZERO
                };
                (d * d, two * d * dp)
            },
        )
    }
}
