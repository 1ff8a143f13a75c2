//! Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for
//! Multi-task Learning", NeurIPS 2021.

use polyhead_tensor::Float;

use super::{
    Combination, Needs, Step, Weighting, gram, rows, solver_error, space, weighted_direction,
};
use crate::error::Result;
use polyhead_solve::{Cone, conic_best_effort, symmetric_eigen};

/// CAGrad's direction as weights on the head gradients: with the mean
/// gradient `g0`, `phi = c^2 |g0|^2` and `w` on the simplex minimising
/// `g_w . g0 + sqrt(phi) |g_w|` (the paper's dual, a second-order cone
/// program here, solved by Clarabel where the reference code runs SciPy's
/// SLSQP), the direction is `d = g0 + (sqrt(phi) / |g_w|) g_w`, rescaled by
/// `1 / (1 + c^2)` (the reference code's default `rescale = 1`). Returns
/// `beta` with `d = sum_i beta_i g_i`, and `w`.
///
/// ```
/// // c = 0 is plain averaging: beta = 1/K each.
/// let (beta, _) = polyhead::weighting::cagrad_weights(&[vec![1.0, 0.5], vec![0.5, 2.0]], 0.0)?;
/// assert!((beta[0] - 0.5).abs() < 1e-12 && (beta[1] - 0.5).abs() < 1e-12);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn cagrad_weights(gram: &[Vec<f64>], c: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = gram.len();
    let mean = 1.0 / k as f64;
    let g0_norm2: f64 = gram.iter().flatten().sum::<f64>() * mean * mean;
    let sqrt_phi = c * g0_norm2.max(0.0).sqrt();
    // Scaled by the largest squared gradient norm: the minimiser is
    // unchanged and the numbers O(1).
    let scale = (0..k).map(|i| gram[i][i]).fold(0.0f64, f64::max);
    if k < 2 || sqrt_phi <= 1e-12 * scale.sqrt() {
        return Ok((vec![mean / (1.0 + c * c); k], vec![mean; k]));
    }
    let b: Vec<f64> = gram
        .iter()
        .map(|row| row.iter().sum::<f64>() * mean / scale)
        .collect();
    // |g_w| = sqrt(scale) |M w| with M = Lambda^1/2 V^T (G / scale = V Lambda V^T).
    let scaled: Vec<Vec<f64>> = gram
        .iter()
        .map(|row| row.iter().map(|v| v / scale).collect())
        .collect();
    let (values, vectors) = symmetric_eigen(&scaled);
    let m: Vec<Vec<f64>> = (0..k)
        .map(|e| {
            let root = values[e].max(0.0).sqrt();
            (0..k).map(|i| root * vectors[i][e]).collect()
        })
        .collect();
    // Variables (w, t): minimise b . w + (sqrt_phi / sqrt(scale)) t, with
    // sum w = 1, w >= 0 and (t, M w) in the second-order cone.
    let n = k + 1;
    let mut q = b.clone();
    q.push(sqrt_phi / scale.sqrt());
    let mut a = vec![
        (0..n)
            .map(|j| f64::from(u8::from(j < k)))
            .collect::<Vec<_>>(),
    ];
    let mut rhs = vec![1.0];
    for i in 0..k {
        a.push((0..n).map(|j| -f64::from(u8::from(j == i))).collect());
        rhs.push(0.0);
    }
    a.push((0..n).map(|j| -f64::from(u8::from(j == k))).collect());
    rhs.push(0.0);
    for row in &m {
        let mut r: Vec<f64> = row.iter().map(|v| -v).collect();
        r.push(0.0);
        a.push(r);
        rhs.push(0.0);
    }
    // Any w on the simplex keeps d within the ball (|d - g0| = sqrt(phi)
    // by construction), so an iterate the solver could not finish
    // polishing is still a valid, if not the best, direction.
    let x = conic_best_effort(
        &[],
        &q,
        &a,
        &rhs,
        &[
            Cone::Zero(1),
            Cone::Nonnegative(k),
            Cone::SecondOrder(k + 1),
        ],
    )
    .map_err(solver_error("cagrad"))?;
    let clipped: Vec<f64> = x[..k].iter().map(|v| v.max(0.0)).collect();
    let s: f64 = clipped.iter().sum();
    let w: Vec<f64> = clipped.iter().map(|v| v / s).collect();
    let gw_norm2: f64 = (0..k)
        .map(|i| (0..k).map(|j| w[i] * gram[i][j] * w[j]).sum::<f64>())
        .sum();
    let lambda = if gw_norm2 > 0.0 {
        sqrt_phi / gw_norm2.sqrt()
    } else {
        0.0
    };
    let beta = w
        .iter()
        .map(|wi| (mean + lambda * wi) / (1.0 + c * c))
        .collect();
    Ok((beta, w))
}

/// CAGrad: the shared parameters move along the direction within
/// `c |g0|` of the mean gradient `g0` that most improves the worst head
/// ([`cagrad_weights`], `c = 0.4` by default as in the paper's experiments);
/// `c = 0` is plain averaging. The heads' own parameters follow their own
/// losses. Logged weights: `beta_i w_i`.
///
/// ```
/// use polyhead::weighting::{CaGrad, Weighting};
/// let w = CaGrad::new().c(0.5);
/// assert_eq!(Weighting::<f32>::name(&w), "cagrad");
/// ```
#[derive(Debug, Clone)]
pub struct CaGrad {
    c: f64,
    rep_grad: bool,
}

impl Default for CaGrad {
    fn default() -> Self {
        Self::new()
    }
}

impl CaGrad {
    /// CAGrad with `c = 0.4` on the shared parameters.
    ///
    /// ```
    /// let w = polyhead::weighting::CaGrad::new();
    /// # let _ = w;
    /// ```
    pub fn new() -> Self {
        CaGrad {
            c: 0.4,
            rep_grad: false,
        }
    }

    /// The radius `c` of the ball around the mean gradient (0 to 1).
    ///
    /// ```
    /// let w = polyhead::weighting::CaGrad::new().c(0.2);
    /// # let _ = w;
    /// ```
    pub fn c(mut self, c: f64) -> Self {
        self.c = c;
        self
    }

    /// Gradients with respect to the shared representation (LibMTL's
    /// `rep_grad`).
    ///
    /// ```
    /// let w = polyhead::weighting::CaGrad::new().rep_grad(true);
    /// # let _ = w;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }
}

impl<T: Float> Weighting<T> for CaGrad {
    fn name(&self) -> &str {
        "cagrad"
    }

    fn needs(&self) -> Needs {
        space(self.rep_grad)
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = rows(step, "cagrad")?;
        let (beta, _) = cagrad_weights(&gram(rows), self.c)?;
        Ok(weighted_direction(step, rows, &beta))
    }
}
