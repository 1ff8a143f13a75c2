//! Custom losses written as closures over autograd ops.

use std::marker::PhantomData;

use polyhead_autograd::{AutogradError, Tape, Var};
use polyhead_tensor::{Float, Tensor};

use crate::error::{LossError, Result};
use crate::loss::Loss;
use crate::reduction::LossOutput;

/// A loss defined by a function of the prediction and the target on the
/// tape (see [`closure_loss`]).
///
/// ```
/// use polyhead_losses::*;
/// use polyhead_tensor::Tensor;
/// let loss = closure_loss::<f64, _>("l1", |p, t| Ok(p.sub(t)?.abs().mean_all()?));
/// assert_eq!(Loss::<f64>::name(&loss), "l1");
/// let out = loss.value_and_grad(&Tensor::from_vec(vec![2.0], &[1])?, &Tensor::zeros(&[1])?, None)?;
/// assert_eq!(out.grad.to_vec(), vec![1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClosureLoss<T, F> {
    name: String,
    f: F,
    element: PhantomData<fn() -> T>,
}

impl<T, F> std::fmt::Debug for ClosureLoss<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClosureLoss({})", self.name)
    }
}

/// A custom loss written with autograd ops: `f(pred, target)` returns the
/// loss (0-dimensional), or one value per sample (shape `[batch]`), which is
/// then averaged with the sample weights as Keras does
/// (`sum(w * v) / batch`). Its gradient comes from the tape, so it is exact
/// by construction; check the function itself with
/// [`polyhead_autograd::gradcheck`].
///
/// ```
/// use polyhead_autograd::{gradcheck, GradcheckOptions, Tape};
/// use polyhead_losses::{closure_loss, Loss};
/// use polyhead_tensor::Tensor;
///
/// // Keras' "huber-like" box loss: 0.5 min(|e|, 0.5)^2 + 0.5 (|e| - min(|e|, 0.5)).
/// let box_loss = closure_loss::<f64, _>("box_huber_like", |pred, target| {
///     let e = pred.sub(target)?.abs();
///     let half = pred.tape().constant(Tensor::scalar(0.5));
///     let small = e.minimum(half)?;
///     let quad = small.mul(small)?.scale(0.5);
///     let lin = e.sub(small)?.scale(0.5);
///     quad.add(lin)?.mean_axis(-1, false) // one value per sample
/// });
///
/// let pred = Tensor::from_vec(vec![0.1, 0.9, -0.3, 0.2], &[2, 2])?;
/// let target = Tensor::from_vec(vec![0.0, 0.0, 0.0, 0.0], &[2, 2])?;
/// let out = box_loss.value_and_grad(&pred, &target, None)?;
/// assert!((out.value.item()? - (0.005 + 0.325 + 0.045 + 0.02) / 4.0).abs() < 1e-15);
///
/// // Check the custom loss's gradient against finite differences.
/// gradcheck(|_: &Tape<f64>, v| Ok(box_loss.record(v[0], &target, None)?), &[pred], &GradcheckOptions::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn closure_loss<T, F>(name: &str, f: F) -> ClosureLoss<T, F>
where
    T: Float,
    F: for<'t> Fn(Var<'t, T>, Var<'t, T>) -> std::result::Result<Var<'t, T>, AutogradError>,
{
    ClosureLoss {
        name: name.to_string(),
        f,
        element: PhantomData,
    }
}

impl<T, F> Loss<T> for ClosureLoss<T, F>
where
    T: Float,
    F: for<'t> Fn(Var<'t, T>, Var<'t, T>) -> std::result::Result<Var<'t, T>, AutogradError>,
{
    type Target = Tensor<T>;

    fn name(&self) -> &str {
        &self.name
    }

    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        sample_weight: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        let tape = Tape::new();
        let p = tape.leaf(pred.clone());
        let loss = self.record(p, target, sample_weight)?;
        let grad = tape.backward(loss)?.wrt(p)?;
        Ok(LossOutput {
            value: loss.value(),
            grad,
            unit_axis: None,
        })
    }

    fn record<'t>(
        &self,
        pred: Var<'t, T>,
        target: &Tensor<T>,
        sample_weight: Option<&Tensor<T>>,
    ) -> Result<Var<'t, T>> {
        let tape = pred.tape();
        let values = (self.f)(pred, tape.constant(target.clone()))?;
        let shape = values.shape();
        if shape.iter().product::<usize>() == 1 && shape.len() <= 1 && sample_weight.is_none() {
            return Ok(values.reshape(&[])?);
        }
        if shape.len() != 1 {
            return Err(LossError::Invalid {
                loss: "closure_loss",
                message: format!(
                    "`{}` returned shape {shape:?}; return a single value, or one value per sample (shape [batch]) to use sample weights",
                    self.name
                ),
            });
        }
        let weighted = match sample_weight {
            Some(w) if w.shape() == shape.as_slice() => values.mul(tape.constant(w.clone()))?,
            Some(w) => {
                return Err(LossError::Weight {
                    loss: "closure_loss",
                    message: format!(
                        "sample weights of shape {:?} for {} per-sample values",
                        w.shape(),
                        shape[0]
                    ),
                });
            }
            None => values,
        };
        Ok(weighted.mean_all()?)
    }
}
