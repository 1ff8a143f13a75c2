//! Hostile shapes and values through the facade's public API (`fit`,
//! `evaluate`, `forward_heads`, `weighted_loss`): `Ok` or a descriptive
//! `Err`, never a panic.

use polyhead::prelude::*;
use polyhead::tensor::Rng;
use polyhead::{Progress, Trainer};
use proptest::prelude::*;

#[derive(MultiOutput)]
struct Net {
    #[trunk]
    body: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    value: Dense,
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(std::env::var("POLYHEAD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48))
    })]

    #[test]
    fn fit_and_evaluate_never_panic(
        n in 0usize..6, width in 0usize..5, labels in prop::collection::vec(-2i64..5, 0..6),
        value_shape in prop::collection::vec(0usize..6, 0..3),
        x_value in prop_oneof![Just(f32::NAN), Just(1e30), -2.0f32..2.0],
        batch in 0usize..4, split in prop_oneof![Just(-0.5), Just(0.0), Just(0.5), Just(1.0)],
    ) {
        let mut rng = Rng::new(1);
        let mut net = Net {
            body: Dense::new(3, 4, &mut rng).unwrap(),
            class: Dense::new(4, 3, &mut rng).unwrap(),
            value: Dense::new(4, 1, &mut rng).unwrap(),
        };
        let x = Tensor::<f32>::full(&[n, width], x_value).unwrap();
        let k = labels.len();
        let targets = NetTargets::new(Labels::new(labels, &[k]).unwrap(), Tensor::zeros(&value_shape).unwrap());
        let mut trainer = Trainer::<Net, f32>::new(Sgd::new(0.1).build())
            .epochs(2)
            .batch_size(batch)
            .validation_split(split)
            .metric("class", Metric::Accuracy)
            .metric("value", Metric::Rmse)
            .progress(Progress::Silent);
        if let Err(e) = trainer.fit(&mut net, &x, &targets) {
            prop_assert!(!e.to_string().is_empty());
        }
        let _ = trainer.evaluate(&mut net, &x, &targets);
        let tape = Tape::new();
        if let Ok(outputs) = net.forward_heads(tape.constant(x)) {
            let _ = net.weighted_loss(&outputs, &targets, &NetLossWeights::default());
        }
    }
}
