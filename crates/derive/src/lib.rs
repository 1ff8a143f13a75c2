//! # polyhead-derive
//!
//! `#[derive(MultiOutput)]` for polyhead models. Use it through the
//! `polyhead` crate, which re-exports it and documents what it generates.
//!
//! The macro is built like `thiserror-impl`: `ast` parses the struct into a
//! small typed model and checks it (collecting every mistake, each at the
//! user's token), then `expand` generates code from that model.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ast;
mod expand;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `polyhead::MultiOutput` (and `polyhead::layers::Module`) for a
/// struct of named heads. See the `polyhead::MultiOutput` trait for the
/// attributes and what a struct expands to.
///
/// ```ignore
/// #[derive(polyhead::MultiOutput)]
/// struct TwoHeads {
///     #[trunk] body: polyhead::layers::Dense,
///     #[head(loss = polyhead::losses::Mse::new(), weight = 0.5)] out: polyhead::layers::Dense,
/// }
/// ```
#[proc_macro_derive(MultiOutput, attributes(trunk, head, multi_output))]
pub fn derive_multi_output(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match ast::parse(&input) {
        Ok(model) => expand::expand(&model).into(),
        Err(errors) => errors.to_compile_error().into(),
    }
}
