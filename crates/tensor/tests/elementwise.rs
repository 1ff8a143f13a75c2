//! Broadcasting binary ops against hand-computed cases, `sum_to_shape`, and
//! unary ops.

use polyhead_tensor::Tensor;

fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

#[test]
fn add_broadcasts_column_against_row() {
    let col = t(&[1.0, 2.0], &[2, 1]);
    let row = t(&[10.0, 20.0, 30.0], &[3]);
    let sum = col.add(&row).unwrap();
    assert_eq!(sum.shape(), &[2, 3]);
    assert_eq!(sum.to_vec(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
}

#[test]
fn sub_mul_div_broadcast_over_leading_axes() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 2, 2]);
    let y = t(&[1.0, 2.0], &[2]);
    assert_eq!(
        x.sub(&y).unwrap().to_vec(),
        vec![0.0, 0.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0]
    );
    assert_eq!(
        x.mul(&y).unwrap().to_vec(),
        vec![1.0, 4.0, 3.0, 8.0, 5.0, 12.0, 7.0, 16.0]
    );
    let z = t(&[2.0, 4.0], &[2, 1, 1]);
    assert_eq!(
        x.div(&z).unwrap().to_vec(),
        vec![0.5, 1.0, 1.5, 2.0, 1.25, 1.5, 1.75, 2.0]
    );
}

#[test]
fn scalar_tensor_broadcasts_against_anything() {
    let x = t(&[1.0, -2.0, 3.0], &[3, 1]);
    let s = Tensor::scalar(2.0);
    assert_eq!(x.mul(&s).unwrap().to_vec(), vec![2.0, -4.0, 6.0]);
    assert_eq!(s.sub(&x).unwrap().shape(), &[3, 1]);
}

#[test]
fn maximum_minimum_broadcast_and_propagate_nan() {
    let x = t(&[1.0, 5.0, f64::NAN], &[3]);
    let y = Tensor::scalar(3.0);
    let mx = x.maximum(&y).unwrap().to_vec();
    assert_eq!(&mx[..2], &[3.0, 5.0]);
    assert!(mx[2].is_nan());
    let mn = x.minimum(&y).unwrap().to_vec();
    assert_eq!(&mn[..2], &[1.0, 3.0]);
    assert!(mn[2].is_nan());
}

#[test]
fn broadcasting_works_on_transposed_views() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
        .transpose(0, 1)
        .unwrap();
    let b = t(&[100.0, 200.0], &[2]);
    assert_eq!(
        x.add(&b).unwrap().to_vec(),
        vec![101.0, 204.0, 102.0, 205.0, 103.0, 206.0]
    );
}

#[test]
fn broadcasting_a_row_agrees_with_the_strided_path() {
    // Row-major operands with one repeated along leading axes take a
    // row-by-row loop; the same values in a transposed layout take the
    // general broadcast. Subtraction and division catch swapped operands.
    let full = Tensor::from_vec((0..24).map(|i| i as f64 - 7.5).collect(), &[2, 3, 4]).unwrap();
    // Stored as [4, 3, 2] with s[k, j, i] = full[i, j, k], viewed permuted.
    let stored: Vec<f64> = (0..24)
        .map(|p| {
            let (k, j, i) = (p / 6, p / 2 % 3, p % 2);
            full.to_vec()[i * 12 + j * 4 + k]
        })
        .collect();
    let full_strided = Tensor::from_vec(stored, &[4, 3, 2])
        .unwrap()
        .permute(&[2, 1, 0])
        .unwrap();
    assert_eq!(full_strided.to_vec(), full.to_vec());
    for row_shape in [&[4][..], &[1, 4], &[3, 4], &[1, 3, 4], &[1, 1, 1], &[]] {
        let n: usize = row_shape.iter().product();
        let row = Tensor::from_vec((0..n).map(|i| 1.5 + i as f64).collect(), row_shape).unwrap();
        for (fast, general) in [
            (full.sub(&row).unwrap(), full_strided.sub(&row).unwrap()),
            (row.sub(&full).unwrap(), row.sub(&full_strided).unwrap()),
            (row.div(&full).unwrap(), row.div(&full_strided).unwrap()),
        ] {
            assert_eq!(fast.shape(), &[2, 3, 4]);
            assert_eq!(fast.to_vec(), general.to_vec(), "row shape {row_shape:?}");
        }
    }
    // By hand: [[1, 2], [3, 4]] - [10, 20] and [10, 20] - [[1, 2], [3, 4]].
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t(&[10.0, 20.0], &[2]);
    assert_eq!(x.sub(&b).unwrap().to_vec(), vec![-9.0, -18.0, -7.0, -16.0]);
    assert_eq!(b.sub(&x).unwrap().to_vec(), vec![9.0, 18.0, 7.0, 16.0]);
}

#[test]
fn sum_to_shape_undoes_broadcasting() {
    // d/db of sum(x + b) for b of shape [3] broadcast to [2, 3] is the column sums.
    let g = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(g.sum_to_shape(&[3]).unwrap().to_vec(), vec![5.0, 7.0, 9.0]);
    assert_eq!(g.sum_to_shape(&[2, 1]).unwrap().to_vec(), vec![6.0, 15.0]);
    assert_eq!(g.sum_to_shape(&[1, 3]).unwrap().shape(), &[1, 3]);
    assert_eq!(g.sum_to_shape(&[]).unwrap().to_vec(), vec![21.0]);
    assert_eq!(g.sum_to_shape(&[1, 1]).unwrap().to_vec(), vec![21.0]);
    assert_eq!(g.sum_to_shape(&[2, 3]).unwrap().to_vec(), g.to_vec());
}

#[test]
fn sum_to_shape_of_row_major_and_strided_tensors_agree_bit_for_bit() {
    // Row-major tensors summed over leading axes take a row-by-row fast
    // path; a transposed copy of the same values takes ndarray's fold. The
    // additions happen in the same order, so the bits must match. Values of
    // mixed magnitude make the order visible in the last bits.
    let (rows, cols) = (37, 5);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 10f32.powi((i % 9) as i32 - 4))
        .collect();
    let row_major = Tensor::from_vec(values.clone(), &[rows, cols]).unwrap();
    let stored_transposed: Vec<f32> = (0..cols * rows)
        .map(|i| values[(i % rows) * cols + i / rows])
        .collect();
    let strided = Tensor::from_vec(stored_transposed, &[cols, rows])
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    assert_eq!(strided.to_vec(), values);
    for target in [&[cols][..], &[1, cols], &[], &[1, 1], &[rows, 1]] {
        let fast = row_major.sum_to_shape(target).unwrap();
        let general = strided.sum_to_shape(target).unwrap();
        assert_eq!(fast.shape(), target);
        let bits = |t: &Tensor<f32>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&general), "target {target:?}");
    }
    // Three axes: the first summed (fast path) or more (general path), the
    // same values stored as [15, 4, 3] and viewed with axes reversed.
    let cube = Tensor::from_vec(values[..180].to_vec(), &[3, 4, 15]).unwrap();
    let reversed: Vec<f32> = (0..180)
        .map(|i| {
            let (j, r, k) = (i / 12, i / 3 % 4, i % 3);
            values[k * 60 + r * 15 + j]
        })
        .collect();
    let cube_strided = Tensor::from_vec(reversed, &[15, 4, 3])
        .unwrap()
        .permute(&[2, 1, 0])
        .unwrap();
    assert_eq!(cube_strided.to_vec(), cube.to_vec());
    for target in [&[4, 15][..], &[1, 4, 15], &[15], &[1, 15], &[4, 1]] {
        let bits = |t: &Tensor<f32>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&cube.sum_to_shape(target).unwrap()),
            bits(&cube_strided.sum_to_shape(target).unwrap()),
            "target {target:?}"
        );
    }
    let first_axis: Vec<f32> = (0..60)
        .map(|j| (0..3).fold(0.0, |acc, i| acc + values[i * 60 + j]))
        .collect();
    assert_eq!(cube.sum_to_shape(&[4, 15]).unwrap().to_vec(), first_axis);
}

#[test]
fn sum_to_shape_of_a_broadcast_sum_gives_back_each_operand_shape() {
    let a = t(&[1.0, 2.0], &[2, 1]);
    let b = t(&[1.0, 1.0, 1.0], &[1, 3]);
    let out = a.add(&b).unwrap();
    let ones = Tensor::<f64>::ones(out.shape()).unwrap();
    assert_eq!(
        ones.sum_to_shape(a.shape()).unwrap().to_vec(),
        vec![3.0, 3.0]
    );
    assert_eq!(ones.sum_to_shape(b.shape()).unwrap().to_vec(), vec![2.0; 3]);
}

#[test]
fn sum_to_shape_rejects_shapes_that_do_not_broadcast_to_self() {
    let g = Tensor::<f64>::ones(&[2, 3]).unwrap();
    assert_eq!(
        g.sum_to_shape(&[2]).unwrap_err().to_string(),
        "sum_to_shape: shapes [2, 3] and [2] cannot be broadcast together"
    );
    assert!(g.sum_to_shape(&[4, 2, 3]).is_err());
}

#[test]
fn unary_ops_match_std() {
    let x = t(&[0.5, 1.0, 2.0], &[3]);
    type Case = (&'static str, Tensor<f64>, fn(f64) -> f64);
    let cases: [Case; 7] = [
        ("neg", x.neg(), |v| -v),
        ("exp", x.exp(), f64::exp),
        ("ln", x.ln(), f64::ln),
        ("sqrt", x.sqrt(), f64::sqrt),
        ("abs", x.neg().abs(), f64::abs),
        ("tanh", x.tanh(), f64::tanh),
        ("powf", x.powf(1.5), |v| v.powf(1.5)),
    ];
    for (name, got, f) in cases {
        let want: Vec<f64> = x.to_vec().into_iter().map(f).collect();
        assert_eq!(got.to_vec(), want, "{name}");
    }
}

#[test]
fn sigmoid_is_exact_at_zero_and_saturates_without_overflow() {
    let x = t(&[-1000.0, -1.0, 0.0, 1.0, 1000.0], &[5]);
    let s = x.sigmoid().to_vec();
    assert_eq!(s[0], 0.0);
    assert_eq!(s[2], 0.5);
    assert_eq!(s[4], 1.0);
    assert!((s[1] - 1.0 / (1.0 + 1f64.exp())).abs() < 1e-16);
    assert!((s[1] + s[3] - 1.0).abs() < 1e-16);
}

#[test]
fn relu_and_clamp() {
    let x = t(&[-2.0, -0.0, 0.5, 3.0], &[4]);
    assert_eq!(x.relu().to_vec(), vec![0.0, 0.0, 0.5, 3.0]);
    assert_eq!(
        x.clamp(-1.0, 1.0).unwrap().to_vec(),
        vec![-1.0, 0.0, 0.5, 1.0]
    );
    assert_eq!(
        x.clamp(1.0, -1.0).unwrap_err().to_string(),
        "clamp: need min <= max, got min = 1, max = -1"
    );
}
