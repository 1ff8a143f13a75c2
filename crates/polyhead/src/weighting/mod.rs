//! Loss weighting beyond fixed numbers: strategies that set or learn each
//! loss's weight while training, or combine the heads' gradients on the
//! shared parameters. Each is one implementation of [`Weighting`], in its
//! own file beside the paper it follows; a strategy of your own implements
//! the same trait. Pick one with [`crate::Trainer::weighting`].
//!
//! | strategy | what it does | gradients it needs |
//! |---|---|---|
//! | [`Fixed`] | the declared loss weights (Keras' `loss_weights`) | none |
//! | [`Uncertainty`] | learned log-variances (Kendall et al. 2018) | none (its own objective) |
//! | [`Dwa`] | weights from each loss's rate of descent (Liu et al. 2019) | none |
//! | [`GradNorm`] | weights that balance gradient norms (Chen et al. 2018) | norms on the last shared layer |
//! | [`PcGrad`] | conflicting gradients projected (Yu et al. 2020) | per head, shared |
//! | [`Famo`] | weights from each loss's improvement (Liu et al. 2023) | none (losses after the step) |
//! | [`Mgda`] | min-norm point of the gradients' hull (Sener & Koltun 2018) | per head, shared or representation |
//! | [`ImtlG`] | equal projections on every head (Liu et al. 2021) | per head |
//! | [`CaGrad`] | best worst-case ascent near the mean (Liu et al. 2021) | per head |
//! | [`NashMtl`] | Nash bargaining over the heads (Navon et al. 2022) | per head, shared |
//! | [`AlignedMtl`] | gradients aligned to condition number 1 (Senushkin et al. 2023) | per head |
//! | [`UpGrad`] | each gradient projected on the dual cone (Quinton & Rey 2024) | per head |
//!
//! A strategy's state (log-variances, loss history, learned weights,
//! logits) is kept in named parameters that checkpoints save and restore
//! under `weighting.` with the model.
//!
//! ```
//! use polyhead::prelude::*;
//! use polyhead::weighting::{Combination, Step, Weighting};
//!
//! /// Weighs each head by the inverse of its current loss (all heads then
//! /// contribute 1 to the total), on top of the declared weights.
//! struct InverseLoss;
//!
//! impl<T: Float> Weighting<T> for InverseLoss {
//!     fn name(&self) -> &str {
//!         "inverse_loss"
//!     }
//!     fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> polyhead::Result<Combination<'t, T>> {
//!         Ok(Combination::Weights(
//!             step.values.iter().zip(step.loss_weights).map(|(l, w)| w / l.max(1e-12)).collect(),
//!         ))
//!     }
//! }
//!
//! #[derive(MultiOutput)]
//! struct Net {
//!     #[trunk]
//!     body: Dense,
//!     #[head(loss = Mse::new())]
//!     a: Dense,
//!     #[head(loss = Mse::new())]
//!     b: Dense,
//! }
//! let mut rng = Rng::new(0);
//! let mut net = Net { body: Dense::new(2, 4, &mut rng)?, a: Dense::new(4, 1, &mut rng)?, b: Dense::new(4, 1, &mut rng)? };
//! let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
//! let targets = NetTargets::new(x.sum_axis(1, true)?, x.sum_axis(1, true)?.mul_scalar(10.0));
//! let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.01).build())
//!     .weighting(InverseLoss)
//!     .progress(polyhead::Progress::Silent);
//! let history = trainer.fit(&mut net, &x, &targets)?;
//! assert!(history.get("weight_b").unwrap()[0] < history.get("weight_a").unwrap()[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aligned_mtl;
mod cagrad;
mod dwa;
mod famo;
mod fixed;
mod gradnorm;
mod imtl;
mod mgda;
mod nash_mtl;
mod pcgrad;
mod uncertainty;
mod upgrad;

use polyhead_autograd::{Gradients, ParamId, Parameter, Tape, Var};
use polyhead_layers::Module;
use polyhead_tensor::{Float, Tensor};

pub use aligned_mtl::{AlignedMtl, aligned_weights, alignment};
pub use cagrad::{CaGrad, cagrad_weights};
pub use dwa::{Dwa, dwa_weights};
pub use famo::{Famo, famo_logit_gradient, softmax};
pub use fixed::Fixed;
pub use gradnorm::{GradNorm, gradnorm_update};
pub use imtl::{ImtlG, imtl_weights};
pub use mgda::{Mgda, min_norm_weights};
pub use nash_mtl::{NashMtl, nash_weights};
pub use pcgrad::{PcGrad, pcgrad_combine};
pub use uncertainty::{Uncertainty, UncertaintyKind};
pub use upgrad::{UpGrad, upgrad_weights};

use crate::error::{Error, Result};

/// Where the per-head gradients a strategy asks for are taken.
///
/// ```
/// use polyhead::weighting::GradientSpace;
/// assert_ne!(GradientSpace::SharedParameters, GradientSpace::Representation);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientSpace {
    /// Every shared parameter (the trunk's, or `#[layer(shared)]` fields),
    /// flattened in the model's parameter order.
    SharedParameters,
    /// The last shared kernel only (GradNorm's `W`).
    LastSharedLayer,
    /// The trunk's output, the shared representation (LibMTL's
    /// `rep_grad`, MGDA-UB): cheaper, one row per sample and feature.
    Representation,
}

/// What a strategy needs each step beyond the losses.
///
/// ```
/// use polyhead::weighting::{GradientSpace, Needs};
/// let needs = Needs { head_gradients: Some(GradientSpace::SharedParameters), ..Needs::default() };
/// assert!(needs.scale_by_loss_weights && !needs.losses_after_step);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Each head's gradient, and where (one backward pass per head).
    pub head_gradients: Option<GradientSpace>,
    /// Whether those are gradients of each loss times its declared weight
    /// (`w_i L_i`, the default) or of the bare loss.
    pub scale_by_loss_weights: bool,
    /// Whether [`Weighting::after_step`] gets the losses on the same batch
    /// after the update (one more forward pass).
    pub losses_after_step: bool,
}

impl Default for Needs {
    fn default() -> Self {
        Needs {
            head_gradients: None,
            scale_by_loss_weights: true,
            losses_after_step: false,
        }
    }
}

/// What a strategy sees of one training step.
///
/// ```
/// // Strategies receive it in `Weighting::combine`; see the module docs.
/// fn first_loss<T: polyhead::tensor::Float>(step: &polyhead::weighting::Step<'_, '_, T>) -> f64 { step.values[0] }
/// ```
pub struct Step<'a, 't, T: Float> {
    /// The tape the losses were recorded on (for an objective of one's own).
    pub tape: &'t Tape<T>,
    /// Each loss on the tape, in [`crate::MultiOutput::LOSSES`] order.
    pub losses: &'a [Var<'t, T>],
    /// Each loss's value.
    pub values: &'a [f64],
    /// Each loss's name.
    pub names: &'a [&'static str],
    /// The declared loss weights (`#[head(weight = ...)]`, `loss_weights`).
    pub loss_weights: &'a [f64],
    /// Each head's gradient, flattened, when [`Needs::head_gradients`]
    /// asked for them.
    pub head_gradients: Option<&'a [Vec<f64>]>,
    /// The epoch (from 0) and the step within it (from 0).
    pub epoch: usize,
    /// The step within the epoch (from 0).
    pub step: usize,
}

/// How a strategy combines this step's losses.
///
/// ```
/// use polyhead::weighting::Combination;
/// let c = Combination::<'_, f32>::Weights(vec![1.0, 0.5]);
/// assert!(matches!(c, Combination::Weights(_)));
/// ```
pub enum Combination<'t, T: Float> {
    /// A weight per loss: every parameter gets the gradient of
    /// `sum_i w_i L_i`.
    Weights(Vec<f64>),
    /// An objective the strategy built on the tape (from
    /// [`Step::losses`] and its own state parameters, which then get
    /// gradients and are trained by the optimizer), and each loss's
    /// effective weight in it (logged).
    Objective {
        /// The total to differentiate.
        total: Var<'t, T>,
        /// Each loss's effective weight (logged as `weight_<name>`).
        weights: Vec<f64>,
    },
    /// A gradient for the shared part, in the space and layout of
    /// [`Step::head_gradients`]; the other parameters get the gradient of
    /// `sum_i head_weights_i L_i` (the heads' own parameters follow their
    /// own loss, as in MGDA's algorithm).
    Direction {
        /// The shared parameters' (or representation's) gradient.
        shared: Vec<f64>,
        /// The weights for the other parameters (usually the declared ones).
        head_weights: Vec<f64>,
        /// Each loss's weight in `shared` when it is a weighted sum of the
        /// head gradients (logged), else `head_weights` are logged.
        shared_weights: Option<Vec<f64>>,
    },
}

/// A loss weighting strategy: sees each step's losses (and, if it asks,
/// each head's gradient) and says how to combine them.
///
/// Only [`name`](Weighting::name) and [`combine`](Weighting::combine) are
/// required; the rest have defaults for a stateless strategy. See the
/// module docs for a strategy of one's own.
pub trait Weighting<T: Float> {
    /// A short name (logs, errors).
    fn name(&self) -> &str;

    /// What it needs each step (default: the losses only).
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Creates per-loss state for these losses (called at every step, so
    /// it must keep state that already fits; call it before loading a
    /// checkpoint into a fresh strategy).
    fn prepare(&mut self, names: &[&str]) -> Result<()> {
        let _ = names;
        Ok(())
    }

    /// This step's combination.
    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>>;

    /// After the optimizer's update: the losses before it, and, when
    /// [`Needs::losses_after_step`] asks, on the same batch after it.
    fn after_step(&mut self, before: &[f64], after: Option<&[f64]>) -> Result<()> {
        let _ = (before, after);
        Ok(())
    }

    /// At an epoch's end (before validation).
    fn end_epoch(&mut self) -> Result<()> {
        Ok(())
    }

    /// Calls `f` with each state parameter's name and value (checkpoints
    /// save them as `weighting.<name>`).
    fn visit_state<'a>(&'a self, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        let _ = f;
    }

    /// Like [`visit_state`](Weighting::visit_state), mutably (checkpoints
    /// restore through it; the optimizer steps the parameters an
    /// [`Combination::Objective`] gave gradients).
    fn visit_state_mut<'a>(&'a mut self, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        let _ = f;
    }
}

/// A boxed strategy is a strategy (so a choice made at run time, a
/// `Box<dyn Weighting<T>>`, goes where a strategy goes).
impl<T: Float, W: Weighting<T> + ?Sized> Weighting<T> for Box<W> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn needs(&self) -> Needs {
        (**self).needs()
    }
    fn prepare(&mut self, names: &[&str]) -> Result<()> {
        (**self).prepare(names)
    }
    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        (**self).combine(step)
    }
    fn after_step(&mut self, before: &[f64], after: Option<&[f64]>) -> Result<()> {
        (**self).after_step(before, after)
    }
    fn end_epoch(&mut self) -> Result<()> {
        (**self).end_epoch()
    }
    fn visit_state<'a>(&'a self, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        (**self).visit_state(f)
    }
    fn visit_state_mut<'a>(&'a mut self, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        (**self).visit_state_mut(f)
    }
}

impl<T: Float> dyn Weighting<T> + '_ {
    /// Each state parameter's name and values (what a checkpoint saves
    /// under `weighting.<name>`).
    ///
    /// ```
    /// use polyhead::weighting::{Famo, Weighting};
    /// let mut famo = Famo::<f64>::new();
    /// famo.prepare(&["a", "b"])?;
    /// let strategy: &dyn Weighting<f64> = &famo;
    /// assert_eq!(strategy.state()[0], ("logits".to_string(), vec![0.0, 0.0]));
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn state(&self) -> Vec<(String, Vec<f64>)> {
        let mut out = Vec::new();
        self.visit_state(&mut |name, p| out.push((name, to_f64(p.value()))));
        out
    }
}

/// What one training step takes from the strategy.
pub(crate) struct StepResult<T: Float> {
    /// The gradient of every parameter (model and strategy) by id.
    pub grads: Vec<(ParamId, Tensor<T>)>,
    /// The objective's value (logged as `loss`).
    pub total: f64,
    /// Each loss's effective weight.
    pub weights: Vec<f64>,
}

/// Which parameters a step may update, as the trainer knows them.
pub(crate) struct StepParameters<'a> {
    /// The shared ones (trunk, `#[layer(shared)]`), by name.
    pub shared: &'a [(String, ParamId)],
    /// Every model parameter.
    pub all: &'a [ParamId],
}

/// A data-parallel step: the ranks and this rank's share of the batch
/// (its gradients are scaled by it and summed over the ranks).
pub(crate) struct Group<'a> {
    pub parallel: &'a crate::distributed::DataParallel,
    pub share: f64,
}

impl Group<'_> {
    /// `share * buffer`, summed over the ranks.
    pub(crate) fn sum_scaled(&self, buffer: &mut [f64]) -> Result<()> {
        buffer.iter_mut().for_each(|v| *v *= self.share);
        self.parallel.all_sum(buffer)
    }

    /// Each gradient scaled by the share and summed over the ranks (every
    /// rank holds the same parameters, in the same order), with `total`:
    /// one buffer.
    fn sum_gradients<T: Float>(
        &self,
        grads: &mut [(ParamId, Tensor<T>)],
        total: &mut f64,
    ) -> Result<()> {
        let mut buffer: Vec<f64> = grads.iter().flat_map(|(_, g)| to_f64(g)).collect();
        buffer.push(*total);
        self.sum_scaled(&mut buffer)?;
        *total = buffer.pop().unwrap_or(f64::NAN);
        let mut at = 0;
        for (_, g) in grads.iter_mut() {
            let n = g.len();
            *g = Tensor::from_vec(
                buffer[at..at + n].iter().map(|&v| T::from_f64(v)).collect(),
                g.shape(),
            )?;
            at += n;
        }
        Ok(())
    }
}

/// Values of `v` as f64.
pub(crate) fn to_f64<T: Float>(t: &Tensor<T>) -> Vec<f64> {
    t.to_vec().iter().map(|v| v.to_f64()).collect()
}

/// Runs `strategy` on one step: validates the counts, takes the head
/// gradients it asks for, lets it combine, and turns the combination into
/// every parameter's gradient.
// Each argument is a distinct input of the step, passed through once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weigh<'t, T: Float>(
    strategy: &mut dyn Weighting<T>,
    tape: &'t Tape<T>,
    losses: &[Var<'t, T>],
    values: Vec<f64>,
    names: &[&'static str],
    loss_weights: &[f64],
    features: Option<Var<'t, T>>,
    params: &StepParameters<'_>,
    group: Option<&Group<'_>>,
    (epoch, step): (usize, usize),
) -> Result<StepResult<T>> {
    if losses.len() != loss_weights.len() || losses.len() != names.len() {
        return Err(Error::LossWeightCount {
            context: "loss weighting",
            losses: losses.len(),
            names: names.join(", "),
            weights: loss_weights.len(),
        });
    }
    if losses.is_empty() {
        return Err(Error::Invalid(
            "the model has no loss to train on: give some #[head] a `loss = ...`".into(),
        ));
    }
    strategy.prepare(names)?;
    let needs = strategy.needs();
    let space = needs.head_gradients;
    if let (Some(GradientSpace::Representation), Some(_)) = (space, group) {
        return Err(Error::Weighting {
            strategy: strategy.name().to_string(),
            message: "rep_grad needs every sample's representation in one process; in data-parallel training use the shared parameters".into(),
        });
    }
    let gathered = match space {
        Some(space) => {
            let mut gathered = head_gradients(
                strategy.name(),
                tape,
                losses,
                loss_weights,
                needs.scale_by_loss_weights,
                features,
                params,
                space,
            )?;
            if let Some(group) = group {
                // Every head's gradient over the global batch.
                let mut buffer: Vec<f64> = gathered.rows.concat();
                group.sum_scaled(&mut buffer)?;
                let len = gathered.len.max(1);
                for (row, part) in gathered.rows.iter_mut().zip(buffer.chunks(len)) {
                    row.copy_from_slice(part);
                }
            }
            Some(gathered)
        }
        None => None,
    };
    let combination = strategy.combine(&Step {
        tape,
        losses,
        values: &values,
        names,
        loss_weights,
        head_gradients: gathered.as_ref().map(|g| &g.rows[..]),
        epoch,
        step,
    })?;
    let mut state_ids = Vec::new();
    strategy.visit_state(&mut |_, p| state_ids.push(p.id()));
    let weighted_sum = |w: &[f64]| -> Result<Var<'t, T>> {
        if w.len() != losses.len() {
            return Err(Error::LossWeightCount {
                context: "loss weighting",
                losses: losses.len(),
                names: names.join(", "),
                weights: w.len(),
            });
        }
        let w: Vec<T> = w.iter().map(|&wi| T::from_f64(wi)).collect();
        Ok(tape.weighted_sum(losses, &w)?)
    };
    let collect = |grads: &Gradients<T>, ids: &mut dyn Iterator<Item = ParamId>| {
        ids.filter_map(|id| grads.by_id(id).map(|g| (id, g.clone())))
            .collect::<Vec<_>>()
    };
    let (grads, total, weights) = match combination {
        Combination::Weights(weights) => {
            let total = weighted_sum(&weights)?;
            let grads = tape.backward(total)?;
            let ids = &mut params.all.iter().chain(&state_ids).copied();
            (collect(&grads, ids), total, weights)
        }
        Combination::Objective { total, weights } => {
            let grads = tape.backward(total)?;
            let ids = &mut params.all.iter().chain(&state_ids).copied();
            (collect(&grads, ids), total, weights)
        }
        Combination::Direction {
            shared,
            head_weights,
            shared_weights,
        } => {
            let Some(gathered) = gathered else {
                return Err(Error::Weighting {
                    strategy: strategy.name().to_string(),
                    message: "returned a shared direction without asking for head gradients (Needs::head_gradients)".into(),
                });
            };
            if shared.len() != gathered.len {
                return Err(Error::Weighting {
                    strategy: strategy.name().to_string(),
                    message: format!(
                        "returned a shared direction of {} values; the head gradients have {}",
                        shared.len(),
                        gathered.len
                    ),
                });
            }
            let total = weighted_sum(&head_weights)?;
            let grads = tape.backward(total)?;
            let shared_ids: Vec<ParamId> = params.shared.iter().map(|(_, id)| *id).collect();
            let mut own = collect(
                &grads,
                &mut params
                    .all
                    .iter()
                    .chain(&state_ids)
                    .copied()
                    .filter(|id| !shared_ids.contains(id)),
            );
            let mut total_value = total.value().item()?.to_f64();
            if let Some(group) = group {
                // The heads' own parameters over the global batch; the
                // shared direction is global already.
                group.sum_gradients(&mut own, &mut total_value)?;
            }
            let mut out = own;
            match (&gathered.layout, features) {
                (Layout::Representation(shape), Some(f)) => {
                    let seed =
                        Tensor::from_vec(shared.iter().map(|&v| T::from_f64(v)).collect(), shape)?;
                    let g = tape.backward_with_seed(f, &seed)?;
                    out.extend(collect(&g, &mut shared_ids.iter().copied()));
                }
                (Layout::Parameters(layout), _) => {
                    let mut at = 0;
                    for (id, shape, len) in layout {
                        let v = shared[at..at + len]
                            .iter()
                            .map(|&v| T::from_f64(v))
                            .collect();
                        out.push((*id, Tensor::from_vec(v, shape)?));
                        at += len;
                    }
                }
                (Layout::Representation(_), None) => unreachable!("checked when gathered"),
            }
            return Ok(StepResult {
                grads: out,
                total: total_value,
                weights: shared_weights.unwrap_or(head_weights),
            });
        }
    };
    let mut result = StepResult {
        grads,
        total: total.value().item()?.to_f64(),
        weights,
    };
    if let Some(group) = group {
        group.sum_gradients(&mut result.grads, &mut result.total)?;
    }
    Ok(result)
}

/// How a flattened head gradient maps back to parameters.
enum Layout {
    /// Shared parameters in order: id, shape, length.
    Parameters(Vec<(ParamId, Vec<usize>, usize)>),
    /// The representation's shape.
    Representation(Vec<usize>),
}

/// Each head's gradient, flattened, and how to map one back.
struct HeadGradients {
    rows: Vec<Vec<f64>>,
    layout: Layout,
    len: usize,
}

/// One backward pass per head: its gradient in `space`.
// Each argument is a distinct input of the step, passed through once.
#[allow(clippy::too_many_arguments)]
fn head_gradients<'t, T: Float>(
    strategy: &str,
    tape: &'t Tape<T>,
    losses: &[Var<'t, T>],
    loss_weights: &[f64],
    scale: bool,
    features: Option<Var<'t, T>>,
    params: &StepParameters<'_>,
    space: GradientSpace,
) -> Result<HeadGradients> {
    let needs_shared = |what: &str| Error::Weighting {
        strategy: strategy.to_string(),
        message: format!(
            "needs {what}: a #[trunk], or #[layer(shared)] fields beside a forward of your own"
        ),
    };
    let backward = |i: usize| -> Result<Gradients<T>> {
        let loss = losses[i];
        Ok(if scale {
            tape.backward(loss.scale(T::from_f64(loss_weights[i])))?
        } else {
            tape.backward(loss)?
        })
    };
    let mut rows = Vec::with_capacity(losses.len());
    match space {
        GradientSpace::Representation => {
            let Some(f) = features else {
                return Err(needs_shared("the shared representation (rep_grad)"));
            };
            for i in 0..losses.len() {
                rows.push(to_f64(&backward(i)?.wrt(f)?));
            }
            let len = rows[0].len();
            Ok(HeadGradients {
                rows,
                layout: Layout::Representation(f.shape()),
                len,
            })
        }
        GradientSpace::LastSharedLayer => {
            let Some((_, last)) = params
                .shared
                .iter()
                .rev()
                .find(|(n, _)| n.ends_with("kernel"))
                .or(params.shared.last())
            else {
                return Err(needs_shared("shared parameters"));
            };
            let mut layout = Vec::new();
            for i in 0..losses.len() {
                let g = backward(i)?;
                let row = g.by_id(*last).map(|t| to_f64(t)).unwrap_or_default();
                if layout.is_empty()
                    && let Some(t) = g.by_id(*last)
                {
                    layout.push((*last, t.shape().to_vec(), t.len()));
                }
                rows.push(row);
            }
            let len = rows.iter().map(Vec::len).max().unwrap_or(0);
            for r in &mut rows {
                r.resize(len, 0.0);
            }
            Ok(HeadGradients {
                rows,
                layout: Layout::Parameters(layout),
                len,
            })
        }
        GradientSpace::SharedParameters => {
            if params.shared.is_empty() {
                return Err(needs_shared("shared parameters"));
            }
            let per: Vec<Gradients<T>> = (0..losses.len()).map(backward).collect::<Result<_>>()?;
            // A shared parameter that no head reaches has no gradient and
            // is left out (the optimizer does not touch it).
            let mut layout = Vec::new();
            for (_, id) in params.shared {
                if let Some(t) = per.iter().find_map(|g| g.by_id(*id)) {
                    layout.push((*id, t.shape().to_vec(), t.len()));
                }
            }
            let len = layout.iter().map(|l| l.2).sum();
            for g in &per {
                let mut flat = Vec::with_capacity(len);
                for (id, _, n) in &layout {
                    match g.by_id(*id) {
                        Some(t) => flat.extend(t.to_vec().iter().map(|v| v.to_f64())),
                        None => flat.extend(std::iter::repeat_n(0.0, *n)),
                    }
                }
                rows.push(flat);
            }
            Ok(HeadGradients {
                rows,
                layout: Layout::Parameters(layout),
                len,
            })
        }
    }
}

/// A solver failure as the strategy's error.
pub(crate) fn solver_error(strategy: &str) -> impl Fn(polyhead_solve::SolveError) -> Error + '_ {
    move |e| Error::Weighting {
        strategy: strategy.to_string(),
        message: format!("{e} (the head gradients may be degenerate: zero or exactly opposite)"),
    }
}

/// The head gradients a gradient-combining strategy was given.
pub(crate) fn rows<'a, T: Float>(step: &Step<'a, '_, T>, strategy: &str) -> Result<&'a [Vec<f64>]> {
    step.head_gradients.ok_or_else(|| Error::Weighting {
        strategy: strategy.to_string(),
        message: "no head gradients were given".into(),
    })
}

/// The space a `rep_grad` switch selects.
pub(crate) fn space(rep_grad: bool) -> Needs {
    Needs {
        head_gradients: Some(if rep_grad {
            GradientSpace::Representation
        } else {
            GradientSpace::SharedParameters
        }),
        ..Needs::default()
    }
}

/// The combination `sum_i w_i g_i` of the head gradients `rows` for the
/// shared part (the heads' own parameters follow their declared-weight
/// losses); `w_i` times each declared weight is logged.
pub(crate) fn weighted_direction<'t, T: Float>(
    step: &Step<'_, 't, T>,
    rows: &[Vec<f64>],
    w: &[f64],
) -> Combination<'t, T> {
    Combination::Direction {
        shared: combine_rows(rows, w),
        head_weights: step.loss_weights.to_vec(),
        shared_weights: Some(times(w, step.loss_weights)),
    }
}

/// `a . b`.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `sum_i w_i rows_i`.
pub(crate) fn combine_rows(rows: &[Vec<f64>], w: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; rows.first().map_or(0, Vec::len)];
    for (row, &wi) in rows.iter().zip(w) {
        out.iter_mut().zip(row).for_each(|(o, r)| *o += wi * r);
    }
    out
}

/// The Gram matrix `G G^T` of the rows.
pub(crate) fn gram(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|a| rows.iter().map(|b| dot(a, b)).collect())
        .collect()
}

/// `weights_i * declared_i`: a strategy's weights on the declared ones.
pub(crate) fn times(weights: &[f64], declared: &[f64]) -> Vec<f64> {
    weights.iter().zip(declared).map(|(a, b)| a * b).collect()
}

/// A model and its weighting strategy as one module, so the optimizer steps
/// both and checkpoints save both (the strategy under `weighting.`).
pub(crate) struct Joint<'a, M, T: Float> {
    pub model: &'a mut M,
    pub weighting: &'a mut dyn Weighting<T>,
}

impl<M: Module<T>, T: Float> Module<T> for Joint<'_, M, T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> polyhead_layers::Result<Var<'t, T>> {
        self.model.forward(x)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        self.model.visit_parameters(prefix, f);
        self.weighting
            .visit_state(&mut |name, p| f(format!("{prefix}weighting.{name}"), p));
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        self.model.visit_parameters_mut(prefix, f);
        self.weighting
            .visit_state_mut(&mut |name, p| f(format!("{prefix}weighting.{name}"), p));
    }

    fn visit_buffers<'a>(
        &'a self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a polyhead_layers::Buffer<T>),
    ) {
        self.model.visit_buffers(prefix, f);
    }

    fn set_training(&mut self, training: bool) {
        self.model.set_training(training);
    }
}
