//! Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial
//! Multi-task Learning", ICLR 2021 (IMTL-G, the gradient balancing half).

use polyhead_tensor::Float;

use super::{Combination, Needs, Step, Weighting, gram, rows, space, weighted_direction};
use crate::error::{Error, Result};
use polyhead_solve::solve_linear;

/// IMTL-G's weights `alpha` (summing to 1) from the Gram matrix of the
/// head gradients: the combination `d = sum_i alpha_i g_i` has the same
/// projection on every head's unit gradient `u_i = g_i / |g_i|`. With the
/// first head as reference, `D = [g_1 - g_i]`, `U = [u_1 - u_i]` (`i > 1`):
/// `alpha_{2..} = g_1 U^T (D U^T)^-1` and `alpha_1 = 1 - sum alpha_{2..}`
/// (the paper's closed form, as LibMTL computes it).
///
/// ```
/// // Orthogonal gradients of norms 1 and 2: equal projections need
/// // alpha_1 |g_1| = alpha_2 |g_2|, so alpha = (2/3, 1/3).
/// let a = polyhead::weighting::imtl_weights(&[vec![1.0, 0.0], vec![0.0, 4.0]])?;
/// assert!((a[0] - 2.0 / 3.0).abs() < 1e-12 && (a[1] - 1.0 / 3.0).abs() < 1e-12);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn imtl_weights(gram: &[Vec<f64>]) -> Result<Vec<f64>> {
    let k = gram.len();
    if k < 2 {
        return Ok(vec![1.0; k]);
    }
    let norms: Vec<f64> = (0..k).map(|i| gram[i][i].sqrt()).collect();
    if let Some(i) = norms.iter().position(|&n| n == 0.0) {
        return Err(Error::Weighting {
            strategy: "imtl".into(),
            message: format!("head {i}'s gradient is zero, so it has no direction to balance"),
        });
    }
    // g_a . u_b = G_ab / |g_b|.
    let gu = |a: usize, b: usize| gram[a][b] / norms[b];
    // (g_1 - g_i) . (u_1 - u_j) and g_1 . (u_1 - u_j), for i, j > 1.
    let m: Vec<Vec<f64>> = (1..k)
        .map(|i| {
            (1..k)
                .map(|j| gu(0, 0) - gu(0, j) - gu(i, 0) + gu(i, j))
                .collect()
        })
        .collect();
    let a: Vec<f64> = (1..k).map(|j| gu(0, 0) - gu(0, j)).collect();
    // alpha' M = a, i.e. M^T alpha'^T = a^T.
    let mt: Vec<Vec<f64>> = (0..k - 1)
        .map(|r| (0..k - 1).map(|c| m[c][r]).collect())
        .collect();
    let rest = solve_linear(&mt, &a).ok_or_else(|| Error::Weighting {
        strategy: "imtl".into(),
        message: "the head gradients are linearly dependent, so no combination projects equally on all of them".into(),
    })?;
    let mut alpha = vec![1.0 - rest.iter().sum::<f64>()];
    alpha.extend(rest);
    Ok(alpha)
}

/// IMTL-G: the shared parameters move along the combination of the head
/// gradients (of the declared-weight losses) that projects equally on every
/// head's gradient direction ([`imtl_weights`]); the heads' own parameters
/// follow their own losses. (The paper's IMTL-L, learned loss scales, is
/// not included.) Logged weights: `alpha_i w_i`.
///
/// ```
/// use polyhead::weighting::{ImtlG, Weighting};
/// assert_eq!(Weighting::<f32>::name(&ImtlG::new()), "imtl");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ImtlG {
    rep_grad: bool,
}

impl ImtlG {
    /// IMTL-G on the shared parameters.
    ///
    /// ```
    /// let m = polyhead::weighting::ImtlG::new();
    /// # let _ = m;
    /// ```
    pub fn new() -> Self {
        ImtlG { rep_grad: false }
    }

    /// Gradients with respect to the shared representation (LibMTL's
    /// `rep_grad`).
    ///
    /// ```
    /// let m = polyhead::weighting::ImtlG::new().rep_grad(true);
    /// # let _ = m;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }
}

impl<T: Float> Weighting<T> for ImtlG {
    fn name(&self) -> &str {
        "imtl"
    }

    fn needs(&self) -> Needs {
        space(self.rep_grad)
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = rows(step, "imtl")?;
        let alpha = imtl_weights(&gram(rows))?;
        Ok(weighted_direction(step, rows, &alpha))
    }
}
