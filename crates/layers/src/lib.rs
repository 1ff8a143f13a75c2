//! # polyhead-layers
//!
//! The building blocks of a model and the means to train and keep it:
//! modules ([`Dense`], activations, [`Sequential`], [`Dropout`],
//! [`LayerNorm`], [`Embedding`], [`Flatten`]), seeded [`Initializer`]s,
//! optimizers ([`Sgd`], [`Adam`] and AdamW, [`RmsProp`]) with clipping and
//! [`Schedule`]s, and atomic safetensors checkpoints.
//!
//! ```
//! use polyhead_autograd::Tape;
//! use polyhead_layers::{Activation, Adam, Dense, Module, Sequential};
//! use polyhead_tensor::{Rng, Tensor};
//!
//! let mut rng = Rng::new(42);
//! let mut model = Sequential::<f32>::new()
//!     .push(Dense::builder(4, 16).activation(Activation::Relu).build(&mut rng)?)
//!     .push(Dense::new(16, 1, &mut rng)?);
//! let mut opt = Adam::new(1e-2).build();
//! let x = Tensor::rand_normal(&[32, 4], 0.0, 1.0, 1)?;
//! let y = x.sum_axis(-1, true)?; // learn the sum of the features
//! let mut first = None;
//! for _ in 0..200 {
//!     let tape = Tape::new();
//!     let err = model.forward(tape.constant(x.clone()))?.sub(tape.constant(y.clone()))?;
//!     let loss = err.mul(err)?.mean_all()?;
//!     first.get_or_insert(loss.value().item()?);
//!     opt.step(&mut model, &tape.backward(loss)?)?;
//! }
//! let tape = Tape::no_record();
//! let err = model.forward(tape.constant(x.clone()))?.sub(tape.constant(y))?;
//! let last = err.mul(err)?.mean_all()?.value().item()?;
//! assert!(last < 0.05 * first.unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod activation;
mod attention;
mod batch_norm;
mod buffer;
mod checkpoint;
mod conv;
mod dense;
mod dropout;
mod embedding;
mod error;
pub mod export;
mod flatten;
mod import;
mod initializer;
#[cfg(feature = "keras-h5")]
mod keras_h5;
mod layer_norm;
mod module;
mod optim;
mod pooling;
mod recurrent;
mod sequential;
mod torch;

pub use activation::{Activation, GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh};
pub use attention::{MultiHeadAttention, MultiHeadAttentionBuilder};
pub use batch_norm::{BatchNormalization, MovingStatistics};
pub use buffer::Buffer;
pub use checkpoint::{load_checkpoint, load_checkpoint_bytes, save_checkpoint};
pub use conv::{
    Conv1D, Conv1DBuilder, Conv2D, Conv2DBuilder, Conv2DTranspose, Conv2DTransposeBuilder,
    DepthwiseConv2D, DepthwiseConv2DBuilder, Padding,
};
pub use dense::{Dense, DenseBuilder};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use error::{LayerError, Result};
pub use flatten::Flatten;
pub use initializer::Initializer;
#[cfg(feature = "keras-h5")]
pub use keras_h5::{KerasNames, load_keras_weights};
pub use layer_norm::LayerNorm;
pub use module::{Module, pass_mask};
pub use optim::{Adam, Optimizer, OptimizerConvention, RmsProp, Schedule, Sgd};
pub use pooling::{GlobalPooling, MaxPooling1D, Pooling2D};
pub use recurrent::{Bidirectional, Gru, Lstm, Merge};
pub use sequential::Sequential;
pub use torch::{TorchNames, load_torch_state_dict, load_torch_state_dict_bytes};
