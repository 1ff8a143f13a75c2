//! Reductions and the stable softmax / log-softmax.

use polyhead_tensor::Tensor;

fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

fn cube() -> Tensor<f64> {
    // [2, 2, 3] holding 0..12
    t(&(0..12).map(f64::from).collect::<Vec<_>>(), &[2, 2, 3])
}

#[test]
fn sum_over_each_axis_with_and_without_keep_dims() {
    let x = cube();
    assert_eq!(
        x.sum_axis(0, false).unwrap().to_vec(),
        vec![6.0, 8.0, 10.0, 12.0, 14.0, 16.0]
    );
    assert_eq!(
        x.sum_axis(1, false).unwrap().to_vec(),
        vec![3.0, 5.0, 7.0, 15.0, 17.0, 19.0]
    );
    assert_eq!(
        x.sum_axis(-1, false).unwrap().to_vec(),
        vec![3.0, 12.0, 21.0, 30.0]
    );
    assert_eq!(x.sum_axis(-1, true).unwrap().shape(), &[2, 2, 1]);
    assert_eq!(x.sum_axis(1, true).unwrap().shape(), &[2, 1, 3]);
    assert_eq!(x.sum_all(false).item().unwrap(), 66.0);
    assert_eq!(x.sum_all(true).shape(), &[1, 1, 1]);
}

#[test]
fn mean_and_max_and_argmax() {
    let x = t(&[3.0, -1.0, 7.0, 7.0, 2.0, 0.0], &[2, 3]);
    assert_eq!(x.mean_axis(1, false).unwrap().to_vec(), vec![3.0, 3.0]);
    assert_eq!(x.mean_axis(0, true).unwrap().to_vec(), vec![5.0, 0.5, 3.5]);
    assert_eq!(x.mean_all().unwrap().item().unwrap(), 3.0);
    assert_eq!(x.max_axis(1, false).unwrap().to_vec(), vec![7.0, 7.0]);
    assert_eq!(x.max_axis(0, false).unwrap().to_vec(), vec![7.0, 2.0, 7.0]);
    assert_eq!(x.max_all().unwrap().item().unwrap(), 7.0);
    // First index on ties.
    let am = x.argmax_axis(1, false).unwrap();
    assert_eq!(am.iter().copied().collect::<Vec<_>>(), vec![2, 0]);
    assert_eq!(x.argmax_axis(0, true).unwrap().shape(), &[1, 3]);
}

#[test]
fn max_and_argmax_propagate_nan() {
    let x = t(&[1.0, f64::NAN, 3.0], &[3]);
    assert!(x.max_axis(0, false).unwrap().item().unwrap().is_nan());
    assert_eq!(x.argmax_axis(0, false).unwrap().iter().next(), Some(&1));
}

#[test]
fn reductions_over_empty_axes() {
    let x = Tensor::<f64>::zeros(&[2, 0]).unwrap();
    assert_eq!(x.sum_axis(1, false).unwrap().to_vec(), vec![0.0, 0.0]);
    assert_eq!(x.sum_axis(0, false).unwrap().shape(), &[0]);
    assert_eq!(
        x.mean_axis(1, false).unwrap_err().to_string(),
        "mean: cannot reduce an empty axis 1 of shape [2, 0]"
    );
    assert!(x.max_axis(-1, false).is_err());
    assert!(x.argmax_axis(1, false).is_err());
    assert!(x.mean_all().is_err());
    assert!(x.max_all().is_err());
    // Reducing the non-empty axis of an empty tensor is fine (empty result).
    assert_eq!(x.max_axis(0, false).unwrap().shape(), &[0]);
}

#[test]
fn softmax_rows_sum_to_one_and_match_the_definition() {
    let x = t(&[1.0, 2.0, 3.0, -1.0, 0.0, 1.0], &[2, 3]);
    let s = x.softmax(-1).unwrap();
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
    let z: f64 = e.iter().sum();
    for (j, v) in s.to_vec().iter().enumerate() {
        // softmax is shift-invariant, so both rows equal e / z.
        assert!((v - e[j % 3] / z).abs() < 1e-15);
    }
    // Along axis 0 each column sums to one.
    let s0 = x.softmax(0).unwrap().sum_axis(0, false).unwrap();
    assert!(s0.to_vec().iter().all(|v| (v - 1.0).abs() < 1e-15));
}

#[test]
fn softmax_is_stable_at_logits_of_plus_minus_1000() {
    let x = t(&[1000.0, 999.0, -1000.0, -1000.0, -999.0, -1000.0], &[2, 3]);
    let s = x.softmax(-1).unwrap().to_vec();
    assert!(s.iter().all(|v| v.is_finite()));
    let a = 1.0 / (1.0 + (-1.0f64).exp());
    assert!((s[0] - a).abs() < 1e-15);
    assert!((s[1] - (1.0 - a)).abs() < 1e-15);
    assert_eq!(s[2], 0.0);
    let b = 1.0 / (1.0 + 2.0 * (-1.0f64).exp());
    assert!((s[4] - b).abs() < 1e-15);
    // Same in f32.
    let s32 = x.cast::<f32>().softmax(-1).unwrap().to_vec();
    assert!(s32.iter().all(|v| v.is_finite()));
    assert!((s32[0] as f64 - a).abs() < 1e-7);
}

#[test]
fn log_softmax_is_exact_at_logits_of_plus_minus_1000() {
    let x = t(&[1000.0, -1000.0, 0.0, 0.0], &[2, 2]);
    let l = x.log_softmax(1).unwrap().to_vec();
    assert_eq!(l[0], 0.0);
    assert_eq!(l[1], -2000.0);
    assert!((l[2] + 2f64.ln()).abs() < 1e-16);
    // ln(softmax) would give -inf where log_softmax keeps -2000.
    let naive = x.softmax(1).unwrap().ln().to_vec();
    assert_eq!(naive[1], f64::NEG_INFINITY);
    // Agrees with ln(softmax) where that is representable.
    let y = t(&[0.3, -1.2, 2.5], &[3]);
    let a = y.log_softmax(0).unwrap().to_vec();
    let b = y.softmax(0).unwrap().ln().to_vec();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-15);
    }
}

#[test]
fn softmax_of_an_all_minus_infinity_row_is_nan_as_documented() {
    let x = t(&[f64::NEG_INFINITY, f64::NEG_INFINITY], &[1, 2]);
    assert!(x.softmax(1).unwrap().to_vec().iter().all(|v| v.is_nan()));
}

/// Softmax and log-softmax along the last axis of a row-major tensor take a
/// block path (one vectorised `exp_slice` call per block of rows); other
/// layouts take the lane path with the scalar `exp`. In f64 (`exp_slice` is
/// `f64::exp`) the two must agree bit for bit; in f32 they may differ by
/// the polynomial's error (at most 1 ulp per exponential, a few ulps
/// after the sum and division), checked here at 8 ulps of the result.
/// Rows with +-1000, -inf and NaN logits and several blocks are included.
#[test]
fn softmax_block_path_matches_the_lane_path() {
    let (rows, cols) = (1000, 10); // 409 rows per block: three blocks
    let mut v = Tensor::<f64>::rand_normal(&[rows, cols], 0.0, 4.0, 9)
        .unwrap()
        .to_vec();
    v[3 * cols] = 1000.0;
    v[4 * cols + 2] = -1000.0;
    v[5 * cols + 1] = f64::NEG_INFINITY;
    v[6 * cols + 7] = f64::NAN;
    let x = Tensor::from_vec(v.clone(), &[rows, cols]).unwrap();
    // The same values, stored transposed: a strided view for the lane path.
    let strided = Tensor::from_vec(
        (0..rows * cols)
            .map(|i| v[(i % rows) * cols + i / rows])
            .collect(),
        &[cols, rows],
    )
    .unwrap()
    .transpose(0, 1)
    .unwrap();
    let bits = |t: Tensor<f64>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(x.softmax(-1).unwrap()),
        bits(strided.softmax(-1).unwrap())
    );
    assert_eq!(
        bits(x.log_softmax(-1).unwrap()),
        bits(strided.log_softmax(-1).unwrap())
    );
    // f32: within a few ulps of the lane path, NaN where it is NaN.
    let (x32, s32) = (x.cast::<f32>(), strided.cast::<f32>());
    for (fast, lane) in [
        (x32.softmax(-1).unwrap(), s32.softmax(-1).unwrap()),
        (x32.log_softmax(-1).unwrap(), s32.log_softmax(-1).unwrap()),
    ] {
        for (i, (a, b)) in fast.to_vec().iter().zip(lane.to_vec()).enumerate() {
            if b.is_nan() || !b.is_finite() {
                assert_eq!(a.to_bits(), b.to_bits(), "element {i}");
                continue;
            }
            let ulp = f32::EPSILON * b.abs().max(f32::MIN_POSITIVE);
            assert!((a - b).abs() <= 8.0 * ulp, "element {i}: {a} vs {b}");
        }
    }
}

/// `first_non_finite` scans 32 lanes at a time and the rest one by one: a
/// NaN or infinity anywhere (in the lanes or the tail, first or last,
/// several at once) is found at its first position; finite extremes are not.
#[test]
fn first_non_finite_finds_the_first_bad_value_anywhere() {
    use polyhead_tensor::first_non_finite;
    for n in [0usize, 1, 31, 32, 33, 64, 100, 1000] {
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 - 50.0).collect();
        if n > 0 {
            v[n / 2] = f32::MAX;
            v[0] = f32::MIN_POSITIVE;
        }
        assert_eq!(first_non_finite(&v), None, "n = {n}");
        for pos in [0, n / 3, n.saturating_sub(1)]
            .into_iter()
            .filter(|&p| p < n)
        {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut w = v.clone();
                w[pos] = bad;
                if pos + 1 < n {
                    w[n - 1] = f32::NAN; // a later one does not hide the first
                }
                assert_eq!(first_non_finite(&w), Some(pos), "n = {n}, at {pos}: {bad}");
            }
        }
    }
    assert_eq!(first_non_finite(&[1.0_f64, 2.0, f64::NAN]), Some(2));
}
