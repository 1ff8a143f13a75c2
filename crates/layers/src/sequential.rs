//! A stack of modules applied in order.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::Float;

use crate::buffer::Buffer;
use crate::error::Result;
use crate::module::Module;

/// Modules applied one after another; the parameters of layer `i` are
/// named `i.<name>` (`0.kernel`, `2.bias`).
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Dense, Module, ReLU, Sequential};
/// use polyhead_tensor::{Rng, Tensor};
/// let mut rng = Rng::new(0);
/// let body = Sequential::<f32>::new()
///     .push(Dense::new(784, 64, &mut rng)?)
///     .push(ReLU)
///     .push(Dense::new(64, 32, &mut rng)?);
/// let names: Vec<String> = body.parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, vec!["0.kernel", "0.bias", "2.kernel", "2.bias"]);
/// let tape = Tape::new();
/// assert_eq!(body.forward(tape.constant(Tensor::zeros(&[5, 784])?))?.shape(), vec![5, 32]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Default)]
pub struct Sequential<T: Float = f32> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl<T: Float> Sequential<T> {
    /// An empty stack (the identity).
    ///
    /// ```
    /// use polyhead_layers::Module;
    /// let s = polyhead_layers::Sequential::<f32>::new();
    /// assert!(s.is_empty() && s.parameters().is_empty());
    /// ```
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer.
    ///
    /// ```
    /// use polyhead_layers::{Flatten, ReLU, Sequential};
    /// let s = Sequential::<f32>::new().push(Flatten).push(ReLU);
    /// assert_eq!(s.len(), 2);
    /// ```
    pub fn push(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// The number of layers.
    ///
    /// ```
    /// let s = polyhead_layers::Sequential::<f32>::new().push(polyhead_layers::ReLU);
    /// assert_eq!(s.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// `true` if there are no layers.
    ///
    /// ```
    /// assert!(polyhead_layers::Sequential::<f64>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        self.layers.iter().try_fold(x, |x, layer| layer.forward(x))
    }

    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        let mut value = x.to_string();
        for (i, layer) in self.layers.iter().enumerate() {
            let child = if name.is_empty() {
                i.to_string()
            } else {
                format!("{name}.{i}")
            };
            value = layer.export(g, &child, &value)?;
        }
        Ok(value)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.visit_parameters(&format!("{prefix}{i}."), f);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_parameters_mut(&format!("{prefix}{i}."), f);
        }
    }

    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn visit_buffers<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Buffer<T>)) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.visit_buffers(&format!("{prefix}{i}."), f);
        }
    }
}
