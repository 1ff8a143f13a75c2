//! Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya,
//! "Multi-Task Learning as a Bargaining Game", ICML 2022 (Nash-MTL).

use polyhead_tensor::Float;

use super::{
    Combination, GradientSpace, Needs, Step, Weighting, combine_rows, gram, rows, solver_error,
    times,
};
use crate::error::{Error, Result};
use polyhead_solve::{Cone, conic_best_effort, solve_linear};

/// The Nash bargaining weights: `alpha > 0` with `G alpha = 1 / alpha`
/// (elementwise; the paper's characterisation, Claim 3.1, with `G` the
/// Gram matrix of the head gradients), so that `d = sum_i alpha_i g_i` has
/// `alpha_i (g_i . d) = 1` for every head. `G alpha = 1 / alpha` is the
/// stationarity condition of the convex `min 1/2 alpha^T G alpha -
/// sum_i log alpha_i`, solved by Clarabel with exponential cones (the
/// reference code approaches the same point by a sequence of convex
/// problems in cvxpy). `G` is first divided by its Frobenius norm (as the
/// reference code does) and `alpha` scaled back; Newton steps on the
/// condition polish the solver's answer.
///
/// ```
/// // Orthogonal gradients: alpha_i = 1 / |g_i|.
/// let a = polyhead::weighting::nash_weights(&[vec![1.0, 0.0], vec![0.0, 4.0]])?;
/// assert!((a[0] - 1.0).abs() < 1e-12 && (a[1] - 0.5).abs() < 1e-12);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn nash_weights(gram: &[Vec<f64>]) -> Result<Vec<f64>> {
    let k = gram.len();
    let norm: f64 = gram.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
    if k == 0 || norm == 0.0 {
        return Ok(vec![1.0; k]);
    }
    // Variables (alpha, t): minimise 1/2 alpha^T G alpha - sum t with
    // (t_i, 1, alpha_i) in the exponential cone (t_i <= log alpha_i).
    let n = 2 * k;
    let p: Vec<Vec<f64>> = (0..n)
        .map(|r| {
            (0..n)
                .map(|c| {
                    if r < k && c < k {
                        gram[r][c] / norm
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut q = vec![0.0; k];
    q.extend(std::iter::repeat_n(-1.0, k));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..k {
        a.push((0..n).map(|j| -f64::from(u8::from(j == k + i))).collect());
        b.push(0.0);
        a.push(vec![0.0; n]);
        b.push(1.0);
        a.push((0..n).map(|j| -f64::from(u8::from(j == i))).collect());
        b.push(0.0);
    }
    let cones = vec![Cone::Exponential; k];
    let x = conic_best_effort(&p, &q, &a, &b, &cones).map_err(solver_error("nash_mtl"))?;
    // Polish the interior-point answer (accurate to the solver's gap
    // tolerance, ~1e-5 here) with Newton steps on `G alpha - 1/alpha = 0`,
    // whose Jacobian `G + diag(1/alpha^2)` is positive definite.
    let g: Vec<Vec<f64>> = (0..k)
        .map(|r| (0..k).map(|c| gram[r][c] / norm).collect())
        .collect();
    let mut alpha: Vec<f64> = x[..k].iter().map(|v| v.max(1e-12)).collect();
    for _ in 0..8 {
        let residual: Vec<f64> = (0..k)
            .map(|i| (0..k).map(|j| g[i][j] * alpha[j]).sum::<f64>() - 1.0 / alpha[i])
            .collect();
        let jacobian: Vec<Vec<f64>> = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| {
                        g[i][j]
                            + if i == j {
                                1.0 / (alpha[i] * alpha[i])
                            } else {
                                0.0
                            }
                    })
                    .collect()
            })
            .collect();
        let Some(step) = solve_linear(&jacobian, &residual) else {
            break;
        };
        // Halve the step until alpha stays positive.
        let mut t = 1.0;
        while alpha.iter().zip(&step).any(|(a, s)| a - t * s <= 0.0) && t > 1e-6 {
            t *= 0.5;
        }
        alpha.iter_mut().zip(&step).for_each(|(a, s)| *a -= t * s);
        if residual.iter().map(|r| r.abs()).fold(0.0, f64::max) < 1e-15 {
            break;
        }
    }
    // The answer must meet the condition it stands for.
    let residual = (0..k)
        .map(|i| (alpha[i] * (0..k).map(|j| g[i][j] * alpha[j]).sum::<f64>() - 1.0).abs())
        .fold(0.0, f64::max);
    if residual.is_nan() || residual >= 1e-6 {
        return Err(Error::Weighting {
            strategy: "nash_mtl".into(),
            message: format!(
                "no bargaining solution (alpha_i g_i . d = 1 off by {residual:.1e}); the head gradients may conflict exactly"
            ),
        });
    }
    let scale = norm.sqrt();
    Ok(alpha.iter().map(|v| v / scale).collect())
}

/// Nash-MTL: the shared parameters move along `sum_i alpha_i g_i` with the
/// bargaining weights of [`nash_weights`] (gradients of the declared-weight
/// losses), clipped to norm `max_norm` (the reference code's default 1, as
/// it clips the shared parameters' gradient); the heads' own parameters
/// follow their own losses. Where the solver finds no solution (gradients
/// exactly opposed) the last step's weights are kept, as in the reference
/// code. Logged weights: `alpha_i w_i`.
///
/// ```
/// use polyhead::weighting::{NashMtl, Weighting};
/// let w = NashMtl::new().max_norm(Some(5.0));
/// assert_eq!(Weighting::<f32>::name(&w), "nash_mtl");
/// ```
#[derive(Debug, Clone)]
pub struct NashMtl {
    max_norm: Option<f64>,
    /// The last weights found (kept when the solver fails, as the
    /// reference code does).
    previous: Option<Vec<f64>>,
}

impl Default for NashMtl {
    fn default() -> Self {
        Self::new()
    }
}

impl NashMtl {
    /// Nash-MTL with the shared gradient clipped to norm 1.
    ///
    /// ```
    /// let w = polyhead::weighting::NashMtl::new();
    /// # let _ = w;
    /// ```
    pub fn new() -> Self {
        NashMtl {
            max_norm: Some(1.0),
            previous: None,
        }
    }

    /// The norm the shared gradient is clipped to (`None`: not clipped).
    ///
    /// ```
    /// let w = polyhead::weighting::NashMtl::new().max_norm(None);
    /// # let _ = w;
    /// ```
    pub fn max_norm(mut self, max_norm: Option<f64>) -> Self {
        self.max_norm = max_norm;
        self
    }
}

impl<T: Float> Weighting<T> for NashMtl {
    fn name(&self) -> &str {
        "nash_mtl"
    }

    fn needs(&self) -> Needs {
        Needs {
            head_gradients: Some(GradientSpace::SharedParameters),
            ..Needs::default()
        }
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = rows(step, "nash_mtl")?;
        // Where no bargaining solution exists (gradients exactly opposed,
        // a zero gradient), keep the last weights, as the reference code
        // does; an error if there are none.
        let mut alpha = match (nash_weights(&gram(rows)), &self.previous) {
            (Ok(alpha), _) => alpha,
            (Err(_), Some(previous)) if previous.len() == rows.len() => previous.clone(),
            (Err(e), _) => return Err(e),
        };
        self.previous = Some(alpha.clone());
        let mut shared = combine_rows(rows, &alpha);
        let norm = shared.iter().map(|v| v * v).sum::<f64>().sqrt();
        if let Some(max) = self.max_norm
            && norm > max
        {
            let f = max / norm;
            shared.iter_mut().for_each(|v| *v *= f);
            alpha.iter_mut().for_each(|v| *v *= f);
        }
        Ok(Combination::Direction {
            shared,
            head_weights: step.loss_weights.to_vec(),
            shared_weights: Some(times(&alpha, step.loss_weights)),
        })
    }
}
