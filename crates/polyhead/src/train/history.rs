//! The per-epoch record of a training run, under Keras' names.

use std::path::Path;

use crate::error::{Error, Result};
use crate::train::plot;
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

    /// The plot of every logged quantity as SVG: one panel per quantity
    /// (the total loss, each head's loss, each metric, the loss weights
    /// together, the learning rate, anything else), each with its `val_`
    /// twin dashed in the same colour, scaled to its own data (a loss
    /// spanning more than two decades on a log axis), with ticks, grid
    /// lines, epoch numbers and a legend above the curves.
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// for e in 0..5 {
    ///     let e = e as f64;
    ///     h.push_epoch(&[("loss".into(), 1.0 / (1.0 + e)), ("val_loss".into(), 1.2 / (1.0 + e)), ("class_accuracy".into(), 0.5 + e / 10.0)]);
    /// }
    /// let svg = h.to_svg();
    /// assert!(svg.starts_with("<svg") && svg.contains(">val_loss</text>") && svg.contains(">class_accuracy</text>"));
    /// ```
    pub fn to_svg(&self) -> String {
        let page = plot::layout(&self.series);
        let mut svg = plot::Svg::new(page.width, page.height);
        plot::draw(&page, &mut svg);
        svg.finish()
    }

    /// The same drawing as [`History::to_svg`], as a PNG image (text in
    /// the DejaVu Sans font shipped with the crate, anti-aliased).
    ///
    /// ```
    /// let mut h = polyhead::History::default();
    /// h.push_epoch(&[("loss".into(), 1.0)]);
    /// h.push_epoch(&[("loss".into(), 0.5)]);
    /// let png = h.to_png();
    /// assert_eq!(&png[1..4], b"PNG");
    /// ```
    pub fn to_png(&self) -> Vec<u8> {
        let page = plot::layout(&self.series);
        let mut canvas = Canvas::new(page.width as usize, page.height as usize);
        plot::draw(&page, &mut canvas);
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
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::plot::{self, Page};

    /// A run shaped like `digit_bbox`'s: a loss falling from 1.7, a box
    /// loss near 0.015, an accuracy rising to 1, constant loss weights, and
    /// validation twins well apart from their training curves.
    fn digit_like() -> History {
        let mut h = History::default();
        for e in 0..8 {
            let t = e as f64 / 7.0;
            let class = 1.7 * (1.0 - t) + 0.2 * t;
            let bbox = 0.018 * (1.0 - t) + 0.012 * t;
            h.push_epoch(&[
                ("loss".into(), class + 0.5 * bbox),
                ("class_loss".into(), class),
                ("bbox_loss".into(), bbox),
                ("class_accuracy".into(), 0.3 + 0.6 * t),
                ("bbox_mae".into(), 0.11 - 0.03 * t),
                ("weight_class".into(), 1.0),
                ("weight_bbox".into(), 0.5),
                ("val_loss".into(), 2.0 * (class + 0.5 * bbox) + 1.0),
                ("val_class_accuracy".into(), 0.1 + 0.3 * t),
            ]);
        }
        h
    }

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        (info.width, info.height, rgb)
    }

    /// The PNG, decoded: its size is the layout's, and every solid curve's
    /// colour is where its data puts it (the middle of each segment), in
    /// panels scaled to their own data: the box loss spans most of its
    /// panel's height instead of lying on the floor of the class loss's
    /// scale, and a constant weight sits inside its panel, not on the
    /// frame.
    #[test]
    fn the_png_shows_each_quantity_in_its_own_scaled_panel() {
        let h = digit_like();
        let page: Page = plot::layout(&h.series);
        let (width, height, rgb) = decode(&h.to_png());
        assert_eq!((width as f64, height as f64), (page.width, page.height));
        let at = |(x, y): (f64, f64)| {
            let i = ((y.round() as usize) * width as usize + x.round() as usize) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        let mut checked = 0;
        for panel in &page.panels {
            for curve in panel.curves.iter().filter(|c| !c.dashed) {
                for e in 1..curve.values.len() {
                    let (a, b) = (
                        panel.point(e, curve.values[e - 1]),
                        panel.point(e + 1, curve.values[e]),
                    );
                    let middle = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
                    assert_eq!(at(middle), curve.color, "{} at {middle:?}", curve.name);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 7 * 7, "seven solid curves of seven segments");
        let panel = |title: &str| page.panels.iter().find(|p| p.title == title).unwrap();
        let bbox = panel("bbox_loss");
        let [_, top, _, bottom] = bbox.area;
        let drop = bbox.point(8, 0.012).1 - bbox.point(1, 0.018).1;
        assert!(
            drop > 0.6 * (bottom - top),
            "the box loss falls {drop} px of {}",
            bottom - top
        );
        let weights = panel("loss weights");
        let [_, top, _, bottom] = weights.area;
        for w in [1.0, 0.5] {
            let y = weights.point(1, w).1;
            // Off the frame (at least the 2-pixel line's width and a gap).
            assert!(y > top + 4.0 && y < bottom - 4.0, "weight {w} at y {y}");
        }
    }

    /// Every text element of the SVG, by its class.
    fn svg_texts(svg: &str) -> Vec<(String, String)> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                (
                    n.attribute("class").unwrap_or("").to_string(),
                    n.text().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The SVG, parsed as XML: a title per quantity, a legend entry per
    /// series, tick labels on both axes of every panel.
    #[test]
    fn the_svg_names_every_panel_series_and_tick() {
        let texts = svg_texts(&digit_like().to_svg());
        let of = |class: &str| -> Vec<&str> {
            texts
                .iter()
                .filter(|(c, _)| c == class)
                .map(|(_, t)| t.as_str())
                .collect()
        };
        assert_eq!(
            of("title"),
            [
                "loss",
                "class_loss",
                "bbox_loss",
                "class_accuracy",
                "bbox_mae",
                "loss weights"
            ]
        );
        let mut legend = of("legend");
        legend.sort();
        let history = digit_like();
        let mut names: Vec<&str> = history.names();
        names.sort();
        assert_eq!(legend, names);
        assert_eq!(of("axis"), ["epoch"; 6]);
        // Each panel: epochs 1, 2, 4, 6, 8 and at least three value ticks.
        let ticks = of("tick");
        assert_eq!(ticks.iter().filter(|t| **t == "8").count(), 6);
        assert!(ticks.len() >= 6 * (5 + 3), "{ticks:?}");
        // The box loss's ticks are its own: 0.012 to 0.018.
        assert!(
            ticks.contains(&"0.012") && ticks.contains(&"0.018"),
            "{ticks:?}"
        );
    }

    /// A loss over more than two decades is drawn on a log axis, labelled
    /// by powers of ten; names with XML's special characters are escaped.
    #[test]
    fn a_loss_over_decades_is_drawn_on_a_log_axis() {
        let mut h = History::default();
        for e in 0..6 {
            h.push_epoch(&[("loss".into(), 10f64.powi(-e)), ("a<b>&c".into(), e as f64)]);
        }
        let texts = svg_texts(&h.to_svg());
        let ticks: Vec<&str> = texts
            .iter()
            .filter(|(c, _)| c == "tick")
            .map(|(_, t)| t.as_str())
            .collect();
        for label in ["1e-4", "1e-2", "1e0"] {
            assert!(ticks.contains(&label), "{label} in {ticks:?}");
        }
        assert!(texts.iter().any(|(c, t)| c == "title" && t == "a<b>&c"));
        let page = plot::layout(&h.series);
        let loss = &page.panels[0];
        // Equal ratios, equal distances.
        let y = |v: f64| loss.point(1, v).1;
        assert!(((y(1.0) - y(0.1)) - (y(0.1) - y(0.01))).abs() < 1e-9);
    }

    #[test]
    fn an_empty_history_says_so() {
        let texts = svg_texts(&History::default().to_svg());
        assert_eq!(
            texts,
            [("title".to_string(), "(nothing logged)".to_string())]
        );
        let (w, h, _) = decode(&History::default().to_png());
        assert!(w > 0 && h > 0);
    }
}
