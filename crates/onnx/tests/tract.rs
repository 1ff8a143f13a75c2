//! Exported models run in tract (a pure-Rust ONNX runtime) and give
//! polyhead's predictions: each exportable layer type, and the example
//! models, on random inputs at two batch sizes (the batch dimension is
//! symbolic in the file). Layers without an export are errors naming them.
//!
//! Tolerance: float32 throughout, and tract's kernels sum in their own
//! order (convolutions as blocked GEMMs, reductions vectorised), so
//! outputs differ from polyhead's in the last few bits: each head is
//! compared within 2e-5 of its largest magnitude (a few float32 ulps of
//! the sums involved, which have at most a few hundred terms here).

use polyhead::autograd::Tape;
use polyhead::layers::Module;
use polyhead::prelude::*;
use tract_onnx::prelude::{
    Datum, Framework, InferenceFact, InferenceModelExt, IntoTensor, TVec, tract_ndarray, tvec,
};

/// Runs the ONNX `bytes` in tract on `x`, returning each output's values
/// and shape.
fn tract_run(bytes: &[u8], x: &Tensor<f32>) -> Vec<(Vec<usize>, Vec<f32>)> {
    let fact = InferenceFact::dt_shape(f32::datum_type(), x.shape().to_vec());
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, fact)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::ArrayD::from_shape_vec(x.shape().to_vec(), x.to_vec()).unwrap();
    let outputs: TVec<_> = model.run(tvec!(input.into_tensor().into())).unwrap();
    outputs
        .iter()
        .map(|t| {
            let view = t.to_array_view::<f32>().unwrap();
            (view.shape().to_vec(), view.iter().copied().collect())
        })
        .collect()
}

/// Exports `model`, runs it in tract at two batch sizes and compares every
/// head with polyhead's inference-mode forward.
fn check<M>(model: &mut M, sample: &[usize], make: impl Fn(usize) -> Tensor<f32>)
where
    M: MultiOutput<f32, Inputs<Tensor<f32>> = Tensor<f32>> + Module<f32>,
{
    model.set_training(false);
    // Every parameter random (biases included, which start at zero), so
    // that a dropped or misplaced term shows.
    for (i, (_, p)) in model.parameters_mut().into_iter().enumerate() {
        let shape = p.value().shape().to_vec();
        p.set_value(Tensor::rand_normal(&shape, 0.0, 0.5, 100 + i as u64).unwrap())
            .unwrap();
    }
    let bytes = polyhead_onnx::to_bytes(model, sample).unwrap();
    for batch in [2, 5] {
        let x = make(batch);
        assert_eq!(&x.shape()[1..], sample);
        let tape = Tape::no_record();
        let outputs = model.forward_heads(M::input_vars(&tape, &x)).unwrap();
        let ours: Vec<(&str, Tensor<f32>)> = M::head_values(&outputs)
            .into_iter()
            .map(|(h, v)| (h, v.value()))
            .collect();
        let theirs = tract_run(&bytes, &x);
        assert_eq!(theirs.len(), ours.len());
        for ((head, want), (shape, got)) in ours.iter().zip(&theirs) {
            assert_eq!(shape.as_slice(), want.shape(), "{head} at batch {batch}");
            let want = want.to_vec();
            let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 * scale,
                    "{head} at batch {batch}, element {i}: tract {g}, polyhead {w}"
                );
            }
        }
    }
}

fn normal(shape: &[usize], seed: u64) -> Tensor<f32> {
    Tensor::rand_normal(shape, 0.0, 1.0, seed).unwrap()
}

#[derive(MultiOutput)]
struct DenseNet {
    #[trunk]
    body: Sequential,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new())]
    value: Sequential,
}

/// Dense with every fused activation, the activation modules, layer norm
/// (with and without centre and scale) and dropout (off in inference).
#[test]
fn dense_activations_layer_norm_and_dropout_run_in_tract() {
    let mut rng = Rng::new(1);
    let dense = |i, o, a, rng: &mut Rng| Dense::builder(i, o).activation(a).build(rng).unwrap();
    let mut model = DenseNet {
        body: Sequential::new()
            .push(dense(6, 8, Activation::Relu, &mut rng))
            .push(dense(8, 8, Activation::Gelu, &mut rng))
            .push(LayerNorm::new(8).unwrap())
            .push(Dropout::new(0.5, 3).unwrap())
            .push(dense(8, 8, Activation::Tanh, &mut rng))
            .push(dense(8, 8, Activation::LeakyRelu(0.1), &mut rng))
            .push(
                polyhead::layers::LayerNorm::new(8)
                    .unwrap()
                    .center(false)
                    .scale(false),
            )
            .push(dense(8, 8, Activation::Sigmoid, &mut rng)),
        class: dense(8, 3, Activation::Softmax, &mut rng),
        value: Sequential::new()
            .push(Dense::new(8, 4, &mut rng).unwrap())
            .push(polyhead::layers::ReLU)
            .push(polyhead::layers::GELU)
            .push(polyhead::layers::LeakyReLU(0.2))
            .push(polyhead::layers::Tanh)
            .push(polyhead::layers::Sigmoid)
            .push(polyhead::layers::Softmax),
    };
    check(&mut model, &[6], |b| normal(&[b, 6], 7));
    // Dense on a sequence ([B, T, F]) too.
    let mut model = DenseNet {
        body: Sequential::new().push(dense(6, 8, Activation::Relu, &mut rng)),
        class: Dense::new(8, 3, &mut rng).unwrap(),
        value: Sequential::new().push(Dense::new(8, 2, &mut rng).unwrap()),
    };
    check(&mut model, &[4, 6], |b| normal(&[b, 4, 6], 8));
}

#[derive(MultiOutput)]
struct ConvNet {
    #[trunk]
    body: Sequential,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new())]
    bbox: Dense,
}

/// A batch normalization with moving statistics, scale and offset away
/// from 0 and 1.
fn batch_norm(channels: usize, seed: u64) -> BatchNormalization {
    let mut bn = BatchNormalization::new(channels).unwrap();
    for (i, (_, p)) in bn.parameters_mut().into_iter().enumerate() {
        p.set_value(normal(&[channels], seed + 10 + i as u64))
            .unwrap();
    }
    bn.moving_mean()
        .set_value(normal(&[channels], seed))
        .unwrap();
    bn.moving_variance()
        .set_value(normal(&[channels], seed + 1).map(|v| 0.5 + v * v))
        .unwrap();
    bn
}

/// 2-D convolutions (same, valid, strides, dilation, groups, depthwise),
/// batch normalization in inference form, max and average pooling (same
/// and valid), global pooling and flatten.
#[test]
fn convolution_pooling_and_batch_norm_run_in_tract() {
    let mut rng = Rng::new(2);
    let conv = Conv2D::builder(3, 8, [3, 3])
        .padding(Padding::Same)
        .activation(Activation::Relu)
        .build(&mut rng)
        .unwrap();
    let strided = Conv2D::builder(8, 8, [3, 3])
        .strides([2, 2])
        .groups(2)
        .build(&mut rng)
        .unwrap();
    let dilated = Conv2D::builder(8, 6, [2, 2])
        .dilation_rate([2, 2])
        .padding(Padding::Same)
        .build(&mut rng)
        .unwrap();
    let depthwise = DepthwiseConv2D::builder(6, [3, 3])
        .depth_multiplier(2)
        .padding(Padding::Same)
        .build(&mut rng)
        .unwrap();
    let mut model = ConvNet {
        body: Sequential::new()
            .push(conv)
            .push(batch_norm(8, 11))
            .push(Pooling2D::max([2, 2]).padding(Padding::Same))
            .push(strided)
            .push(dilated)
            .push(depthwise)
            .push(
                Pooling2D::average([2, 2])
                    .strides([1, 1])
                    .padding(Padding::Same),
            )
            .push(GlobalPooling::average_2d()),
        class: Dense::new(12, 4, &mut rng).unwrap(),
        bbox: Dense::new(12, 4, &mut rng).unwrap(),
    };
    check(&mut model, &[13, 11, 3], |b| normal(&[b, 13, 11, 3], 9));
    // Valid windows, global max pooling kept as [B, 1, 1, C], flatten.
    let mut model = ConvNet {
        body: Sequential::new()
            .push(Conv2D::builder(3, 4, [3, 3]).build(&mut rng).unwrap())
            .push(Pooling2D::average([2, 2]))
            .push(GlobalPooling::max_2d().keepdims(true))
            .push(Flatten),
        class: Dense::new(4, 4, &mut rng).unwrap(),
        bbox: Dense::new(4, 4, &mut rng).unwrap(),
    };
    check(&mut model, &[10, 10, 3], |b| normal(&[b, 10, 10, 3], 10));
}

/// Transposed convolutions: valid (kernel above and below the stride),
/// same, explicit padding, output padding.
#[test]
fn transposed_convolutions_run_in_tract() {
    use polyhead::layers::Conv2DTranspose;
    let mut rng = Rng::new(5);
    // (kernel, strides, padding, output padding)
    type Setting = ([usize; 2], [usize; 2], Padding, Option<[usize; 2]>);
    let settings: Vec<Setting> = vec![
        ([3, 3], [2, 2], Padding::Valid, None),
        ([2, 2], [3, 3], Padding::Valid, None),
        ([3, 2], [2, 2], Padding::Same, None),
        ([4, 4], [2, 2], Padding::Same, None),
        ([3, 3], [2, 2], Padding::Explicit(1), Some([1, 1])),
        ([3, 3], [2, 2], Padding::Valid, Some([1, 0])),
        ([3, 3], [3, 2], Padding::Same, Some([2, 1])),
    ];
    for (kernel, strides, padding, output_padding) in settings {
        let mut builder = Conv2DTranspose::builder(3, 4, kernel)
            .strides(strides)
            .padding(padding)
            .activation(Activation::Tanh);
        if let Some(op) = output_padding {
            builder = builder.output_padding(op);
        }
        let mut model = ConvNet {
            body: Sequential::new()
                .push(builder.build(&mut rng).unwrap())
                .push(Flatten),
            class: Dense::new(1, 1, &mut rng).unwrap(),
            bbox: Dense::new(1, 1, &mut rng).unwrap(),
        };
        // The heads' widths follow from the output size.
        let tape = Tape::no_record();
        let width = model
            .body
            .forward(tape.constant(normal(&[1, 5, 4, 3], 1)))
            .unwrap()
            .shape()[1];
        model.class = Dense::new(width, 2, &mut rng).unwrap();
        model.bbox = Dense::new(width, 3, &mut rng).unwrap();
        check(&mut model, &[5, 4, 3], |b| normal(&[b, 5, 4, 3], 16));
    }
}

/// 1-D convolutions (causal, dilated), 1-D max pooling and global average
/// pooling over steps; and an embedding of token ids.
#[test]
fn sequences_of_convolutions_and_embeddings_run_in_tract() {
    let mut rng = Rng::new(3);
    let mut model = ConvNet {
        body: Sequential::new()
            .push(
                Conv1D::builder(4, 6, 3)
                    .padding(Padding::Causal)
                    .dilation_rate(2)
                    .activation(Activation::Relu)
                    .build(&mut rng)
                    .unwrap(),
            )
            .push(MaxPooling1D::new(2))
            .push(Conv1D::builder(6, 6, 2).build(&mut rng).unwrap())
            .push(GlobalPooling::average_1d()),
        class: Dense::new(6, 4, &mut rng).unwrap(),
        bbox: Dense::new(6, 4, &mut rng).unwrap(),
    };
    check(&mut model, &[12, 4], |b| normal(&[b, 12, 4], 11));
    let mut model = ConvNet {
        body: Sequential::new()
            .push(Embedding::new(20, 5, &mut rng).unwrap())
            .push(GlobalPooling::average_1d()),
        class: Dense::new(5, 4, &mut rng).unwrap(),
        bbox: Dense::new(5, 4, &mut rng).unwrap(),
    };
    check(&mut model, &[7], |b| {
        let ids: Vec<f32> = (0..b * 7).map(|i| ((i * 7 + 3) % 20) as f32).collect();
        Tensor::from_vec(ids, &[b, 7]).unwrap()
    });
}

#[derive(MultiOutput)]
struct Recurrent {
    #[trunk]
    body: Sequential,
    #[head(loss = Mse::new())]
    last: Dense,
}

/// LSTM and GRU (both reset conventions, with and without bias, whole
/// sequences or the last state) and bidirectional layers (concatenated
/// and summed) as ONNX's recurrent operators.
#[test]
fn recurrent_layers_run_in_tract() {
    use polyhead::layers::{Bidirectional, Gru, Lstm, Merge};
    let mut rng = Rng::new(4);
    let x = |b: usize| normal(&[b, 6, 3], 14);
    let lstm = |i, u, rng: &mut Rng| Lstm::new(i, u, rng).unwrap();
    let gru = |i, u, rng: &mut Rng| Gru::new(i, u, rng).unwrap();
    let cases: Vec<(Sequential, usize)> = vec![
        (
            Sequential::new()
                .push(lstm(3, 4, &mut rng).return_sequences(true))
                .push(lstm(4, 5, &mut rng).use_bias(false)),
            5,
        ),
        (
            Sequential::new()
                .push(gru(3, 4, &mut rng).return_sequences(true))
                .push(gru(4, 5, &mut rng).reset_after(false)),
            5,
        ),
        (
            Sequential::new()
                .push(
                    Bidirectional::lstm(
                        lstm(3, 4, &mut rng).return_sequences(true),
                        lstm(3, 4, &mut rng).return_sequences(true),
                    )
                    .unwrap(),
                )
                .push(
                    Bidirectional::gru(gru(8, 3, &mut rng), gru(8, 3, &mut rng))
                        .unwrap()
                        .merge(Merge::Sum),
                ),
            3,
        ),
        (
            Sequential::new()
                .push(
                    Bidirectional::gru(
                        gru(3, 4, &mut rng).return_sequences(true),
                        gru(3, 4, &mut rng).return_sequences(true),
                    )
                    .unwrap()
                    .merge(Merge::Sum),
                )
                .push(GlobalPooling::average_1d()),
            4,
        ),
    ];
    for (body, width) in cases {
        let mut model = Recurrent {
            body,
            last: Dense::new(width, 2, &mut rng).unwrap(),
        };
        check(&mut model, &[6, 3], x);
    }
}

#[derive(MultiOutput)]
struct Tokens {
    #[trunk]
    body: Sequential,
    #[head(loss = Mse::new())]
    steps: Sequential,
    #[head(loss = Mse::new())]
    last: Sequential,
}

/// Ids with padding (id 0) at the end, at the start and in the middle of
/// rows, and one row all padding (when `empty_row`).
fn padded_ids(batch: usize, steps: usize, vocab: usize, empty_row: bool) -> Tensor<f32> {
    let ids: Vec<f32> = (0..batch * steps)
        .map(|i| {
            let (b, t) = (i / steps, i % steps);
            let padded = match b % 4 {
                0 => t >= steps - 2,
                1 => t < 2,
                2 => t == 2 || t == 3,
                _ => empty_row,
            };
            if padded {
                0.0
            } else {
                (1 + (i * 7 + 3) % (vocab - 1)) as f32
            }
        })
        .collect();
    Tensor::from_vec(ids, &[batch, steps]).unwrap()
}

/// Masked sequences (an embedding's `mask_zero`, passed on by dense
/// layers, layer norm and dropout): each recurrent layer (LSTM, GRU with
/// both reset conventions, bidirectional concatenated and summed, whole
/// sequences and last states) skips padded steps wherever they are, and
/// masked average pooling averages over the real steps, as in polyhead.
#[test]
fn masked_sequences_run_in_tract() {
    use polyhead::layers::{Bidirectional, Gru, Lstm, Merge};
    let mut rng = Rng::new(8);
    let lstm = |i, u, rng: &mut Rng| Lstm::new(i, u, rng).unwrap();
    let gru = |i, u, rng: &mut Rng| Gru::new(i, u, rng).unwrap();
    let trunk = |rng: &mut Rng| {
        Sequential::new()
            .push(Embedding::new(12, 4, rng).unwrap().mask_zero(true))
            .push(
                Dense::builder(4, 3)
                    .activation(Activation::Tanh)
                    .build(rng)
                    .unwrap(),
            )
            .push(LayerNorm::new(3).unwrap())
            .push(Dropout::new(0.5, 1).unwrap())
    };
    let cases: Vec<(Sequential, Sequential, Sequential, bool)> = vec![
        (
            trunk(&mut rng).push(lstm(3, 4, &mut rng).return_sequences(true)),
            Sequential::new().push(Dense::new(4, 2, &mut rng).unwrap()),
            Sequential::new()
                .push(lstm(4, 3, &mut rng).use_bias(false))
                .push(Dense::new(3, 2, &mut rng).unwrap()),
            true,
        ),
        (
            trunk(&mut rng).push(gru(3, 4, &mut rng).return_sequences(true)),
            Sequential::new().push(
                gru(4, 2, &mut rng)
                    .reset_after(false)
                    .return_sequences(true),
            ),
            Sequential::new().push(gru(4, 3, &mut rng).reset_after(false).use_bias(false)),
            true,
        ),
        (
            trunk(&mut rng).push(
                Bidirectional::lstm(
                    lstm(3, 4, &mut rng).return_sequences(true),
                    lstm(3, 4, &mut rng).return_sequences(true),
                )
                .unwrap(),
            ),
            Sequential::new().push(Dense::new(8, 2, &mut rng).unwrap()),
            Sequential::new().push(
                Bidirectional::gru(gru(8, 3, &mut rng), gru(8, 3, &mut rng))
                    .unwrap()
                    .merge(Merge::Sum),
            ),
            true,
        ),
        (
            trunk(&mut rng).push(
                Bidirectional::gru(
                    gru(3, 4, &mut rng).return_sequences(true),
                    gru(3, 4, &mut rng).return_sequences(true),
                )
                .unwrap()
                .merge(Merge::Sum),
            ),
            Sequential::new().push(Dense::new(4, 2, &mut rng).unwrap()),
            // Masked average pooling refuses a row with no real step.
            Sequential::new().push(GlobalPooling::average_1d()),
            false,
        ),
    ];
    for (body, steps, last, empty_row) in cases {
        let mut model = Tokens { body, steps, last };
        check(&mut model, &[6], |b| padded_ids(b, 6, 12, empty_row));
    }
}

/// Multi-head self-attention (separate key and value widths, the score
/// scale set) followed by pooling.
#[test]
fn attention_runs_in_tract() {
    let mut rng = Rng::new(6);
    let attention = polyhead::layers::MultiHeadAttention::builder(2, 3, 5)
        .value_dim(4)
        .score_scale(0.3)
        .build(&mut rng)
        .unwrap();
    let mut model = Recurrent {
        body: Sequential::new()
            .push(attention)
            .push(GlobalPooling::average_1d()),
        last: Dense::new(5, 2, &mut rng).unwrap(),
    };
    check(&mut model, &[4, 5], |b| normal(&[b, 4, 5], 15));
}

/// The `iris_multitask` example's model, from the example's own file.
#[path = "../../../examples/iris_multitask/model.rs"]
mod iris;

/// The `custom_loss` example's model (and loss), from the example's own
/// file.
#[allow(dead_code)] // the example's other form of the loss
#[path = "../../../examples/custom_loss/model.rs"]
mod custom_loss;

/// The examples' models: `digit_bbox`'s dense and convolutional models,
/// `intent_slots`' (padded utterances, masked), `iris_multitask`'s and
/// `custom_loss`'.
#[test]
fn the_example_models_run_in_tract() {
    let mut flowers = iris::Iris::new(7).unwrap();
    check(&mut flowers, &[3], |b| normal(&[b, 3], 16));
    let mut locator = custom_loss::Locator::new(5).unwrap();
    check(&mut locator, &[6], |b| normal(&[b, 6], 17));
    use polyhead_examples::digit_bbox::{DigitBbox, DigitBboxCnn};
    use polyhead_examples::intent_slots::{IntentSlots, generate};
    let utterances = generate(5, 14, 3).unwrap();
    let mut intents = IntentSlots::new(utterances.vocabulary.len(), 42).unwrap();
    check(&mut intents, &[14], |b| {
        utterances.ids.slice_axis(0, 0, b).unwrap().to_contiguous()
    });
    let mut dense = DigitBbox::new(42).unwrap();
    check(&mut dense, &[784], |b| {
        Tensor::rand_uniform(&[b, 784], 0.0, 1.0, 12).unwrap()
    });
    let mut cnn = DigitBboxCnn::new(42).unwrap();
    check(&mut cnn, &[28, 28, 1], |b| {
        Tensor::rand_uniform(&[b, 28, 28, 1], 0.0, 1.0, 13).unwrap()
    });
}

/// A layer of one's own that does not describe its graph.
struct Doubling;

impl Module<f32> for Doubling {
    fn forward<'t>(&self, x: Var<'t, f32>) -> polyhead::layers::Result<Var<'t, f32>> {
        Ok(x.scale(2.0))
    }
    fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<f32>)) {}
    fn visit_parameters_mut<'a>(
        &'a mut self,
        _: &str,
        _: &mut dyn FnMut(String, &'a mut Parameter<f32>),
    ) {
    }
}

#[derive(MultiOutput)]
struct Custom {
    #[trunk]
    body: Sequential,
    #[head(loss = Mse::new())]
    out: Dense,
}

/// What cannot be exported says which layer, and nothing is written.
#[test]
fn a_model_that_cannot_be_exported_names_the_layer() {
    let mut rng = Rng::new(9);
    let model = Custom {
        body: Sequential::new()
            .push(Dense::new(3, 4, &mut rng).unwrap())
            .push(Doubling),
        out: Dense::new(4, 1, &mut rng).unwrap(),
    };
    let path =
        std::env::temp_dir().join(format!("polyhead-onnx-refused-{}.onnx", std::process::id()));
    let err = polyhead_onnx::export_onnx(&model, &[3], &path)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "body.1 (Doubling): cannot be exported: polyhead has no export for this layer yet"
    );
    assert!(!path.exists());
}
