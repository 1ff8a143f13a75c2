//! Batch normalization over the last axis (Keras' `BatchNormalization`,
//! and PyTorch's conventions for the moving statistics on request).
//!
//! Training mode normalizes with the batch's mean and biased variance over
//! every axis but the last (the gradient flows through both) and updates
//! the moving statistics, which are [`Buffer`]s: saved by checkpoints,
//! never trained. Inference mode normalizes with the moving statistics and
//! changes nothing.

use polyhead_autograd::{BackwardContext, Op, Parameter, Var};
use polyhead_tensor::{Float, Tensor};

use crate::buffer::Buffer;
use crate::error::{LayerError, Result};
use crate::module::{Module, child};

/// How the moving statistics follow the batches.
///
/// ```
/// use polyhead_layers::MovingStatistics;
/// assert_eq!(MovingStatistics::keras(), MovingStatistics { keep: 0.99, unbiased_variance: false });
/// assert_eq!(MovingStatistics::pytorch(), MovingStatistics { keep: 0.9, unbiased_variance: true });
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MovingStatistics {
    /// The weight of the old value: `moving = moving * keep + batch * (1 -
    /// keep)` (Keras' `momentum`; PyTorch's `momentum` is `1 - keep`).
    pub keep: f64,
    /// Whether the moving variance takes the batch variance times `N / (N -
    /// 1)` (PyTorch's `running_var`) instead of the biased one (Keras).
    pub unbiased_variance: bool,
}

impl MovingStatistics {
    /// Keras: momentum 0.99 on the old value, biased variance.
    ///
    /// ```
    /// assert_eq!(polyhead_layers::MovingStatistics::keras().keep, 0.99);
    /// ```
    pub fn keras() -> Self {
        MovingStatistics {
            keep: 0.99,
            unbiased_variance: false,
        }
    }

    /// PyTorch: momentum 0.1 on the new value, unbiased variance.
    ///
    /// ```
    /// assert!(polyhead_layers::MovingStatistics::pytorch().unbiased_variance);
    /// ```
    pub fn pytorch() -> Self {
        MovingStatistics {
            keep: 0.9,
            unbiased_variance: true,
        }
    }
}

/// The recorded normalization `xhat = (x - mean) * inv_std` with the
/// batch's statistics, per channel (the last axis); backward goes through
/// the mean and the variance.
struct Normalize<T: Float> {
    mean: Vec<T>,
    inv_std: Vec<T>,
}

impl<T: Float> Op<T> for Normalize<T> {
    fn name(&self) -> &'static str {
        "batch_normalization"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> polyhead_autograd::Result<Tensor<T>> {
        let x = inputs[0].to_contiguous();
        let c = self.mean.len();
        let y: Vec<T> = x
            .as_slice()
            .expect("contiguous")
            .chunks_exact(c)
            .flat_map(|row| {
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.inv_std)
                    .map(|((&v, &m), &s)| (v - m) * s)
            })
            .collect();
        Ok(Tensor::from_vec(y, inputs[0].shape())?)
    }

    /// With `g` the output gradient and `N` the values per channel:
    /// `dx = inv_std / N * (N g - sum(g) - xhat * sum(g xhat))`.
    fn backward(
        &self,
        ctx: &BackwardContext<'_, T>,
    ) -> polyhead_autograd::Result<Vec<Option<Tensor<T>>>> {
        let dx = ctx.grad_for(0, || {
            let c = self.mean.len();
            let xhat = ctx.output.to_contiguous();
            let g = ctx.grad_output.to_contiguous();
            let (xhat, g) = (
                xhat.as_slice().expect("contiguous"),
                g.as_slice().expect("contiguous"),
            );
            let n = xhat.len() / c;
            let (mut sum_g, mut sum_gx) = (vec![T::ZERO; c], vec![T::ZERO; c]);
            for (xr, gr) in xhat.chunks_exact(c).zip(g.chunks_exact(c)) {
                for k in 0..c {
                    sum_g[k] += gr[k];
                    sum_gx[k] += gr[k] * xr[k];
                }
            }
            let nt = T::from_f64(n as f64);
            let dx: Vec<T> = xhat
                .chunks_exact(c)
                .zip(g.chunks_exact(c))
                .flat_map(|(xr, gr)| {
                    (0..c)
                        .map(|k| self.inv_std[k] / nt * (nt * gr[k] - sum_g[k] - xr[k] * sum_gx[k]))
                        .collect::<Vec<_>>()
                })
                .collect();
            Ok(Tensor::from_vec(dx, ctx.inputs[0].shape())?)
        })?;
        Ok(vec![dx])
    }
}

/// Keras' `BatchNormalization(axis=-1)`: `gamma`, `beta` (each optional),
/// `moving_mean` and `moving_variance` (buffers), all `[C]`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{BatchNormalization, Module};
/// use polyhead_tensor::Tensor;
/// let mut bn = BatchNormalization::<f64>::new(2)?;
/// let tape = Tape::new();
/// let x = Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?;
/// let y = bn.forward(tape.constant(x.clone()))?; // training: batch statistics
/// let expected = 1.0 / (1.0_f64 + 1e-3).sqrt();
/// assert!((y.value().to_vec()[0] + expected).abs() < 1e-12);
/// // The moving statistics moved 1% of the way to the batch's.
/// assert!((bn.moving_mean().value().to_vec()[0] - 0.02).abs() < 1e-12);
/// bn.set_training(false); // inference: the moving statistics, nothing changes
/// bn.forward(tape.constant(x))?;
/// assert!((bn.moving_mean().value().to_vec()[0] - 0.02).abs() < 1e-12);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchNormalization<T: Float = f32> {
    gamma: Option<Parameter<T>>,
    beta: Option<Parameter<T>>,
    moving_mean: Buffer<T>,
    moving_variance: Buffer<T>,
    epsilon: f64,
    moving: MovingStatistics,
    training: bool,
}

impl<T: Float> BatchNormalization<T> {
    /// Over `channels` features, with Keras' defaults: gamma 1, beta 0,
    /// moving mean 0 and variance 1, epsilon 1e-3, momentum 0.99; in
    /// training mode.
    ///
    /// ```
    /// let bn = polyhead_layers::BatchNormalization::<f32>::new(16)?;
    /// assert_eq!(bn.moving_variance().value().to_vec(), vec![1.0; 16]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn new(channels: usize) -> Result<Self> {
        if channels == 0 {
            return Err(LayerError::Invalid {
                what: "batch_normalization",
                message: "needs at least one channel".into(),
            });
        }
        Ok(BatchNormalization {
            gamma: Some(Parameter::new(Tensor::ones(&[channels])?)),
            beta: Some(Parameter::new(Tensor::zeros(&[channels])?)),
            moving_mean: Buffer::new(Tensor::zeros(&[channels])?),
            moving_variance: Buffer::new(Tensor::ones(&[channels])?),
            epsilon: 1e-3,
            moving: MovingStatistics::keras(),
            training: true,
        })
    }

    /// PyTorch's `BatchNorm` defaults instead: epsilon 1e-5, momentum 0.1
    /// on the new value, unbiased moving variance.
    ///
    /// ```
    /// let bn = polyhead_layers::BatchNormalization::<f32>::new(3)?.pytorch();
    /// # let _ = bn;
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn pytorch(self) -> Self {
        self.epsilon(1e-5)
            .moving_statistics(MovingStatistics::pytorch())
    }

    /// The epsilon added to the variance.
    ///
    /// ```
    /// let bn = polyhead_layers::BatchNormalization::<f32>::new(4)?.epsilon(1e-5);
    /// # let _ = bn;
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// How the moving statistics follow the batches.
    ///
    /// ```
    /// use polyhead_layers::{BatchNormalization, MovingStatistics};
    /// let bn = BatchNormalization::<f32>::new(4)?.moving_statistics(MovingStatistics { keep: 0.9, unbiased_variance: false });
    /// # let _ = bn;
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn moving_statistics(mut self, moving: MovingStatistics) -> Self {
        self.moving = moving;
        self
    }

    /// Without `beta` (Keras' `center=False`).
    ///
    /// ```
    /// use polyhead_layers::{BatchNormalization, Module};
    /// let bn = BatchNormalization::<f32>::new(4)?.center(false);
    /// assert_eq!(bn.parameters().len(), 1); // gamma only
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn center(mut self, center: bool) -> Self {
        if !center {
            self.beta = None;
        }
        self
    }

    /// Without `gamma` (Keras' `scale=False`).
    ///
    /// ```
    /// use polyhead_layers::{BatchNormalization, Module};
    /// let bn = BatchNormalization::<f32>::new(4)?.scale(false);
    /// assert_eq!(bn.parameters().len(), 1); // beta only
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn scale(mut self, scale: bool) -> Self {
        if !scale {
            self.gamma = None;
        }
        self
    }

    /// The moving mean `[C]`.
    ///
    /// ```
    /// let bn = polyhead_layers::BatchNormalization::<f32>::new(2)?;
    /// assert_eq!(bn.moving_mean().value().to_vec(), vec![0.0, 0.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn moving_mean(&self) -> &Buffer<T> {
        &self.moving_mean
    }

    /// The moving variance `[C]`.
    ///
    /// ```
    /// let bn = polyhead_layers::BatchNormalization::<f32>::new(2)?;
    /// assert_eq!(bn.moving_variance().value().to_vec(), vec![1.0, 1.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn moving_variance(&self) -> &Buffer<T> {
        &self.moving_variance
    }

    fn channels(&self) -> usize {
        self.moving_mean.shape()[0]
    }

    /// Per channel: the batch mean and biased variance.
    fn batch_statistics(x: &Tensor<T>, c: usize) -> (Vec<T>, Vec<T>, usize) {
        let x = x.to_contiguous();
        let values = x.as_slice().expect("contiguous");
        let n = values.len() / c;
        let mut mean = vec![T::ZERO; c];
        for row in values.chunks_exact(c) {
            for k in 0..c {
                mean[k] += row[k];
            }
        }
        let nt = T::from_f64(n as f64);
        mean.iter_mut().for_each(|m| *m /= nt);
        let mut var = vec![T::ZERO; c];
        for row in values.chunks_exact(c) {
            for k in 0..c {
                let d = row[k] - mean[k];
                var[k] += d * d;
            }
        }
        var.iter_mut().for_each(|v| *v /= nt);
        (mean, var, n)
    }
}

impl<T: Float> Module<T> for BatchNormalization<T> {
    /// Inference on the moving statistics, in the forward's order:
    /// `(x - mean) * (1 / sqrt(variance + epsilon)) * gamma + beta` over
    /// the last axis.
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        let eps = T::from_f64(self.epsilon);
        let inv_std = self
            .moving_variance
            .value()
            .map(|v| T::ONE / (v + eps).sqrt());
        let mean = g.constant(&format!("{name}.moving_mean"), &self.moving_mean.value());
        let inv_std = g.constant(&format!("{name}.inv_std"), &inv_std);
        let centered = g.op(name, "Sub", &[x.to_string(), mean], vec![]);
        let y = g.op(name, "Mul", &[centered, inv_std], vec![]);
        Ok(crate::export::scale_and_shift(
            g,
            name,
            y,
            self.gamma.as_ref(),
            self.beta.as_ref(),
        ))
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let layer = "batch_normalization";
        let shape = x.shape();
        let c = self.channels();
        if shape.len() < 2 || shape.last() != Some(&c) {
            return Err(LayerError::Shape {
                layer,
                message: format!(
                    "input must be [batch, ..., {c}] (channels last), got shape {shape:?}"
                ),
            });
        }
        let tape = x.tape();
        let eps = T::from_f64(self.epsilon);
        let xhat = if self.training {
            let (mean, var, n) = Self::batch_statistics(&x.value(), c);
            if n < 1 {
                return Err(LayerError::Shape {
                    layer,
                    message: format!("an empty batch has no statistics (shape {shape:?})"),
                });
            }
            if let Some(k) = (0..c).find(|&k| !(mean[k].is_finite() && var[k].is_finite())) {
                return Err(LayerError::Invalid {
                    what: layer,
                    message: format!(
                        "the batch's statistics of channel {k} are not finite (mean {:?}, variance {:?}); the moving statistics are unchanged",
                        mean[k], var[k]
                    ),
                });
            }
            let keep = T::from_f64(self.moving.keep);
            let take = T::ONE - keep;
            let correction = if self.moving.unbiased_variance && n > 1 {
                T::from_f64(n as f64 / (n as f64 - 1.0))
            } else {
                T::ONE
            };
            let old_mean = self.moving_mean.value().to_vec();
            let old_var = self.moving_variance.value().to_vec();
            let new_mean: Vec<T> = old_mean
                .iter()
                .zip(&mean)
                .map(|(&o, &m)| o * keep + m * take)
                .collect();
            let new_var: Vec<T> = old_var
                .iter()
                .zip(&var)
                .map(|(&o, &v)| o * keep + v * correction * take)
                .collect();
            let inv_std: Vec<T> = var.iter().map(|&v| T::ONE / (v + eps).sqrt()).collect();
            let xhat = x.apply(Normalize { mean, inv_std })?;
            self.moving_mean
                .set_value(Tensor::from_vec(new_mean, &[c])?)?;
            self.moving_variance
                .set_value(Tensor::from_vec(new_var, &[c])?)?;
            xhat
        } else {
            let mean = self.moving_mean.value();
            let inv_std = self
                .moving_variance
                .value()
                .map(|v| T::ONE / (v + eps).sqrt());
            x.sub(tape.constant(mean))?.mul(tape.constant(inv_std))?
        };
        let y = match &self.gamma {
            Some(g) => xhat.mul(tape.param(g))?,
            None => xhat,
        };
        Ok(match &self.beta {
            Some(b) => y.add(tape.param(b))?,
            None => y,
        })
    }

    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        if let Some(g) = &self.gamma {
            f(child(prefix, "gamma"), g);
        }
        if let Some(b) = &self.beta {
            f(child(prefix, "beta"), b);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        if let Some(g) = &mut self.gamma {
            f(child(prefix, "gamma"), g);
        }
        if let Some(b) = &mut self.beta {
            f(child(prefix, "beta"), b);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn visit_buffers<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Buffer<T>)) {
        f(child(prefix, "moving_mean"), &self.moving_mean);
        f(child(prefix, "moving_variance"), &self.moving_variance);
    }
}
