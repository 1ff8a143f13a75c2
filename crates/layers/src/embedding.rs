//! Embedding lookup.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::{Float, Rng};

use crate::error::{LayerError, Result};
use crate::initializer::Initializer;
use crate::module::{Module, child};

/// A table of `vocab` vectors of size `dim` (parameter `embeddings`,
/// uniform in ±0.05 as Keras draws it). Its input holds token ids as
/// whole numbers (any shape); the output adds a last axis of size `dim`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Embedding, Module};
/// use polyhead_tensor::{Rng, Tensor};
/// let emb = Embedding::<f32>::new(100, 8, &mut Rng::new(3))?;
/// let tape = Tape::new();
/// let ids = tape.constant(Tensor::from_vec(vec![4.0, 99.0, 4.0], &[3])?);
/// let v = emb.forward(ids)?;
/// assert_eq!(v.shape(), vec![3, 8]);
/// let err = emb.forward(tape.constant(Tensor::from_vec(vec![100.0], &[1])?)).unwrap_err();
/// assert_eq!(err.to_string(), "embedding: token id 100 at position 0 is not in 0..100");
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Embedding<T: Float = f32> {
    embeddings: Parameter<T>,
    mask_zero: bool,
}

impl<T: Float> Embedding<T> {
    /// A table of `vocab` vectors of size `dim`.
    ///
    /// ```
    /// use polyhead_layers::{Embedding, Module};
    /// let e = Embedding::<f32>::new(1000, 16, &mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(e.parameter_count(), 16_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(vocab: usize, dim: usize, rng: &mut Rng) -> Result<Self> {
        if vocab == 0 || dim == 0 {
            return Err(LayerError::Shape {
                layer: "embedding",
                message: format!("vocab and dim must be positive, got {vocab} and {dim}"),
            });
        }
        // Keras' default initializer is uniform in ±0.05.
        let table = Initializer::Uniform(-0.05, 0.05).init::<T>(&[vocab, dim], vocab, dim, rng)?;
        Ok(Embedding {
            embeddings: Parameter::new(table),
            mask_zero: false,
        })
    }

    /// Keras' `mask_zero`: id 0 is padding, and the output carries a mask
    /// (nonzero where the id is not 0) that the layers after it honour
    /// (see `Var::with_mask`): recurrent layers carry their state over
    /// padded steps, masked pooling and per-position losses skip them.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Embedding, Module};
    /// use polyhead_tensor::{Rng, Tensor};
    /// let emb = Embedding::<f32>::new(10, 4, &mut Rng::new(0))?.mask_zero(true);
    /// let tape = Tape::new();
    /// let v = emb.forward(tape.constant(Tensor::from_vec(vec![3.0, 5.0, 0.0], &[1, 3])?))?;
    /// assert_eq!(v.mask().unwrap().to_vec(), vec![1.0, 1.0, 0.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn mask_zero(mut self, mask_zero: bool) -> Self {
        self.mask_zero = mask_zero;
        self
    }
}

impl<T: Float> Module<T> for Embedding<T> {
    /// The ids (floats in polyhead) cast to int64 and gathered from the
    /// table. With `mask_zero` the output carries the mask `id != 0`
    /// (see [`Graph::set_mask`](crate::export::Graph::set_mask)), which
    /// the layers after it honour as in a forward pass.
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        use crate::export::Attribute;
        let table = g.constant(&format!("{name}.embeddings"), self.embeddings.value());
        // ONNX's TensorProto.INT64 is 7.
        let ids = g.op(
            name,
            "Cast",
            &[x.to_string()],
            vec![("to", Attribute::Int(7))],
        );
        let y = g.op(
            name,
            "Gather",
            &[table, ids],
            vec![("axis", Attribute::Int(0))],
        );
        if self.mask_zero {
            let zero = g.constant(
                &format!("{name}.padding"),
                &polyhead_tensor::Tensor::<f32>::zeros(&[1])?,
            );
            let padded = g.op(name, "Equal", &[x.to_string(), zero], vec![]);
            let mask = g.op(name, "Not", &[padded], vec![]);
            g.set_mask(&y, mask);
        }
        Ok(y)
    }

    fn forward<'t>(&self, ids: Var<'t, T>) -> Result<Var<'t, T>> {
        let vocab = self.embeddings.value().shape()[0];
        let dim = self.embeddings.value().shape()[1];
        let values = ids.value();
        let mut index = Vec::with_capacity(values.len());
        for (pos, v) in values.to_vec().into_iter().enumerate() {
            let f = v.to_f64();
            if !(f >= 0.0 && f.fract() == 0.0 && f < vocab as f64) {
                return Err(LayerError::Shape {
                    layer: "embedding",
                    message: format!("token id {v} at position {pos} is not in 0..{vocab}"),
                });
            }
            index.push(f as usize);
        }
        let mut shape = values.shape().to_vec();
        shape.push(dim);
        let table = ids.tape().param(&self.embeddings);
        let out = table.index_select(0, &index)?.reshape(&shape)?;
        if !self.mask_zero {
            return Ok(out);
        }
        let mask: Vec<T> = index
            .iter()
            .map(|&i| if i == 0 { T::ZERO } else { T::ONE })
            .collect();
        Ok(out.with_mask(polyhead_tensor::Tensor::from_vec(mask, values.shape())?)?)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        f(child(prefix, "embeddings"), &self.embeddings);
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        f(child(prefix, "embeddings"), &mut self.embeddings);
    }
}
