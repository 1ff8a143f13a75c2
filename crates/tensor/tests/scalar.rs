//! 0-dimensional tensors hold their value inline instead of in an array;
//! every operation must treat them exactly like a 0-d array would.

use ndarray::{ArcArray, ArrayD, IxDyn};
use polyhead_tensor::Tensor;

/// The same 0-d tensor made every way the API allows.
fn scalars(value: f64) -> Vec<(&'static str, Tensor<f64>)> {
    vec![
        ("scalar", Tensor::scalar(value)),
        ("from_vec", Tensor::from_vec(vec![value], &[]).unwrap()),
        ("full", Tensor::full(&[], value).unwrap()),
        (
            "from_array",
            Tensor::from_array(ArrayD::from_elem(IxDyn(&[]), value)),
        ),
        (
            "from_shared",
            Tensor::from_shared(ArcArray::from_elem(IxDyn(&[]), value)),
        ),
        (
            "reshape",
            Tensor::from_vec(vec![value], &[1, 1])
                .unwrap()
                .reshape(&[])
                .unwrap(),
        ),
        (
            "sum_all",
            Tensor::from_vec(vec![value], &[1]).unwrap().sum_all(false),
        ),
    ]
}

#[test]
fn every_way_of_making_a_scalar_inspects_the_same() {
    for (how, t) in scalars(2.5) {
        assert_eq!(t.shape(), &[] as &[usize], "{how}");
        assert_eq!((t.ndim(), t.len(), t.is_empty()), (0, 1, false), "{how}");
        assert!(t.is_contiguous(), "{how}");
        assert_eq!(t.item().unwrap(), 2.5, "{how}");
        assert_eq!(t.to_vec(), vec![2.5], "{how}");
        assert_eq!(t.as_slice(), Some(&[2.5][..]), "{how}");
        assert_eq!(t.get(&[]).unwrap(), 2.5, "{how}");
        assert!(t.get(&[0]).is_err(), "{how}");
        assert_eq!(t.view().shape(), &[] as &[usize], "{how}");
        assert_eq!(t.view().sum(), 2.5, "{how}");
        assert_eq!(t.to_shared().ndim(), 0, "{how}");
        assert_eq!(t.to_contiguous().item().unwrap(), 2.5, "{how}");
        assert_eq!(format!("{t:?}"), "Tensor<f64>[] 2.5", "{how}");
    }
}

#[test]
fn scalars_convert_to_and_from_arrays() {
    let t = Tensor::scalar(4.0_f64);
    let held = t.clone();
    // Nothing is shared for an inline value: the array is always new.
    let a = t.try_into_array().unwrap();
    assert_eq!((a.ndim(), a[IxDyn(&[])]), (0, 4.0));
    assert_eq!(held.into_array().sum(), 4.0);
    let cast: Tensor<f32> = Tensor::scalar(0.1_f64).cast();
    assert_eq!(cast.shape(), &[] as &[usize]);
    assert_eq!(cast.item().unwrap(), 0.1_f32);
}

#[test]
fn scalar_arithmetic_matches_one_element_arrays() {
    let s = Tensor::scalar(3.0_f64);
    let one = Tensor::from_vec(vec![3.0_f64], &[1]).unwrap();
    let m = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    // Broadcasting a scalar against a matrix, both ways round.
    assert_eq!(s.mul(&m).unwrap().to_vec(), one.mul(&m).unwrap().to_vec());
    assert_eq!(
        m.sub(&s).unwrap().to_vec(),
        vec![-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(s.sub(&m).unwrap().shape(), &[2, 3]);
    // Scalar with scalar stays a scalar.
    let sum = s.add(&Tensor::scalar(0.5)).unwrap();
    assert_eq!((sum.shape(), sum.item().unwrap()), (&[] as &[usize], 3.5));
    let scaled = s.mul_scalar(2.0);
    assert_eq!(
        (scaled.shape(), scaled.item().unwrap()),
        (&[] as &[usize], 6.0)
    );
    assert_eq!(s.map(f64::sqrt).item().unwrap(), 3.0_f64.sqrt());
    assert_eq!(s.sum_all(false).item().unwrap(), 3.0);
    assert_eq!(s.sum_all(true).shape(), &[] as &[usize]);
    assert!(s.all_close(&Tensor::scalar(3.0 + 1e-12), 1e-9, 0.0));
    assert!(!s.all_close(&one, 1e-9, 0.0), "shapes [] and [1] differ");
    // Shape operations.
    assert_eq!(s.reshape(&[1, 1]).unwrap().to_vec(), vec![3.0]);
    assert_eq!(s.broadcast_to(&[2, 2]).unwrap().to_vec(), vec![3.0; 4]);
    assert_eq!(
        Tensor::stack(&[s.clone(), Tensor::scalar(4.0)], 0)
            .unwrap()
            .to_vec(),
        vec![3.0, 4.0]
    );
}

#[test]
fn axis_operations_on_a_scalar_are_errors_not_panics() {
    let s = Tensor::scalar(1.0_f64);
    assert!(s.transpose(0, 1).is_err());
    assert!(s.sum_axis(0, false).is_err());
    assert!(s.slice_axis(0, 0, 1).is_err());
    assert!(s.permute(&[0]).is_err());
    assert_eq!(s.permute(&[]).unwrap().item().unwrap(), 1.0);
    assert!(s.reshape(&[2]).is_err());
}
