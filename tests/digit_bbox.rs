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
        weighting: polyhead::weighting::Weighting::Fixed,
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
