//! The one error type of the autograd crate.

use polyhead_tensor::TensorError;

/// Everything that can go wrong while recording or differentiating.
///
/// ```
/// use polyhead_autograd::{Tape, AutogradError};
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::ones(&[3])?);
/// let err = tape.backward(x).unwrap_err();
/// assert!(matches!(err, AutogradError::NonScalarRoot { .. }));
/// # Ok::<(), AutogradError>(())
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutogradError {
    /// A tensor operation failed (shapes, axes, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Handles from two different tapes were combined.
    #[error(
        "{op}: operands come from different tapes; every value of one step must be recorded on one tape"
    )]
    ForeignVar {
        /// The operation that received them.
        op: &'static str,
    },
    /// `backward` was called on a root with more than one element.
    #[error(
        "backward: the root has shape {shape:?}, not a single element; pass a seed gradient of that shape with backward_with_seed"
    )]
    NonScalarRoot {
        /// The root's shape.
        shape: Vec<usize>,
    },
    /// The seed gradient's shape differs from the root's.
    #[error("backward: seed gradient has shape {seed:?}, but the root has shape {root:?}")]
    SeedShape {
        /// The seed's shape.
        seed: Vec<usize>,
        /// The root's shape.
        root: Vec<usize>,
    },
    /// `backward` on a tape made with [`crate::Tape::no_record`].
    #[error("backward: this tape does not record a graph (it was made with Tape::no_record)")]
    NotRecording,
    /// An op rejected its arguments, or a custom op misbehaved.
    #[error("{op}: {message}")]
    Op {
        /// The op's name.
        op: &'static str,
        /// What is wrong, with the offending values.
        message: String,
    },
}

/// Shorthand for `Result<T, AutogradError>`.
///
/// ```
/// fn square<'t>(x: polyhead_autograd::Var<'t, f64>) -> polyhead_autograd::Result<polyhead_autograd::Var<'t, f64>> {
///     x.mul(x)
/// }
/// ```
pub type Result<T, E = AutogradError> = std::result::Result<T, E>;
