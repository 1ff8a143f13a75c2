//! # polyhead-autograd
//!
//! Reverse-mode automatic differentiation over [`polyhead_tensor::Tensor`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use polyhead_tensor as tensor;
