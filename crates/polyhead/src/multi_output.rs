//! The runtime side of `#[derive(MultiOutput)]`: the [`MultiOutput`] trait
//! the derive implements, the weighted total it computes, and the Keras
//! names it logs under.

use polyhead_autograd::Var;
use polyhead_layers::Module;
use polyhead_tensor::Float;

use crate::error::Result;

/// Loss weights by name: the struct the derive generates
/// (`<Model>LossWeights`) implements it so trainers and weighting
/// strategies can read and set weights without knowing the model.
///
/// ```
/// use polyhead::LossWeights;
/// #[derive(Clone)]
/// struct W { a: f64, b: f64 }
/// impl LossWeights for W {
///     fn names(&self) -> &'static [&'static str] { &["a", "b"] }
///     fn values(&self) -> Vec<f64> { vec![self.a, self.b] }
///     fn set(&mut self, name: &str, value: f64) -> polyhead::Result<()> {
///         match name { "a" => self.a = value, "b" => self.b = value, _ => return Err(polyhead::Error::Other(name.into())) }
///         Ok(())
///     }
/// }
/// let mut w = W { a: 1.0, b: 0.5 };
/// w.set("b", 2.0)?;
/// assert_eq!(w.values(), vec![1.0, 2.0]);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub trait LossWeights: Clone {
    /// The weighted losses' names: heads with a loss, then loss terms.
    fn names(&self) -> &'static [&'static str];
    /// The weights, in the order of [`LossWeights::names`].
    fn values(&self) -> Vec<f64>;
    /// Sets one weight; an error for an unknown name or a weight that is
    /// negative or not finite.
    fn set(&mut self, name: &str, value: f64) -> Result<()>;
}

/// Checks a loss weight: finite and non-negative.
///
/// ```
/// assert!(polyhead::check_weight("class", 0.5).is_ok());
/// assert_eq!(
///     polyhead::check_weight("class", -1.0).unwrap_err().to_string(),
///     "loss weight of `class` must be finite and non-negative, got -1"
/// );
/// ```
pub fn check_weight(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(crate::Error::Other(format!(
            "loss weight of `{name}` must be finite and non-negative, got {value}"
        )))
    }
}

/// A model with several named outputs trained on a weighted sum of
/// per-head losses. Implemented by `#[derive(MultiOutput)]`; see the
/// derive's documentation for what a struct expands to.
pub trait MultiOutput<T: Float>: Module<T> {
    /// One value per head (`<Model>Outputs<V>`).
    type Outputs<V>;
    /// The targets of the heads with a loss, with per-head sample weights
    /// and masks (`<Model>Targets<T>`).
    type Targets;
    /// The weight of each loss (`<Model>LossWeights`).
    type LossWeights: LossWeights + Default;

    /// Every head, in field order.
    const HEADS: &'static [&'static str];
    /// The weighted losses: heads with a loss, then loss terms.
    const LOSSES: &'static [&'static str];

    /// The forward pass: the trunk once (if any), then each head on its
    /// output (or on the input, without a trunk).
    fn forward_heads<'t>(&self, x: Var<'t, T>) -> Result<Self::Outputs<Var<'t, T>>>;

    /// Each loss unweighted, in the order of [`MultiOutput::LOSSES`].
    fn head_losses<'t>(
        &self,
        outputs: &Self::Outputs<Var<'t, T>>,
        targets: &Self::Targets,
    ) -> Result<Vec<Var<'t, T>>>;

    /// The weighted total, one tape value, with each unweighted loss for
    /// logging and for weighting strategies that need per-head gradients.
    fn weighted_loss<'t>(
        &self,
        outputs: &Self::Outputs<Var<'t, T>>,
        targets: &Self::Targets,
        weights: &Self::LossWeights,
    ) -> Result<TotalLoss<'t, T>> {
        let parts = self.head_losses(outputs, targets)?;
        let values = weights.values();
        let mut total: Option<Var<'t, T>> = None;
        for (part, &w) in parts.iter().zip(&values) {
            let weighted = part.scale(T::from_f64(w));
            total = Some(match total {
                Some(t) => t.add(weighted)?,
                None => weighted,
            });
        }
        let total = match total {
            Some(t) => t,
            None => {
                return Err(crate::Error::Other(
                    "the model has no loss to train on: give some #[head] a `loss = ...`".into(),
                ));
            }
        };
        Ok(TotalLoss {
            total,
            parts: Self::LOSSES.iter().copied().zip(parts).collect(),
        })
    }
}

/// The weighted total loss of a step and its unweighted parts.
#[derive(Debug, Clone)]
pub struct TotalLoss<'t, T: Float> {
    /// `sum_i weight_i * loss_i`, the value to differentiate.
    pub total: Var<'t, T>,
    /// Each loss, unweighted, by name.
    pub parts: Vec<(&'static str, Var<'t, T>)>,
}

impl<T: Float> TotalLoss<'_, T> {
    /// The values under Keras' names: `loss` (the weighted total), then
    /// `<name>_loss` for each part (unweighted).
    ///
    /// ```
    /// use polyhead::TotalLoss;
    /// use polyhead::autograd::Tape;
    /// use polyhead::tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.constant(Tensor::scalar(2.0));
    /// let b = tape.constant(Tensor::scalar(0.5));
    /// let total = TotalLoss { total: a.add(b.scale(0.5))?, parts: vec![("class", a), ("bbox", b)] };
    /// assert_eq!(total.logs()?, vec![("loss".to_string(), 2.25), ("class_loss".to_string(), 2.0), ("bbox_loss".to_string(), 0.5)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn logs(&self) -> Result<Vec<(String, f64)>> {
        let mut out = vec![("loss".to_string(), self.total.value().item()?.to_f64())];
        for (name, v) in &self.parts {
            out.push((format!("{name}_loss"), v.value().item()?.to_f64()));
        }
        Ok(out)
    }
}
