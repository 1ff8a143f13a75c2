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
    /// How the two losses are weighted: a function making the strategy
    /// (so that one config can run several times, each from a fresh one).
    pub weighting: fn() -> Box<dyn polyhead::weighting::Weighting<f32>>,
    /// Where to write TensorBoard logs, if anywhere.
    pub tensorboard: Option<std::path::PathBuf>,
    /// Data-parallel ranks to train over, if any (a function making them,
    /// as for `weighting`).
    pub data_parallel: Option<fn() -> polyhead::distributed::DataParallel>,
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
    /// Data-parallel: what the collectives cost.
    pub communication: Option<polyhead::distributed::Stats>,
}

impl Report {
    /// The last epoch's validation accuracy and box error (NaN where not
    /// logged) with the whole history.
    fn of(history: History) -> Self {
        let last = |name: &str| {
            history
                .get(name)
                .and_then(|v| v.last().copied())
                .unwrap_or(f64::NAN)
        };
        Report {
            communication: None,
            val_accuracy: last("val_class_accuracy"),
            val_box_error_pixels: last("val_bbox_mae") * glyphs::SIDE as f64,
            history,
        }
    }
}

/// Generates the data, trains, and reports.
///
/// ```no_run
/// use polyhead_examples::digit_bbox::{run, Config};
/// use polyhead::weighting::Fixed;
/// let report = run(&Config { architecture: Default::default(), train: 6000, validation: 1000, epochs: 10, progress: polyhead::Progress::Auto, weighting: || Box::new(Fixed), tensorboard: None, data_parallel: None })?;
/// println!("validation accuracy {:.3}", report.val_accuracy);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub fn run(config: &Config) -> polyhead::Result<Report> {
    let train = glyphs::generate(config.train, 1)?;
    let val = glyphs::generate(config.validation, 2)?;
    let history = match config.architecture {
        Architecture::Dense => {
            let mut model = DigitBbox::new(42)?;
            let mut trainer = trainer::<DigitBbox>(config).validation_data(
                val.images.clone(),
                DigitBboxTargets::new(val.labels.clone(), val.boxes.clone()),
            );
            let history = trainer.fit(
                &mut model,
                &train.images,
                &DigitBboxTargets::new(train.labels, train.boxes),
            )?;
            (history, trainer.parallel().map(|p| p.stats()))
        }
        Architecture::Convolutional => {
            let image = |x: &Tensor<f32>| {
                let n = x.shape()[0];
                x.reshape(&[n, glyphs::SIDE, glyphs::SIDE, 1])
            };
            let mut model = DigitBboxCnn::new(42)?;
            let mut trainer = trainer::<DigitBboxCnn>(config).validation_data(
                image(&val.images)?,
                DigitBboxCnnTargets::new(val.labels.clone(), val.boxes.clone()),
            );
            let history = trainer.fit(
                &mut model,
                &image(&train.images)?,
                &DigitBboxCnnTargets::new(train.labels, train.boxes),
            )?;
            (history, trainer.parallel().map(|p| p.stats()))
        }
    };
    let (history, communication) = history;
    Ok(Report {
        communication,
        ..Report::of(history)
    })
}

/// The trainer both models share: Adam 2e-3, batches of 64, accuracy and
/// box MAE, and TensorBoard logs (with weight histograms every 5 epochs)
/// if the config asks.
fn trainer<M>(config: &Config) -> Trainer<M, f32>
where
    M: MultiOutput<f32>,
    M::Targets: polyhead::TargetSet<f32>,
{
    let trainer = Trainer::<M, f32>::new(Adam::new(2e-3).build())
        .epochs(config.epochs)
        .batch_size(64)
        .metric("class", Metric::Accuracy)
        .metric("bbox", Metric::Mae)
        .weighting((config.weighting)())
        .progress(config.progress.clone());
    let trainer = match config.data_parallel {
        Some(make) => trainer.data_parallel(make()),
        None => trainer,
    };
    match &config.tensorboard {
        Some(dir) => trainer.callback(polyhead::TensorBoard::new(dir).histogram_freq(5)),
        None => trainer,
    }
}

/// Writes `n` glyphs drawn with `seed` to `dir` as an image folder: one
/// PNG per glyph (`images/00000.png`, ...) and a manifest `labels.csv`
/// (`file, class, x0, y0, x1, y1`), leaving a fraction `missing` of the
/// classes and, separately, of the boxes empty (a partially labelled data
/// set); and the same pixels as one array `images` (`[n, 784]`, 8-bit
/// levels as the PNGs hold them) in `images.npz`.
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
    let io = |e: &dyn std::fmt::Display| polyhead::Error::Other(format!("{}: {e}", dir.display()));
    let data = glyphs::generate(n, seed)?;
    std::fs::create_dir_all(dir.join("images")).map_err(|e| io(&e))?;
    // 8-bit levels, as a PNG holds them.
    let levels: Vec<u8> = data
        .images
        .to_vec()
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let side = glyphs::SIDE as u32;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let classes: Vec<i64> = data.labels.as_array().iter().copied().collect();
    let boxes = data.boxes.to_vec();
    let mut csv = String::from("file,class,x0,y0,x1,y1\n");
    for (i, pixels) in levels.chunks(glyphs::SIDE * glyphs::SIDE).enumerate() {
        let file = format!("images/{i:05}.png");
        image::GrayImage::from_raw(side, side, pixels.to_vec())
            .expect("a glyph has side * side pixels")
            .save(dir.join(&file))
            .map_err(|e| io(&e))?;
        let class = if rng.uniform() < missing {
            String::new()
        } else {
            classes[i].to_string()
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
        csv.push_str(&format!("{file},{class},{bbox}\n"));
    }
    std::fs::write(dir.join("labels.csv"), csv).map_err(|e| io(&e))?;
    let images = Tensor::from_vec(
        levels
            .iter()
            .map(|&v| (f64::from(v) / 255.0) as f32)
            .collect(),
        data.images.shape(),
    )?;
    polyhead::data::write_npz(dir.join("images.npz"), &[("images", &images)])
}

/// The manifest's targets, each head masked where the file has no label.
fn manifest_targets(
    table: &polyhead::data::CsvTable<f32>,
) -> polyhead::Result<DigitBboxTargets<f32>> {
    Ok(
        DigitBboxTargets::new(table.labels("class")?, table.values("bbox")?)
            .class_mask(table.mask("class")?)
            .bbox_mask(table.mask("bbox")?),
    )
}

/// How the manifest of [`write_to_disk`] maps to the heads' targets.
fn manifest_reader() -> polyhead::data::CsvReader {
    polyhead::data::CsvReader::new()
        .classes("class", 10)
        .values("bbox", &["x0", "y0", "x1", "y1"])
}

/// Reads what [`write_to_disk`] wrote, in memory: the images from
/// `images.npz`, and the targets with each head's mask (0 where the
/// manifest has no label for that head).
pub fn read_from_disk(
    dir: &std::path::Path,
) -> polyhead::Result<(Tensor<f32>, DigitBboxTargets<f32>)> {
    let images = polyhead::data::read_npz::<f32>(dir.join("images.npz"), "images")?;
    let table = manifest_reader().read::<f32>(dir.join("labels.csv"))?;
    if table.rows() != images.shape()[0] {
        return Err(polyhead::Error::Other(format!(
            "{}: {} label rows for {} images",
            dir.display(),
            table.rows(),
            images.shape()[0]
        )));
    }
    Ok((images, manifest_targets(&table)?))
}

/// What [`write_to_disk`] wrote, as a data set read batch by batch: each
/// batch's PNGs are decoded when it is asked for (flattened to the dense
/// model's 784 inputs) with their targets and masks; only the manifest is
/// held in memory.
pub fn stream_from_disk(
    dir: &std::path::Path,
) -> polyhead::Result<impl polyhead::data::Dataset<DigitBbox, f32> + use<>> {
    let (images, table) = polyhead::data::ImageFolder::new(
        dir,
        "labels.csv",
        "file",
        [glyphs::SIDE, glyphs::SIDE],
        1,
    )
    .index::<f32>(&manifest_reader())?;
    let targets = manifest_targets(&table)?;
    Ok(polyhead::data::FromFn::new(
        images.len(),
        move |rows: &[usize]| {
            let pixels = images.rows::<f32>(rows)?;
            Ok((
                pixels.reshape(&[rows.len(), glyphs::SIDE * glyphs::SIDE])?,
                polyhead::TargetSet::select_rows(&targets, rows)?,
            ))
        },
    ))
}

/// [`run`]'s dense model trained from files: the training and validation
/// glyphs are written to `dir` with a fraction `missing` of the training
/// rows' labels left out of each head; training streams the PNG folder
/// through [`Trainer::fit_dataset`] (each head learns from the rows that
/// have its label), validation reads the `.npz` and manifest whole.
pub fn run_from_disk(
    config: &Config,
    dir: &std::path::Path,
    missing: f64,
) -> polyhead::Result<Report> {
    write_to_disk(&dir.join("train"), config.train, 1, missing)?;
    write_to_disk(&dir.join("validation"), config.validation, 2, 0.0)?;
    let train = stream_from_disk(&dir.join("train"))?;
    let (vx, vt) = read_from_disk(&dir.join("validation"))?;
    let mut model = DigitBbox::new(42)?;
    let history = trainer::<DigitBbox>(config)
        .validation_data(vx, vt)
        .fit_dataset(&mut model, &train)?;
    Ok(Report::of(history))
}
