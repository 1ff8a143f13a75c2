//! # polyhead-tensor
//!
//! n-dimensional `f32`/`f64` arrays for the polyhead toolkit, built on
//! [`ndarray`], with matrix multiplication through `matrixmultiply` on real
//! strides (a transposed view is never copied).
//!
//! Every operation that can fail on user input returns
//! `Result<_, TensorError>` whose message names the operation and the
//! shapes; nothing panics on a shape, axis or length mistake.
//!
//! ```
//! use polyhead_tensor::Tensor;
//!
//! // A batch of 2 inputs with 3 features, a [3, 2] weight and a bias.
//! let x = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let w = Tensor::from_vec(vec![0.1_f32, 0.2, 0.3, 0.4, 0.5, 0.6], &[3, 2])?;
//! let b = Tensor::from_vec(vec![0.0_f32, 1.0], &[2])?;
//! let logits = x.matmul(&w)?.add(&b)?;          // bias broadcasts over rows
//! let probs = logits.softmax(-1)?;               // stable along the last axis
//! let row_sums = probs.sum_axis(-1, false)?;
//! assert!(row_sums.to_vec().iter().all(|s| (s - 1.0).abs() < 1e-6));
//!
//! // Mistakes are errors that say what went wrong.
//! let err = x.matmul(&x).unwrap_err();
//! assert_eq!(err.to_string(), "matmul: inner dimensions differ: [2, 3] x [2, 3]");
//! # Ok::<(), polyhead_tensor::TensorError>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod element;
mod elementwise;
mod error;
mod layout;
pub mod local;
mod matmul;
pub mod parallel;
pub mod pool;
mod random;
mod reduce;
/// Shape arithmetic: broadcasting, axes, checked element counts.
///
/// ```
/// let s = polyhead_tensor::shape::broadcast_shape("add", &[3, 1], &[4])?;
/// assert_eq!(s, vec![3, 4]);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub mod shape;
pub mod simd;
pub mod special;
mod tensor;

pub use element::Float;
pub use elementwise::sigmoid;
pub use error::{Result, TensorError};
pub use matmul::{Gemm, gemm, gemm_new, gemm_tensor};
pub use pool::release_pooled_buffers;
pub use random::Rng;
pub use reduce::first_non_finite;
pub use tensor::Tensor;

/// Re-export of the `ndarray` version this crate is built on, so users can
/// convert without adding a matching dependency.
pub use ndarray;
