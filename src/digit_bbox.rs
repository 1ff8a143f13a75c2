//! The `digit_bbox` model of the Keras multi-output article, trained on the
//! synthetic glyphs: 784 inputs -> Dense 64 relu -> a class head (10) and a
//! box head (4), loss weights 1.0 / 0.5; and its convolutional version
//! (`Architecture::Convolutional`) on the same data.

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

/// The convolutional model: `[28, 28, 1]` images -> Conv2D(16, 3, same,
/// relu) -> MaxPooling2D(2) -> Conv2D(32, 3, same, relu) ->
/// MaxPooling2D(2) -> Flatten -> Dense 64 relu, then the same two heads
/// (the box head needs where things are, so the features are flattened
/// rather than pooled globally).
#[derive(MultiOutput)]
pub struct DigitBboxCnn {
    /// The convolutional trunk.
    #[trunk]
    pub body: Sequential,
    /// Ten class logits.
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    pub class: Dense,
    /// The box `[x0, y0, x1, y1] / 28`.
    #[head(loss = Mse::new(), weight = 0.5)]
    pub bbox: Dense,
}

impl DigitBboxCnn {
    /// The model with Keras' default initializers, seeded.
    pub fn new(seed: u64) -> polyhead::Result<Self> {
        use polyhead::layers::{Conv2D, Flatten, Padding, Pooling2D};
        let mut rng = Rng::new(seed);
        let conv = |cin, cout, rng: &mut Rng| {
            Conv2D::builder(cin, cout, [3, 3])
                .padding(Padding::Same)
                .activation(Activation::Relu)
                .build(rng)
        };
        Ok(DigitBboxCnn {
            body: Sequential::new()
                .push(conv(1, 16, &mut rng)?)
                .push(Pooling2D::max([2, 2]))
                .push(conv(16, 32, &mut rng)?)
                .push(Pooling2D::max([2, 2]))
                .push(Flatten)
                .push(
                    Dense::builder(7 * 7 * 32, 64)
                        .activation(Activation::Relu)
                        .build(&mut rng)?,
                ),
            class: Dense::new(64, 10, &mut rng)?,
            bbox: Dense::new(64, 4, &mut rng)?,
        })
    }
}

/// Which model `run` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Architecture {
    /// The article's model on flattened pixels.
    #[default]
    Dense,
    /// [`DigitBboxCnn`] on `[28, 28, 1]` images.
    Convolutional,
}

/// How long to train.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which model.
    pub architecture: Architecture,
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
/// let report = run(&Config { architecture: Default::default(), train: 6000, validation: 1000, epochs: 10, progress: polyhead::Progress::Auto, weighting: Weighting::Fixed })?;
/// println!("validation accuracy {:.3}", report.val_accuracy);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn run(config: &Config) -> polyhead::Result<Report> {
    let train = glyphs::generate(config.train, 1)?;
    let val = glyphs::generate(config.validation, 2)?;
    let history = match config.architecture {
        Architecture::Dense => {
            let mut model = DigitBbox::new(42)?;
            trainer::<DigitBbox>(config)
                .validation_data(
                    val.images.clone(),
                    DigitBboxTargets::new(val.labels.clone(), val.boxes.clone()),
                )
                .fit(
                    &mut model,
                    &train.images,
                    &DigitBboxTargets::new(train.labels, train.boxes),
                )?
        }
        Architecture::Convolutional => {
            let image = |x: &Tensor<f32>| {
                let n = x.shape()[0];
                x.reshape(&[n, glyphs::SIDE, glyphs::SIDE, 1])
            };
            let mut model = DigitBboxCnn::new(42)?;
            trainer::<DigitBboxCnn>(config)
                .validation_data(
                    image(&val.images)?,
                    DigitBboxCnnTargets::new(val.labels.clone(), val.boxes.clone()),
                )
                .fit(
                    &mut model,
                    &image(&train.images)?,
                    &DigitBboxCnnTargets::new(train.labels, train.boxes),
                )?
        }
    };
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

/// The trainer both models share: Adam 2e-3, batches of 64, accuracy and
/// box MAE.
fn trainer<M>(config: &Config) -> Trainer<M, f32>
where
    M: MultiOutput<f32>,
    M::Targets: polyhead::TargetSet<f32>,
{
    Trainer::<M, f32>::new(Adam::new(2e-3).build())
        .epochs(config.epochs)
        .batch_size(64)
        .metric("class", Metric::Accuracy)
        .metric("bbox", Metric::Mae)
        .weighting(config.weighting.clone())
        .progress(config.progress.clone())
}

/// Writes `n` glyphs drawn with `seed` to `dir` as `images.npy` (`[n,
/// 784]`) and `labels.csv` (`class, x0, y0, x1, y1`), leaving a fraction
/// `missing` of the classes and, separately, of the boxes empty: a
/// partially labelled data set on disk.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("polyhead-digits-doc-{}", std::process::id()));
/// polyhead_examples::digit_bbox::write_to_disk(&dir, 8, 1, 0.25)?;
/// let (images, targets) = polyhead_examples::digit_bbox::read_from_disk(&dir)?;
/// assert_eq!(images.shape(), &[8, 784]);
/// # let _ = targets;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn write_to_disk(
    dir: &std::path::Path,
    n: usize,
    seed: u64,
    missing: f64,
) -> polyhead::Result<()> {
    let data = glyphs::generate(n, seed)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| polyhead::Error::Other(format!("{}: {e}", dir.display())))?;
    polyhead::data::write_npy(dir.join("images.npy"), &data.images)?;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let classes: Vec<i64> = data.labels.as_array().iter().copied().collect();
    let boxes = data.boxes.to_vec();
    let mut csv = String::from("class,x0,y0,x1,y1\n");
    for (i, class) in classes.iter().enumerate() {
        let class = if rng.uniform() < missing {
            String::new()
        } else {
            class.to_string()
        };
        let bbox = if rng.uniform() < missing {
            ",,,".to_string()
        } else {
            boxes[i * 4..i * 4 + 4]
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        csv.push_str(&format!("{class},{bbox}\n"));
    }
    std::fs::write(dir.join("labels.csv"), csv)
        .map_err(|e| polyhead::Error::Other(format!("{}: {e}", dir.display())))
}

/// Reads what [`write_to_disk`] wrote: the images, and the targets with
/// each head's mask (0 where the file has no label for that head).
pub fn read_from_disk(
    dir: &std::path::Path,
) -> polyhead::Result<(Tensor<f32>, DigitBboxTargets<f32>)> {
    let images = polyhead::data::read_npy::<f32>(dir.join("images.npy"))?;
    let table = polyhead::data::CsvReader::new()
        .classes("class", 10)
        .values("bbox", &["x0", "y0", "x1", "y1"])
        .read::<f32>(dir.join("labels.csv"))?;
    if table.rows() != images.shape()[0] {
        return Err(polyhead::Error::Other(format!(
            "{}: {} label rows for {} images",
            dir.display(),
            table.rows(),
            images.shape()[0]
        )));
    }
    let targets = DigitBboxTargets::new(table.labels("class")?, table.values("bbox")?)
        .class_mask(table.mask("class")?)
        .bbox_mask(table.mask("bbox")?);
    Ok((images, targets))
}

/// [`run`]'s dense model trained from files: the training and validation
/// glyphs are written to `dir` with a fraction `missing` of each head's
/// labels left out, read back, and trained on (each head learns from the
/// rows that have its label).
pub fn run_from_disk(
    config: &Config,
    dir: &std::path::Path,
    missing: f64,
) -> polyhead::Result<Report> {
    write_to_disk(&dir.join("train"), config.train, 1, missing)?;
    write_to_disk(&dir.join("validation"), config.validation, 2, 0.0)?;
    let (x, targets) = read_from_disk(&dir.join("train"))?;
    let (vx, vt) = read_from_disk(&dir.join("validation"))?;
    let mut model = DigitBbox::new(42)?;
    let history = trainer::<DigitBbox>(config)
        .validation_data(vx, vt)
        .fit(&mut model, &x, &targets)?;
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
