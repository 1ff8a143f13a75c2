//! The `digit_bbox` model of the Keras multi-output article, trained on the
//! synthetic glyphs: 784 inputs -> Dense 64 relu -> a class head (10) and a
//! box head (4), loss weights 1.0 / 0.5.

use polyhead::prelude::*;
use polyhead::{Progress, Trainer};

use crate::glyphs;

/// The model: a shared hidden layer and two heads.
#[derive(MultiOutput)]
pub struct DigitBbox {
    /// 784 -> 64, ReLU.
    #[trunk]
    pub hidden: Dense,
    /// Ten class logits.
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    pub class: Dense,
    /// The box `[x0, y0, x1, y1] / 28`.
    #[head(loss = Mse::new(), weight = 0.5)]
    pub bbox: Dense,
}

impl DigitBbox {
    /// The model with Keras' default initializers, seeded.
    pub fn new(seed: u64) -> polyhead::Result<Self> {
        let mut rng = Rng::new(seed);
        Ok(DigitBbox {
            hidden: Dense::builder(784, 64)
                .activation(Activation::Relu)
                .build(&mut rng)?,
            class: Dense::new(64, 10, &mut rng)?,
            bbox: Dense::new(64, 4, &mut rng)?,
        })
    }
}

/// How long to train.
#[derive(Debug, Clone)]
pub struct Config {
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub validation: usize,
    /// Passes over the training images.
    pub epochs: usize,
    /// Where to report progress.
    pub progress: Progress,
    /// How the two losses are weighted.
    pub weighting: polyhead::weighting::Weighting<f32>,
}

/// What a run achieved.
#[derive(Debug, Clone)]
pub struct Report {
    /// The per-epoch history.
    pub history: History,
    /// Validation accuracy of the class head at the end.
    pub val_accuracy: f64,
    /// Mean absolute box error at the end, in pixels.
    pub val_box_error_pixels: f64,
}

/// Generates the data, trains, and reports.
///
/// ```no_run
/// use polyhead_examples::digit_bbox::{run, Config};
/// use polyhead::weighting::Weighting;
/// let report = run(&Config { train: 6000, validation: 1000, epochs: 10, progress: polyhead::Progress::Auto, weighting: Weighting::Fixed })?;
/// println!("validation accuracy {:.3}", report.val_accuracy);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn run(config: &Config) -> polyhead::Result<Report> {
    let train = glyphs::generate(config.train, 1)?;
    let val = glyphs::generate(config.validation, 2)?;
    let mut model = DigitBbox::new(42)?;
    let mut trainer = Trainer::<DigitBbox, f32>::new(Adam::new(2e-3).build())
        .epochs(config.epochs)
        .batch_size(64)
        .validation_data(
            val.images.clone(),
            DigitBboxTargets::new(val.labels.clone(), val.boxes.clone()),
        )
        .metric("class", Metric::Accuracy)
        .metric("bbox", Metric::Mae)
        .weighting(config.weighting.clone())
        .progress(config.progress.clone());
    let history = trainer.fit(
        &mut model,
        &train.images,
        &DigitBboxTargets::new(train.labels, train.boxes),
    )?;
    let last = |name: &str| {
        history
            .get(name)
            .and_then(|v| v.last().copied())
            .unwrap_or(f64::NAN)
    };
    Ok(Report {
        val_accuracy: last("val_class_accuracy"),
        val_box_error_pixels: last("val_bbox_mae") * glyphs::SIDE as f64,
        history,
    })
}
