//! Large products run in blocks on the rayon pool; the blocks start on tile
//! boundaries, so the result must not depend on the number of threads, bit
//! for bit, and must still agree with a naive product.

use ndarray::{Array2, ArrayView2, s};
use polyhead_tensor::parallel::{pool_is_awake, with_awake_pool};
use polyhead_tensor::{Tensor, gemm};

fn filled(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let t = Tensor::<f32>::rand_uniform(&[rows, cols], -1.0, 1.0, seed).unwrap();
    t.into_array().into_dimensionality().unwrap()
}

/// `C <- 1.5 A B + beta C0` on a pool of `threads` threads.
fn product(
    threads: usize,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c0: &Array2<f32>,
) -> Array2<f32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut c = c0.clone();
    pool.install(|| gemm(1.5, a, b, beta, c.view_mut()))
        .unwrap();
    c
}

fn assert_same_bits(one: &Array2<f32>, many: &Array2<f32>, threads: usize) {
    for ((at, x), y) in one.indexed_iter().zip(many.iter()) {
        assert_eq!(
            x.to_bits(),
            y.to_bits(),
            "element {at:?}: 1 thread {x}, {threads} threads {y}"
        );
    }
}

#[test]
fn threaded_gemm_is_bit_identical_to_one_thread() {
    // (m, k, n): tall (rows split), wide (columns split), sizes that are not
    // multiples of any tile, and the shapes of the bench's training step.
    for (case, &(m, k, n)) in [
        (1024, 784, 64),
        (130, 300, 1001),
        (515, 257, 129),
        (784, 1024, 64),
        (129, 2000, 129),
    ]
    .iter()
    .enumerate()
    {
        let seed = 10 * case as u64;
        let a = filled(m, k, seed);
        let b = filled(k, n, seed + 1);
        let c0 = filled(m, n, seed + 2);
        for beta in [0.0, 1.0] {
            let one = product(1, a.view(), b.view(), beta, &c0);
            for threads in [2, 3, 4] {
                let many = product(threads, a.view(), b.view(), beta, &c0);
                assert_same_bits(&one, &many, threads);
            }
        }
        // A transposed operand (as in a backward pass) and a strided output.
        let at = filled(k, m, seed + 3);
        let mut wide = Array2::<f32>::zeros((m, 2 * n));
        let one = product(1, at.t(), b.view(), 0.0, &c0);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| gemm(1.5, at.t(), b.view(), 0.0, wide.slice_mut(s![.., ..;2])))
            .unwrap();
        assert_same_bits(&one, &wide.slice(s![.., ..;2]).to_owned(), 2);
        assert!(wide.slice(s![.., 1..;2]).iter().all(|&v| v == 0.0));
        // An output with reversed rows and columns (negative strides): the
        // blocks are found by offsets from its element [0, 0].
        let mut reversed = Array2::<f32>::from_elem((m, n), f32::NAN);
        reversed.invert_axis(ndarray::Axis(0));
        reversed.invert_axis(ndarray::Axis(1));
        assert!(reversed.strides().iter().all(|&s| s < 0));
        pool.install(|| gemm(1.5, at.t(), b.view(), 0.0, reversed.view_mut()))
            .unwrap();
        assert_same_bits(&one, &reversed, 2);
    }
}

#[test]
fn threaded_gemm_agrees_with_a_naive_product() {
    let (m, k, n) = (300, 400, 200);
    let a = filled(m, k, 1);
    let b = filled(k, n, 2);
    let c0 = Array2::zeros((m, n));
    let got = product(2, a.view(), b.view(), 0.0, &c0);
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| a[[i, p]] as f64 * b[[p, j]] as f64)
                .sum::<f64>()
                * 1.5;
            // 400 products of magnitude <= 1, each rounded to f32 (2^-24
            // relative) and summed in f32: well under 400 * 2^-23 ~ 5e-5.
            assert!(
                (got[[i, j]] as f64 - want).abs() < 5e-5,
                "[{i}, {j}]: {} vs {want}",
                got[[i, j]]
            );
        }
    }
}

/// Inside `with_awake_pool` products split from a smaller size, run by the
/// calling thread and polling workers; the bits must still be those of one
/// thread, from inside a pool and from a thread outside any pool.
#[test]
fn awake_pool_gemm_is_bit_identical_to_one_thread() {
    for (case, &(m, k, n)) in [
        (128, 784, 64),
        (784, 128, 64),
        (70, 300, 200),
        (1000, 40, 100),
    ]
    .iter()
    .enumerate()
    {
        let seed = 100 + 10 * case as u64;
        let a = filled(m, k, seed);
        let b = filled(k, n, seed + 1);
        let c0 = filled(m, n, seed + 2);
        for beta in [0.0, 1.0] {
            let one = product(1, a.view(), b.view(), beta, &c0);
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut inside = c0.clone();
                pool.install(|| {
                    with_awake_pool(|| {
                        assert!(pool_is_awake());
                        // Nested: runs directly, still awake.
                        with_awake_pool(|| gemm(1.5, a.view(), b.view(), beta, inside.view_mut()))
                    })
                })
                .unwrap();
                assert_same_bits(&one, &inside, threads);
                // From this (non-pool) thread, on the global pool.
                let mut outside = c0.clone();
                with_awake_pool(|| gemm(1.5, a.view(), b.view(), beta, outside.view_mut()))
                    .unwrap();
                assert_same_bits(&one, &outside, threads);
            }
        }
    }
    assert!(!pool_is_awake());
}

/// A panic inside the closure reaches the caller, and the pollers stop: the
/// pool still runs later work (a poller left spinning would hold its thread
/// forever, and the join below would never finish on a 2-thread pool).
#[test]
fn awake_pool_survives_a_panic_in_its_closure() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let caught = pool.install(|| std::panic::catch_unwind(|| with_awake_pool(|| panic!("boom"))));
    assert!(caught.is_err());
    assert!(!pool_is_awake());
    let (x, y) = pool.install(|| rayon::join(|| 1 + 1, || 2 + 2));
    assert_eq!((x, y), (2, 4));
    let sum: i64 = pool.install(|| {
        use rayon::prelude::*;
        (0..100_000i64).into_par_iter().sum()
    });
    assert_eq!(sum, 4_999_950_000);
}

/// `gemm_new` (no zero-fill of the output) gives the bits of `gemm` with
/// `beta = 0` into a buffer full of NaN, on one thread and split over two
/// (awake and not), for transposed and sliced operands, skinny and empty
/// shapes and an empty inner dimension (a zero matrix).
#[test]
fn gemm_new_matches_gemm_with_beta_zero_on_any_pool() {
    let shapes = [
        (128, 784, 64),
        (784, 128, 64),
        (1500, 1100, 40),
        (7, 5, 3),
        (0, 4, 3),
        (3, 0, 4),
        (5, 4, 0),
    ];
    for &(m, k, n) in &shapes {
        let at = filled(k, m, 11); // A = at^T: a transposed view
        let b_big = filled(k + 3, n + 2, 12);
        let b = b_big.slice(s![1..k + 1, 2..n + 2]); // a sliced view
        let nan = Array2::from_elem((m, n), f32::NAN);
        let want = product(1, at.t(), b, 0.0, &nan);
        assert!(
            want.iter().all(|v| v.is_finite()),
            "beta = 0 must ignore NaN"
        );
        for threads in [1, 2] {
            for awake in [false, true] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| {
                    let run = || polyhead_tensor::gemm_new(1.5, at.t(), b).unwrap();
                    if awake { with_awake_pool(run) } else { run() }
                });
                assert_eq!(got.dim(), (m, n));
                assert_same_bits(&want, &got, threads);
            }
        }
    }
    let err = polyhead_tensor::gemm_new(1.0, filled(2, 3, 1).view(), filled(2, 3, 2).view());
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("inner dimensions differ")
    );
}
