//! One property test per op: the tape's gradient equals central finite
//! differences in f64, over random shapes (including size-1 and broadcast
//! axes) and well-conditioned values (kept away from kinks and ties).
//!
//! Tolerance: `gradcheck` with eps = 1e-6 has truncation error ~eps^2 * |f'''|
//! ~ 1e-12 and rounding error ~ 2^-52 * |f| / eps ~ 2e-10 * |f|; the values
//! here keep |f| below ~50, so atol = 1e-7 with rtol = 1e-6 leaves a margin
//! of more than 10x while being 100x tighter than PyTorch's defaults.

use ndarray::ArrayD;
use polyhead_autograd::{GradcheckOptions, Result, Tape, Var, gradcheck};
use polyhead_tensor::Tensor;
use proptest::prelude::*;

fn options() -> GradcheckOptions {
    GradcheckOptions {
        atol: 1e-7,
        rtol: 1e-6,
        ..GradcheckOptions::default()
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("POLYHEAD_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// A shape of rank 1..=3 with axes of length 1..=3.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=3, 1..=3)
}

/// A shape and a second shape that broadcasts against it: some axes set to
/// 1, possibly fewer leading axes, possibly the two swapped.
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        shape(),
        prop::collection::vec(any::<bool>(), 3),
        0usize..=2,
        any::<bool>(),
    )
        .prop_map(|(a, ones, drop, swap)| {
            let mut b: Vec<usize> = a
                .iter()
                .zip(&ones)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            let drop = drop.min(b.len() - 1);
            b.drain(..drop);
            if swap { (b, a) } else { (a, b) }
        })
}

/// Values in +-[0.1, 2]: away from 0 (the kink of relu, abs, leaky relu).
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::rand_uniform(shape, -1.9, 1.9, seed)
        .unwrap()
        .map(|v| v + 0.1 * v.signum())
}

/// Values in [0.5, 2]: inside the domain of ln, sqrt, powf, and safe divisors.
fn positive(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::rand_uniform(shape, 0.5, 2.0, seed).unwrap()
}

/// Distinct values at least 0.1 apart (no ties for max), shuffled.
fn distinct(shape: &[usize], seed: u64) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.1 - 1.0).collect();
    polyhead_tensor::Rng::new(seed).shuffle(&mut v);
    Tensor::from_vec(v, shape).unwrap()
}

fn check(
    f: impl for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>>,
    inputs: &[Tensor<f64>],
) -> std::result::Result<(), TestCaseError> {
    gradcheck(f, inputs, &options()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

fn axis_of(rank: usize, pick: usize) -> isize {
    // Both positive and negative spellings of an axis.
    let a = (pick % rank) as isize;
    if pick.is_multiple_of(2) {
        a
    } else {
        a - rank as isize
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn add_sub_mul_div_broadcast((sa, sb) in broadcast_pair(), seed in any::<u64>()) {
        let a = away_from_zero(&sa, seed);
        let b = away_from_zero(&sb, seed ^ 1);
        let d = positive(&sb, seed ^ 2);
        check(|_, v| v[0].add(v[1]), &[a.clone(), b.clone()])?;
        check(|_, v| v[0].sub(v[1]), &[a.clone(), b.clone()])?;
        check(|_, v| v[0].mul(v[1]), &[a.clone(), b.clone()])?;
        check(|_, v| v[0].div(v[1]), &[a, d])?;
    }

    #[test]
    fn weighted_sum_of_terms(s in shape(), seed in any::<u64>(), w in prop::collection::vec(-2.0f64..2.0, 1..=6)) {
        let inputs: Vec<Tensor<f64>> = (0..w.len() as u64).map(|k| away_from_zero(&s, seed ^ k)).collect();
        // A weight of exactly 1 takes the no-multiply path; more than four
        // weights are kept on the heap.
        let mut w = w;
        w[0] = 1.0;
        check(|tape, v| Ok(tape.weighted_sum(v, &w)?.sum_all()), &inputs)?;
    }

    #[test]
    fn maximum_minimum_broadcast((sa, sb) in broadcast_pair(), seed in any::<u64>()) {
        // a in +-[0.1, 2] and b offset by 0.05 from a's grid: no ties within eps.
        let a = away_from_zero(&sa, seed);
        let b = away_from_zero(&sb, seed ^ 3).map(|v| v * 0.5 + 0.05);
        check(|_, v| v[0].maximum(v[1]), &[a.clone(), b.clone()])?;
        check(|_, v| v[0].minimum(v[1]), &[a, b])?;
    }

    #[test]
    fn elementwise_math(s in shape(), seed in any::<u64>()) {
        let x = away_from_zero(&s, seed);
        let p = positive(&s, seed);
        check(|_, v| Ok(v[0].neg()), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].exp()), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].ln()), std::slice::from_ref(&p))?;
        check(|_, v| Ok(v[0].sqrt()), std::slice::from_ref(&p))?;
        check(|_, v| Ok(v[0].powf(1.7)), std::slice::from_ref(&p))?;
        check(|_, v| Ok(v[0].powf(-0.5)), &[p])?;
        check(|_, v| Ok(v[0].abs()), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].tanh()), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].scale(-2.5)), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].add_scalar(3.0)), &[x])?;
    }

    #[test]
    fn activations(s in shape(), seed in any::<u64>()) {
        let x = away_from_zero(&s, seed).mul_scalar(2.0);
        check(|_, v| Ok(v[0].sigmoid()), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].relu()), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].leaky_relu(0.1)), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].gelu()), &[x])?;
    }

    #[test]
    fn softmax_and_log_softmax(s in shape(), pick in 0usize..6, seed in any::<u64>()) {
        let x = away_from_zero(&s, seed).mul_scalar(3.0);
        let axis = axis_of(s.len(), pick);
        check(|_, v| v[0].softmax(axis), std::slice::from_ref(&x))?;
        check(|_, v| v[0].log_softmax(axis), &[x])?;
    }

    #[test]
    fn sum_mean_max(s in shape(), pick in 0usize..6, keep in any::<bool>(), seed in any::<u64>()) {
        let x = away_from_zero(&s, seed);
        let axis = axis_of(s.len(), pick);
        check(|_, v| v[0].sum_axis(axis, keep), std::slice::from_ref(&x))?;
        check(|_, v| v[0].mean_axis(axis, keep), std::slice::from_ref(&x))?;
        check(|_, v| Ok(v[0].sum_all()), std::slice::from_ref(&x))?;
        check(|_, v| v[0].mean_all(), &[x])?;
        check(|_, v| v[0].max_axis(axis, keep), &[distinct(&s, seed)])?;
    }

    #[test]
    fn matmul_2d(m in 1usize..4, k in 1usize..4, n in 1usize..4, seed in any::<u64>()) {
        let a = away_from_zero(&[m, k], seed);
        let b = away_from_zero(&[k, n], seed ^ 1);
        check(|_, v| v[0].matmul(v[1]), &[a.clone(), b.clone()])?;
        // Through transposed views: (B^T A^T)^T.
        check(
            |_, v| v[1].transpose(0, 1)?.matmul(v[0].transpose(0, 1)?)?.transpose(0, 1),
            &[a, b],
        )?;
    }

    #[test]
    fn matmul_batched_with_broadcast(
        batch in 1usize..3, m in 1usize..3, k in 1usize..3, n in 1usize..3,
        lhs_batch_one in any::<bool>(), rhs_2d in any::<bool>(), seed in any::<u64>(),
    ) {
        let a = away_from_zero(&[if lhs_batch_one { 1 } else { batch }, m, k], seed);
        let b = if rhs_2d {
            away_from_zero(&[k, n], seed ^ 1)
        } else {
            away_from_zero(&[batch, k, n], seed ^ 1)
        };
        check(|_, v| v[0].matmul(v[1]), &[a, b])?;
    }

    #[test]
    fn layout_ops(s in shape(), pick in 0usize..6, seed in any::<u64>()) {
        let x = away_from_zero(&s, seed);
        let n: usize = s.iter().product();
        let axis = axis_of(s.len(), pick);
        let ax = axis.rem_euclid(s.len() as isize) as usize;
        check(|_, v| v[0].reshape(&[n]), std::slice::from_ref(&x))?;
        check(|_, v| v[0].transpose(axis, 0), std::slice::from_ref(&x))?;
        let len = s[ax];
        check(|_, v| v[0].slice_axis(axis, len / 2, len), std::slice::from_ref(&x))?;
        let mut big = vec![2];
        big.extend(&s);
        check(|_, v| v[0].broadcast_to(&big), std::slice::from_ref(&x))?;
        let y = away_from_zero(&s, seed ^ 9);
        check(|_, v| Var::concat(&[v[0], v[1], v[0]], axis), &[x.clone(), y.clone()])?;
        // More inputs than a node stores inline (four): the heap-held list.
        check(|_, v| Var::concat(&[v[0], v[1], v[0], v[1], v[1], v[0]], axis), &[x, y])?;
    }

    #[test]
    fn gather_index_select_and_select(rows in 1usize..4, cols in 1usize..4, seed in any::<u64>()) {
        let x = away_from_zero(&[rows, cols], seed);
        let mut rng = polyhead_tensor::Rng::new(seed);
        let labels = ArrayD::from_shape_fn(vec![rows, 2], |_| rng.below(cols as u64) as usize);
        check(|_, v| v[0].gather(1, &labels), std::slice::from_ref(&x))?;
        let picks: Vec<usize> = (0..5).map(|_| rng.below(rows as u64) as usize).collect();
        check(|_, v| v[0].index_select(0, &picks), std::slice::from_ref(&x))?;
        let mask = ArrayD::from_shape_fn(vec![rows, cols], |_| rng.below(2) == 1);
        let y = away_from_zero(&[cols], seed ^ 5);
        check(|_, v| Var::select(&mask, v[0], v[1]), &[x, y])?;
    }
}
