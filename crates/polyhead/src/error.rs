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
    /// A loss went NaN or infinite during training: a head's loss
    /// (`head`) or the weighted total (`None`), at 1-based `epoch` and
    /// `step`. Nothing was updated from that step.
    #[error(
        "training stopped: {} is {value} at epoch {epoch}, step {step}; the weights are those after the last good step",
        describe_loss(.head.as_deref())
    )]
    NonFiniteLoss {
        /// The head whose loss went bad, or `None` for the weighted total.
        head: Option<String>,
        /// The value (NaN or infinite).
        value: f64,
        /// The epoch, from 1.
        epoch: usize,
        /// The step within the epoch, from 1.
        step: usize,
    },
    /// Input or target data holds a NaN or infinite value.
    #[error(
        "{what} holds {value} at sample {sample}, element {element} (shape {shape:?}); clean the data or mask the sample"
    )]
    NonFiniteData {
        /// Which input or target.
        what: String,
        /// The value.
        value: f64,
        /// Its sample (row).
        sample: usize,
        /// Its element within the sample.
        element: usize,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// Shapes or sample counts that do not fit together (inputs and
    /// targets of different lengths, a mask of the wrong shape...).
    #[error("{0}")]
    Shape(String),
    /// A name that is not one of the model's heads or losses (a loss
    /// weight, a metric).
    #[error("{context}: no head or loss named `{name}`; the names are {known:?}")]
    UnknownName {
        /// Where the name was given.
        context: String,
        /// The name given.
        name: String,
        /// The names there are.
        known: Vec<String>,
    },
    /// A file could not be read, written or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file (or folder).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A setting or argument that cannot work (a batch size of 0, a
    /// negative loss weight, no samples...).
    #[error("{0}")]
    Invalid(String),
    /// A loss weighting strategy could not combine the losses.
    #[error("{strategy} weighting: {message}")]
    Weighting {
        /// The strategy's name.
        strategy: String,
        /// What went wrong.
        message: String,
    },
    /// A rank of a data-parallel run failed (an error in its batch, its
    /// forward pass, a callback); every rank stops with this error.
    #[error(
        "data-parallel training stopped: rank {rank} failed at epoch {epoch}, step {step}: {message}"
    )]
    RankFailed {
        /// The rank that failed.
        rank: usize,
        /// The epoch, from 1 (0: outside a step).
        epoch: usize,
        /// The step within the epoch, from 1 (0: outside a step).
        step: usize,
        /// Its error (on the other ranks: where to find it).
        message: String,
    },
    /// Anything else, described: errors of code outside polyhead (a
    /// `Dataset`, a callback or a strategy of your own) that fit none of
    /// the variants above.
    #[error("{0}")]
    Other(String),
}

/// The loss named in a [`Error::NonFiniteLoss`] message.
fn describe_loss(head: Option<&str>) -> String {
    match head {
        Some(h) => format!("{h}_loss (head `{h}`)"),
        None => "the weighted loss".to_string(),
    }
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
