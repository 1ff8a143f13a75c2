//! TensorBoard logs: the [`TensorBoard`] callback writes a run's scalars
//! (and, if asked, weight histograms) as TensorBoard event files in Keras'
//! layout, and [`read_scalars`] / [`read_events`] read such files back.
//! The file format lives in `events.rs`.

mod events;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use polyhead_tensor::Float;

pub use events::{
    Event, EventWriter, Histogram, Summary, SummaryValue, Value, What, read_events, read_scalars,
};

use crate::error::{Error, Result};
use crate::multi_output::MultiOutput;
use crate::train::{Callback, Control, TrainContext};

/// Writes TensorBoard event files as Keras' `TensorBoard(log_dir)` does:
/// `log_dir/train/` holds every training value of each epoch's logs as
/// `epoch_<name>` (`epoch_loss`, `epoch_class_loss`, `epoch_weight_bbox`,
/// ...) and the learning rate as `epoch_learning_rate` (logged by `fit`
/// when the optimizer has a schedule, read from the optimizer otherwise),
/// at step = epoch
/// (0-based); `log_dir/validation/` holds the `val_` values under the
/// same tags without the prefix, so TensorBoard draws a run's training and
/// validation curves together. With [`update_freq`](Self::update_freq),
/// every n-th step's logs go to `train/` as `batch_<name>` at the global
/// step; with [`histogram_freq`](Self::histogram_freq), each parameter's
/// values as the histogram `<parameter>/histogram` every n-th epoch.
/// Open them with `tensorboard --logdir log_dir`.
///
/// ```
/// use polyhead::prelude::*;
/// #[derive(MultiOutput)]
/// struct Net {
///     #[head(loss = Mse::new())]
///     out: Dense,
/// }
/// let mut net = Net { out: Dense::new(2, 1, &mut Rng::new(0))? };
/// let x = Tensor::<f32>::rand_normal(&[16, 2], 0.0, 1.0, 1)?;
/// let targets = NetTargets::new(x.sum_axis(1, true)?);
/// let logs = std::env::temp_dir().join(format!("polyhead-doc-tensorboard-{}", std::process::id()));
/// let history = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.1).build())
///     .epochs(3)
///     .callback(polyhead::TensorBoard::new(&logs))
///     .progress(polyhead::Progress::Silent)
///     .fit(&mut net, &x, &targets)?;
/// let scalars = polyhead::tensorboard::read_scalars(logs.join("train"))?;
/// let losses: Vec<f32> = scalars.iter().filter(|(tag, _, _)| tag == "epoch_loss").map(|s| s.2).collect();
/// let logged: Vec<f32> = history.get("loss").unwrap().iter().map(|&v| v as f32).collect();
/// assert_eq!(losses, logged);
/// # std::fs::remove_dir_all(&logs)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TensorBoard {
    log_dir: PathBuf,
    update_freq: usize,
    histogram_freq: usize,
    train: Option<EventWriter>,
    validation: Option<EventWriter>,
}

impl TensorBoard {
    /// Logs under `log_dir` (created if missing), each epoch's values
    /// only.
    ///
    /// ```
    /// let callback = polyhead::TensorBoard::new("logs/run1");
    /// # let _ = callback;
    /// ```
    pub fn new(log_dir: impl AsRef<Path>) -> Self {
        TensorBoard {
            log_dir: log_dir.as_ref().to_path_buf(),
            update_freq: 0,
            histogram_freq: 0,
            train: None,
            validation: None,
        }
    }

    /// Also logs every `steps`-th step's values as `batch_<name>` (0, the
    /// default: epochs only). Keras' `update_freq=steps`.
    ///
    /// ```
    /// let callback = polyhead::TensorBoard::new("logs").update_freq(10);
    /// # let _ = callback;
    /// ```
    pub fn update_freq(mut self, steps: usize) -> Self {
        self.update_freq = steps;
        self
    }

    /// Also logs each parameter's histogram every `epochs`-th epoch (0,
    /// the default: never). Keras' `histogram_freq`.
    ///
    /// ```
    /// let callback = polyhead::TensorBoard::new("logs").histogram_freq(1);
    /// # let _ = callback;
    /// ```
    pub fn histogram_freq(mut self, epochs: usize) -> Self {
        self.histogram_freq = epochs;
        self
    }

    /// The writer of run `name` (`train` or `validation`), created with a
    /// new event file on first use.
    fn writer(&mut self, validation: bool) -> Result<&mut EventWriter> {
        let (slot, run) = if validation {
            (&mut self.validation, "validation")
        } else {
            (&mut self.train, "train")
        };
        if slot.is_none() {
            let dir = self.log_dir.join(run);
            std::fs::create_dir_all(&dir).map_err(|e| Error::File {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
            *slot = Some(EventWriter::create(dir.join(event_file_name()))?);
        }
        Ok(slot.as_mut().expect("created above"))
    }

    fn flush(&mut self) -> Result<()> {
        for writer in [&mut self.train, &mut self.validation]
            .into_iter()
            .flatten()
        {
            writer.flush()?;
        }
        Ok(())
    }
}

/// `events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2`, unique within the
/// process (`n` counts the files it made, zero-padded so that names sort
/// in the order they were made).
fn event_file_name() -> String {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(['/', '\\']))
        .unwrap_or_else(|| "localhost".into());
    format!(
        "events.out.tfevents.{seconds:010}.{host}.{}.{:06}.v2",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    )
}

impl<M: MultiOutput<T>, T: Float> Callback<M, T> for TensorBoard {
    fn on_train_batch_end(&mut self, step: usize, logs: &[(String, f64)]) -> Result<()> {
        // Data-parallel: rank 0 writes (the logs are the same everywhere).
        if !crate::distributed::is_primary() {
            return Ok(());
        }
        if self.update_freq > 0 && (step + 1).is_multiple_of(self.update_freq) {
            let writer = self.writer(false)?;
            for (name, value) in logs {
                writer.scalar(&format!("batch_{name}"), step as i64, *value)?;
            }
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &[(String, f64)],
        ctx: &mut TrainContext<'_, M, T>,
    ) -> Result<Control> {
        if !crate::distributed::is_primary() {
            return Ok(Control::Continue);
        }
        let step = epoch as i64;
        for (name, value) in logs {
            let (validation, name) = match name.strip_prefix("val_") {
                Some(rest) => (true, rest),
                None => (false, name.as_str()),
            };
            self.writer(validation)?
                .scalar(&format!("epoch_{name}"), step, *value)?;
        }
        if !logs.iter().any(|(n, _)| n == "learning_rate") {
            let rate = ctx.optimizer.learning_rate();
            self.writer(false)?
                .scalar("epoch_learning_rate", step, rate)?;
        }
        if self.histogram_freq > 0 && epoch.is_multiple_of(self.histogram_freq) {
            let parameters: Vec<(String, Vec<f64>)> = ctx
                .model
                .parameters()
                .into_iter()
                .map(|(name, p)| {
                    (
                        name,
                        p.value().to_vec().iter().map(|v| v.to_f64()).collect(),
                    )
                })
                .collect();
            let writer = self.writer(false)?;
            for (name, values) in parameters {
                writer.histogram(&format!("{name}/histogram"), step, &values)?;
            }
        }
        self.flush()?;
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, _: &mut TrainContext<'_, M, T>) -> Result<()> {
        if !crate::distributed::is_primary() {
            return Ok(());
        }
        self.flush()
    }
}
