//! Keras' `MultiHeadAttention`: projections, scaled dot-product attention
//! per head with an optional boolean mask, and the output projection,
//! recorded as tape ops (each op's backward sits beside its forward in the
//! autograd crate).

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::{Float, Rng, Tensor};

use crate::error::{LayerError, Result};
use crate::initializer::Initializer;
use crate::module::{Module, child};

/// The score a masked position gets instead of its own (Keras replaces
/// it, so a query whose keys are all masked attends uniformly).
const MASKED_SCORE: f64 = -1e9;

/// Keras' `MultiHeadAttention` with Keras' weight layout: `query/kernel
/// [Dq, H, K]`, `key/kernel [Dk, H, K]`, `value/kernel [Dv, H, V]`, their
/// biases `[H, K]` / `[H, V]`, `attention_output/kernel [H, V, Dq]` and its
/// bias `[Dq]` (parameters named `query.kernel`, ...). The output has the
/// query's shape `[B, Tq, Dq]`; keys and values may be longer or shorter
/// than the query.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Module, MultiHeadAttention};
/// use polyhead_tensor::{Rng, Tensor};
/// let mha = MultiHeadAttention::<f32>::builder(2, 4, 6).build(&mut Rng::new(0))?;
/// let tape = Tape::new();
/// let query = tape.constant(Tensor::ones(&[3, 5, 6])?);
/// let value = tape.constant(Tensor::ones(&[3, 7, 6])?);
/// let mask = Tensor::ones(&[3, 5, 7])?; // query t may attend to key s
/// assert_eq!(mha.attend(query, value, None, Some(&mask))?.shape(), vec![3, 5, 6]);
/// assert_eq!(mha.forward(query)?.shape(), vec![3, 5, 6]); // self-attention
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MultiHeadAttention<T: Float = f32> {
    heads: usize,
    key_dim: usize,
    value_dim: usize,
    scale: f64,
    /// query, key, value, attention_output: (kernel, bias).
    projections: [(Parameter<T>, Option<Parameter<T>>); 4],
}

/// Builds a [`MultiHeadAttention`] (see [`MultiHeadAttention::builder`]).
#[derive(Debug, Clone, Copy)]
pub struct MultiHeadAttentionBuilder<T: Float = f32> {
    heads: usize,
    key_dim: usize,
    value_dim: Option<usize>,
    query_features: usize,
    key_features: Option<usize>,
    value_features: Option<usize>,
    use_bias: bool,
    scale: Option<f64>,
    element: std::marker::PhantomData<T>,
}

impl<T: Float> MultiHeadAttention<T> {
    /// `heads` heads of `key_dim` over queries of `query_features` (keys
    /// and values of the same width unless set; `value_dim` = `key_dim`).
    ///
    /// ```
    /// let b = polyhead_layers::MultiHeadAttention::<f32>::builder(2, 4, 6).value_dim(3);
    /// # let _ = b;
    /// ```
    pub fn builder(
        heads: usize,
        key_dim: usize,
        query_features: usize,
    ) -> MultiHeadAttentionBuilder<T> {
        MultiHeadAttentionBuilder {
            heads,
            key_dim,
            value_dim: None,
            query_features,
            key_features: None,
            value_features: None,
            use_bias: true,
            scale: None,
            element: std::marker::PhantomData,
        }
    }

    /// Attention of `query` `[B, Tq, Dq]` over `value` `[B, Tv, Dv]`, with
    /// keys from `key` `[B, Tv, Dk]` (default: `value`) and an optional
    /// `mask` `[B, Tq, Tv]` (nonzero: query t may attend to key s). A masked
    /// score is replaced by a large negative number, as Keras does, so a
    /// query row with every key masked attends uniformly.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::MultiHeadAttention;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mha = MultiHeadAttention::<f64>::builder(1, 2, 3).build(&mut Rng::new(0))?;
    /// let tape = Tape::new();
    /// let q = tape.constant(Tensor::rand_normal(&[1, 1, 3], 0.0, 1.0, 1)?);
    /// let v = tape.constant(Tensor::rand_normal(&[1, 2, 3], 0.0, 1.0, 2)?);
    /// // Attending only to key 0 is attending to a sequence of key 0 alone.
    /// let only_first = Tensor::from_vec(vec![1.0, 0.0], &[1, 1, 2])?;
    /// let a = mha.attend(q, v, None, Some(&only_first))?;
    /// let b = mha.attend(q, tape.constant(v.value().slice_axis(1, 0, 1)?.to_contiguous()), None, None)?;
    /// let diff: f64 = a.value().to_vec().iter().zip(b.value().to_vec()).map(|(x, y)| (x - y).abs()).sum();
    /// assert!(diff < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attend<'t>(
        &self,
        query: Var<'t, T>,
        value: Var<'t, T>,
        key: Option<Var<'t, T>>,
        mask: Option<&Tensor<T>>,
    ) -> Result<Var<'t, T>> {
        let layer = "multi_head_attention";
        let key = key.unwrap_or(value);
        let (q_shape, k_shape, v_shape) = (query.shape(), key.shape(), value.shape());
        let features = |i: usize| self.projections[i].0.value().shape()[0];
        for (what, shape, width) in [
            ("query", &q_shape, features(0)),
            ("key", &k_shape, features(1)),
            ("value", &v_shape, features(2)),
        ] {
            if shape.len() != 3 || shape[2] != width {
                return Err(LayerError::Shape {
                    layer,
                    message: format!("{what} must be [batch, steps, {width}], got shape {shape:?}"),
                });
            }
        }
        let (b, tq, tv) = (q_shape[0], q_shape[1], v_shape[1]);
        if k_shape[0] != b || v_shape[0] != b || k_shape[1] != tv {
            return Err(LayerError::Shape {
                layer,
                message: format!(
                    "query {q_shape:?}, key {k_shape:?} and value {v_shape:?} must share the batch, and key and value their steps"
                ),
            });
        }
        if let Some(m) = mask
            && m.shape() != [b, tq, tv]
        {
            return Err(LayerError::Shape {
                layer,
                message: format!(
                    "the attention mask must be [batch, query steps, key steps] = [{b}, {tq}, {tv}], got shape {:?}",
                    m.shape()
                ),
            });
        }
        let (h, kd, vd) = (self.heads, self.key_dim, self.value_dim);
        let tape = query.tape();
        // x [B, T, D] -> per head [B * H, T, width].
        let project = |i: usize, x: Var<'t, T>, width: usize| -> Result<Var<'t, T>> {
            let (kernel, bias) = &self.projections[i];
            let s = x.shape();
            let w = tape.param(kernel).reshape(&[s[2], h * width])?;
            let mut y = x.matmul(w)?;
            if let Some(bias) = bias {
                y = y.add(tape.param(bias).reshape(&[h * width])?)?;
            }
            Ok(y.reshape(&[s[0], s[1], h, width])?
                .transpose(1, 2)?
                .reshape(&[s[0] * h, s[1], width])?)
        };
        let q = project(0, query, kd)?;
        let k = project(1, key, kd)?;
        let v = project(2, value, vd)?;
        let mut scores = q.matmul(k.transpose(1, 2)?)?.scale(T::from_f64(self.scale));
        if let Some(m) = mask {
            // Per head: [B, Tq, Tv] -> [B * H, Tq, Tv]; kept scores times 1,
            // masked ones replaced.
            let mut keep = Vec::with_capacity(b * h * tq * tv);
            let mv = m.to_vec();
            for bi in 0..b {
                for _ in 0..h {
                    keep.extend(
                        mv[bi * tq * tv..(bi + 1) * tq * tv]
                            .iter()
                            .map(|&x| if x != T::ZERO { T::ONE } else { T::ZERO }),
                    );
                }
            }
            let fill: Vec<T> = keep
                .iter()
                .map(|&k| {
                    if k == T::ZERO {
                        T::from_f64(MASKED_SCORE)
                    } else {
                        T::ZERO
                    }
                })
                .collect();
            let shape = [b * h, tq, tv];
            scores = scores
                .mul(tape.constant(Tensor::from_vec(keep, &shape)?))?
                .add(tape.constant(Tensor::from_vec(fill, &shape)?))?;
        }
        let weights = scores.softmax(-1)?;
        let heads = weights
            .matmul(v)?
            .reshape(&[b, h, tq, vd])?
            .transpose(1, 2)?
            .reshape(&[b, tq, h * vd])?;
        let (kernel, bias) = &self.projections[3];
        let dq = kernel.value().shape()[2];
        let mut y = heads.matmul(tape.param(kernel).reshape(&[h * vd, dq])?)?;
        if let Some(bias) = bias {
            y = y.add(tape.param(bias))?;
        }
        Ok(y)
    }
}

impl<T: Float> MultiHeadAttentionBuilder<T> {
    /// The per-head width of the values (default: `key_dim`).
    ///
    /// ```
    /// let b = polyhead_layers::MultiHeadAttention::<f32>::builder(2, 4, 6).value_dim(3);
    /// # let _ = b;
    /// ```
    pub fn value_dim(mut self, value_dim: usize) -> Self {
        self.value_dim = Some(value_dim);
        self
    }

    /// The keys' feature width (default: the query's).
    ///
    /// ```
    /// let b = polyhead_layers::MultiHeadAttention::<f32>::builder(2, 4, 6).key_features(5);
    /// # let _ = b;
    /// ```
    pub fn key_features(mut self, features: usize) -> Self {
        self.key_features = Some(features);
        self
    }

    /// The values' feature width (default: the keys').
    ///
    /// ```
    /// let b = polyhead_layers::MultiHeadAttention::<f32>::builder(2, 4, 6).value_features(5);
    /// # let _ = b;
    /// ```
    pub fn value_features(mut self, features: usize) -> Self {
        self.value_features = Some(features);
        self
    }

    /// Without biases (Keras' `use_bias=False`).
    ///
    /// ```
    /// let b = polyhead_layers::MultiHeadAttention::<f32>::builder(2, 4, 6).use_bias(false);
    /// # let _ = b;
    /// ```
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }

    /// The factor scores are multiplied by (default `1 / sqrt(key_dim)`).
    ///
    /// ```
    /// let b = polyhead_layers::MultiHeadAttention::<f32>::builder(2, 4, 6).score_scale(0.5);
    /// # let _ = b;
    /// ```
    pub fn score_scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }

    /// The layer, kernels Glorot-uniform and biases zero (Keras' defaults).
    ///
    /// ```
    /// let err = polyhead_layers::MultiHeadAttention::<f32>::builder(0, 4, 6).build(&mut polyhead_tensor::Rng::new(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "multi_head_attention: heads, key_dim, value_dim and feature widths must be at least 1, got heads 0, key_dim 4, value_dim 4, features [6, 6, 6]");
    /// ```
    pub fn build(self, rng: &mut Rng) -> Result<MultiHeadAttention<T>> {
        let (h, k) = (self.heads, self.key_dim);
        let v = self.value_dim.unwrap_or(k);
        let dq = self.query_features;
        let dk = self.key_features.unwrap_or(dq);
        let dv = self.value_features.unwrap_or(dk);
        if [h, k, v, dq, dk, dv].contains(&0) {
            return Err(LayerError::Invalid {
                what: "multi_head_attention",
                message: format!(
                    "heads, key_dim, value_dim and feature widths must be at least 1, got heads {h}, key_dim {k}, value_dim {v}, features [{dq}, {dk}, {dv}]"
                ),
            });
        }
        if let Some(s) = self.scale
            && !s.is_finite()
        {
            return Err(LayerError::Invalid {
                what: "multi_head_attention",
                message: format!("the score scale must be finite, got {s}"),
            });
        }
        let mut projection = |shape: [usize; 3],
                              fan_in: usize,
                              fan_out: usize,
                              bias: &[usize]|
         -> Result<(Parameter<T>, Option<Parameter<T>>)> {
            let kernel = Initializer::GlorotUniform.init::<T>(&shape, fan_in, fan_out, rng)?;
            let bias = if self.use_bias {
                Some(Parameter::new(Tensor::zeros(bias)?))
            } else {
                None
            };
            Ok((Parameter::new(kernel), bias))
        };
        Ok(MultiHeadAttention {
            heads: h,
            key_dim: k,
            value_dim: v,
            scale: self.scale.unwrap_or(1.0 / (k as f64).sqrt()),
            projections: [
                projection([dq, h, k], dq, h * k, &[h, k])?,
                projection([dk, h, k], dk, h * k, &[h, k])?,
                projection([dv, h, v], dv, h * v, &[h, v])?,
                projection([h, v, dq], h * v, dq, &[dq])?,
            ],
        })
    }
}

const NAMES: [&str; 4] = ["query", "key", "value", "attention_output"];

impl<T: Float> Module<T> for MultiHeadAttention<T> {
    /// Self-attention: `attend(x, x, None, None)`.
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        self.attend(x, x, None, None)
    }

    /// Self-attention as MatMul, Softmax and reshapes: each projection
    /// `[B, T, H, D]`, scores `q k^T * scale` per head, softmax over keys,
    /// the heads' outputs joined and projected back.
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        use crate::export::Attribute;
        let h = self.heads as i64;
        // Projection `i` of `x` as [B, T, H, D].
        let project = |g: &mut crate::export::Graph, i: usize| -> Result<String> {
            let (kernel, bias) = &self.projections[i];
            let k = kernel.value();
            let s = k.shape().to_vec();
            let flat = g.constant(
                &format!("{name}.{}.kernel", NAMES[i]),
                &k.reshape(&[s[0], s[1] * s[2]])?,
            );
            let mut y = g.op(name, "MatMul", &[x.to_string(), flat], vec![]);
            if let Some(b) = bias {
                let b = g.constant(
                    &format!("{name}.{}.bias", NAMES[i]),
                    &b.value().reshape(&[s[1] * s[2]])?,
                );
                y = g.op(name, "Add", &[y, b], vec![]);
            }
            let shape = g.int_constant(&format!("{name}.heads"), &[0, 0, h, s[2] as i64]);
            Ok(g.op(name, "Reshape", &[y, shape], vec![]))
        };
        let q = project(g, 0)?;
        let k = project(g, 1)?;
        let v = project(g, 2)?;
        let q = g.transpose(name, &q, &[0, 2, 1, 3]);
        let k = g.transpose(name, &k, &[0, 2, 3, 1]);
        let v = g.transpose(name, &v, &[0, 2, 1, 3]);
        let scores = g.op(name, "MatMul", &[q, k], vec![]);
        let scale = g.constant(&format!("{name}.scale"), &Tensor::<f64>::scalar(self.scale));
        let scores = g.op(name, "Mul", &[scores, scale], vec![]);
        let weights = g.op(
            name,
            "Softmax",
            &[scores],
            vec![("axis", Attribute::Int(-1))],
        );
        let context = g.op(name, "MatMul", &[weights, v], vec![]);
        let context = g.transpose(name, &context, &[0, 2, 1, 3]);
        let joined = g.int_constant(&format!("{name}.joined"), &[0, 0, -1]);
        let context = g.op(name, "Reshape", &[context, joined], vec![]);
        let (kernel, bias) = &self.projections[3];
        let k = kernel.value();
        let s = k.shape().to_vec();
        let flat = g.constant(
            &format!("{name}.attention_output.kernel"),
            &k.reshape(&[s[0] * s[1], s[2]])?,
        );
        let mut y = g.op(name, "MatMul", &[context, flat], vec![]);
        if let Some(b) = bias {
            let b = g.constant(&format!("{name}.attention_output.bias"), b.value());
            y = g.op(name, "Add", &[y, b], vec![]);
        }
        Ok(y)
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        for (name, (kernel, bias)) in NAMES.iter().zip(&self.projections) {
            f(child(prefix, &format!("{name}.kernel")), kernel);
            if let Some(b) = bias {
                f(child(prefix, &format!("{name}.bias")), b);
            }
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        for (name, (kernel, bias)) in NAMES.iter().zip(&mut self.projections) {
            f(child(prefix, &format!("{name}.kernel")), kernel);
            if let Some(b) = bias {
                f(child(prefix, &format!("{name}.bias")), b);
            }
        }
    }
}
