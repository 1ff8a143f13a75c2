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
#[proc_macro_derive(MultiOutput, attributes(trunk, head, layer, multi_output))]
pub fn derive_multi_output(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input).into()
}

/// The derive on `proc_macro2` tokens: the expansion, or every error.
fn derive(input: &DeriveInput) -> proc_macro2::TokenStream {
    match ast::parse(input) {
        Ok(model) => expand::expand(&model),
        Err(errors) => errors.to_compile_error(),
    }
}

#[cfg(test)]
mod tests {
    /// The expansion of the documented example model, pretty-printed, is
    /// `tests/expand/digit_locator.expanded.rs`, which `polyhead`'s
    /// `MultiOutput` docs show. After an intended change of the generated
    /// code, regenerate it with
    /// `UPDATE_EXPECT=1 cargo test -p polyhead-derive`.
    #[test]
    fn the_documented_expansion_is_the_real_one() {
        let input: syn::DeriveInput =
            syn::parse_str(include_str!("../tests/expand/digit_locator.rs"))
                .expect("the example model parses");
        let file: syn::File = syn::parse2(super::derive(&input)).expect("the expansion is items");
        expect_test::expect_file!["../tests/expand/digit_locator.expanded.rs"]
            .assert_eq(&prettyplease::unparse(&file));
    }
}
