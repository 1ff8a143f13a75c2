//! Random (also mismatched, empty and hostile) shapes, axes and indices
//! through every `Var` op and backward: `Ok` or a descriptive `Err`, never a
//! panic.

use ndarray::ArrayD;
use polyhead_autograd::{Tape, Var};
use polyhead_tensor::Tensor;
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128))
    })]

    #[test]
    fn var_ops_and_backward_never_panic(
        sa in shape(), sb in shape(), axis in -4isize..4, start in 0usize..4, end in 0usize..4,
        idx in prop::collection::vec(0usize..5, 0..4), seed in any::<u64>(),
    ) {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::rand_normal(&sa, 0.0, 1.0, seed).unwrap());
        let b = tape.leaf(Tensor::rand_normal(&sb, 0.0, 1.0, seed ^ 1).unwrap());
        let results: Vec<polyhead_autograd::Result<Var<'_, f64>>> = vec![
            a.add(b), a.sub(b), a.mul(b), a.div(b), a.maximum(b), a.minimum(b), a.matmul(b),
            a.softmax(axis), a.log_softmax(axis), a.sum_axis(axis, true), a.mean_axis(axis, false), a.max_axis(axis, true),
            a.mean_all(), a.reshape(&sb), a.transpose(axis, 0), a.slice_axis(axis, start, end), a.broadcast_to(&sb),
            Var::concat(&[a, b], axis), a.index_select(axis, &idx),
            a.gather(axis, &ArrayD::from_elem(sb.clone(), start)),
            Var::select(&ArrayD::from_elem(sb.clone(), true), a, b),
        ];
        for r in results {
            match r {
                Ok(v) => {
                    let seed = Tensor::ones(&v.shape()).unwrap();
                    let _ = tape.backward_with_seed(v, &seed);
                    let _ = tape.backward(v);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
