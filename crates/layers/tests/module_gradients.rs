//! Every module with parameters: the tape's gradient with respect to each
//! parameter and the input equals central finite differences in f64,
//! through the module's own forward.
//!
//! Tolerance: eps = 1e-6 central differences of O(1) sums have error
//! ~1e-10; atol 1e-7 + rtol 1e-6 leaves a wide margin while catching any
//! wrong rule (those err by O(1)).

use polyhead_autograd::{GradcheckOptions, Tape, gradcheck};
use polyhead_layers::*;
use polyhead_tensor::{Rng, Tensor};
use proptest::prelude::*;

/// Each parameter's name and gradient.
type NamedGrads = Vec<(String, Vec<f64>)>;

/// sum(forward(x) * r) for a fixed random r: a scalar whose gradient
/// checks the whole Jacobian's action.
fn objective(
    module: &dyn Module<f64>,
    x: &Tensor<f64>,
    r: &Tensor<f64>,
    record: bool,
) -> (f64, Option<NamedGrads>) {
    let tape = if record {
        Tape::new()
    } else {
        Tape::no_record()
    };
    let xv = tape.constant(x.clone());
    let y = module.forward(xv).unwrap();
    let loss = y.mul(tape.constant(r.clone())).unwrap().sum_all();
    let value = loss.value().item().unwrap();
    if !record {
        return (value, None);
    }
    let grads = tape.backward(loss).unwrap();
    let named = module
        .parameters()
        .into_iter()
        .map(|(n, p)| {
            (
                n,
                grads
                    .by_id(p.id())
                    .map(|g| g.to_vec())
                    .unwrap_or(vec![0.0; p.value().len()]),
            )
        })
        .collect();
    (value, Some(named))
}

fn check_parameters(
    module: &mut dyn Module<f64>,
    x: &Tensor<f64>,
    seed: u64,
) -> Result<(), TestCaseError> {
    let out_shape = {
        let tape = Tape::no_record();
        module.forward(tape.constant(x.clone())).unwrap().shape()
    };
    let r = Tensor::rand_normal(&out_shape, 0.0, 1.0, seed).unwrap();
    let (_, analytic) = objective(module, x, &r, true);
    let analytic = analytic.unwrap();
    let eps = 1e-6;
    for (pi, (name, grad)) in analytic.iter().enumerate() {
        for e in 0..grad.len() {
            let bump = |module: &mut dyn Module<f64>, delta: f64| {
                let mut params = module.parameters_mut();
                let p = &mut params[pi].1;
                let mut v = p.value().to_vec();
                v[e] += delta;
                let shape = p.value().shape().to_vec();
                p.set_value(Tensor::from_vec(v, &shape).unwrap()).unwrap();
            };
            bump(module, eps);
            let plus = objective(module, x, &r, false).0;
            bump(module, -2.0 * eps);
            let minus = objective(module, x, &r, false).0;
            bump(module, eps);
            let numeric = (plus - minus) / (2.0 * eps);
            prop_assert!(
                (grad[e] - numeric).abs() <= 1e-7 + 1e-6 * numeric.abs(),
                "{name}[{e}]: analytic {} numeric {numeric}",
                grad[e]
            );
        }
    }
    // And the gradient with respect to the input.
    gradcheck(
        |tape: &Tape<f64>, v| {
            let y = module.forward(v[0])?;
            Ok(y.mul(tape.constant(r.clone()))?.sum_all())
        },
        std::slice::from_ref(x),
        &GradcheckOptions {
            atol: 1e-7,
            rtol: 1e-6,
            ..Default::default()
        },
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Linear),
        Just(Activation::Relu),
        Just(Activation::LeakyRelu(0.2)),
        Just(Activation::Gelu),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Softmax),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(12) })]

    #[test]
    fn dense_with_any_activation(i in 1usize..5, o in 1usize..4, batch in 1usize..4, act in activation(), bias in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut dense = Dense::<f64>::builder(i, o).activation(act).use_bias(bias).bias_initializer(Initializer::Uniform(-0.5, 0.5)).build(&mut rng).unwrap();
        let x = Tensor::rand_normal(&[batch, i], 0.0, 1.0, seed ^ 1).unwrap();
        check_parameters(&mut dense, &x, seed)?;
    }

    #[test]
    fn conv2d_with_any_geometry(
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3,
        dh in 1usize..3, dw in 1usize..3, same in any::<bool>(), groups in 1usize..3,
        group_in in 1usize..3, group_out in prop_oneof![1usize..3, 8usize..10], bias in any::<bool>(),
        act in activation(), seed in any::<u64>(),
    ) {
        // Fewer than 8 filters per group take the direct kernels, 8 and
        // more im2col and the GEMM; ReLU is fused into the op's output.
        let (cin, filters) = (groups * group_in, groups * group_out);
        // PyTorch's explicit padding in a third of the cases.
        let padding = match (same, seed % 3) {
            (_, 0) => Padding::Explicit(1),
            (true, _) => Padding::Same,
            (false, _) => Padding::Valid,
        };
        let build = |act| {
            let mut conv = Conv2D::<f64>::builder(cin, filters, [kh, kw])
                .strides([sh, sw]).dilation_rate([dh, dw]).padding(padding)
                .groups(groups).use_bias(bias).activation(act)
                .build(&mut Rng::new(seed)).unwrap();
            // A bias off its zero start.
            for (name, p) in conv.parameters_mut() {
                if name == "bias" {
                    p.set_value(Tensor::rand_normal(&[filters], 0.0, 1.0, seed ^ 5).unwrap()).unwrap();
                }
            }
            conv
        };
        let mut conv = build(act);
        // Big enough for any valid window: (k - 1) * d + 1 <= 5.
        let x = Tensor::rand_normal(&[2, 5, 6, cin], 0.0, 1.0, seed ^ 1).unwrap();
        if matches!(act, Activation::Relu | Activation::LeakyRelu(_)) {
            // Central differences (eps 1e-6) across a kink see part of each
            // slope: skip inputs with a pre-activation near 0, such as a
            // window of padding only without a bias (exactly 0).
            let tape = Tape::no_record();
            let pre = build(Activation::Linear).forward(tape.constant(x.clone())).unwrap();
            prop_assume!(pre.value().to_vec().iter().all(|v| v.abs() > 1e-4));
        }
        check_parameters(&mut conv, &x, seed)?;
    }

    #[test]
    fn conv1d_with_any_geometry(
        k in 1usize..4, stride in 1usize..3, dilation in 1usize..3, padding in 0usize..4,
        groups in 1usize..3, group_in in 1usize..3, seed in any::<u64>(),
    ) {
        let padding = [Padding::Valid, Padding::Same, Padding::Causal, Padding::Explicit(1)][padding];
        let mut conv = Conv1D::<f64>::builder(groups * group_in, groups * 2, k)
            .strides(stride).dilation_rate(dilation).padding(padding).groups(groups)
            .build(&mut Rng::new(seed)).unwrap();
        let x = Tensor::rand_normal(&[2, 7, groups * group_in], 0.0, 1.0, seed ^ 1).unwrap();
        check_parameters(&mut conv, &x, seed)?;
    }

    #[test]
    fn pooling_with_any_windows(
        ph in 1usize..4, pw in 1usize..4, sh in 1usize..3, sw in 1usize..3,
        same in any::<bool>(), max in any::<bool>(), ceil_mode in any::<bool>(),
        count_include_pad in any::<bool>(), seed in any::<u64>(),
    ) {
        // PyTorch's explicit padding (at most half the window) in a third
        // of the cases where the window allows it; PyTorch's ceil_mode and
        // (averages) count_include_pad.
        let padding = match (same, seed % 3) {
            (_, 0) if ph >= 2 && pw >= 2 => Padding::Explicit(1),
            (true, _) => Padding::Same,
            (false, _) => Padding::Valid,
        };
        let base = if max { Pooling2D::max([ph, pw]) } else { Pooling2D::average([ph, pw]) };
        let mut pool = base.strides([sh, sw]).padding(padding).ceil_mode(ceil_mode)
            .count_include_pad(count_include_pad && !max);
        // Distinct values (no ties), so max pooling is differentiable.
        let x = Tensor::from_vec(
            (0..2 * 5 * 6 * 2).map(|i| ((i * 37 % 101) as f64) / 10.0 + (seed % 7) as f64).collect(),
            &[2, 5, 6, 2],
        ).unwrap();
        check_parameters(&mut pool, &x, seed)?;
        let mut pool1 = MaxPooling1D::new(ph).strides(sh).padding(padding).ceil_mode(ceil_mode);
        let x1 = x.reshape(&[2, 30, 2]).unwrap();
        check_parameters(&mut pool1, &x1, seed)?;
        for mut global in [GlobalPooling::average_1d(), GlobalPooling::average_2d(), GlobalPooling::max_2d().keepdims(true)] {
            let input = if global == GlobalPooling::average_1d() { &x1 } else { &x };
            check_parameters(&mut global, input, seed)?;
        }
    }

    #[test]
    fn batch_normalization_in_both_modes(
        training in any::<bool>(), center in any::<bool>(), scale in any::<bool>(),
        four in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut bn = BatchNormalization::<f64>::new(3).unwrap().center(center).scale(scale);
        // Non-default gamma, beta and moving statistics.
        for (i, (_, p)) in bn.parameters_mut().into_iter().enumerate() {
            p.set_value(Tensor::rand_uniform(&[3], 0.5, 1.5, seed ^ (i as u64 + 7)).unwrap()).unwrap();
        }
        bn.moving_variance().set_value(Tensor::rand_uniform(&[3], 0.5, 2.0, seed ^ 3).unwrap()).unwrap();
        bn.set_training(training);
        let shape: Vec<usize> = if four { vec![2, 3, 2, 3] } else { vec![5, 3] };
        let x = Tensor::rand_normal(&shape, 0.5, 2.0, seed ^ 1).unwrap();
        check_parameters(&mut bn, &x, seed)?;
    }

    #[test]
    fn depthwise_and_transposed_convolutions(
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3,
        same in any::<bool>(), multiplier in 1usize..3, bias in any::<bool>(),
        explicit in 0usize..3, output_padding in any::<bool>(), seed in any::<u64>(),
    ) {
        let padding = if same { Padding::Same } else { Padding::Valid };
        let mut dw = DepthwiseConv2D::<f64>::builder(2, [kh, kw]).depth_multiplier(multiplier)
            .strides([sh, sw]).padding(padding).use_bias(bias)
            .build(&mut Rng::new(seed)).unwrap();
        let x = Tensor::rand_normal(&[2, 4, 5, 2], 0.0, 1.0, seed ^ 1).unwrap();
        check_parameters(&mut dw, &x, seed)?;
        // The transposed convolution also with PyTorch's explicit padding
        // (cropping at most what the kernel adds) and output_padding (one
        // below the stride).
        let up_padding = match explicit {
            1 | 2 if explicit <= kh.min(kw) / 2 => Padding::Explicit(explicit),
            _ => padding,
        };
        let mut up = Conv2DTranspose::<f64>::builder(2, 3, [kh, kw])
            .strides([sh, sw]).padding(up_padding).use_bias(bias).activation(Activation::Tanh);
        if output_padding {
            up = up.output_padding([sh - 1, sw - 1]);
        }
        let mut up = up.build(&mut Rng::new(seed)).unwrap();
        let x = Tensor::rand_normal(&[2, 3, 2, 2], 0.0, 1.0, seed ^ 2).unwrap();
        check_parameters(&mut up, &x, seed)?;
    }

    #[test]
    fn dense_on_3d_and_4d_inputs(seed in any::<u64>(), four in any::<bool>()) {
        let mut dense = Dense::<f64>::new(3, 2, &mut Rng::new(seed)).unwrap();
        let shape: Vec<usize> = if four { vec![2, 2, 1, 3] } else { vec![2, 2, 3] };
        let x = Tensor::rand_normal(&shape, 0.0, 1.0, seed ^ 1).unwrap();
        check_parameters(&mut dense, &x, seed)?;
    }

    #[test]
    fn layer_norm_embedding_and_sequential(center in any::<bool>(), scale in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut norm = LayerNorm::<f64>::new(4).unwrap().center(center).scale(scale);
        // Move gamma and beta off their initial ones/zeros.
        for (_, p) in norm.parameters_mut() {
            let shape = p.value().shape().to_vec();
            p.set_value(Tensor::rand_normal(&shape, 1.0, 0.5, seed).unwrap()).unwrap();
        }
        check_parameters(&mut norm, &Tensor::rand_normal(&[3, 4], 0.0, 2.0, seed ^ 2).unwrap(), seed)?;

        let mut emb = Embedding::<f64>::new(6, 3, &mut rng).unwrap();
        let ids = Tensor::from_vec(vec![0.0, 5.0, 2.0, 5.0], &[2, 2]).unwrap();
        // The input holds ids (no gradient); check the table only.
        let r = Tensor::rand_normal(&[2, 2, 3], 0.0, 1.0, seed).unwrap();
        let (_, g) = objective(&emb, &ids, &r, true);
        let g = &g.unwrap()[0].1;
        // Row 5 is read twice: its gradient is the sum of both r rows.
        let rv = r.to_vec();
        for k in 0..3 {
            prop_assert!((g[5 * 3 + k] - (rv[3 + k] + rv[9 + k])).abs() < 1e-15);
            prop_assert_eq!(g[3 + k], 0.0);
        }
        let _ = &mut emb;

        let mut seq = Sequential::<f64>::new()
            .push(Dense::builder(3, 4).activation(Activation::Tanh).build(&mut rng).unwrap())
            .push(LayerNorm::new(4).unwrap())
            .push(GELU)
            .push(Dense::new(4, 2, &mut rng).unwrap());
        check_parameters(&mut seq, &Tensor::rand_normal(&[2, 3], 0.0, 1.0, seed ^ 3).unwrap(), seed)?;
    }
}

#[test]
fn a_model_built_twice_with_one_seed_is_identical() {
    let build = || {
        let mut rng = Rng::new(123);
        Sequential::<f32>::new()
            .push(
                Dense::builder(8, 16)
                    .kernel_initializer(Initializer::HeNormal)
                    .build(&mut rng)
                    .unwrap(),
            )
            .push(
                Dense::builder(16, 4)
                    .kernel_initializer(Initializer::GlorotNormal)
                    .build(&mut rng)
                    .unwrap(),
            )
            .push(Embedding::new(10, 4, &mut rng).unwrap())
    };
    let (a, b) = (build(), build());
    for ((na, pa), (nb, pb)) in a.parameters().into_iter().zip(b.parameters()) {
        assert_eq!(na, nb);
        assert_eq!(pa.value().to_vec(), pb.value().to_vec());
    }
}

#[test]
fn initializers_have_keras_spreads() {
    let mut rng = Rng::new(5);
    let (fan_in, fan_out) = (300, 200);
    let std_of = |init: Initializer, rng: &mut Rng| {
        let t = init
            .init::<f64>(&[fan_in, fan_out], fan_in, fan_out, rng)
            .unwrap();
        let v = t.to_vec();
        (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
    };
    // Uniform(-l, l) has std l / sqrt(3); the truncated normals are rescaled to their target std.
    let cases = [
        (Initializer::GlorotUniform, (2.0 / 500.0_f64).sqrt()),
        (Initializer::GlorotNormal, (2.0 / 500.0_f64).sqrt()),
        (Initializer::HeUniform, (2.0 / 300.0_f64).sqrt()),
        (Initializer::HeNormal, (2.0 / 300.0_f64).sqrt()),
    ];
    for (init, want) in cases {
        let got = std_of(init, &mut rng);
        assert!(
            (got / want - 1.0).abs() < 0.02,
            "{init:?}: std {got}, want {want}"
        );
    }
    let c = Initializer::Constant(0.5)
        .init::<f32>(&[3], 1, 1, &mut rng)
        .unwrap();
    assert_eq!(c.to_vec(), vec![0.5; 3]);
}

#[test]
fn dropout_zeroes_about_rate_of_the_elements_and_keeps_the_mean() {
    let drop = Dropout::new(0.3, 11).unwrap();
    let tape = Tape::<f64>::new();
    let y = Module::<f64>::forward(&drop, tape.constant(Tensor::ones(&[20_000]).unwrap()))
        .unwrap()
        .value()
        .to_vec();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.3).abs() < 0.02, "dropped {zeros}");
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
    // The same seed gives the same masks in the same order.
    let again = Dropout::new(0.3, 11).unwrap();
    let z = Module::<f64>::forward(&again, tape.constant(Tensor::ones(&[20_000]).unwrap()))
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(y, z);
    assert!(Dropout::new(1.0, 0).is_err());
}

#[test]
fn layer_shape_errors_say_what_was_expected() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(Tensor::zeros(&[2, 5]).unwrap());
    let norm = LayerNorm::<f32>::new(4).unwrap();
    assert_eq!(
        norm.forward(x).unwrap_err().to_string(),
        "layer_norm: input shape [2, 5] does not end in 4 features"
    );
    assert_eq!(
        Dense::<f32>::new(0, 3, &mut Rng::new(0))
            .unwrap_err()
            .to_string(),
        "dense: in_features and out_features must be positive, got 0 and 3"
    );
    let scalar = tape.constant(Tensor::scalar(1.0));
    assert!(Flatten.forward(scalar).is_err());
}

#[test]
fn convolution_mistakes_are_errors_naming_the_layer_and_the_rule() {
    let mut rng = Rng::new(3);
    let tape = Tape::<f32>::new();
    let conv = Conv2D::<f32>::builder(2, 4, [3, 3])
        .build(&mut rng)
        .unwrap();
    let err = |r: Result<polyhead_autograd::Var<'_, f32>>| r.unwrap_err().to_string();
    assert_eq!(
        err(conv.forward(tape.constant(Tensor::ones(&[2, 5, 2]).unwrap()))),
        "conv2d: input must be [batch, height, width, channels], got shape [2, 5, 2]"
    );
    assert_eq!(
        err(conv.forward(tape.constant(Tensor::ones(&[1, 5, 5, 3]).unwrap()))),
        "conv2d: input has 3 channels (last axis of [1, 5, 5, 3]), the layer expects 2"
    );
    assert_eq!(
        err(conv.forward(tape.constant(Tensor::ones(&[1, 2, 5, 2]).unwrap()))),
        "conv2d: a window of 3 (kernel 3, dilation 1) does not fit an axis of 2 with padding `valid`"
    );
    let build = |b: Conv2DBuilder<f32>| b.build(&mut Rng::new(0)).unwrap_err().to_string();
    assert_eq!(
        build(Conv2D::builder(2, 4, [3, 3]).strides([0, 1])),
        "conv2d: strides must be at least 1, got [0, 1]"
    );
    assert_eq!(
        build(Conv2D::builder(2, 4, [3, 3]).dilation_rate([1, 0])),
        "conv2d: dilation_rate must be at least 1, got [1, 0]"
    );
    assert_eq!(
        build(Conv2D::builder(2, 4, [3, 3]).groups(0)),
        "conv2d: groups = 0 must divide the input channels (2) and the filters (4)"
    );
    assert_eq!(
        build(Conv2D::builder(2, 4, [3, 3]).padding(Padding::Causal)),
        "conv2d: padding `causal` is for 1-D convolutions only"
    );
    let conv1 = Conv1D::<f32>::builder(2, 2, 3).build(&mut rng).unwrap();
    assert_eq!(
        err(conv1.forward(tape.constant(Tensor::ones(&[1, 0, 2]).unwrap()))),
        "conv1d: a window of 3 (kernel 3, dilation 1) does not fit an axis of 0 with padding `valid`"
    );
    let up = |b: Conv2DTransposeBuilder<f32>| b.build(&mut Rng::new(0)).unwrap_err().to_string();
    assert_eq!(
        up(Conv2DTranspose::builder(2, 2, [3, 3])
            .strides([2, 2])
            .output_padding([1, 2])),
        "conv2d_transpose: output_padding [1, 2] must be smaller than the strides [2, 2]"
    );
    let cropped = Conv2DTranspose::<f32>::builder(2, 2, [1, 1])
        .padding(Padding::Explicit(1))
        .build(&mut rng)
        .unwrap();
    assert_eq!(
        err(cropped.forward(tape.constant(Tensor::ones(&[1, 2, 2, 2]).unwrap()))),
        "conv2d_transpose: padding Explicit(1) crops all of an axis of 2 upsampled to 2 (kernel 1, stride 1)"
    );
    assert_eq!(
        err(Pooling2D::max([2, 2])
            .count_include_pad(true)
            .forward(tape.constant(Tensor::ones(&[1, 2, 2, 1]).unwrap()))),
        "max_pooling2d: count_include_pad applies to average pooling only"
    );
}

#[test]
fn pytorch_pooling_options_follow_pytorch_rules() {
    let tape = Tape::<f64>::new();
    let x = Tensor::from_vec((1..=25).map(f64::from).collect(), &[1, 5, 5, 1]).unwrap();
    // AvgPool2d(3, stride=2, padding=1, ceil_mode=True): 3 windows per
    // axis (the last starts at input 3), divisors count padding up to
    // n + padding = 6 but not past it: 9, 9, 6 along each axis product.
    let pool = Pooling2D::average([3, 3])
        .strides([2, 2])
        .padding(Padding::Explicit(1))
        .ceil_mode(true)
        .count_include_pad(true);
    let y = pool.forward(tape.constant(x.clone())).unwrap();
    assert_eq!(y.shape(), vec![1, 3, 3, 1]);
    // The corner window holds 1, 2, 6, 7 (sum 16) over 9 positions.
    assert_eq!(y.value().to_vec()[0], 16.0 / 9.0);
    // The last window along each axis covers inputs 3..5 and one padding
    // position: 2 rows x 2 columns real (19+20+24+25 = 88), divisor 3 x 3.
    assert_eq!(y.value().to_vec()[8], 88.0 / 9.0);
    // ceil_mode adds no window that would start in the trailing padding:
    // MaxPool2d(2, stride=2, padding=1, ceil_mode=True) on 5 gives 3 (the
    // windows over input -1..0, 1..2, 3..4), not 4.
    let y5 = Pooling2D::max([2, 2])
        .padding(Padding::Explicit(1))
        .ceil_mode(true)
        .forward(tape.constant(x))
        .unwrap();
    assert_eq!(y5.shape(), vec![1, 3, 3, 1]);
    assert_eq!(y5.value().to_vec()[..3], [1.0, 3.0, 5.0]);
}

#[test]
fn batch_normalization_refuses_non_finite_statistics_and_wrong_channels() {
    let bn = BatchNormalization::<f32>::new(2).unwrap();
    let tape = Tape::<f32>::new();
    let x = Tensor::from_vec(vec![1.0, f32::INFINITY, 2.0, 3.0], &[2, 2]).unwrap();
    let err = bn.forward(tape.constant(x)).unwrap_err().to_string();
    assert_eq!(
        err,
        "batch_normalization: the batch's statistics of channel 1 are not finite (mean inf, variance NaN); the moving statistics are unchanged"
    );
    assert_eq!(bn.moving_mean().value().to_vec(), vec![0.0, 0.0]);
    let err = bn
        .forward(tape.constant(Tensor::ones(&[2, 3]).unwrap()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "batch_normalization: input must be [batch, ..., 2] (channels last), got shape [2, 3]"
    );
}

/// The recurrent layers' masked forward, one name for the three.
trait MaskedForward {
    fn masked<'t>(
        &self,
        x: polyhead_autograd::Var<'t, f64>,
        mask: Option<&Tensor<f64>>,
    ) -> Result<polyhead_autograd::Var<'t, f64>>;
}

macro_rules! masked_forward {
    ($($t:ty),*) => {$(
        impl MaskedForward for $t {
            fn masked<'t>(&self, x: polyhead_autograd::Var<'t, f64>, mask: Option<&Tensor<f64>>) -> Result<polyhead_autograd::Var<'t, f64>> {
                self.forward_masked(x, mask)
            }
        }
    )*};
}
masked_forward!(Lstm<f64>, Gru<f64>, Bidirectional<f64>);

/// A recurrent layer with a fixed mask, as a `Module` for the checks.
struct Masked<M> {
    layer: M,
    mask: Option<Tensor<f64>>,
}

impl<M: Module<f64> + MaskedForward> Module<f64> for Masked<M> {
    fn forward<'t>(
        &self,
        x: polyhead_autograd::Var<'t, f64>,
    ) -> Result<polyhead_autograd::Var<'t, f64>> {
        self.layer.masked(x, self.mask.as_ref())
    }
    fn visit_parameters<'a>(
        &'a self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a polyhead_autograd::Parameter<f64>),
    ) {
        self.layer.visit_parameters(prefix, f)
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut polyhead_autograd::Parameter<f64>),
    ) {
        self.layer.visit_parameters_mut(prefix, f)
    }
}

/// Weights of a recurrent layer drawn wider than its initializers (so the
/// gates are not all near 0.5) and a random mask with at least one real
/// step per row (padding anywhere: left, right, in the middle).
fn scramble(module: &mut dyn Module<f64>, seed: u64) {
    for (i, (_, p)) in module.parameters_mut().into_iter().enumerate() {
        let shape = p.value().shape().to_vec();
        p.set_value(Tensor::rand_normal(&shape, 0.0, 0.7, seed ^ (i as u64 + 11)).unwrap())
            .unwrap();
    }
}

fn random_mask(batch: usize, steps: usize, seed: u64) -> Tensor<f64> {
    let mut rng = Rng::new(seed);
    let mut m: Vec<f64> = (0..batch * steps)
        .map(|_| if rng.below(3) == 0 { 0.0 } else { 1.0 })
        .collect();
    for b in 0..batch {
        let t = rng.below(steps as u64) as usize;
        m[b * steps + t] = 1.0;
    }
    Tensor::from_vec(m, &[batch, steps]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(12) })]

    #[test]
    fn recurrent_layers_with_any_options_and_masks(
        batch in 1usize..3, steps in 1usize..5, input in 1usize..4, units in 1usize..4,
        kind in 0usize..3, sequences in any::<bool>(), bias in any::<bool>(), masked in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // kind 0: LSTM; 1: GRU (reset_after); 2: GRU without reset_after.
        let mut rng = Rng::new(seed);
        let mask = masked.then(|| random_mask(batch, steps, seed ^ 9));
        let x = Tensor::rand_normal(&[batch, steps, input], 0.0, 1.0, seed ^ 1).unwrap();
        if kind == 0 {
            let layer = Lstm::<f64>::new(input, units, &mut rng).unwrap().return_sequences(sequences).use_bias(bias);
            let mut m = Masked { layer, mask };
            scramble(&mut m, seed);
            check_parameters(&mut m, &x, seed)?;
        } else {
            let layer = Gru::<f64>::new(input, units, &mut rng).unwrap().reset_after(kind == 1)
                .return_sequences(sequences).use_bias(bias);
            let mut m = Masked { layer, mask };
            scramble(&mut m, seed);
            check_parameters(&mut m, &x, seed)?;
        }
    }

    #[test]
    fn bidirectional_layers_in_both_merge_modes(
        steps in 1usize..5, gru in any::<bool>(), sum in any::<bool>(), sequences in any::<bool>(),
        masked in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let bi = if gru {
            Bidirectional::gru(Gru::<f64>::new(2, 3, &mut rng).unwrap().return_sequences(sequences), Gru::new(2, 3, &mut rng).unwrap().return_sequences(sequences))
        } else {
            Bidirectional::lstm(Lstm::<f64>::new(2, 3, &mut rng).unwrap().return_sequences(sequences), Lstm::new(2, 3, &mut rng).unwrap().return_sequences(sequences))
        }.unwrap().merge(if sum { Merge::Sum } else { Merge::Concat });
        let mut m = Masked { layer: bi, mask: masked.then(|| random_mask(2, steps, seed ^ 3)) };
        scramble(&mut m, seed);
        let x = Tensor::rand_normal(&[2, steps, 2], 0.0, 1.0, seed ^ 1).unwrap();
        check_parameters(&mut m, &x, seed)?;
    }
}

#[test]
fn lstm_initial_state_gradients_match_finite_differences() {
    let mut lstm = Lstm::<f64>::new(2, 3, &mut Rng::new(4))
        .unwrap()
        .return_sequences(true);
    scramble(&mut lstm, 4);
    let x = Tensor::rand_normal(&[2, 4, 2], 0.0, 1.0, 5).unwrap();
    let h0 = Tensor::rand_normal(&[2, 3], 0.0, 1.0, 6).unwrap();
    let c0 = Tensor::rand_normal(&[2, 3], 0.0, 1.0, 7).unwrap();
    let mask = random_mask(2, 4, 8);
    gradcheck(
        |tape: &Tape<f64>, v| {
            let (y, h, c) = lstm.forward_with_state(v[0], Some((v[1], v[2])), Some(&mask))?;
            let r = Tensor::rand_normal(&y.shape(), 0.0, 1.0, 9).unwrap();
            y.mul(tape.constant(r))?
                .sum_all()
                .add(h.sum_all())?
                .add(c.mul(c)?.sum_all())
        },
        &[x.clone(), h0, c0],
        &GradcheckOptions {
            atol: 1e-7,
            rtol: 1e-6,
            ..Default::default()
        },
    )
    .unwrap();
    let mut gru = Gru::<f64>::new(2, 3, &mut Rng::new(4))
        .unwrap()
        .return_sequences(true);
    scramble(&mut gru, 5);
    let h0 = Tensor::rand_normal(&[2, 3], 0.0, 1.0, 6).unwrap();
    gradcheck(
        |tape: &Tape<f64>, v| {
            let (y, h) = gru.forward_with_state(v[0], Some(v[1]), Some(&mask))?;
            let r = Tensor::rand_normal(&y.shape(), 0.0, 1.0, 9).unwrap();
            y.mul(tape.constant(r))?.sum_all().add(h.mul(h)?.sum_all())
        },
        &[x, h0],
        &GradcheckOptions {
            atol: 1e-7,
            rtol: 1e-6,
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn recurrent_mistakes_are_errors_naming_the_layer_and_the_shapes() {
    let tape = Tape::<f32>::new();
    let mut rng = Rng::new(0);
    let lstm = Lstm::<f32>::new(3, 4, &mut rng).unwrap();
    let err = |r: Result<polyhead_autograd::Var<'_, f32>>| r.unwrap_err().to_string();
    let x = |shape: &[usize]| tape.constant(Tensor::ones(shape).unwrap());
    assert_eq!(
        err(lstm.forward(x(&[2, 5, 2]))),
        "lstm: input must be [batch, steps, 3], got shape [2, 5, 2]"
    );
    assert_eq!(
        err(lstm.forward(x(&[2, 0, 3]))),
        "lstm: a sequence needs at least one step, got shape [2, 0, 3]"
    );
    let mask = Tensor::ones(&[2, 4]).unwrap();
    assert_eq!(
        err(lstm.forward_masked(x(&[2, 5, 3]), Some(&mask))),
        "lstm: the mask must be [batch, steps] = [2, 5], got shape [2, 4]"
    );
    let h = x(&[2, 3]);
    assert_eq!(
        lstm.forward_with_state(x(&[2, 5, 3]), Some((h, h)), None)
            .unwrap_err()
            .to_string(),
        "lstm: an initial state must be [batch, units] = [2, 4], got shape [2, 3]"
    );
    assert_eq!(
        Gru::<f32>::new(0, 4, &mut rng).unwrap_err().to_string(),
        "gru: input features and units must be at least 1 (got 0 and 4)"
    );
    let none = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0], &[2, 2]).unwrap();
    assert_eq!(
        err(GlobalPooling::average_1d().forward_masked(x(&[2, 2, 3]), &none)),
        "global_average_pooling1d: row 1 of the mask has no real step to average"
    );
}

/// A mask set by `Embedding::mask_zero` travels with the value: the
/// recurrent layer, its sequence output, dense per position and masked
/// pooling give what passing the same mask by hand gives, and the
/// gradients match finite differences through it.
#[test]
fn masks_travel_from_the_embedding_through_the_layers() {
    let mut rng = Rng::new(3);
    let emb = Embedding::<f64>::new(6, 3, &mut rng)
        .unwrap()
        .mask_zero(true);
    let mut lstm = Lstm::<f64>::new(3, 4, &mut rng)
        .unwrap()
        .return_sequences(true);
    scramble(&mut lstm, 3);
    let dense = Dense::<f64>::new(4, 2, &mut rng).unwrap();
    let ids = Tensor::from_vec(vec![3.0, 1.0, 5.0, 0.0, 2.0, 0.0, 0.0, 0.0], &[2, 4]).unwrap();
    let mask = Tensor::from_vec(vec![1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0], &[2, 4]).unwrap();
    let tape = Tape::new();
    let e = emb.forward(tape.constant(ids.clone())).unwrap();
    assert_eq!(e.mask().unwrap().to_vec(), mask.to_vec());
    let h = lstm.forward(e).unwrap();
    assert_eq!(
        h.mask().unwrap().to_vec(),
        mask.to_vec(),
        "a sequence output carries the mask"
    );
    let d = dense.forward(h).unwrap();
    assert!(d.mask().is_some(), "dense per position passes it on");
    let pooled = GlobalPooling::average_1d().forward(d).unwrap();
    assert!(pooled.mask().is_none(), "pooling consumes it");
    // By hand, from an unmasked embedding.
    let plain = Embedding::<f64>::new(6, 3, &mut Rng::new(0)).unwrap();
    let mut plain = plain;
    plain.parameters_mut()[0]
        .1
        .set_value(emb.parameters()[0].1.value().clone())
        .unwrap();
    let e2 = plain.forward(tape.constant(ids)).unwrap();
    assert!(e2.mask().is_none());
    let h2 = lstm.forward_masked(e2, Some(&mask)).unwrap();
    let by_hand = GlobalPooling::average_1d()
        .forward_masked(dense.forward(h2).unwrap(), &mask)
        .unwrap();
    assert_eq!(pooled.value().to_vec(), by_hand.value().to_vec());
    // The real steps' average: the padded positions do not count.
    let second_row = &d.value().to_vec()[8..10];
    assert_eq!(pooled.value().to_vec()[2..4], *second_row);
}

/// `MultiHeadAttention` as a `Module` on a fixed value, key and mask, so
/// that the gradient checks see the query and every weight.
struct Attending {
    mha: MultiHeadAttention<f64>,
    value: Tensor<f64>,
    key: Option<Tensor<f64>>,
    mask: Option<Tensor<f64>>,
}

impl Module<f64> for Attending {
    fn forward<'t>(
        &self,
        q: polyhead_autograd::Var<'t, f64>,
    ) -> Result<polyhead_autograd::Var<'t, f64>> {
        let tape = q.tape();
        let key = self.key.clone().map(|k| tape.constant(k));
        self.mha.attend(
            q,
            tape.constant(self.value.clone()),
            key,
            self.mask.as_ref(),
        )
    }
    fn visit_parameters<'a>(
        &'a self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a polyhead_autograd::Parameter<f64>),
    ) {
        self.mha.visit_parameters(prefix, f)
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut polyhead_autograd::Parameter<f64>),
    ) {
        self.mha.visit_parameters_mut(prefix, f)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(12) })]

    #[test]
    fn attention_with_any_heads_lengths_and_masks(
        heads in 1usize..3, key_dim in 1usize..3, value_dim in 1usize..3, tq in 1usize..4, tv in 1usize..4,
        separate_key in any::<bool>(), masked in any::<bool>(), bias in any::<bool>(), seed in any::<u64>(),
    ) {
        // Keys of width 2; values of width 4 beside them, or the keys
        // themselves.
        let value_features = if separate_key { 4 } else { 2 };
        let mha = MultiHeadAttention::<f64>::builder(heads, key_dim, 3)
            .value_dim(value_dim).key_features(2).value_features(value_features)
            .use_bias(bias).build(&mut Rng::new(seed)).unwrap();
        let value = Tensor::rand_normal(&[2, tv, value_features], 0.0, 1.0, seed ^ 2).unwrap();
        let key = separate_key.then(|| Tensor::rand_normal(&[2, tv, 2], 0.0, 1.0, seed ^ 3).unwrap());
        // A random mask, some rows fully masked (they attend uniformly).
        let mask = masked.then(|| {
            let mut rng = Rng::new(seed ^ 4);
            Tensor::from_vec((0..2 * tq * tv).map(|_| (rng.below(3) != 0) as u8 as f64).collect(), &[2, tq, tv]).unwrap()
        });
        let mut m = Attending { mha, value, key, mask };
        scramble(&mut m, seed);
        let q = Tensor::rand_normal(&[2, tq, 3], 0.0, 1.0, seed ^ 1).unwrap();
        check_parameters(&mut m, &q, seed)?;
    }
}

#[test]
fn attention_mistakes_are_errors_naming_the_shapes() {
    let mha = MultiHeadAttention::<f32>::builder(2, 3, 4)
        .build(&mut Rng::new(0))
        .unwrap();
    let tape = Tape::<f32>::new();
    let x = |shape: &[usize]| tape.constant(Tensor::ones(shape).unwrap());
    let err = |r: Result<polyhead_autograd::Var<'_, f32>>| r.unwrap_err().to_string();
    assert_eq!(
        err(mha.attend(x(&[2, 3, 5]), x(&[2, 4, 4]), None, None)),
        "multi_head_attention: query must be [batch, steps, 4], got shape [2, 3, 5]"
    );
    assert_eq!(
        err(mha.attend(x(&[2, 3, 4]), x(&[3, 4, 4]), None, None)),
        "multi_head_attention: query [2, 3, 4], key [3, 4, 4] and value [3, 4, 4] must share the batch, and key and value their steps"
    );
    let mask = Tensor::ones(&[2, 4, 3]).unwrap();
    assert_eq!(
        err(mha.attend(x(&[2, 3, 4]), x(&[2, 4, 4]), None, Some(&mask))),
        "multi_head_attention: the attention mask must be [batch, query steps, key steps] = [2, 3, 4], got shape [2, 4, 3]"
    );
}
