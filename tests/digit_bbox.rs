//! A short run of the main example's training reaches an accuracy and a
//! box error far better than chance.

use polyhead::Progress;
use polyhead_examples::digit_bbox::{Config, run};
use polyhead_examples::glyphs;

/// The box error of always predicting the mean box of the validation set
/// (the best constant guess), in pixels.
fn constant_guess_error(validation: usize) -> f64 {
    let boxes = glyphs::generate(validation, 2).unwrap().boxes;
    let mean = boxes.mean_axis(0, true).unwrap();
    let err = boxes
        .sub(&mean)
        .unwrap()
        .abs()
        .mean_all()
        .unwrap()
        .item()
        .unwrap();
    f64::from(err) * glyphs::SIDE as f64
}

#[test]
fn a_short_digit_bbox_run_learns_both_heads() {
    let report = run(&Config {
        architecture: Default::default(),
        train: 4000,
        validation: 500,
        epochs: 6,
        progress: Progress::Silent,
        weighting: || Box::new(polyhead::weighting::Fixed),
        tensorboard: None,
        data_parallel: None,
    })
    .unwrap();
    // Chance is 0.1 for the class.
    assert!(
        report.val_accuracy > 0.5,
        "validation accuracy {}",
        report.val_accuracy
    );
    let baseline = constant_guess_error(500);
    assert!(
        report.val_box_error_pixels < 0.8 * baseline,
        "box error {} px, constant guess {baseline} px",
        report.val_box_error_pixels
    );
    let losses = report.history.get("loss").unwrap();
    assert!(losses.last().unwrap() < &(0.6 * losses[0]));
}

/// `predict` and `evaluate` on both example models agree with each other:
/// the accuracy and box error `evaluate` reports are those of the
/// predictions.
#[test]
fn predict_and_evaluate_agree_on_both_example_models() {
    use polyhead::prelude::*;
    use polyhead_examples::digit_bbox::{
        DigitBbox, DigitBboxCnn, DigitBboxCnnTargets, DigitBboxTargets,
    };
    let data = glyphs::generate(50, 3).unwrap();
    let classes: Vec<usize> = data.labels.as_array().iter().map(|&c| c as usize).collect();
    let check = |class: &Tensor<f32>, bbox: &Tensor<f32>, scores: &[(String, f64)]| {
        assert_eq!((class.shape(), bbox.shape()), (&[50, 10][..], &[50, 4][..]));
        let predicted: Vec<usize> = class
            .argmax_axis(1, false)
            .unwrap()
            .iter()
            .copied()
            .collect();
        let hits = predicted
            .iter()
            .zip(&classes)
            .filter(|(p, c)| p == c)
            .count();
        let score = |name: &str| scores.iter().find(|(n, _)| n == name).unwrap().1;
        assert!((score("class_accuracy") - hits as f64 / 50.0).abs() < 1e-12);
        let mae = bbox
            .sub(&data.boxes)
            .unwrap()
            .abs()
            .mean_all()
            .unwrap()
            .item()
            .unwrap();
        assert!(
            (score("bbox_mae") - f64::from(mae)).abs() < 1e-6,
            "{scores:?}"
        );
    };
    fn trainer<M>() -> Trainer<M, f32>
    where
        M: MultiOutput<f32>,
        M::Targets: polyhead::TargetSet<f32>,
    {
        Trainer::new(Sgd::new(0.1).build())
            .batch_size(16)
            .metric("class", Metric::Accuracy)
            .metric("bbox", Metric::Mae)
    }

    let mut dense = DigitBbox::new(1).unwrap();
    let t = trainer::<DigitBbox>();
    let out = t.predict(&mut dense, &data.images).unwrap();
    let targets = DigitBboxTargets::new(data.labels.clone(), data.boxes.clone());
    check(
        &out.class,
        &out.bbox,
        &t.evaluate(&mut dense, &data.images, &targets).unwrap(),
    );

    let mut cnn = DigitBboxCnn::new(1).unwrap();
    let images = data
        .images
        .reshape(&[50, glyphs::SIDE, glyphs::SIDE, 1])
        .unwrap();
    let t = trainer::<DigitBboxCnn>();
    let out = t.predict(&mut cnn, &images).unwrap();
    let targets = DigitBboxCnnTargets::new(data.labels.clone(), data.boxes.clone());
    check(
        &out.class,
        &out.bbox,
        &t.evaluate(&mut cnn, &images, &targets).unwrap(),
    );
}

/// The glyphs written to disk with labels left out read back as the same
/// images and labels, with each head's mask marking exactly the rows that
/// kept its label; a short run from those files learns both heads.
#[test]
fn digit_bbox_from_disk_keeps_the_data_and_masks_missing_labels() {
    use polyhead::data::Dataset;
    use polyhead_examples::digit_bbox::{
        DigitBbox, read_from_disk, run_from_disk, stream_from_disk, write_to_disk,
    };
    let dir = std::env::temp_dir().join(format!("polyhead-digits-test-{}", std::process::id()));
    write_to_disk(&dir, 200, 4, 0.3).unwrap();
    let (images, targets) = read_from_disk(&dir).unwrap();
    let data = glyphs::generate(200, 4).unwrap();
    // The files hold 8-bit levels: each pixel within half a level.
    for (got, want) in images.to_vec().iter().zip(data.images.to_vec()) {
        assert!((got - want).abs() <= 0.5 / 255.0 + 1e-6, "{got} vs {want}");
    }
    assert!(
        images
            .to_vec()
            .iter()
            .all(|v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-4)
    );
    // The PNG folder, streamed, gives the .npz's pixels and the manifest's
    // targets for any rows asked for.
    let streamed = stream_from_disk(&dir).unwrap();
    assert_eq!(Dataset::<DigitBbox, f32>::len(&streamed), 200);
    let rows = [17, 3, 199, 0];
    let (x, t) = Dataset::<DigitBbox, f32>::batch(&streamed, &rows).unwrap();
    let want = polyhead::TargetSet::select_rows(&targets, &rows).unwrap();
    let all = images.to_vec();
    let want_x: Vec<f32> = rows
        .iter()
        .flat_map(|&r| all[r * 784..(r + 1) * 784].to_vec())
        .collect();
    assert_eq!(x.to_vec(), want_x);
    assert_eq!(t.class.as_array(), want.class.as_array());
    assert_eq!(t.bbox.to_vec(), want.bbox.to_vec());
    assert_eq!(
        t.masks.class.unwrap().to_vec(),
        want.masks.class.unwrap().to_vec()
    );
    assert_eq!(
        t.masks.bbox.unwrap().to_vec(),
        want.masks.bbox.unwrap().to_vec()
    );
    let class_mask = targets.masks.class.clone().unwrap().to_vec();
    let bbox_mask = targets.masks.bbox.clone().unwrap().to_vec();
    let kept = |m: &[f32]| m.iter().filter(|&&v| v == 1.0).count();
    // About 70% kept, and never a row with a label but mask 0 or the reverse.
    assert!(
        (100..180).contains(&kept(&class_mask)),
        "{}",
        kept(&class_mask)
    );
    assert!(
        (100..180).contains(&kept(&bbox_mask)),
        "{}",
        kept(&bbox_mask)
    );
    let gold: Vec<i64> = data.labels.as_array().iter().copied().collect();
    for (i, (&m, &label)) in class_mask
        .iter()
        .zip(targets.class.as_array().iter())
        .enumerate()
    {
        if m == 1.0 {
            assert_eq!(label, gold[i]);
        }
    }
    let report = run_from_disk(
        &Config {
            architecture: Default::default(),
            train: 3000,
            validation: 300,
            epochs: 4,
            progress: Progress::Silent,
            weighting: || Box::new(polyhead::weighting::Fixed),
            tensorboard: None,
            data_parallel: None,
        },
        &dir.join("run"),
        0.2,
    )
    .unwrap();
    assert!(report.val_accuracy > 0.4, "{}", report.val_accuracy);
    let _ = std::fs::remove_dir_all(&dir);
}
