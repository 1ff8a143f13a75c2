//! The per-epoch record of a training run, under Keras' names.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

/// What `fit` returns: for each logged name (`loss`, `class_loss`,
/// `val_loss`, `class_accuracy`, ...) one value per epoch, as Keras'
/// `History.history`.
///
/// ```
/// use polyhead::History;
/// let mut h = History::default();
/// h.push_epoch(&[("loss".into(), 1.0), ("val_loss".into(), 1.5)]);
/// h.push_epoch(&[("loss".into(), 0.5), ("val_loss".into(), 0.9)]);
/// assert_eq!(h.get("loss"), Some(&[1.0, 0.5][..]));
/// assert_eq!(h.epochs(), 2);
/// assert_eq!(h.to_csv(), "epoch,loss,val_loss\n1,1,1.5\n2,0.5,0.9\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    series: Vec<(String, Vec<f64>)>,
    epochs: usize,
}

impl History {
    /// Appends one epoch's logs (names in first-seen order).
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 2.0)]);
    /// h.push_epoch(&[("loss".into(), 1.0), ("val_loss".into(), 1.5)]);
    /// assert!(h.get("val_loss").unwrap()[0].is_nan()); // first logged in epoch 2
    /// ```
    pub fn push_epoch(&mut self, logs: &[(String, f64)]) {
        for (name, value) in logs {
            match self.series.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(*value),
                None => {
                    // A name first seen late is padded with NaN for earlier epochs.
                    let mut values = vec![f64::NAN; self.epochs];
                    values.push(*value);
                    self.series.push((name.clone(), values));
                }
            }
        }
        self.epochs += 1;
        for (_, values) in &mut self.series {
            values.resize(self.epochs, f64::NAN);
        }
    }

    /// The values of one name, one per epoch.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 2.0)]);
    /// assert_eq!(h.get("loss"), Some(&[2.0][..]));
    /// assert_eq!(h.get("nope"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.series
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The logged names, in first-seen order.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 1.0)]);
    /// assert_eq!(h.names(), vec!["loss"]);
    /// ```
    pub fn names(&self) -> Vec<&str> {
        self.series.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The number of epochs recorded.
    ///
    /// ```
    /// assert_eq!(polyhead::History::default().epochs(), 0);
    /// ```
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// The history as a JSON object of arrays (Keras' `history.history`);
    /// NaN becomes `null`.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 0.25)]);
    /// assert_eq!(h.to_json(), r#"{"loss":[0.25]}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .series
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    serde_json::Value::from(
                        v.iter()
                            .map(|&x| if x.is_finite() { Some(x) } else { None })
                            .collect::<Vec<_>>(),
                    ),
                )
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// The history as CSV: a header `epoch,<names...>`, then one row per epoch.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 2.0)]);
    /// assert_eq!(h.to_csv(), "epoch,loss\n1,2\n");
    /// ```
    pub fn to_csv(&self) -> String {
        let mut out = String::from("epoch");
        for (n, _) in &self.series {
            out.push(',');
            out.push_str(n);
        }
        out.push('\n');
        for e in 0..self.epochs {
            let _ = write!(out, "{}", e + 1);
            for (_, v) in &self.series {
                let _ = write!(out, ",{}", v[e]);
            }
            out.push('\n');
        }
        out
    }

    /// Writes [`History::to_json`] to a file.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("polyhead-doc-history.json");
    /// polyhead::History::default().save_json(&path)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "{}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        write(path.as_ref(), self.to_json().as_bytes())
    }

    /// Writes [`History::to_csv`] to a file.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("polyhead-doc-history.csv");
    /// polyhead::History::default().save_csv(&path)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "epoch\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        write(path.as_ref(), self.to_csv().as_bytes())
    }

    /// Draws the history as an SVG image: one panel of loss curves (names
    /// ending in `loss`; validation dashed), one of the other metrics.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// for e in 0..5 {
    ///     let e = e as f64;
    ///     h.push_epoch(&[("loss".into(), 1.0 / (1.0 + e)), ("val_loss".into(), 1.2 / (1.0 + e)), ("class_accuracy".into(), 0.5 + e / 10.0)]);
    /// }
    /// let svg = h.to_svg();
    /// assert!(svg.starts_with("<svg") && svg.contains("val_loss") && svg.contains("class_accuracy"));
    /// ```
    pub fn to_svg(&self) -> String {
        let (w, h) = (960.0, 420.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
        );
        let losses: Vec<&(String, Vec<f64>)> = self
            .series
            .iter()
            .filter(|(n, _)| n.ends_with("loss"))
            .collect();
        let metrics: Vec<&(String, Vec<f64>)> = self
            .series
            .iter()
            .filter(|(n, _)| !n.ends_with("loss"))
            .collect();
        panel(&mut svg, "losses", &losses, 10.0, w / 2.0 - 20.0, h);
        panel(
            &mut svg,
            "metrics",
            &metrics,
            w / 2.0 + 10.0,
            w / 2.0 - 20.0,
            h,
        );
        svg.push_str("</svg>\n");
        svg
    }

    /// Writes [`History::to_svg`] to a file.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("polyhead-doc-history.svg");
    /// polyhead::History::default().save_svg(&path)?;
    /// assert!(std::fs::read_to_string(&path)?.contains("nothing logged"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        write(path.as_ref(), self.to_svg().as_bytes())
    }
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One chart: axes with min/max labels, a polyline per series, a legend.
fn panel(
    svg: &mut String,
    title: &str,
    series: &[&(String, Vec<f64>)],
    x0: f64,
    width: f64,
    height: f64,
) {
    let (left, top, bottom) = (x0 + 50.0, 30.0, height - 40.0);
    let right = x0 + width - 10.0;
    let _ = write!(
        svg,
        r#"<text x="{}" y="18" font-weight="bold">{title}</text>"#,
        x0 + 50.0
    );
    let finite = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let _ = write!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="gray"/>"#,
        right - left,
        bottom - top
    );
    if !lo.is_finite() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}">(nothing logged)</text>"#,
            left + 10.0,
            top + 20.0
        );
        return;
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    let epochs = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let px = |e: usize| left + (right - left) * e as f64 / (epochs - 1) as f64;
    let py = |v: f64| bottom - (bottom - top) * (v - lo) / span;
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{:.4}</text>"#,
        left - 4.0,
        top + 4.0,
        hi
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{:.4}</text>"#,
        left - 4.0,
        bottom,
        lo
    );
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}">epoch 1</text>"#,
        bottom + 16.0
    );
    let _ = write!(
        svg,
        r#"<text x="{right}" y="{}" text-anchor="end">epoch {epochs}</text>"#,
        bottom + 16.0
    );
    // A validation curve takes its training curve's colour, dashed.
    let bases: Vec<&str> = {
        let mut b: Vec<&str> = Vec::new();
        for (name, _) in series {
            let base = name.strip_prefix("val_").unwrap_or(name);
            if !b.contains(&base) {
                b.push(base);
            }
        }
        b
    };
    for (i, (name, values)) in series.iter().enumerate() {
        let base = name.strip_prefix("val_").unwrap_or(name);
        let color = COLORS[bases.iter().position(|b| *b == base).unwrap_or(0) % COLORS.len()];
        let dash = if name.starts_with("val_") {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(e, &v)| format!("{:.1},{:.1}", px(e), py(v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 14.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2"{dash}/>"#,
            right - 150.0,
            ly - 4.0,
            right - 130.0,
            ly - 4.0
        );
        let _ = write!(svg, r#"<text x="{}" y="{ly}">{name}</text>"#, right - 125.0);
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::Other(format!("cannot write {}: {e}", path.display())))
}
