//! The runtime side of `#[derive(MultiOutput)]`: the [`MultiOutput`] trait
//! the derive implements, the weighted total it computes, and the Keras
//! names it logs under.

use polyhead_autograd::{Tape, Var};
use polyhead_layers::Module;
use polyhead_tensor::{Float, Tensor};

use crate::error::{Error, Result};

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
    /// The `i`-th weight of [`LossWeights::values`] without making the
    /// list (`None` past the end); the derive implements it with a `match`,
    /// so that a step's weighted loss allocates nothing for its weights.
    ///
    /// ```
    /// use polyhead::LossWeights;
    /// #[derive(Clone)]
    /// struct W(f64);
    /// impl LossWeights for W {
    ///     fn names(&self) -> &'static [&'static str] { &["a"] }
    ///     fn values(&self) -> Vec<f64> { vec![self.0] }
    ///     fn set(&mut self, _: &str, v: f64) -> polyhead::Result<()> { self.0 = v; Ok(()) }
    /// }
    /// assert_eq!(W(0.5).value_at(0), Some(0.5));
    /// assert_eq!(W(0.5).value_at(1), None);
    /// ```
    fn value_at(&self, i: usize) -> Option<f64> {
        self.values().get(i).copied()
    }
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
        Err(crate::Error::Invalid(format!(
            "loss weight of `{name}` must be finite and non-negative, got {value}"
        )))
    }
}

/// A model with several named outputs trained on a weighted sum of
/// per-head losses, implemented by `#[derive(MultiOutput)]`.
///
/// # What you write
///
/// ```
/// use polyhead::prelude::*;
///
/// #[derive(MultiOutput)]
/// pub struct DigitLocator {
///     #[trunk]                                       // shared body: input -> features
///     body: Sequential,
///     #[head(loss = CrossEntropy::from_logits(), weight = 1.0)]
///     class: Dense,                                  // 10 logits
///     #[head(loss = Mse::new(), weight = 0.5)]
///     bbox: Dense,                                   // 4 values
///     #[head]                                        // output only (Keras' `None` loss)
///     embedding: Dense,
/// }
/// ```
///
/// - `#[trunk]` (at most one): runs once on the input; every head runs on its
///   output. Without a trunk, every head gets the input.
/// - `#[head]`: an output. `loss = EXPR` is any expression whose value
///   implements [`polyhead_losses::Loss`]: a built-in loss with options, a
///   value of your own type, `self.some_field` (a loss chosen at run time),
///   or a closure `|pred, target| ...` composing autograd ops (wrapped in
///   [`polyhead_losses::closure_loss`]). `weight = 0.5` is its default weight
///   (1 if omitted). `target = Labels` sets the target's type (default
///   `Tensor<T>`); a mismatch with the loss is a compile error at the loss.
/// - Other fields (no attribute) are left alone: configuration, boxed losses.
/// - `#[multi_output(term(name = "...", weight = ..., with = path))]` adds a
///   loss term computed by `fn(&Outputs<Var>, &Targets) -> Result<Var>` from
///   several heads' outputs and targets (or none: an auxiliary loss, Keras'
///   `add_loss`), weighted and logged like a head.
/// - `#[multi_output(element = f64)]` sets the element type; by default it is
///   the struct's type parameter bounded by `Float`, else `f32`.
///
/// # What it expands to
///
/// For the struct above, this is the derive's whole output, pretty-printed
/// (the file is a snapshot test of `polyhead-derive`, so it is always the
/// real expansion). In short: `<Name>Outputs<V>` (one value per head, with
/// `NAMES`, `into_tuple`, `map`, `iter`), `<Name>Targets<T>` (a target per
/// head with a loss, plus optional sample weights and masks),
/// `<Name>LossWeights` (the default weights, changeable at run time), and
/// the impls of `MultiOutput` (`forward_with_features`, `head_values`,
/// `head_losses`, `HEADS`, `LOSSES`, `TRUNK`) and `Module` (parameters
/// named `<field>.<name>`). Every path is fully qualified through
/// `::polyhead`.
///
#[doc = concat!(
    "```rust,ignore\n",
    include_str!("../../derive/tests/expand/digit_locator.expanded.rs"),
    "```"
)]
///
/// Errors in the attributes are reported at the offending token, all at
/// once (see `tests/ui/` for every case and its message).
pub trait MultiOutput<T: Float>: Module<T> {
    /// The model's input: a bare `V` (one input, the default), or
    /// `<Model>Inputs<V>` with one value per input named in
    /// `#[multi_output(inputs(...))]`. `Tensor`s for `Trainer::fit`,
    /// `evaluate` and `predict`; `Var`s in the forward pass.
    type Inputs<V>;
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

    /// The trunk's field name, if the model has one: its parameters
    /// (`<trunk>.*`) are the ones all heads share.
    const TRUNK: Option<&'static str>;

    /// The fields whose parameters every head depends on: the trunk, or
    /// with a forward of one's own the `#[layer(shared)]` fields.
    /// Weighting strategies that balance gradients on shared parameters
    /// (GradNorm, PCGrad, FAMO's representation) use theirs.
    const SHARED: &'static [&'static str];

    /// The inputs' names, in declaration order (`["x"]` for one input).
    const INPUTS: &'static [&'static str];

    /// Each input tensor with its name, in declaration order.
    fn inputs_of(x: &Self::Inputs<Tensor<T>>) -> Vec<(&'static str, &Tensor<T>)>;

    /// The samples at `rows` of every input.
    fn select_input_rows(
        x: &Self::Inputs<Tensor<T>>,
        rows: &[usize],
    ) -> Result<Self::Inputs<Tensor<T>>>;

    /// The inputs as constants on `tape`.
    fn input_vars<'t>(tape: &'t Tape<T>, x: &Self::Inputs<Tensor<T>>) -> Self::Inputs<Var<'t, T>>;

    /// The number of samples, the same in every input (the first axis of
    /// each); an error naming the inputs if they disagree, or if an input
    /// has no first axis.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// assert_eq!(Net::input_rows(&Tensor::<f32>::zeros(&[5, 3])?)?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn input_rows(x: &Self::Inputs<Tensor<T>>) -> Result<usize> {
        let inputs = Self::inputs_of(x);
        let mut rows: Option<(&str, usize)> = None;
        for (name, t) in &inputs {
            let Some(&n) = t.shape().first() else {
                return Err(crate::Error::Shape(format!(
                    "input `{name}` must have a first (batch) axis, got a scalar of shape {:?}",
                    t.shape()
                )));
            };
            match rows {
                None => rows = Some((name, n)),
                Some((first, m)) if m != n => {
                    return Err(crate::Error::Shape(format!(
                        "the inputs disagree on the number of samples: `{first}` has {m}, `{name}` has {n} (shapes {})",
                        inputs
                            .iter()
                            .map(|(n, t)| format!("{n} {:?}", t.shape()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(rows.map_or(0, |(_, n)| n))
    }

    /// The forward pass, also returning the trunk's output (the shared
    /// representation; `None` without a trunk).
    // The pair is (trunk output, head outputs); a named alias would hide that.
    #[allow(clippy::type_complexity)]
    fn forward_with_features<'t>(
        &self,
        x: Self::Inputs<Var<'t, T>>,
    ) -> Result<(Option<Var<'t, T>>, Self::Outputs<Var<'t, T>>)>;

    /// The forward pass: the trunk once (if any), then each head on its
    /// output (or on the input, without a trunk).
    fn forward_heads<'t>(&self, x: Self::Inputs<Var<'t, T>>) -> Result<Self::Outputs<Var<'t, T>>> {
        Ok(self.forward_with_features(x)?.1)
    }

    /// Adds the model's inference graph to `graph`, reading value `input`,
    /// and returns each head's output value, in head order (the derive
    /// writes it for a trunk-and-heads model with one input; a model with
    /// a forward of its own, or several inputs, keeps this default, an
    /// error). `polyhead-onnx` writes the graph as an ONNX file.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Net {
    ///     #[trunk]
    ///     body: Dense,
    ///     #[head(loss = Mse::new())]
    ///     out: Dense,
    /// }
    /// let mut rng = Rng::new(0);
    /// let net = Net { body: Dense::new(2, 4, &mut rng)?, out: Dense::new(4, 1, &mut rng)? };
    /// let mut graph = polyhead::layers::export::Graph::default();
    /// let outputs = net.export_graph(&mut graph, "input")?;
    /// assert_eq!(outputs[0].0, "out");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn export_graph(
        &self,
        graph: &mut polyhead_layers::export::Graph,
        input: &str,
    ) -> Result<Vec<(&'static str, String)>> {
        let _ = (graph, input);
        Err(Error::Invalid(format!(
            "{}: only a model of a trunk and heads on one input can be exported; this one has a forward of its own or several inputs",
            std::any::type_name::<Self>()
        )))
    }

    /// Each head's value by name, in field order (for metrics and logs).
    fn head_values<'t>(outputs: &Self::Outputs<Var<'t, T>>) -> Vec<(&'static str, Var<'t, T>)>;

    /// `outputs` with `f(head name, value)` applied to each head, in field
    /// order (the derive forwards to `<Model>Outputs::map`): how generic
    /// code, such as [`Trainer::predict`](crate::Trainer::predict), turns
    /// outputs on the tape into tensors.
    ///
    /// ```
    /// use polyhead::prelude::*;
    /// #[derive(MultiOutput)]
    /// struct Two {
    ///     #[head(loss = Mse::new())]
    ///     a: Dense,
    ///     #[head(loss = Mse::new())]
    ///     b: Dense,
    /// }
    /// let names = Two::map_outputs(TwoOutputs { a: 1, b: 2 }, |name, v| format!("{name}={v}"));
    /// assert_eq!((names.a.as_str(), names.b.as_str()), ("a=1", "b=2"));
    /// ```
    fn map_outputs<V, U>(
        outputs: Self::Outputs<V>,
        f: impl FnMut(&'static str, V) -> U,
    ) -> Self::Outputs<U>;

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
        let count = weights.names().len();
        if parts.len() != count {
            return Err(crate::Error::LossWeightCount {
                context: "weighted_loss",
                losses: parts.len(),
                names: Self::LOSSES.join(", "),
                weights: count,
            });
        }
        let n = parts.len();
        let Some(first) = parts.first() else {
            return Err(crate::Error::Invalid(
                "the model has no loss to train on: give some #[head] a `loss = ...`".into(),
            ));
        };
        // One recorded op for the whole weighted sum (a weight of 1
        // multiplies nothing: `x * 1 = x` exactly, forward and back).
        // On the stack for up to eight heads and terms.
        let mut small = [T::ONE; 8];
        let heap: Vec<T>;
        if weights.value_at(n - 1).is_none() {
            // A hand-written `LossWeights` whose values are fewer than its names.
            return Err(crate::Error::LossWeightCount {
                context: "weighted_loss",
                losses: n,
                names: Self::LOSSES.join(", "),
                weights: weights.values().len(),
            });
        }
        let value = |i: usize| T::from_f64(weights.value_at(i).unwrap_or(1.0));
        let weights: &[T] = if n <= small.len() {
            for (i, w) in small[..n].iter_mut().enumerate() {
                *w = value(i);
            }
            &small[..n]
        } else {
            heap = (0..n).map(value).collect();
            &heap
        };
        let total = first.tape().weighted_sum(&parts[..n], weights)?;
        Ok(TotalLoss {
            total,
            parts: Self::LOSSES.iter().copied().zip(parts).collect(),
        })
    }
}

/// The weighted total loss of a step and its unweighted parts.
///
/// ```
/// use polyhead::TotalLoss;
/// use polyhead::autograd::Tape;
/// use polyhead::tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// let a = tape.constant(Tensor::scalar(1.0));
/// let total = TotalLoss { total: a, parts: vec![("a", a)] };
/// assert_eq!(total.logs()?.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
