//! Softmax cross-entropy: [`CrossEntropy`] against one-hot or soft targets,
//! [`SparseCrossEntropy`] against integer labels (and PyTorch's `nll_loss`
//! on log-probabilities).

use ndarray::{ArrayD, ArrayView1, ArrayViewMut1, Dimension};
use polyhead_tensor::shape::{self, normalize_axis};
use polyhead_tensor::simd::with_simd;
use polyhead_tensor::{Float, Tensor};

use crate::error::{LossError, Result};
use crate::lanes;
use crate::loss::{Labels, Loss};
use crate::reduction::{
    Convention, LossOutput, Reduction, finish, non_empty, same_shape, uniform_coef,
};
use crate::units::{rowwise, rowwise_blocks, rowwise_labels};

/// Keras' fuzz factor for clipping probabilities.
pub(crate) const KERAS_EPSILON: f64 = 1e-7;

/// What a classification loss's prediction holds.
///
/// ```
/// use polyhead_losses::*;
/// use polyhead_tensor::Tensor;
/// // The same loss on logits and on log-probabilities.
/// let logits = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[1, 2])?;
/// let labels = Labels::from_classes(&[1]);
/// let a = SparseCrossEntropy::from_logits().value_and_grad(&logits, &labels, None)?;
/// let b = SparseCrossEntropy::from_log_probabilities().value_and_grad(&logits.log_softmax(-1)?, &labels, None)?;
/// assert!((a.value.item()? - b.value.item()?).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Unnormalised scores; the loss applies a (log-)softmax itself, in one
    /// stable pass. The recommended form.
    Logits,
    /// Probabilities (rows summing to about 1). Keras' handling: each row is
    /// renormalised by its sum and clipped to `[1e-7, 1 - 1e-7]` before the
    /// logarithm (the sparse loss clips first, then renormalises, as Keras'
    /// TensorFlow backend does).
    Probabilities,
    /// Log-probabilities (PyTorch's `nll_loss`): the loss is `-x[target]`.
    LogProbabilities,
}

/// Options shared by the cross-entropy losses.
#[derive(Debug, Clone, PartialEq)]
struct Common {
    input: Input,
    label_smoothing: f64,
    class_weights: Option<Vec<f64>>,
    class_axis: Option<isize>,
    convention: Convention,
    reduction: Reduction,
}

impl Common {
    fn new(input: Input) -> Self {
        Common {
            input,
            label_smoothing: 0.0,
            class_weights: None,
            class_axis: None,
            convention: Convention::Keras,
            reduction: Reduction::Mean,
        }
    }

    fn axis<T: Float>(&self, loss: &'static str, pred: &Tensor<T>) -> Result<usize> {
        let default = match self.convention {
            Convention::Keras => -1,
            Convention::PyTorch => {
                if pred.ndim() >= 2 {
                    1
                } else {
                    0
                }
            }
        };
        Ok(normalize_axis(
            loss,
            self.class_axis.unwrap_or(default),
            pred.shape(),
        )?)
    }

    fn check(&self, loss: &'static str, classes: usize) -> Result<()> {
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(LossError::Invalid {
                loss,
                message: format!(
                    "label_smoothing must be in [0, 1], got {}",
                    self.label_smoothing
                ),
            });
        }
        match &self.class_weights {
            None => Ok(()),
            Some(w) if w.len() != classes => Err(LossError::Weight {
                loss,
                message: format!("{} class weights for {classes} classes", w.len()),
            }),
            Some(w) => match w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                Some(i) => Err(LossError::Weight {
                    loss,
                    message: format!(
                        "class weights must be finite and non-negative, found {} at class {i}",
                        w[i]
                    ),
                }),
                None => Ok(()),
            },
        }
    }

    /// The class weights (checked by [`Common::check`]), or 1 for every
    /// class.
    fn weights(&self, classes: usize) -> Vec<f64> {
        match &self.class_weights {
            Some(w) => w.clone(),
            None => vec![1.0; classes],
        }
    }
}

macro_rules! common_builders {
    ($t:ident) => {
        impl $t {
            /// Sets the label smoothing `eps` in `[0, 1]`: the target becomes
            /// `y * (1 - eps) + eps / classes` (Keras and PyTorch agree).
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// let logits = Tensor::<f64>::zeros(&[1, 4])?;
            /// let onehot = Labels::from_classes(&[0]).one_hot(4)?;
            /// let out = CrossEntropy::from_logits().label_smoothing(0.2).value_and_grad(&logits, &onehot, None)?;
            /// // Uniform logits: the loss is ln 4 whatever the (smoothed) target.
            /// assert!((out.value.item()? - 4f64.ln()).abs() < 1e-15);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn label_smoothing(mut self, eps: f64) -> Self {
                self.common.label_smoothing = eps;
                self
            }

            /// Per-class weights. PyTorch's convention weighs each class's
            /// term inside the loss and, for [`Reduction::Mean`] with integer
            /// labels, divides by the summed weights of the targets. Keras'
            /// convention turns them into sample weights (the weight of each
            /// sample's class), as Keras' `class_weight` does.
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// let logits = Tensor::<f64>::zeros(&[2, 2])?;
            /// let labels = Labels::from_classes(&[0, 1]);
            /// let loss = SparseCrossEntropy::from_logits().class_weights(vec![3.0, 1.0]).convention(Convention::PyTorch);
            /// // PyTorch: sum_i w[y_i] * ln 2 / sum_i w[y_i] = ln 2.
            /// assert!((loss.value_and_grad(&logits, &labels, None)?.value.item()? - 2f64.ln()).abs() < 1e-15);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn class_weights(mut self, weights: Vec<f64>) -> Self {
                self.common.class_weights = Some(weights);
                self
            }

            /// The class axis (default: the last under Keras' convention,
            /// axis 1 under PyTorch's).
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// // Scores laid out [batch, classes, time], classes on axis 1.
            /// let logits = Tensor::<f64>::zeros(&[2, 3, 5])?;
            /// let labels = Labels::new(vec![0; 10], &[2, 5])?;
            /// let out = SparseCrossEntropy::from_logits().class_axis(1).value_and_grad(&logits, &labels, None)?;
            /// assert!((out.value.item()? - 3f64.ln()).abs() < 1e-15);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn class_axis(mut self, axis: isize) -> Self {
                self.common.class_axis = Some(axis);
                self
            }

            /// Selects Keras' or PyTorch's definitions (see [`Convention`]).
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// let logits = Tensor::<f64>::zeros(&[2, 3, 5])?;
            /// // PyTorch's class axis is 1: labels are [batch, time].
            /// let loss = SparseCrossEntropy::from_logits().convention(Convention::PyTorch);
            /// assert!(loss.value_and_grad(&logits, &Labels::new(vec![0; 10], &[2, 5])?, None).is_ok());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn convention(mut self, convention: Convention) -> Self {
                self.common.convention = convention;
                self
            }

            /// Sets the reduction (default [`Reduction::Mean`]).
            ///
            /// ```
            /// use polyhead_losses::*;
            /// use polyhead_tensor::Tensor;
            /// let logits = Tensor::<f64>::zeros(&[2, 2])?;
            /// let loss = SparseCrossEntropy::from_logits().reduction(Reduction::None);
            /// assert_eq!(loss.value_and_grad(&logits, &Labels::from_classes(&[0, 1]), None)?.value.shape(), &[2]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn reduction(mut self, reduction: Reduction) -> Self {
                self.common.reduction = reduction;
                self
            }
        }
    };
}

/// Softmax cross-entropy against one-hot or soft targets of the
/// prediction's shape: Keras' `CategoricalCrossentropy`, PyTorch's
/// `cross_entropy` with probability targets.
///
/// From logits it is computed in one stable pass per row (max, sum of
/// exponentials, then `softmax - target` as the gradient): exact at logits
/// of ±1000.
///
/// ```
/// use polyhead_losses::{CrossEntropy, Loss};
/// use polyhead_tensor::Tensor;
/// let logits = Tensor::from_vec(vec![1000.0_f64, -1000.0, 0.0, 0.0], &[2, 2])?;
/// let onehot = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2])?;
/// let out = CrossEntropy::from_logits().value_and_grad(&logits, &onehot, None)?;
/// assert!((out.value.item()? - 2f64.ln() / 2.0).abs() < 1e-15);
/// assert_eq!(out.grad.to_vec(), vec![0.0, 0.0, 0.25, -0.25]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropy {
    common: Common,
}

common_builders!(CrossEntropy);

impl CrossEntropy {
    /// Cross-entropy of logits (the prediction is unnormalised scores).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.0, 0.0], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CrossEntropy::from_logits().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.grad.to_vec(), vec![-0.5, 0.5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_logits() -> Self {
        CrossEntropy {
            common: Common::new(Input::Logits),
        }
    }

    /// Cross-entropy of probabilities (Keras' `from_logits=False`).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![0.25, 0.75], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![0.0, 1.0], &[1, 2])?;
    /// let out = CrossEntropy::from_probabilities().value_and_grad(&pred, &target, None)?;
    /// assert!((out.value.item()? + 0.75f64.ln()).abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_probabilities() -> Self {
        CrossEntropy {
            common: Common::new(Input::Probabilities),
        }
    }

    /// Cross-entropy of log-probabilities.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let pred = Tensor::<f64>::from_vec(vec![-0.5, -2.0], &[1, 2])?;
    /// let target = Tensor::from_vec(vec![1.0, 0.0], &[1, 2])?;
    /// let out = CrossEntropy::from_log_probabilities().value_and_grad(&pred, &target, None)?;
    /// assert_eq!(out.value.item()?, 0.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_log_probabilities() -> Self {
        CrossEntropy {
            common: Common::new(Input::LogProbabilities),
        }
    }
}

impl<T: Float> Loss<T> for CrossEntropy {
    type Target = Tensor<T>;

    fn name(&self) -> &str {
        "cross_entropy"
    }

    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        sample_weight: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        self.value_and_grad_into(pred, target, sample_weight, None)
    }

    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        sample_weight: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        const NAME: &str = "cross_entropy";
        same_shape(NAME, pred, target)?;
        let c = &self.common;
        let axis = c.axis(NAME, pred)?;
        let classes = pred.shape()[axis];
        c.check(NAME, classes)?;
        let keras = c.convention == Convention::Keras;
        let eps = T::from_f64(c.label_smoothing);
        let input = c.input;
        let mut buffer = buffer;
        if input == Input::Logits && c.class_weights.is_none() {
            // Every row weighs the same without sample weights: the kernel
            // applies the reduction's coefficient itself.
            let rows = pred.len() / classes.max(1);
            let grad_coef = match sample_weight {
                None => uniform_coef::<T>(c.reduction, rows, pred.shape(), None),
                Some(_) => None,
            };
            let coef = grad_coef.unwrap_or(T::ONE);
            let y = target.view();
            let blocks = rowwise_blocks(
                pred,
                y.as_slice(),
                axis,
                &mut buffer,
                grad_coef,
                |x, y, g, v| dense_logits_block(x, y, classes, g, v, eps, coef),
            );
            if let Some(mut units) = blocks {
                units.grad_final = grad_coef.is_some();
                return finish(NAME, units, c.reduction, sample_weight);
            }
        }
        let weights = c.weights(classes);
        // Under Keras' convention class weights become sample weights.
        let inner: Vec<T> = if keras {
            vec![T::ONE; classes]
        } else {
            weights.iter().map(|&w| T::from_f64(w)).collect()
        };
        let smooth = |y: T| y * (T::ONE - eps) + eps / T::from_usize(classes);
        let mut units = rowwise(pred, target, axis, buffer, |x, y, g| {
            let a = |j: usize| inner[j] * smooth(y[j]);
            match input {
                Input::Logits => logits_row(x, a, g),
                Input::Probabilities => keras_probability_row(x, a, g),
                Input::LogProbabilities => log_probability_row(x, a, g),
            }
        });
        if keras && c.class_weights.is_some() {
            let w: Vec<T> = weights.iter().map(|&w| T::from_f64(w)).collect();
            let per_sample = target.view().map_axis(ndarray::Axis(axis), |y| {
                y.iter().zip(&w).fold(T::ZERO, |acc, (&y, &w)| acc + y * w)
            });
            units.weights = Some(per_sample);
        }
        finish(NAME, units, c.reduction, sample_weight)
    }
}

/// `-sum_j a_j log_softmax(x)_j` and its gradient `p * sum(a) - a`, in
/// three passes over the row (max; exponentials into the gradient buffer
/// and their sum; the gradient) with one `exp` per element.
fn logits_row<T: Float>(
    x: ArrayView1<'_, T>,
    a: impl Fn(usize) -> T,
    mut g: ArrayViewMut1<'_, T>,
) -> T {
    if let (Some(xs), Some(gs)) = (x.as_slice(), g.as_slice_mut()) {
        return logits_slice(xs, &a, gs);
    }
    // A strided row (a class axis that is not the last): copy it out.
    let xs = x.to_vec();
    let mut gs = vec![T::ZERO; xs.len()];
    let value = logits_slice(&xs, &a, &mut gs);
    g.iter_mut().zip(gs).for_each(|(d, v)| *d = v);
    value
}

/// [`logits_row`] on contiguous slices (plain loops the compiler vectorises).
#[inline]
fn logits_slice<T: Float>(x: &[T], a: &impl Fn(usize) -> T, g: &mut [T]) -> T {
    let g = &mut g[..x.len()];
    let m = lanes::max(x);
    for (gv, &xv) in g.iter_mut().zip(x) {
        *gv = xv - m;
    }
    T::exp_slice(g);
    let sum_exp = lanes::sum(g);
    let lse = m + ln_of(sum_exp);
    let inv = T::ONE / sum_exp;
    let mut total_a = T::ZERO;
    let mut value = T::ZERO;
    for (j, &xv) in x.iter().enumerate() {
        let aj = a(j);
        total_a += aj;
        if aj != T::ZERO {
            value += aj * (lse - xv);
        }
    }
    let scale = inv * total_a;
    for (j, gv) in g.iter_mut().enumerate() {
        *gv = *gv * scale - a(j);
    }
    value
}

/// `ln x` through [`Float::ln_slice`], so a row kernel and a block kernel
/// that takes the logarithms of many rows at once get the same bits.
#[inline]
fn ln_of<T: Float>(x: T) -> T {
    let mut one = [x];
    T::ln_slice(&mut one);
    one[0]
}

/// Elements per pass of [`logits_blocks`]: small enough that the
/// shifted logits stay in the L1 cache between the passes over them.
const SOFTMAX_CHUNK: usize = 4096;

/// At most this many rows per pass (their sums and logarithms live in
/// stack arrays of this length).
const SOFTMAX_ROWS: usize = 256;

/// [`logits_slice`] with a one-hot target, on a block of rows at once:
/// every row's shifted logits are exponentiated in one call, which fills
/// the SIMD registers even when a row has only a few classes. Same
/// operations in the same order as the row kernel, so the same bits (each
/// `exp_slice` result depends on its own input only). A row whose label is
/// out of range (the ignored label) gets value 0 and a zero gradient.
///
/// `c` is the reduction's coefficient when every row weighs the same
/// (else 1): the gradient leaves multiplied by it as `finish` would,
/// `(softmax - onehot) * c`, and 0 where `c` is 0.
fn sparse_logits_block<T: Float>(
    x: &[T],
    labels: &[i64],
    classes: usize,
    g: &mut [T],
    values: &mut [T],
    c: T,
) {
    let rows = |x: &[T],
                labels: &[i64],
                g: &mut [T],
                values: &mut [T],
                sums: &[T],
                logs: &[T],
                classes: usize| {
        for (((((xr, gr), &y), v), &sum_exp), &ln_sum) in x
            .chunks_exact(classes)
            .zip(g.chunks_exact_mut(classes))
            .zip(labels)
            .zip(values.iter_mut())
            .zip(sums)
            .zip(logs)
        {
            if y < 0 || y as usize >= classes || c == T::ZERO {
                gr.fill(T::ZERO);
                if y < 0 || y as usize >= classes {
                    *v = T::ZERO;
                    continue;
                }
            }
            let y = y as usize;
            let lse = *v + ln_sum;
            *v = lse - xr[y];
            if c == T::ZERO {
                continue;
            }
            let inv = T::ONE / sum_exp;
            let at_label = gr[y] * inv - T::ONE;
            for gv in gr.iter_mut() {
                *gv = *gv * inv * c;
            }
            gr[y] = at_label * c;
        }
    };
    // Ten classes (digits, CIFAR-10) get a copy compiled for that width,
    // with every per-row loop unrolled (measured: CE 1024x10 13.3 -> 11.9
    // us on one core); any other width takes the general one.
    match classes {
        0 => {}
        10 => logits_blocks::<T, i64, 10>(x, labels, 1, classes, g, values, rows),
        _ => logits_blocks::<T, i64, 0>(x, labels, 1, classes, g, values, rows),
    }
}

/// [`logits_slice`] (a dense target, no class weights) on a block of rows
/// at once, like [`sparse_logits_block`], with the same bits as the row
/// kernel. `eps` is the label smoothing; `c` as for the sparse kernel.
fn dense_logits_block<T: Float>(
    x: &[T],
    target: &[T],
    classes: usize,
    g: &mut [T],
    values: &mut [T],
    eps: T,
    c: T,
) {
    let rows = |x: &[T],
                y: &[T],
                g: &mut [T],
                values: &mut [T],
                sums: &[T],
                logs: &[T],
                classes: usize| {
        // The row kernel's `a(j)`: the smoothed target (times a class
        // weight of 1, which changes nothing).
        let off = eps / T::from_usize(classes);
        let smooth = |y: T| y * (T::ONE - eps) + off;
        for (((((xr, yr), gr), v), &sum_exp), &ln_sum) in x
            .chunks_exact(classes)
            .zip(y.chunks_exact(classes))
            .zip(g.chunks_exact_mut(classes))
            .zip(values.iter_mut())
            .zip(sums)
            .zip(logs)
        {
            let lse = *v + ln_sum;
            let inv = T::ONE / sum_exp;
            let mut total_a = T::ZERO;
            let mut value = T::ZERO;
            for (&yv, &xv) in yr.iter().zip(xr) {
                let a = smooth(yv);
                total_a += a;
                if a != T::ZERO {
                    value += a * (lse - xv);
                }
            }
            *v = value;
            if c == T::ZERO {
                gr.fill(T::ZERO);
                continue;
            }
            let scale = inv * total_a;
            for (gv, &yv) in gr.iter_mut().zip(yr) {
                *gv = (*gv * scale - smooth(yv)) * c;
            }
        }
    };
    match classes {
        0 => {}
        10 => logits_blocks::<T, T, 10>(x, target, classes, classes, g, values, rows),
        _ => logits_blocks::<T, T, 0>(x, target, classes, classes, g, values, rows),
    }
}

/// The shared body of the block kernels on logits, for rows of `WIDTH`
/// classes (0: of `classes`, known only at run time), chunk by chunk of
/// rows: pass 1, each row's maximum (kept in `values` for now) and
/// `x - max` (into `g`); the chunk's exponentials in one call; pass 2, each
/// row's sum of exponentials and their logarithms in one call; then
/// `finish(x, target, g, values, sums, logs, classes)` for the chunk, with
/// `target_cols` target elements per row.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn logits_blocks<T: Float, U, const WIDTH: usize>(
    x: &[T],
    target: &[U],
    target_cols: usize,
    classes: usize,
    g: &mut [T],
    values: &mut [T],
    finish: impl Fn(&[T], &[U], &mut [T], &mut [T], &[T], &[T], usize),
) {
    let classes = if WIDTH == 0 { classes } else { WIDTH };
    let rows = (SOFTMAX_CHUNK / classes).clamp(1, SOFTMAX_ROWS);
    let n = rows * classes;
    for (((x, g), target), values) in x
        .chunks(n)
        .zip(g.chunks_mut(n))
        .zip(target.chunks(rows * target_cols))
        .zip(values.chunks_mut(rows))
    {
        // Short rows (ten classes) are folded four at a time across rows
        // (`row_maxes`, `row_sums`: the same left-to-right folds as
        // `lanes::max` and `lanes::sum` use for them, so the same bits).
        let short = classes <= lanes::SHORT;
        if short {
            T::row_maxes(x, classes, values);
        }
        for ((xr, gr), m) in x
            .chunks_exact(classes)
            .zip(g.chunks_exact_mut(classes))
            .zip(values.iter_mut())
        {
            if !short {
                *m = lanes::max(xr);
            }
            for (gv, &xv) in gr.iter_mut().zip(xr) {
                *gv = xv - *m;
            }
        }
        T::exp_slice(g);
        let mut sums = [T::ONE; SOFTMAX_ROWS];
        let mut logs = [T::ZERO; SOFTMAX_ROWS];
        let (sums, logs) = (&mut sums[..values.len()], &mut logs[..values.len()]);
        if short {
            T::row_sums(g, classes, sums);
        } else {
            for (sum, gr) in sums.iter_mut().zip(g.chunks_exact(classes)) {
                *sum = lanes::sum(gr);
            }
        }
        logs.copy_from_slice(sums);
        T::ln_slice(logs);
        finish(x, target, g, values, sums, logs, classes);
    }
}

/// Keras on probabilities: renormalise the row, clip to `[eps, 1 - eps]`,
/// `-sum_j a_j ln(q_j)`; the gradient flows back through the renormalisation.
fn keras_probability_row<T: Float>(
    p: ArrayView1<'_, T>,
    a: impl Fn(usize) -> T,
    mut g: ArrayViewMut1<'_, T>,
) -> T {
    let eps = T::from_f64(KERAS_EPSILON);
    let sum: T = p.iter().copied().sum();
    let mut value = T::ZERO;
    // dL/dq_j where q = p / sum (zero where clipping is active).
    let mut dot = T::ZERO;
    for (j, (&pv, gv)) in p.iter().zip(g.iter_mut()).enumerate() {
        let av = a(j);
        let q = pv / sum;
        let clipped = q.max(eps).min(T::ONE - eps);
        if av != T::ZERO {
            value -= av * clipped.ln();
        }
        let dq = if q >= eps && q <= T::ONE - eps {
            -av / clipped
        } else {
            T::ZERO
        };
        *gv = dq;
        dot += dq * q;
    }
    g.mapv_inplace(|dq| (dq - dot) / sum);
    value
}

/// `-sum_j a_j x_j` for log-probabilities `x`.
fn log_probability_row<T: Float>(
    x: ArrayView1<'_, T>,
    a: impl Fn(usize) -> T,
    mut g: ArrayViewMut1<'_, T>,
) -> T {
    let mut value = T::ZERO;
    for (j, (&xv, gv)) in x.iter().zip(g.iter_mut()).enumerate() {
        let av = a(j);
        if av != T::ZERO {
            value -= av * xv;
        }
        *gv = -av;
    }
    value
}

/// Softmax cross-entropy against integer class labels: Keras'
/// `SparseCategoricalCrossentropy`, PyTorch's `cross_entropy` with class
/// indices, and (with [`Input::LogProbabilities`]) PyTorch's `nll_loss`.
///
/// Labels equal to the ignored label get loss 0, no gradient, and are not
/// counted by [`Reduction::Mean`]; a batch where every label is ignored has
/// loss 0 (PyTorch gives NaN). Any other label outside `0..classes` is an
/// error naming it and its position.
///
/// ```
/// use polyhead_losses::{Labels, Loss, SparseCrossEntropy};
/// use polyhead_tensor::Tensor;
/// let logits = Tensor::from_vec(vec![0.0_f64, 0.0, 5.0, 5.0], &[2, 2])?;
/// let labels = Labels::new(vec![0, -1], &[2])?;
/// let loss = SparseCrossEntropy::from_logits().ignore_index(-1);
/// let out = loss.value_and_grad(&logits, &labels, None)?;
/// assert!((out.value.item()? - 2f64.ln()).abs() < 1e-15); // only row 0 counts
/// assert_eq!(out.grad.to_vec(), vec![-0.5, 0.5, 0.0, 0.0]);
/// let err = loss.value_and_grad(&logits, &Labels::new(vec![0, 7], &[2])?, None).unwrap_err();
/// assert_eq!(err.to_string(), "sparse_cross_entropy: labels must be in 0..2, found 7 at position [1]");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCrossEntropy {
    common: Common,
    ignore_index: Option<i64>,
}

common_builders!(SparseCrossEntropy);

impl SparseCrossEntropy {
    /// Sparse cross-entropy of logits.
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let logits = Tensor::<f64>::from_vec(vec![0.0, 0.0], &[1, 2])?;
    /// let out = SparseCrossEntropy::from_logits().value_and_grad(&logits, &Labels::from_classes(&[1]), None)?;
    /// assert_eq!(out.grad.to_vec(), vec![0.5, -0.5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_logits() -> Self {
        SparseCrossEntropy {
            common: Common::new(Input::Logits),
            ignore_index: None,
        }
    }

    /// Sparse cross-entropy of probabilities (Keras' `from_logits=False`).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let p = Tensor::<f64>::from_vec(vec![0.25, 0.75], &[1, 2])?;
    /// let out = SparseCrossEntropy::from_probabilities().value_and_grad(&p, &Labels::from_classes(&[1]), None)?;
    /// assert!((out.value.item()? + 0.75f64.ln()).abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_probabilities() -> Self {
        SparseCrossEntropy {
            common: Common::new(Input::Probabilities),
            ignore_index: None,
        }
    }

    /// Negative log-likelihood of log-probabilities (PyTorch's `nll_loss`).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let logp = Tensor::<f64>::from_vec(vec![-0.1, -2.4], &[1, 2])?;
    /// let loss = SparseCrossEntropy::from_log_probabilities().convention(Convention::PyTorch);
    /// assert_eq!(loss.value_and_grad(&logp, &Labels::from_classes(&[0]), None)?.value.item()?, 0.1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_log_probabilities() -> Self {
        SparseCrossEntropy {
            common: Common::new(Input::LogProbabilities),
            ignore_index: None,
        }
    }

    /// Labels equal to `label` are ignored (Keras' `ignore_class`,
    /// PyTorch's `ignore_index`).
    ///
    /// ```
    /// use polyhead_losses::*;
    /// use polyhead_tensor::Tensor;
    /// let logits = Tensor::<f64>::zeros(&[3, 2])?;
    /// let labels = Labels::new(vec![0, -100, -100], &[3])?;
    /// let loss = SparseCrossEntropy::from_logits().ignore_index(-100);
    /// // Only the first row is counted.
    /// assert!((loss.value_and_grad(&logits, &labels, None)?.value.item()? - 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ignore_index(mut self, label: i64) -> Self {
        self.ignore_index = Some(label);
        self
    }
}

impl<T: Float> Loss<T> for SparseCrossEntropy {
    type Target = Labels;

    fn name(&self) -> &str {
        "sparse_cross_entropy"
    }

    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        labels: &Labels,
        sample_weight: Option<&Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        self.value_and_grad_into(pred, labels, sample_weight, None)
    }

    fn value_and_grad_into(
        &self,
        pred: &Tensor<T>,
        labels: &Labels,
        sample_weight: Option<&Tensor<T>>,
        buffer: Option<Tensor<T>>,
    ) -> Result<LossOutput<T>> {
        const NAME: &str = "sparse_cross_entropy";
        non_empty(NAME, pred)?;
        let c = &self.common;
        let axis = c.axis(NAME, pred)?;
        let classes = pred.shape()[axis];
        let labels = labels.as_array();
        // The prediction without its class axis, compared without building it.
        let (before, after) = pred.shape().split_at(axis);
        let fits = labels.ndim() + 1 == pred.ndim()
            && shape::same(&labels.shape()[..axis], before)
            && shape::same(&labels.shape()[axis..], &after[1..]);
        if !fits {
            let mut unit_shape = pred.shape().to_vec();
            unit_shape.remove(axis);
            return Err(LossError::Shape {
                loss: NAME,
                pred: pred.shape().to_vec(),
                target: labels.shape().to_vec(),
                expected: format!(
                    "labels must have shape {unit_shape:?} (the prediction without its class axis {axis})"
                ),
            });
        }
        let ignored = check_labels(NAME, labels, classes, self.ignore_index)?;
        c.check(NAME, classes)?;
        let keras = c.convention == Convention::Keras;
        let input = c.input;
        let plain = c.class_weights.is_none() && c.label_smoothing == 0.0;
        let mut buffer = buffer;
        if plain && input == Input::Logits {
            // Every row weighs the same without sample weights or ignored
            // labels: the kernel applies the reduction's coefficient itself.
            let grad_coef = match (sample_weight, &ignored) {
                (None, None) => uniform_coef::<T>(c.reduction, labels.len(), pred.shape(), None),
                _ => None,
            };
            let coef = grad_coef.unwrap_or(T::ONE);
            let y = labels.as_slice();
            let blocks = rowwise_blocks(pred, y, axis, &mut buffer, grad_coef, |x, y, g, v| {
                sparse_logits_block(x, y, classes, g, v, coef)
            });
            if let Some(mut units) = blocks {
                units.ignored = ignored;
                units.grad_final = grad_coef.is_some();
                return finish(NAME, units, c.reduction, sample_weight);
            }
        }
        let weights = c.weights(classes);
        let inner: Vec<T> = if keras {
            vec![T::ONE; classes]
        } else {
            weights.iter().map(|&w| T::from_f64(w)).collect()
        };
        let eps = T::from_f64(c.label_smoothing);
        let off = eps / T::from_usize(classes);
        let mut units = rowwise_labels(pred, labels, axis, buffer, |x, y, g| {
            if y < 0 || y as usize >= classes {
                return T::ZERO; // ignored: finish zeroes the gradient
            }
            let y = y as usize;
            if plain {
                let onehot = |k: usize| if k == y { T::ONE } else { T::ZERO };
                return match input {
                    Input::Logits => logits_row(x, onehot, g),
                    Input::Probabilities => keras_sparse_probability_row(x, onehot, g),
                    Input::LogProbabilities => log_probability_row(x, onehot, g),
                };
            }
            let a = |k: usize| inner[k] * (if k == y { T::ONE - eps + off } else { off });
            match input {
                Input::Logits => logits_row(x, a, g),
                Input::Probabilities => keras_sparse_probability_row(x, a, g),
                Input::LogProbabilities => log_probability_row(x, a, g),
            }
        });
        let target_weight = labels.mapv(|y| {
            if y >= 0 && (y as usize) < classes {
                weights[y as usize]
            } else {
                0.0
            }
        });
        if keras {
            if c.class_weights.is_some() {
                units.weights = Some(target_weight.mapv(T::from_f64));
            }
        } else if c.class_weights.is_some() {
            units.mean_divisor = Some(match &ignored {
                Some(ignored) => target_weight
                    .iter()
                    .zip(ignored)
                    .filter(|(_, ig)| !**ig)
                    .map(|(w, _)| w)
                    .sum(),
                None => target_weight.iter().sum(),
            });
        }
        units.ignored = ignored;
        finish(NAME, units, c.reduction, sample_weight)
    }
}

/// Keras' TensorFlow backend for sparse labels on probabilities: clip each
/// probability to `[eps, 1 - eps]`, then renormalise: `-sum a_j ln(q_j / S)`.
fn keras_sparse_probability_row<T: Float>(
    p: ArrayView1<'_, T>,
    a: impl Fn(usize) -> T,
    mut g: ArrayViewMut1<'_, T>,
) -> T {
    let eps = T::from_f64(KERAS_EPSILON);
    let clip = |v: T| v.max(eps).min(T::ONE - eps);
    let sum: T = p.iter().map(|&v| clip(v)).sum();
    let total_a: T = (0..p.len()).map(&a).sum();
    let mut value = total_a * sum.ln();
    for (j, (&pv, gv)) in p.iter().zip(g.iter_mut()).enumerate() {
        let av = a(j);
        let q = clip(pv);
        if av != T::ZERO {
            value -= av * q.ln();
        }
        let inside = pv >= eps && pv <= T::ONE - eps;
        *gv = if inside {
            total_a / sum - av / q
        } else {
            T::ZERO
        };
    }
    value
}

/// Validates labels; returns which units are ignored.
pub(crate) fn check_labels(
    loss: &'static str,
    labels: &ArrayD<i64>,
    classes: usize,
    ignore: Option<i64>,
) -> Result<Option<ArrayD<bool>>> {
    let bad = |y: i64| Some(y) != ignore && (y < 0 || y as usize >= classes);
    let ignored = |y: i64| Some(y) == ignore;
    // Flat scans that count, branch-free and with AVX2 when the CPU has it
    // (SSE2 has no 64-bit comparison), so that they vectorise (their share
    // of a 65536-row CE call on one core: 3.6% -> 1.6%). A negative label is a huge unsigned one, so one
    // comparison covers both ends. The (slow, n-d) position of a bad label
    // is found only on the error path.
    let limit = classes as u64;
    let (any_bad, any_ignored) = match (labels.as_slice(), ignore) {
        (Some(flat), None) => {
            let out = with_simd(|| {
                flat.iter()
                    .map(|&y| (y as u64 >= limit) as u64)
                    .sum::<u64>()
            });
            (out > 0, false)
        }
        (Some(flat), Some(ig)) => {
            let (out, ignored) = with_simd(|| {
                let out = flat
                    .iter()
                    .map(|&y| (y as u64 >= limit) as u64)
                    .sum::<u64>();
                let ignored = flat.iter().map(|&y| (y == ig) as u64).sum::<u64>();
                (out, ignored)
            });
            // The ignored label may itself be out of range (PyTorch's -100).
            let ig_out = if ig as u64 >= limit { ignored } else { 0 };
            (out > ig_out, ignored > 0)
        }
        (None, _) => (
            labels.iter().any(|&y| bad(y)),
            labels.iter().any(|&y| ignored(y)),
        ),
    };
    if any_bad {
        let (pos, &y) = labels
            .indexed_iter()
            .find(|(_, y)| bad(**y))
            .expect("a bad label was seen by the flat scan");
        return Err(LossError::Label {
            loss,
            label: y,
            position: pos.slice().to_vec(),
            classes,
        });
    }
    // Which units are ignored; `None` when none are (no mask to carry).
    Ok(match ignore {
        Some(ig) if any_ignored => Some(labels.mapv(|y| y == ig)),
        _ => None,
    })
}
