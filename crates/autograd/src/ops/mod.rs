//! The built-in ops, one module per family. Each op is a small struct
//! implementing [`crate::Op`], its forward beside its backward, followed by
//! the [`crate::Var`] method that records it.

mod arith;
mod index;
mod layout;
mod math;
mod matmul;
mod reduce;
