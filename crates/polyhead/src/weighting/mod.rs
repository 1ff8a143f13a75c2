//! Loss weighting beyond fixed numbers: strategies that set or learn each
//! loss's weight while training (uncertainty weighting, DWA, GradNorm,
//! PCGrad, FAMO). Pick one with [`crate::Trainer::weighting`]; it works with
//! any derived model. Each strategy's state (log-variances, loss history,
//! learned weights, logits) is kept in named parameters under `weighting.`,
//! so checkpoints save and restore it with the model.

mod rules;

use polyhead_autograd::{Gradients, ParamId, Parameter, Tape, Var};
use polyhead_layers::Module;
use polyhead_tensor::{Float, Rng, Tensor};

pub use rules::{dwa_weights, famo_logit_gradient, gradnorm_update, pcgrad_combine, softmax};

use crate::error::{Error, Result};

/// How a Kendall et al. uncertainty term treats one loss: with `s = log
/// sigma^2`, plain `exp(-s) L + s` (the common simplified form), regression
/// `0.5 exp(-s) L + 0.5 s` (the paper's Gaussian likelihood), or
/// classification `exp(-s) L + 0.5 s`.
///
/// ```
/// use polyhead::weighting::{UncertaintyKind, Weighting};
/// let w = Weighting::<f32>::uncertainty().kind("bbox", UncertaintyKind::Regression);
/// assert_eq!(w.name(), "uncertainty");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UncertaintyKind {
    /// `exp(-s) L + s`.
    #[default]
    Plain,
    /// `0.5 exp(-s) L + 0.5 s`.
    Regression,
    /// `exp(-s) L + 0.5 s`.
    Classification,
}

impl UncertaintyKind {
    fn factors(self) -> (f64, f64) {
        match self {
            UncertaintyKind::Plain => (1.0, 1.0),
            UncertaintyKind::Regression => (0.5, 0.5),
            UncertaintyKind::Classification => (1.0, 0.5),
        }
    }
}

/// The strategy the trainer uses to combine the losses.
///
/// ```
/// use polyhead::weighting::{UncertaintyKind, Weighting};
/// let fixed = Weighting::<f32>::Fixed;
/// let kendall = Weighting::<f32>::uncertainty().kind("bbox", UncertaintyKind::Regression);
/// let dwa = Weighting::<f32>::dwa(2.0);
/// let gradnorm = Weighting::<f32>::gradnorm(1.5);
/// let pcgrad = Weighting::<f32>::pcgrad().rep_grad(true);
/// let famo = Weighting::<f32>::famo();
/// assert_eq!(pcgrad.name(), "pcgrad");
/// # let _ = (fixed, kendall, dwa, gradnorm, famo);
/// ```
#[derive(Debug, Clone, Default)]
pub enum Weighting<T: Float> {
    /// The loss weights as given (Keras' `loss_weights`).
    #[default]
    Fixed,
    /// Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to
    /// Weigh Losses", CVPR 2018: a learnable log-variance `s_i` per loss,
    /// trained by the same optimizer; total `sum_i c_i exp(-s_i) w_i L_i + d_i s_i`.
    Uncertainty {
        /// The log-variances, one per loss, as parameters.
        log_vars: Vec<Parameter<T>>,
        /// Per-loss kind (by name); others are [`UncertaintyKind::Plain`].
        kinds: Vec<(String, UncertaintyKind)>,
    },
    /// Dynamic Weight Averaging (Liu et al., CVPR 2019), temperature `T`:
    /// see [`dwa_weights`]; weights 1 for the first two epochs.
    Dwa {
        /// The temperature.
        temperature: f64,
        /// Epoch-mean losses of the last two epochs, `[2, K]` (row 1 is the latest).
        history: Parameter<T>,
        /// Sums of this epoch's losses and the step count.
        running: (Vec<f64>, usize),
        /// The weights in force.
        weights: Vec<f64>,
    },
    /// GradNorm (Chen et al., ICML 2018): weights learned so that each
    /// loss's gradient norm on the last shared layer tracks its relative
    /// training rate; see [`gradnorm_update`].
    GradNorm {
        /// The asymmetry `alpha`.
        alpha: f64,
        /// The learning rate of the weights.
        lr: f64,
        /// Gradients with respect to the trunk's output instead of its last
        /// layer's parameters (LibMTL's `rep_grad`).
        rep_grad: bool,
        /// The weights, and the losses at the first step, as parameters.
        state: Vec<Parameter<T>>,
    },
    /// PCGrad (Yu et al., NeurIPS 2020): per-loss gradients on the shared
    /// parameters, conflicting ones projected; see [`pcgrad_combine`].
    PcGrad {
        /// Gradients with respect to the trunk's output (cheap mode).
        rep_grad: bool,
        /// The order of projections.
        rng: Rng,
    },
    /// FAMO (Liu et al., NeurIPS 2023): logits `xi`, weights `z =
    /// softmax(xi)`, model objective `sum_i z_i log L_i` (scaled by
    /// `1 / sum_i z_i / L_i`), logits moved by Adam on
    /// [`famo_logit_gradient`] after each step, with decay `gamma`.
    Famo {
        /// The logits' learning rate (the paper's 0.025).
        lr: f64,
        /// The logits' weight decay (the paper's 0.001).
        gamma: f64,
        /// Logits and their Adam moments, as parameters.
        state: Vec<Parameter<T>>,
        /// Adam's step count.
        steps: u64,
    },
}

impl<T: Float> Weighting<T> {
    /// Uncertainty weighting with every loss [`UncertaintyKind::Plain`].
    ///
    /// ```
    /// assert_eq!(polyhead::weighting::Weighting::<f32>::uncertainty().name(), "uncertainty");
    /// ```
    pub fn uncertainty() -> Self {
        Weighting::Uncertainty {
            log_vars: Vec::new(),
            kinds: Vec::new(),
        }
    }

    /// Sets one loss's uncertainty kind (uncertainty weighting only).
    ///
    /// ```
    /// use polyhead::weighting::{UncertaintyKind, Weighting};
    /// let w = Weighting::<f64>::uncertainty().kind("class", UncertaintyKind::Classification);
    /// # let _ = w;
    /// ```
    pub fn kind(mut self, name: &str, kind: UncertaintyKind) -> Self {
        if let Weighting::Uncertainty { kinds, .. } = &mut self {
            kinds.push((name.to_string(), kind));
        }
        self
    }

    /// DWA with temperature `T` (the paper uses 2).
    ///
    /// ```
    /// assert_eq!(polyhead::weighting::Weighting::<f32>::dwa(2.0).name(), "dwa");
    /// ```
    pub fn dwa(temperature: f64) -> Self {
        Weighting::Dwa {
            temperature,
            history: Parameter::new(Tensor::zeros(&[0]).expect("empty")),
            running: (Vec::new(), 0),
            weights: Vec::new(),
        }
    }

    /// GradNorm with asymmetry `alpha` (the paper uses 0.5 to 3) and weight
    /// learning rate 0.025.
    ///
    /// ```
    /// assert_eq!(polyhead::weighting::Weighting::<f32>::gradnorm(1.5).name(), "gradnorm");
    /// ```
    pub fn gradnorm(alpha: f64) -> Self {
        Weighting::GradNorm {
            alpha,
            lr: 0.025,
            rep_grad: false,
            state: Vec::new(),
        }
    }

    /// PCGrad.
    ///
    /// ```
    /// assert_eq!(polyhead::weighting::Weighting::<f32>::pcgrad().name(), "pcgrad");
    /// ```
    pub fn pcgrad() -> Self {
        Weighting::PcGrad {
            rep_grad: false,
            rng: Rng::new(0),
        }
    }

    /// FAMO with the paper's defaults.
    ///
    /// ```
    /// assert_eq!(polyhead::weighting::Weighting::<f32>::famo().name(), "famo");
    /// ```
    pub fn famo() -> Self {
        Weighting::Famo {
            lr: 0.025,
            gamma: 0.001,
            state: Vec::new(),
            steps: 0,
        }
    }

    /// The cheap mode of the gradient-based strategies (GradNorm, PCGrad):
    /// gradients with respect to the trunk's output.
    ///
    /// ```
    /// let cheap = polyhead::weighting::Weighting::<f32>::gradnorm(1.5).rep_grad(true);
    /// # let _ = cheap;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        match &mut self {
            Weighting::GradNorm { rep_grad, .. } | Weighting::PcGrad { rep_grad, .. } => {
                *rep_grad = on
            }
            _ => {}
        }
        self
    }

    /// The strategy's name.
    ///
    /// ```
    /// assert_eq!(polyhead::weighting::Weighting::<f32>::Fixed.name(), "fixed");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Weighting::Fixed => "fixed",
            Weighting::Uncertainty { .. } => "uncertainty",
            Weighting::Dwa { .. } => "dwa",
            Weighting::GradNorm { .. } => "gradnorm",
            Weighting::PcGrad { .. } => "pcgrad",
            Weighting::Famo { .. } => "famo",
        }
    }

    /// Creates the per-loss state for these losses (done at the first step;
    /// call it before loading a checkpoint into a fresh strategy).
    ///
    /// ```
    /// let mut w = polyhead::weighting::Weighting::<f32>::famo();
    /// w.prepare(&["class", "bbox"])?;
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn prepare(&mut self, names: &[&str]) -> Result<()> {
        self.ensure_state(names)
    }

    /// Creates the per-loss state on first use (`k` losses).
    fn ensure_state(&mut self, names: &[&str]) -> Result<()> {
        let k = names.len();
        let zeros = |n: usize| Parameter::new(Tensor::zeros(&[n]).expect("small"));
        match self {
            Weighting::Uncertainty { log_vars, .. } if log_vars.len() != k => {
                *log_vars = (0..k)
                    .map(|_| Parameter::new(Tensor::scalar(T::ZERO)))
                    .collect()
            }
            Weighting::Dwa {
                history,
                weights,
                running,
                ..
            } if weights.len() != k => {
                *history = Parameter::new(Tensor::zeros(&[2, k])?);
                *weights = vec![1.0; k];
                *running = (vec![0.0; k], 0);
            }
            Weighting::GradNorm { state, .. } if state.len() != 2 => {
                *state = vec![Parameter::new(Tensor::ones(&[k])?), zeros(k)]
            }
            Weighting::Famo { state, .. } if state.len() != 3 => {
                *state = vec![zeros(k), zeros(k), zeros(k)]
            }
            _ => {}
        }
        Ok(())
    }

    /// The weight each loss effectively gets this step (for logs).
    fn effective(&self, user: &[f64], values: &[f64], names: &[&str]) -> Vec<f64> {
        match self {
            Weighting::Fixed | Weighting::PcGrad { .. } => user.to_vec(),
            Weighting::Uncertainty { log_vars, kinds } => log_vars
                .iter()
                .zip(user)
                .zip(names)
                .map(|((s, w), n)| {
                    let kind = kinds
                        .iter()
                        .find(|(k, _)| k == n)
                        .map_or(UncertaintyKind::Plain, |k| k.1);
                    kind.factors().0 * (-s.value().item().map_or(0.0, |v| v.to_f64())).exp() * w
                })
                .collect(),
            Weighting::Dwa { weights, .. } => {
                weights.iter().zip(user).map(|(a, b)| a * b).collect()
            }
            Weighting::GradNorm { state, .. } => state[0]
                .value()
                .to_vec()
                .iter()
                .map(|v| v.to_f64())
                .collect(),
            Weighting::Famo { state, .. } => {
                let z = softmax(
                    &state[0]
                        .value()
                        .to_vec()
                        .iter()
                        .map(|v| v.to_f64())
                        .collect::<Vec<_>>(),
                );
                let c: f64 = z.iter().zip(values).map(|(zi, l)| zi / l.max(1e-12)).sum();
                z.iter()
                    .zip(values)
                    .map(|(zi, l)| zi / (c * l.max(1e-12)))
                    .collect()
            }
        }
    }
}

/// What one training step needs from the strategy.
pub(crate) struct StepResult<T: Float> {
    /// The gradient of every parameter (model and strategy) by id.
    pub grads: Vec<(ParamId, Tensor<T>)>,
    /// The objective's value (logged as `loss`).
    pub total: f64,
    /// Each loss's effective weight.
    pub weights: Vec<f64>,
}

fn var_value<T: Float>(v: Var<'_, T>) -> Result<f64> {
    Ok(v.value().item()?.to_f64())
}

impl<T: Float> Weighting<T> {
    /// Builds the objective on the tape, differentiates it (with gradient
    /// surgery where the strategy does it) and updates learned weights.
    /// `shared` are the trunk's parameters (by name), `all_params` every
    /// model parameter.
    // Each argument is a distinct input of the step, passed through once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step<'t>(
        &mut self,
        tape: &'t Tape<T>,
        parts: &[Var<'t, T>],
        names: &[&str],
        user: &[f64],
        features: Option<Var<'t, T>>,
        shared: &[(String, ParamId)],
        all_params: &[ParamId],
    ) -> Result<StepResult<T>> {
        if parts.len() != user.len() || parts.len() != names.len() {
            return Err(Error::LossWeightCount {
                context: "loss weighting",
                losses: parts.len(),
                names: names.join(", "),
                weights: user.len(),
            });
        }
        self.ensure_state(names)?;
        let values: Vec<f64> = parts.iter().map(|&p| var_value(p)).collect::<Result<_>>()?;
        let weights = self.effective(user, &values, names);
        // One recorded op for the weighted total (as `weighted_loss` does).
        let weighted_sum = |w: &[f64]| -> Result<Var<'t, T>> {
            if parts.len() != w.len() {
                return Err(Error::LossWeightCount {
                    context: "loss weighting",
                    losses: parts.len(),
                    names: names.join(", "),
                    weights: w.len(),
                });
            }
            let n = parts.len();
            if n == 0 {
                return Err(Error::Other("no losses to weigh".into()));
            }
            let w: Vec<T> = w[..n].iter().map(|&wi| T::from_f64(wi)).collect();
            Ok(tape.weighted_sum(&parts[..n], &w)?)
        };
        let from = |grads: &Gradients<T>, ids: &[ParamId]| -> Vec<(ParamId, Tensor<T>)> {
            ids.iter()
                .filter_map(|&id| grads.by_id(id).map(|g| (id, g.clone())))
                .collect()
        };
        match self {
            Weighting::Fixed | Weighting::Dwa { .. } => {
                let total = weighted_sum(&weights)?;
                let grads = tape.backward(total)?;
                Ok(StepResult {
                    grads: from(&grads, all_params),
                    total: var_value(total)?,
                    weights,
                })
            }
            Weighting::Uncertainty { log_vars, kinds } => {
                let mut total: Option<Var<'t, T>> = None;
                for (((p, s), &w), n) in parts.iter().zip(log_vars.iter()).zip(user).zip(names) {
                    let kind = kinds
                        .iter()
                        .find(|(k, _)| k == n)
                        .map_or(UncertaintyKind::Plain, |k| k.1);
                    let (c, d) = kind.factors();
                    let s = tape.param(s);
                    let term = s
                        .neg()
                        .exp()
                        .mul(p.scale(T::from_f64(c * w)))?
                        .add(s.scale(T::from_f64(d)))?;
                    total = Some(match total {
                        Some(t) => t.add(term)?,
                        None => term,
                    });
                }
                let total = total.ok_or_else(|| Error::Other("no losses to weigh".into()))?;
                let grads = tape.backward(total)?;
                let mut ids = all_params.to_vec();
                ids.extend(log_vars.iter().map(Parameter::id));
                Ok(StepResult {
                    grads: from(&grads, &ids),
                    total: var_value(total)?,
                    weights,
                })
            }
            Weighting::Famo { .. } => {
                // Objective sum_i z_i log L_i / c, with c = sum_i z_i / L_i a
                // constant: its gradient is sum_i (z_i / (c L_i)) grad L_i.
                let total = weighted_sum(&weights)?;
                let grads = tape.backward(total)?;
                Ok(StepResult {
                    grads: from(&grads, all_params),
                    total: var_value(total)?,
                    weights,
                })
            }
            Weighting::GradNorm {
                alpha,
                lr,
                rep_grad,
                state,
            } => {
                if shared.is_empty() {
                    return Err(Error::Other(
                        "GradNorm needs shared parameters: a #[trunk], or #[layer(shared)] fields beside a forward of your own".into(),
                    ));
                }
                let total = weighted_sum(&weights)?;
                let grads = tape.backward(total)?;
                // ||grad_W L_i|| on the last shared layer (or the trunk's output).
                let last = shared
                    .iter()
                    .rev()
                    .find(|(n, _)| n.ends_with("kernel"))
                    .unwrap_or(shared.last().expect("non-empty"))
                    .1;
                let mut norms = Vec::with_capacity(parts.len());
                for &p in parts {
                    let g = tape.backward(p)?;
                    let v = match (*rep_grad, features) {
                        (true, Some(f)) => g.wrt(f)?.to_vec(),
                        _ => g.by_id(last).map(|t| t.to_vec()).unwrap_or_default(),
                    };
                    norms.push(
                        v.iter()
                            .map(|x| x.to_f64() * x.to_f64())
                            .sum::<f64>()
                            .sqrt(),
                    );
                }
                let mut initial: Vec<f64> = state[1]
                    .value()
                    .to_vec()
                    .iter()
                    .map(|v| v.to_f64())
                    .collect();
                if initial.iter().all(|&v| v == 0.0) {
                    initial = values.clone();
                    state[1].set_value(Tensor::from_vec(
                        initial.iter().map(|&v| T::from_f64(v)).collect(),
                        &[initial.len()],
                    )?)?;
                }
                let new_w = gradnorm_update(&weights, &norms, &values, &initial, *alpha, *lr);
                state[0].set_value(Tensor::from_vec(
                    new_w.iter().map(|&v| T::from_f64(v)).collect(),
                    &[new_w.len()],
                )?)?;
                Ok(StepResult {
                    grads: from(&grads, all_params),
                    total: var_value(total)?,
                    weights,
                })
            }
            Weighting::PcGrad { rep_grad, rng } => {
                if shared.is_empty() {
                    return Err(Error::Other(
                        "PCGrad needs shared parameters: a #[trunk], or #[layer(shared)] fields beside a forward of your own".into(),
                    ));
                }
                let total = weighted_sum(&weights)?;
                let grads = tape.backward(total)?;
                let shared_ids: Vec<ParamId> = shared.iter().map(|(_, id)| *id).collect();
                let mut out: Vec<(ParamId, Tensor<T>)> = from(&grads, all_params)
                    .into_iter()
                    .filter(|(id, _)| !shared_ids.contains(id))
                    .collect();
                match (*rep_grad, features) {
                    (true, Some(f)) => {
                        let mut per = Vec::new();
                        for (&p, &w) in parts.iter().zip(&weights) {
                            per.push(
                                tape.backward(p.scale(T::from_f64(w)))?
                                    .wrt(f)?
                                    .to_vec()
                                    .iter()
                                    .map(|v| v.to_f64())
                                    .collect::<Vec<f64>>(),
                            );
                        }
                        let combined = pcgrad_combine(&per, rng);
                        let seed = Tensor::from_vec(
                            combined.iter().map(|&v| T::from_f64(v)).collect(),
                            &f.shape(),
                        )?;
                        let g = tape.backward_with_seed(f, &seed)?;
                        out.extend(from(&g, &shared_ids));
                    }
                    _ => {
                        // Flatten the shared parameters' gradients per loss.
                        let mut per = Vec::new();
                        let mut shapes: Vec<(ParamId, Vec<usize>, usize)> = Vec::new();
                        for (k, (&p, &w)) in parts.iter().zip(&weights).enumerate() {
                            let g = tape.backward(p.scale(T::from_f64(w)))?;
                            let mut flat = Vec::new();
                            for &id in &shared_ids {
                                let shape_len =
                                    grads.by_id(id).map(|t| (t.shape().to_vec(), t.len()));
                                let Some((shape, len)) = shape_len else {
                                    continue;
                                };
                                if k == 0 {
                                    shapes.push((id, shape, len));
                                }
                                match g.by_id(id) {
                                    Some(t) => flat.extend(t.to_vec().iter().map(|v| v.to_f64())),
                                    None => flat.extend(std::iter::repeat_n(0.0, len)),
                                }
                            }
                            per.push(flat);
                        }
                        let combined = pcgrad_combine(&per, rng);
                        let mut at = 0;
                        for (id, shape, len) in shapes {
                            let v = combined[at..at + len]
                                .iter()
                                .map(|&v| T::from_f64(v))
                                .collect();
                            out.push((id, Tensor::from_vec(v, &shape)?));
                            at += len;
                        }
                    }
                }
                Ok(StepResult {
                    grads: out,
                    total: var_value(total)?,
                    weights,
                })
            }
        }
    }

    /// After the optimizer step: FAMO moves its logits using the losses on
    /// the same batch before (`before`) and after (`after`) the update.
    pub(crate) fn after_step(&mut self, before: &[f64], after: &[f64]) -> Result<()> {
        if let Weighting::Famo {
            lr,
            gamma,
            state,
            steps,
        } = self
        {
            let logits: Vec<f64> = state[0]
                .value()
                .to_vec()
                .iter()
                .map(|v| v.to_f64())
                .collect();
            let eps = 1e-8;
            let delta: Vec<f64> = before
                .iter()
                .zip(after)
                .map(|(b, a)| (b + eps).ln() - (a + eps).ln())
                .collect();
            let grad: Vec<f64> = famo_logit_gradient(&logits, &delta)
                .iter()
                .zip(&logits)
                .map(|(g, x)| g + *gamma * x)
                .collect();
            // Adam on the logits (the official implementation's optimizer).
            *steps += 1;
            let t = *steps as i32;
            let (b1, b2) = (0.9_f64, 0.999_f64);
            let mut m: Vec<f64> = state[1]
                .value()
                .to_vec()
                .iter()
                .map(|v| v.to_f64())
                .collect();
            let mut v: Vec<f64> = state[2]
                .value()
                .to_vec()
                .iter()
                .map(|v| v.to_f64())
                .collect();
            let mut x = logits;
            for i in 0..x.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
                v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                x[i] -= *lr * mh / (vh.sqrt() + 1e-8);
            }
            let k = x.len();
            let to =
                |v: &[f64]| Tensor::from_vec(v.iter().map(|&a| T::from_f64(a)).collect(), &[k]);
            state[0].set_value(to(&x)?)?;
            state[1].set_value(to(&m)?)?;
            state[2].set_value(to(&v)?)?;
        }
        Ok(())
    }

    /// Whether [`Weighting::after_step`] needs the losses after the update.
    pub(crate) fn needs_losses_after_step(&self) -> bool {
        matches!(self, Weighting::Famo { .. })
    }

    /// Each step's unweighted losses, for DWA's epoch means.
    pub(crate) fn record_losses(&mut self, values: &[f64]) {
        if let Weighting::Dwa { running, .. } = self {
            running.0.iter_mut().zip(values).for_each(|(s, v)| *s += v);
            running.1 += 1;
        }
    }

    /// At an epoch's end: DWA shifts its history and sets the next weights.
    pub(crate) fn epoch_end(&mut self) -> Result<()> {
        if let Weighting::Dwa {
            temperature,
            history,
            running,
            weights,
        } = self
        {
            if running.1 == 0 {
                return Ok(());
            }
            let k = weights.len();
            let means: Vec<f64> = running.0.iter().map(|s| s / running.1 as f64).collect();
            let old: Vec<f64> = history
                .value()
                .to_vec()
                .iter()
                .map(|v| v.to_f64())
                .collect();
            let mut new = old[k..].to_vec();
            new.extend(&means);
            history.set_value(Tensor::from_vec(
                new.iter().map(|&v| T::from_f64(v)).collect(),
                &[2, k],
            )?)?;
            if new[..k].iter().all(|&v| v > 0.0) {
                *weights = dwa_weights(&new[..k], &new[k..], *temperature);
            }
            *running = (vec![0.0; k], 0);
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, &Parameter<T>)> {
        match self {
            Weighting::Fixed | Weighting::PcGrad { .. } => vec![],
            Weighting::Uncertainty { log_vars, .. } => log_vars
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("log_var.{i}"), p))
                .collect(),
            Weighting::Dwa { history, .. } => vec![("loss_history".into(), history)],
            Weighting::GradNorm { state, .. } => vec![
                ("weights".into(), &state[0]),
                ("initial_losses".into(), &state[1]),
            ],
            Weighting::Famo { state, .. } => vec![
                ("logits".into(), &state[0]),
                ("adam_m".into(), &state[1]),
                ("adam_v".into(), &state[2]),
            ],
        }
    }
}

/// A model and its weighting strategy as one module, so the optimizer steps
/// both and checkpoints save both (the strategy under `weighting.`).
pub(crate) struct Joint<'a, M, T: Float> {
    pub model: &'a mut M,
    pub weighting: &'a mut Weighting<T>,
}

impl<M: Module<T>, T: Float> Module<T> for Joint<'_, M, T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> polyhead_layers::Result<Var<'t, T>> {
        self.model.forward(x)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        self.model.visit_parameters(prefix, f);
        for (name, p) in self.weighting.state() {
            f(format!("{prefix}weighting.{name}"), p);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        self.model.visit_parameters_mut(prefix, f);
        let named: Vec<(String, &'a mut Parameter<T>)> = match &mut *self.weighting {
            Weighting::Fixed | Weighting::PcGrad { .. } => vec![],
            Weighting::Uncertainty { log_vars, .. } => log_vars
                .iter_mut()
                .enumerate()
                .map(|(i, p)| (format!("log_var.{i}"), p))
                .collect(),
            Weighting::Dwa { history, .. } => vec![("loss_history".into(), history)],
            Weighting::GradNorm { state, .. } => {
                let mut it = state.iter_mut();
                let w = it.next();
                let l = it.next();
                w.map(|p| ("weights".to_string(), p))
                    .into_iter()
                    .chain(l.map(|p| ("initial_losses".to_string(), p)))
                    .collect()
            }
            Weighting::Famo { state, .. } => state
                .iter_mut()
                .zip(["logits", "adam_m", "adam_v"])
                .map(|(p, n)| (n.to_string(), p))
                .collect(),
        };
        for (name, p) in named {
            f(format!("{prefix}weighting.{name}"), p);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.model.set_training(training);
    }
}
