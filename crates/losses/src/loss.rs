//! The [`Loss`] trait every loss implements (built-in or a user's), the
//! [`Labels`] target type of the sparse losses, and recording a loss on the
//! autograd tape as one fused node.

use ndarray::{ArrayD, Axis, Dimension, IxDyn, Zip};
use polyhead_autograd::{BackwardContext, Op, Var};
use polyhead_tensor::parallel::for_each_piece;
use polyhead_tensor::{Float, Tensor};

use crate::error::{LossError, Result};
use crate::reduction::LossOutput;

/// A loss function: a value and its gradient with respect to the
/// prediction, with optional per-sample weights.
///
/// Built-in losses implement it with fused kernels; implement it for your own
/// type to plug a custom loss in wherever a built-in one goes (or use
/// [`crate::closure_loss`] to compose autograd ops instead).
///
/// ```
/// use polyhead_losses::{Loss, LossOutput, Result};
/// use polyhead_tensor::{Float, Tensor};
///
/// /// Mean of (pred - target)^4, with its own value and gradient.
/// struct Quartic;
///
/// impl<T: Float> Loss<T> for Quartic {
///     type Target = Tensor<T>;
///     fn name(&self) -> &str {
///         "quartic"
///     }
///     fn value_and_grad(&self, pred: &Tensor<T>, target: &Tensor<T>, _w: Option<&Tensor<T>>) -> Result<LossOutput<T>> {
///         let e = pred.sub(target)?;
///         let n = T::from_usize(e.len());
///         let value = e.powf(T::from_f64(4.0)).sum_all(false).mul_scalar(T::ONE / n);
///         let grad = e.powf(T::from_f64(3.0)).mul_scalar(T::from_f64(4.0) / n);
///         Ok(LossOutput { value, grad, unit_axis: None })
///     }
/// }
///
/// let pred = Tensor::from_vec(vec![1.0_f64, 2.0], &[2])?;
/// let out = Quartic.value_and_grad(&pred, &Tensor::zeros(&[2])?, None)?;
/// assert_eq!(out.value.item()?, 8.5);
/// assert_eq!(out.grad.to_vec(), vec![2.0, 16.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Loss<T: Float> {
    /// What the loss compares the prediction with: a [`Tensor`] for most
    /// losses, [`Labels`] for the sparse ones.
    type Target;

    /// The loss's name, used in errors and logs.
    fn name(&self) -> &str;

    /// The loss and its gradient with respect to `pred`. `sample_weight`
    /// scales each sample's (unit's) value; see [`crate::Reduction`].
    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &Self::Target,
        sample_weight: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>>;

    /// Like [`Loss::value_and_grad`], but may write the gradient into
    /// `buffer` (typically the previous call's `grad`) instead of allocating:
    /// when the buffer has the prediction's shape and no other owner, the
    /// built-in losses reuse its memory. The default ignores the buffer.
    ///
    /// ```
    /// use polyhead_losses::{CrossEntropy, Loss};
    /// use polyhead_tensor::Tensor;
    /// let loss = CrossEntropy::from_logits();
    /// let logits = Tensor::<f32>::rand_normal(&[64, 10], 0.0, 1.0, 1)?;
    /// let onehot = Tensor::<f32>::zeros(&[64, 10])?.add_scalar(0.1);
    /// let first = loss.value_and_grad_into(&logits, &onehot, None, None)?;
    /// let (address, expected) = (first.grad.view().as_ptr(), first.grad.to_vec());
    /// let second = loss.value_and_grad_into(&logits, &onehot, None, Some(first.grad))?;
    /// assert_eq!(second.grad.view().as_ptr(), address); // the same memory
    /// assert_eq!(second.grad.to_vec(), expected);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        target: &Self::Target,
        sample_weight: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        let _ = buffer;
        self.value_and_grad(pred, target, sample_weight)
    }

    /// Records the loss on `pred`'s tape. The default records one fused node
    /// whose backward is the kernel's gradient; a loss composed of tape ops
    /// records those ops instead. The node's gradient buffer comes from this
    /// thread's tensor pool (an earlier step's gradient of the same size
    /// whose tape is gone and which nobody holds), so a training loop does
    /// not allocate it afresh each step; see [`polyhead_tensor::pool`] and
    /// [`crate::release_recycled_buffers`].
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_losses::{Loss, Mse};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let pred = tape.leaf(Tensor::from_vec(vec![1.0, 3.0], &[2, 1])?);
    /// let loss = Mse::new().record(pred, &Tensor::zeros(&[2, 1])?, None)?;
    /// assert_eq!(loss.value().item()?, 5.0);
    /// assert_eq!(tape.backward(loss)?.wrt(pred)?.to_vec(), vec![1.0, 3.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn record<'t>(
        &self,
        pred: Var<'t, T>,
        target: &Self::Target,
        sample_weight: Option<&Tensor<T>>,
    ) -> Result<Var<'t, T>> {
        // The kernels take their gradient buffer from the tensor pool.
        let value = pred.value();
        let out = self.value_and_grad_into(&value, target, sample_weight, None)?;
        Ok(pred.apply(FusedLoss { out })?)
    }
}

/// Implements [`Loss`] for a pointer type by forwarding every method.
macro_rules! forward_loss {
    ($(#[$meta:meta])* $ptr:ty) => {
        $(#[$meta])*
        impl<T: Float, L: Loss<T> + ?Sized> Loss<T> for $ptr {
            type Target = L::Target;
            fn name(&self) -> &str {
                (**self).name()
            }
            fn value_and_grad(
                &self,
                pred: &Tensor<T>,
                target: &L::Target,
                w: Option<&Tensor<T>>,
            ) -> Result<LossOutput<T>> {
                (**self).value_and_grad(pred, target, w)
            }
            fn value_and_grad_into(
                &self,
                pred: &Tensor<T>,
                target: &L::Target,
                w: Option<&Tensor<T>>,
                buffer: Option<Tensor<T>>,
            ) -> Result<LossOutput<T>> {
                (**self).value_and_grad_into(pred, target, w, buffer)
            }
            fn record<'t>(
                &self,
                pred: Var<'t, T>,
                target: &L::Target,
                w: Option<&Tensor<T>>,
            ) -> Result<Var<'t, T>> {
                (**self).record(pred, target, w)
            }
        }
    };
}

forward_loss!(
/// A boxed loss (`Box<dyn Loss<T, Target = ...>>`) is a loss: a model can
/// choose its losses at run time.
///
/// ```
/// use polyhead_losses::{Loss, Mae, Mse};
/// use polyhead_tensor::Tensor;
/// let pick: Box<dyn Loss<f64, Target = Tensor<f64>>> = if true { Box::new(Mse::new()) } else { Box::new(Mae::new()) };
/// let x = Tensor::from_vec(vec![2.0], &[1, 1])?;
/// assert_eq!(pick.value_and_grad(&x, &Tensor::zeros(&[1, 1])?, None)?.value.item()?, 4.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
    Box<L>
);

forward_loss!(
/// A reference to a loss is a loss.
///
/// ```
/// use polyhead_losses::{Loss, Mse};
/// use polyhead_tensor::Tensor;
/// let mse = Mse::new();
/// let by_ref: &Mse = &mse;
/// let x = Tensor::from_vec(vec![1.0_f64], &[1, 1])?;
/// assert_eq!(by_ref.value_and_grad(&x, &x, None)?.value.item()?, 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
    &L
);

/// A loss computed by a fused kernel, recorded as one tape node: forward
/// hands out the precomputed value, backward scales the kernel's gradient by
/// the upstream gradient. When the tape drops it, its gradient buffer goes
/// back to the tensor pool (if nobody holds it) for the next step.
struct FusedLoss<T: Float> {
    out: LossOutput<T>,
}

impl<T: Float> Op<T> for FusedLoss<T> {
    fn name(&self) -> &'static str {
        "loss"
    }

    fn forward(&mut self, _inputs: &[&Tensor<T>]) -> polyhead_autograd::Result<Tensor<T>> {
        Ok(self.out.value.clone())
    }

    fn backward(
        &self,
        ctx: &BackwardContext<'_, T>,
    ) -> polyhead_autograd::Result<Vec<Option<Tensor<T>>>> {
        polyhead_autograd::backward_list(self, ctx)
    }

    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> polyhead_autograd::Result<()> {
        let out = &self.out;
        let g = ctx.grad_output;
        let dx = ctx.grad_for(0, || {
            if g.len() == 1 && out.value.len() == 1 {
                let seed = g.item()?;
                // The usual seed (a loss weighted by 1): share the stored
                // gradient instead of copying it (x * 1 = x exactly).
                if seed == T::ONE {
                    return Ok(out.grad.clone());
                }
                // `grad * seed` (the bits of `mul_scalar`), into a pooled
                // buffer.
                let grad = out.grad.view();
                return Ok(match grad.as_slice() {
                    Some(src) => Tensor::from_fill(out.grad.shape(), |dst| {
                        // Split over the threads like the kernel that wrote
                        // `src`, so each scales the half in its own cache.
                        for_each_piece(dst, src, 1 << 15, |d, s| {
                            d.iter_mut().zip(s).for_each(|(d, &s)| *d = s * seed)
                        });
                    }),
                    None => out.grad.mul_scalar(seed),
                });
            }
            // Reduction::None: scale each unit's gradient by its upstream value.
            let mut dx = out.grad.clone().into_array();
            match out.unit_axis {
                Some(ax) => Zip::from(dx.lanes_mut(Axis(ax)))
                    .and(&g.view())
                    .for_each(|mut lane, &gv| lane.mapv_inplace(|v| v * gv)),
                None => dx.zip_mut_with(&g.view(), |v, &gv| *v *= gv),
            }
            Ok(Tensor::from_array(dx))
        })?;
        grads[0] = dx;
        Ok(())
    }
}

/// Integer class labels: the target of [`crate::SparseCrossEntropy`] and
/// [`crate::MultiMargin`]. Signed, so an ignored label such as Keras' `-1`
/// or PyTorch's `-100` can be written.
///
/// ```
/// use polyhead_losses::Labels;
/// let labels = Labels::from_classes(&[2, 0, 1]);
/// assert_eq!(labels.shape(), &[3]);
/// let grid = Labels::new(vec![0, 1, -100, 2], &[2, 2])?;
/// assert_eq!(grid.as_array()[[1, 0]], -100);
/// # Ok::<(), polyhead_losses::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    array: ArrayD<i64>,
}

impl Labels {
    /// Labels from row-major data and a shape.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let labels = Labels::new(vec![1, 0, 2, 2], &[2, 2])?;
    /// assert_eq!(labels.shape(), &[2, 2]);
    /// assert!(Labels::new(vec![1, 0, 2], &[2, 2]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(data: Vec<i64>, shape: &[usize]) -> Result<Self> {
        let len = data.len();
        let array = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| LossError::Invalid {
            loss: "labels",
            message: format!("{len} labels cannot have shape {shape:?}"),
        })?;
        Ok(Labels { array })
    }

    /// One label per sample, from class indices.
    ///
    /// ```
    /// let labels = polyhead_losses::Labels::from_classes(&[3, 1]);
    /// assert_eq!(labels.as_array().as_slice().unwrap(), &[3, 1]);
    /// ```
    pub fn from_classes(classes: &[usize]) -> Self {
        let data = classes.iter().map(|&c| c as i64).collect::<Vec<_>>();
        Labels {
            array: ArrayD::from_shape_vec(IxDyn(&[classes.len()]), data).expect("1-D"),
        }
    }

    /// The labels' shape.
    ///
    /// ```
    /// assert_eq!(polyhead_losses::Labels::from_classes(&[0, 1, 2]).shape(), &[3]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// The labels as an ndarray array.
    ///
    /// ```
    /// let labels = polyhead_losses::Labels::from_classes(&[4]);
    /// assert_eq!(labels.as_array()[[0]], 4);
    /// ```
    pub fn as_array(&self) -> &ArrayD<i64> {
        &self.array
    }

    /// The labels with each class index turned into a one-hot row over
    /// `classes` (an extra last axis); errors for a label out of range.
    ///
    /// ```
    /// let onehot = polyhead_losses::Labels::from_classes(&[1, 0]).one_hot::<f32>(3)?;
    /// assert_eq!(onehot.to_vec(), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    /// # Ok::<(), polyhead_losses::LossError>(())
    /// ```
    pub fn one_hot<T: Float>(&self, classes: usize) -> Result<Tensor<T>> {
        let mut shape = self.shape().to_vec();
        shape.push(classes);
        let mut out = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
        for (pos, &y) in self.array.indexed_iter() {
            if y < 0 || y as usize >= classes {
                return Err(LossError::Label {
                    loss: "one_hot",
                    label: y,
                    position: pos.slice().to_vec(),
                    classes,
                });
            }
            let mut idx = pos.slice().to_vec();
            idx.push(y as usize);
            out[IxDyn(&idx)] = T::ONE;
        }
        Ok(Tensor::from_array(out))
    }
}

impl From<ArrayD<i64>> for Labels {
    fn from(array: ArrayD<i64>) -> Self {
        Labels { array }
    }
}
