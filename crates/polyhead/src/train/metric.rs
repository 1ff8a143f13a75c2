//! Per-head metrics, accumulated exactly over an epoch.

use polyhead_tensor::{Float, Tensor};

use crate::error::{Error, Result};
use crate::target::Target;

/// A metric of one head, logged as `<head>_<name>` (`class_accuracy`,
/// `bbox_mae`).
///
/// ```
/// use polyhead::Metric;
/// assert_eq!(Metric::Accuracy.name(), "accuracy");
/// assert_eq!(Metric::TopK(5).name(), "top5_accuracy");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Share of samples whose highest output is the true class.
    Accuracy,
    /// Share of samples whose true class is among the `k` highest outputs.
    TopK(usize),
    /// Share of elements on the right side of the threshold (both output
    /// and target compared with it).
    BinaryAccuracy(f64),
    /// Mean absolute error.
    Mae,
    /// Mean squared error.
    Mse,
    /// Root mean squared error.
    Rmse,
}

impl Metric {
    /// The metric's log name.
    ///
    /// ```
    /// assert_eq!(polyhead::Metric::Rmse.name(), "rmse");
    /// ```
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::TopK(k) => format!("top{k}_accuracy"),
            Metric::BinaryAccuracy(_) => "binary_accuracy".into(),
            Metric::Mae => "mae".into(),
            Metric::Mse => "mse".into(),
            Metric::Rmse => "rmse".into(),
        }
    }
}

/// Output and target values side by side, for the elementwise metrics; the
/// error says why they cannot be paired.
fn dense_pairs<T: Float>(
    pred: &Tensor<T>,
    target: &dyn Target<T>,
) -> std::result::Result<Vec<(f64, f64)>, String> {
    let t = target.dense().ok_or("the target is not a tensor")?;
    if t.shape() != pred.shape() {
        return Err(format!(
            "outputs {:?} and target {:?} differ in shape",
            pred.shape(),
            t.shape()
        ));
    }
    Ok(pred
        .to_vec()
        .iter()
        .zip(t.to_vec())
        .map(|(p, y)| (p.to_f64(), y.to_f64()))
        .collect())
}

/// A running sum and count for one metric over an epoch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accumulator {
    sum: f64,
    count: f64,
}

impl Accumulator {
    /// Its sum and count (to add up over data-parallel ranks).
    pub(crate) fn parts(&self) -> [f64; 2] {
        [self.sum, self.count]
    }

    /// An accumulator holding `sum` over `count`.
    pub(crate) fn from_parts(sum: f64, count: f64) -> Self {
        Accumulator { sum, count }
    }

    pub(crate) fn add<T: Float>(
        &mut self,
        head: &str,
        metric: Metric,
        pred: &Tensor<T>,
        target: &dyn Target<T>,
        mask: Option<&Tensor<T>>,
    ) -> Result<()> {
        // Rows the head's mask leaves out (unlabelled) count for nothing.
        let kept: Option<Vec<bool>> =
            mask.map(|m| m.to_vec().iter().map(|&v| v != T::ZERO).collect());
        let keep = |row: usize| {
            kept.as_ref()
                .is_none_or(|k| k.get(row).copied().unwrap_or(true))
        };
        let err =
            |what: &str| Error::Shape(format!("metric {} of head `{head}`: {what}", metric.name()));
        match metric {
            Metric::Accuracy | Metric::TopK(_) => {
                let k = if let Metric::TopK(k) = metric { k } else { 1 };
                let classes = target
                    .class_indices()
                    .ok_or_else(|| err("the target has no class per sample"))?;
                if pred.ndim() != 2 || pred.shape()[0] != classes.len() {
                    return Err(err(&format!(
                        "outputs of shape {:?} for {} samples",
                        pred.shape(),
                        classes.len()
                    )));
                }
                let c = pred.shape()[1];
                let values = pred.to_contiguous().to_vec();
                for (i, (row, &y)) in values.chunks(c.max(1)).zip(&classes).enumerate() {
                    if !keep(i) {
                        continue;
                    }
                    let truth = row
                        .get(y)
                        .copied()
                        .ok_or_else(|| err(&format!("class {y} out of range for {c} outputs")))?;
                    let above = row.iter().filter(|&&v| v > truth).count();
                    self.sum += if above < k { 1.0 } else { 0.0 };
                    self.count += 1.0;
                }
            }
            Metric::BinaryAccuracy(threshold) => {
                let per_row = pred.len() / pred.shape().first().copied().unwrap_or(1).max(1);
                for (i, (p, y)) in dense_pairs(pred, target)
                    .map_err(|w| err(&w))?
                    .into_iter()
                    .enumerate()
                {
                    if !keep(i / per_row.max(1)) {
                        continue;
                    }
                    self.sum += if (p > threshold) == (y > threshold) {
                        1.0
                    } else {
                        0.0
                    };
                    self.count += 1.0;
                }
            }
            Metric::Mae | Metric::Mse | Metric::Rmse => {
                let per_row = pred.len() / pred.shape().first().copied().unwrap_or(1).max(1);
                for (i, (p, y)) in dense_pairs(pred, target)
                    .map_err(|w| err(&w))?
                    .into_iter()
                    .enumerate()
                {
                    if !keep(i / per_row.max(1)) {
                        continue;
                    }
                    let e = p - y;
                    self.sum += if metric == Metric::Mae {
                        e.abs()
                    } else {
                        e * e
                    };
                    self.count += 1.0;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn value(&self, metric: Metric) -> f64 {
        if self.count == 0.0 {
            return f64::NAN;
        }
        let mean = self.sum / self.count;
        if metric == Metric::Rmse {
            mean.sqrt()
        } else {
            mean
        }
    }
}
