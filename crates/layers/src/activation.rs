//! Activations: the [`Activation`] a Dense layer can fuse, and the same
//! functions as parameter-free modules.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::Float;

use crate::error::Result;
use crate::module::Module;

/// An elementwise (or softmax) activation.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::Activation;
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.constant(Tensor::from_vec(vec![-1.0, 2.0], &[2])?);
/// assert_eq!(Activation::Relu.apply(x)?.value().to_vec(), vec![0.0, 2.0]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// The identity (Keras' `"linear"`).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `slope * x`.
    LeakyRelu(f64),
    /// Exact GELU, `x * Phi(x)`.
    Gelu,
    /// The logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Softmax over the last axis.
    Softmax,
}

impl Activation {
    /// Applies the activation on the tape.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::Activation;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.constant(Tensor::from_vec(vec![-1.0, 0.0], &[2])?);
    /// assert_eq!(Activation::LeakyRelu(0.5).apply(x)?.value().to_vec(), vec![-0.5, 0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<'t, T: Float>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        Ok(match *self {
            Activation::Linear => x,
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(slope) => x.leaky_relu(T::from_f64(slope)),
            Activation::Gelu => x.gelu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Softmax => x.softmax(-1)?,
        })
    }

    /// Adds the activation to an export graph (`layer` names the layer);
    /// returns the activated value (`x` itself for `Linear`).
    ///
    /// ```
    /// use polyhead_layers::{export::Graph, Activation};
    /// let mut g = Graph::default();
    /// assert_eq!(Activation::Linear.export(&mut g, "dense", "x"), "x");
    /// Activation::Gelu.export(&mut g, "dense", "x");
    /// let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.as_str()).collect();
    /// assert_eq!(ops, ["Div", "Erf", "Add", "Mul", "Mul"]);
    /// ```
    pub fn export(&self, g: &mut crate::export::Graph, layer: &str, x: &str) -> String {
        use crate::export::Attribute;
        let x = x.to_string();
        match *self {
            Activation::Linear => x,
            Activation::Relu => g.op(layer, "Relu", &[x], vec![]),
            Activation::LeakyRelu(slope) => g.op(
                layer,
                "LeakyRelu",
                &[x],
                vec![("alpha", Attribute::Float(slope as f32))],
            ),
            Activation::Sigmoid => g.op(layer, "Sigmoid", &[x], vec![]),
            Activation::Tanh => g.op(layer, "Tanh", &[x], vec![]),
            Activation::Softmax => g.op(layer, "Softmax", &[x], vec![("axis", Attribute::Int(-1))]),
            Activation::Gelu => {
                // x * Phi(x) = x * 0.5 * (1 + erf(x / sqrt 2)).
                let root2 = g.constant(
                    &format!("{layer}.sqrt2"),
                    &polyhead_tensor::Tensor::<f64>::scalar(std::f64::consts::SQRT_2),
                );
                let one = g.constant(
                    &format!("{layer}.one"),
                    &polyhead_tensor::Tensor::<f64>::scalar(1.0),
                );
                let half = g.constant(
                    &format!("{layer}.half"),
                    &polyhead_tensor::Tensor::<f64>::scalar(0.5),
                );
                let scaled = g.op(layer, "Div", &[x.clone(), root2], vec![]);
                let erf = g.op(layer, "Erf", &[scaled], vec![]);
                let phi2 = g.op(layer, "Add", &[erf, one], vec![]);
                let y = g.op(layer, "Mul", &[x, phi2], vec![]);
                g.op(layer, "Mul", &[y, half], vec![])
            }
        }
    }
}

macro_rules! activation_module {
    ($(#[$doc:meta])* $name:ident, $act:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Default)]
        pub struct $name;

        impl<T: Float> Module<T> for $name {
            fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
                $act.apply(x)
            }
            fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
                Ok($act.export(g, name, x))
            }
            fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<T>)) {}
            fn visit_parameters_mut<'a>(&'a mut self, _: &str, _: &mut dyn FnMut(String, &'a mut Parameter<T>)) {}
        }
    };
}

activation_module!(
    /// `max(x, 0)` as a module.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Module, ReLU};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f32>::new();
    /// let y = ReLU.forward(tape.constant(Tensor::from_vec(vec![-3.0, 3.0], &[2])?))?;
    /// assert_eq!(y.value().to_vec(), vec![0.0, 3.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    ReLU,
    Activation::Relu
);
activation_module!(
    /// Exact GELU as a module.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{GELU, Module};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let y = GELU.forward(tape.constant(Tensor::scalar(0.0)))?;
    /// assert_eq!(y.value().item()?, 0.0);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    GELU,
    Activation::Gelu
);
activation_module!(
    /// The logistic sigmoid as a module.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Module, Sigmoid};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(Sigmoid.forward(tape.constant(Tensor::scalar(0.0)))?.value().item()?, 0.5);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    Sigmoid,
    Activation::Sigmoid
);
activation_module!(
    /// Hyperbolic tangent as a module.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Module, Tanh};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(Tanh.forward(tape.constant(Tensor::scalar(0.0)))?.value().item()?, 0.0);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    Tanh,
    Activation::Tanh
);
activation_module!(
    /// Softmax over the last axis as a module.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Module, Softmax};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let y = Softmax.forward(tape.constant(Tensor::zeros(&[1, 4])?))?;
    /// assert_eq!(y.value().to_vec(), vec![0.25; 4]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    Softmax,
    Activation::Softmax
);

/// Leaky ReLU as a module: `x` if positive, else `slope * x` (Keras'
/// default slope 0.3, PyTorch's 0.01).
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{LeakyReLU, Module};
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let y = LeakyReLU(0.1).forward(tape.constant(Tensor::from_vec(vec![-2.0, 2.0], &[2])?))?;
/// assert_eq!(y.value().to_vec(), vec![-0.2, 2.0]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyReLU(pub f64);

impl<T: Float> Module<T> for LeakyReLU {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        Activation::LeakyRelu(self.0).apply(x)
    }
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        Ok(Activation::LeakyRelu(self.0).export(g, name, x))
    }
    fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<T>)) {}
    fn visit_parameters_mut<'a>(
        &'a mut self,
        _: &str,
        _: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
    }
}
