//! The declared loss weights, as given (Keras' `loss_weights`).

use polyhead_tensor::Float;

use super::{Combination, Step, Weighting};
use crate::error::Result;

/// The loss weights as declared (`#[head(weight = ...)]`, or
/// [`Trainer::loss_weights`](crate::Trainer::loss_weights)): the
/// trainer's default.
///
/// ```
/// use polyhead::weighting::{Fixed, Weighting};
/// assert_eq!(Weighting::<f32>::name(&Fixed), "fixed");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Fixed;

impl<T: Float> Weighting<T> for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        Ok(Combination::Weights(step.loss_weights.to_vec()))
    }
}
