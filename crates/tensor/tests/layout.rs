//! Shape operations: reshape, transpose/permute and slice views, concat,
//! stack, broadcast_to.

use polyhead_tensor::Tensor;

fn range(shape: &[usize]) -> Tensor<f64> {
    let n = shape.iter().product::<usize>();
    Tensor::from_vec((0..n).map(|v| v as f64).collect(), shape).unwrap()
}

#[test]
fn reshape_keeps_row_major_order_and_shares_contiguous_buffers() {
    let x = range(&[2, 3]);
    let r = x.reshape(&[3, 2]).unwrap();
    assert_eq!(r.to_vec(), x.to_vec());
    assert_eq!(
        r.view().as_ptr(),
        x.view().as_ptr(),
        "contiguous reshape copied"
    );
    // A transposed view is reshaped in its logical order.
    let tr = x.transpose(0, 1).unwrap().reshape(&[6]).unwrap();
    assert_eq!(tr.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

#[test]
fn transpose_permute_and_slice_are_views() {
    let x = range(&[2, 3, 4]);
    let p = x.permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[4, 2, 3]);
    assert_eq!(p.get(&[3, 1, 2]).unwrap(), x.get(&[1, 2, 3]).unwrap());
    assert_eq!(p.view().as_ptr(), x.view().as_ptr());
    let t = x.transpose(-1, 0).unwrap();
    assert_eq!(t.shape(), &[4, 3, 2]);
    assert_eq!(t.get(&[3, 2, 1]).unwrap(), 23.0);
    let s = x.slice_axis(2, 1, 3).unwrap();
    assert_eq!(s.shape(), &[2, 3, 2]);
    assert_eq!(s.get(&[1, 2, 0]).unwrap(), x.get(&[1, 2, 1]).unwrap());
    assert!(!s.is_contiguous());
    assert_eq!(x.slice_axis(0, 1, 1).unwrap().shape(), &[0, 3, 4]);
}

#[test]
fn concat_and_stack() {
    let a = range(&[2, 2]);
    let b = range(&[2, 1]).add_scalar(10.0);
    let c = Tensor::concat(&[a.clone(), b], 1).unwrap();
    assert_eq!(c.to_vec(), vec![0.0, 1.0, 10.0, 2.0, 3.0, 11.0]);
    let s = Tensor::stack(&[a.clone(), a.add_scalar(4.0)], 1).unwrap();
    assert_eq!(s.shape(), &[2, 2, 2]);
    assert_eq!(s.to_vec(), vec![0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]);
    assert_eq!(
        Tensor::<f64>::concat(&[], 0).unwrap_err().to_string(),
        "concat: needs at least one tensor"
    );
    assert_eq!(
        Tensor::stack(&[a, range(&[3])], 0).unwrap_err().to_string(),
        "stack: every tensor must have the same shape, got [[2, 2], [3]]"
    );
}

#[test]
fn broadcast_to_materialises_numpy_broadcasting() {
    let x = range(&[3]);
    let b = x.broadcast_to(&[2, 3]).unwrap();
    assert_eq!(b.to_vec(), vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    assert_eq!(
        x.broadcast_to(&[3, 2]).unwrap_err().to_string(),
        "broadcast_to: shapes [3] and [3, 2] cannot be broadcast together"
    );
    // The target must be the broadcast result, not merely compatible.
    assert!(range(&[2, 3]).broadcast_to(&[3]).is_err());
}

#[test]
fn random_tensors_are_reproducible_and_have_the_right_moments() {
    let u = Tensor::<f64>::rand_uniform(&[20_000], 2.0, 4.0, 11).unwrap();
    let mean = u.mean_all().unwrap().item().unwrap();
    assert!((mean - 3.0).abs() < 0.02, "uniform mean {mean}");
    let n = Tensor::<f64>::rand_normal(&[20_000], 0.0, 1.0, 12).unwrap();
    let var = n.mul(&n).unwrap().mean_all().unwrap().item().unwrap();
    assert!((var - 1.0).abs() < 0.04, "normal variance {var}");
    assert_eq!(
        Tensor::<f32>::rand_normal(&[3], 0.0, 1.0, 5)
            .unwrap()
            .to_vec(),
        Tensor::<f32>::rand_normal(&[3], 0.0, 1.0, 5)
            .unwrap()
            .to_vec()
    );
    assert_ne!(
        Tensor::<f32>::rand_normal(&[3], 0.0, 1.0, 5)
            .unwrap()
            .to_vec(),
        Tensor::<f32>::rand_normal(&[3], 0.0, 1.0, 6)
            .unwrap()
            .to_vec()
    );
    assert!(Tensor::<f32>::rand_uniform(&[3], 1.0, 1.0, 0).is_err());
    assert!(Tensor::<f32>::rand_normal(&[3], 0.0, f32::NAN, 0).is_err());
}
