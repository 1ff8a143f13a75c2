//! Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component
//! Alignment for Multi-Task Learning", CVPR 2023 (Aligned-MTL).

use polyhead_tensor::Float;

use super::{Combination, Needs, Step, Weighting, gram, rows, space, weighted_direction};
use crate::error::Result;
use polyhead_solve::symmetric_eigen;

/// Aligned-MTL's alignment `B` from the Gram matrix `M = G G^T` of the
/// head gradients: with `M = V Lambda V^T` on its numerical rank
/// (eigenvalues above `max(Lambda) K eps`, `eps` float32's as in LibMTL)
/// and `sigma_min^2` the smallest kept eigenvalue,
/// `B = sigma_min V Lambda^-1/2 V^T`, which makes the aligned gradients
/// `B G` orthogonal with equal norms `sigma_min` (condition number 1):
/// `B M B = sigma_min^2 I` on the rank.
///
/// ```
/// // Orthogonal gradients of norms 1 and 2: each is scaled to norm 1.
/// let b = polyhead::weighting::alignment(&[vec![1.0, 0.0], vec![0.0, 4.0]]);
/// assert!((b[0][0] - 1.0).abs() < 1e-12 && (b[1][1] - 0.5).abs() < 1e-12 && b[0][1].abs() < 1e-12);
/// ```
pub fn alignment(gram: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let k = gram.len();
    let (values, vectors) = symmetric_eigen(gram);
    let largest = values.iter().copied().fold(0.0f64, f64::max);
    let tolerance = largest * k as f64 * f64::from(f32::EPSILON);
    let kept: Vec<usize> = (0..k).filter(|&e| values[e] > tolerance).collect();
    let Some(smallest) = kept.iter().map(|&e| values[e]).reduce(f64::min) else {
        return vec![vec![0.0; k]; k];
    };
    let sigma = smallest.sqrt();
    (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    kept.iter()
                        .map(|&e| sigma * vectors[i][e] * vectors[j][e] / values[e].sqrt())
                        .sum()
                })
                .collect()
        })
        .collect()
}

/// Aligned-MTL's weights: `alpha = B 1` ([`alignment`]; each head weighs 1
/// before alignment), so `sum_i alpha_i g_i` is the sum of the aligned
/// gradients.
///
/// ```
/// let a = polyhead::weighting::aligned_weights(&[vec![1.0, 0.0], vec![0.0, 4.0]]);
/// assert!((a[0] - 1.0).abs() < 1e-12 && (a[1] - 0.5).abs() < 1e-12);
/// ```
pub fn aligned_weights(gram: &[Vec<f64>]) -> Vec<f64> {
    alignment(gram).iter().map(|row| row.iter().sum()).collect()
}

/// Aligned-MTL: the shared parameters move along the head gradients (of
/// the declared-weight losses) aligned to condition number 1
/// ([`aligned_weights`]), which removes both conflict and dominance of one
/// head by magnitude; the heads' own parameters follow their own losses.
/// Logged weights: `alpha_i w_i`.
///
/// ```
/// use polyhead::weighting::{AlignedMtl, Weighting};
/// assert_eq!(Weighting::<f32>::name(&AlignedMtl::new()), "aligned_mtl");
/// ```
#[derive(Debug, Clone, Default)]
pub struct AlignedMtl {
    rep_grad: bool,
}

impl AlignedMtl {
    /// Aligned-MTL on the shared parameters.
    ///
    /// ```
    /// let w = polyhead::weighting::AlignedMtl::new();
    /// # let _ = w;
    /// ```
    pub fn new() -> Self {
        AlignedMtl { rep_grad: false }
    }

    /// Gradients with respect to the shared representation (the paper's
    /// Aligned-MTL-UB).
    ///
    /// ```
    /// let w = polyhead::weighting::AlignedMtl::new().rep_grad(true);
    /// # let _ = w;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }
}

impl<T: Float> Weighting<T> for AlignedMtl {
    fn name(&self) -> &str {
        "aligned_mtl"
    }

    fn needs(&self) -> Needs {
        space(self.rep_grad)
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = rows(step, "aligned_mtl")?;
        let alpha = aligned_weights(&gram(rows));
        Ok(weighted_direction(step, rows, &alpha))
    }
}
