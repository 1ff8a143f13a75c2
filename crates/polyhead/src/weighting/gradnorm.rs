//! Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient
//! Normalization for Adaptive Loss Balancing in Deep Multitask Networks",
//! ICML 2018.

use polyhead_autograd::Parameter;
use polyhead_tensor::{Float, Tensor};

use super::{Combination, GradientSpace, Needs, Step, Weighting, to_f64};
use crate::error::{Error, Result};

/// One GradNorm update. With `G_i = w_i ||grad_W L_i||` on the last shared
/// layer `W`, the relative inverse training rate
/// `r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))`, and the constant target
/// `G_bar * r_i^alpha`, the loss `sum_i |G_i - target_i|` has gradient
/// `sign(G_i - target_i) ||grad_W L_i||` in `w_i`. One step of size `lr`,
/// then the weights are renormalised to sum to the number of losses (and
/// kept positive).
///
/// ```
/// // Two losses, equal rates: the targets are the mean norm, so the head
/// // with the larger gradient loses weight.
/// let w = polyhead::weighting::gradnorm_update(&[1.0, 1.0], &[3.0, 1.0], &[1.0, 1.0], &[1.0, 1.0], 1.5, 0.1);
/// // G = (3, 1), G_bar = 2: w0 -= 0.1 * 3, w1 += 0.1 * 1 -> (0.7, 1.1), renormalised to sum 2.
/// assert!((w[0] - 2.0 * 0.7 / 1.8).abs() < 1e-12 && (w[1] - 2.0 * 1.1 / 1.8).abs() < 1e-12);
/// ```
pub fn gradnorm_update(
    weights: &[f64],
    grad_norms: &[f64],
    losses: &[f64],
    initial: &[f64],
    alpha: f64,
    lr: f64,
) -> Vec<f64> {
    let k = weights.len() as f64;
    let g: Vec<f64> = weights.iter().zip(grad_norms).map(|(w, n)| w * n).collect();
    let g_bar = g.iter().sum::<f64>() / k;
    let rates: Vec<f64> = losses.iter().zip(initial).map(|(l, l0)| l / l0).collect();
    let mean_rate = rates.iter().sum::<f64>() / k;
    let mut w: Vec<f64> = weights
        .iter()
        .zip(&g)
        .zip(grad_norms.iter().zip(&rates))
        .map(|((w, gi), (n, r))| {
            let target = g_bar * (r / mean_rate).powf(alpha);
            let d = (gi - target).signum() * n;
            (w - lr * d).max(1e-6)
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v *= k / s);
    w
}

/// GradNorm: weights learned so that each loss's gradient norm on the last
/// shared layer tracks its relative training rate ([`gradnorm_update`]
/// after each step, learning rate 0.025). The weights replace the declared
/// ones. State: `weighting.weights`, `weighting.initial_losses`.
///
/// ```
/// use polyhead::weighting::{GradNorm, Weighting};
/// let cheap = GradNorm::<f32>::new(1.5).rep_grad(true);
/// assert_eq!(cheap.name(), "gradnorm");
/// ```
#[derive(Debug, Clone)]
pub struct GradNorm<T: Float> {
    alpha: f64,
    lr: f64,
    rep_grad: bool,
    /// The weights, and the losses at the first step.
    state: Vec<Parameter<T>>,
}

impl<T: Float> GradNorm<T> {
    /// GradNorm with asymmetry `alpha` (the paper uses 0.5 to 3).
    ///
    /// ```
    /// let g = polyhead::weighting::GradNorm::<f64>::new(1.5);
    /// # let _ = g;
    /// ```
    pub fn new(alpha: f64) -> Self {
        GradNorm {
            alpha,
            lr: 0.025,
            rep_grad: false,
            state: Vec::new(),
        }
    }

    /// Norms of the gradients with respect to the trunk's output instead of
    /// its last layer's kernel (LibMTL's `rep_grad`).
    ///
    /// ```
    /// let g = polyhead::weighting::GradNorm::<f64>::new(1.5).rep_grad(true);
    /// # let _ = g;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }

    /// The current weights.
    ///
    /// ```
    /// let mut g = polyhead::weighting::GradNorm::<f64>::new(1.5);
    /// polyhead::weighting::Weighting::prepare(&mut g, &["a", "b"])?;
    /// assert_eq!(g.weights(), vec![1.0, 1.0]);
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn weights(&self) -> Vec<f64> {
        self.state
            .first()
            .map(|p| to_f64(p.value()))
            .unwrap_or_default()
    }
}

const NAMES: [&str; 2] = ["weights", "initial_losses"];

impl<T: Float> Weighting<T> for GradNorm<T> {
    fn name(&self) -> &str {
        "gradnorm"
    }

    fn needs(&self) -> Needs {
        Needs {
            head_gradients: Some(if self.rep_grad {
                GradientSpace::Representation
            } else {
                GradientSpace::LastSharedLayer
            }),
            scale_by_loss_weights: false,
            losses_after_step: false,
        }
    }

    fn prepare(&mut self, names: &[&str]) -> Result<()> {
        if self.state.len() != 2 {
            let k = names.len();
            self.state = vec![
                Parameter::new(Tensor::ones(&[k])?),
                Parameter::new(Tensor::zeros(&[k])?),
            ];
        }
        Ok(())
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = step.head_gradients.ok_or_else(|| Error::Weighting {
            strategy: "gradnorm".into(),
            message: "no head gradients were given".into(),
        })?;
        let norms: Vec<f64> = rows
            .iter()
            .map(|g| g.iter().map(|x| x * x).sum::<f64>().sqrt())
            .collect();
        let weights = self.weights();
        let mut initial = to_f64(self.state[1].value());
        if initial.iter().all(|&v| v == 0.0) {
            initial = step.values.to_vec();
            self.state[1].set_value(Tensor::from_vec(
                initial.iter().map(|&v| T::from_f64(v)).collect(),
                &[initial.len()],
            )?)?;
        }
        let new = gradnorm_update(&weights, &norms, step.values, &initial, self.alpha, self.lr);
        self.state[0].set_value(Tensor::from_vec(
            new.iter().map(|&v| T::from_f64(v)).collect(),
            &[new.len()],
        )?)?;
        Ok(Combination::Weights(weights))
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
