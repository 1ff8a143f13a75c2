//! Learning-rate schedules, evaluated at the optimizer's step count.

/// The learning rate as a function of the number of optimizer steps taken
/// so far (0 for the first step).
///
/// ```
/// use polyhead_layers::Schedule;
/// let s = Schedule::Step { initial: 0.1, step_size: 10, gamma: 0.5 };
/// assert_eq!(s.at(9), 0.1);
/// assert_eq!(s.at(10), 0.05);
/// let c = Schedule::Cosine { initial: 1.0, decay_steps: 100, alpha: 0.0 };
/// assert_eq!(c.at(0), 1.0);
/// assert!(c.at(100).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// A fixed rate.
    Constant(f64),
    /// `initial * gamma^floor(step / step_size)` (PyTorch's `StepLR`, counted
    /// in optimizer steps).
    Step {
        /// The starting rate.
        initial: f64,
        /// Steps between decays.
        step_size: u64,
        /// The factor at each decay.
        gamma: f64,
    },
    /// `initial * decay_rate^(step / decay_steps)`, with the exponent floored
    /// when `staircase` (Keras' `ExponentialDecay`).
    Exponential {
        /// The starting rate.
        initial: f64,
        /// The factor per `decay_steps`.
        decay_rate: f64,
        /// Steps per factor.
        decay_steps: u64,
        /// Whether to decay in whole steps.
        staircase: bool,
    },
    /// Cosine decay from `initial` to `alpha * initial` over `decay_steps`,
    /// then constant (Keras' `CosineDecay` without warm-up).
    Cosine {
        /// The starting rate.
        initial: f64,
        /// Steps to reach the floor.
        decay_steps: u64,
        /// The floor as a fraction of `initial`.
        alpha: f64,
    },
}

impl Schedule {
    /// The rate for the step after `step` steps.
    ///
    /// ```
    /// use polyhead_layers::Schedule;
    /// let s = Schedule::Exponential { initial: 1.0, decay_rate: 0.1, decay_steps: 10, staircase: true };
    /// assert_eq!(s.at(9), 1.0);
    /// assert!((s.at(10) - 0.1).abs() < 1e-15);
    /// ```
    pub fn at(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant(lr) => lr,
            Schedule::Step {
                initial,
                step_size,
                gamma,
            } => initial * gamma.powi((step / step_size.max(1)) as i32),
            Schedule::Exponential {
                initial,
                decay_rate,
                decay_steps,
                staircase,
            } => {
                let p = step as f64 / decay_steps.max(1) as f64;
                initial * decay_rate.powf(if staircase { p.floor() } else { p })
            }
            Schedule::Cosine {
                initial,
                decay_steps,
                alpha,
            } => {
                let t = step.min(decay_steps) as f64 / decay_steps.max(1) as f64;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
                initial * ((1.0 - alpha) * cosine + alpha)
            }
        }
    }
}
