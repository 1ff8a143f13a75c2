//! # polyhead-derive
//!
//! `#[derive(MultiOutput)]` for polyhead models. Use it through the
//! `polyhead` crate, which re-exports it.
//!
//! This crate is a placeholder in the workspace; the derive arrives with its
//! issue (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
