//! Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
//! NeurIPS 2018 (MGDA, and MGDA-UB on the shared representation).

use polyhead_tensor::Float;

use super::{
    Combination, Needs, Step, Weighting, gram, rows, solver_error, space, weighted_direction,
};
use crate::error::Result;
use polyhead_solve::{Cone, conic_best_effort};

/// The weights `alpha` on the simplex whose combination `sum_i alpha_i g_i`
/// has the least norm: the min-norm point of the gradients' convex hull
/// (the paper's Algorithm 2 problem), from their Gram matrix
/// `G_ij = g_i . g_j`. Two gradients: the paper's closed form
/// `alpha_0 = clamp(((g_1 - g_0) . g_1) / |g_0 - g_1|^2, 0, 1)`; more: the
/// quadratic program, exactly (Clarabel), where the paper runs
/// Frank-Wolfe to the same optimum.
///
/// ```
/// // Orthogonal gradients of norms 1 and 2 (Gram matrix diag(1, 4)):
/// // alpha = (0.8, 0.2), the point
/// // (0.8, 0.4) of norm^2 0.8 on the segment between them.
/// let a = polyhead::weighting::min_norm_weights(&[vec![1.0, 0.0], vec![0.0, 4.0]])?;
/// assert!((a[0] - 0.8).abs() < 1e-12 && (a[1] - 0.2).abs() < 1e-12);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn min_norm_weights(gram: &[Vec<f64>]) -> Result<Vec<f64>> {
    let k = gram.len();
    match k {
        0 => Ok(Vec::new()),
        1 => Ok(vec![1.0]),
        2 => {
            let denominator = gram[0][0] + gram[1][1] - 2.0 * gram[0][1];
            let gamma = if denominator > 0.0 {
                ((gram[1][1] - gram[0][1]) / denominator).clamp(0.0, 1.0)
            } else {
                0.5
            };
            Ok(vec![gamma, 1.0 - gamma])
        }
        _ => {
            // The minimiser does not change with G's scale: solve on G / max
            // diagonal, which keeps the solver's tolerances meaningful.
            let scale = (0..k).map(|i| gram[i][i]).fold(0.0f64, f64::max);
            if scale <= 0.0 {
                return Ok(vec![1.0 / k as f64; k]);
            }
            let p: Vec<Vec<f64>> = gram
                .iter()
                .map(|row| row.iter().map(|v| 2.0 * v / scale).collect())
                .collect();
            let mut a = vec![vec![1.0; k]];
            a.extend((0..k).map(|i| (0..k).map(|j| -f64::from(u8::from(i == j))).collect()));
            let mut b = vec![1.0];
            b.extend(std::iter::repeat_n(0.0, k));
            // Any point of the simplex is a convex combination, so an
            // iterate the solver could not finish polishing is still usable.
            let x = conic_best_effort(
                &p,
                &vec![0.0; k],
                &a,
                &b,
                &[Cone::Zero(1), Cone::Nonnegative(k)],
            )
            .map_err(solver_error("mgda"))?;
            // Back onto the simplex exactly (the solver's tolerance leaves
            // tiny negatives and a sum a hair off 1).
            let clipped: Vec<f64> = x.iter().map(|v| v.max(0.0)).collect();
            let s: f64 = clipped.iter().sum();
            Ok(clipped.iter().map(|v| v / s).collect())
        }
    }
}

/// MGDA: the shared parameters move along the min-norm point of the
/// heads' gradients' convex hull ([`min_norm_weights`]; the gradients are
/// of each loss times its declared weight), a direction that decreases
/// every loss to first order unless the point is 0 (Pareto-stationary);
/// each head's own parameters follow its own loss, as in the paper's
/// algorithm. With [`rep_grad`](Mgda::rep_grad) the gradients are taken on
/// the trunk's output: MGDA-UB, the paper's upper bound, one backward pass
/// through the trunk. Logged weights: `alpha_i w_i`.
///
/// ```
/// use polyhead::weighting::{Mgda, Weighting};
/// let ub = Mgda::new().rep_grad(true);
/// assert_eq!(Weighting::<f32>::name(&ub), "mgda");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Mgda {
    rep_grad: bool,
}

impl Mgda {
    /// MGDA on the shared parameters.
    ///
    /// ```
    /// let m = polyhead::weighting::Mgda::new();
    /// # let _ = m;
    /// ```
    pub fn new() -> Self {
        Mgda { rep_grad: false }
    }

    /// MGDA-UB: gradients with respect to the shared representation.
    ///
    /// ```
    /// let m = polyhead::weighting::Mgda::new().rep_grad(true);
    /// # let _ = m;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }
}

impl<T: Float> Weighting<T> for Mgda {
    fn name(&self) -> &str {
        "mgda"
    }

    fn needs(&self) -> Needs {
        space(self.rep_grad)
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = rows(step, "mgda")?;
        let alpha = min_norm_weights(&gram(rows))?;
        Ok(weighted_direction(step, rows, &alpha))
    }
}
