//! `gradcheck`: compares the tape's gradients with central finite
//! differences in f64, like `torch.autograd.gradcheck`. Use it to check a
//! custom op or loss before training with it.

use std::fmt;

use polyhead_tensor::{Rng, Tensor};

use crate::error::AutogradError;
use crate::tape::{Tape, Var};

/// How [`gradcheck`] compares.
///
/// ```
/// use polyhead_autograd::GradcheckOptions;
/// // Tighter than PyTorch's defaults, for well-conditioned f64 tests:
/// let strict = GradcheckOptions { atol: 1e-7, rtol: 1e-6, ..GradcheckOptions::default() };
/// assert_eq!(strict.eps, 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckOptions {
    /// Finite-difference step (PyTorch's default `1e-6`).
    pub eps: f64,
    /// Absolute tolerance (PyTorch's default `1e-5`).
    pub atol: f64,
    /// Relative tolerance, against the numeric value (PyTorch's `1e-3`).
    pub rtol: f64,
    /// Full Jacobian, or one random projection of it.
    pub mode: GradcheckMode,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            mode: GradcheckMode::Full,
        }
    }
}

/// Which comparison [`gradcheck`] makes.
///
/// ```
/// use polyhead_autograd::{GradcheckMode, GradcheckOptions};
/// let fast = GradcheckOptions { mode: GradcheckMode::Fast { seed: 7 }, ..Default::default() };
/// assert_ne!(fast.mode, GradcheckMode::Full);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradcheckMode {
    /// Every element of the Jacobian: one backward pass per output element
    /// and two forward passes per input element. Exact diagnosis; for small
    /// inputs.
    Full,
    /// PyTorch's fast mode: for random directions `u` (over the inputs) and
    /// `v` (over the output), compare `v^T J u` from one backward pass with
    /// the finite difference of `v^T f` along `u` (two forward passes).
    /// Cheap for large inputs; a wrong gradient is caught with probability
    /// one, but the report cannot name the element.
    Fast {
        /// Seed for the random directions.
        seed: u64,
    },
}

/// What a passing [`gradcheck`] compared.
///
/// ```
/// use polyhead_autograd::{gradcheck, GradcheckOptions};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![0.5, 1.5], &[2])?;
/// let report = gradcheck(|_, v| Ok(v[0].exp()), &[x], &GradcheckOptions::default())?;
/// assert_eq!(report.compared, 4); // a 2 x 2 Jacobian
/// assert!(report.max_abs_diff < 1e-8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckReport {
    /// Number of Jacobian entries (or projections, in fast mode) compared.
    pub compared: usize,
    /// The largest `|analytic - numeric|` seen.
    pub max_abs_diff: f64,
}

/// Why [`gradcheck`] failed.
///
/// ```
/// use polyhead_autograd::{gradcheck, GradcheckError, GradcheckOptions};
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![1.0], &[1])?;
/// // The function fails: the shapes do not multiply.
/// let err = gradcheck(|_, v| v[0].matmul(v[0]), &[x], &GradcheckOptions::default()).unwrap_err();
/// assert!(matches!(err, GradcheckError::Function(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum GradcheckError {
    /// The function itself returned an error.
    Function(AutogradError),
    /// An analytic gradient differs from the finite difference.
    Mismatch {
        /// Which input (position in `inputs`); `None` in fast mode, where
        /// all inputs are perturbed together.
        input: Option<usize>,
        /// The input element's multi-index (empty in fast mode).
        element: Vec<usize>,
        /// The output element's multi-index (empty in fast mode).
        output: Vec<usize>,
        /// The tape's value.
        analytic: f64,
        /// The central finite difference.
        numeric: f64,
        /// The allowed difference, `atol + rtol * |numeric|`.
        tolerance: f64,
    },
}

impl fmt::Display for GradcheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GradcheckError::Function(e) => write!(f, "gradcheck: the function failed: {e}"),
            GradcheckError::Mismatch {
                input: Some(input),
                element,
                output,
                analytic,
                numeric,
                tolerance,
            } => write!(
                f,
                "gradcheck: d output{output:?} / d input {input}{element:?}: analytic {analytic:e}, numeric {numeric:e}, difference {:e} exceeds tolerance {tolerance:e}",
                (analytic - numeric).abs()
            ),
            GradcheckError::Mismatch {
                input: None,
                analytic,
                numeric,
                tolerance,
                ..
            } => write!(
                f,
                "gradcheck (fast mode): v^T J u analytic {analytic:e}, numeric {numeric:e}, difference {:e} exceeds tolerance {tolerance:e}",
                (analytic - numeric).abs()
            ),
        }
    }
}

impl std::error::Error for GradcheckError {}

impl From<AutogradError> for GradcheckError {
    fn from(e: AutogradError) -> Self {
        GradcheckError::Function(e)
    }
}

/// Checks the gradients of `f` at `inputs` against central finite
/// differences in f64.
///
/// `f` receives a tape and one leaf per input and returns the output value
/// (any shape). An analytic entry `a` passes against the numeric `n` when
/// `|a - n| <= atol + rtol * |n|`. On failure the error names the input,
/// the element, the output element, both values and the tolerance.
///
/// Pass the closure directly (or a `fn` with an explicit lifetime,
/// `fn f<'t>(tape: &'t Tape<f64>, v: &[Var<'t, f64>]) -> Result<Var<'t, f64>>`):
/// a closure first stored in a `let` loses the signature that ties its
/// output to the tape, and the compiler rejects it.
///
/// ```
/// use polyhead_autograd::{gradcheck, GradcheckOptions, Tape};
/// use polyhead_tensor::Tensor;
///
/// // A custom loss composed of tape ops: mean of log(cosh(pred - target)).
/// let target = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3])?;
/// let pred = Tensor::from_vec(vec![0.1, 0.2, 0.3], &[3])?;
/// let report = gradcheck(
///     |tape: &Tape<f64>, v| {
///         let e = v[0].sub(tape.constant(target.clone()))?;
///         let cosh = e.exp().add(e.neg().exp())?.scale(0.5);
///         cosh.ln().mean_all()
///     },
///     &[pred],
///     &GradcheckOptions::default(),
/// )?;
/// assert_eq!(report.compared, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn gradcheck<F>(
    f: F,
    inputs: &[Tensor<f64>],
    options: &GradcheckOptions,
) -> Result<GradcheckReport, GradcheckError>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>, AutogradError>,
{
    let eval = |xs: &[Tensor<f64>]| -> Result<Tensor<f64>, GradcheckError> {
        let tape = Tape::no_record();
        let vars: Vec<_> = xs.iter().map(|x| tape.leaf(x.clone())).collect();
        Ok(f(&tape, &vars)?.value())
    };
    match options.mode {
        GradcheckMode::Full => full(&f, &eval, inputs, options),
        GradcheckMode::Fast { seed } => fast(&f, &eval, inputs, options, seed),
    }
}

fn within(analytic: f64, numeric: f64, o: &GradcheckOptions) -> Option<f64> {
    let tolerance = o.atol + o.rtol * numeric.abs();
    let ok = (analytic - numeric).abs() <= tolerance;
    if ok { None } else { Some(tolerance) }
}

/// Evaluates the function at given inputs without recording.
type Eval<'a> = &'a dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>, GradcheckError>;

fn full<F>(
    f: &F,
    eval: Eval<'_>,
    inputs: &[Tensor<f64>],
    o: &GradcheckOptions,
) -> Result<GradcheckReport, GradcheckError>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>, AutogradError>,
{
    // Analytic Jacobian rows: one backward pass per output element.
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&tape, &vars)?;
    let out_value = out.value();
    let out_shape = out_value.shape().to_vec();
    let n_out = out_value.len();
    // rows[o][i] = d out[o] / d input i, flattened in row-major order.
    let mut rows: Vec<Vec<Vec<f64>>> = Vec::with_capacity(n_out);
    for o in 0..n_out {
        let mut seed = vec![0.0; n_out];
        seed[o] = 1.0;
        let grads = tape.backward_with_seed(
            out,
            &Tensor::from_vec(seed, &out_shape).map_err(AutogradError::from)?,
        )?;
        rows.push(
            vars.iter()
                .map(|&v| grads.wrt(v).map(|g| g.to_vec()))
                .collect::<Result<_, _>>()?,
        );
    }
    // Numeric Jacobian columns: two forward passes per input element.
    let mut compared = 0;
    let mut max_abs_diff: f64 = 0.0;
    for (i, x) in inputs.iter().enumerate() {
        let base = x.to_vec();
        for e in 0..base.len() {
            let bumped = |delta: f64| -> Result<Tensor<f64>, GradcheckError> {
                let mut xs = inputs.to_vec();
                let mut v = base.clone();
                v[e] += delta;
                xs[i] = Tensor::from_vec(v, x.shape()).map_err(AutogradError::from)?;
                eval(&xs)
            };
            let (plus, minus) = (bumped(o.eps)?.to_vec(), bumped(-o.eps)?.to_vec());
            for (oi, row) in rows.iter().enumerate() {
                let numeric = (plus[oi] - minus[oi]) / (2.0 * o.eps);
                let analytic = row[i][e];
                compared += 1;
                let diff = (analytic - numeric).abs();
                max_abs_diff = if diff.is_nan() {
                    f64::NAN
                } else {
                    max_abs_diff.max(diff)
                };
                if let Some(tolerance) = within(analytic, numeric, o) {
                    return Err(GradcheckError::Mismatch {
                        input: Some(i),
                        element: unravel(e, x.shape()),
                        output: unravel(oi, &out_shape),
                        analytic,
                        numeric,
                        tolerance,
                    });
                }
            }
        }
    }
    Ok(GradcheckReport {
        compared,
        max_abs_diff,
    })
}

fn fast<F>(
    f: &F,
    eval: Eval<'_>,
    inputs: &[Tensor<f64>],
    o: &GradcheckOptions,
    seed: u64,
) -> Result<GradcheckReport, GradcheckError>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>, AutogradError>,
{
    let mut rng = Rng::new(seed);
    let mut random_like = |shape: &[usize]| -> Result<Tensor<f64>, GradcheckError> {
        let n = shape.iter().product();
        let v = (0..n).map(|_| rng.normal()).collect();
        Ok(Tensor::from_vec(v, shape).map_err(AutogradError::from)?)
    };
    let us: Vec<Tensor<f64>> = inputs
        .iter()
        .map(|x| random_like(x.shape()))
        .collect::<Result<_, _>>()?;
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&tape, &vars)?;
    let v = random_like(&out.shape())?;
    let grads = tape.backward_with_seed(out, &v)?;
    let mut analytic = 0.0;
    for (&var, u) in vars.iter().zip(&us) {
        let g = grads.wrt(var)?;
        analytic += g
            .to_vec()
            .iter()
            .zip(u.to_vec())
            .map(|(a, b)| a * b)
            .sum::<f64>();
    }
    let shifted = |sign: f64| -> Result<f64, GradcheckError> {
        let xs: Vec<Tensor<f64>> = inputs
            .iter()
            .zip(&us)
            .map(|(x, u)| x.add(&u.mul_scalar(sign * o.eps)))
            .collect::<Result<_, _>>()
            .map_err(AutogradError::from)?;
        let y = eval(&xs)?;
        Ok(y.to_vec().iter().zip(v.to_vec()).map(|(a, b)| a * b).sum())
    };
    let numeric = (shifted(1.0)? - shifted(-1.0)?) / (2.0 * o.eps);
    if let Some(tolerance) = within(analytic, numeric, o) {
        return Err(GradcheckError::Mismatch {
            input: None,
            element: vec![],
            output: vec![],
            analytic,
            numeric,
            tolerance,
        });
    }
    Ok(GradcheckReport {
        compared: 1,
        max_abs_diff: (analytic - numeric).abs(),
    })
}

/// The multi-index of flat (row-major) position `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &d) in index.iter_mut().zip(shape).rev() {
        *slot = flat % d;
        flat /= d;
    }
    index
}
