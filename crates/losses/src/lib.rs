//! # polyhead-losses
//!
//! The loss catalog of polyhead: every loss users know from Keras and
//! PyTorch, with the same numbers, each a fused kernel that computes the
//! value and the gradient with respect to the prediction in one pass.
//!
//! Use a loss on plain tensors (no tape), or record it on an autograd tape
//! as one node with [`Loss::record`]:
//!
//! ```
//! use polyhead_losses::{CrossEntropy, Loss, Mse, Reduction};
//! use polyhead_tensor::Tensor;
//!
//! let logits = Tensor::from_vec(vec![2.0_f32, 0.5, -1.0, 0.1, 0.2, 3.0], &[2, 3])?;
//! let onehot = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 3])?;
//! let ce = CrossEntropy::from_logits().label_smoothing(0.1);
//! let out = ce.value_and_grad(&logits, &onehot, None)?;
//! assert_eq!(out.grad.shape(), &[2, 3]);
//!
//! let boxes = Tensor::from_vec(vec![0.1_f32, 0.2, 0.3, 0.4], &[1, 4])?;
//! let per_sample = Mse::new().reduction(Reduction::None).value_and_grad(&boxes, &boxes, None)?;
//! assert_eq!(per_sample.value.to_vec(), vec![0.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On plain ndarray arrays, wrap them without copying:
//!
//! ```
//! use ndarray::array;
//! use polyhead_losses::{Huber, Loss};
//! use polyhead_tensor::Tensor;
//!
//! let pred = array![[0.5_f64, 2.0], [1.0, -1.0]];
//! let target = array![[0.0_f64, 0.0], [1.0, 1.0]];
//! let out = Huber::new(1.0).value_and_grad(&Tensor::from(pred), &Tensor::from(target), None)?;
//! let grad: ndarray::ArrayD<f64> = out.grad.into_array();
//! assert_eq!(grad.shape(), &[2, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Where Keras and PyTorch differ, [`Convention`] selects which one a loss
//! follows (Keras by default), and each loss documents the difference.
//! Custom losses implement [`Loss`] (their own value and gradient) or are
//! written as a closure over autograd ops with [`closure_loss`]; both plug
//! in wherever a built-in loss does.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod binary_cross_entropy;
mod closure;
mod config;
mod cosine;
mod cross_entropy;
mod error;
mod focal;
mod hinge;
mod kl_divergence;
mod lanes;
mod loss;
mod poisson;
mod reduction;
mod regression;
mod units;

pub use binary_cross_entropy::BinaryCrossEntropy;
pub use closure::{ClosureLoss, closure_loss};
pub use cosine::{CosineEmbedding, CosineSimilarity, CosineTarget};
pub use cross_entropy::{CrossEntropy, Input, SparseCrossEntropy};
pub use error::{LossError, Result};
pub use focal::{BinaryFocalLoss, CategoricalFocalCrossEntropy};
pub use hinge::{CategoricalHinge, Hinge, HingeEmbedding, MultiMargin, SoftMargin, SquaredHinge};
pub use kl_divergence::KlDivergence;
pub use loss::{Labels, Loss};
pub use poisson::Poisson;
/// Frees the buffers this thread keeps for reuse (recorded losses'
/// gradients among them: every tensor buffer nobody holds, see
/// [`polyhead_tensor::pool`]) and returns how many bytes they held.
/// Training loops never need it; it gives the memory back after training on
/// a thread that lives on.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_losses::{Loss, Mse, release_recycled_buffers};
/// use polyhead_tensor::Tensor;
/// release_recycled_buffers();
/// {
///     let tape = Tape::<f32>::new();
///     let pred = tape.leaf(Tensor::ones(&[4096, 4])?);
///     Mse::new().record(pred, &Tensor::zeros(&[4096, 4])?, None)?;
/// } // the tape is dropped: its loss gradient buffer is kept for reuse
/// assert!(release_recycled_buffers() >= 4096 * 4 * 4); // 64 KiB of f32 at least
/// assert_eq!(release_recycled_buffers(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn release_recycled_buffers() -> usize {
    polyhead_tensor::release_pooled_buffers()
}
pub use reduction::{Convention, LossOutput, Reduction};
pub use regression::{
    Huber, LogCosh, Mae, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Mse, SmoothL1,
};
