//! Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for
//! Multi-Task Learning", NeurIPS 2020.

use polyhead_tensor::{Float, Rng};

use super::{Combination, GradientSpace, Needs, Step, Weighting};
use crate::error::{Error, Result};

/// PCGrad's gradient surgery: for each task `i`, for the other tasks `j` in
/// a random order, where `g_i . g_j < 0` project `g_i` onto `g_j`'s normal
/// plane, `g_i -= (g_i . g_j / |g_j|^2) g_j` (projecting against the
/// original `g_j`). Returns the sum of the projected gradients.
///
/// ```
/// use polyhead::tensor::Rng;
/// let g = vec![vec![1.0, 0.0], vec![-1.0, 1.0]]; // conflicting: dot = -1
/// let sum = polyhead::weighting::pcgrad_combine(&g, &mut Rng::new(0));
/// // g0 -> (1,0) + 0.5 (-1,1) = (0.5, 0.5); g1 -> (-1,1) + (1,0) = (0, 1).
/// assert_eq!(sum, vec![0.5, 1.5]);
/// ```
pub fn pcgrad_combine(grads: &[Vec<f64>], rng: &mut Rng) -> Vec<f64> {
    let dim = grads.first().map_or(0, Vec::len);
    let mut total = vec![0.0; dim];
    for (i, gi) in grads.iter().enumerate() {
        let mut g = gi.clone();
        let mut others: Vec<usize> = (0..grads.len()).filter(|&j| j != i).collect();
        rng.shuffle(&mut others);
        for j in others {
            let gj = &grads[j];
            let dot: f64 = g.iter().zip(gj).map(|(a, b)| a * b).sum();
            let norm2: f64 = gj.iter().map(|b| b * b).sum();
            if dot < 0.0 && norm2 > 0.0 {
                g.iter_mut()
                    .zip(gj)
                    .for_each(|(a, b)| *a -= dot / norm2 * b);
            }
        }
        total.iter_mut().zip(&g).for_each(|(t, v)| *t += v);
    }
    total
}

/// PCGrad: each head's gradient (of its weighted loss) on the shared
/// parameters, conflicting ones projected ([`pcgrad_combine`]); the heads'
/// own parameters get their usual gradients.
///
/// ```
/// use polyhead::weighting::{PcGrad, Weighting};
/// let cheap = PcGrad::new().rep_grad(true);
/// assert_eq!(Weighting::<f32>::name(&cheap), "pcgrad");
/// ```
#[derive(Debug, Clone)]
pub struct PcGrad {
    rep_grad: bool,
    rng: Rng,
}

impl Default for PcGrad {
    fn default() -> Self {
        Self::new()
    }
}

impl PcGrad {
    /// PCGrad on the shared parameters, projection order from seed 0.
    ///
    /// ```
    /// let p = polyhead::weighting::PcGrad::new();
    /// # let _ = p;
    /// ```
    pub fn new() -> Self {
        PcGrad {
            rep_grad: false,
            rng: Rng::new(0),
        }
    }

    /// Gradients with respect to the trunk's output (cheap mode).
    ///
    /// ```
    /// let p = polyhead::weighting::PcGrad::new().rep_grad(true);
    /// # let _ = p;
    /// ```
    pub fn rep_grad(mut self, on: bool) -> Self {
        self.rep_grad = on;
        self
    }
}

impl<T: Float> Weighting<T> for PcGrad {
    fn name(&self) -> &str {
        "pcgrad"
    }

    fn needs(&self) -> Needs {
        Needs {
            head_gradients: Some(if self.rep_grad {
                GradientSpace::Representation
            } else {
                GradientSpace::SharedParameters
            }),
            ..Needs::default()
        }
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let rows = step.head_gradients.ok_or_else(|| Error::Weighting {
            strategy: "pcgrad".into(),
            message: "no head gradients were given".into(),
        })?;
        Ok(Combination::Direction {
            shared: pcgrad_combine(rows, &mut self.rng),
            head_weights: step.loss_weights.to_vec(),
            shared_weights: None,
        })
    }
}
