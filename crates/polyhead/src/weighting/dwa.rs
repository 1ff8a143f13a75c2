//! Dynamic Weight Averaging: Liu, Johns & Davison, "End-to-End Multi-Task
//! Learning with Attention", CVPR 2019.

use polyhead_autograd::Parameter;
use polyhead_tensor::{Float, Tensor};

use super::{Combination, Step, Weighting, times, to_f64};
use crate::error::Result;

/// DWA's weights from each loss's last two epoch means:
/// `r_i = L_i(t-1) / L_i(t-2)` and `w_i = K exp(r_i / T) / sum_j exp(r_j / T)`.
///
/// ```
/// let w = polyhead::weighting::dwa_weights(&[1.0, 1.0], &[0.5, 1.0], 2.0);
/// // r = (0.5, 1.0); the loss that fell less gets more weight.
/// let (a, b) = ((0.25f64).exp(), (0.5f64).exp());
/// assert!((w[0] - 2.0 * a / (a + b)).abs() < 1e-15);
/// assert!((w[1] - 2.0 * b / (a + b)).abs() < 1e-15);
/// ```
pub fn dwa_weights(before_last: &[f64], last: &[f64], temperature: f64) -> Vec<f64> {
    let k = last.len() as f64;
    let e: Vec<f64> = last
        .iter()
        .zip(before_last)
        .map(|(l, p)| (l / p / temperature).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| k * v / s).collect()
}

/// Dynamic Weight Averaging with temperature `T` (the paper uses 2):
/// weights 1 for the first two epochs, then [`dwa_weights`] of the epoch
/// means, times the declared weights. State: `weighting.loss_history`
/// (`[2, K]`, the last two epochs' means).
///
/// ```
/// use polyhead::weighting::{Dwa, Weighting};
/// assert_eq!(Weighting::<f32>::name(&Dwa::<f32>::new(2.0)), "dwa");
/// ```
#[derive(Debug, Clone)]
pub struct Dwa<T: Float> {
    temperature: f64,
    history: Parameter<T>,
    /// Sums of this epoch's losses and the step count.
    running: (Vec<f64>, usize),
    weights: Vec<f64>,
}

impl<T: Float> Dwa<T> {
    /// DWA with temperature `temperature`.
    ///
    /// ```
    /// let dwa = polyhead::weighting::Dwa::<f64>::new(2.0);
    /// # let _ = dwa;
    /// ```
    pub fn new(temperature: f64) -> Self {
        Dwa {
            temperature,
            history: Parameter::new(Tensor::zeros(&[0]).expect("an empty tensor")),
            running: (Vec::new(), 0),
            weights: Vec::new(),
        }
    }
}

impl<T: Float> Weighting<T> for Dwa<T> {
    fn name(&self) -> &str {
        "dwa"
    }

    fn prepare(&mut self, names: &[&str]) -> Result<()> {
        let k = names.len();
        if self.weights.len() != k {
            self.history = Parameter::new(Tensor::zeros(&[2, k])?);
            self.weights = vec![1.0; k];
            self.running = (vec![0.0; k], 0);
        }
        Ok(())
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        Ok(Combination::Weights(times(
            &self.weights,
            step.loss_weights,
        )))
    }

    fn after_step(&mut self, before: &[f64], _: Option<&[f64]>) -> Result<()> {
        let (sums, steps) = &mut self.running;
        sums.iter_mut().zip(before).for_each(|(s, v)| *s += v);
        *steps += 1;
        Ok(())
    }

    fn end_epoch(&mut self) -> Result<()> {
        let (sums, steps) = &self.running;
        if *steps == 0 {
            return Ok(());
        }
        let k = self.weights.len();
        let means: Vec<f64> = sums.iter().map(|s| s / *steps as f64).collect();
        let mut new = to_f64(self.history.value())[k..].to_vec();
        new.extend(&means);
        self.history.set_value(Tensor::from_vec(
            new.iter().map(|&v| T::from_f64(v)).collect(),
            &[2, k],
        )?)?;
        if new[..k].iter().all(|&v| v > 0.0) {
            self.weights = dwa_weights(&new[..k], &new[k..], self.temperature);
        }
        self.running = (vec![0.0; k], 0);
        Ok(())
    }

    fn visit_state<'a>(&'a self, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        f("loss_history".into(), &self.history);
    }

    fn visit_state_mut<'a>(&'a mut self, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        f("loss_history".into(), &mut self.history);
    }
}
