//! Conventions and reductions, and the one step every built-in loss ends
//! with: turning per-unit values and local gradients into the reduced value
//! and the gradient with respect to the prediction.
//!
//! A *unit* is what one loss value belongs to before reduction: a sample
//! (a row over the class or last axis, as Keras reduces) or a single
//! element (as PyTorch's elementwise losses do). Each prediction element
//! belongs to exactly one unit, so the kernels write `d value[unit] / d pred`
//! straight into the gradient buffer, and this step only scales it.

use ndarray::{ArcArray, ArrayD, Axis, Dimension, IxDyn, Zip};
use polyhead_tensor::{Float, Tensor, shape};

use crate::error::{LossError, Result};
use crate::lanes;

/// Which framework's definition a loss follows where Keras and PyTorch
/// differ. Each loss's docs say what changes.
///
/// ```
/// use polyhead_losses::{Convention, Loss, Mse};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![1.0_f64, 3.0], &[1, 2])?;
/// let target = Tensor::zeros(&[1, 2])?;
/// // Keras: one value per sample (mean over the last axis); PyTorch: per element.
/// let keras = Mse::new().reduction(polyhead_losses::Reduction::None);
/// assert_eq!(keras.value_and_grad(&pred, &target, None)?.value.shape(), &[1]);
/// let torch = keras.convention(Convention::PyTorch);
/// assert_eq!(torch.value_and_grad(&pred, &target, None)?.value.shape(), &[1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Convention {
    /// Keras 3: a loss first reduces the last axis to one value per sample
    /// (mean for elementwise losses, sum for cross-entropy-like ones), sample
    /// weights multiply those values, probabilities are clipped to
    /// `[1e-7, 1 - 1e-7]`, and the class axis is the last.
    #[default]
    Keras,
    /// PyTorch: elementwise losses keep one value per element, the class
    /// axis of cross-entropy is 1, and a class-weighted mean divides by the
    /// sum of the weights.
    PyTorch,
}

/// How per-unit values become the loss.
///
/// ```
/// use polyhead_losses::{Loss, Mse, Reduction};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::from_vec(vec![1.0_f64, 3.0], &[2, 1])?;
/// let target = Tensor::zeros(&[2, 1])?;
/// let sum = Mse::new().reduction(Reduction::Sum).value_and_grad(&pred, &target, None)?;
/// assert_eq!(sum.value.item()?, 10.0);
/// let mean = Mse::new().value_and_grad(&pred, &target, None)?;
/// assert_eq!(mean.value.item()?, 5.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The weighted sum divided by the number of (non-ignored) units: Keras'
    /// `sum_over_batch_size` (zero weights still count), PyTorch's `mean`
    /// (for class-weighted cross-entropy, divided by the sum of the weights
    /// of the targets, as PyTorch does).
    #[default]
    Mean,
    /// The weighted sum.
    Sum,
    /// One weighted value per unit; the gradient is that of their sum.
    None,
    /// The weighted sum divided by the sum of the weights: Keras'
    /// `mean_with_sample_weight`. With 0/1 sample weights this is a *masked*
    /// mean: the mean over the samples whose weight is 1, and 0 when every
    /// sample is masked out.
    ///
    /// ```
    /// use polyhead_losses::{Loss, Mse, Reduction};
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::from_vec(vec![1.0_f64, 2.0, 3.0], &[3, 1])?;
    /// let target = Tensor::zeros(&[3, 1])?;
    /// let mask = Tensor::from_vec(vec![1.0, 0.0, 1.0], &[3])?; // sample 1 has no target
    /// let masked = Mse::new().reduction(Reduction::WeightedMean);
    /// let out = masked.value_and_grad(&pred, &target, Some(&mask))?;
    /// assert_eq!(out.value.item()?, 5.0); // (1 + 9) / 2
    /// assert_eq!(out.grad.to_vec(), vec![1.0, 0.0, 3.0]);
    /// let none = masked.value_and_grad(&pred, &target, Some(&Tensor::zeros(&[3])?))?;
    /// assert_eq!(none.value.item()?, 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    WeightedMean,
    /// The sum divided by the batch size (the first axis): PyTorch's
    /// `batchmean`, the mathematically right mean for KL divergence.
    BatchMean,
}

/// The reduced loss and its gradient with respect to the prediction.
///
/// ```
/// use polyhead_losses::*;
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2, 1])?;
/// let out: LossOutput<f64> = Mse::new().reduction(Reduction::None).value_and_grad(&pred, &Tensor::zeros(&[2, 1])?, None)?;
/// assert_eq!(out.value.to_vec(), vec![1.0, 4.0]);
/// assert_eq!(out.grad.to_vec(), vec![2.0, 4.0]); // gradient of the sum
/// assert_eq!(out.unit_axis, Some(1)); // units are rows over axis 1
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LossOutput<T: Float> {
    /// The loss: 0-dimensional, or one value per unit with
    /// [`Reduction::None`].
    pub value: Tensor<T>,
    /// d value / d prediction (of the sum of the values with
    /// [`Reduction::None`]), the prediction's shape.
    pub grad: Tensor<T>,
    /// With [`Reduction::None`]: the prediction axis that maps elements to
    /// units (`None`: one unit per element). Used to scale the gradient by
    /// a per-unit upstream gradient on the tape.
    pub unit_axis: Option<usize>,
}

/// Per-unit values and local gradients, as a kernel produces them.
pub(crate) struct Units<T: Float> {
    /// One value per unit.
    pub values: ArrayD<T>,
    /// `d values[unit(e)] / d pred[e]`, the prediction's shape (shared
    /// storage, so that the loss's gradient tensor is made from it without
    /// a copy or an allocation).
    pub grad: ArcArray<T, IxDyn>,
    /// The prediction axis a unit spans (`None`: units are elements).
    pub unit_axis: Option<usize>,
    /// Units to leave out entirely (ignored labels): value 0, gradient 0,
    /// not counted.
    pub ignored: Option<ArrayD<bool>>,
    /// Per-unit multipliers the loss itself brings (class weights turned
    /// into sample weights); combined with the caller's sample weights.
    pub weights: Option<ArrayD<T>>,
    /// Overrides the divisor of [`Reduction::Mean`] (PyTorch's
    /// class-weighted cross-entropy divides by the sum of target weights).
    pub mean_divisor: Option<f64>,
    /// The kernel already multiplied the gradient by the reduction's
    /// coefficient (see [`uniform_coef`]); only the uniform path sets it.
    pub grad_final: bool,
    /// The reduced total the kernel already formed, chunk by chunk of
    /// [`TOTAL_CHUNK`](lanes::TOTAL_CHUNK) units (the order of
    /// [`lanes::scaled_sum`]), leaving `values` empty. Only with
    /// `grad_final`.
    pub total: Option<T>,
}

impl<T: Float> Units<T> {
    pub(crate) fn new(
        values: ArrayD<T>,
        grad: ArcArray<T, IxDyn>,
        unit_axis: Option<usize>,
    ) -> Self {
        Units {
            values,
            grad,
            unit_axis,
            ignored: None,
            weights: None,
            mean_divisor: None,
            grad_final: false,
            total: None,
        }
    }
}

/// Checks and broadcasts caller sample weights to the unit shape. A weight
/// of lower rank is aligned with the leading axes (Keras: `[batch]` weights
/// for `[batch, time]` units); then NumPy broadcasting applies (PyTorch: an
/// element weight of `[batch, 1]` for `[batch, features]`).
fn unit_weights<T: Float>(
    loss: &'static str,
    w: &Tensor<T>,
    unit_shape: &[usize],
) -> Result<ArrayD<T>> {
    let mut shape = w.shape().to_vec();
    while shape.len() < unit_shape.len() {
        shape.push(1);
    }
    let aligned = w.reshape(&shape)?;
    let view = aligned.view();
    let b = view
        .broadcast(IxDyn(unit_shape))
        .ok_or_else(|| LossError::Weight {
            loss,
            message: format!(
                "sample weights of shape {:?} do not fit the per-sample loss shape {unit_shape:?}",
                w.shape()
            ),
        })?;
    if let Some((i, v)) = b
        .indexed_iter()
        .find(|(_, v)| !(v.is_finite() && **v >= T::ZERO))
    {
        return Err(LossError::Weight {
            loss,
            message: format!(
                "sample weights must be finite and non-negative, found {v} at {:?}",
                i.slice()
            ),
        });
    }
    Ok(b.to_owned())
}

/// Applies ignoring, weights and the reduction; scales the gradient in place.
pub(crate) fn finish<T: Float>(
    loss: &'static str,
    u: Units<T>,
    reduction: Reduction,
    sample_weight: Option<&Tensor<T>>,
) -> Result<LossOutput<T>> {
    let mut u = match finish_uniform(u, reduction, sample_weight) {
        Ok(out) => return Ok(out),
        Err(u) => u,
    };
    debug_assert!(
        u.total.is_none(),
        "a kernel formed the total for a reduction that is not uniform"
    );
    debug_assert!(
        !u.grad_final,
        "a kernel pre-scaled the gradient for a reduction that is not uniform"
    );
    let unit_shape = u.values.shape().to_vec();
    let mut w: ArrayD<T> = match sample_weight {
        Some(sw) => unit_weights(loss, sw, &unit_shape)?,
        None => ArrayD::from_elem(IxDyn(&unit_shape), T::ONE),
    };
    if let Some(own) = &u.weights {
        w.zip_mut_with(own, |a, &b| *a *= b);
    }
    if let Some(ignored) = &u.ignored {
        Zip::from(&mut w).and(ignored).for_each(|w, &ig| {
            if ig {
                *w = T::ZERO;
            }
        });
        Zip::from(&mut u.values).and(ignored).for_each(|v, &ig| {
            if ig {
                *v = T::ZERO;
            }
        });
    }
    let counted = match &u.ignored {
        Some(ig) => ig.iter().filter(|&&i| !i).count(),
        None => u.values.len(),
    };
    let divisor = match reduction {
        Reduction::None | Reduction::Sum => None,
        Reduction::Mean => Some(u.mean_divisor.unwrap_or(counted as f64)),
        Reduction::WeightedMean => Some(w.iter().map(|v| v.to_f64()).sum()),
        Reduction::BatchMean => Some(u.grad.shape().first().copied().unwrap_or(1) as f64),
    };
    // Coefficient of each unit's value in the result. A zero divisor (every
    // unit ignored, or all weights zero) gives a loss of 0, not NaN.
    let coef = match divisor {
        Some(0.0) => w.mapv(|_| T::ZERO),
        Some(d) => {
            let inv = T::from_f64(1.0 / d);
            w.mapv(|v| v * inv)
        }
        None => w,
    };
    let scale = |g: T, c: T| if c == T::ZERO { T::ZERO } else { g * c };
    let last = u.grad.ndim().checked_sub(1);
    let contiguous_rows = match (u.unit_axis, u.grad.as_slice_mut(), coef.as_slice()) {
        (Some(ax), Some(gs), Some(cs)) if Some(ax) == last => {
            // Rows along the last axis, both contiguous: plain chunks.
            let cols = gs.len() / cs.len().max(1);
            for (row, &c) in gs.chunks_exact_mut(cols.max(1)).zip(cs) {
                row.iter_mut().for_each(|g| *g = scale(*g, c));
            }
            true
        }
        (None, Some(gs), Some(cs)) => {
            gs.iter_mut().zip(cs).for_each(|(g, &c)| *g = scale(*g, c));
            true
        }
        _ => false,
    };
    match u.unit_axis {
        _ if contiguous_rows => {}
        Some(ax) => Zip::from(u.grad.lanes_mut(Axis(ax)))
            .and(&coef)
            .for_each(|mut lane, &c| {
                lane.mapv_inplace(|g| if c == T::ZERO { T::ZERO } else { g * c })
            }),
        None => Zip::from(&mut u.grad)
            .and(&coef)
            .for_each(|g, &c| *g = if c == T::ZERO { T::ZERO } else { *g * c }),
    }
    let value = if reduction == Reduction::None {
        let mut values = u.values;
        values.zip_mut_with(&coef, |v, &c| {
            *v = if c == T::ZERO { T::ZERO } else { *v * c }
        });
        Tensor::from_array(values)
    } else {
        let total = match (u.values.as_slice(), coef.as_slice()) {
            (Some(values), Some(coefs)) => lanes::weighted_sum(values, coefs),
            // Not reached by the built-in kernels (their values are
            // row-major); a row-major copy keeps the same summation order.
            _ => lanes::weighted_sum(
                &u.values.iter().copied().collect::<Vec<_>>(),
                &coef.iter().copied().collect::<Vec<_>>(),
            ),
        };
        Tensor::scalar(total)
    };
    Ok(LossOutput {
        value,
        grad: Tensor::from_shared(u.grad),
        unit_axis: if reduction == Reduction::None {
            u.unit_axis
        } else {
            None
        },
    })
}

/// The coefficient of every unit's value in the reduced loss when all
/// units weigh the same (no sample weights, no ignored units): `1 / divisor`
/// (0 for a zero divisor), 1 for a sum, `None` for [`Reduction::None`].
/// `units` is the number of units, `pred_shape` the prediction's shape
/// (its first axis is the batch).
pub(crate) fn uniform_coef<T: Float>(
    reduction: Reduction,
    units: usize,
    pred_shape: &[usize],
    mean_divisor: Option<f64>,
) -> Option<T> {
    let batch = pred_shape.first().copied().unwrap_or(1);
    let divisor = match reduction {
        Reduction::None => return None,
        Reduction::Sum => None,
        Reduction::Mean => Some(mean_divisor.unwrap_or(units as f64)),
        // Every weight is 1: their sum is the number of units.
        Reduction::WeightedMean => Some(units as f64),
        Reduction::BatchMean => Some(batch as f64),
    };
    Some(match divisor {
        Some(0.0) => T::ZERO,
        Some(d) => T::from_f64(1.0 / d),
        None => T::ONE,
    })
}

/// [`finish`] when every unit has the same coefficient (no sample weights,
/// no loss-side weights, nothing ignored, a reducing reduction): one pass
/// over the gradient (none if the kernel already applied the coefficient) and one over the values, no per-unit weight arrays.
/// Gives the same bits as the general path (coefficient `1 / divisor` for
/// every unit, the same summation order). The units back when it does not
/// apply.
// The units come back in `Err` on the caller's stack for the general path;
// boxing them would allocate on every call, which this path exists to avoid.
#[allow(clippy::result_large_err)]
fn finish_uniform<T: Float>(
    mut u: Units<T>,
    reduction: Reduction,
    sample_weight: Option<&Tensor<T>>,
) -> std::result::Result<LossOutput<T>, Units<T>> {
    let ignores_some = u.ignored.as_ref().is_some_and(|ig| ig.iter().any(|&i| i));
    if sample_weight.is_some() || u.weights.is_some() || ignores_some {
        return Err(u);
    }
    if let Some(total) = u.total {
        debug_assert!(u.grad_final && reduction != Reduction::None);
        return Ok(LossOutput {
            value: Tensor::scalar(total),
            grad: Tensor::from_shared(u.grad),
            unit_axis: None,
        });
    }
    let Some(coef) = uniform_coef(reduction, u.values.len(), u.grad.shape(), u.mean_divisor) else {
        return Err(u);
    };
    if !u.grad_final {
        let scale = |g: T| if coef == T::ZERO { T::ZERO } else { g * coef };
        match u.grad.as_slice_mut() {
            Some(gs) => gs.iter_mut().for_each(|g| *g = scale(*g)),
            None => u.grad.mapv_inplace(scale),
        }
    }
    let total = if coef == T::ZERO {
        T::ZERO
    } else {
        match u.values.as_slice() {
            Some(values) => lanes::scaled_sum(values, coef),
            None => lanes::scaled_sum(&u.values.iter().copied().collect::<Vec<_>>(), coef),
        }
    };
    Ok(LossOutput {
        value: Tensor::scalar(total),
        grad: Tensor::from_shared(u.grad),
        unit_axis: None,
    })
}

/// Errors unless the prediction has at least one element.
pub(crate) fn non_empty<T: Float>(loss: &'static str, pred: &Tensor<T>) -> Result<()> {
    if pred.is_empty() || pred.ndim() == 0 {
        return Err(LossError::EmptyBatch {
            loss,
            shape: pred.shape().to_vec(),
        });
    }
    Ok(())
}

/// Errors unless prediction and target have exactly the same shape.
pub(crate) fn same_shape<T: Float>(
    loss: &'static str,
    pred: &Tensor<T>,
    target: &Tensor<T>,
) -> Result<()> {
    if !shape::same(pred.shape(), target.shape()) {
        return Err(LossError::Shape {
            loss,
            pred: pred.shape().to_vec(),
            target: target.shape().to_vec(),
            expected: "shapes must match exactly (no broadcasting)".to_string(),
        });
    }
    non_empty(loss, pred)
}
