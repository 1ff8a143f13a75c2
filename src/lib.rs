//! Code shared by polyhead's examples and their tests: a synthetic "digits
//! with boxes" data set and the `digit_bbox` training run. See the
//! `polyhead` crate for the library itself.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod digit_bbox;
pub mod glyphs;
