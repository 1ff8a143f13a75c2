//! Code shared by polyhead's examples and their tests: a synthetic "digits
//! with boxes" data set and the `digit_bbox` training run. See the
//! `polyhead` crate for the library itself. `intent_slots` is the joint
//! intent and slot model on generated flight-booking utterances.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod digit_bbox;
pub mod glyphs;
pub mod intent_slots;
