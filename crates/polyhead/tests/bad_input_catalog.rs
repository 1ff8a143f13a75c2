//! # The bad-input catalog
//!
//! What polyhead does with each kind of mistake a user can make, one test
//! per mistake, with the exact error text. Every one is a `Result::Err` that
//! names the thing, what was expected and what was found; none panics.
//! Read it top to bottom as the documentation of failure behaviour.

use polyhead::layers::{load_checkpoint, save_checkpoint};
use polyhead::prelude::*;
use polyhead::tensor::Rng;
use polyhead::{LossWeights, Progress, Trainer};

#[derive(MultiOutput)]
struct Locator {
    #[trunk]
    body: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
}

fn locator() -> Locator {
    let mut rng = Rng::new(1);
    Locator {
        body: Dense::builder(6, 8)
            .activation(Activation::Relu)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(8, 3, &mut rng).unwrap(),
        bbox: Dense::new(8, 4, &mut rng).unwrap(),
    }
}

fn x(n: usize) -> Tensor<f32> {
    Tensor::rand_normal(&[n, 6], 0.0, 1.0, 2).unwrap()
}

fn targets(n: usize) -> LocatorTargets<f32> {
    LocatorTargets::new(
        Labels::from_classes(&vec![1; n]),
        Tensor::zeros(&[n, 4]).unwrap(),
    )
}

/// The weighted loss of `model` on `x`, or its error message.
fn loss_error(x: Tensor<f32>, t: &LocatorTargets<f32>) -> String {
    let model = locator();
    let tape = Tape::new();
    let outputs = match model.forward_heads(tape.constant(x)) {
        Ok(o) => o,
        Err(e) => return e.to_string(),
    };
    model
        .weighted_loss(&outputs, t, &LocatorLossWeights::default())
        .unwrap_err()
        .to_string()
}

fn trainer() -> Trainer<Locator, f32> {
    Trainer::new(Sgd::new(0.1).build()).progress(Progress::Silent)
}

// ---- shapes ----

#[test]
fn a_heads_prediction_and_target_differ_in_shape() {
    let t = LocatorTargets::new(
        Labels::from_classes(&[1, 1]),
        Tensor::zeros(&[2, 5]).unwrap(),
    );
    assert_eq!(
        loss_error(x(2), &t),
        "bbox: mse: prediction has shape [2, 4] but target has shape [2, 5]; shapes must match exactly (no broadcasting)"
    );
}

#[test]
fn a_target_of_the_wrong_rank_is_not_broadcast() {
    let t = LocatorTargets::new(Labels::from_classes(&[1, 1]), Tensor::zeros(&[2]).unwrap());
    assert_eq!(
        loss_error(x(2), &t),
        "bbox: mse: prediction has shape [2, 4] but target has shape [2]; shapes must match exactly (no broadcasting)"
    );
    let t = LocatorTargets::new(
        Labels::new(vec![1, 1], &[2, 1]).unwrap(),
        Tensor::zeros(&[2, 4]).unwrap(),
    );
    assert_eq!(
        loss_error(x(2), &t),
        "class: sparse_cross_entropy: prediction has shape [2, 3] but target has shape [2, 1]; labels must have shape [2] (the prediction without its class axis 1)"
    );
}

#[test]
fn the_models_input_width_differs_from_the_datas() {
    assert_eq!(
        loss_error(Tensor::zeros(&[2, 5]).unwrap(), &targets(2)),
        "body: dense: input has 5 features (shape [2, 5]), the layer expects 6"
    );
}

#[test]
fn zero_sized_dimensions() {
    assert_eq!(
        Dense::<f32>::new(0, 3, &mut Rng::new(0))
            .unwrap_err()
            .to_string(),
        "dense: in_features and out_features must be positive, got 0 and 3"
    );
    let err = Tensor::<f32>::zeros(&[2, 0])
        .unwrap()
        .mean_axis(1, false)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mean: cannot reduce an empty axis 1 of shape [2, 0]"
    );
}

#[test]
fn an_empty_batch() {
    let err = trainer()
        .fit(
            &mut locator(),
            &Tensor::zeros(&[0, 6]).unwrap(),
            &targets(0),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fit: no samples (input x has shape [0, 6])"
    );
    let err = Mse::new()
        .value_and_grad(
            &Tensor::<f32>::zeros(&[0, 4]).unwrap(),
            &Tensor::zeros(&[0, 4]).unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mse: empty batch: prediction has shape [0, 4]"
    );
}

#[test]
fn inputs_and_targets_disagree_on_the_number_of_samples() {
    let err = trainer()
        .fit(&mut locator(), &x(5), &targets(4))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the inputs have 5 samples but the targets 4"
    );
    assert!(matches!(err, polyhead::Error::Shape(_)));
}

// ---- labels ----

#[test]
fn class_labels_out_of_range_or_negative() {
    let t = LocatorTargets::new(
        Labels::from_classes(&[1, 3]),
        Tensor::zeros(&[2, 4]).unwrap(),
    );
    assert_eq!(
        loss_error(x(2), &t),
        "class: sparse_cross_entropy: labels must be in 0..3, found 3 at position [1]"
    );
    let t = LocatorTargets::new(
        Labels::new(vec![-1, 0], &[2]).unwrap(),
        Tensor::zeros(&[2, 4]).unwrap(),
    );
    assert_eq!(
        loss_error(x(2), &t),
        "class: sparse_cross_entropy: labels must be in 0..3, found -1 at position [0]"
    );
}

// ---- NaN and infinity ----

#[test]
fn nan_or_infinity_in_inputs_or_targets() {
    let mut xs = x(4).to_vec();
    xs[9] = f32::NAN;
    let err = trainer()
        .fit(
            &mut locator(),
            &Tensor::from_vec(xs, &[4, 6]).unwrap(),
            &targets(4),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input x holds NaN at sample 1, element 3 (shape [4, 6]); clean the data or mask the sample"
    );
    assert!(matches!(
        err,
        polyhead::Error::NonFiniteData { sample: 1, element: 3, ref shape, .. } if shape == &[4, 6]
    ));
    let t = LocatorTargets::new(
        Labels::from_classes(&[1; 4]),
        Tensor::from_vec([0.0, 0.0, f32::INFINITY, 0.0].repeat(4), &[4, 4]).unwrap(),
    );
    let err = trainer().fit(&mut locator(), &x(4), &t).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target of `bbox` holds inf at sample 0, element 2 (shape [4, 4]); clean the data or mask the sample"
    );
}

#[test]
fn nan_or_negative_sample_weights() {
    let t = targets(2).bbox_sample_weight(Tensor::from_vec(vec![1.0, f32::NAN], &[2]).unwrap());
    assert_eq!(
        loss_error(x(2), &t),
        "bbox: mse: sample weights must be finite and non-negative, found NaN at [1]"
    );
    let t = targets(2).class_sample_weight(Tensor::from_vec(vec![-1.0, 1.0], &[2]).unwrap());
    assert_eq!(
        loss_error(x(2), &t),
        "class: sparse_cross_entropy: sample weights must be finite and non-negative, found -1 at [0]"
    );
}

#[test]
fn negative_or_nan_loss_weights() {
    let mut w = LocatorLossWeights::default();
    assert_eq!(
        w.set("bbox", -0.5).unwrap_err().to_string(),
        "loss weight of `bbox` must be finite and non-negative, got -0.5"
    );
    assert_eq!(
        w.set("class", f64::NAN).unwrap_err().to_string(),
        "loss weight of `class` must be finite and non-negative, got NaN"
    );
    let err = w.set("box", 1.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "loss weights: no head or loss named `box`; the names are [\"class\", \"bbox\"]"
    );
    // A typed error: callers can match on the name.
    assert!(matches!(err, polyhead::Error::UnknownName { ref name, .. } if name == "box"));
}

// ---- checkpoints ----

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("polyhead-catalog-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_checkpoint_with_missing_extra_misshaped_or_wrong_dtype_tensors() {
    let dir = TempDir::new("mismatch");
    let path = dir.0.join("small.safetensors");
    // Saved from a model whose class head has 2 outputs and no bbox head.
    let mut rng = Rng::new(1);
    let other = Sequential::<f32>::new().push(Dense::new(6, 8, &mut rng).unwrap());
    save_checkpoint(&path, &other, None).unwrap();
    let err = load_checkpoint(&path, &mut locator(), None)
        .unwrap_err()
        .to_string();
    let expected = [
        "body.kernel: missing from the file (the model has shape [6, 8])",
        "body.bias: missing from the file (the model has shape [8])",
        "class.kernel: missing from the file (the model has shape [8, 3])",
        "0.bias: in the file but not in the model",
        "0.kernel: in the file but not in the model",
    ];
    for line in expected {
        assert!(err.contains(line), "missing `{line}` in:\n{err}");
    }
    let f64_path = dir.0.join("f64.safetensors");
    let mut rng = Rng::new(1);
    save_checkpoint(&f64_path, &Dense::<f64>::new(6, 8, &mut rng).unwrap(), None).unwrap();
    let err = load_checkpoint(
        &f64_path,
        &mut Dense::<f32>::new(6, 8, &mut Rng::new(1)).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.ends_with("kernel: dtype F64 in the file, the model is f32\n  bias: dtype F64 in the file, the model is f32"), "{err}");
    let err = load_checkpoint(
        &f64_path,
        &mut Dense::<f64>::new(6, 9, &mut Rng::new(1)).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("kernel: shape [6, 8] in the file, [6, 9] in the model"),
        "{err}"
    );
}

#[test]
fn a_truncated_checkpoint_or_random_bytes() {
    let dir = TempDir::new("truncated");
    let path = dir.0.join("m.safetensors");
    save_checkpoint(&path, &locator(), None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_checkpoint(&path, &mut locator(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "checkpoint {}: not a valid safetensors file",
            path.display()
        )),
        "{err}"
    );
    std::fs::write(&path, b"\x07\x00\x00\x00\x00\x00\x00\x00garbage").unwrap();
    let err = load_checkpoint(&path, &mut locator(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn a_checkpoint_directory_that_is_not_writable() {
    let dir = TempDir::new("unwritable");
    // A regular file where the directory should be (root can write anywhere
    // else, so this is the portable way to make a directory unusable).
    let not_a_dir = dir.0.join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let target = not_a_dir.join("m.safetensors");
    let err = save_checkpoint(&target, &locator(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("checkpoint {}: cannot write:", target.display())),
        "{err}"
    );
}

// ---- Vision layers: convolution, pooling, batch normalization ----

#[derive(MultiOutput)]
struct ConvLocator {
    #[trunk]
    body: Sequential,
    #[head(loss = Mse::new())]
    bbox: Dense,
}

fn conv_locator() -> ConvLocator {
    use polyhead::layers::{BatchNormalization, Conv2D, GlobalPooling, Padding};
    let mut rng = Rng::new(3);
    ConvLocator {
        body: Sequential::new()
            .push(
                Conv2D::builder(1, 4, [3, 3])
                    .padding(Padding::Valid)
                    .build(&mut rng)
                    .unwrap(),
            )
            .push(BatchNormalization::new(4).unwrap())
            .push(GlobalPooling::average_2d()),
        bbox: Dense::new(4, 4, &mut rng).unwrap(),
    }
}

fn conv_error(shape: &[usize]) -> String {
    let tape = Tape::new();
    conv_locator()
        .forward_heads(tape.constant(Tensor::<f32>::ones(shape).unwrap()))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_convolution_input_of_the_wrong_rank_names_the_expected_layout() {
    assert_eq!(
        conv_error(&[2, 36]),
        "body: conv2d: input must be [batch, height, width, channels], got shape [2, 36]"
    );
}

#[test]
fn a_convolution_input_with_other_channels_names_both_counts() {
    assert_eq!(
        conv_error(&[2, 6, 6, 3]),
        "body: conv2d: input has 3 channels (last axis of [2, 6, 6, 3]), the layer expects 1"
    );
}

#[test]
fn a_kernel_larger_than_a_valid_input_names_the_window_and_the_axis() {
    assert_eq!(
        conv_error(&[2, 2, 6, 1]),
        "body: conv2d: a window of 3 (kernel 3, dilation 1) does not fit an axis of 2 with padding `valid`"
    );
}

#[test]
fn convolution_options_that_cannot_work_are_refused_when_built() {
    use polyhead::layers::Conv2D;
    let err = |b: polyhead::layers::Conv2DBuilder<f32>| {
        b.build(&mut Rng::new(0)).unwrap_err().to_string()
    };
    assert_eq!(
        err(Conv2D::builder(3, 4, [3, 3]).groups(2)),
        "conv2d: groups = 2 must divide the input channels (3) and the filters (4)"
    );
    assert_eq!(
        err(Conv2D::builder(3, 4, [3, 3]).strides([0, 1])),
        "conv2d: strides must be at least 1, got [0, 1]"
    );
    assert_eq!(
        err(Conv2D::builder(3, 4, [3, 3]).dilation_rate([1, 0])),
        "conv2d: dilation_rate must be at least 1, got [1, 0]"
    );
    // PyTorch's options where they cannot apply.
    let up = polyhead::layers::Conv2DTranspose::<f32>::builder(3, 4, [3, 3])
        .strides([2, 2])
        .output_padding([2, 0])
        .build(&mut Rng::new(0))
        .unwrap_err();
    assert_eq!(
        up.to_string(),
        "conv2d_transpose: output_padding [2, 0] must be smaller than the strides [2, 2]"
    );
    let tape = polyhead::autograd::Tape::<f32>::new();
    let x = tape.constant(polyhead::tensor::Tensor::ones(&[1, 4, 4, 1]).unwrap());
    let max = polyhead::layers::Pooling2D::max([2, 2]).count_include_pad(true);
    assert_eq!(
        polyhead::layers::Module::forward(&max, x)
            .unwrap_err()
            .to_string(),
        "max_pooling2d: count_include_pad applies to average pooling only"
    );
}

#[test]
fn a_checkpoint_without_the_moving_statistics_is_refused_whole() {
    let dir = std::env::temp_dir().join(format!("polyhead-catalog-bn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dense-only.safetensors");
    // A model with the same parameters but no batch norm: its file lacks
    // `body.1.moving_mean` and `body.1.moving_variance`.
    save_checkpoint(&path, &locator(), None).unwrap();
    let mut model = conv_locator();
    let err = load_checkpoint(&path, &mut model, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("body.1.moving_mean: missing from the file (the model has shape [4])"),
        "{err}"
    );
    assert!(
        err.contains("body.1.moving_variance: missing from the file (the model has shape [4])"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
