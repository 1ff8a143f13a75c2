//! One epoch of training, and one step of it in named phases: forward,
//! losses, weighting (which runs the backward passes), update, metrics and
//! logs, callbacks. `Trainer::run` calls [`Trainer::train_epoch`] per epoch.

use polyhead_autograd::{ParamId, Tape, Var};
use polyhead_tensor::Float;
use polyhead_tensor::parallel::with_awake_pool;

use super::metric::Accumulator;
use super::progress::Reporter;
use super::{Batch, Callback, Fetch, OnNonFinite, Trainer};
use crate::error::{Error, Result};
use crate::multi_output::{LossWeights, MultiOutput};
use crate::target::TargetSet;
use crate::weighting::{Group, Joint, StepParameters, StepResult, weigh};

/// What an epoch adds up over its steps (sample-weighted sums).
pub(super) struct EpochTotals {
    /// Each logged name's sum of `value * batch rows`.
    sums: Vec<(String, f64)>,
    /// Samples trained on.
    seen: usize,
    /// Steps skipped for a non-finite loss.
    skipped: usize,
    /// Each metric's accumulator.
    metrics: Vec<Accumulator>,
    /// Each loss's sum of `weight * batch rows`.
    weight_sums: Vec<f64>,
}

/// Where a step is: epoch and step from 0, the step count per epoch, the
/// global batch's rows and this rank's share of them (1 unless
/// data-parallel).
#[derive(Clone, Copy)]
struct At {
    epoch: usize,
    step: usize,
    steps: usize,
    rows: usize,
    share: f64,
}

impl<M: MultiOutput<T>, T: Float> Trainer<M, T>
where
    M::Targets: TargetSet<T>,
{
    /// One epoch over `order` (batches from `fetch`): every step, then the
    /// epoch's logs (means over its samples, metrics, skipped steps, mean
    /// weights, learning rate).
    pub(super) fn train_epoch(
        &mut self,
        model: &mut M,
        fetch: &mut Fetch<'_, M, T>,
        order: &[usize],
        epoch: usize,
        reporter: &mut Reporter,
        callbacks: &mut [Box<dyn Callback<M, T>>],
    ) -> Result<Vec<(String, f64)>> {
        model.set_training(true);
        let steps = order.len().div_ceil(self.batch_size);
        reporter.epoch_begin(epoch, steps);
        let mut totals = EpochTotals {
            sums: Vec::new(),
            seen: 0,
            skipped: 0,
            metrics: vec![Accumulator::default(); self.metrics.len()],
            weight_sums: vec![0.0; M::LOSSES.len()],
        };
        // The pool's other threads poll for work through the epoch's
        // steps, so the GEMMs split over them pay from small sizes.
        with_awake_pool(|| -> Result<()> {
            for (step, rows) in order.chunks(self.batch_size).enumerate() {
                // Data-parallel: this rank's shard of the global batch.
                let (mine, share) = match &self.parallel {
                    Some(p) => p.shard(rows),
                    None => (rows, 1.0),
                };
                let at = At {
                    epoch,
                    step,
                    steps,
                    rows: rows.len(),
                    share,
                };
                let batch = fetch(mine);
                self.train_step(model, batch, at, &mut totals, callbacks)?;
                reporter.step(&running_means(&totals));
            }
            Ok(())
        })?;
        if let Some(p) = &self.parallel {
            // Each metric over the global epoch.
            let mut buffer: Vec<f64> = totals.metrics.iter().flat_map(|a| a.parts()).collect();
            p.all_sum(&mut buffer)?;
            for (acc, parts) in totals.metrics.iter_mut().zip(buffer.chunks(2)) {
                *acc = Accumulator::from_parts(parts[0], parts[1]);
            }
        }
        Ok(self.epoch_logs(totals))
    }

    /// One step on `batch`, phase by phase.
    fn train_step(
        &mut self,
        model: &mut M,
        batch: Result<Batch<M, T>>,
        at: At,
        totals: &mut EpochTotals,
        callbacks: &mut [Box<dyn Callback<M, T>>],
    ) -> Result<()> {
        let (x, targets) = match batch {
            Ok(batch) => batch,
            Err(e) => return Err(self.failed_here(e, at)),
        };
        // Forward.
        let tape = Tape::new();
        let forward = model.forward_with_features(M::input_vars(&tape, &x));
        let (features, outputs) = match forward {
            Ok(forward) => forward,
            Err(e) => return Err(self.failed_here(e, at)),
        };
        // Losses, each checked before anything is updated (over the global
        // batch when data-parallel).
        let local = model.head_losses(&outputs, &targets).and_then(|losses| {
            let values = losses
                .iter()
                .map(|p| Ok(p.value().item()?.to_f64()))
                .collect::<Result<Vec<f64>>>()?;
            Ok((losses, values))
        });
        let (losses, values) = match local {
            Ok(local) => local,
            Err(e) => return Err(self.failed_here(e, at)),
        };
        let values = self.global_values(values, at)?;
        if !self.losses_are_finite(&values, at)? {
            totals.skipped += 1;
            return Ok(());
        }
        // Weighting: the strategy combines the losses and the backward
        // passes give every parameter's gradient.
        let result = self.weighting_phase(model, &tape, &losses, values.clone(), features, at)?;
        // Update: one optimizer step over the model and the strategy.
        self.update(model, &result)?;
        self.after_update(model, &x, &targets, &values, at)?;
        self.sync_buffers(model, at)?;
        // Metrics and logs.
        let logs = step_logs(M::LOSSES, result.total, &values);
        if at.share > 0.0 {
            let head_values = M::head_values(&outputs);
            self.add_metrics(&head_values, &targets, totals)?;
        }
        totals.add(&logs, &result.weights, at.rows);
        if let Some(p) = &self.parallel {
            p.count_step();
        }
        // Callbacks.
        if !callbacks.is_empty() {
            let mut step_logs = logs;
            step_logs.extend(
                M::LOSSES
                    .iter()
                    .zip(&result.weights)
                    .map(|(n, w)| (format!("weight_{n}"), *w)),
            );
            for c in callbacks.iter_mut() {
                c.on_train_batch_end(at.epoch * at.steps + at.step, &step_logs)?;
            }
        }
        Ok(())
    }

    /// This rank's error: data-parallel, every rank learns of it (and
    /// stops with an error naming this rank); else the error itself.
    fn failed_here(&self, e: Error, at: At) -> Error {
        match &self.parallel {
            Some(p) => p
                .exchange(Err(&e), M::LOSSES.len(), (at.epoch, at.step))
                .err()
                .unwrap_or(e),
            None => e,
        }
    }

    /// The losses over the global batch: each rank's, weighted by its
    /// share, summed (with every rank's status: a failure anywhere stops
    /// every rank).
    fn global_values(&self, values: Vec<f64>, at: At) -> Result<Vec<f64>> {
        let Some(p) = &self.parallel else {
            return Ok(values);
        };
        // A rank without rows of its own counts for nothing (not even NaN).
        let mine: Vec<f64> = values
            .iter()
            .map(|v| if at.share > 0.0 { v * at.share } else { 0.0 })
            .collect();
        p.exchange(Ok(mine), values.len(), (at.epoch, at.step))
    }

    /// Data-parallel: the moving statistics a layer keeps (batch norm),
    /// each rank's weighted by its share and summed, so they stay the same
    /// on every rank.
    fn sync_buffers(&self, model: &mut M, at: At) -> Result<()> {
        let Some(p) = &self.parallel else {
            return Ok(());
        };
        let buffers = model.buffers();
        if buffers.is_empty() {
            return Ok(());
        }
        let mut buffer: Vec<f64> = buffers
            .iter()
            .flat_map(|(_, b)| {
                b.value()
                    .to_vec()
                    .into_iter()
                    .map(|v| v.to_f64() * at.share)
            })
            .collect();
        p.all_sum(&mut buffer)?;
        let mut start = 0;
        for (_, b) in buffers {
            let shape = b.value().shape().to_vec();
            let n = b.value().len();
            let values = buffer[start..start + n]
                .iter()
                .map(|&v| T::from_f64(v))
                .collect();
            b.set_value(polyhead_tensor::Tensor::from_vec(values, &shape)?)?;
            start += n;
        }
        Ok(())
    }

    /// `Ok(true)` if every loss is finite; for a bad one, an error naming
    /// the head (or `Ok(false)`: skip the step, with `SkipStep`).
    fn losses_are_finite(&self, values: &[f64], at: At) -> Result<bool> {
        let Some((i, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) else {
            return Ok(true);
        };
        match self.on_non_finite {
            OnNonFinite::Stop => Err(Error::NonFiniteLoss {
                head: Some(M::LOSSES[i].to_string()),
                value: *value,
                epoch: at.epoch + 1,
                step: at.step + 1,
            }),
            OnNonFinite::SkipStep => Ok(false),
        }
    }

    /// The strategy's combination and every parameter's gradient; the
    /// weighted total must be finite.
    fn weighting_phase<'t>(
        &mut self,
        model: &M,
        tape: &'t Tape<T>,
        losses: &[Var<'t, T>],
        values: Vec<f64>,
        features: Option<Var<'t, T>>,
        at: At,
    ) -> Result<StepResult<T>> {
        let named: Vec<(String, ParamId)> = model
            .parameters()
            .into_iter()
            .map(|(n, p)| (n, p.id()))
            .collect();
        let shared: Vec<(String, ParamId)> = named
            .iter()
            .filter(|(n, _)| M::SHARED.iter().any(|s| n.starts_with(&format!("{s}."))))
            .cloned()
            .collect();
        let all: Vec<ParamId> = named.iter().map(|(_, id)| *id).collect();
        let group = self.parallel.as_ref().map(|parallel| Group {
            parallel,
            share: at.share,
        });
        let result = weigh(
            &mut *self.weighting,
            tape,
            losses,
            values,
            M::LOSSES,
            &self.loss_weights.values(),
            features,
            &StepParameters {
                shared: &shared,
                all: &all,
            },
            group.as_ref(),
            (at.epoch, at.step),
        )?;
        if !result.total.is_finite() {
            return Err(Error::NonFiniteLoss {
                head: None,
                value: result.total,
                epoch: at.epoch + 1,
                step: at.step + 1,
            });
        }
        Ok(result)
    }

    /// One optimizer step over the model and the strategy's state.
    fn update(&mut self, model: &mut M, result: &StepResult<T>) -> Result<()> {
        let mut joint = Joint {
            model,
            weighting: &mut *self.weighting,
        };
        self.optimizer.step_with(&mut joint, |_, p| {
            result
                .grads
                .iter()
                .find(|(id, _)| *id == p.id())
                .map(|(_, g)| g.clone())
        })?;
        Ok(())
    }

    /// Tells the strategy the step is done (with the losses on the same
    /// batch after the update, if it asks for them).
    fn after_update(
        &mut self,
        model: &M,
        x: &M::Inputs<polyhead_tensor::Tensor<T>>,
        targets: &M::Targets,
        before: &[f64],
        at: At,
    ) -> Result<()> {
        let after = if self.weighting.needs().losses_after_step {
            let tape = Tape::no_record();
            let outputs = model.forward_heads(M::input_vars(&tape, x))?;
            let after = model
                .head_losses(&outputs, targets)?
                .iter()
                .map(|p| Ok(p.value().item()?.to_f64()))
                .collect::<Result<Vec<f64>>>()?;
            Some(self.global_values(after, at)?)
        } else {
            None
        };
        self.weighting.after_step(before, after.as_deref())
    }

    /// Adds this step's outputs to each metric.
    fn add_metrics(
        &self,
        head_values: &[(&'static str, Var<'_, T>)],
        targets: &M::Targets,
        totals: &mut EpochTotals,
    ) -> Result<()> {
        for ((head, metric), acc) in self.metrics.iter().zip(&mut totals.metrics) {
            let pred = head_values
                .iter()
                .find(|(h, _)| h == head)
                .map(|(_, v)| v.value());
            match (pred, targets.target(head)) {
                (Some(p), Some(t)) => acc.add(head, *metric, &p, t, targets.mask(head))?,
                _ => {
                    return Err(Error::UnknownName {
                        context: format!("metric {}", metric.name()),
                        name: head.clone(),
                        known: M::HEADS.iter().map(|h| h.to_string()).collect(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The epoch's logs from its totals.
    fn epoch_logs(&self, totals: EpochTotals) -> Vec<(String, f64)> {
        let seen = totals.seen;
        let mut logs = running_means(&totals);
        if seen == 0 {
            logs.iter_mut().for_each(|(_, v)| *v = f64::NAN);
        }
        for ((head, metric), acc) in self.metrics.iter().zip(&totals.metrics) {
            logs.push((format!("{head}_{}", metric.name()), acc.value(*metric)));
        }
        if totals.skipped > 0 {
            logs.push(("skipped_steps".to_string(), totals.skipped as f64));
        }
        if seen > 0 {
            for (name, w) in M::LOSSES.iter().zip(&totals.weight_sums) {
                logs.push((format!("weight_{name}"), w / seen as f64));
            }
        }
        if self.optimizer.is_scheduled() {
            // The rate the next step will use, as Keras logs it.
            logs.push(("learning_rate".into(), self.optimizer.learning_rate()));
        }
        logs
    }
}

impl EpochTotals {
    /// Adds one step's logs and weights, weighted by its `rows`.
    fn add(&mut self, logs: &[(String, f64)], weights: &[f64], rows: usize) {
        let b = rows as f64;
        for (name, v) in logs {
            match self.sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => *s += v * b,
                None => self.sums.push((name.clone(), v * b)),
            }
        }
        for (sum, w) in self.weight_sums.iter_mut().zip(weights) {
            *sum += w * b;
        }
        self.seen += rows;
    }
}

/// The means so far of each logged name (the progress line).
fn running_means(totals: &EpochTotals) -> Vec<(String, f64)> {
    totals
        .sums
        .iter()
        .map(|(n, s)| (n.clone(), s / totals.seen.max(1) as f64))
        .collect()
}

/// A step's logs: the total (`loss`) and each loss (`<name>_loss`).
fn step_logs(names: &[&str], total: f64, values: &[f64]) -> Vec<(String, f64)> {
    let mut logs = vec![("loss".to_string(), total)];
    logs.extend(
        names
            .iter()
            .zip(values)
            .map(|(n, v)| (format!("{n}_loss"), *v)),
    );
    logs
}
