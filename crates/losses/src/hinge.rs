//! Margin (hinge) losses: Keras' `Hinge`, `SquaredHinge` and
//! `CategoricalHinge`; PyTorch's `multi_margin_loss`,
//! `hinge_embedding_loss` and `soft_margin_loss`.

use ndarray::{ArrayView1, ArrayViewMut1};
use polyhead_tensor::{Float, Tensor};

use crate::config::{Config, config_builders, run_pointwise};
use crate::cross_entropy::check_labels;
use crate::error::{LossError, Result};
use crate::loss::{Labels, Loss};
use crate::reduction::{Convention, LossOutput, finish, non_empty, same_shape};
use crate::units::{Aggregate, rowwise, rowwise_labels, softplus_and_sigmoid};

/// Keras turns 0/1 labels into -1/+1 when every label is 0 or 1.
fn signed_labels<T: Float>(target: &Tensor<T>) -> Tensor<T> {
    let binary = target.view().iter().all(|&v| v == T::ZERO || v == T::ONE);
    if binary {
        target.map(|v| v + v - T::ONE)
    } else {
        target.clone()
    }
}

/// Hinge loss `max(1 - y x, 0)` with labels `y` in {-1, +1} (0/1 labels are
/// converted, as Keras does), averaged over the last axis. At the kink
/// (`y x = 1`) the gradient is `-y`, TensorFlow's choice.
///
/// ```
/// use polyhead_losses::{Hinge, Loss};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.5_f64, 2.0], &[1, 2])?;
/// let y = Tensor::from_vec(vec![1.0_f64, 1.0], &[1, 2])?;
/// let out = Hinge::new().value_and_grad(&x, &y, None)?;
/// assert_eq!(out.value.item()?, 0.25);
/// assert_eq!(out.grad.to_vec(), vec![-0.5, 0.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hinge {
    config: Config,
}
config_builders!(Hinge);

impl Hinge {
    /// Hinge loss.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![0.0], &[1, 1])?;
    /// let out = Hinge::new().value_and_grad(&pred, &target, None)?;
    /// // A 0 label becomes -1: max(1 - (-1)(0), 0) = 1.
    /// assert_eq!(out.value.item()?, 1.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for Hinge {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "hinge"
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
        same_shape("hinge", pred, target)?;
        let y = signed_labels(target);
        run_pointwise(
            "hinge",
            self.config,
            Aggregate::Mean,
            pred,
            &y,
            w,
            buffer,
            |x, y, _| {
                let m = T::ONE - y * x;
                if m >= T::ZERO {
                    (m, -y)
                } else {
                    (T::ZERO, T::ZERO)
                }
            },
        )
    }
}

/// Squared hinge loss `max(1 - y x, 0)^2` (Keras' `SquaredHinge`), labels as
/// in [`Hinge`].
///
/// ```
/// use polyhead_losses::{Loss, SquaredHinge};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.5_f64], &[1, 1])?;
/// let y = Tensor::from_vec(vec![1.0_f64], &[1, 1])?;
/// let out = SquaredHinge::new().value_and_grad(&x, &y, None)?;
/// assert_eq!((out.value.item()?, out.grad.to_vec()), (0.25, vec![-1.0]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SquaredHinge {
    config: Config,
}
config_builders!(SquaredHinge);

impl SquaredHinge {
    /// Squared hinge loss.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![3.0], &[1, 1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
    /// let out = SquaredHinge::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for SquaredHinge {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "squared_hinge"
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
        same_shape("squared_hinge", pred, target)?;
        let y = signed_labels(target);
        let two = T::from_f64(2.0);
        run_pointwise(
            "squared_hinge",
            self.config,
            Aggregate::Mean,
            pred,
            &y,
            w,
            buffer,
            |x, y, _| {
                let m = (T::ONE - y * x).max(T::ZERO);
                (m * m, -two * y * m)
            },
        )
    }
}

/// Categorical hinge (Keras' `CategoricalHinge`):
/// `max(max_j (1 - y_j) x_j - sum_j y_j x_j + 1, 0)` per sample. Ties in the
/// inner maximum share the gradient equally, as TensorFlow does.
///
/// ```
/// use polyhead_losses::{CategoricalHinge, Loss};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![2.0_f64, 1.5, 0.0], &[1, 3])?;
/// let y = Tensor::from_vec(vec![1.0_f64, 0.0, 0.0], &[1, 3])?;
/// let out = CategoricalHinge::new().value_and_grad(&x, &y, None)?;
/// assert_eq!(out.value.item()?, 0.5);
/// assert_eq!(out.grad.to_vec(), vec![-1.0, 1.0, 0.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CategoricalHinge {
    config: Config,
}
config_builders!(CategoricalHinge);

impl CategoricalHinge {
    /// Categorical hinge loss.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CategoricalHinge::new().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.0); // margin of exactly 1 is met
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for CategoricalHinge {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "categorical_hinge"
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
        same_shape("categorical_hinge", pred, target)?;
        let axis = pred.ndim() - 1;
        let units = rowwise(pred, target, axis, buffer, categorical_hinge_row);
        finish("categorical_hinge", units, self.config.reduction, w)
    }
}

fn categorical_hinge_row<T: Float>(
    x: ArrayView1<'_, T>,
    y: ArrayView1<'_, T>,
    mut g: ArrayViewMut1<'_, T>,
) -> T {
    let pos: T = x.iter().zip(y.iter()).map(|(&a, &b)| a * b).sum();
    let negs: Vec<T> = x
        .iter()
        .zip(y.iter())
        .map(|(&a, &b)| (T::ONE - b) * a)
        .collect();
    let neg = negs.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
    let m = neg - pos + T::ONE;
    if m < T::ZERO {
        return T::ZERO;
    }
    let ties = T::from_usize(negs.iter().filter(|&&v| v == neg).count());
    for ((gv, &nv), &yv) in g.iter_mut().zip(&negs).zip(y.iter()) {
        let share = if nv == neg {
            (T::ONE - yv) / ties
        } else {
            T::ZERO
        };
        *gv = share - yv;
    }
    m
}

/// PyTorch's `multi_margin_loss`: for label `y`,
/// `sum_{i != y} max(0, margin - x_y + x_i)^p / classes`, times the class
/// weight of `y` if given. At the kink the gradient is 0, as in PyTorch.
///
/// ```
/// use polyhead_losses::{Labels, Loss, MultiMargin};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.1_f64, 0.2, 0.4], &[1, 3])?;
/// let out = MultiMargin::new().value_and_grad(&x, &Labels::from_classes(&[2]), None)?;
/// assert!((out.value.item()? - (0.7 + 0.8) / 3.0).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MultiMargin {
    p: i32,
    margin: f64,
    class_weights: Option<Vec<f64>>,
    config: Config,
}
config_builders!(MultiMargin);

impl Default for MultiMargin {
    fn default() -> Self {
        MultiMargin {
            p: 1,
            margin: 1.0,
            class_weights: None,
            config: Config {
                convention: Convention::PyTorch,
                ..Config::default()
            },
        }
    }
}

impl MultiMargin {
    /// Multi-class margin loss with `p = 1`, `margin = 1`.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::<f64>::from_vec(vec![2.0, 0.0], &[1, 2])?;
    /// assert_eq!(MultiMargin::new().value_and_grad(&x, &Labels::from_classes(&[0]), None)?.value.item()?, 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The exponent, 1 or 2.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::<f64>::from_vec(vec![0.0, 1.0], &[1, 2])?;
    /// let out = MultiMargin::new().p(2).value_and_grad(&x, &Labels::from_classes(&[0]), None)?;
    /// assert_eq!(out.value.item()?, 2.0); // (1 - 0 + 1)^2 / 2
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn p(mut self, p: i32) -> Self {
        self.p = p;
        self
    }

    /// The margin.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::<f64>::from_vec(vec![0.0, 1.0], &[1, 2])?;
    /// let out = MultiMargin::new().margin(0.5).value_and_grad(&x, &Labels::from_classes(&[0]), None)?;
    /// assert_eq!(out.value.item()?, 0.75); // (0.5 + 1) / 2
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }

    /// Per-class weights, applied by the sample's label.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::<f64>::from_vec(vec![0.0, 1.0], &[1, 2])?;
    /// let out = MultiMargin::new().class_weights(vec![2.0, 1.0]).value_and_grad(&x, &Labels::from_classes(&[0]), None)?;
    /// assert_eq!(out.value.item()?, 2.0); // 2 * (1 + 1) / 2
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn class_weights(mut self, weights: Vec<f64>) -> Self {
        self.class_weights = Some(weights);
        self
    }
}

impl<T: Float> Loss<T> for MultiMargin {
    type Target = Labels;
    fn name(&self) -> &str {
        "multi_margin"
    }
    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        labels: &Labels,
        w: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        self.value_and_grad_into(pred, labels, w, None)
    }

    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        labels: &Labels,
        w: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        const NAME: &str = "multi_margin";
        non_empty(NAME, pred)?;
        if pred.ndim() != 2 || labels.shape() != [pred.shape()[0]] {
            return Err(LossError::Shape {
                loss: NAME,
                pred: pred.shape().to_vec(),
                target: labels.shape().to_vec(),
                expected: "the prediction must be [batch, classes] and the labels [batch]"
                    .to_string(),
            });
        }
        if self.p != 1 && self.p != 2 {
            return Err(LossError::Invalid {
                loss: NAME,
                message: format!("p must be 1 or 2, got {}", self.p),
            });
        }
        let classes = pred.shape()[1];
        check_labels(NAME, labels.as_array(), classes, None)?;
        let cw: Vec<T> = match &self.class_weights {
            None => vec![T::ONE; classes],
            Some(cw) if cw.len() != classes => {
                return Err(LossError::Weight {
                    loss: NAME,
                    message: format!("{} class weights for {classes} classes", cw.len()),
                });
            }
            Some(cw) => cw.iter().map(|&v| T::from_f64(v)).collect(),
        };
        let (p, margin) = (self.p, T::from_f64(self.margin));
        let inv_c = T::ONE / T::from_usize(classes);
        let units = rowwise_labels(pred, labels.as_array(), 1, buffer, |x, y, mut g| {
            let y = y as usize;
            let scale = cw[y] * inv_c;
            let mut value = T::ZERO;
            let mut gy = T::ZERO;
            for (i, (&xi, gv)) in x.iter().zip(g.iter_mut()).enumerate() {
                let z = margin - x[y] + xi;
                if i == y || z <= T::ZERO {
                    continue;
                }
                let (v, d) = if p == 1 { (z, T::ONE) } else { (z * z, z + z) };
                value += v * scale;
                *gv = d * scale;
                gy -= d * scale;
            }
            g[y] = gy;
            value
        });
        finish(NAME, units, self.config.reduction, w)
    }
}

/// PyTorch's `hinge_embedding_loss`: `x` where the label is 1,
/// `max(0, margin - x)` where it is -1 (`x` is usually a distance).
///
/// ```
/// use polyhead_losses::{HingeEmbedding, Loss};
/// use polyhead_tensor::Tensor;
/// let d = Tensor::from_vec(vec![0.3_f64, 0.4], &[2])?;
/// let y = Tensor::from_vec(vec![1.0_f64, -1.0], &[2])?;
/// let out = HingeEmbedding::new(1.0).value_and_grad(&d, &y, None)?;
/// assert!((out.value.item()? - (0.3 + 0.6) / 2.0).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HingeEmbedding {
    margin: f64,
    config: Config,
}
config_builders!(HingeEmbedding);

impl HingeEmbedding {
    /// Hinge embedding loss with `margin` (PyTorch's default 1).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.25], &[1])?;
    /// let target = Tensor::from_vec(vec![-1.0], &[1])?;
    /// let out = HingeEmbedding::new(1.0).value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.75);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(margin: f64) -> Self {
        HingeEmbedding {
            margin,
            config: Config {
                convention: Convention::PyTorch,
                ..Config::default()
            },
        }
    }
}

impl<T: Float> Loss<T> for HingeEmbedding {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "hinge_embedding"
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
        let margin = T::from_f64(self.margin);
        run_pointwise(
            "hinge_embedding",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |x, y, _| {
                let (mut v, mut d) = (T::ZERO, T::ZERO);
                if y != -T::ONE {
                    v += x;
                    d += T::ONE;
                }
                if y != T::ONE && margin - x >= T::ZERO {
                    v += margin - x;
                    d -= T::ONE;
                }
                (v, d)
            },
        )
    }
}

/// PyTorch's `soft_margin_loss`: `ln(1 + e^(-y x))` with labels in {-1, +1}.
///
/// ```
/// use polyhead_losses::{Loss, SoftMargin};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.0_f64], &[1])?;
/// let out = SoftMargin::new().value_and_grad(&x, &Tensor::ones(&[1])?, None)?;
/// assert_eq!((out.value.item()?, out.grad.to_vec()), (2f64.ln(), vec![-0.5]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftMargin {
    config: Config,
}
config_builders!(SoftMargin);

impl Default for SoftMargin {
    fn default() -> Self {
        SoftMargin {
            config: Config {
                convention: Convention::PyTorch,
                ..Config::default()
            },
        }
    }
}

impl SoftMargin {
    /// Soft margin loss.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![100.0], &[1])?;
    /// let target = Tensor::from_vec(vec![1.0], &[1])?;
    /// let out = SoftMargin::new().value_and_grad(&pred, &target, None)?;
    /// assert!(out.value.item()? < 1e-40);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Float> Loss<T> for SoftMargin {
    type Target = Tensor<T>;
    fn name(&self) -> &str {
        "soft_margin"
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
        run_pointwise(
            "soft_margin",
            self.config,
            Aggregate::Mean,
            pred,
            target,
            w,
            buffer,
            |x, y, _| {
                let (softplus, sigmoid) = softplus_and_sigmoid(-y * x);
                (softplus, -y * sigmoid)
            },
        )
    }
}
