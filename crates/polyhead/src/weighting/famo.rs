//! Liu, Liu, Jin, Stone & Liu, "FAMO: Fast Adaptive Multitask
//! Optimization", NeurIPS 2023.

use polyhead_autograd::Parameter;
use polyhead_tensor::{Float, Tensor};

use super::{Combination, Needs, Step, Weighting, to_f64};
use crate::error::Result;

/// The softmax of FAMO's logits: the task weights `z`.
///
/// ```
/// let z = polyhead::weighting::softmax(&[0.0, 0.0]);
/// assert_eq!(z, vec![0.5, 0.5]);
/// ```
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The gradient FAMO applies to its logits after a step: with
/// `z = softmax(xi)` and each loss's decrease `delta_i = log L_i - log L_i'`
/// (before and after the update), `J^T delta` where `J = diag(z) - z z^T`,
/// i.e. `z_i (delta_i - sum_j z_j delta_j)`. Descending it moves weight
/// towards the losses that improved least.
///
/// ```
/// let g = polyhead::weighting::famo_logit_gradient(&[0.0, 0.0], &[0.2, 0.0]);
/// assert_eq!(g, vec![0.05, -0.05]); // z = (0.5, 0.5), mean delta 0.1
/// ```
pub fn famo_logit_gradient(logits: &[f64], delta: &[f64]) -> Vec<f64> {
    let z = softmax(logits);
    let mean: f64 = z.iter().zip(delta).map(|(a, b)| a * b).sum();
    z.iter().zip(delta).map(|(zi, d)| zi * (d - mean)).collect()
}

/// FAMO: logits `xi`, weights `z = softmax(xi)`, model objective
/// `sum_i z_i log L_i` (scaled by `1 / sum_i z_i / L_i`, so its gradient is
/// `sum_i z_i / (c L_i) grad L_i`), logits moved by Adam on
/// [`famo_logit_gradient`] after each step with weight decay `gamma`.
/// State: `weighting.logits`, `weighting.adam_m`, `weighting.adam_v`.
///
/// ```
/// use polyhead::weighting::{Famo, Weighting};
/// assert_eq!(Weighting::<f32>::name(&Famo::<f32>::new()), "famo");
/// ```
#[derive(Debug, Clone)]
pub struct Famo<T: Float> {
    lr: f64,
    gamma: f64,
    /// Logits and their Adam moments.
    state: Vec<Parameter<T>>,
    steps: u64,
}

impl<T: Float> Default for Famo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Famo<T> {
    /// The paper's defaults: logit learning rate 0.025, decay 0.001.
    ///
    /// ```
    /// let famo = polyhead::weighting::Famo::<f32>::new();
    /// # let _ = famo;
    /// ```
    pub fn new() -> Self {
        Famo {
            lr: 0.025,
            gamma: 0.001,
            state: Vec::new(),
            steps: 0,
        }
    }

    /// The current logits `xi`.
    ///
    /// ```
    /// let mut famo = polyhead::weighting::Famo::<f64>::new();
    /// polyhead::weighting::Weighting::prepare(&mut famo, &["a", "b"])?;
    /// assert_eq!(famo.logits(), vec![0.0, 0.0]);
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn logits(&self) -> Vec<f64> {
        self.state
            .first()
            .map(|p| to_f64(p.value()))
            .unwrap_or_default()
    }
}

const NAMES: [&str; 3] = ["logits", "adam_m", "adam_v"];

impl<T: Float> Weighting<T> for Famo<T> {
    fn name(&self) -> &str {
        "famo"
    }

    fn needs(&self) -> Needs {
        Needs {
            losses_after_step: true,
            ..Needs::default()
        }
    }

    fn prepare(&mut self, names: &[&str]) -> Result<()> {
        if self.state.len() != 3 {
            let zeros = || Tensor::zeros(&[names.len()]);
            self.state = vec![
                Parameter::new(zeros()?),
                Parameter::new(zeros()?),
                Parameter::new(zeros()?),
            ];
        }
        Ok(())
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let z = softmax(&self.logits());
        let c: f64 = z
            .iter()
            .zip(step.values)
            .map(|(zi, l)| zi / l.max(1e-12))
            .sum();
        Ok(Combination::Weights(
            z.iter()
                .zip(step.values)
                .map(|(zi, l)| zi / (c * l.max(1e-12)))
                .collect(),
        ))
    }

    fn after_step(&mut self, before: &[f64], after: Option<&[f64]>) -> Result<()> {
        let Some(after) = after else { return Ok(()) };
        let logits = self.logits();
        let eps = 1e-8;
        let delta: Vec<f64> = before
            .iter()
            .zip(after)
            .map(|(b, a)| (b + eps).ln() - (a + eps).ln())
            .collect();
        let grad: Vec<f64> = famo_logit_gradient(&logits, &delta)
            .iter()
            .zip(&logits)
            .map(|(g, x)| g + self.gamma * x)
            .collect();
        // Adam on the logits (the official implementation's optimizer).
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (0.9_f64, 0.999_f64);
        let mut m = to_f64(self.state[1].value());
        let mut v = to_f64(self.state[2].value());
        let mut x = logits;
        for i in 0..x.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
            v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
            let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
            x[i] -= self.lr * mh / (vh.sqrt() + 1e-8);
        }
        let k = x.len();
        let to = |v: &[f64]| Tensor::from_vec(v.iter().map(|&a| T::from_f64(a)).collect(), &[k]);
        self.state[0].set_value(to(&x)?)?;
        self.state[1].set_value(to(&m)?)?;
        self.state[2].set_value(to(&v)?)?;
        Ok(())
    }

    fn visit_state<'a>(&'a self, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        for (p, n) in self.state.iter().zip(NAMES) {
            f(n.into(), p);
        }
    }

    fn visit_state_mut<'a>(&'a mut self, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        for (p, n) in self.state.iter_mut().zip(NAMES) {
            f(n.into(), p);
        }
    }
}
