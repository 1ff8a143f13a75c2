//! The [`Module`] trait: a piece of a model with a forward pass over tape
//! values and named parameters.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::Float;

use crate::buffer::Buffer;
use crate::error::Result;

/// A layer or a model: a forward pass recorded on the input's tape, and its
/// parameters under stable dotted names (`body.0.kernel`), which optimizers
/// and checkpoints use.
///
/// The same forward runs for training (a recording tape) and inference
/// ([`polyhead_autograd::Tape::no_record`]); [`Module::set_training`]
/// switches layers such as dropout between their training and evaluation
/// behaviour.
///
/// ```
/// use polyhead_autograd::{Parameter, Tape, Var};
/// use polyhead_layers::{Module, Result};
/// use polyhead_tensor::{Float, Tensor};
///
/// /// y = x * scale, with a learnable scale.
/// struct Scale<T: Float> {
///     scale: Parameter<T>,
/// }
///
/// impl<T: Float> Module<T> for Scale<T> {
///     fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
///         Ok(x.mul(x.tape().param(&self.scale))?)
///     }
///     fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
///         f(format!("{prefix}scale"), &self.scale);
///     }
///     fn visit_parameters_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
///         f(format!("{prefix}scale"), &mut self.scale);
///     }
/// }
///
/// let layer = Scale { scale: Parameter::new(Tensor::<f64>::scalar(2.0)) };
/// let names: Vec<String> = layer.parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, vec!["scale"]);
/// let tape = Tape::new();
/// let y = layer.forward(tape.constant(Tensor::from_vec(vec![1.0, 3.0], &[2])?))?;
/// assert_eq!(y.value().to_vec(), vec![2.0, 6.0]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub trait Module<T: Float> {
    /// The forward pass, recorded on `x`'s tape.
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>>;

    /// Adds this layer's inference computation (as in inference mode:
    /// dropout off, batch normalization on its moving statistics) to
    /// `graph`, reading value `x`, and returns the value it makes; `name`
    /// is the layer's dotted name in the model. A layer that cannot be
    /// exported keeps this default: an error naming it and its type.
    ///
    /// ```
    /// use polyhead_autograd::{Parameter, Var};
    /// use polyhead_layers::{export::Graph, Dense, Module};
    /// use polyhead_tensor::Rng;
    /// let mut graph = Graph::default();
    /// let dense = Dense::<f32>::new(2, 3, &mut Rng::new(0))?;
    /// let y = dense.export(&mut graph, "hidden", "input")?;
    /// assert_eq!(graph.nodes().last().unwrap().outputs, vec![y]);
    ///
    /// // A layer of one's own that does not describe its graph.
    /// struct Identity;
    /// impl Module<f32> for Identity {
    ///     fn forward<'t>(&self, x: Var<'t, f32>) -> polyhead_layers::Result<Var<'t, f32>> { Ok(x) }
    ///     fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<f32>)) {}
    ///     fn visit_parameters_mut<'a>(&'a mut self, _: &str, _: &mut dyn FnMut(String, &'a mut Parameter<f32>)) {}
    /// }
    /// let err = Identity.export(&mut graph, "mine", "input").unwrap_err();
    /// assert_eq!(err.to_string(), "mine (Identity): cannot be exported: polyhead has no export for this layer yet");
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    fn export(&self, graph: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        let _ = (graph, x);
        let full = std::any::type_name::<Self>();
        let short = full
            .split('<')
            .next()
            .unwrap_or(full)
            .rsplit("::")
            .next()
            .unwrap_or(full);
        Err(crate::LayerError::NotExportable {
            layer: format!("{name} ({short})"),
            reason: "polyhead has no export for this layer yet".into(),
        })
    }

    /// Calls `f` with each parameter's full name (`prefix` + its own dotted
    /// name) and the parameter, in a fixed order.
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>));

    /// Like [`Module::visit_parameters`], with mutable access.
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    );

    /// Switches training behaviour (dropout) on or off. Layers without such
    /// behaviour ignore it; containers pass it on.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// Calls `f` with each [`Buffer`] (state that is not trained, such as
    /// batch normalization's moving statistics) and its dotted name, in the
    /// same namespace as the parameters. Checkpoints save and restore
    /// buffers; optimizers never see them. Layers without state keep this
    /// default, which lists none; containers pass `prefix` on as for
    /// parameters.
    ///
    /// ```
    /// use polyhead_layers::{Dense, Module};
    /// let dense = Dense::<f32>::new(2, 3, &mut polyhead_tensor::Rng::new(0))?;
    /// assert!(dense.buffers().is_empty());
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    fn visit_buffers<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Buffer<T>)) {
        let _ = (prefix, f);
    }

    /// Every buffer with its dotted name, in visiting order.
    ///
    /// ```
    /// use polyhead_layers::{Module, Sequential};
    /// assert!(Sequential::<f32>::new().buffers().is_empty());
    /// ```
    fn buffers(&self) -> Vec<(String, &Buffer<T>)> {
        let mut out = Vec::new();
        self.visit_buffers("", &mut |name, b| out.push((name, b)));
        out
    }

    /// Every parameter with its dotted name.
    fn parameters(&self) -> Vec<(String, &Parameter<T>)> {
        let mut out = Vec::new();
        self.visit_parameters("", &mut |name, p| out.push((name, p)));
        out
    }

    /// Every parameter with its dotted name, mutably.
    fn parameters_mut(&mut self) -> Vec<(String, &mut Parameter<T>)> {
        let mut out = Vec::new();
        self.visit_parameters_mut("", &mut |name, p| out.push((name, p)));
        out
    }

    /// The number of trainable scalars.
    fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, p)| p.value().len()).sum()
    }
}

/// `prefix` + `name`, the dotted name of a child item.
pub(crate) fn child(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// An error unless `mask` is `[batch, steps]` for a sequence of shape `s`
/// (`[batch, steps, ...]`), naming `layer`.
pub(crate) fn check_sequence_mask<T: Float>(
    layer: &'static str,
    mask: &polyhead_tensor::Tensor<T>,
    s: &[usize],
) -> Result<()> {
    if mask.shape() != [s[0], s[1]] {
        return Err(crate::LayerError::Shape {
            layer,
            message: format!(
                "the mask must be [batch, steps] = [{}, {}], got shape {:?}",
                s[0],
                s[1],
                mask.shape()
            ),
        });
    }
    Ok(())
}

/// `y` carrying `x`'s mask, for a layer that keeps its input's leading
/// axes (dense, dropout, normalization): how the built-in layers pass a
/// mask on, and how a user's own layer can (see `Var::with_mask`).
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// let x = tape.constant(Tensor::ones(&[2, 3, 4])?).with_mask(Tensor::ones(&[2, 3])?)?;
/// let y = polyhead_layers::pass_mask(x, x.scale(2.0))?;
/// assert_eq!(y.mask().unwrap().shape(), &[2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pass_mask<'t, T: Float>(x: Var<'t, T>, y: Var<'t, T>) -> Result<Var<'t, T>> {
    match x.mask() {
        Some(mask) if y.mask().is_none() && y.shape().starts_with(mask.shape()) => {
            Ok(y.with_mask(mask)?)
        }
        _ => Ok(y),
    }
}

impl<T: Float, M: Module<T> + ?Sized> Module<T> for Box<M> {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        (**self).forward(x)
    }
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        (**self).visit_parameters(prefix, f)
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        (**self).visit_parameters_mut(prefix, f)
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
    fn visit_buffers<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Buffer<T>)) {
        (**self).visit_buffers(prefix, f)
    }
    fn export(&self, graph: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        (**self).export(graph, name, x)
    }
}
