//! The fully connected layer.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::{Float, Rng, Tensor};

use crate::activation::Activation;
use crate::error::{LayerError, Result};
use crate::initializer::Initializer;
use crate::module::{Module, child};

/// A fully connected layer, `activation(x @ kernel + bias)`, with the
/// kernel stored `[in, out]` as Keras stores it (so weights port across);
/// parameters are named `kernel` and `bias`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Activation, Dense, Module};
/// use polyhead_tensor::{Rng, Tensor};
/// let mut rng = Rng::new(42);
/// let layer = Dense::<f32>::builder(4, 3).activation(Activation::Relu).build(&mut rng)?;
/// let tape = Tape::new();
/// let y = layer.forward(tape.constant(Tensor::ones(&[2, 4])?))?;
/// assert_eq!(y.shape(), vec![2, 3]);
/// let names: Vec<String> = layer.parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, vec!["kernel", "bias"]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dense<T: Float = f32> {
    kernel: Parameter<T>,
    bias: Option<Parameter<T>>,
    activation: Activation,
}

/// Options for building a [`Dense`] layer.
///
/// ```
/// use polyhead_layers::{Activation, Dense, Initializer};
/// use polyhead_tensor::Rng;
/// let layer = Dense::<f64>::builder(8, 2)
///     .kernel_initializer(Initializer::HeNormal)
///     .activation(Activation::Gelu)
///     .use_bias(false)
///     .build(&mut Rng::new(1))?;
/// assert!(layer.bias().is_none());
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenseBuilder<T: Float = f32> {
    element: std::marker::PhantomData<fn() -> T>,
    in_features: usize,
    out_features: usize,
    activation: Activation,
    use_bias: bool,
    kernel_initializer: Initializer,
    bias_initializer: Initializer,
}

impl<T: Float> DenseBuilder<T> {
    /// A fused activation (default linear).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::builder(2, 2).activation(Activation::Tanh).build(&mut Rng::new(0))?;
    /// assert_eq!(layer.activation(), Activation::Tanh);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Whether the layer has a bias (default true).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::builder(2, 2).use_bias(false).build(&mut Rng::new(0))?;
    /// assert_eq!(layer.parameters().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }

    /// The kernel's initializer (default Glorot uniform, as in Keras).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::builder(2, 2).kernel_initializer(Initializer::Constant(0.5)).build(&mut Rng::new(0))?;
    /// assert_eq!(layer.kernel().value().to_vec(), vec![0.5; 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }

    /// The bias's initializer (default zeros).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::builder(2, 2).bias_initializer(Initializer::Constant(1.0)).build(&mut Rng::new(0))?;
    /// assert_eq!(layer.bias().unwrap().value().to_vec(), vec![1.0; 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bias_initializer(mut self, init: Initializer) -> Self {
        self.bias_initializer = init;
        self
    }

    /// Draws the parameters from `rng` (kernel first, then bias).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f64>::builder(3, 4).build(&mut Rng::new(5))?;
    /// assert_eq!((layer.in_features(), layer.out_features()), (3, 4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self, rng: &mut Rng) -> Result<Dense<T>> {
        let (i, o) = (self.in_features, self.out_features);
        if i == 0 || o == 0 {
            return Err(LayerError::Shape {
                layer: "dense",
                message: format!("in_features and out_features must be positive, got {i} and {o}"),
            });
        }
        let kernel = self.kernel_initializer.init(&[i, o], i, o, rng)?;
        let bias = if self.use_bias {
            Some(self.bias_initializer.init(&[o], i, o, rng)?)
        } else {
            None
        };
        Ok(Dense {
            kernel: Parameter::new(kernel),
            bias: bias.map(Parameter::new),
            activation: self.activation,
        })
    }
}

impl<T: Float> Dense<T> {
    /// Options for a layer from `in_features` to `out_features`.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::builder(3, 4).activation(Activation::Relu).build(&mut Rng::new(5))?;
    /// assert_eq!(layer.kernel().value().shape(), &[3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(in_features: usize, out_features: usize) -> DenseBuilder<T> {
        DenseBuilder {
            element: std::marker::PhantomData,
            in_features,
            out_features,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        }
    }

    /// A linear layer with Keras' defaults (Glorot-uniform kernel, zero bias).
    ///
    /// ```
    /// let layer = polyhead_layers::Dense::<f32>::new(3, 2, &mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(layer.kernel().value().shape(), &[3, 2]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Result<Self> {
        Self::builder(in_features, out_features).build(rng)
    }

    /// A layer with the given kernel `[in, out]` and optional bias `[out]`.
    ///
    /// ```
    /// use polyhead_layers::{Activation, Dense};
    /// use polyhead_tensor::Tensor;
    /// let k = Tensor::<f64>::ones(&[2, 3])?;
    /// let layer = Dense::from_tensors(k, Some(Tensor::zeros(&[3])?), Activation::Sigmoid)?;
    /// assert!(Dense::from_tensors(Tensor::<f64>::ones(&[2, 3])?, Some(Tensor::zeros(&[2])?), Activation::Linear).is_err());
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn from_tensors(
        kernel: Tensor<T>,
        bias: Option<Tensor<T>>,
        activation: Activation,
    ) -> Result<Self> {
        if kernel.ndim() != 2 {
            return Err(LayerError::Shape {
                layer: "dense",
                message: format!("kernel must be [in, out], got shape {:?}", kernel.shape()),
            });
        }
        if let Some(b) = &bias
            && b.shape() != [kernel.shape()[1]]
        {
            return Err(LayerError::Shape {
                layer: "dense",
                message: format!(
                    "bias has shape {:?}, the kernel {:?} needs [{}]",
                    b.shape(),
                    kernel.shape(),
                    kernel.shape()[1]
                ),
            });
        }
        Ok(Dense {
            kernel: Parameter::new(kernel),
            bias: bias.map(Parameter::new),
            activation,
        })
    }

    /// The kernel, `[in, out]`.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::new(5, 2, &mut Rng::new(0))?;
    /// assert_eq!(layer.kernel().value().shape(), &[5, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kernel(&self) -> &Parameter<T> {
        &self.kernel
    }

    /// The bias, `[out]`, if any.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::new(5, 2, &mut Rng::new(0))?;
    /// assert_eq!(layer.bias().unwrap().value().to_vec(), vec![0.0, 0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bias(&self) -> Option<&Parameter<T>> {
        self.bias.as_ref()
    }

    /// The fused activation.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::new(5, 2, &mut Rng::new(0))?;
    /// assert_eq!(layer.activation(), Activation::Linear);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The number of input features.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::new(5, 2, &mut Rng::new(0))?;
    /// assert_eq!(layer.in_features(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_features(&self) -> usize {
        self.kernel.value().shape()[0]
    }

    /// The number of output features.
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::Rng;
    /// let layer = Dense::<f32>::new(5, 2, &mut Rng::new(0))?;
    /// assert_eq!(layer.out_features(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn out_features(&self) -> usize {
        self.kernel.value().shape()[1]
    }
}

impl<T: Float> Module<T> for Dense<T> {
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        let kernel = g.constant(&format!("{name}.kernel"), self.kernel.value());
        let mut y = g.op(name, "MatMul", &[x.to_string(), kernel], vec![]);
        if let Some(b) = &self.bias {
            let bias = g.constant(&format!("{name}.bias"), b.value());
            y = g.op(name, "Add", &[y, bias], vec![]);
        }
        let y = self.activation.export(g, name, &y);
        g.pass_mask(x, &y);
        Ok(y)
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        // The value's shape by reference: no copy of it per step.
        let value = x.value();
        let shape = value.shape();
        if shape.last() != Some(&self.in_features()) {
            return Err(LayerError::Shape {
                layer: "dense",
                message: format!(
                    "input has {} features (shape {shape:?}), the layer expects {}",
                    shape.last().map_or("no".to_string(), |d| d.to_string()),
                    self.in_features()
                ),
            });
        }
        let tape = x.tape();
        let kernel = tape.param(&self.kernel);
        let y = if shape.len() == 2 || shape.len() == 3 {
            x.matmul(kernel)?
        } else {
            // Fold leading axes into one batch axis and back.
            let rows = shape[..shape.len() - 1].iter().product();
            let mut out_shape = shape.to_vec();
            *out_shape.last_mut().expect("non-empty") = self.out_features();
            x.reshape(&[rows, self.in_features()])?
                .matmul(kernel)?
                .reshape(&out_shape)?
        };
        let y = match &self.bias {
            Some(b) => y.add(tape.param(b))?,
            None => y,
        };
        // Per-position outputs keep a sequence's mask.
        crate::module::pass_mask(x, self.activation.apply(y)?)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        f(child(prefix, "kernel"), &self.kernel);
        if let Some(b) = &self.bias {
            f(child(prefix, "bias"), b);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        f(child(prefix, "kernel"), &mut self.kernel);
        if let Some(b) = &mut self.bias {
            f(child(prefix, "bias"), b);
        }
    }
}
