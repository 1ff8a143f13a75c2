//! The kernels take fast paths (contiguous rows, rayon over row blocks, a
//! one-pass reduction without weights) and general ones otherwise. Each
//! pair does the same per-element arithmetic in the same order, so values
//! and gradients must match bit for bit.

use polyhead_losses::*;
use polyhead_tensor::{Float, Tensor};

/// A `[rows, cols]` tensor stored transposed (not contiguous).
fn strided(rows: usize, cols: usize, seed: u64) -> Tensor<f32> {
    let t = Tensor::<f32>::rand_normal(&[cols, rows], 0.0, 2.0, seed).unwrap();
    let s = t.transpose(0, 1).unwrap();
    assert!(!s.is_contiguous());
    s
}

fn assert_same<T: Float + std::fmt::Debug>(a: &LossOutput<T>, b: &LossOutput<T>, what: &str) {
    assert_eq!(a.value.to_vec(), b.value.to_vec(), "{what}: value");
    assert_eq!(a.grad.shape(), b.grad.shape(), "{what}: grad shape");
    assert_eq!(a.grad.to_vec(), b.grad.to_vec(), "{what}: grad");
}

fn check_dense<L: Loss<f32, Target = Tensor<f32>>>(loss: &L, what: &str) {
    let p = strided(7, 5, 1);
    let t = strided(7, 5, 2).abs();
    let strided_out = loss.value_and_grad(&p, &t, None).unwrap();
    let contiguous_out = loss
        .value_and_grad(&p.to_contiguous(), &t.to_contiguous(), None)
        .unwrap();
    assert_same(&strided_out, &contiguous_out, what);
}

#[test]
fn pointwise_losses_do_not_depend_on_layout() {
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        check_dense(&Mse::new().reduction(reduction), "mse keras");
        check_dense(
            &Mse::new()
                .convention(Convention::PyTorch)
                .reduction(reduction),
            "mse pytorch",
        );
        check_dense(&Huber::new(1.0).reduction(reduction), "huber");
    }
}

#[test]
fn cross_entropy_does_not_depend_on_layout() {
    let p = strided(6, 9, 3);
    let y: Vec<usize> = (0..6).map(|i| (i * 5) % 9).collect();
    let labels = Labels::from_classes(&y);
    let dense = labels.one_hot::<f32>(9).unwrap();
    for reduction in [Reduction::Mean, Reduction::None] {
        let sparse = SparseCrossEntropy::from_logits().reduction(reduction);
        let a = sparse.value_and_grad(&p, &labels, None).unwrap();
        let b = sparse
            .value_and_grad(&p.to_contiguous(), &labels, None)
            .unwrap();
        assert_same(&a, &b, "sparse cross-entropy");
        let full = CrossEntropy::from_logits()
            .label_smoothing(0.1)
            .reduction(reduction);
        let a = full.value_and_grad(&p, &dense, None).unwrap();
        let b = full
            .value_and_grad(&p.to_contiguous(), &dense, None)
            .unwrap();
        assert_same(&a, &b, "cross-entropy");
    }
}

/// Large inputs are split over rayon's threads by blocks of rows; each row
/// is computed the same way, so one thread and two give identical bits.
#[test]
fn thread_count_does_not_change_results() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            // 20000 x 10 = 200k elements: above the rowwise threshold.
            let p = Tensor::<f32>::rand_normal(&[20_000, 10], 0.0, 3.0, 7).unwrap();
            let y: Vec<usize> = (0..20_000).map(|i| (i * 7) % 10).collect();
            let labels = Labels::from_classes(&y);
            let ce = SparseCrossEntropy::from_logits()
                .value_and_grad(&p, &labels, None)
                .unwrap();
            // 300000 x 4 = 1.2M elements: above the pointwise threshold.
            let p = Tensor::<f32>::rand_normal(&[300_000, 4], 0.0, 1.0, 8).unwrap();
            let t = Tensor::<f32>::rand_normal(&[300_000, 4], 0.0, 1.0, 9).unwrap();
            let mse = Mse::new().value_and_grad(&p, &t, None).unwrap();
            (ce, mse)
        })
    };
    let (ce1, mse1) = run(1);
    let (ce2, mse2) = run(2);
    assert_same(&ce1, &ce2, "sparse cross-entropy");
    assert_same(&mse1, &mse2, "mse");
}

/// Without weights the reduction takes a one-pass path; with all-one
/// sample weights it takes the general one. Both must give the same bits.
#[test]
fn unweighted_reduction_matches_weighted_path_with_unit_weights() {
    let p = Tensor::<f32>::rand_normal(&[33, 6], 0.0, 2.0, 11).unwrap();
    let t = Tensor::<f32>::rand_normal(&[33, 6], 0.0, 1.0, 12).unwrap();
    let ones = Tensor::<f32>::ones(&[33]).unwrap();
    let y: Vec<usize> = (0..33).map(|i| (i * 5) % 6).collect();
    let labels = Labels::from_classes(&y);
    for reduction in [
        Reduction::Mean,
        Reduction::Sum,
        Reduction::WeightedMean,
        Reduction::BatchMean,
    ] {
        let mse = Mse::new().reduction(reduction);
        assert_same(
            &mse.value_and_grad(&p, &t, None).unwrap(),
            &mse.value_and_grad(&p, &t, Some(&ones)).unwrap(),
            "mse",
        );
        let ce = SparseCrossEntropy::from_logits().reduction(reduction);
        assert_same(
            &ce.value_and_grad(&p, &labels, None).unwrap(),
            &ce.value_and_grad(&p, &labels, Some(&ones)).unwrap(),
            "sparse cross-entropy",
        );
    }
}
