//! Callbacks: code that runs at epoch boundaries, with access to the model,
//! the optimizer, the loss weights and the history (and after each step,
//! with the step's logs).

use std::path::PathBuf;

use polyhead_layers::{Optimizer, save_checkpoint};
use polyhead_tensor::{Float, Tensor};

use crate::error::{Error, Result};
use crate::multi_output::{LossWeights, MultiOutput};
use crate::train::history::History;

/// What a callback may touch between epochs.
///
/// ```
/// // Callbacks receive it; see `Callback`.
/// fn lr<M: polyhead::MultiOutput<f32>>(ctx: &polyhead::TrainContext<'_, M, f32>) -> f64 { ctx.optimizer.learning_rate() }
/// ```
pub struct TrainContext<'a, M: MultiOutput<T>, T: Float> {
    /// The model being trained.
    pub model: &'a mut M,
    /// Its optimizer.
    pub optimizer: &'a mut Optimizer<T>,
    /// The loss weighting strategy and its state.
    pub weighting: &'a mut dyn crate::weighting::Weighting<T>,
    /// The loss weights the next epoch will use.
    pub loss_weights: &'a mut M::LossWeights,
    /// The epochs so far.
    pub history: &'a History,
}

/// Whether training goes on after an epoch.
///
/// ```
/// assert_ne!(polyhead::Control::Continue, polyhead::Control::Stop);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Train the next epoch.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// Runs at epoch boundaries. Implement it for your own callback; every
/// method has a default that does nothing.
///
/// ```
/// use polyhead::{Callback, Control, MultiOutput, TrainContext};
/// use polyhead::tensor::Float;
///
/// /// Stops once the loss is below a threshold.
/// struct StopBelow(f64);
///
/// impl<M: MultiOutput<T>, T: Float> Callback<M, T> for StopBelow {
///     fn on_epoch_end(&mut self, _: usize, logs: &[(String, f64)], _: &mut TrainContext<'_, M, T>) -> polyhead::Result<Control> {
///         let loss = logs.iter().find(|(n, _)| n == "loss").map_or(f64::INFINITY, |l| l.1);
///         Ok(if loss < self.0 { Control::Stop } else { Control::Continue })
///     }
/// }
/// ```
pub trait Callback<M: MultiOutput<T>, T: Float> {
    /// Before an epoch (0-based).
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut TrainContext<'_, M, T>) -> Result<()> {
        let _ = (epoch, ctx);
        Ok(())
    }

    /// After each training step (`step` counts from 0 across epochs), with
    /// the step's own logs: the weighted loss, each head's loss and each
    /// loss weight (`loss`, `class_loss`, `weight_class`, ...).
    fn on_train_batch_end(&mut self, step: usize, logs: &[(String, f64)]) -> Result<()> {
        let _ = (step, logs);
        Ok(())
    }

    /// After an epoch, with its logs (training and validation).
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &[(String, f64)],
        ctx: &mut TrainContext<'_, M, T>,
    ) -> Result<Control> {
        let _ = (epoch, logs, ctx);
        Ok(Control::Continue)
    }

    /// After the last epoch.
    fn on_train_end(&mut self, ctx: &mut TrainContext<'_, M, T>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
}

fn logged(logs: &[(String, f64)], name: &str) -> Result<f64> {
    logs.iter()
        .find(|(n, _)| n == name)
        .map(|l| l.1)
        .ok_or_else(|| {
            let names: Vec<&str> = logs.iter().map(|(n, _)| n.as_str()).collect();
            Error::Invalid(format!(
                "callback monitors `{name}`, which is not logged; logged: {names:?}"
            ))
        })
}

/// Whether larger is better for a logged name (accuracies), else smaller.
fn maximize(name: &str) -> bool {
    name.contains("accuracy")
}

/// Stops when a logged value has not improved for `patience` epochs, and
/// optionally puts back the weights of the best epoch (Keras'
/// `EarlyStopping(restore_best_weights=True)`).
///
/// ```
/// let stop = polyhead::EarlyStopping::<f32>::new("val_loss").patience(3).restore_best_weights(true);
/// # let _ = stop;
/// ```
#[derive(Debug, Clone)]
pub struct EarlyStopping<T: Float> {
    monitor: String,
    patience: usize,
    min_delta: f64,
    restore: bool,
    best: Option<f64>,
    best_epoch: usize,
    wait: usize,
    best_weights: Option<Vec<(String, Tensor<T>)>>,
}

impl<T: Float> EarlyStopping<T> {
    /// Monitors a logged name (larger is better for accuracies, else smaller).
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
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(5).validation_split(0.25).callback(polyhead::EarlyStopping::new("val_loss").patience(1)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert!(history.epochs() <= 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            monitor: monitor.to_string(),
            patience: 0,
            min_delta: 0.0,
            restore: false,
            best: None,
            best_epoch: 0,
            wait: 0,
            best_weights: None,
        }
    }

    /// Epochs without improvement to tolerate.
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
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(3).callback(polyhead::EarlyStopping::new("loss").patience(10)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn patience(mut self, epochs: usize) -> Self {
        self.patience = epochs;
        self
    }

    /// The smallest change that counts as an improvement.
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
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(3).callback(polyhead::EarlyStopping::new("loss").min_delta(1e9)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 2); // nothing improves by 1e9: stops after patience 0
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn min_delta(mut self, delta: f64) -> Self {
        self.min_delta = delta;
        self
    }

    /// Whether to restore the best epoch's weights at the end.
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
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(2).callback(polyhead::EarlyStopping::new("loss").restore_best_weights(true)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.epochs(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore = restore;
        self
    }

    /// The best epoch (0-based) so far.
    ///
    /// ```
    /// let stop = polyhead::EarlyStopping::<f32>::new("val_loss");
    /// assert_eq!(stop.best_epoch(), 0);
    /// ```
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }
}

impl<M: MultiOutput<T>, T: Float> Callback<M, T> for EarlyStopping<T> {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &[(String, f64)],
        ctx: &mut TrainContext<'_, M, T>,
    ) -> Result<Control> {
        let value = logged(logs, &self.monitor)?;
        let better = match self.best {
            None => value.is_finite(),
            Some(best) if maximize(&self.monitor) => value > best + self.min_delta,
            Some(best) => value < best - self.min_delta,
        };
        if better {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.wait = 0;
            if self.restore {
                self.best_weights = Some(
                    ctx.model
                        .parameters()
                        .into_iter()
                        .map(|(n, p)| (n, p.value().clone()))
                        .collect(),
                );
            }
            return Ok(Control::Continue);
        }
        self.wait += 1;
        Ok(if self.wait > self.patience {
            Control::Stop
        } else {
            Control::Continue
        })
    }

    fn on_train_end(&mut self, ctx: &mut TrainContext<'_, M, T>) -> Result<()> {
        if let Some(best) = &self.best_weights {
            for (name, p) in ctx.model.parameters_mut() {
                if let Some((_, v)) = best.iter().find(|(n, _)| *n == name) {
                    p.set_value(v.clone())?;
                }
            }
        }
        Ok(())
    }
}

/// Saves a checkpoint (model, optimizer and weighting state, atomically)
/// after each epoch, or only when a logged value improves. Resume with
/// [`crate::Trainer::load_checkpoint`].
///
/// ```
/// let save = polyhead::ModelCheckpoint::new("model.safetensors").best_only("val_loss");
/// # let _ = save;
/// ```
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    path: PathBuf,
    best_only: Option<String>,
    best: Option<f64>,
}

impl ModelCheckpoint {
    /// Saves to `path` after every epoch.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("polyhead-doc-ckpt-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
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
    /// polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).callback(polyhead::ModelCheckpoint::new(dir.join("m.safetensors"))).progress(polyhead::Progress::Silent).fit(&mut net, &x, &targets)?;
    /// assert!(dir.join("m.safetensors").exists());
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            best_only: None,
            best: None,
        }
    }

    /// Saves only when `monitor` improves.
    ///
    /// ```
    /// let save = polyhead::ModelCheckpoint::new("best.safetensors").best_only("val_class_accuracy");
    /// # let _ = save;
    /// ```
    pub fn best_only(mut self, monitor: &str) -> Self {
        self.best_only = Some(monitor.to_string());
        self
    }
}

impl<M: MultiOutput<T>, T: Float> Callback<M, T> for ModelCheckpoint {
    fn on_epoch_end(
        &mut self,
        _: usize,
        logs: &[(String, f64)],
        ctx: &mut TrainContext<'_, M, T>,
    ) -> Result<Control> {
        if let Some(monitor) = &self.best_only {
            let value = logged(logs, monitor)?;
            let better = match self.best {
                None => value.is_finite(),
                Some(b) if maximize(monitor) => value > b,
                Some(b) => value < b,
            };
            if !better {
                return Ok(Control::Continue);
            }
            self.best = Some(value);
        }
        // Data-parallel: every rank holds the same state; rank 0 saves it.
        if !crate::distributed::is_primary() {
            return Ok(Control::Continue);
        }
        let joint = crate::weighting::Joint {
            model: &mut *ctx.model,
            weighting: &mut *ctx.weighting,
        };
        save_checkpoint(&self.path, &joint, Some(&*ctx.optimizer))?;
        Ok(Control::Continue)
    }
}

/// Sets one loss's weight before each epoch from a function of the epoch
/// (0-based): a loss-weight schedule.
///
/// ```
/// // Ramp the box loss in over ten epochs.
/// let ramp = polyhead::LossWeightSchedule::new("bbox", |epoch| (epoch as f64 / 10.0).min(1.0));
/// # let _ = ramp;
/// ```
pub struct LossWeightSchedule<F> {
    name: String,
    weight_at: F,
}

impl<F: FnMut(usize) -> f64> LossWeightSchedule<F> {
    /// Sets the weight of loss `name` to `weight_at(epoch)`.
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
    /// let mut trainer = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.05).build()).epochs(2).callback(polyhead::LossWeightSchedule::new("out", |epoch| 1.0 + epoch as f64)).progress(polyhead::Progress::Silent);
    /// let history = trainer.fit(&mut net, &x, &targets)?;
    /// assert_eq!(history.get("weight_out").unwrap(), &[1.0, 2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: &str, weight_at: F) -> Self {
        LossWeightSchedule {
            name: name.to_string(),
            weight_at,
        }
    }
}

impl<M: MultiOutput<T>, T: Float, F: FnMut(usize) -> f64> Callback<M, T> for LossWeightSchedule<F> {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut TrainContext<'_, M, T>) -> Result<()> {
        ctx.loss_weights.set(&self.name, (self.weight_at)(epoch))
    }
}

/// Writes the epochs' logs to a CSV file, as Keras' `CSVLogger`: a header
/// `epoch,<names...>`, then one row per epoch. The columns are every name
/// logged so far, in first-seen order; a name an epoch did not log (say
/// `skipped_steps`, logged from the epoch where a step was first skipped)
/// is an empty cell, so no value ever lands under another name's column.
/// The file is rewritten whole after each epoch, through a temporary file
/// and a rename, so it is never half-written.
///
/// ```
/// let log = polyhead::CsvLogger::new("training.csv");
/// # let _ = log;
/// ```
#[derive(Debug)]
pub struct CsvLogger {
    path: PathBuf,
    epochs: History,
}

impl CsvLogger {
    /// Logs to `path` (replaced at the first epoch).
    ///
    /// ```
    /// let log = polyhead::CsvLogger::new(std::env::temp_dir().join("polyhead-doc.csv"));
    /// # let _ = log;
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLogger {
            path: path.into(),
            epochs: History::default(),
        }
    }
}

impl<M: MultiOutput<T>, T: Float> Callback<M, T> for CsvLogger {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &[(String, f64)],
        _: &mut TrainContext<'_, M, T>,
    ) -> Result<Control> {
        self.epochs.push_epoch(logs);
        // Data-parallel: the logs are the same on every rank; rank 0 writes.
        if !crate::distributed::is_primary() {
            return Ok(Control::Continue);
        }
        let io = |e: std::io::Error| Error::File {
            path: self.path.display().to_string(),
            message: format!("csv logger: {e}"),
        };
        let file_name = self
            .path
            .file_name()
            .ok_or_else(|| io(std::io::Error::other("the path names no file")))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(".tmp");
        let tmp = self.path.with_file_name(tmp_name);
        std::fs::write(&tmp, self.epochs.to_csv()).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(Control::Continue)
    }
}
