//! Cosine-similarity losses.

use ndarray::{ArrayView1, ArrayViewMut1, Axis, Zip};
use polyhead_tensor::{Float, Tensor};

use crate::config::{Config, config_builders};
use crate::error::{LossError, Result};
use crate::loss::Loss;
use crate::reduction::{LossOutput, finish, same_shape};
use crate::units::rowwise;

/// Negative cosine similarity along the last axis, `-cos(pred, target)` in
/// `[-1, 1]` (Keras' `CosineSimilarity`). Each vector is normalised as
/// `x * min(1 / ||x||, 1e7)`, as Keras does, so a zero vector gives 0.
///
/// ```
/// use polyhead_losses::{CosineSimilarity, Loss};
/// use polyhead_tensor::Tensor;
/// let a = Tensor::from_vec(vec![3.0_f64, 4.0], &[1, 2])?;
/// let out = CosineSimilarity::new().value_and_grad(&a, &a.mul_scalar(2.0), None)?;
/// assert!((out.value.item()? + 1.0).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CosineSimilarity {
    config: Config,
}
config_builders!(CosineSimilarity);

impl CosineSimilarity {
    /// Cosine similarity loss along the last axis.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![0.0, 1.0], &[1, 2])?;
    /// let out = CosineSimilarity::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.0); // orthogonal
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

/// Keras' l2 normalisation scale `min(1/||x||, 1e7)` and whether it is the
/// `1/||x||` branch.
fn keras_scale<T: Float>(x: ArrayView1<'_, T>) -> (T, bool) {
    let n2: T = x.iter().map(|&v| v * v).sum();
    let inv = T::ONE / n2.sqrt();
    let cap = T::from_f64(1e7);
    if inv <= cap {
        (inv, true)
    } else {
        (cap, false)
    }
}

impl<T: Float> Loss<T> for CosineSimilarity {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "cosine_similarity"
    }
    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        w: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        self.value_and_grad_into(pred, target, w, None)
    }

    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        w: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        const NAME: &str = "cosine_similarity";
        same_shape(NAME, pred, target)?;
        let axis = pred.ndim() - 1;
        let units = rowwise(pred, target, axis, buffer, |p, y, mut g| {
            let (sp, free) = keras_scale(p);
            let (sy, _) = keras_scale(y);
            let dot: T = p.iter().zip(y.iter()).map(|(&a, &b)| a * sp * b * sy).sum();
            for ((gv, &pv), &yv) in g.iter_mut().zip(p.iter()).zip(y.iter()) {
                let yn = yv * sy;
                // d(-yn . p s)/dp: with s = 1/||p||, -(yn - (yn . pn) pn) / ||p||.
                *gv = if free {
                    -(yn - dot * pv * sp) * sp
                } else {
                    -yn * sp
                };
            }
            -dot
        });
        finish(NAME, units, self.config.reduction, w)
    }
}

/// PyTorch's `cosine_embedding_loss` between the prediction rows `x1` and
/// target rows `x2`, with a per-row label `+1` (should be similar: loss
/// `1 - cos`) or `-1` (should differ: `max(0, cos - margin)`). The cosine
/// adds 1e-12 to each squared norm, as PyTorch does.
///
/// ```
/// use polyhead_losses::{CosineEmbedding, CosineTarget, Loss};
/// use polyhead_tensor::Tensor;
/// let x1 = Tensor::from_vec(vec![1.0_f64, 0.0, 1.0, 0.0], &[2, 2])?;
/// let x2 = Tensor::from_vec(vec![1.0_f64, 0.0, 0.0, 1.0], &[2, 2])?;
/// let target = CosineTarget { other: x2, sign: Tensor::from_vec(vec![1.0, -1.0], &[2])? };
/// let out = CosineEmbedding::new(0.0).value_and_grad(&x1, &target, None)?;
/// assert!(out.value.item()?.abs() < 1e-12); // parallel pair and orthogonal pair
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineEmbedding {
    margin: f64,
    config: Config,
}
config_builders!(CosineEmbedding);

impl CosineEmbedding {
    /// Cosine embedding loss with `margin` (PyTorch's default 0).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::<f64>::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let target = CosineTarget { other: x.clone(), sign: Tensor::from_vec(vec![-1.0], &[1])? };
    /// // A pair that should differ but is parallel costs cos - margin.
    /// let out = CosineEmbedding::new(0.5).value_and_grad(&x, &target, None)?;
    /// assert!((out.value.item()? - 0.5).abs() < 1e-9); // cos is 1 less the 1e-12 in the norms
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(margin: f64) -> Self {
        CosineEmbedding {
            margin,
            config: Config {
                convention: crate::Convention::PyTorch,
                ..Config::default()
            },
        }
    }
}

/// The target of [`CosineEmbedding`]: the other vector of each pair and the
/// pair's label (`+1` similar, `-1` dissimilar).
///
/// ```
/// use polyhead_losses::*;
/// use polyhead_tensor::Tensor;
/// let target = CosineTarget {
///     other: Tensor::<f32>::ones(&[3, 8])?,
///     sign: Tensor::from_vec(vec![1.0, -1.0, 1.0], &[3])?,
/// };
/// assert_eq!(target.sign.shape(), &[3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CosineTarget<T: Float> {
    /// The second vector of each pair, the prediction's shape.
    pub other: Tensor<T>,
    /// One label per row, `+1` or `-1`.
    pub sign: Tensor<T>,
}

impl<T: Float> Loss<T> for CosineEmbedding {
    type Target = CosineTarget<T>;
    fn name(&self) -> &str {
        "cosine_embedding"
    }
    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &CosineTarget<T>,
        w: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        self.value_and_grad_into(pred, target, w, None)
    }

    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        target: &CosineTarget<T>,
        w: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        const NAME: &str = "cosine_embedding";
        same_shape(NAME, pred, &target.other)?;
        let rows = pred.shape()[0];
        if pred.ndim() != 2 || target.sign.shape() != [rows] {
            return Err(LossError::Shape {
                loss: NAME,
                pred: pred.shape().to_vec(),
                target: target.sign.shape().to_vec(),
                expected: format!(
                    "the prediction must be [batch, dim] and the pair labels [batch] = [{rows}]"
                ),
            });
        }
        if let Some(bad) = target
            .sign
            .view()
            .iter()
            .find(|&&s| s != T::ONE && s != -T::ONE)
        {
            return Err(LossError::Invalid {
                loss: NAME,
                message: format!("pair labels must be +1 or -1, found {bad}"),
            });
        }
        let axis = pred.ndim() - 1;
        let tiny = T::from_f64(1e-12);
        let margin = T::from_f64(self.margin);
        let mut units = rowwise(pred, &target.other, axis, buffer, |x1, x2, mut g| {
            let dot: T = x1.iter().zip(x2.iter()).map(|(&a, &b)| a * b).sum();
            let m1 = x1.iter().map(|&a| a * a).sum::<T>() + tiny;
            let m2 = x2.iter().map(|&b| b * b).sum::<T>() + tiny;
            let denom = (m1 * m2).sqrt();
            let cos = dot / denom;
            // Store dcos/dx1 = x2 / denom - cos x1 / m1; the sign is applied below.
            for ((gv, &a), &b) in g.iter_mut().zip(x1.iter()).zip(x2.iter()) {
                *gv = b / denom - cos * a / m1;
            }
            cos
        });
        let sign = target.sign.view();
        Zip::from(&mut units.values)
            .and(units.grad.lanes_mut(Axis(axis)))
            .and(&sign)
            .for_each(|v, mut g: ArrayViewMut1<'_, T>, &s| {
                let cos = *v;
                if s == T::ONE {
                    *v = T::ONE - cos;
                    g.mapv_inplace(|d| -d);
                } else if s == -T::ONE {
                    let active = cos - margin >= T::ZERO;
                    *v = (cos - margin).max(T::ZERO);
                    if !active {
                        g.fill(T::ZERO);
                    }
                } else {
                    *v = T::ZERO;
                    g.fill(T::ZERO);
                }
            });
        if let Some(bad) = sign.iter().find(|&&s| s != T::ONE && s != -T::ONE) {
            return Err(LossError::Invalid {
                loss: NAME,
                message: format!("pair labels must be +1 or -1, found {bad}"),
            });
        }
        finish(NAME, units, self.config.reduction, w)
    }
}
