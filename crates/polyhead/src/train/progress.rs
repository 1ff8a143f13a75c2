//! Progress output: a bar per epoch with running losses on a terminal, one
//! plain line per epoch anywhere else (CI, pipes, files).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

/// Where and how `fit` reports progress.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let buffer: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
/// let to_buffer = polyhead::Progress::LinesTo(buffer.clone());
/// # let _ = to_buffer;
/// ```
#[derive(Clone, Default)]
pub enum Progress {
    /// A bar on a terminal, plain lines on standard output otherwise.
    #[default]
    Auto,
    /// One line per epoch on standard output.
    Lines,
    /// One line per epoch into a shared writer (a file, a buffer in tests).
    LinesTo(Arc<Mutex<dyn Write + Send>>),
    /// Nothing.
    Silent,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Progress::Auto => "Auto",
            Progress::Lines => "Lines",
            Progress::LinesTo(_) => "LinesTo(..)",
            Progress::Silent => "Silent",
        })
    }
}

/// The running reporter of one `fit`.
pub(crate) struct Reporter {
    mode: Progress,
    bar: Option<indicatif::ProgressBar>,
    epochs: usize,
}

/// `name: value` pairs as Keras prints them.
pub(crate) fn format_logs(logs: &[(String, f64)]) -> String {
    logs.iter()
        .map(|(n, v)| format!("{n}: {v:.4}"))
        .collect::<Vec<_>>()
        .join(" - ")
}

impl Reporter {
    pub(crate) fn new(mode: Progress, epochs: usize) -> Self {
        let mode = match mode {
            Progress::Auto if std::io::stdout().is_terminal() => Progress::Auto,
            Progress::Auto => Progress::Lines,
            other => other,
        };
        Reporter {
            mode,
            bar: None,
            epochs,
        }
    }

    pub(crate) fn epoch_begin(&mut self, epoch: usize, steps: usize) {
        if matches!(self.mode, Progress::Auto) {
            let bar = indicatif::ProgressBar::new(steps as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, self.epochs));
            self.bar = Some(bar);
        }
    }

    pub(crate) fn step(&mut self, running: &[(String, f64)]) {
        if let Some(bar) = &self.bar {
            bar.set_message(format_logs(running));
            bar.inc(1);
        }
    }

    pub(crate) fn epoch_end(&mut self, epoch: usize, logs: &[(String, f64)], seconds: f64) {
        let line = format!(
            "epoch {}/{} - {} - {seconds:.1}s",
            epoch + 1,
            self.epochs,
            format_logs(logs)
        );
        match &self.mode {
            Progress::Auto => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                println!("{line}");
            }
            Progress::Lines => println!("{line}"),
            Progress::LinesTo(w) => {
                if let Ok(mut w) = w.lock() {
                    let _ = writeln!(w, "{line}");
                }
            }
            Progress::Silent => {}
        }
    }
}
