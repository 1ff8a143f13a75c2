//! The one error type of the tensor crate.

/// Everything that can go wrong in a tensor operation.
///
/// Every variant names the operation and the shapes (or values) involved, so
/// the message alone explains the mistake:
///
/// ```
/// use polyhead_tensor::Tensor;
/// let a = Tensor::<f32>::zeros(&[32, 784]).unwrap();
/// let b = Tensor::<f32>::zeros(&[64, 10]).unwrap();
/// let err = a.matmul(&b).unwrap_err();
/// assert_eq!(err.to_string(), "matmul: inner dimensions differ: [32, 784] x [64, 10]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// Two shapes that must broadcast together do not.
    #[error("{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together")]
    Broadcast {
        /// The operation that failed.
        op: &'static str,
        /// Shape of the left operand (or the source shape).
        lhs: Vec<usize>,
        /// Shape of the right operand (or the target shape).
        rhs: Vec<usize>,
    },
    /// The operands of a matrix multiplication do not fit together.
    #[error("matmul: {reason}: {lhs:?} x {rhs:?}")]
    Matmul {
        /// What is wrong, e.g. `inner dimensions differ`.
        reason: &'static str,
        /// Shape of the left operand.
        lhs: Vec<usize>,
        /// Shape of the right operand.
        rhs: Vec<usize>,
    },
    /// An axis index is outside `-ndim..ndim`.
    #[error("{op}: axis {axis} is out of range for shape {shape:?} (rank {})", shape.len())]
    Axis {
        /// The operation that failed.
        op: &'static str,
        /// The axis the caller asked for.
        axis: isize,
        /// The shape of the tensor.
        shape: Vec<usize>,
    },
    /// A buffer length does not match a shape's element count.
    #[error("{op}: {len} elements cannot have shape {shape:?} ({expected} elements)")]
    ElementCount {
        /// The operation that failed.
        op: &'static str,
        /// Number of elements supplied.
        len: usize,
        /// The requested shape.
        shape: Vec<usize>,
        /// Number of elements the shape holds.
        expected: usize,
    },
    /// A shape's element count does not fit in `usize` (or in `isize` bytes).
    #[error("{op}: shape {shape:?} has too many elements to allocate")]
    Overflow {
        /// The operation that failed.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
    },
    /// A reduction that needs at least one element met an empty axis.
    #[error("{op}: cannot reduce an empty axis {axis} of shape {shape:?}")]
    EmptyReduction {
        /// The operation that failed.
        op: &'static str,
        /// The axis (or `-1` for all axes) being reduced.
        axis: isize,
        /// The shape of the tensor.
        shape: Vec<usize>,
    },
    /// Any other invalid argument; the message names the values.
    #[error("{op}: {message}")]
    Invalid {
        /// The operation that failed.
        op: &'static str,
        /// What is wrong, with the offending values.
        message: String,
    },
}

/// Shorthand for `Result<T, TensorError>`.
///
/// ```
/// fn first(t: &polyhead_tensor::Tensor<f32>) -> polyhead_tensor::Result<f32> {
///     t.get(&[0])
/// }
/// assert!(first(&polyhead_tensor::Tensor::zeros(&[0]).unwrap()).is_err());
/// ```
pub type Result<T, E = TensorError> = std::result::Result<T, E>;
