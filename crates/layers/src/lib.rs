//! # polyhead-layers
//!
//! Modules, initializers, optimizers and checkpoints for polyhead.
//!
//! This crate is a placeholder in the workspace; its contents arrive with
//! their issue (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
