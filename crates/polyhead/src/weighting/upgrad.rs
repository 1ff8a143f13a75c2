//! Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization",
//! 2024 (UPGrad, as TorchJD implements it).

use polyhead_tensor::Float;

use super::{
    Combination, Needs, Step, Weighting, gram, rows, solver_error, space, weighted_direction,
};
use crate::error::Result;
use polyhead_solve::{Cone, conic_best_effort, solve_linear};

/// UPGrad's weights from the Gram matrix of the head gradients: each
/// gradient, weighted `1/K`, is projected onto the dual cone of all of
/// them (`v_i = argmin_{v >= e_i / K} v^T G v`, a quadratic program solved
/// by Clarabel), and the projections are summed: `w = sum_i v_i`. `G` is
/// normalised by its trace and `regularization` times the identity added
/// (TorchJD's defaults: 1e-4). The solver's answer is polished on its
/// active set to machine precision. Without regularisation the combination
/// `d = sum_j w_j g_j` conflicts with no head: `g_j . d >= 0`.
///
/// ```
/// // Two conflicting gradients (1, 0) and (-1, 1) (their Gram matrix):
/// // d = w_0 g_0 + w_1 g_1 makes a non-negative product with both.
/// let g = [vec![1.0, -1.0], vec![-1.0, 2.0]];
/// let w = polyhead::weighting::upgrad_weights(&g, 0.0)?;
/// let d = [w[0] - w[1], w[1]];
/// assert!(d[0] >= -1e-9 && -d[0] + d[1] >= -1e-9);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn upgrad_weights(gram: &[Vec<f64>], regularization: f64) -> Result<Vec<f64>> {
    let k = gram.len();
    let trace: f64 = (0..k).map(|i| gram[i][i]).sum();
    if k == 0 || trace <= 0.0 {
        return Ok(vec![0.0; k]);
    }
    let p: Vec<Vec<f64>> = (0..k)
        .map(|r| {
            (0..k)
                .map(|c| 2.0 * (gram[r][c] / trace + regularization * f64::from(u8::from(r == c))))
                .collect()
        })
        .collect();
    // v >= u as -v + s = -u, s >= 0.
    let a: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| -f64::from(u8::from(i == j))).collect())
        .collect();
    let mut w = vec![0.0; k];
    for i in 0..k {
        let b: Vec<f64> = (0..k)
            .map(|j| -f64::from(u8::from(i == j)) / k as f64)
            .collect();
        // Where strict complementarity fails (a constraint active with a
        // zero multiplier) Clarabel may stop at its iteration limit on an
        // answer that is right; the polish below checks it.
        let v = conic_best_effort(&p, &vec![0.0; k], &a, &b, &[Cone::Nonnegative(k)])
            .map_err(solver_error("upgrad"))?;
        let u: Vec<f64> = b.iter().map(|x| -x).collect();
        let v = polish(&p, &u, v);
        w.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
    }
    Ok(w)
}

/// The interior-point answer `v` of `min 1/2 v^T P v` on `v >= u` made
/// exact: with the constraints it leaves (nearly) active held as
/// equalities, the others' values solve `P_FF v_F = -P_FA u_A`; kept if
/// that point satisfies the optimality conditions (`v_F >= u_F`, the active
/// multipliers `(P v)_A >= 0`), else the solver's answer stands.
fn polish(p: &[Vec<f64>], u: &[f64], v: Vec<f64>) -> Vec<f64> {
    let k = u.len();
    let scale = u.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    let active: Vec<bool> = (0..k).map(|j| v[j] - u[j] <= 1e-6 * scale).collect();
    let free: Vec<usize> = (0..k).filter(|&j| !active[j]).collect();
    let mut exact = u.to_vec();
    if !free.is_empty() {
        let m: Vec<Vec<f64>> = free
            .iter()
            .map(|&r| free.iter().map(|&c| p[r][c]).collect())
            .collect();
        let rhs: Vec<f64> = free
            .iter()
            .map(|&r| {
                -(0..k)
                    .filter(|&c| active[c])
                    .map(|c| p[r][c] * u[c])
                    .sum::<f64>()
            })
            .collect();
        let Some(x) = solve_linear(&m, &rhs) else {
            return v;
        };
        for (&j, xj) in free.iter().zip(x) {
            exact[j] = xj;
        }
    }
    let gradient: Vec<f64> = (0..k)
        .map(|r| (0..k).map(|c| p[r][c] * exact[c]).sum())
        .collect();
    let size = gradient.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
    let optimal = (0..k).all(|j| {
        if active[j] {
            gradient[j] >= -1e-9 * size
        } else {
            exact[j] >= u[j]
        }
    });
    if optimal { exact } else { v }
}

/// UPGrad (Jacobian descent): the shared parameters move along the mean of
/// the head gradients (of the declared-weight losses) each projected onto
/// the dual cone of all of them ([`upgrad_weights`]), a direction that
/// decreases no head's loss less than zero to first order; the heads' own
/// parameters follow their own losses. Logged weights: `w_i w_decl_i`.
///
/// ```
/// use polyhead::weighting::{UpGrad, Weighting};
/// let exact = UpGrad::new().regularization(0.0);
/// assert_eq!(Weighting::<f32>::name(&exact), "upgrad");
/// ```
#[derive(Debug, Clone)]
pub struct UpGrad {
    regularization: f64,
    rep_grad: bool,
}

impl Default for UpGrad {
    fn default() -> Self {
        Self::new()
    }
}

impl UpGrad {
    /// UPGrad with TorchJD's regularisation 1e-4, on the shared parameters.
    ///
    /// ```
    /// let w = polyhead::weighting::UpGrad::new();
    /// # let _ = w;
    /// ```
    pub fn new() -> Self {
        UpGrad {
            regularization: 1e-4,
            rep_grad: false,
        }
    }

    /// The multiple of the identity added to the trace-normalised Gram
    /// matrix (0: the exact projection).
    ///
    /// ```
    /// let w = polyhead::weighting::UpGrad::new().regularization(0.0);
    /// # let _ = w;
    /// ```
    pub fn regularization(mut self, regularization: f64) -> Self {
        self.regularization = regularization;
        self
    }

    /// Gradients with respect to the shared representation.
    ///
    /// ```
    /// let w = polyhead::weighting::UpGrad::new().rep_grad(true);
    /// # let _ = w;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }
}

impl<T: Float> Weighting<T> for UpGrad {
    fn name(&self) -> &str {
        "upgrad"
    }

    fn needs(&self) -> Needs {
        space(self.rep_grad)
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = rows(step, "upgrad")?;
        let w = upgrad_weights(&gram(rows), self.regularization)?;
        Ok(weighted_direction(step, rows, &w))
    }
}
