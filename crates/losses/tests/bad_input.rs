//! Bad input gets a clear error naming the loss and the shapes or values,
//! never a panic or a silent NaN.

use polyhead_losses::*;
use polyhead_tensor::Tensor;
use proptest::prelude::*;

fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

#[test]
fn n_against_n_by_1_is_an_error_not_a_broadcast() {
    let err = Mse::new()
        .value_and_grad(
            &Tensor::<f64>::zeros(&[4]).unwrap(),
            &Tensor::zeros(&[4, 1]).unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mse: prediction has shape [4] but target has shape [4, 1]; shapes must match exactly (no broadcasting)"
    );
    let err = CrossEntropy::from_logits()
        .value_and_grad(
            &Tensor::<f64>::zeros(&[2, 3]).unwrap(),
            &Tensor::zeros(&[2, 4]).unwrap(),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cross_entropy: prediction has shape [2, 3] but target has shape [2, 4]")
    );
}

#[test]
fn labels_out_of_range_or_negative_name_the_label_and_position() {
    let logits = Tensor::<f64>::zeros(&[3, 10]).unwrap();
    let loss = SparseCrossEntropy::from_logits();
    let err = loss
        .value_and_grad(&logits, &Labels::new(vec![1, 2, 12], &[3]).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sparse_cross_entropy: labels must be in 0..10, found 12 at position [2]"
    );
    let err = loss
        .value_and_grad(&logits, &Labels::new(vec![-1, 2, 3], &[3]).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sparse_cross_entropy: labels must be in 0..10, found -1 at position [0]"
    );
    let err = loss
        .value_and_grad(&logits, &Labels::new(vec![1, 2], &[2]).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sparse_cross_entropy: prediction has shape [3, 10] but target has shape [2]; labels must have shape [3] (the prediction without its class axis 1)"
    );
    let err = MultiMargin::new()
        .value_and_grad(&logits, &Labels::new(vec![0, 10, 1], &[3]).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "multi_margin: labels must be in 0..10, found 10 at position [1]"
    );
}

#[test]
fn negative_or_nan_weights_are_errors() {
    let pred = t(&[0.5, 0.5], &[2, 1]);
    let target = t(&[0.0, 1.0], &[2, 1]);
    let err = Mse::new()
        .value_and_grad(&pred, &target, Some(&t(&[1.0, -2.0], &[2])))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mse: sample weights must be finite and non-negative, found -2 at [1]"
    );
    let err = Mse::new()
        .value_and_grad(&pred, &target, Some(&t(&[f64::NAN, 1.0], &[2])))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mse: sample weights must be finite and non-negative, found NaN at [0]"
    );
    let err = Mse::new()
        .value_and_grad(&pred, &target, Some(&t(&[1.0, 1.0, 1.0], &[3])))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mse: sample weights of shape [3] do not fit the per-sample loss shape [2]"
    );
    let logits = Tensor::<f64>::zeros(&[2, 3]).unwrap();
    let labels = Labels::from_classes(&[0, 1]);
    let err = SparseCrossEntropy::from_logits()
        .class_weights(vec![1.0, f64::NAN, 1.0])
        .value_and_grad(&logits, &labels, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sparse_cross_entropy: class weights must be finite and non-negative, found NaN at class 1"
    );
    let err = SparseCrossEntropy::from_logits()
        .class_weights(vec![1.0; 2])
        .value_and_grad(&logits, &labels, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sparse_cross_entropy: 2 class weights for 3 classes"
    );
    let err = BinaryCrossEntropy::from_logits()
        .pos_weight(vec![1.0; 2])
        .value_and_grad(&logits, &Tensor::zeros(&[2, 3]).unwrap(), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "binary_cross_entropy: 2 pos_weight values for a last axis of 3"
    );
}

#[test]
fn an_empty_batch_is_an_error() {
    let empty = Tensor::<f64>::zeros(&[0, 3]).unwrap();
    let err = Mse::new().value_and_grad(&empty, &empty, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mse: empty batch: prediction has shape [0, 3]"
    );
    let err = SparseCrossEntropy::from_logits()
        .value_and_grad(&empty, &Labels::from_classes(&[]), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sparse_cross_entropy: empty batch: prediction has shape [0, 3]"
    );
    let scalar = Tensor::scalar(1.0);
    assert!(Mse::new().value_and_grad(&scalar, &scalar, None).is_err());
}

#[test]
fn options_out_of_range_are_errors() {
    let x = Tensor::<f64>::zeros(&[2, 2]).unwrap();
    let err = CrossEntropy::from_logits()
        .label_smoothing(1.5)
        .value_and_grad(&x, &x, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cross_entropy: label_smoothing must be in [0, 1], got 1.5"
    );
    let err = Huber::new(-1.0).value_and_grad(&x, &x, None).unwrap_err();
    assert_eq!(err.to_string(), "huber: delta must be > 0, got -1");
    let err = BinaryFocalLoss::from_logits()
        .gamma(-1.0)
        .value_and_grad(&x, &x, None)
        .unwrap_err();
    assert_eq!(err.to_string(), "binary_focal: gamma must be >= 0, got -1");
}

#[test]
fn cosine_embedding_rejects_a_one_dimensional_prediction() {
    let x = t(&[1.0, 2.0], &[2]);
    let target = CosineTarget {
        other: x.clone(),
        sign: t(&[1.0, 1.0], &[2]),
    };
    let err = CosineEmbedding::new(0.0)
        .value_and_grad(&x, &target, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cosine_embedding: prediction has shape [2] but target has shape [2]; the prediction must be [batch, dim] and the pair labels [batch] = [2]"
    );
}

#[test]
fn an_all_ignored_batch_has_loss_zero_not_nan() {
    let logits = Tensor::<f64>::zeros(&[2, 3]).unwrap();
    let labels = Labels::new(vec![-100, -100], &[2]).unwrap();
    let loss = SparseCrossEntropy::from_logits()
        .ignore_index(-100)
        .convention(Convention::PyTorch);
    let out = loss.value_and_grad(&logits, &labels, None).unwrap();
    assert_eq!(out.value.item().unwrap(), 0.0);
    assert!(out.grad.to_vec().iter().all(|&g| g == 0.0));
    // Zero sample weights with WeightedMean: 0, not 0/0.
    let pred = Tensor::<f64>::ones(&[2, 1]).unwrap();
    let out = Mse::new()
        .reduction(Reduction::WeightedMean)
        .value_and_grad(
            &pred,
            &Tensor::zeros(&[2, 1]).unwrap(),
            Some(&Tensor::zeros(&[2]).unwrap()),
        )
        .unwrap();
    assert_eq!(out.value.item().unwrap(), 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256))
    })]

    #[test]
    fn hostile_shapes_give_ok_or_err_never_a_panic(
        ps in prop::collection::vec(0usize..4, 0..4),
        ts in prop::collection::vec(0usize..4, 0..4),
        ws in prop::collection::vec(0usize..4, 0..3),
        labels in prop::collection::vec(-2i64..5, 0..5),
    ) {
        let pred = Tensor::<f64>::rand_normal(&ps, 0.0, 1.0, 1).unwrap();
        let target = Tensor::<f64>::rand_uniform(&ts, 0.0, 1.0, 2).unwrap();
        let w = Tensor::<f64>::ones(&ws).unwrap();
        let n = labels.len();
        let labels = Labels::new(labels, &[n]).unwrap();
        let dense: Vec<Box<dyn Loss<f64, Target = Tensor<f64>>>> = vec![
            Box::new(Mse::new()), Box::new(Huber::new(1.0).convention(Convention::PyTorch)),
            Box::new(CrossEntropy::from_logits()), Box::new(CrossEntropy::from_probabilities().convention(Convention::PyTorch)),
            Box::new(BinaryCrossEntropy::from_logits().pos_weight(vec![1.0, 2.0])), Box::new(BinaryFocalLoss::from_logits()),
            Box::new(CategoricalFocalCrossEntropy::from_logits()), Box::new(KlDivergence::new()), Box::new(CosineSimilarity::new()),
            Box::new(CategoricalHinge::new()), Box::new(Hinge::new()), Box::new(Poisson::new().full(true)),
        ];
        for loss in &dense {
            for weights in [None, Some(&w)] {
                if let Ok(out) = loss.value_and_grad(&pred, &target, weights) {
                    prop_assert_eq!(out.grad.shape(), pred.shape());
                }
            }
        }
        let sparse: Vec<Box<dyn Loss<f64, Target = Labels>>> = vec![
            Box::new(SparseCrossEntropy::from_logits().ignore_index(-1)),
            Box::new(SparseCrossEntropy::from_probabilities().convention(Convention::PyTorch)),
            Box::new(MultiMargin::new()),
        ];
        for loss in &sparse {
            let _ = loss.value_and_grad(&pred, &labels, Some(&w));
        }
        let cosine = CosineEmbedding::new(0.0);
        let _ = cosine.value_and_grad(&pred, &CosineTarget { other: target.clone(), sign: w.clone() }, None);
        let _ = cosine.value_and_grad(&pred, &CosineTarget { other: pred.clone(), sign: Tensor::ones(&ps[..ps.len().min(1)]).unwrap() }, None);
    }
}

/// Labels are checked by counting scans (vectorised); whatever the ignored
/// label, every out-of-range label that is not ignored is reported with its
/// position, and nothing else is.
#[test]
fn sparse_labels_out_of_range_are_reported_unless_ignored() {
    let logits = Tensor::<f32>::zeros(&[4, 10]).unwrap();
    let run = |ignore: Option<i64>, labels: Vec<i64>| {
        let mut loss = SparseCrossEntropy::from_logits();
        if let Some(ig) = ignore {
            loss = loss.ignore_index(ig);
        }
        loss.value_and_grad(&logits, &Labels::new(labels, &[4]).unwrap(), None)
    };
    let bad = |ignore, labels: Vec<i64>| match run(ignore, labels) {
        Err(LossError::Label {
            label, position, ..
        }) => (label, position),
        other => panic!("expected a label error, got {other:?}"),
    };
    assert!(run(None, vec![0, 9, 5, 1]).is_ok());
    assert_eq!(bad(None, vec![0, 9, 10, 1]), (10, vec![2]));
    assert_eq!(bad(None, vec![-1, 9, 0, 1]), (-1, vec![0]));
    assert_eq!(bad(None, vec![0, 1, 2, i64::MIN]), (i64::MIN, vec![3]));
    // An ignored label outside the classes (PyTorch's -100).
    assert!(run(Some(-100), vec![-100, 3, -100, 9]).is_ok());
    assert_eq!(bad(Some(-100), vec![-100, -5, 0, 0]), (-5, vec![1]));
    assert_eq!(bad(Some(-100), vec![-100, -100, 10, 0]), (10, vec![2]));
    // An ignored label inside them: ignored, and the rest still checked.
    let all_ignored = run(Some(3), vec![3, 3, 3, 3]).unwrap();
    assert_eq!(all_ignored.value.item().unwrap(), 0.0);
    assert_eq!(bad(Some(3), vec![3, 12, 3, 0]), (12, vec![1]));
}
