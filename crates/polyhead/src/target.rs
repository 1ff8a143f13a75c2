//! What a trainer needs of targets: how many samples they hold, a subset of
//! rows (a batch), and for metrics, class indices or dense values.

use polyhead_losses::Labels;
use polyhead_tensor::{Float, Tensor};

use crate::error::{Error, Result};

/// One head's target data, batchable by rows (the first axis).
///
/// Implemented for [`Tensor`] and [`Labels`]; implement it for your own
/// target type to use it with [`crate::Trainer`].
///
/// ```
/// use polyhead::Target;
/// use polyhead::losses::Labels;
/// let labels = Labels::from_classes(&[2, 0, 1]);
/// assert_eq!(Target::<f32>::rows(&labels), 3);
/// let batch = Target::<f32>::select_rows(&labels, &[2, 0])?;
/// assert_eq!(Target::<f32>::class_indices(&batch), Some(vec![1, 2]));
/// # Ok::<(), polyhead::Error>(())
/// ```
pub trait Target<T: Float> {
    /// The number of samples (length of the first axis).
    fn rows(&self) -> usize;
    /// The samples at `rows`, in that order.
    fn select_rows(&self, rows: &[usize]) -> Result<Self>
    where
        Self: Sized;
    /// One class index per sample, if the target is class-like (labels, or
    /// one-hot / probability rows: their argmax).
    fn class_indices(&self) -> Option<Vec<usize>>;
    /// The dense values, if the target is a tensor.
    fn dense(&self) -> Option<&Tensor<T>>;
}

/// Rows of a tensor along axis 0.
pub(crate) fn select_tensor_rows<T: Float>(t: &Tensor<T>, rows: &[usize]) -> Result<Tensor<T>> {
    let n = t.shape().first().copied().unwrap_or(0);
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(Error::Shape(format!(
            "row {bad} is out of range for {n} samples (shape {:?})",
            t.shape()
        )));
    }
    Ok(Tensor::from_array(t.view().select(ndarray::Axis(0), rows)))
}

impl<T: Float> Target<T> for Tensor<T> {
    fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }
    fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        select_tensor_rows(self, rows)
    }
    fn class_indices(&self) -> Option<Vec<usize>> {
        (self.ndim() == 2 && self.shape()[1] > 1)
            .then(|| {
                self.argmax_axis(1, false)
                    .ok()
                    .map(|a| a.iter().copied().collect())
            })
            .flatten()
    }
    fn dense(&self) -> Option<&Tensor<T>> {
        Some(self)
    }
}

impl<T: Float> Target<T> for Labels {
    fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }
    fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        let n = Target::<T>::rows(self);
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::Shape(format!(
                "row {bad} is out of range for {n} samples"
            )));
        }
        Ok(Labels::from(self.as_array().select(ndarray::Axis(0), rows)))
    }
    fn class_indices(&self) -> Option<Vec<usize>> {
        (self.shape().len() == 1)
            .then(|| self.as_array().iter().map(|&y| y.max(0) as usize).collect())
    }
    fn dense(&self) -> Option<&Tensor<T>> {
        None
    }
}

/// All of a model's targets: implemented by the derive for
/// `<Model>Targets`, so a trainer can batch them and find each head's.
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
/// let batch = polyhead::TargetSet::<f32>::select_rows(&targets, &[0, 3])?;
/// assert_eq!(polyhead::TargetSet::<f32>::rows(&batch)?, 2);
/// assert!(polyhead::TargetSet::<f32>::target(&batch, "out").is_some());
/// # let _ = (net, x);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait TargetSet<T: Float>: Sized {
    /// The number of samples; an error if the heads disagree.
    fn rows(&self) -> Result<usize>;
    /// The samples at `rows` of every target, sample weight and mask.
    fn select_rows(&self, rows: &[usize]) -> Result<Self>;
    /// Head `name`'s target, if it has a loss.
    fn target(&self, name: &str) -> Option<&dyn Target<T>>;
    /// Head `name`'s 0/1 mask (1 = the row has this head's label), if one
    /// was given; metrics count only the rows it keeps.
    fn mask(&self, _name: &str) -> Option<&Tensor<T>> {
        None
    }
}

/// Rows of an optional per-sample tensor (sample weights, masks).
#[doc(hidden)]
pub fn select_optional<T: Float>(
    t: &Option<Tensor<T>>,
    rows: &[usize],
) -> Result<Option<Tensor<T>>> {
    t.as_ref().map(|t| select_tensor_rows(t, rows)).transpose()
}

/// The common number of rows of several targets, or an error naming them.
#[doc(hidden)]
pub fn common_rows(counts: &[(&'static str, usize)]) -> Result<usize> {
    let first = counts.first().map_or(0, |c| c.1);
    if counts.iter().any(|c| c.1 != first) {
        return Err(Error::Shape(format!(
            "targets disagree on the number of samples: {counts:?}"
        )));
    }
    Ok(first)
}
