//! The two settings every built-in loss has (convention and reduction),
//! their builder methods, and the runner shared by the pointwise losses.

use polyhead_tensor::{Float, Tensor};

use crate::error::Result;
use crate::reduction::{Convention, LossOutput, Reduction, finish, same_shape, uniform_coef};
use crate::units::{Aggregate, Pointwise, pointwise};

/// Convention and reduction of a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Config {
    pub convention: Convention,
    pub reduction: Reduction,
}

/// Generates the `convention` and `reduction` builder methods for a loss
/// struct with a `config: Config` field.
macro_rules! config_builders {
    ($t:ident) => {
        impl $t {
            /// Selects Keras' or PyTorch's definitions (see [`crate::Convention`]).
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// let pred = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[1, 2])?;
            /// let target = Tensor::from_vec(vec![0.0, 0.0], &[1, 2])?;
            /// let out = Mse::new().convention(Convention::PyTorch).reduction(Reduction::None).value_and_grad(&pred, &target, None)?;
            /// assert_eq!(out.value.to_vec(), vec![1.0, 4.0]); // one value per element
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn convention(mut self, convention: crate::Convention) -> Self {
                self.config.convention = convention;
                self
            }

            /// Sets the reduction (default [`crate::Reduction::Mean`]).
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// let pred = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2, 1])?;
            /// let target = Tensor::from_vec(vec![0.0, 0.0], &[2, 1])?;
            /// let out = Mse::new().reduction(Reduction::Sum).value_and_grad(&pred, &target, None)?;
            /// assert_eq!(out.value.item()?, 5.0);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn reduction(mut self, reduction: crate::Reduction) -> Self {
                self.config.reduction = reduction;
                self
            }
        }
    };
}
pub(crate) use config_builders;

/// Checks shapes, runs a pointwise kernel `kernel(pred, target, column) ->
/// (term, d term / d pred)` element by element and reduces.
// The arguments are the loss's name and settings and the call's own
// arguments, passed straight through; a struct would only hide them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_pointwise<T: Float>(
    loss: &'static str,
    config: Config,
    aggregate: Aggregate,
    pred: &Tensor<T>,
    target: &Tensor<T>,
    sample_weight: Option<&Tensor<T>>,
    buffer: Option<Tensor<T>>,
    kernel: impl Fn(T, T, usize) -> (T, T) + Sync,
) -> Result<LossOutput<T>> {
    run_pointwise_kernel(
        loss,
        config,
        aggregate,
        pred,
        target,
        sample_weight,
        buffer,
        kernel,
    )
}

/// [`run_pointwise`] with any [`Pointwise`] kernel (one that works on
/// slices, to vectorise its transcendental functions).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_pointwise_kernel<T: Float>(
    loss: &'static str,
    config: Config,
    aggregate: Aggregate,
    pred: &Tensor<T>,
    target: &Tensor<T>,
    sample_weight: Option<&Tensor<T>>,
    buffer: Option<Tensor<T>>,
    kernel: impl Pointwise<T>,
) -> Result<LossOutput<T>> {
    same_shape(loss, pred, target)?;
    // Without sample weights every unit weighs the same, so the reduction's
    // coefficient is known now and the kernel applies it in its own pass.
    let grad_coef = match sample_weight {
        Some(_) => None,
        None => {
            let units = match config.convention {
                // One unit per row along the last axis.
                Convention::Keras => pred.shape()[..pred.ndim().saturating_sub(1)]
                    .iter()
                    .product(),
                Convention::PyTorch => pred.len(),
            };
            uniform_coef(config.reduction, units, pred.shape(), None)
        }
    };
    let units = pointwise(
        pred,
        target,
        config.convention,
        aggregate,
        buffer,
        grad_coef,
        kernel,
    );
    finish(loss, units, config.reduction, sample_weight)
}
