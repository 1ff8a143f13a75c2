//! The per-epoch record of a training run, under Keras' names.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::train::raster::Canvas;

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
    /// Per series, whether each epoch logged it (a name first logged late,
    /// or missing from an epoch, is padded with NaN in `series`).
    logged: Vec<Vec<bool>>,
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
            match self.series.iter().position(|(n, _)| n == name) {
                Some(i) => {
                    self.series[i].1.push(*value);
                    self.logged[i].push(true);
                }
                None => {
                    // A name first seen late is padded with NaN for earlier epochs.
                    let mut values = vec![f64::NAN; self.epochs];
                    values.push(*value);
                    self.series.push((name.clone(), values));
                    let mut logged = vec![false; self.epochs];
                    logged.push(true);
                    self.logged.push(logged);
                }
            }
        }
        self.epochs += 1;
        for ((_, values), logged) in self.series.iter_mut().zip(&mut self.logged) {
            values.resize(self.epochs, f64::NAN);
            logged.resize(self.epochs, false);
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

    /// The history as CSV (RFC 4180, through the `csv` crate): a header
    /// `epoch,<names...>` with every name ever logged, then one row per
    /// epoch; a name an epoch did not log is an empty cell.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 2.0)]);
    /// h.push_epoch(&[("loss".into(), 1.0), ("skipped_steps".into(), 3.0)]);
    /// assert_eq!(h.to_csv(), "epoch,loss,skipped_steps\n1,2,\n2,1,3\n");
    /// ```
    pub fn to_csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let header = std::iter::once("epoch").chain(self.series.iter().map(|(n, _)| n.as_str()));
        // Writing into memory cannot fail.
        out.write_record(header).expect("in-memory CSV");
        for e in 0..self.epochs {
            let row = std::iter::once((e + 1).to_string()).chain(
                self.series
                    .iter()
                    .zip(&self.logged)
                    .map(|((_, v), logged)| {
                        if logged[e] {
                            v[e].to_string()
                        } else {
                            String::new()
                        }
                    }),
            );
            out.write_record(row).expect("in-memory CSV");
        }
        String::from_utf8(out.into_inner().expect("in-memory CSV"))
            .expect("UTF-8 names and numbers")
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
    /// ending in `loss`; validation dashed in its training curve's colour),
    /// one of the other values (metrics, loss weights).
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
        let mut svg = Svg(format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
        ));
        self.draw(&mut svg);
        svg.0.push_str("</svg>\n");
        svg.0
    }

    /// The same plot as [`History::to_svg`], as a PNG image (text in the
    /// DejaVu Sans font shipped with the crate).
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 1.0)]);
    /// h.push_epoch(&[("loss".into(), 0.5)]);
    /// let png = h.to_png();
    /// assert_eq!(&png[1..4], b"PNG");
    /// ```
    pub fn to_png(&self) -> Vec<u8> {
        let mut canvas = Canvas::new(WIDTH as usize, HEIGHT as usize);
        self.draw(&mut canvas);
        canvas.png()
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

    /// Writes [`History::to_png`] to a file.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("polyhead-doc-history.png");
    /// polyhead::History::default().save_png(&path)?;
    /// assert_eq!(&std::fs::read(&path)?[1..4], b"PNG");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        write(path.as_ref(), &self.to_png())
    }

    fn draw(&self, surface: &mut dyn Surface) {
        let losses: Vec<&(String, Vec<f64>)> = self
            .series
            .iter()
            .filter(|(n, _)| n.ends_with("loss"))
            .collect();
        let others: Vec<&(String, Vec<f64>)> = self
            .series
            .iter()
            .filter(|(n, _)| !n.ends_with("loss"))
            .collect();
        panel(surface, "losses", &losses, 10.0, WIDTH / 2.0 - 20.0, HEIGHT);
        panel(
            surface,
            "metrics",
            &others,
            WIDTH / 2.0 + 10.0,
            WIDTH / 2.0 - 20.0,
            HEIGHT,
        );
    }
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;

const COLORS: [[u8; 3]; 8] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x17, 0xbe, 0xcf],
];

/// What the plot is drawn on: SVG text or a raster canvas.
trait Surface {
    /// Text with its baseline at `y`; `end` aligns its end at `x`.
    fn text(&mut self, x: f64, y: f64, s: &str, end: bool);
    /// A grey rectangle outline.
    fn frame(&mut self, x: f64, y: f64, w: f64, h: f64);
    /// A polyline in `color`, dashed or not.
    fn polyline(&mut self, points: &[(f64, f64)], color: [u8; 3], dash: bool);
}

struct Svg(String);

impl Surface for Svg {
    fn text(&mut self, x: f64, y: f64, s: &str, end: bool) {
        let anchor = if end { r#" text-anchor="end""# } else { "" };
        let _ = write!(self.0, r#"<text x="{x:.1}" y="{y:.1}"{anchor}>{s}</text>"#);
    }
    fn frame(&mut self, x: f64, y: f64, w: f64, h: f64) {
        let _ = write!(
            self.0,
            r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="none" stroke="gray"/>"#
        );
    }
    fn polyline(&mut self, points: &[(f64, f64)], [r, g, b]: [u8; 3], dash: bool) {
        let dash = if dash {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            self.0,
            r#"<polyline fill="none" stroke="rgb({r},{g},{b})" stroke-width="2"{dash} points="{}"/>"#,
            pts.join(" ")
        );
    }
}

impl Surface for Canvas {
    fn text(&mut self, x: f64, y: f64, s: &str, end: bool) {
        let x = if end { x - Canvas::text_width(s) } else { x };
        Canvas::text(self, x, y, s, [40, 40, 40]);
    }
    fn frame(&mut self, x: f64, y: f64, w: f64, h: f64) {
        let g = [150, 150, 150];
        self.line((x, y), (x + w, y), g, 1, false);
        self.line((x + w, y), (x + w, y + h), g, 1, false);
        self.line((x + w, y + h), (x, y + h), g, 1, false);
        self.line((x, y + h), (x, y), g, 1, false);
    }
    fn polyline(&mut self, points: &[(f64, f64)], color: [u8; 3], dash: bool) {
        for w in points.windows(2) {
            self.line(w[0], w[1], color, 2, dash);
        }
    }
}

/// One chart: axes with min/max labels, a polyline per series, a legend.
fn panel(
    s: &mut dyn Surface,
    title: &str,
    series: &[&(String, Vec<f64>)],
    x0: f64,
    width: f64,
    height: f64,
) {
    let (left, top, bottom) = (x0 + 50.0, 30.0, height - 40.0);
    let right = x0 + width - 10.0;
    s.text(x0 + 50.0, 18.0, title, false);
    let finite = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    s.frame(left, top, right - left, bottom - top);
    if !lo.is_finite() {
        s.text(left + 10.0, top + 20.0, "(nothing logged)", false);
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
    s.text(left - 4.0, top + 4.0, &format!("{hi:.4}"), true);
    s.text(left - 4.0, bottom, &format!("{lo:.4}"), true);
    s.text(left, bottom + 16.0, "epoch 1", false);
    s.text(right, bottom + 16.0, &format!("epoch {epochs}"), true);
    // A validation curve takes its training curve's colour, dashed.
    let mut bases: Vec<&str> = Vec::new();
    for (name, _) in series {
        let base = name.strip_prefix("val_").unwrap_or(name);
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    for (i, (name, values)) in series.iter().enumerate() {
        let base = name.strip_prefix("val_").unwrap_or(name);
        let color = COLORS[bases.iter().position(|b| *b == base).unwrap_or(0) % COLORS.len()];
        let dash = name.starts_with("val_");
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(e, &v)| (px(e), py(v)))
            .collect();
        s.polyline(&points, color, dash);
        let ly = top + 14.0 + 16.0 * i as f64;
        s.polyline(
            &[(right - 150.0, ly - 4.0), (right - 130.0, ly - 4.0)],
            color,
            dash,
        );
        s.text(right - 125.0, ly, name, false);
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::Other(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PNG, decoded: its size, the first curve's colour along the
    /// loss panel where the data puts it, and text ink in the title row.
    #[test]
    fn the_png_plot_decodes_and_shows_its_curves_and_text() {
        let mut h = History::default();
        for e in 0..4 {
            h.push_epoch(&[("loss".into(), 1.0 - 0.25 * e as f64)]);
        }
        let png = h.to_png();
        let decoder = png::Decoder::new(std::io::Cursor::new(png.as_slice()));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.width, info.height), (WIDTH as u32, HEIGHT as u32));
        let at = |x: f64, y: f64| {
            let i = ((y.round() as usize) * WIDTH as usize + x.round() as usize) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        // The loss panel spans x 60..470, y 30..380; the loss falls
        // linearly from its maximum (top) to its minimum (bottom).
        let (left, right, top, bottom) =
            (60.0, 10.0 + WIDTH / 2.0 - 20.0 - 10.0, 30.0, HEIGHT - 40.0);
        for k in 1..4 {
            let t = k as f64 / 4.0;
            let (x, y) = (left + (right - left) * t, top + (bottom - top) * t);
            assert_eq!(at(x, y), COLORS[0], "curve pixel at ({x}, {y})");
        }
        // The title "losses" is inked in the band above the panel.
        let inked = (5..28)
            .flat_map(|y| (60..110).map(move |x| (x, y)))
            .filter(|&(x, y)| at(f64::from(x), f64::from(y))[0] < 128)
            .count();
        assert!(inked > 20, "{inked} inked pixels in the title");
    }
}
