//! `fit`: the Keras-style training loop for any `MultiOutput` model, with
//! validation, per-head metrics, callbacks, progress and a non-finite guard.

mod callback;
mod history;
mod metric;
mod plot;
mod progress;
mod raster;
mod step;

use std::time::Instant;

use polyhead_autograd::Tape;
use polyhead_layers::{Module, Optimizer};
use polyhead_tensor::{Float, Rng, Tensor};

pub use callback::{
    Callback, Control, CsvLogger, EarlyStopping, LossWeightSchedule, ModelCheckpoint, TrainContext,
};
pub use history::History;
use metric::Accumulator;
pub use metric::Metric;
pub use progress::Progress;
use progress::Reporter;

use crate::error::{Error, Result};
use crate::multi_output::MultiOutput;
use crate::target::{Target, TargetSet};
use crate::weighting::{Fixed, Joint, Weighting};

/// An error naming the first NaN or infinite value of `t` and where it is.
fn check_finite<T: Float>(what: &str, t: &Tensor<T>) -> Result<()> {
    if let Some(i) = t.first_non_finite() {
        let per_row = t.len() / t.shape().first().copied().unwrap_or(1).max(1);
        return Err(Error::NonFiniteData {
            what: what.to_string(),
            value: t
                .view()
                .iter()
                .nth(i)
                .expect("index of an element")
                .to_f64(),
            sample: i / per_row.max(1),
            element: i % per_row.max(1),
            shape: t.shape().to_vec(),
        });
    }
    Ok(())
}

/// What to do when a step's loss is NaN or infinite.
///
/// ```
/// let t = polyhead::OnNonFinite::SkipStep;
/// assert_ne!(t, polyhead::OnNonFinite::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnNonFinite {
    /// Stop with an error naming the loss, the epoch and the step; the
    /// weights stay those after the last good step.
    #[default]
    Stop,
    /// Skip that step (no update) and go on; skipped steps are counted in
    /// the log `skipped_steps`.
    SkipStep,
}

/// A model's inputs and targets (validation data, a batch).
type Batch<M, T> = (
    <M as MultiOutput<T>>::Inputs<Tensor<T>>,
    <M as MultiOutput<T>>::Targets,
);

/// Where a training run gets the batch of given rows.
type Fetch<'a, M, T> = dyn FnMut(&[usize]) -> Result<Batch<M, T>> + 'a;
/// Where `predict` gets the inputs of the rows it asks for.
type FetchInputs<'a, M, T> =
    dyn FnMut(&[usize]) -> Result<<M as MultiOutput<T>>::Inputs<Tensor<T>>> + 'a;

/// Trains a `MultiOutput` model: `fit` with epochs, batches, shuffling,
/// validation, metrics and callbacks, returning a [`History`] under Keras'
/// names.
///
/// ```
/// use polyhead::prelude::*;
/// use polyhead::{Metric, Progress, Trainer};
///
/// #[derive(MultiOutput)]
/// struct Net {
///     #[trunk]
///     body: Dense,
///     #[head(loss = CrossEntropy::from_logits())]
///     class: Dense,
/// }
///
/// let mut rng = Rng::new(0);
/// let mut net = Net {
///     body: Dense::builder(2, 8).activation(Activation::Tanh).build(&mut rng)?,
///     class: Dense::new(8, 2, &mut rng)?,
/// };
/// // Class 1 when the first feature is positive.
/// let x = Tensor::<f32>::rand_normal(&[64, 2], 0.0, 1.0, 1)?;
/// let labels: Vec<usize> = x.to_vec().chunks(2).map(|r| usize::from(r[0] > 0.0)).collect();
/// let targets = NetTargets::new(Labels::from_classes(&labels).one_hot(2)?);
/// let history = Trainer::<Net, f32>::new(Adam::new(0.05).build())
///     .epochs(30)
///     .batch_size(16)
///     .validation_split(0.25)
///     .metric("class", Metric::Accuracy)
///     .progress(Progress::Silent)
///     .fit(&mut net, &x, &targets)?;
/// assert_eq!(history.names(), vec!["loss", "class_loss", "class_accuracy", "weight_class", "val_loss", "val_class_loss", "val_class_accuracy"]);
/// assert!(history.get("class_accuracy").unwrap().last().unwrap() > &0.9);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub struct Trainer<M: MultiOutput<T>, T: Float> {
    optimizer: Optimizer<T>,
    loss_weights: M::LossWeights,
    epochs: usize,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    validation_split: f64,
    validation_data: Option<Batch<M, T>>,
    metrics: Vec<(String, Metric)>,
    callbacks: Vec<Box<dyn Callback<M, T>>>,
    on_non_finite: OnNonFinite,
    progress: Progress,
    weighting: Box<dyn Weighting<T>>,
    parallel: Option<crate::distributed::DataParallel>,
}

impl<M: MultiOutput<T>, T: Float> Trainer<M, T>
where
    M::Targets: TargetSet<T>,
{
    /// A trainer with `optimizer`, the model's default loss weights, one
    /// epoch, batches of 32 shuffled with seed 0, no validation.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(optimizer: Optimizer<T>) -> Self {
        Trainer {
            optimizer,
            loss_weights: M::LossWeights::default(),
            epochs: 1,
            batch_size: 32,
            shuffle_seed: Some(0),
            validation_split: 0.0,
            validation_data: None,
            metrics: Vec::new(),
            callbacks: Vec::new(),
            on_non_finite: OnNonFinite::Stop,
            progress: Progress::Auto,
            weighting: Box::new(Fixed),
            parallel: None,
        }
    }

    /// How the losses are combined (default [`Fixed`]: the loss weights as
    /// given): any [`Weighting`] strategy, built-in or your own. Each loss's effective weight is logged as
    /// `weight_<name>` per epoch.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).weighting(polyhead::weighting::Dwa::new(2.0)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert!(history.get("weight_out").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn weighting(mut self, weighting: impl Weighting<T> + 'static) -> Self {
        self.weighting = Box::new(weighting);
        self
    }

    /// Trains data-parallel over `parallel`'s ranks (see
    /// [`crate::distributed`]): every rank runs the same `fit` on the same
    /// data; each takes its shard of every global batch of
    /// [`batch_size`](Self::batch_size) rows (the same seeded order on
    /// every rank), the gradients are summed, and every rank applies the
    /// same update. Rank 0's parameters are broadcast first; logs and the
    /// History are the global ones on every rank; only rank 0 shows
    /// progress and writes files.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// use polyhead::distributed::{DataParallel, ThreadGroup};
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let x = Tensor::<f32>::rand_normal(&[16, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let group = ThreadGroup::new(2);
    /// let kernels: Vec<Vec<f32>> = std::thread::scope(|s| {
    ///     let runs: Vec<_> = (0..2).map(|r| {
    ///         let (x, targets, rank) = (&x, &targets, group.rank(r).unwrap());
    ///         s.spawn(move || {
    ///             // Each rank starts from other weights: rank 0's are broadcast.
    ///             let mut rng = Rng::new(r as u64);
    ///             let mut net = Net { body: Dense::new(2, 4, &mut rng).unwrap(), out: Dense::new(4, 1, &mut rng).unwrap() };
    ///             polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build())
    ///                 .batch_size(8)
    ///                 .data_parallel(DataParallel::new(rank))
    ///                 .progress(polyhead::Progress::Silent)
    ///                 .fit(&mut net, x, targets)
    ///                 .unwrap();
    ///             net.out.kernel().value().to_vec()
    ///         })
    ///     }).collect();
    ///     runs.into_iter().map(|h| h.join().unwrap()).collect()
    /// });
    /// assert_eq!(kernels[0], kernels[1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn data_parallel(mut self, parallel: crate::distributed::DataParallel) -> Self {
        self.parallel = Some(parallel);
        self
    }

    /// The data-parallel ranks, if training is (their communication
    /// statistics: [`DataParallel::stats`](crate::distributed::DataParallel::stats)).
    ///
    /// ```
    /// # #[derive(polyhead::MultiOutput)]
    /// # struct Net { #[head(loss = polyhead::losses::Mse::new())] out: polyhead::layers::Dense }
    /// let trainer = polyhead::Trainer::<Net, f32>::new(polyhead::layers::Sgd::new(0.1).build());
    /// assert!(trainer.parallel().is_none());
    /// ```
    pub fn parallel(&self) -> Option<&crate::distributed::DataParallel> {
        self.parallel.as_ref()
    }

    /// The weighting strategy and its state.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).weighting(polyhead::weighting::Famo::new()).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(trainer.current_weighting().name(), "famo");
    /// # let _ = history;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn current_weighting(&self) -> &dyn Weighting<T> {
        &*self.weighting
    }

    /// Loads a checkpoint saved during `fit` (by [`ModelCheckpoint`]): the
    /// model, the optimizer's state and the weighting strategy's state.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("polyhead-doc-resume-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("m.safetensors");
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).callback(polyhead::ModelCheckpoint::new(&path)).progress(polyhead::Progress::Silent).fit(&mut net, &x, &targets)?;
    /// let mut again = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).load_checkpoint(&path, &mut again)?;
    /// assert_eq!(again.out.kernel().value().to_vec(), net.out.kernel().value().to_vec());
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_checkpoint(
        &mut self,
        path: impl AsRef<std::path::Path>,
        model: &mut M,
    ) -> Result<()> {
        self.weighting.prepare(M::LOSSES)?;
        let mut joint = Joint {
            model,
            weighting: &mut *self.weighting,
        };
        polyhead_layers::load_checkpoint(path, &mut joint, Some(&mut self.optimizer))?;
        Ok(())
    }

    /// The number of passes over the data.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(3).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Samples per step (the last batch may be smaller).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).batch_size(3).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Shuffle the training samples each epoch with this seed (`None`: keep
    /// their order).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).shuffle(None).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shuffle(mut self, seed: Option<u64>) -> Self {
        self.shuffle_seed = seed;
        self
    }

    /// Hold out the last `fraction` of the samples for validation (before
    /// shuffling, as Keras does).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).validation_split(0.25).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert!(history.get("val_loss").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validation_split(mut self, fraction: f64) -> Self {
        self.validation_split = fraction;
        self
    }

    /// Validate on these inputs and targets after each epoch.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).validation_data(x.clone(), NetTargets::new(x.sum_axis(1, true)?)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert!(history.get("val_out_loss").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validation_data(mut self, x: M::Inputs<Tensor<T>>, targets: M::Targets) -> Self {
        self.validation_data = Some((x, targets));
        self
    }

    /// Log `metric` of head `head` as `<head>_<metric>` (and `val_...`).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).metric("out", Metric::Mae).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert!(history.get("out_mae").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metric(mut self, head: &str, metric: Metric) -> Self {
        self.metrics.push((head.to_string(), metric));
        self
    }

    /// The loss weights to start from (default: the model's attributes).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).loss_weights(NetLossWeights { out: 2.0 }).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.get("weight_out").unwrap(), &[2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loss_weights(mut self, weights: M::LossWeights) -> Self {
        self.loss_weights = weights;
        self
    }

    /// Adds a callback.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).callback(polyhead::EarlyStopping::new("loss")).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn callback(mut self, callback: impl Callback<M, T> + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// What to do with a NaN or infinite loss.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).on_non_finite(polyhead::OnNonFinite::SkipStep).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert!(history.get("skipped_steps").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_non_finite(mut self, action: OnNonFinite) -> Self {
        self.on_non_finite = action;
        self
    }

    /// Where progress goes.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The optimizer (its state carries across `fit` calls).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(trainer.optimizer().steps(), 1);
    /// # let _ = history;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn optimizer(&self) -> &Optimizer<T> {
        &self.optimizer
    }

    /// The current loss weights.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(trainer.current_loss_weights().out, 1.0);
    /// # let _ = history;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn current_loss_weights(&self) -> &M::LossWeights {
        &self.loss_weights
    }

    /// Trains `model` on inputs `x` (samples on axis 0) and `targets`.
    ///
    /// Each epoch's steps run inside
    /// [`polyhead_tensor::parallel::with_awake_pool`]: the
    /// current rayon pool's other threads poll for work (and keep their cores
    /// busy) until the epoch's last step, so GEMMs and loss kernels split over
    /// them from small sizes. Set `RAYON_NUM_THREADS=1`, or call `fit` inside a
    /// one-thread pool, to train on one core.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(2).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.names()[..2], ["loss", "out_loss"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fit(
        &mut self,
        model: &mut M,
        x: &M::Inputs<Tensor<T>>,
        targets: &M::Targets,
    ) -> Result<History> {
        // Data holding NaN or infinity is refused where it enters, before any step.
        for (name, input) in M::inputs_of(x) {
            // One input keeps its old name in messages: "input x".
            check_finite(&format!("input {name}"), input)?;
        }
        for name in M::LOSSES {
            if let Some(t) = targets.target(name).and_then(|t| t.dense()) {
                check_finite(&format!("target of `{name}`"), t)?;
            }
        }
        let n = M::input_rows(x)?;
        if n == 0 {
            return Err(Error::Invalid(format!(
                "fit: no samples (input {})",
                M::inputs_of(x)
                    .iter()
                    .map(|(name, t)| format!("{name} has shape {:?}", t.shape()))
                    .collect::<Vec<_>>()
                    .join(", input ")
            )));
        }
        let target_rows = targets.rows()?;
        if target_rows != n {
            return Err(Error::Shape(format!(
                "the inputs have {n} samples but the targets {target_rows}"
            )));
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid(format!(
                "batch_size must be positive, got {}",
                self.batch_size
            )));
        }
        if !(0.0..1.0).contains(&self.validation_split) {
            return Err(Error::Invalid(format!(
                "validation_split must be in [0, 1), got {}",
                self.validation_split
            )));
        }
        // Keras holds out the last samples, before any shuffling.
        let n_val = (n as f64 * self.validation_split).floor() as usize;
        let n_train = n - n_val;
        if n_train == 0 {
            return Err(Error::Invalid(format!(
                "no training samples: {n} samples, validation_split {}",
                self.validation_split
            )));
        }
        let split_val = if n_val > 0 {
            let rows: Vec<usize> = (n_train..n).collect();
            Some((M::select_input_rows(x, &rows)?, targets.select_rows(&rows)?))
        } else {
            None
        };
        let train_rows: Vec<usize> = (0..n_train).collect();
        let mut fetch = |rows: &[usize]| -> Result<Batch<M, T>> {
            Ok((M::select_input_rows(x, rows)?, targets.select_rows(rows)?))
        };
        self.train(model, &mut fetch, &train_rows, split_val)
    }

    /// [`fit`](Self::fit) on a [`Dataset`](crate::data::Dataset) read batch
    /// by batch, in the order of the epochs (the same seeded shuffling as
    /// `fit`, whatever the number of threads), so a data set on disk trains
    /// in bounded memory. When the rayon pool leaves a core free, a reader
    /// thread prepares the batches at most two ahead, during the steps;
    /// otherwise each step reads its own batch.
    /// Each batch's inputs are checked for NaN and infinity as it arrives.
    /// Validation comes from [`validation_data`](Self::validation_data)
    /// (`validation_split` needs the whole data in memory: it is refused
    /// here). On the same data, the same model and seed, it trains exactly
    /// as `fit` does.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// use polyhead::data::FromFn;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { out: Dense::new(2, 1, &mut rng)? };
    /// // 100 samples made on demand: y = x0 - x1.
    /// let data = FromFn::new(100, |rows: &[usize]| {
    ///     let x: Vec<f32> = rows.iter().flat_map(|&r| [r as f32 / 100.0, 1.0 - r as f32 / 100.0]).collect();
    ///     let y: Vec<f32> = x.chunks(2).map(|p| p[0] - p[1]).collect();
    ///     Ok((Tensor::from_vec(x, &[rows.len(), 2])?, NetTargets::new(Tensor::from_vec(y, &[rows.len(), 1])?)))
    /// });
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.5).build()).epochs(20).batch_size(10).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit_dataset(&mut net, &data)?;
    /// let loss = history.get("loss").unwrap();
    /// assert!(loss[loss.len() - 1] < loss[0] / 10.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fit_dataset<D>(&mut self, model: &mut M, data: &D) -> Result<History>
    where
        D: crate::data::Dataset<M, T> + ?Sized,
        M::Inputs<Tensor<T>>: Send,
        M::Targets: Send,
    {
        let n = data.len();
        if n == 0 {
            return Err(Error::Invalid(
                "fit_dataset: the data set has no samples".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid(format!(
                "batch_size must be positive, got {}",
                self.batch_size
            )));
        }
        if self.validation_split != 0.0 {
            return Err(Error::Invalid(format!(
                "fit_dataset: validation_split {} needs the whole data in memory; give validation_data instead",
                self.validation_split
            )));
        }
        let train_rows: Vec<usize> = (0..n).collect();
        // A reader thread pays when a core is left over for it; when the
        // rayon pool already has one thread per core, its second thread
        // polls for work through each step (`with_awake_pool`) and a
        // reader would take turns with it on that core, delaying every
        // split product: the batches are then read in the step itself.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if rayon::current_num_threads() >= cores {
            let mut fetch = |rows: &[usize]| dataset_batch("fit_dataset", data, rows);
            return self.train(model, &mut fetch, &train_rows, None);
        }
        let (seed, epochs, batch_size) = (self.shuffle_seed, self.epochs, self.batch_size);
        // Data-parallel: this rank's shard of each batch, as `train` asks.
        let (rank, size) = self
            .parallel
            .as_ref()
            .map_or((0, 1), |p| (p.rank(), p.size()));
        std::thread::scope(|scope| {
            // At most two batches wait while a step runs.
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Batch<M, T>>>(2);
            let rows = &train_rows;
            scope.spawn(move || {
                for epoch in 0..epochs {
                    for chunk in epoch_order(seed, rows, epoch).chunks(batch_size) {
                        let (mine, _) = crate::distributed::shard(chunk, rank, size);
                        let batch = dataset_batch("fit_dataset", data, mine);
                        let failed = batch.is_err();
                        // A closed channel: training stopped early.
                        if sender.send(batch).is_err() || failed {
                            return;
                        }
                    }
                }
            });
            // The reader visits the same rows in the same order as `train`.
            let mut fetch = |_: &[usize]| -> Result<Batch<M, T>> {
                receiver
                    .recv()
                    // The reader ends early only by panicking (its errors
                    // travel through the channel): nothing a caller can
                    // match on, so `Other`.
                    .map_err(|_| Error::Other("fit_dataset: the batch reader stopped".into()))?
            };
            self.train(model, &mut fetch, &train_rows, None)
        })
    }

    /// The training run shared by `fit` and `fit_dataset`: the epochs over
    /// `train_rows` (batches from `fetch`), validation on the user's data or
    /// `split_val`, callbacks at the end; the History.
    fn train(
        &mut self,
        model: &mut M,
        fetch: &mut Fetch<'_, M, T>,
        train_rows: &[usize],
        split_val: Option<Batch<M, T>>,
    ) -> Result<History> {
        let user_validation = self.validation_data.take();
        let mut history = History::default();
        let _rank = self
            .parallel
            .as_ref()
            .map(|p| crate::distributed::RankScope::enter(p.rank()));
        let progress = match &self.parallel {
            Some(p) if p.rank() != 0 => Progress::Silent,
            _ => self.progress.clone(),
        };
        let mut reporter = Reporter::new(progress, self.epochs);
        if let Err(e) = self.broadcast_state(model) {
            self.validation_data = user_validation;
            return Err(e);
        }
        let mut callbacks = std::mem::take(&mut self.callbacks);
        let validation = user_validation.as_ref().or(split_val.as_ref());
        let started = Instant::now();
        let result = self.run(
            model,
            fetch,
            train_rows,
            validation,
            &mut history,
            &mut reporter,
            &mut callbacks,
        );
        if let Some(p) = &self.parallel {
            p.count_time(started.elapsed());
        }
        let end = {
            let mut ctx = self.context(model, &history);
            callbacks
                .iter_mut()
                .try_for_each(|c| c.on_train_end(&mut ctx))
        };
        self.callbacks = callbacks;
        self.validation_data = user_validation;
        if let (Some(p), Err(e)) = (&self.parallel, result.as_ref().and(end.as_ref())) {
            // An error every rank met in the same step is theirs already;
            // any other (a callback's on rank 0, say) would leave the
            // other ranks waiting: stop them.
            if !matches!(e, Error::RankFailed { .. } | Error::NonFiniteLoss { .. }) {
                p.abort(&e.to_string());
            }
        }
        result?;
        end?;
        Ok(history)
    }

    /// Data-parallel: rank 0's parameters, buffers and weighting state on
    /// every rank (one broadcast).
    fn broadcast_state(&mut self, model: &mut M) -> Result<()> {
        let Some(p) = &self.parallel else {
            return Ok(());
        };
        self.weighting.prepare(M::LOSSES)?;
        let mut joint = Joint {
            model,
            weighting: &mut *self.weighting,
        };
        let mut buffer: Vec<f64> = joint
            .parameters()
            .iter()
            .flat_map(|(_, p)| p.value().to_vec())
            .chain(joint.buffers().iter().flat_map(|(_, b)| b.value().to_vec()))
            .map(|v| v.to_f64())
            .collect();
        p.broadcast(&mut buffer)?;
        let mut at = 0;
        let mut take = |shape: &[usize]| -> Result<Tensor<T>> {
            let n: usize = shape.iter().product();
            let values = buffer[at..at + n].iter().map(|&v| T::from_f64(v)).collect();
            at += n;
            Ok(Tensor::from_vec(values, shape)?)
        };
        for (_, param) in joint.parameters_mut() {
            let shape = param.value().shape().to_vec();
            param.set_value(take(&shape)?)?;
        }
        for (_, b) in joint.buffers() {
            let shape = b.value().shape().to_vec();
            b.set_value(take(&shape)?)?;
        }
        Ok(())
    }

    /// The epochs: callbacks at each epoch's start, the epoch's steps
    /// ([`Self::train_epoch`]), the strategy's epoch end, validation, the
    /// History and progress, callbacks at its end (which may stop).
    // Each argument is a distinct input of the run, passed through once.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        model: &mut M,
        fetch: &mut Fetch<'_, M, T>,
        train_rows: &[usize],
        validation: Option<&Batch<M, T>>,
        history: &mut History,
        reporter: &mut Reporter,
        callbacks: &mut [Box<dyn Callback<M, T>>],
    ) -> Result<()> {
        for epoch in 0..self.epochs {
            let started = Instant::now();
            for c in callbacks.iter_mut() {
                c.on_epoch_begin(epoch, &mut self.context(model, history))?;
            }
            let order = epoch_order(self.shuffle_seed, train_rows, epoch);
            let mut logs = self.train_epoch(model, fetch, &order, epoch, reporter, callbacks)?;
            self.weighting.end_epoch()?;
            if let Some((vx, vt)) = validation {
                model.set_training(false);
                let val = self.evaluate(model, vx, vt)?;
                logs.extend(val.into_iter().map(|(n, v)| (format!("val_{n}"), v)));
            }
            history.push_epoch(&logs);
            reporter.epoch_end(epoch, &logs, started.elapsed().as_secs_f64());
            let mut stop = false;
            for c in callbacks.iter_mut() {
                stop |= c.on_epoch_end(epoch, &logs, &mut self.context(model, history))?
                    == Control::Stop;
            }
            if stop {
                break;
            }
        }
        model.set_training(false);
        Ok(())
    }

    /// What callbacks see and may change.
    fn context<'a>(&'a mut self, model: &'a mut M, history: &'a History) -> TrainContext<'a, M, T> {
        TrainContext {
            model,
            optimizer: &mut self.optimizer,
            weighting: &mut *self.weighting,
            loss_weights: &mut self.loss_weights,
            history,
        }
    }

    /// Losses and metrics of `model` on `x` and `targets`, without training
    /// (batched; no graph is recorded), in inference mode: the model's
    /// training flag is cleared first (dropout off, batch normalization on
    /// its moving statistics, which stay as they are) and left cleared, as
    /// `fit` leaves it. Names as in training (`loss`, `class_loss`,
    /// `class_accuracy`). Rows of `x` and `targets` must agree.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let x = Tensor::<f32>::rand_normal(&[8, 2], 0.0, 1.0, 1)?;
    /// let targets = NetTargets::new(x.sum_axis(1, true)?);
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// let scores = trainer.evaluate(&mut net, &x, &targets)?;
    /// assert_eq!(scores[0].0, "loss");
    /// # let _ = history;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evaluate(
        &self,
        model: &mut M,
        x: &M::Inputs<Tensor<T>>,
        targets: &M::Targets,
    ) -> Result<Vec<(String, f64)>> {
        let n = batch_rows::<M, T>("evaluate", x)?;
        let target_rows = targets.rows()?;
        if target_rows != n {
            return Err(Error::Shape(format!(
                "evaluate: the inputs have {n} rows ({}) but the targets have {target_rows}",
                shapes::<M, T>(x)
            )));
        }
        self.evaluate_batches(model, n, &mut |rows| {
            Ok((M::select_input_rows(x, rows)?, targets.select_rows(rows)?))
        })
    }

    /// [`evaluate`](Self::evaluate) on a [`Dataset`](crate::data::Dataset)
    /// read batch by batch (rows in order), so a data set on disk is
    /// scored in bounded memory; the same numbers as `evaluate` on the same
    /// data.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// use polyhead::data::FromFn;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut net = Net { out: Dense::new(1, 1, &mut Rng::new(0))? };
    /// let data = FromFn::new(6, |rows: &[usize]| {
    ///     let x: Vec<f32> = rows.iter().map(|&r| r as f32).collect();
    ///     Ok((Tensor::from_vec(x.clone(), &[rows.len(), 1])?, NetTargets::new(Tensor::from_vec(x, &[rows.len(), 1])?)))
    /// });
    /// let trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.1).build()).batch_size(4);
    /// let scores = trainer.evaluate_dataset(&mut net, &data)?;
    /// assert_eq!(scores[0].0, "loss");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evaluate_dataset<D>(&self, model: &mut M, data: &D) -> Result<Vec<(String, f64)>>
    where
        D: crate::data::Dataset<M, T> + ?Sized,
    {
        self.evaluate_batches(model, data.len(), &mut |rows| {
            dataset_batch("evaluate_dataset", data, rows)
        })
    }

    /// `evaluate` over `n` rows whose batches `fetch` gives.
    fn evaluate_batches(
        &self,
        model: &mut M,
        n: usize,
        fetch: &mut Fetch<'_, M, T>,
    ) -> Result<Vec<(String, f64)>> {
        model.set_training(false);
        let mut sums: Vec<(String, f64)> = Vec::new();
        let mut metrics = vec![Accumulator::default(); self.metrics.len()];
        let rows: Vec<usize> = (0..n).collect();
        for chunk in rows.chunks(self.batch_size.max(1)) {
            let tape = Tape::no_record();
            let (xb, tb) = fetch(chunk)?;
            let outputs = model.forward_heads(M::input_vars(&tape, &xb))?;
            let loss = model.weighted_loss(&outputs, &tb, &self.loss_weights)?;
            for (name, v) in loss.logs()? {
                match sums.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, s)) => *s += v * chunk.len() as f64,
                    None => sums.push((name, v * chunk.len() as f64)),
                }
            }
            let values = M::head_values(&outputs);
            for ((head, metric), acc) in self.metrics.iter().zip(&mut metrics) {
                if let (Some((_, p)), Some(t)) =
                    (values.iter().find(|(h, _)| h == head), tb.target(head))
                {
                    acc.add(
                        head,
                        *metric,
                        &p.value(),
                        t as &dyn Target<T>,
                        tb.mask(head),
                    )?;
                }
            }
        }
        let mut out: Vec<(String, f64)> = sums
            .into_iter()
            .map(|(name, s)| (name, s / n.max(1) as f64))
            .collect();
        for ((head, metric), acc) in self.metrics.iter().zip(&metrics) {
            out.push((format!("{head}_{}", metric.name()), acc.value(*metric)));
        }
        Ok(out)
    }

    /// Every head's prediction for every row of `x`, whole: the model runs
    /// in inference mode (its training flag cleared and left cleared, as
    /// `evaluate` does; no graph is recorded) over batches of
    /// [`batch_size`](Self::batch_size) rows, and each head's batches are
    /// joined along the first axis (Keras' `model.predict`).
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    ///     class: Dense,
    ///     #[head(loss = Mse::new())]
    ///     bbox: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let mut net = Net {
    ///     body: Dense::new(2, 4, &mut rng)?,
    ///     class: Dense::new(4, 3, &mut rng)?,
    ///     bbox: Dense::new(4, 4, &mut rng)?,
    /// };
    /// let trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).batch_size(4);
    /// let x = Tensor::<f32>::rand_normal(&[10, 2], 0.0, 1.0, 1)?;
    /// let predicted = trainer.predict(&mut net, &x)?; // three batches: 4, 4 and 2 rows
    /// assert_eq!(predicted.class.shape(), &[10, 3]);
    /// assert_eq!(predicted.bbox.shape(), &[10, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn predict(
        &self,
        model: &mut M,
        x: &M::Inputs<Tensor<T>>,
    ) -> Result<M::Outputs<Tensor<T>>> {
        let n = batch_rows::<M, T>("predict", x)?;
        self.predict_batches(model, n, &mut |rows| M::select_input_rows(x, rows))
    }

    /// [`predict`](Self::predict) on a [`Dataset`](crate::data::Dataset)'s
    /// inputs, read batch by batch in order (its targets are read and
    /// ignored); the same predictions as `predict` on the same data.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// use polyhead::data::FromFn;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut net = Net { out: Dense::new(1, 2, &mut Rng::new(0))? };
    /// let data = FromFn::new(5, |rows: &[usize]| {
    ///     let x = Tensor::<f32>::from_vec(rows.iter().map(|&r| r as f32).collect(), &[rows.len(), 1])?;
    ///     Ok((x, NetTargets::new(Tensor::zeros(&[rows.len(), 2])?)))
    /// });
    /// let trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.1).build()).batch_size(2);
    /// assert_eq!(trainer.predict_dataset(&mut net, &data)?.out.shape(), &[5, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn predict_dataset<D>(&self, model: &mut M, data: &D) -> Result<M::Outputs<Tensor<T>>>
    where
        D: crate::data::Dataset<M, T> + ?Sized,
    {
        self.predict_batches(model, data.len(), &mut |rows| {
            Ok(dataset_batch("predict_dataset", data, rows)?.0)
        })
    }

    /// `predict` over `n` rows whose inputs `fetch` gives.
    fn predict_batches(
        &self,
        model: &mut M,
        n: usize,
        fetch: &mut FetchInputs<'_, M, T>,
    ) -> Result<M::Outputs<Tensor<T>>> {
        model.set_training(false);
        let rows: Vec<usize> = (0..n).collect();
        let mut per_head: Vec<Vec<Tensor<T>>> = Vec::new();
        let mut template = None;
        // One empty batch for an empty `x`, so that the heads' shapes come
        // from the model all the same.
        let batches: Vec<&[usize]> = if n == 0 {
            vec![&rows[..]]
        } else {
            rows.chunks(self.batch_size.max(1)).collect()
        };
        for chunk in batches {
            let tape = Tape::no_record();
            let outputs = model.forward_heads(M::input_vars(&tape, &fetch(chunk)?))?;
            let mut head = 0;
            template = Some(M::map_outputs(outputs, |_, value| {
                if per_head.len() <= head {
                    per_head.push(Vec::new());
                }
                per_head[head].push(value.value());
                head += 1;
            }));
        }
        let joined: Vec<Tensor<T>> = per_head
            .iter()
            .map(|parts| Tensor::concat(parts, 0))
            .collect::<std::result::Result<_, _>>()?;
        let mut joined = joined.into_iter();
        let template = template.expect("at least one batch ran");
        Ok(M::map_outputs(template, |_, ()| {
            joined.next().expect("one joined tensor per head")
        }))
    }
}

/// A batch of `data` at `rows`, checked as `fit_dataset` checks it: the
/// rows asked for and finite inputs, with `what` (the caller) in errors.
fn dataset_batch<M, T, D>(what: &str, data: &D, rows: &[usize]) -> Result<Batch<M, T>>
where
    M: MultiOutput<T>,
    T: Float,
    D: crate::data::Dataset<M, T> + ?Sized,
{
    let (x, t) = data.batch(rows)?;
    let got = M::input_rows(&x)?;
    if got != rows.len() {
        return Err(Error::Shape(format!(
            "{what}: a batch of {} rows was asked for, the data set gave {got}",
            rows.len()
        )));
    }
    for (name, input) in M::inputs_of(&x) {
        check_finite(&format!("input {name}"), input)?;
    }
    Ok((x, t))
}

/// The rows of an epoch in the order it visits them: `rows` as they are,
/// or shuffled with a generator seeded by the seed and the epoch (never by
/// the thread count).
fn epoch_order(seed: Option<u64>, rows: &[usize], epoch: usize) -> Vec<usize> {
    let mut order = rows.to_vec();
    if let Some(seed) = seed {
        Rng::new(
            seed.wrapping_add(epoch as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
        .shuffle(&mut order);
    }
    order
}

/// The number of rows (samples) of the inputs, the same in each, with
/// `what` (the caller) in errors.
fn batch_rows<M: MultiOutput<T>, T: Float>(what: &str, x: &M::Inputs<Tensor<T>>) -> Result<usize> {
    M::input_rows(x).map_err(|e| Error::Shape(format!("{what}: {e}")))
}

/// The inputs' names and shapes, for messages.
fn shapes<M: MultiOutput<T>, T: Float>(x: &M::Inputs<Tensor<T>>) -> String {
    M::inputs_of(x)
        .iter()
        .map(|(name, t)| format!("{name} {:?}", t.shape()))
        .collect::<Vec<_>>()
        .join(", ")
}
