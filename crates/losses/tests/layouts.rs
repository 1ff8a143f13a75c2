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
/// the two apart. Ten classes take a copy of the block kernel compiled for
/// that width; thirteen the general one. The same for dense targets.
#[test]
fn sparse_cross_entropy_block_kernel_matches_the_row_kernel() {
    for classes in [13, 10] {
        block_kernel_matches_row_kernel(classes);
    }
}

fn block_kernel_matches_row_kernel(classes: usize) {
    let rows = 9;
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
    let labels = Labels::new(
        vec![3, -100, 4, 0, classes as i64 - 1, 7, -100, 1, 2],
        &[rows],
    )
    .unwrap();
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
    // Dense targets (CrossEntropy on logits, no class weights) take a block
    // kernel too: soft rows, one-hot rows, an all-zero row, with and
    // without label smoothing, must match the row kernel bit for bit.
    let mut target: Vec<f32> = Tensor::<f32>::rand_uniform(&[rows, classes], 0.0, 1.0, 12)
        .unwrap()
        .to_vec();
    target[classes..2 * classes].fill(0.0); // a row with no target mass
    for (j, t) in target[3 * classes..4 * classes].iter_mut().enumerate() {
        *t = if j == 2 { 1.0 } else { 0.0 }; // one-hot
    }
    let dense = Tensor::from_vec(target.clone(), &[rows, classes]).unwrap();
    let dense_strided = Tensor::from_vec(
        (0..rows * classes)
            .map(|i| target[(i % rows) * classes + i / rows])
            .collect(),
        &[classes, rows],
    )
    .unwrap()
    .transpose(0, 1)
    .unwrap();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for convention in [Convention::Keras, Convention::PyTorch] {
            for smoothing in [0.0, 0.1] {
                let loss = CrossEntropy::from_logits()
                    .label_smoothing(smoothing)
                    .convention(convention)
                    .reduction(reduction);
                for w in [None, Some(&weights)] {
                    let rows_out = loss.value_and_grad(&strided, &dense_strided, w).unwrap();
                    let block_out = loss
                        .value_and_grad_into(&contiguous, &dense, w, Some(old.clone()))
                        .unwrap();
                    assert_same(&block_out, &rows_out, "dense cross-entropy blocks");
                }
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
                let onehot = labels.one_hot::<f32>(10).unwrap();
                outs.push(
                    CrossEntropy::from_logits()
                        .label_smoothing(0.1)
                        .value_and_grad(&p, &onehot, None)
                        .unwrap(),
                );
            }
            // BCE from logits (the vectorised slice kernel), with and
            // without per-column positive weights.
            for rows in [20_000, 1000] {
                let p = Tensor::<f32>::rand_normal(&[rows, 10], 0.0, 3.0, 10).unwrap();
                let t = Tensor::<f32>::rand_uniform(&[rows, 10], 0.0, 1.0, 11).unwrap();
                outs.push(
                    BinaryCrossEntropy::from_logits()
                        .value_and_grad(&p, &t, None)
                        .unwrap(),
                );
                outs.push(
                    BinaryCrossEntropy::from_logits()
                        .pos_weight((0..10).map(|j| 0.5 + j as f64).collect())
                        .label_smoothing(0.1)
                        .value_and_grad(&p, &t, None)
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

/// Without weights the reduction takes a one-pass path (for Keras
/// pointwise losses and sparse cross-entropy, totals formed chunk by chunk
/// inside the kernel, with no array of values); with all-one sample
/// weights it takes the general one. Both must give the same bits, for one
/// chunk of units and for several with a partial last one (256 units per
/// chunk), and at any thread count.
#[test]
fn unweighted_reduction_matches_weighted_path_with_unit_weights() {
    for (rows, cols) in [(33, 6), (9000, 4), (3000, 3)] {
        let p = Tensor::<f32>::rand_normal(&[rows, cols], 0.0, 2.0, 11).unwrap();
        let t = Tensor::<f32>::rand_normal(&[rows, cols], 0.0, 1.0, 12).unwrap();
        let ones = Tensor::<f32>::ones(&[rows]).unwrap();
        let y: Vec<usize> = (0..rows).map(|i| (i * 5) % cols).collect();
        let labels = Labels::from_classes(&y);
        for reduction in [
            Reduction::Mean,
            Reduction::Sum,
            Reduction::WeightedMean,
            Reduction::BatchMean,
        ] {
            let what = format!("{rows}x{cols} {reduction:?}");
            let mse = Mse::new().reduction(reduction);
            let unweighted = mse.value_and_grad(&p, &t, None).unwrap();
            assert_same(
                &unweighted,
                &mse.value_and_grad(&p, &t, Some(&ones)).unwrap(),
                &format!("mse {what}"),
            );
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let threaded = pool.install(|| with_awake_pool(|| mse.value_and_grad(&p, &t, None)));
            assert_same(
                &unweighted,
                &threaded.unwrap(),
                &format!("mse 2 threads {what}"),
            );
            let ce = SparseCrossEntropy::from_logits().reduction(reduction);
            let unweighted = ce.value_and_grad(&p, &labels, None).unwrap();
            assert_same(
                &unweighted,
                &ce.value_and_grad(&p, &labels, Some(&ones)).unwrap(),
                &format!("sparse cross-entropy {what}"),
            );
            let threaded =
                pool.install(|| with_awake_pool(|| ce.value_and_grad(&p, &labels, None)));
            assert_same(
                &unweighted,
                &threaded.unwrap(),
                &format!("sparse cross-entropy 2 threads {what}"),
            );
        }
    }
}

/// Keras pointwise losses on rows of four (bounding boxes) take a kernel
/// that handles four rows per pass and sums them at once; a lone row, and
/// the last `rows % 4` rows of a batch, take the general chunked kernel.
/// Every row of a batch must equal that row computed alone, bit for bit,
/// including a per-column option, and MSE must equal a plain f32 loop.
/// A loss run on a prediction and a target.
type Run<'a> = dyn Fn(&Tensor<f32>, &Tensor<f32>) -> LossOutput<f32> + 'a;

#[test]
fn rows_of_four_match_each_row_alone() {
    let cols = 4;
    for rows in [4, 7, 1027] {
        let x = Tensor::<f32>::rand_normal(&[rows, cols], 0.0, 2.0, 31).unwrap();
        let y = Tensor::<f32>::rand_uniform(&[rows, cols], 0.0, 1.0, 32).unwrap();
        let row = |t: &Tensor<f32>, r: usize| {
            Tensor::from_vec(t.to_vec()[r * cols..(r + 1) * cols].to_vec(), &[1, cols]).unwrap()
        };
        let check = |name: &str, run: &Run<'_>| {
            let all = run(&x, &y);
            for r in [0, 1, 3, 4, rows / 2, rows - 3, rows - 1]
                .into_iter()
                .filter(|&r| r < rows)
            {
                let alone = run(&row(&x, r), &row(&y, r));
                assert_eq!(
                    alone.value.to_vec(),
                    all.value.to_vec()[r..r + 1].to_vec(),
                    "{name} rows {rows} row {r}: value"
                );
                assert_eq!(
                    alone.grad.to_vec(),
                    all.grad.to_vec()[r * cols..(r + 1) * cols].to_vec(),
                    "{name} rows {rows} row {r}: grad"
                );
            }
        };
        let none = Reduction::None;
        check("mse", &|p, t| {
            Mse::new()
                .reduction(none)
                .value_and_grad(p, t, None)
                .unwrap()
        });
        check("huber", &|p, t| {
            Huber::new(1.0)
                .reduction(none)
                .value_and_grad(p, t, None)
                .unwrap()
        });
        check("bce pos_weight", &|p, t| {
            BinaryCrossEntropy::from_logits()
                .pos_weight(vec![0.5, 1.5, 2.5, 3.5])
                .reduction(none)
                .value_and_grad(p, t, None)
                .unwrap()
        });
        // MSE (mean) against a plain loop: each row from left to right,
        // gradient ((2 e) / 4) / rows, the order the general path uses.
        let (p, t) = (x.to_vec(), y.to_vec());
        let out = Mse::new().value_and_grad(&x, &y, None).unwrap();
        let c = 1.0 / rows as f32;
        let want_grad: Vec<f32> = p
            .iter()
            .zip(&t)
            .map(|(p, t)| 2.0 * (p - t) * 0.25 * c)
            .collect();
        assert_eq!(out.grad.to_vec(), want_grad, "mse grad, rows {rows}");
        let rows_mean: Vec<f32> = p
            .chunks(4)
            .zip(t.chunks(4))
            .map(|(p, t)| p.iter().zip(t).fold(0.0, |s, (p, t)| s + (p - t) * (p - t)) * 0.25)
            .collect();
        let exact: f64 = rows_mean.iter().map(|&v| v as f64).sum::<f64>() / rows as f64;
        let got = out.value.item().unwrap() as f64;
        assert!(
            (got - exact).abs() <= 1e-6 * exact,
            "mse value {got} vs {exact}"
        );
    }
}
