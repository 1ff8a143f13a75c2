//! Random input shapes through the layers, and random gradients through the
//! optimizers: `Ok` or a descriptive `Err`, never a panic.

use polyhead_autograd::Tape;
use polyhead_layers::*;
use polyhead_tensor::{Rng, Tensor};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64))
    })]

    #[test]
    fn layers_and_optimizers_never_panic(
        shape in prop::collection::vec(0usize..5, 0..4), grad_shape in prop::collection::vec(0usize..5, 0..3),
        value in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(1e300), -3.0f64..3.0], seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut layers: Vec<Box<dyn Module<f64>>> = vec![
            Box::new(Dense::new(3, 2, &mut rng).unwrap()),
            Box::new(LayerNorm::new(3).unwrap()),
            Box::new(Embedding::new(4, 2, &mut rng).unwrap()),
            Box::new(Flatten),
            Box::new(Dropout::new(0.5, seed).unwrap()),
            Box::new(Sequential::new().push(Dense::new(3, 3, &mut rng).unwrap()).push(GELU)),
        ];
        let tape = Tape::<f64>::new();
        let x = tape.constant(Tensor::full(&shape, value).unwrap());
        for layer in &layers {
            let _ = layer.forward(x);
        }
        for opt in [Sgd::new(0.1).momentum(0.9).build(), Adam::new(1e-3).build(), RmsProp::new(1e-3).build()] {
            let mut opt = opt.clip_global_norm(1.0);
            for layer in &mut layers {
                let _ = opt.step_with(layer.as_mut(), |_, _| Some(Tensor::full(&grad_shape, value).unwrap()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64))
    })]

    /// Convolution, pooling and batch normalization with hostile shapes
    /// (empty axes, wrong ranks and channel counts, windows larger than
    /// the input) and options (zero strides, dilations and groups): `Ok`
    /// or an error, forward and backward, never a panic.
    #[test]
    fn vision_layers_never_panic(
        shape in prop_oneof![
            prop::collection::vec(0usize..6, 0..6),
            (0usize..3, 0usize..6, 0usize..6).prop_map(|(b, h, w)| vec![b, h, w, 2]),
            (0usize..3, 0usize..7).prop_map(|(b, l)| vec![b, l, 2]),
        ],
        kernel in prop::collection::vec(0usize..4, 2),
        strides in prop::collection::vec(0usize..3, 2),
        dilation in prop::collection::vec(0usize..3, 2),
        groups in 0usize..4, padding in 0usize..4, training in any::<bool>(),
        value in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -3.0f64..3.0], seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let padding = [Padding::Valid, Padding::Same, Padding::Causal, Padding::Explicit(1)][padding];
        let (k, s, d) = ([kernel[0], kernel[1]], [strides[0], strides[1]], [dilation[0], dilation[1]]);
        let mut layers: Vec<Box<dyn Module<f64>>> = Vec::new();
        if let Ok(c) = Conv2D::builder(2, 2, k).strides(s).dilation_rate(d).padding(padding).groups(groups).build(&mut rng) {
            layers.push(Box::new(c));
        }
        if let Ok(c) = Conv1D::builder(2, 4, k[1]).strides(s[1]).dilation_rate(d[1]).padding(padding).groups(groups).build(&mut rng) {
            layers.push(Box::new(c));
        }
        if let Ok(c) = DepthwiseConv2D::builder(2, k).strides(s).dilation_rate(d).padding(padding).depth_multiplier(groups).build(&mut rng) {
            layers.push(Box::new(c));
        }
        if let Ok(c) = Conv2DTranspose::builder(2, 3, k).strides(s).padding(padding).build(&mut rng) {
            layers.push(Box::new(c));
        }
        // Output padding of 0 or 1 either side of the stride rule.
        if let Ok(c) = Conv2DTranspose::builder(2, 3, k).strides(s).padding(padding).output_padding([d[0] % 2, d[1] % 2]).build(&mut rng) {
            layers.push(Box::new(c));
        }
        let ceil_mode = training;
        layers.push(Box::new(Pooling2D::max(k).strides(s).padding(padding).ceil_mode(ceil_mode)));
        layers.push(Box::new(Pooling2D::average(k).strides(s).padding(padding).ceil_mode(ceil_mode).count_include_pad(groups % 2 == 0)));
        layers.push(Box::new(Pooling2D::max(k).count_include_pad(true)));
        layers.push(Box::new(MaxPooling1D::new(k[0]).strides(s[0]).padding(padding).ceil_mode(ceil_mode)));
        layers.push(Box::new(GlobalPooling::average_1d()));
        layers.push(Box::new(GlobalPooling::max_2d().keepdims(training)));
        let mut bn = BatchNormalization::new(2).unwrap();
        bn.set_training(training);
        layers.push(Box::new(bn));
        let tape = Tape::<f64>::new();
        let x = tape.leaf(Tensor::full(&shape, value).unwrap());
        for layer in &layers {
            if let Ok(y) = layer.forward(x) {
                let _ = tape.backward(y.sum_all());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64))
    })]

    #[test]
    fn recurrent_layers_never_panic(
        shape in prop::collection::vec(0usize..5, 0..5),
        mask_shape in prop::collection::vec(0usize..5, 0..4),
        state_shape in prop::collection::vec(0usize..5, 0..3),
        units in 0usize..4, sequences in any::<bool>(),
        value in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -3.0f64..3.0], seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let tape = Tape::<f64>::new();
        let x = tape.leaf(Tensor::full(&shape, value).unwrap());
        let mask = Tensor::ones(&mask_shape).unwrap();
        let state = tape.leaf(Tensor::zeros(&state_shape).unwrap());
        let input = shape.last().copied().unwrap_or(1).max(1);
        if let Ok(l) = Lstm::new(input, units, &mut rng) {
            let l = l.return_sequences(sequences);
            for y in [l.forward(x), l.forward_masked(x, Some(&mask)), l.forward_with_state(x, Some((state, state)), Some(&mask)).map(|r| r.0)].into_iter().flatten() {
                let _ = tape.backward(y.sum_all());
            }
        }
        if let Ok(g) = Gru::new(input, units, &mut rng) {
            let g = g.reset_after(seed % 2 == 0).return_sequences(sequences);
            for y in [g.forward(x), g.forward_masked(x, Some(&mask)), g.forward_with_state(x, Some(state), None).map(|r| r.0)].into_iter().flatten() {
                let _ = tape.backward(y.sum_all());
            }
        }
        if let (Ok(f), Ok(b)) = (Lstm::<f64>::new(input, units, &mut rng), Lstm::new(input, units + 1, &mut rng)) {
            // Mismatched directions are refused.
            prop_assert!(Bidirectional::lstm(f, b).is_err());
        }
        let _ = GlobalPooling::average_1d().forward_masked(x, &mask);
        if let Ok(mha) = MultiHeadAttention::<f64>::builder(units, units.max(1), input).build(&mut rng) {
            let attention_mask = Tensor::ones(&state_shape).unwrap();
            for y in [mha.forward(x), mha.attend(x, x, Some(state), Some(&attention_mask))].into_iter().flatten() {
                let _ = tape.backward(y.sum_all());
            }
        }
    }
}
