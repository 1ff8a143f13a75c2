//! The facade's error type: any crate's error, with the head or part of the
//! model where it happened.

use polyhead_autograd::AutogradError;
use polyhead_layers::LayerError;
use polyhead_losses::LossError;
use polyhead_tensor::TensorError;

/// An error from anywhere in polyhead.
///
/// ```
/// use polyhead::Error;
/// let e = Error::in_part("class", polyhead::tensor::TensorError::Invalid { op: "x", message: "bad".into() });
/// assert_eq!(e.to_string(), "class: x: bad");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Recording or differentiating failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// A loss rejected its inputs.
    #[error(transparent)]
    Loss(#[from] LossError),
    /// A layer, optimizer or checkpoint failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// An error inside one head, trunk or loss term of a model.
    #[error("{part}: {source}")]
    Part {
        /// The field or term name.
        part: &'static str,
        /// What went wrong there.
        source: Box<Error>,
    },
    /// The loss weights give a different number of weights than there are
    /// losses to weigh (a hand-written `LossWeights` or `MultiOutput`
    /// whose lists disagree).
    #[error(
        "{context}: {losses} loss(es) ({names}) but {weights} loss weight(s); give one weight per loss, in the order of `MultiOutput::LOSSES`"
    )]
    LossWeightCount {
        /// Where the mismatch was found.
        context: &'static str,
        /// The number of losses.
        losses: usize,
        /// Their names, comma-separated.
        names: String,
        /// The number of weights given.
        weights: usize,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an error with the model part it happened in.
    ///
    /// ```
    /// let e = polyhead::Error::in_part("bbox", polyhead::Error::Other("bad".into()));
    /// assert_eq!(e.to_string(), "bbox: bad");
    /// ```
    pub fn in_part(part: &'static str, source: impl Into<Error>) -> Self {
        Error::Part {
            part,
            source: Box::new(source.into()),
        }
    }
}

/// Shorthand for `Result<T, polyhead::Error>`.
///
/// ```
/// fn f() -> polyhead::Result<()> { Ok(()) }
/// assert!(f().is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
