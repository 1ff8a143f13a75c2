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
