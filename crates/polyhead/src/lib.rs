//! # polyhead
//!
//! Multi-output neural networks trained on one weighted sum of per-head
//! losses. This facade re-exports the workspace's crates:
//!
//! - [`tensor`]: n-dimensional `f32`/`f64` arrays ([`polyhead_tensor`]).
//! - [`autograd`]: the reverse-mode tape ([`polyhead_autograd`]).
//! - [`losses`]: the loss catalog ([`polyhead_losses`]).
//! - [`layers`]: modules, optimizers, checkpoints ([`polyhead_layers`]).
//!
//! ```
//! use polyhead::prelude::*;
//! let t = Tensor::<f32>::ones(&[2, 2])?;
//! assert_eq!(t.sum_all(false).item()?, 4.0);
//! # Ok::<(), TensorError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use polyhead_autograd as autograd;
pub use polyhead_layers as layers;
pub use polyhead_losses as losses;
pub use polyhead_tensor as tensor;

/// The names most programs need, in one import.
pub mod prelude {
    pub use polyhead_tensor::{Float, Tensor, TensorError};
}

/// The README's code blocks, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
