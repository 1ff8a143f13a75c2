//! The kernels take fast paths (contiguous rows, rayon over row blocks, a
//! one-pass reduction without weights) and general ones otherwise. Each
//! pair does the same per-element arithmetic in the same order, so values
//! and gradients must match bit for bit.

use polyhead_losses::*;
use polyhead_tensor::parallel::with_awake_pool;
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

/// Plain sparse cross-entropy on contiguous logits runs a block kernel that
/// exponentiates many rows at once; strided logits take the row kernel.
/// Ignored labels, rows spanning more than exp's polynomial range, infinite
/// logits and a reused gradient buffer full of old values must not tell
/// the two apart.
#[test]
fn sparse_cross_entropy_block_kernel_matches_the_row_kernel() {
    let (rows, classes) = (9, 13);
    let p = strided(rows, classes, 11);
    let mut values = p.to_vec();
    values[2 * classes + 4] = 150.0; // row 2 spans more than 87 after the max shift
    values[5 * classes + 1] = f32::NEG_INFINITY; // exp(-inf) = 0
    values[6 * classes] = -300.0;
    let contiguous = Tensor::from_vec(values.clone(), &[rows, classes]).unwrap();
    let transposed: Vec<f32> = (0..rows * classes)
        .map(|i| values[(i % rows) * classes + i / rows])
        .collect();
    let strided = Tensor::from_vec(transposed, &[classes, rows])
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    assert!(!strided.is_contiguous());
    let labels = Labels::new(vec![3, -100, 4, 0, 12, 7, -100, 1, 2], &[rows]).unwrap();
    let old = Tensor::full(&[rows, classes], 7.5_f32).unwrap();
    let weights = Tensor::from_vec((0..rows).map(|i| 0.5 + i as f32).collect(), &[rows]).unwrap();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for convention in [Convention::Keras, Convention::PyTorch] {
            let loss = SparseCrossEntropy::from_logits()
                .ignore_index(-100)
                .convention(convention)
                .reduction(reduction);
            for w in [None, Some(&weights)] {
                let rows_out = loss.value_and_grad(&strided, &labels, w).unwrap();
                let block_out = loss
                    .value_and_grad_into(&contiguous, &labels, w, Some(old.clone()))
                    .unwrap();
                assert_same(&block_out, &rows_out, "sparse cross-entropy blocks");
                // Ignored rows have no gradient, whatever the buffer held.
                let g = block_out.grad.to_vec();
                assert!(g[classes..2 * classes].iter().all(|&v| v == 0.0));
            }
        }
    }
}

/// The Keras pointwise kernel works on chunks of about a thousand elements
/// (whole rows), so a per-column option (BCE's `pos_weight`) must follow
/// each element's column across chunk boundaries: every row of a large
/// batch must equal that row computed alone.
#[test]
fn per_column_options_follow_columns_across_chunks() {
    let (rows, cols) = (500, 7); // 3500 elements: chunks of 146 rows
    let x = Tensor::<f32>::rand_normal(&[rows, cols], 0.0, 2.0, 21).unwrap();
    let y = Tensor::<f32>::rand_uniform(&[rows, cols], 0.0, 1.0, 22).unwrap();
    let pos: Vec<f64> = (0..cols).map(|j| 0.5 + j as f64).collect();
    for convention in [Convention::Keras, Convention::PyTorch] {
        let loss = BinaryCrossEntropy::from_logits()
            .pos_weight(pos.clone())
            .convention(convention)
            .reduction(Reduction::None);
        let all = loss.value_and_grad(&x, &y, None).unwrap();
        let per_row = all.value.len() / rows;
        for r in [0, 145, 146, 147, 291, 292, 499] {
            let row = |t: &Tensor<f32>| {
                Tensor::from_vec(t.to_vec()[r * cols..(r + 1) * cols].to_vec(), &[1, cols]).unwrap()
            };
            let alone = loss.value_and_grad(&row(&x), &row(&y), None).unwrap();
            assert_eq!(
                alone.value.to_vec(),
                all.value.to_vec()[r * per_row..(r + 1) * per_row].to_vec(),
                "{convention:?} row {r}: value"
            );
            assert_eq!(
                alone.grad.to_vec(),
                all.grad.to_vec()[r * cols..(r + 1) * cols].to_vec(),
                "{convention:?} row {r}: grad"
            );
        }
    }
}

/// Large inputs are split over rayon's threads by blocks of rows; each row
/// is computed the same way, so one thread and two give identical bits.
#[test]
fn thread_count_does_not_change_results() {
    let run = |threads: usize, awake: bool| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let work = || {
            let mut outs = Vec::new();
            // 20000 x 10 = 200k elements: above the rowwise threshold;
            // 1000 x 10 only above the awake one (one block per thread).
            for rows in [20_000, 1000] {
                let p = Tensor::<f32>::rand_normal(&[rows, 10], 0.0, 3.0, 7).unwrap();
                let y: Vec<usize> = (0..rows).map(|i| (i * 7) % 10).collect();
                let labels = Labels::from_classes(&y);
                outs.push(
                    SparseCrossEntropy::from_logits()
                        .value_and_grad(&p, &labels, None)
                        .unwrap(),
                );
            }
            // 300000 x 4 = 1.2M elements: above the pointwise threshold;
            // 10000 x 4 only above the awake one.
            for rows in [300_000, 10_000] {
                let p = Tensor::<f32>::rand_normal(&[rows, 4], 0.0, 1.0, 8).unwrap();
                let t = Tensor::<f32>::rand_normal(&[rows, 4], 0.0, 1.0, 9).unwrap();
                outs.push(Mse::new().value_and_grad(&p, &t, None).unwrap());
            }
            outs
        };
        pool.install(|| if awake { with_awake_pool(work) } else { work() })
    };
    let one = run(1, false);
    for (threads, awake) in [(2, false), (2, true), (3, true)] {
        for (a, b) in one.iter().zip(&run(threads, awake)) {
            assert_same(a, b, &format!("{threads} threads, awake {awake}"));
        }
    }
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
