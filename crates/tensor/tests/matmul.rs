//! Matrix multiplication against a naive triple loop, on random shapes,
//! including transposed, sliced (non-contiguous) and reversed inputs.

use ndarray::{Array2, Array3, ArrayView2, s};
use polyhead_tensor::{Tensor, gemm};
use proptest::prelude::*;

fn naive(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    let (m, k) = a.dim();
    let n = b.ncols();
    Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
}

fn filled(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let t = Tensor::<f64>::rand_uniform(&[rows, cols], -1.0, 1.0, seed).unwrap();
    t.into_array().into_dimensionality().unwrap()
}

/// The ways an operand can be laid out in memory.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Contiguous,
    /// Stored as the transpose, viewed through swapped strides.
    Transposed,
    /// Every other row and column of a larger array (strides 2*cols, 2).
    Strided,
    /// Rows in reverse order (negative row stride).
    Reversed,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::Contiguous),
        Just(Layout::Transposed),
        Just(Layout::Strided),
        Just(Layout::Reversed),
    ]
}

/// A tensor with the given logical values, laid out as asked.
fn with_layout(values: &Array2<f64>, layout: Layout) -> Tensor<f64> {
    let (r, c) = values.dim();
    match layout {
        Layout::Contiguous => Tensor::from_array(values.clone()),
        Layout::Transposed => {
            let stored = values.t().as_standard_layout().into_owned();
            let t = Tensor::from_array(stored).transpose(0, 1).unwrap();
            assert!(r < 2 || c < 2 || !t.is_contiguous());
            t
        }
        Layout::Strided => {
            let mut big = Array2::from_elem((2 * r.max(1), 2 * c.max(1)), f64::NAN);
            big.slice_mut(s![..2 * r;2, ..2 * c;2]).assign(values);
            Tensor::from_array(big.slice_move(s![..2 * r;2, ..2 * c;2]))
        }
        Layout::Reversed => {
            let mut stored = values.clone();
            stored.invert_axis(ndarray::Axis(0));
            let mut reversed = stored.into_shared();
            reversed.invert_axis(ndarray::Axis(0));
            Tensor::from_shared(reversed)
        }
    }
}

fn assert_close(got: &Tensor<f64>, want: &Array2<f64>) {
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.view().iter().zip(want.iter()) {
        // Sums of at most 8 products of numbers in [-1, 1]: rounding error
        // is below 8 * 2^-52 per element; 1e-13 leaves a 10x margin.
        assert!((g - w).abs() <= 1e-13, "got {g}, want {w}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)) })]

    #[test]
    fn matmul_2d_matches_naive_for_any_layout(
        m in 0usize..8, k in 0usize..8, n in 0usize..8,
        la in layout(), lb in layout(), seed in any::<u64>(),
    ) {
        let a = filled(m, k, seed);
        let b = filled(k, n, seed ^ 1);
        let got = with_layout(&a, la).matmul(&with_layout(&b, lb)).unwrap();
        assert_close(&got, &naive(a.view(), b.view()));
    }

    #[test]
    fn matmul_batched_matches_naive_per_batch(
        batch in 1usize..4, m in 1usize..6, k in 1usize..6, n in 1usize..6,
        broadcast_lhs in any::<bool>(), rhs_2d in any::<bool>(), transposed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let ba = if broadcast_lhs { 1 } else { batch };
        let a = Tensor::<f64>::rand_uniform(&[ba, m, k], -1.0, 1.0, seed).unwrap();
        let b = if rhs_2d {
            Tensor::<f64>::rand_uniform(&[k, n], -1.0, 1.0, seed ^ 7).unwrap()
        } else if transposed {
            // [batch, n, k] viewed as [batch, k, n]: strided, not copied.
            Tensor::<f64>::rand_uniform(&[batch, n, k], -1.0, 1.0, seed ^ 7)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        } else {
            Tensor::<f64>::rand_uniform(&[batch, k, n], -1.0, 1.0, seed ^ 7).unwrap()
        };
        let got = a.matmul(&b).unwrap();
        let out_batch = if rhs_2d { ba } else { batch };
        prop_assert_eq!(got.shape(), &[out_batch, m, n]);
        let a3: Array3<f64> = a.into_array().into_dimensionality().unwrap();
        for i in 0..out_batch {
            let ai = a3.index_axis(ndarray::Axis(0), if ba == 1 { 0 } else { i }).to_owned();
            let bi: Array2<f64> = if rhs_2d {
                b.view().into_dimensionality().unwrap().to_owned()
            } else {
                b.view().into_dimensionality::<ndarray::Ix3>().unwrap()
                    .index_axis(ndarray::Axis(0), i).to_owned()
            };
            let gi = got.slice_axis(0, i, i + 1).unwrap().reshape(&[m, n]).unwrap();
            assert_close(&gi, &naive(ai.view(), bi.view()));
        }
    }
}

#[test]
fn matmul_f32_agrees_with_f64_reference() {
    let a = filled(33, 70, 1);
    let b = filled(70, 17, 2);
    let got = Tensor::from_array(a.clone())
        .cast::<f32>()
        .matmul(&Tensor::from_array(b.clone()).cast::<f32>())
        .unwrap();
    let want = naive(a.view(), b.view());
    for (g, w) in got.view().iter().zip(want.iter()) {
        // f32 inputs differ from f64 ones by 2^-24 relative; 70 products of
        // magnitude <= 1 give errors well under 70 * 2^-23 ~ 1e-5.
        assert!((*g as f64 - w).abs() < 1e-5, "got {g}, want {w}");
    }
}

#[test]
fn gemm_accumulates_with_alpha_and_beta_into_strided_output() {
    let a = filled(4, 3, 3);
    let b = filled(3, 5, 4);
    // Output is every other column of a [4, 10] buffer.
    let mut buf = Array2::<f64>::ones((4, 10));
    gemm(2.0, a.view(), b.view(), 0.5, buf.slice_mut(s![.., ..;2])).unwrap();
    let want = naive(a.view(), b.view()) * 2.0 + 0.5;
    for i in 0..4 {
        for j in 0..5 {
            assert!((buf[[i, 2 * j]] - want[[i, j]]).abs() < 1e-14);
            assert_eq!(buf[[i, 2 * j + 1]], 1.0, "untouched column changed");
        }
    }
}

#[test]
fn gemm_with_zero_inner_dimension_scales_output_by_beta() {
    let a = Array2::<f64>::zeros((2, 0));
    let b = Array2::<f64>::zeros((0, 3));
    let mut c = Array2::<f64>::from_elem((2, 3), 4.0);
    gemm(1.0, a.view(), b.view(), 0.5, c.view_mut()).unwrap();
    assert!(c.iter().all(|&v| v == 2.0));
    gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap();
    assert!(c.iter().all(|&v| v == 0.0));
}

#[test]
fn gemm_with_beta_zero_ignores_nan_in_output() {
    let a = filled(2, 2, 5);
    let mut c = Array2::<f64>::from_elem((2, 2), f64::NAN);
    gemm(1.0, a.view(), a.view(), 0.0, c.view_mut()).unwrap();
    assert!(c.iter().all(|v| v.is_finite()));
}

#[test]
fn matmul_shape_errors_name_both_shapes() {
    let a = Tensor::<f32>::zeros(&[32, 784]).unwrap();
    let b = Tensor::<f32>::zeros(&[64, 10]).unwrap();
    assert_eq!(
        a.matmul(&b).unwrap_err().to_string(),
        "matmul: inner dimensions differ: [32, 784] x [64, 10]"
    );
    let a3 = Tensor::<f32>::zeros(&[2, 3, 4]).unwrap();
    let b3 = Tensor::<f32>::zeros(&[3, 4, 5]).unwrap();
    assert_eq!(
        a3.matmul(&b3).unwrap_err().to_string(),
        "matmul: batch dimensions differ: [2, 3, 4] x [3, 4, 5]"
    );
    let v = Tensor::<f32>::zeros(&[4]).unwrap();
    assert_eq!(
        v.matmul(&v).unwrap_err().to_string(),
        "matmul: expected 2-D or 3-D operands: [4] x [4]"
    );
    let mut c = Array2::<f32>::zeros((3, 3));
    let a2 = Array2::<f32>::zeros((2, 2));
    assert_eq!(
        gemm(1.0, a2.view(), a2.view(), 0.0, c.view_mut())
            .unwrap_err()
            .to_string(),
        "gemm: output has shape [3, 3], expected [2, 2] for [2, 2] x [2, 2]"
    );
}
