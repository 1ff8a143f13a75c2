//! The [`History`](super::History) plot: one panel per quantity (the total
//! loss, each head's loss, each metric, the loss weights together, the
//! learning rate, anything else logged), each with its `val_` twin dashed
//! in the same colour, scaled to its own data (a loss spanning more than
//! two decades on a log axis), with ticks, grid lines, epoch numbers and a
//! legend above the plot area so that it never covers a curve. One layout
//! ([`layout`]) is drawn on SVG text or on a raster [`Canvas`].

use std::fmt::Write as _;

use crate::train::raster::Canvas;

/// A panel's outer size, and the grid's columns.
const PANEL_WIDTH: f64 = 340.0;
const PANEL_HEIGHT: f64 = 250.0;
const COLUMNS: usize = 3;
/// The plot area's margins inside a panel: room for the y tick labels on
/// the left and the epoch numbers and axis name below.
const LEFT: f64 = 62.0;
const RIGHT: f64 = 14.0;
const BOTTOM: f64 = 38.0;
/// Text sizes in pixels.
const TITLE_PX: f64 = 14.0;
const LABEL_PX: f64 = 11.0;
/// A legend line's height.
const LEGEND_LINE: f64 = 15.0;

const INK: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [226, 226, 226];
const FRAME: [u8; 3] = [150, 150, 150];

/// Curve colours (matplotlib's first eight).
pub(crate) const COLORS: [[u8; 3]; 8] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x17, 0xbe, 0xcf],
];

/// One curve of a panel.
#[derive(Debug, Clone)]
pub(crate) struct Curve<'a> {
    pub(crate) name: &'a str,
    pub(crate) values: &'a [f64],
    pub(crate) color: [u8; 3],
    /// Validation curves are dashed.
    pub(crate) dashed: bool,
}

/// A value axis: its range, whether it is logarithmic, and its ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    /// The range drawn, in data units (powers of ten on a log axis).
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) log: bool,
    /// Tick values and their labels.
    pub(crate) ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Where `v` falls between the range's ends, 0 at `lo` and 1 at `hi`.
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// A panel placed on the page: its box, plot area, axes and curves.
#[derive(Debug, Clone)]
pub(crate) struct Panel<'a> {
    pub(crate) title: String,
    /// The panel's top edge.
    pub(crate) y: f64,
    /// The plot area: left, top, right, bottom.
    pub(crate) area: [f64; 4],
    /// Epochs 1..=epochs along x.
    pub(crate) epochs: usize,
    pub(crate) x_ticks: Vec<usize>,
    /// `None` when nothing finite was logged.
    pub(crate) axis: Option<Axis>,
    pub(crate) curves: Vec<Curve<'a>>,
    /// Each legend entry's line start (x, baseline y).
    pub(crate) legend: Vec<(f64, f64)>,
}

impl Panel<'_> {
    /// Where epoch `epoch` (1-based) and value `v` are drawn.
    pub(crate) fn point(&self, epoch: usize, v: f64) -> (f64, f64) {
        let [left, top, right, bottom] = self.area;
        let x = if self.epochs <= 1 {
            (left + right) / 2.0
        } else {
            left + (right - left) * (epoch - 1) as f64 / (self.epochs - 1) as f64
        };
        let f = self.axis.as_ref().map_or(0.5, |a| a.fraction(v));
        (x, bottom - (bottom - top) * f)
    }
}

/// The page: its size and panels.
#[derive(Debug, Clone)]
pub(crate) struct Page<'a> {
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) panels: Vec<Panel<'a>>,
}

/// Which panel a logged name belongs to, and the panels' order: the total
/// loss, the heads' losses, the metrics and anything else, the loss
/// weights (one panel), the learning rate.
fn panel_of(name: &str) -> (u8, String) {
    let base = name.strip_prefix("val_").unwrap_or(name);
    if base == "loss" {
        (0, "loss".into())
    } else if base.ends_with("loss") {
        (1, base.into())
    } else if base.starts_with("weight_") {
        (3, "loss weights".into())
    } else if matches!(base, "lr" | "learning_rate") {
        (4, "learning rate".into())
    } else {
        (2, base.into())
    }
}

/// A panel's kind and title, and its series.
type Group<'a> = ((u8, String), Vec<&'a (String, Vec<f64>)>);

/// Lays out `series` (names in logging order, one value per epoch, NaN
/// where an epoch did not log it).
pub(crate) fn layout(series: &[(String, Vec<f64>)]) -> Page<'_> {
    // Panels in order of kind, then of first appearance.
    let mut groups: Vec<Group> = Vec::new();
    for s in series {
        let key = panel_of(&s.0);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(s),
            None => groups.push((key, vec![s])),
        }
    }
    groups.sort_by_key(|((kind, _), _)| *kind);
    let epochs = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let columns = groups.len().clamp(1, COLUMNS);
    let rows = groups.len().div_ceil(columns).max(1);
    let mut panels = Vec::new();
    for (i, ((_, title), members)) in groups.into_iter().enumerate() {
        let (x, y) = (
            10.0 + (i % columns) as f64 * PANEL_WIDTH,
            10.0 + (i / columns) as f64 * PANEL_HEIGHT,
        );
        // A training curve and its validation twin share a colour.
        let mut bases: Vec<&str> = Vec::new();
        let curves: Vec<Curve> = members
            .iter()
            .map(|(name, values)| {
                let base = name.strip_prefix("val_").unwrap_or(name);
                let k = bases.iter().position(|b| *b == base).unwrap_or_else(|| {
                    bases.push(base);
                    bases.len() - 1
                });
                Curve {
                    name,
                    values,
                    color: COLORS[k % COLORS.len()],
                    dashed: name.starts_with("val_"),
                }
            })
            .collect();
        // The legend flows left to right below the title, wrapping.
        let mut legend = Vec::new();
        let (mut lx, mut ly) = (x + LEFT, y + TITLE_PX + 6.0 + LEGEND_LINE);
        for c in &curves {
            let w = 26.0 + Canvas::text_width(c.name, LABEL_PX) + 14.0;
            if lx + w > x + PANEL_WIDTH - RIGHT && lx > x + LEFT {
                lx = x + LEFT;
                ly += LEGEND_LINE;
            }
            legend.push((lx, ly));
            lx += w;
        }
        let top = ly + 10.0;
        let area = [
            x + LEFT,
            top,
            x + PANEL_WIDTH - RIGHT,
            y + PANEL_HEIGHT - BOTTOM,
        ];
        let finite: Vec<f64> = curves
            .iter()
            .flat_map(|c| c.values.iter().copied())
            .filter(|v| v.is_finite())
            .collect();
        let log_wanted = title.ends_with("loss");
        let axis = value_axis(&finite, log_wanted, ((area[3] - area[1]) / 40.0) as usize);
        panels.push(Panel {
            title,
            y,
            area,
            epochs,
            x_ticks: epoch_ticks(epochs, ((area[2] - area[0]) / 45.0) as usize),
            axis,
            curves,
            legend,
        });
    }
    Page {
        width: 20.0 + columns as f64 * PANEL_WIDTH,
        height: 20.0 + rows as f64 * PANEL_HEIGHT,
        panels,
    }
}

/// The value axis for `values`: logarithmic when `log_wanted`, every value
/// is positive and they span more than two decades; otherwise linear with
/// "nice" ticks (1, 2 or 5 times a power of ten), about `most` of them.
/// A constant series gets a range around its value, so that its line sits
/// mid-panel rather than on the frame.
pub(crate) fn value_axis(values: &[f64], log_wanted: bool, most: usize) -> Option<Axis> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return None;
    }
    if log_wanted && lo > 0.0 && hi / lo > 100.0 {
        // 5% of the span beyond the data on each side, in log space.
        let (a, b) = (lo.log10(), hi.log10());
        let (a, b) = (a - 0.05 * (b - a), b + 0.05 * (b - a));
        let every = ((b.ceil() - a.floor()) as usize)
            .div_ceil(most.max(1))
            .max(1) as i32;
        let ticks = (a.ceil() as i32..=b.floor() as i32)
            .filter(|k| k.rem_euclid(every) == 0)
            .map(|k| (10f64.powi(k), format!("1e{k}")))
            .collect();
        return Some(Axis {
            lo: 10f64.powf(a),
            hi: 10f64.powf(b),
            log: true,
            ticks,
        });
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    };
    // 5% of the span beyond the data on each side, so that no curve runs
    // along the frame.
    let (lo, hi) = (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo));
    let step = nice_step((hi - lo) / most.max(2) as f64, false);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let ticks = ((lo / step).ceil() as i64..=(hi / step).floor() as i64)
        .map(|k| {
            let v = k as f64 * step;
            (v, format_tick(v, decimals))
        })
        .collect();
    Some(Axis {
        lo,
        hi,
        log: false,
        ticks,
    })
}

/// 1, 2 or 5 times a power of ten: the one nearest `raw` (by ratio), or
/// with `at_least` the smallest not below it.
fn nice_step(raw: f64, at_least: bool) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let candidates = [1.0, 2.0, 5.0, 10.0].map(|n| n * magnitude);
    if at_least {
        return candidates
            .into_iter()
            .find(|&c| c >= raw * (1.0 - 1e-12))
            .unwrap_or(10.0 * magnitude);
    }
    candidates
        .into_iter()
        .min_by(|a, b| (a / raw).ln().abs().total_cmp(&(b / raw).ln().abs()))
        .expect("four candidates")
}

/// A tick label: `decimals` places, or scientific for very large or small
/// values.
fn format_tick(v: f64, decimals: usize) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || decimals > 5) {
        format!("{v:.1e}")
    } else {
        format!("{v:.decimals$}")
    }
}

/// Epoch numbers to mark: 1, then multiples of a nice step, at most `most`.
pub(crate) fn epoch_ticks(epochs: usize, most: usize) -> Vec<usize> {
    if epochs == 0 {
        return Vec::new();
    }
    let step = nice_step((epochs as f64 / most.max(2) as f64).max(1.0), true) as usize;
    let mut ticks = vec![1];
    ticks.extend(
        (1..)
            .map(|k| k * step)
            .take_while(|&e| e <= epochs)
            .filter(|&e| e > 1),
    );
    ticks
}

/// What the plot is drawn on: SVG text or a raster canvas.
pub(crate) trait Surface {
    /// Text `px` high with its baseline at `y`, starting at `x` or, with
    /// `end`, ending there; `class` names its role in SVG.
    #[allow(clippy::too_many_arguments)]
    fn text(&mut self, x: f64, y: f64, s: &str, px: f64, end: bool, class: &str);
    /// A straight line one pixel wide.
    fn line(&mut self, a: (f64, f64), b: (f64, f64), color: [u8; 3]);
    /// A curve two pixels wide, dashed or not; a lone point as a dot.
    fn polyline(&mut self, points: &[(f64, f64)], color: [u8; 3], dashed: bool);
}

/// Draws `page` on `s`.
pub(crate) fn draw(page: &Page, s: &mut dyn Surface) {
    if page.panels.is_empty() {
        s.text(20.0, 40.0, "(nothing logged)", TITLE_PX, false, "title");
    }
    for panel in &page.panels {
        draw_panel(panel, s);
    }
}

fn draw_panel(p: &Panel, s: &mut dyn Surface) {
    let [left, top, right, bottom] = p.area;
    s.text(
        left,
        p.y + TITLE_PX + 4.0,
        &p.title,
        TITLE_PX,
        false,
        "title",
    );
    for (c, &(lx, ly)) in p.curves.iter().zip(&p.legend) {
        s.polyline(&[(lx, ly - 4.0), (lx + 22.0, ly - 4.0)], c.color, c.dashed);
        s.text(lx + 26.0, ly, c.name, LABEL_PX, false, "legend");
    }
    // Grid lines and tick labels, then the frame, then the curves on top.
    if let Some(axis) = &p.axis {
        for (v, label) in &axis.ticks {
            let (_, y) = p.point(1, *v);
            s.line((left, y), (right, y), GRID);
            s.line((left - 4.0, y), (left, y), FRAME);
            s.text(left - 7.0, y + 4.0, label, LABEL_PX, true, "tick");
        }
    }
    for &e in &p.x_ticks {
        let (x, _) = p.point(e, 0.0);
        s.line((x, top), (x, bottom), GRID);
        s.line((x, bottom), (x, bottom + 4.0), FRAME);
        let label = e.to_string();
        let half = Canvas::text_width(&label, LABEL_PX) / 2.0;
        s.text(x - half, bottom + 16.0, &label, LABEL_PX, false, "tick");
    }
    let epoch_half = Canvas::text_width("epoch", LABEL_PX) / 2.0;
    s.text(
        (left + right) / 2.0 - epoch_half,
        bottom + 31.0,
        "epoch",
        LABEL_PX,
        false,
        "axis",
    );
    for (a, b) in [
        ((left, top), (right, top)),
        ((right, top), (right, bottom)),
        ((right, bottom), (left, bottom)),
        ((left, bottom), (left, top)),
    ] {
        s.line(a, b, FRAME);
    }
    if p.axis.is_none() {
        s.text(
            left + 10.0,
            top + 20.0,
            "(nothing finite logged)",
            LABEL_PX,
            false,
            "note",
        );
        return;
    }
    for c in &p.curves {
        // A break in the curve where an epoch logged nothing finite.
        let mut run: Vec<(f64, f64)> = Vec::new();
        for (e, &v) in c.values.iter().enumerate() {
            if v.is_finite() {
                run.push(p.point(e + 1, v));
            } else if !run.is_empty() {
                s.polyline(&run, c.color, c.dashed);
                run.clear();
            }
        }
        if !run.is_empty() {
            s.polyline(&run, c.color, c.dashed);
        }
    }
}

/// SVG text of the drawing.
pub(crate) struct Svg(pub(crate) String);

impl Svg {
    /// An SVG document `width` by `height` with a white background.
    pub(crate) fn new(width: f64, height: f64) -> Self {
        Svg(format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="white"/>"#
        ))
    }

    /// The finished document.
    pub(crate) fn finish(mut self) -> String {
        self.0.push_str("</svg>\n");
        self.0
    }
}

/// `s` with XML's special characters escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Surface for Svg {
    fn text(&mut self, x: f64, y: f64, s: &str, px: f64, end: bool, class: &str) {
        let anchor = if end { r#" text-anchor="end""# } else { "" };
        let [r, g, b] = INK;
        let _ = write!(
            self.0,
            r#"<text class="{class}" x="{x:.1}" y="{y:.1}" font-size="{px}" fill="rgb({r},{g},{b})"{anchor}>{}</text>"#,
            escape(s)
        );
    }
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), [r, g, b]: [u8; 3]) {
        let _ = write!(
            self.0,
            r#"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="rgb({r},{g},{b})" stroke-width="1"/>"#
        );
    }
    fn polyline(&mut self, points: &[(f64, f64)], [r, g, b]: [u8; 3], dashed: bool) {
        if let [(x, y)] = points {
            let _ = write!(
                self.0,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="rgb({r},{g},{b})"/>"#
            );
            return;
        }
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
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
    fn text(&mut self, x: f64, y: f64, s: &str, px: f64, end: bool, _class: &str) {
        let x = if end {
            x - Canvas::text_width(s, px)
        } else {
            x
        };
        Canvas::text(self, x, y, s, px, INK);
    }
    fn line(&mut self, a: (f64, f64), b: (f64, f64), color: [u8; 3]) {
        Canvas::line(self, a, b, color, 1, false);
    }
    fn polyline(&mut self, points: &[(f64, f64)], color: [u8; 3], dashed: bool) {
        if let [p] = points {
            Canvas::line(self, *p, *p, color, 5, false);
        }
        for w in points.windows(2) {
            Canvas::line(self, w[0], w[1], color, 2, dashed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_linear_ticks_cover_the_data_with_round_steps() {
        let axis = value_axis(&[0.013, 0.0185], false, 5).unwrap();
        assert!(!axis.log);
        assert!(
            axis.lo < 0.013 && axis.hi > 0.0185,
            "a margin beyond the data"
        );
        let labels: Vec<&str> = axis.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            ["0.013", "0.014", "0.015", "0.016", "0.017", "0.018"]
        );
        // A constant sits mid-axis, not on the frame.
        let flat = value_axis(&[1.0, 1.0], false, 5).unwrap();
        assert!((flat.fraction(1.0) - 0.5).abs() < 1e-12, "{flat:?}");
        let zero = value_axis(&[0.0], false, 5).unwrap();
        assert!((zero.fraction(0.0) - 0.5).abs() < 1e-12, "{zero:?}");
        let labels: Vec<&str> = zero.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
    }

    #[test]
    fn a_loss_over_more_than_two_decades_gets_a_log_axis() {
        let axis = value_axis(&[2.0, 0.3, 0.004], true, 5).unwrap();
        assert!(axis.log);
        assert!(axis.lo < 0.004 && axis.hi > 2.0, "{axis:?}");
        let labels: Vec<&str> = axis.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["1e-2", "1e-1", "1e0"]);
        assert!(
            !value_axis(&[2.0, 0.03], true, 5).unwrap().log,
            "two decades"
        );
        assert!(
            !value_axis(&[2.0, 0.001], false, 5).unwrap().log,
            "not a loss"
        );
        assert!(!value_axis(&[2.0, 0.0], true, 5).unwrap().log, "a zero");
    }

    #[test]
    fn epoch_ticks_start_at_one_and_step_roundly() {
        assert_eq!(epoch_ticks(1, 6), [1]);
        assert_eq!(epoch_ticks(5, 6), [1, 2, 3, 4, 5]);
        assert_eq!(epoch_ticks(15, 6), [1, 5, 10, 15]);
        assert_eq!(epoch_ticks(100, 6), [1, 20, 40, 60, 80, 100]);
    }

    #[test]
    fn names_group_into_panels_by_quantity() {
        let names = [
            "loss",
            "class_loss",
            "bbox_loss",
            "class_accuracy",
            "weight_class",
            "weight_bbox",
            "lr",
            "val_loss",
            "val_class_loss",
            "val_class_accuracy",
        ];
        let series: Vec<(String, Vec<f64>)> = names
            .iter()
            .map(|n| (n.to_string(), vec![1.0, 0.5]))
            .collect();
        let page = layout(&series);
        let panels: Vec<(&str, Vec<&str>)> = page
            .panels
            .iter()
            .map(|p| (p.title.as_str(), p.curves.iter().map(|c| c.name).collect()))
            .collect();
        assert_eq!(
            panels,
            [
                ("loss", vec!["loss", "val_loss"]),
                ("class_loss", vec!["class_loss", "val_class_loss"]),
                ("bbox_loss", vec!["bbox_loss"]),
                (
                    "class_accuracy",
                    vec!["class_accuracy", "val_class_accuracy"]
                ),
                ("loss weights", vec!["weight_class", "weight_bbox"]),
                ("learning rate", vec!["lr"]),
            ]
        );
        // Twins share a colour, the validation one dashed; panels do not
        // overlap, and legends sit above their plot areas.
        let loss = &page.panels[0];
        assert_eq!(loss.curves[0].color, loss.curves[1].color);
        assert!(!loss.curves[0].dashed && loss.curves[1].dashed);
        let weights = &page.panels[4];
        assert_ne!(weights.curves[0].color, weights.curves[1].color);
        for p in &page.panels {
            assert!(p.legend.iter().all(|&(_, y)| y < p.area[1]));
            assert!(p.area[3] <= p.y + PANEL_HEIGHT && p.area[2] - p.area[0] < PANEL_WIDTH);
        }
        assert_eq!((page.width, page.height), (1040.0, 520.0));
    }
}
