//! # polyhead-losses
//!
//! Loss functions for polyhead with fused value-and-gradient kernels.
//!
//! This crate is a placeholder in the workspace; its contents arrive with
//! their issue (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
