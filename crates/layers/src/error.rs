//! The one error type of the layers crate.

use polyhead_autograd::AutogradError;
use polyhead_tensor::TensorError;

/// Everything that can go wrong in a layer, optimizer or checkpoint.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Dense, Module};
/// use polyhead_tensor::{Rng, Tensor};
/// let dense = Dense::<f32>::new(784, 64, &mut Rng::new(0))?;
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::zeros(&[32, 100])?);
/// let err = dense.forward(x).unwrap_err();
/// assert_eq!(err.to_string(), "dense: input has 100 features (shape [32, 100]), the layer expects 784");
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A layer got an input of the wrong shape, or was built with bad sizes.
    #[error("{layer}: {message}")]
    Shape {
        /// The layer.
        layer: &'static str,
        /// What is wrong, with the shapes.
        message: String,
    },
    /// An option out of its range.
    #[error("{what}: {message}")]
    Invalid {
        /// The layer, initializer, optimizer or schedule.
        what: &'static str,
        /// What is wrong, with the values.
        message: String,
    },
    /// A layer has no inference graph to export (or not with these
    /// settings).
    #[error("{layer}: cannot be exported: {reason}")]
    NotExportable {
        /// The layer's name in the model and its type.
        layer: String,
        /// Why.
        reason: String,
    },
    /// A Keras weights file could not be read or does not fit the model.
    #[error("keras weights {path}: {message}")]
    KerasWeights {
        /// The file.
        path: String,
        /// What went wrong; for a model mismatch, every mismatch at once.
        message: String,
    },
    /// A PyTorch `state_dict` could not be read or does not fit the model.
    #[error("state_dict {path}: {message}")]
    StateDict {
        /// The file.
        path: String,
        /// What went wrong; for a model mismatch, every mismatch at once.
        message: String,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong; for a model mismatch, every mismatch at once.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Recording on the tape failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
}

/// Shorthand for `Result<T, LayerError>`.
///
/// ```
/// fn ok() -> polyhead_layers::Result<u8> { Ok(1) }
/// assert_eq!(ok().unwrap(), 1);
/// ```
pub type Result<T, E = LayerError> = std::result::Result<T, E>;

impl From<LayerError> for AutogradError {
    /// Lets `?` turn a layer error into an autograd error inside functions
    /// such as the one given to [`polyhead_autograd::gradcheck`].
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Autograd(a) => a,
            LayerError::Tensor(t) => AutogradError::Tensor(t),
            other => AutogradError::Op {
                op: "layer",
                message: other.to_string(),
            },
        }
    }
}
