//! Loss weighting strategies through `fit`: each trains any derived model,
//! logs its effective weights, follows its formula, and keeps its state in
//! checkpoints.

use polyhead::prelude::*;
use polyhead::tensor::Rng;
use polyhead::weighting::{
    Dwa, Famo, Fixed, GradNorm, PcGrad, Uncertainty, UncertaintyKind, Weighting, dwa_weights,
};
use polyhead::{ModelCheckpoint, Progress};

mod common;
use common::{Net, data, net};

fn fit(
    weighting: impl Weighting<f64> + 'static,
    epochs: usize,
) -> (Net, History, polyhead::Trainer<Net, f64>) {
    let (x, t) = data(128, 1);
    let mut model = net(2);
    let mut trainer = polyhead::Trainer::<Net, f64>::new(Adam::new(0.01).build())
        .epochs(epochs)
        .batch_size(32)
        .shuffle(None)
        .weighting(weighting)
        .progress(Progress::Silent);
    let history = trainer.fit(&mut model, &x, &t).unwrap();
    (model, history, trainer)
}

#[test]
fn every_strategy_trains_and_logs_its_weights() {
    let strategies: Vec<Box<dyn Weighting<f64>>> = vec![
        Box::new(Fixed),
        Box::new(Uncertainty::new()),
        Box::new(Dwa::new(2.0)),
        Box::new(GradNorm::new(1.5)),
        Box::new(GradNorm::new(1.5).rep_grad(true)),
        Box::new(PcGrad::new()),
        Box::new(PcGrad::new().rep_grad(true)),
        Box::new(Famo::new()),
    ];
    for w in strategies {
        let name = w.name().to_string();
        let (_, h, _) = fit(w, 8);
        let class = h.get("class_loss").unwrap();
        let value = h.get("value_loss").unwrap();
        assert!(
            class[7] < class[0] && value[7] < value[0],
            "{name}: class {class:?} value {value:?}"
        );
        let wc = h.get("weight_class").unwrap();
        assert!(
            wc.iter().all(|v| v.is_finite() && *v > 0.0),
            "{name}: {wc:?}"
        );
    }
}

#[test]
fn fixed_weights_are_the_attributes_and_gradnorm_weights_sum_to_the_number_of_losses() {
    let (_, h, _) = fit(Fixed, 2);
    assert_eq!(h.get("weight_class").unwrap(), &[1.0, 1.0]);
    assert_eq!(h.get("weight_value").unwrap(), &[0.5, 0.5]);
    let (_, h, trainer) = fit(GradNorm::new(1.5), 4);
    let (a, b) = (
        h.get("weight_class").unwrap(),
        h.get("weight_value").unwrap(),
    );
    for e in 0..4 {
        assert!(
            (a[e] + b[e] - 2.0).abs() < 1e-9,
            "epoch {e}: {} + {}",
            a[e],
            b[e]
        );
    }
    assert!(a[3] != 1.0, "GradNorm never moved its weights");
    assert_eq!(trainer.current_weighting().name(), "gradnorm");
}

#[test]
fn dwa_weights_follow_the_formula_from_the_epoch_means() {
    let (_, h, _) = fit(Dwa::new(2.0), 4);
    let (c, v) = (h.get("class_loss").unwrap(), h.get("value_loss").unwrap());
    // Epochs 1 and 2 use weight 1 (times the attribute weights).
    assert_eq!(h.get("weight_class").unwrap()[..2], [1.0, 1.0]);
    // Epoch 3 uses the means of epochs 1 and 2 (equal batches: step means = epoch means).
    let w = dwa_weights(&[c[0], v[0]], &[c[1], v[1]], 2.0);
    assert!((h.get("weight_class").unwrap()[2] - w[0]).abs() < 1e-9);
    assert!((h.get("weight_value").unwrap()[2] - 0.5 * w[1]).abs() < 1e-9);
}

#[test]
fn uncertainty_log_variances_move_by_the_objectives_gradient() {
    // One SGD step of size lr on s (starting at 0) moves s_i by
    // -lr * d/ds_i [sum_j c_j exp(-s_j) w_j L_j + d_j s_j] at s = 0; check
    // that derivative against central finite differences of the objective.
    let (x, t) = data(32, 3);
    let model = net(4);
    let tape = Tape::no_record();
    let outputs = model.forward_heads(tape.constant(x.clone())).unwrap();
    let parts: Vec<f64> = model
        .head_losses(&outputs, &t)
        .unwrap()
        .iter()
        .map(|p| p.value().item().unwrap())
        .collect();
    let user = [1.0, 0.5];
    let kinds = [(1.0, 0.5), (0.5, 0.5)]; // class: classification, value: regression
    let objective = |s: [f64; 2]| -> f64 {
        (0..2)
            .map(|i| kinds[i].0 * (-s[i]).exp() * user[i] * parts[i] + kinds[i].1 * s[i])
            .sum()
    };
    let eps = 1e-6;
    let numeric: Vec<f64> = (0..2)
        .map(|i| {
            let (mut p, mut m) = ([0.0; 2], [0.0; 2]);
            p[i] = eps;
            m[i] = -eps;
            (objective(p) - objective(m)) / (2.0 * eps)
        })
        .collect();
    let lr = 0.1;
    let mut model = model;
    let mut trainer = polyhead::Trainer::<Net, f64>::new(Sgd::new(lr).build())
        .epochs(1)
        .batch_size(32)
        .shuffle(None)
        .weighting(
            Uncertainty::new()
                .kind("class", UncertaintyKind::Classification)
                .kind("value", UncertaintyKind::Regression),
        )
        .progress(Progress::Silent);
    trainer.fit(&mut model, &x, &t).unwrap();
    let state = trainer.current_weighting().state();
    for i in 0..2 {
        assert_eq!(state[i].0, format!("log_var.{i}"));
        let moved = state[i].1[0];
        assert!(
            (moved - (-lr * numeric[i])).abs() < 1e-8,
            "s_{i}: moved {moved}, expected {}",
            -lr * numeric[i]
        );
    }
}

#[test]
fn strategy_state_is_saved_in_checkpoints_and_restored() {
    let dir = std::env::temp_dir().join(format!("polyhead-weighting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("famo.safetensors");
    let (x, t) = data(64, 5);
    let mut model = net(6);
    let mut trainer = polyhead::Trainer::<Net, f64>::new(Adam::new(0.01).build())
        .epochs(3)
        .batch_size(16)
        .weighting(Famo::new())
        .callback(ModelCheckpoint::new(&path))
        .progress(Progress::Silent);
    trainer.fit(&mut model, &x, &t).unwrap();
    let state = trainer.current_weighting().state();
    assert_eq!(state[0].0, "logits");
    let logits = state[0].1.clone();
    assert!(
        logits.iter().any(|v| *v != 0.0),
        "FAMO never moved its logits"
    );

    let mut fresh_model = net(7);
    let mut fresh =
        polyhead::Trainer::<Net, f64>::new(Adam::new(0.01).build()).weighting(Famo::new());
    fresh.load_checkpoint(&path, &mut fresh_model).unwrap();
    assert_eq!(fresh.current_weighting().state()[0].1, logits);
    assert_eq!(
        fresh_model.class.kernel().value().to_vec(),
        model.class.kernel().value().to_vec()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[derive(MultiOutput)]
#[multi_output(element = f64)]
struct NoTrunk {
    #[head(loss = Mse::new())]
    a: Dense<f64>,
}

#[test]
fn gradient_strategies_need_a_trunk() {
    let mut model = NoTrunk {
        a: Dense::new(2, 1, &mut Rng::new(0)).unwrap(),
    };
    let x = Tensor::<f64>::zeros(&[4, 2]).unwrap();
    let err = polyhead::Trainer::<NoTrunk, f64>::new(Sgd::new(0.1).build())
        .weighting(PcGrad::new())
        .progress(Progress::Silent)
        .fit(
            &mut model,
            &x,
            &NoTrunkTargets::new(Tensor::zeros(&[4, 1]).unwrap()),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pcgrad weighting: needs shared parameters: a #[trunk], or #[layer(shared)] fields beside a forward of your own"
    );
}

/// A strategy written outside the crate, through the public trait: the
/// shared parameters move along the sum of the head gradients each scaled
/// to unit norm, the heads' own parameters as usual. Checked against the
/// same update computed by hand from the head gradients.
#[test]
fn a_strategy_of_ones_own_steers_the_shared_parameters() {
    use polyhead::weighting::{Combination, GradientSpace, Needs, Step};

    struct UnitSum;
    impl Weighting<f64> for UnitSum {
        fn name(&self) -> &str {
            "unit_sum"
        }
        fn needs(&self) -> Needs {
            Needs {
                head_gradients: Some(GradientSpace::SharedParameters),
                ..Needs::default()
            }
        }
        fn combine<'t>(
            &mut self,
            step: &Step<'_, 't, f64>,
        ) -> polyhead::Result<Combination<'t, f64>> {
            let rows = step.head_gradients.expect("asked for");
            let norms: Vec<f64> = rows
                .iter()
                .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
                .collect();
            let shared = (0..rows[0].len())
                .map(|j| rows.iter().zip(&norms).map(|(r, n)| r[j] / n).sum())
                .collect();
            Ok(Combination::Direction {
                shared,
                head_weights: step.loss_weights.to_vec(),
                shared_weights: Some(norms.iter().map(|n| 1.0 / n).collect()),
            })
        }
    }

    let (x, t) = data(32, 9);
    let lr = 0.1;
    let mut model = net(10);
    let before = net(10);
    // The head gradients by hand: each weighted loss's gradient on the
    // trunk's parameters (kernel, then bias), flattened.
    let tape = Tape::new();
    let outputs = before.forward_heads(tape.constant(x.clone())).unwrap();
    let losses = before.head_losses(&outputs, &t).unwrap();
    let weights = [1.0, 0.5];
    let trunk: Vec<&Parameter<f64>> = before
        .body
        .parameters()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let per_head: Vec<Vec<f64>> = losses
        .iter()
        .zip(weights)
        .map(|(l, w)| {
            let g = tape.backward(l.scale(w)).unwrap();
            trunk
                .iter()
                .flat_map(|p| g.param(p).unwrap().to_vec())
                .collect()
        })
        .collect();
    let norms: Vec<f64> = per_head
        .iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let mut trainer = polyhead::Trainer::<Net, f64>::new(Sgd::new(lr).build())
        .epochs(1)
        .batch_size(32)
        .shuffle(None)
        .weighting(UnitSum)
        .progress(Progress::Silent);
    let history = trainer.fit(&mut model, &x, &t).unwrap();
    let flat = |net: &Net| -> Vec<f64> {
        net.body
            .parameters()
            .into_iter()
            .flat_map(|(_, p)| p.value().to_vec())
            .collect()
    };
    let (moved, start) = (flat(&model), flat(&before));
    assert_eq!(moved.len(), per_head[0].len());
    for (j, (m, s)) in moved.iter().zip(&start).enumerate() {
        let g: f64 = per_head.iter().zip(&norms).map(|(r, n)| r[j] / n).sum();
        assert!(
            (m - (s - lr * g)).abs() < 1e-12,
            "trunk value {j}: {m} vs {}",
            s - lr * g
        );
    }
    assert!((history.get("weight_class").unwrap()[0] - 1.0 / norms[0]).abs() < 1e-9);
    assert_eq!(trainer.current_weighting().name(), "unit_sum");
}
