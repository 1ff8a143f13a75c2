//! The one error type of the losses crate.

use polyhead_autograd::AutogradError;
use polyhead_tensor::TensorError;

/// Everything that can go wrong computing a loss. Messages name the loss and
/// the shapes or values involved.
///
/// ```
/// use polyhead_losses::{Loss, Mse};
/// use polyhead_tensor::Tensor;
/// let pred = Tensor::<f64>::zeros(&[4])?;
/// let target = Tensor::<f64>::zeros(&[4, 1])?;
/// let err = Mse::new().value_and_grad(&pred, &target, None).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "mse: prediction has shape [4] but target has shape [4, 1]; shapes must match exactly (no broadcasting)"
/// );
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    /// Prediction and target shapes do not fit.
    #[error("{loss}: prediction has shape {pred:?} but target has shape {target:?}; {expected}")]
    Shape {
        /// The loss.
        loss: &'static str,
        /// The prediction's shape.
        pred: Vec<usize>,
        /// The target's shape.
        target: Vec<usize>,
        /// What was expected.
        expected: String,
    },
    /// A class label outside `0..classes` (and not the ignored label).
    #[error("{loss}: labels must be in 0..{classes}, found {label} at position {position:?}")]
    Label {
        /// The loss.
        loss: &'static str,
        /// The offending label.
        label: i64,
        /// Where it is in the labels.
        position: Vec<usize>,
        /// The number of classes.
        classes: usize,
    },
    /// Weights (sample, class or element) that are negative, NaN or misshaped.
    #[error("{loss}: {message}")]
    Weight {
        /// The loss.
        loss: &'static str,
        /// What is wrong, with the values.
        message: String,
    },
    /// A batch with no elements.
    #[error("{loss}: empty batch: prediction has shape {shape:?}")]
    EmptyBatch {
        /// The loss.
        loss: &'static str,
        /// The prediction's shape.
        shape: Vec<usize>,
    },
    /// An option out of its range, or an input a loss cannot take.
    #[error("{loss}: {message}")]
    Invalid {
        /// The loss.
        loss: &'static str,
        /// What is wrong, with the values.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Recording on the tape failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
}

/// Shorthand for `Result<T, LossError>`.
///
/// ```
/// fn total(v: &[f64]) -> polyhead_losses::Result<f64> { Ok(v.iter().sum()) }
/// assert_eq!(total(&[1.0, 2.0]).unwrap(), 3.0);
/// ```
pub type Result<T, E = LossError> = std::result::Result<T, E>;

/// Lets `?` turn a loss error into an autograd error inside functions that
/// return autograd results, such as the function given to
/// [`polyhead_autograd::gradcheck`].
///
/// ```
/// use polyhead_autograd::{gradcheck, GradcheckOptions, Tape};
/// use polyhead_losses::{Loss, Mse};
/// use polyhead_tensor::Tensor;
/// let target = Tensor::from_vec(vec![0.5, -0.5], &[1, 2])?;
/// let pred = Tensor::from_vec(vec![0.1, 0.2], &[1, 2])?;
/// gradcheck(|_: &Tape<f64>, v| Ok(Mse::new().record(v[0], &target, None)?), &[pred], &GradcheckOptions::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl From<LossError> for AutogradError {
    fn from(e: LossError) -> Self {
        match e {
            LossError::Autograd(a) => a,
            LossError::Tensor(t) => AutogradError::Tensor(t),
            other => AutogradError::Op {
                op: "loss",
                message: other.to_string(),
            },
        }
    }
}
