//! Layer normalisation.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::{Float, Tensor};

use crate::error::{LayerError, Result};
use crate::module::{Module, child};

/// Layer normalisation over the last axis:
/// `(x - mean) / sqrt(var + eps) * gamma + beta`, with parameters `gamma`
/// (ones) and `beta` (zeros) as Keras names them. `eps` defaults to Keras'
/// 1e-3 (PyTorch uses 1e-5; set it with [`LayerNorm::eps`]).
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{LayerNorm, Module};
/// use polyhead_tensor::Tensor;
/// let norm = LayerNorm::<f64>::new(4)?.eps(0.0);
/// let tape = Tape::new();
/// let y = norm.forward(tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 4])?))?;
/// let v = y.value().to_vec();
/// assert!(v.iter().sum::<f64>().abs() < 1e-12);
/// assert!((v.iter().map(|x| x * x).sum::<f64>() / 4.0 - 1.0).abs() < 1e-12);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LayerNorm<T: Float = f32> {
    dim: usize,
    gamma: Option<Parameter<T>>,
    beta: Option<Parameter<T>>,
    eps: f64,
}

impl<T: Float> LayerNorm<T> {
    /// Normalisation of features of size `dim`.
    ///
    /// ```
    /// use polyhead_layers::{LayerNorm, Module};
    /// let n = LayerNorm::<f32>::new(8)?;
    /// let names: Vec<String> = n.parameters().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, vec!["gamma", "beta"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(LayerError::Shape {
                layer: "layer_norm",
                message: "dim must be positive".to_string(),
            });
        }
        Ok(LayerNorm {
            dim,
            gamma: Some(Parameter::new(Tensor::ones(&[dim])?)),
            beta: Some(Parameter::new(Tensor::zeros(&[dim])?)),
            eps: 1e-3,
        })
    }

    /// Sets the variance epsilon.
    ///
    /// ```
    /// let torch_like = polyhead_layers::LayerNorm::<f32>::new(8)?.eps(1e-5);
    /// # let _ = torch_like;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// With or without `beta` (Keras' `center`; PyTorch's `bias`).
    ///
    /// ```
    /// use polyhead_layers::{LayerNorm, Module};
    /// let n = LayerNorm::<f32>::new(4)?.center(false);
    /// let names: Vec<String> = n.parameters().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, vec!["gamma"]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn center(mut self, center: bool) -> Self {
        self.beta = match (center, self.beta) {
            (false, _) => None,
            (true, Some(beta)) => Some(beta),
            (true, None) => Tensor::zeros(&[self.dim]).ok().map(Parameter::new),
        };
        self
    }

    /// With or without `gamma` (Keras' `scale`; PyTorch's
    /// `elementwise_affine` covers both).
    ///
    /// ```
    /// use polyhead_layers::{LayerNorm, Module};
    /// let n = LayerNorm::<f32>::new(4)?.scale(false);
    /// let names: Vec<String> = n.parameters().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, vec!["beta"]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn scale(mut self, scale: bool) -> Self {
        self.gamma = match (scale, self.gamma) {
            (false, _) => None,
            (true, Some(gamma)) => Some(gamma),
            (true, None) => Tensor::ones(&[self.dim]).ok().map(Parameter::new),
        };
        self
    }
}

impl<T: Float> Module<T> for LayerNorm<T> {
    /// The same steps as the forward: mean, centred, variance, divided by
    /// its square root plus epsilon, scaled and shifted.
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        use crate::export::Attribute;
        let last = || {
            vec![
                ("axes", Attribute::Ints(vec![-1])),
                ("keepdims", Attribute::Int(1)),
            ]
        };
        let mean = g.op(name, "ReduceMean", &[x.to_string()], last());
        let centered = g.op(name, "Sub", &[x.to_string(), mean], vec![]);
        let squared = g.op(name, "Mul", &[centered.clone(), centered.clone()], vec![]);
        let var = g.op(name, "ReduceMean", &[squared], last());
        let eps = g.constant(&format!("{name}.epsilon"), &Tensor::<f64>::scalar(self.eps));
        let var_eps = g.op(name, "Add", &[var, eps], vec![]);
        let std = g.op(name, "Sqrt", &[var_eps], vec![]);
        let y = g.op(name, "Div", &[centered, std], vec![]);
        let y = crate::export::scale_and_shift(g, name, y, self.gamma.as_ref(), self.beta.as_ref());
        g.pass_mask(x, &y);
        Ok(y)
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let dim = self.dim;
        let shape = x.shape();
        if shape.last() != Some(&dim) {
            return Err(LayerError::Shape {
                layer: "layer_norm",
                message: format!("input shape {shape:?} does not end in {dim} features"),
            });
        }
        let tape = x.tape();
        let mean = x.mean_axis(-1, true)?;
        let centered = x.sub(mean)?;
        let var = centered.mul(centered)?.mean_axis(-1, true)?;
        let normed = centered.div(var.add_scalar(T::from_f64(self.eps)).sqrt())?;
        let scaled = match &self.gamma {
            Some(gamma) => normed.mul(tape.param(gamma))?,
            None => normed,
        };
        let y = match &self.beta {
            Some(beta) => scaled.add(tape.param(beta))?,
            None => scaled,
        };
        crate::module::pass_mask(x, y)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        if let Some(gamma) = &self.gamma {
            f(child(prefix, "gamma"), gamma);
        }
        if let Some(beta) = &self.beta {
            f(child(prefix, "beta"), beta);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        if let Some(gamma) = &mut self.gamma {
            f(child(prefix, "gamma"), gamma);
        }
        if let Some(beta) = &mut self.beta {
            f(child(prefix, "beta"), beta);
        }
    }
}
