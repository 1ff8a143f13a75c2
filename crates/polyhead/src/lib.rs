//! # polyhead
//!
//! Multi-output neural networks trained on one weighted sum of per-head
//! losses. This facade re-exports the workspace's crates and adds the
//! multi-output runtime that `#[derive(MultiOutput)]` builds on:
//!
//! - [`tensor`]: n-dimensional `f32`/`f64` arrays ([`polyhead_tensor`]).
//! - [`autograd`]: the reverse-mode tape ([`polyhead_autograd`]).
//! - [`losses`]: the loss catalog ([`polyhead_losses`]).
//! - [`layers`]: modules, optimizers, checkpoints ([`polyhead_layers`]).
//! - [`MultiOutput`] and [`derive@MultiOutput`]: a model from a struct of
//!   named heads.
//!
//! ```
//! use polyhead::prelude::*;
//!
//! #[derive(MultiOutput)]
//! struct Locator {
//!     #[trunk]
//!     body: Dense,
//!     #[head(loss = CrossEntropy::from_logits(), weight = 1.0)]
//!     class: Dense,
//!     #[head(loss = Mse::new(), weight = 0.5)]
//!     bbox: Dense,
//! }
//!
//! let mut rng = Rng::new(0);
//! let model = Locator {
//!     body: Dense::builder(8, 16).activation(Activation::Relu).build(&mut rng)?,
//!     class: Dense::new(16, 3, &mut rng)?,
//!     bbox: Dense::new(16, 4, &mut rng)?,
//! };
//! let tape = Tape::new();
//! let x = tape.constant(Tensor::rand_normal(&[2, 8], 0.0, 1.0, 1)?);
//! let outputs = model.forward_heads(x)?;
//! let targets = LocatorTargets::new(
//!     Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 3])?,
//!     Tensor::zeros(&[2, 4])?,
//! );
//! let loss = model.weighted_loss(&outputs, &targets, &LocatorLossWeights::default())?;
//! let names: Vec<String> = loss.logs()?.into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, vec!["loss", "class_loss", "bbox_loss"]);
//! let grads = tape.backward(loss.total)?;
//! assert!(grads.param(model.body.kernel()).is_some());
//! # Ok::<(), polyhead::Error>(())
//! ```
// `unsafe` is denied everywhere but in one audited function that maps a
// file into memory (`data::map_file`), which says why it is sound.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod data;
pub mod distributed;
mod error;
mod multi_output;
mod target;
pub mod tensorboard;
mod train;
pub mod weighting;

#[doc(hidden)]
pub mod __private;

pub use error::{Error, Result};
pub use multi_output::{LossWeights, MultiOutput, TotalLoss, check_weight};
pub use polyhead_autograd as autograd;
pub use polyhead_derive::MultiOutput;
pub use polyhead_layers as layers;
pub use polyhead_losses as losses;
pub use polyhead_tensor as tensor;
pub use target::{Target, TargetSet};
pub use tensorboard::TensorBoard;
pub use train::{
    Callback, Control, CsvLogger, EarlyStopping, History, LossWeightSchedule, Metric,
    ModelCheckpoint, OnNonFinite, Progress, TrainContext, Trainer,
};

/// The names most programs need, in one import.
///
/// ```
/// use polyhead::prelude::*;
/// let t = Tensor::<f32>::zeros(&[1])?;
/// # let _ = t;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod prelude {
    pub use crate::{Error, History, LossWeights, Metric, MultiOutput, TotalLoss, Trainer};
    pub use polyhead_autograd::{Gradients, Parameter, Tape, Var, gradcheck};
    pub use polyhead_layers::{
        Activation, Adam, BatchNormalization, Conv1D, Conv2D, Conv2DTranspose, Dense,
        DepthwiseConv2D, Dropout, Embedding, Flatten, GlobalPooling, Initializer, LayerNorm,
        MaxPooling1D, Module, Padding, Pooling2D, RmsProp, Schedule, Sequential, Sgd,
        load_checkpoint, save_checkpoint,
    };
    pub use polyhead_losses::{
        BinaryCrossEntropy, Convention, CrossEntropy, Huber, Labels, Loss, Mae, Mse, Reduction,
        SparseCrossEntropy, closure_loss,
    };
    pub use polyhead_tensor::{Float, Rng, Tensor, TensorError};
}

/// The README's code blocks, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
