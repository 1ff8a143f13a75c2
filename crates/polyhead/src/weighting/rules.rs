//! The update rules of the weighting strategies as plain functions of
//! numbers, each beside its paper's formula, so each can be checked by hand.

use polyhead_tensor::Rng;

/// Dynamic Weight Averaging (Liu, Johns & Davison, "End-to-End Multi-Task
/// Learning with Attention", CVPR 2019): from each loss's last two epoch
/// means, `r_i = L_i(t-1) / L_i(t-2)` and
/// `w_i = K exp(r_i / T) / sum_j exp(r_j / T)`.
///
/// ```
/// let w = polyhead::weighting::dwa_weights(&[1.0, 1.0], &[0.5, 1.0], 2.0);
/// // r = (0.5, 1.0); the loss that fell less gets more weight.
/// let (a, b) = ((0.25f64).exp(), (0.5f64).exp());
/// assert!((w[0] - 2.0 * a / (a + b)).abs() < 1e-15);
/// assert!((w[1] - 2.0 * b / (a + b)).abs() < 1e-15);
/// ```
pub fn dwa_weights(before_last: &[f64], last: &[f64], temperature: f64) -> Vec<f64> {
    let k = last.len() as f64;
    let e: Vec<f64> = last
        .iter()
        .zip(before_last)
        .map(|(l, p)| (l / p / temperature).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| k * v / s).collect()
}

/// One GradNorm update (Chen et al., "GradNorm", ICML 2018). With
/// `G_i = w_i ||grad_W L_i||` on the last shared layer `W`, the relative
/// inverse training rate `r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))`, and
/// the constant target `G_bar * r_i^alpha`, the loss `sum_i |G_i - target_i|`
/// has gradient `sign(G_i - target_i) ||grad_W L_i||` in `w_i`. One step of
/// size `lr`, then the weights are renormalised to sum to the number of
/// losses (and kept positive).
///
/// ```
/// // Two losses, equal rates: the targets are the mean norm, so the head
/// // with the larger gradient loses weight.
/// let w = polyhead::weighting::gradnorm_update(&[1.0, 1.0], &[3.0, 1.0], &[1.0, 1.0], &[1.0, 1.0], 1.5, 0.1);
/// // G = (3, 1), G_bar = 2: w0 -= 0.1 * 3, w1 += 0.1 * 1 -> (0.7, 1.1), renormalised to sum 2.
/// assert!((w[0] - 2.0 * 0.7 / 1.8).abs() < 1e-12 && (w[1] - 2.0 * 1.1 / 1.8).abs() < 1e-12);
/// ```
pub fn gradnorm_update(
    weights: &[f64],
    grad_norms: &[f64],
    losses: &[f64],
    initial: &[f64],
    alpha: f64,
    lr: f64,
) -> Vec<f64> {
    let k = weights.len() as f64;
    let g: Vec<f64> = weights.iter().zip(grad_norms).map(|(w, n)| w * n).collect();
    let g_bar = g.iter().sum::<f64>() / k;
    let rates: Vec<f64> = losses.iter().zip(initial).map(|(l, l0)| l / l0).collect();
    let mean_rate = rates.iter().sum::<f64>() / k;
    let mut w: Vec<f64> = weights
        .iter()
        .zip(&g)
        .zip(grad_norms.iter().zip(&rates))
        .map(|((w, gi), (n, r))| {
            let target = g_bar * (r / mean_rate).powf(alpha);
            let d = (gi - target).signum() * n;
            (w - lr * d).max(1e-6)
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v *= k / s);
    w
}

/// PCGrad's gradient surgery (Yu et al., "Gradient Surgery for Multi-Task
/// Learning", NeurIPS 2020): for each task `i`, for the other tasks `j` in
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

/// The softmax of FAMO's logits: the task weights `z`.
///
/// ```
/// let z = polyhead::weighting::softmax(&[0.0, 0.0]);
/// assert_eq!(z, vec![0.5, 0.5]);
/// ```
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The gradient FAMO (Liu et al., "FAMO: Fast Adaptive Multitask
/// Optimization", NeurIPS 2023) applies to its logits after a step: with
/// `z = softmax(xi)` and each loss's decrease `delta_i = log L_i - log L_i'`
/// (before and after the update), `J^T delta` where `J = diag(z) - z z^T`,
/// i.e. `z_i (delta_i - sum_j z_j delta_j)`. Descending it moves weight
/// towards the losses that improved least.
///
/// ```
/// let g = polyhead::weighting::famo_logit_gradient(&[0.0, 0.0], &[0.2, 0.0]);
/// assert_eq!(g, vec![0.05, -0.05]); // z = (0.5, 0.5), mean delta 0.1
/// ```
pub fn famo_logit_gradient(logits: &[f64], delta: &[f64]) -> Vec<f64> {
    let z = softmax(logits);
    let mean: f64 = z.iter().zip(delta).map(|(a, b)| a * b).sum();
    z.iter().zip(delta).map(|(zi, d)| zi * (d - mean)).collect()
}
