//! Property tests: random (also mismatched, empty and hostile) shapes, axes
//! and lengths through the public API give `Ok` or a descriptive `Err`,
//! never a panic.

use polyhead_tensor::{Tensor, TensorError};
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..4)
}

fn tensor() -> impl Strategy<Value = Tensor<f64>> {
    (shape(), any::<u64>())
        .prop_map(|(s, seed)| Tensor::<f64>::rand_uniform(&s, -2.0, 2.0, seed).unwrap())
}

/// An error must say which operation failed.
fn check<T>(r: Result<T, TensorError>, op: &str) {
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(
            msg.starts_with(op),
            "error for {op} does not name it: {msg}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)) })]

    #[test]
    fn binary_ops_and_matmul_never_panic(a in tensor(), b in tensor()) {
        check(a.add(&b), "add");
        check(a.sub(&b), "sub");
        check(a.mul(&b), "mul");
        check(a.div(&b), "div");
        check(a.maximum(&b), "maximum");
        check(a.minimum(&b), "minimum");
        check(a.matmul(&b), "matmul");
        check(a.sum_to_shape(b.shape()), "sum_to_shape");
        check(a.broadcast_to(b.shape()), "broadcast_to");
        check(Tensor::concat(&[a.clone(), b.clone()], 0), "concat");
        check(Tensor::stack(&[a.clone(), b.clone()], -1), "stack");
    }

    #[test]
    fn axis_ops_never_panic(a in tensor(), axis in -5isize..5, keep in any::<bool>()) {
        check(a.sum_axis(axis, keep), "sum");
        check(a.mean_axis(axis, keep), "mean");
        check(a.max_axis(axis, keep), "max");
        check(a.argmax_axis(axis, keep), "argmax");
        check(a.softmax(axis), "softmax");
        check(a.log_softmax(axis), "log_softmax");
        check(a.transpose(axis, 0), "transpose");
        check(a.slice_axis(axis, 1, 2), "slice_axis");
        check(a.mean_all(), "mean");
        check(a.max_all(), "max");
    }

    #[test]
    fn shape_arguments_never_panic(
        a in tensor(), target in shape(), perm in prop::collection::vec(0usize..5, 0..4),
        start in 0usize..5, end in 0usize..5, len in 0usize..40,
    ) {
        check(a.reshape(&target), "reshape");
        check(a.permute(&perm), "permute");
        check(a.slice_axis(0, start, end), "slice_axis");
        check(Tensor::<f64>::from_vec(vec![0.0; len], &target), "from_vec");
        check(a.get(&perm), "get");
        check(a.item(), "item");
    }

    #[test]
    fn huge_shapes_are_overflow_errors(big in (usize::MAX / 4)..usize::MAX, n in 2usize..5) {
        let shape = vec![big; n];
        let overflowed = matches!(
            Tensor::<f32>::zeros(&shape),
            Err(TensorError::Overflow { op: "full", .. })
        );
        prop_assert!(overflowed);
        check(Tensor::<f32>::from_vec(vec![], &shape), "from_vec");
        check(Tensor::<f32>::zeros(&[1]).unwrap().reshape(&shape), "reshape");
        let col = Tensor::<f32>::zeros(&[0, 1]).unwrap();
        check(col.broadcast_to(&[0, big]), "broadcast_to");
    }
}

#[test]
fn broadcast_whose_shape_cannot_be_indexed_is_an_overflow_error() {
    // Both operands are empty (a zero-length last axis), but their broadcast
    // [2^33, 2^33, 0] has non-zero axes whose product overflows isize, which
    // ndarray cannot represent.
    let a = Tensor::<f32>::zeros(&[1, 1 << 33, 0]).unwrap();
    let b = Tensor::<f32>::zeros(&[1 << 33, 1, 0]).unwrap();
    assert_eq!(
        a.add(&b).unwrap_err().to_string(),
        "add: shape [8589934592, 8589934592, 0] has too many elements to allocate"
    );
}
