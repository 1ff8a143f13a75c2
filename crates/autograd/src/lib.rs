//! # polyhead-autograd
//!
//! Reverse-mode automatic differentiation over [`polyhead_tensor::Tensor`].
//!
//! A [`Tape`] records every op applied to its [`Var`] handles; a
//! [`Tape::backward`] sweep gives [`Gradients`] addressable by `Var` or by
//! [`Parameter`]. Every op is an [`Op`] (forward beside backward), and users
//! add their own the same way. [`gradcheck()`] compares any function's
//! gradients with finite differences.
//!
//! ```
//! use polyhead_autograd::{Parameter, Tape};
//! use polyhead_tensor::Tensor;
//!
//! // One dense layer and a squared error, differentiated w.r.t. its weights.
//! let w = Parameter::new(Tensor::from_vec(vec![0.5_f64, -0.5], &[2, 1])?);
//! let b = Parameter::new(Tensor::zeros(&[1])?);
//! let tape = Tape::new();
//! let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
//! let y = tape.constant(Tensor::from_vec(vec![1.0], &[1, 1])?);
//! let pred = x.matmul(tape.param(&w))?.add(tape.param(&b))?;  // -0.5
//! let err = pred.sub(y)?;
//! let loss = err.mul(err)?.mean_all()?;                         // 2.25
//! let grads = tape.backward(loss)?;
//! assert_eq!(grads.param(&b).unwrap().to_vec(), vec![-3.0]);    // 2 * (-1.5)
//! assert_eq!(grads.param(&w).unwrap().to_vec(), vec![-3.0, -6.0]);
//! # Ok::<(), polyhead_autograd::AutogradError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod gradcheck;
mod op;
mod ops;
mod param;
mod tape;

pub use error::{AutogradError, Result};
pub use gradcheck::{GradcheckError, GradcheckMode, GradcheckOptions, GradcheckReport, gradcheck};
pub use op::{BackwardContext, Op, backward_list};
pub use param::{ParamId, Parameter};
pub use tape::{Gradients, Tape, Var};

/// Re-export of the tensor crate this one is built on.
pub use polyhead_tensor as tensor;
