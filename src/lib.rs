//! Examples and benchmarks of polyhead live in `examples/` and `benches/` at
//! the repository root; this package only gives them a home. See the
//! `polyhead` crate for the library.
#![forbid(unsafe_code)]
