//! Optimizer updates against hand-computed values and against Keras' own
//! steps recorded in the repository's `fixtures/` (SGD and Adam on the
//! multi-output model, fed the recorded gradients).

use std::collections::HashMap;

use polyhead_autograd::Parameter;
use polyhead_layers::*;
use polyhead_tensor::{Float, Tensor};
use serde_json::Value;

/// A model of named parameters only (the optimizer needs no forward).
struct Named<T: Float>(Vec<(String, Parameter<T>)>);

impl<T: Float> Module<T> for Named<T> {
    fn forward<'t>(
        &self,
        x: polyhead_autograd::Var<'t, T>,
    ) -> Result<polyhead_autograd::Var<'t, T>> {
        Ok(x)
    }
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        for (n, p) in &self.0 {
            f(format!("{prefix}{n}"), p);
        }
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        for (n, p) in &mut self.0 {
            f(format!("{prefix}{n}"), p);
        }
    }
}

fn one(v: f64) -> Named<f64> {
    Named(vec![("w".to_string(), Parameter::new(Tensor::scalar(v)))])
}

fn value(m: &Named<f64>) -> f64 {
    m.0[0].1.value().item().unwrap()
}

/// Steps with a constant gradient `g` and returns the value after each.
fn run(opt: &mut Optimizer<f64>, w0: f64, grads: &[f64]) -> Vec<f64> {
    let mut m = one(w0);
    grads
        .iter()
        .map(|&g| {
            opt.step_with(&mut m, |_, _| Some(Tensor::scalar(g)))
                .unwrap();
            value(&m)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-15 * b.abs().max(1.0)
}

#[test]
fn sgd_plain_momentum_nesterov_and_weight_decay_match_hand_computation() {
    assert!(close(run(&mut Sgd::new(0.1).build(), 1.0, &[2.0])[0], 0.8));
    // momentum 0.9: b1 = g1 = 2, w = 1 - 0.2 = 0.8; b2 = 0.9*2 + 1 = 2.8, w = 0.8 - 0.28 = 0.52.
    let w = run(&mut Sgd::new(0.1).momentum(0.9).build(), 1.0, &[2.0, 1.0]);
    assert!(close(w[0], 0.8) && close(w[1], 0.52), "{w:?}");
    // Nesterov: step 1 d = 2 + 0.9*2 = 3.8 -> w = 0.62; b2 = 2.8, d = 1 + 0.9*2.8 = 3.52 -> w = 0.268.
    let w = run(
        &mut Sgd::new(0.1).momentum(0.9).nesterov(true).build(),
        1.0,
        &[2.0, 1.0],
    );
    assert!(close(w[0], 0.62) && close(w[1], 0.268), "{w:?}");
    // weight decay 0.5: d = 2 + 0.5*1 = 2.5 -> w = 0.75.
    assert!(close(
        run(&mut Sgd::new(0.1).weight_decay(0.5).build(), 1.0, &[2.0])[0],
        0.75
    ));
}

#[test]
fn adam_follows_keras_and_pytorch_formulas() {
    let (lr, b1, b2, g1, g2) = (0.01_f64, 0.9_f64, 0.999_f64, 0.5_f64, -0.25_f64);
    // Keras: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(v) + 1e-7).
    let (mut m, mut v, mut w) = (0.0, 0.0, 1.0);
    let mut keras = vec![];
    for (t, g) in [(1, g1), (2, g2)] {
        m += (g - m) * (1.0 - b1);
        v += (g * g - v) * (1.0 - b2);
        w -= lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t)) * m / (v.sqrt() + 1e-7);
        keras.push(w);
    }
    let got = run(&mut Adam::new(lr).build(), 1.0, &[g1, g2]);
    assert!(
        close(got[0], keras[0]) && close(got[1], keras[1]),
        "{got:?} vs {keras:?}"
    );
    // PyTorch: w -= lr m_hat / (sqrt(v_hat) + 1e-8).
    let (mut m, mut v, mut w) = (0.0, 0.0, 1.0);
    let mut torch = vec![];
    for (t, g) in [(1, g1), (2, g2)] {
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        w -= lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + 1e-8);
        torch.push(w);
    }
    let got = run(
        &mut Adam::new(lr)
            .convention(OptimizerConvention::PyTorch)
            .build(),
        1.0,
        &[g1, g2],
    );
    assert!(
        close(got[0], torch[0]) && close(got[1], torch[1]),
        "{got:?} vs {torch:?}"
    );
    // AdamW decays the weight first: w = 1 - 0.01*0.1*1, then the Adam step.
    let w0 = 1.0 - lr * 0.1;
    let step1 = w0
        - lr * (1.0 - b2).sqrt() / (1.0 - b1) * (g1 * (1.0 - b1))
            / ((g1 * g1 * (1.0 - b2)).sqrt() + 1e-7);
    assert!(close(
        run(&mut Adam::adamw(lr, 0.1).build(), 1.0, &[g1])[0],
        step1
    ));
}

#[test]
fn rmsprop_follows_keras_and_pytorch_formulas() {
    let g = 0.5_f64;
    let v = 0.1 * g * g; // Keras rho 0.9
    assert!(close(
        run(&mut RmsProp::new(0.01).build(), 1.0, &[g])[0],
        1.0 - 0.01 * g / (v + 1e-7).sqrt()
    ));
    let v = 0.01 * g * g; // PyTorch alpha 0.99
    let got = run(
        &mut RmsProp::new(0.01)
            .convention(OptimizerConvention::PyTorch)
            .build(),
        1.0,
        &[g],
    )[0];
    assert!(close(got, 1.0 - 0.01 * g / (v.sqrt() + 1e-8)));
}

#[test]
fn clipping_and_schedules() {
    // Global norm: gradients (3, 4) have norm 5; clipped to 1 they become (0.6, 0.8).
    let mut m = Named(vec![
        ("a".to_string(), Parameter::new(Tensor::scalar(0.0))),
        ("b".to_string(), Parameter::new(Tensor::scalar(0.0))),
    ]);
    let mut opt = Sgd::new(1.0).build().clip_global_norm(1.0);
    opt.step_with(&mut m, |n, _| {
        Some(Tensor::scalar(if n == "a" { 3.0 } else { 4.0 }))
    })
    .unwrap();
    let got: Vec<f64> = m.0.iter().map(|(_, p)| p.value().item().unwrap()).collect();
    assert!(close(got[0], -0.6) && close(got[1], -0.8), "{got:?}");
    // By value.
    assert!(close(
        run(&mut Sgd::new(1.0).build().clip_value(0.5), 0.0, &[3.0])[0],
        -0.5
    ));
    // A step schedule halves the rate after two steps.
    let mut opt = Sgd::new(1.0).build().schedule(Schedule::Step {
        initial: 1.0,
        step_size: 2,
        gamma: 0.5,
    });
    assert_eq!(run(&mut opt, 0.0, &[1.0, 1.0, 1.0]), vec![-1.0, -2.0, -2.5]);
    let e = Schedule::Exponential {
        initial: 1.0,
        decay_rate: 0.5,
        decay_steps: 2,
        staircase: false,
    };
    assert!(close(e.at(1), 0.5f64.sqrt()));
}

#[test]
fn a_non_finite_gradient_is_refused_and_nothing_changes() {
    let mut m = Named(vec![
        ("ok".to_string(), Parameter::new(Tensor::scalar(1.0))),
        (
            "bad".to_string(),
            Parameter::new(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap()),
        ),
    ]);
    let mut opt = Sgd::new(0.1).build();
    let err = opt
        .step_with(&mut m, |n, _| {
            Some(if n == "ok" {
                Tensor::scalar(1.0)
            } else {
                Tensor::from_vec(vec![0.0, f64::NAN], &[2]).unwrap()
            })
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "optimizer: gradient of bad is NaN at flat index 1 (shape [2]); the step was not applied"
    );
    assert_eq!(m.0[0].1.value().item().unwrap(), 1.0);
    assert_eq!(opt.steps(), 0);
    let err = opt
        .step_with(&mut m, |_, _| Some(Tensor::zeros(&[3]).unwrap()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "optimizer: gradient of ok has shape [3], the parameter []"
    );
    assert!(
        Sgd::new(0.1)
            .momentum(1.5)
            .build::<f64>()
            .step_with(&mut m, |_, _| None)
            .is_err()
    );
}

#[test]
fn a_refused_update_keeps_the_momentum_state_of_the_last_good_step() {
    // Step 2's momentum buffer overflows (0.9e308 + 1e308), so the update
    // would make w infinite and is refused; step 3 must then continue from
    // step 1's state exactly, as if step 2 had never been tried.
    let sgd = || Sgd::new(0.1).momentum(0.9).build::<f64>();
    let (mut tried, mut clean) = (sgd(), sgd());
    let (mut m_tried, mut m_clean) = (one(1.0), one(1.0));
    let step = |opt: &mut Optimizer<f64>, m: &mut Named<f64>, g: f64| {
        opt.step_with(m, |_, _| Some(Tensor::scalar(g)))
    };
    step(&mut tried, &mut m_tried, 1e308).unwrap();
    step(&mut clean, &mut m_clean, 1e308).unwrap();
    let err = step(&mut tried, &mut m_tried, 1e308).unwrap_err();
    assert!(
        err.to_string()
            .contains("would make w non-finite (-inf at flat index 0)"),
        "{err}"
    );
    for g in [1.0, -2.0, 0.5] {
        step(&mut tried, &mut m_tried, g).unwrap();
        step(&mut clean, &mut m_clean, g).unwrap();
        assert_eq!(value(&m_tried), value(&m_clean));
    }
    assert_eq!(tried.state(), clean.state());
}

#[test]
fn state_for_a_parameter_whose_size_changed_is_an_error_not_a_panic() {
    let mut opt = Adam::new(0.1).build::<f64>();
    let mut small = Named(vec![(
        "k".to_string(),
        Parameter::new(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap()),
    )]);
    opt.step_with(&mut small, |_, p| {
        Some(Tensor::ones(p.value().shape()).unwrap())
    })
    .unwrap();
    let mut big = Named(vec![(
        "k".to_string(),
        Parameter::new(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap()),
    )]);
    let err = opt
        .step_with(&mut big, |_, p| {
            Some(Tensor::ones(p.value().shape()).unwrap())
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "optimizer: its state for k holds 2 values, but the parameter now has 3 (shape [3]); build a new optimizer for a changed model. The step was not applied"
    );
    assert_eq!(big.0[0].1.value().to_vec(), vec![1.0, 2.0, 3.0]);
    assert_eq!(opt.steps(), 1);
}

#[test]
fn a_transposed_gradient_updates_like_its_row_major_copy() {
    let model = || {
        Named(vec![(
            "k".to_string(),
            Parameter::new(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap()),
        )])
    };
    // Stored [3, 2], viewed as its [2, 3] transpose.
    let stored = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.25, -3.0, 1.5], &[3, 2]).unwrap();
    let transposed = stored.transpose(0, 1).unwrap();
    let copy = Tensor::from_vec(transposed.to_vec(), &[2, 3]).unwrap();
    let (mut a, mut b) = (model(), model());
    let mut opt_a = Adam::new(0.1).build::<f64>();
    let mut opt_b = Adam::new(0.1).build::<f64>();
    for _ in 0..3 {
        opt_a
            .step_with(&mut a, |_, _| Some(transposed.clone()))
            .unwrap();
        opt_b.step_with(&mut b, |_, _| Some(copy.clone())).unwrap();
    }
    assert_eq!(a.0[0].1.value().to_vec(), b.0[0].1.value().to_vec());
    // And the layout was honoured: the gradient is [[0.5, 2, -3], [-1, 0.25,
    // 1.5]], and each weight moves against its gradient's sign.
    let moved: Vec<f64> = a.0[0]
        .1
        .value()
        .to_vec()
        .iter()
        .zip(1..)
        .map(|(w, i)| w - i as f64)
        .collect();
    let signs: Vec<f64> = moved.iter().map(|d| d.signum()).collect();
    assert_eq!(signs, vec![-1.0, -1.0, 1.0, 1.0, -1.0, -1.0]);
}

// ---- Keras fixtures ----

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn array<T: Float>(v: &Value) -> Tensor<T> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| T::from_f64(x.as_f64().unwrap()))
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

/// The six named weights of the fixture model at their initial values.
fn initial_model<T: Float>() -> Named<T> {
    let setup = fixture("multi_output_setup.json");
    let names: Vec<String> = setup["model"]["weight_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    Named(
        names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    Parameter::new(array(&setup["initial_weights"][n])),
                )
            })
            .collect(),
    )
}

fn grads_of<T: Float>(variant: &Value) -> HashMap<String, Tensor<T>> {
    variant["grads"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, g)| (n.clone(), array(g)))
        .collect()
}

/// FORMAT.md's float32 rule per array: |a - b| <= 2e-5 |b| + 2e-6 max|b|;
/// the float64 twin: |a - b| <= 1e-10 |b| + 1e-12.
fn assert_weights<T: Float>(model: &Named<T>, expected: &Value, f64_rule: bool) {
    for (name, p) in &model.0 {
        let want: Tensor<f64> = array(&expected[name]);
        let got = p.value().to_vec();
        let scale = want.to_vec().iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want.to_vec()).enumerate() {
            let tol = if f64_rule {
                1e-10 * w.abs() + 1e-12
            } else {
                2e-5 * w.abs() + 2e-6 * scale
            };
            assert!(
                (g.to_f64() - w).abs() <= tol,
                "{name}[{i}]: got {g}, Keras {w}"
            );
        }
    }
}

#[test]
fn sgd_step_matches_keras_f32_and_f64() {
    for (file, f64_rule) in [
        ("multi_output_sgd_f32.json", false),
        ("multi_output_sgd_f64.json", true),
    ] {
        let variant = fixture(file);
        let lr = variant["compile"]["optimizer"]["config"]["learning_rate"]
            .as_f64()
            .unwrap();
        if f64_rule {
            let mut model = initial_model::<f64>();
            let grads = grads_of::<f64>(&variant);
            Sgd::new(lr)
                .build()
                .step_with(&mut model, |n, _| grads.get(n).cloned())
                .unwrap();
            assert_weights(&model, &variant["steps"][0]["weights"], true);
        } else {
            let mut model = initial_model::<f32>();
            let grads = grads_of::<f32>(&variant);
            Sgd::new(lr)
                .build()
                .step_with(&mut model, |n, _| grads.get(n).cloned())
                .unwrap();
            assert_weights(&model, &variant["steps"][0]["weights"], false);
        }
    }
}

#[test]
fn adam_first_step_matches_keras() {
    let adam = fixture("multi_output_adam3_f32.json");
    let config = &adam["compile"]["optimizer"]["config"];
    let (lr, b1, b2, eps) = (
        config["learning_rate"].as_f64().unwrap(),
        config["beta_1"].as_f64().unwrap(),
        config["beta_2"].as_f64().unwrap(),
        config["epsilon"].as_f64().unwrap(),
    );
    // The step-1 gradient equals the SGD file's, bit for bit (FORMAT.md).
    let grads = grads_of::<f32>(&fixture("multi_output_sgd_f32.json"));
    let mut model = initial_model::<f32>();
    Adam::new(lr)
        .betas(b1, b2)
        .epsilon(eps)
        .build()
        .step_with(&mut model, |n, _| grads.get(n).cloned())
        .unwrap();
    assert_weights(&model, &adam["steps"][0]["weights"], false);
}

/// A step writes the new values into the buffer of a value replaced by an
/// earlier step once nothing holds it any more (through the tensor pool),
/// in one pass that starts every element from its current value. Values still held elsewhere (a
/// tensor the user kept, a live tape) are never written, and the updates
/// are the same as from fresh buffers.
#[test]
fn steps_reuse_retired_value_buffers_but_never_held_ones() {
    let n = 1000;
    let start: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
    let mut m = Named(vec![
        (
            "a".to_string(),
            Parameter::new(Tensor::from_vec(start.clone(), &[n]).unwrap()),
        ),
        (
            "b".to_string(),
            Parameter::new(Tensor::from_vec(start.clone(), &[n]).unwrap()),
        ),
    ]);
    let g: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let grad = Tensor::from_vec(g.clone(), &[n]).unwrap();
    let mut opt = Sgd::new(0.1).momentum(0.9).build::<f32>();
    let address = |m: &Named<f32>, k: usize| m.0[k].1.value().view().as_ptr() as usize;
    let kept = m.0[0].1.value().clone(); // the user holds parameter a's first value
    let mut seen = Vec::new();
    for _ in 0..4 {
        opt.step_with(&mut m, |_, _| Some(grad.clone())).unwrap();
        seen.push((address(&m, 0), address(&m, 1)));
    }
    // The kept tensor was never written to.
    assert_eq!(kept.to_vec(), start);
    // By hand: SGD with momentum 0.9, b1 = g, b_t = 0.9 b + g, w -= 0.1 b.
    let mut want = start.clone();
    let mut b = vec![0.0_f32; n];
    for t in 1..=4 {
        for i in 0..n {
            let d = g[i] + 0.0 * want[i];
            b[i] = if t == 1 { d } else { 0.9 * b[i] + d };
            want[i] -= 0.1 * b[i];
        }
    }
    assert_eq!(m.0[0].1.value().to_vec(), want);
    assert_eq!(m.0[1].1.value().to_vec(), want);
    // From the third step on, buffers retired two steps earlier come back:
    // only a handful of distinct addresses, never the kept tensor's.
    let kept_address = kept.view().as_ptr() as usize;
    assert!(
        seen.iter()
            .all(|&(a, b)| a != kept_address && b != kept_address && a != b)
    );
    let distinct: std::collections::BTreeSet<usize> =
        seen.iter().flat_map(|&(a, b)| [a, b]).collect();
    assert!(
        distinct.len() <= 5,
        "{} buffers for 8 updates",
        distinct.len()
    );
}

/// A large parameter is updated in pieces by the threads of an awake pool.
/// Each element's update depends only on that element, so three steps of
/// SGD with momentum, Adam and RMSprop must give the bits of one thread;
/// the gradient check and the check of the new values scan in pieces too,
/// and must still name the first bad flat index, wherever it lies.
#[test]
fn large_updates_split_over_an_awake_pool_match_one_thread() {
    use polyhead_tensor::parallel::with_awake_pool;
    let n = 100_000;
    let start: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 0.01).collect();
    let grad: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
    let model = |values: Vec<f32>| {
        Named(vec![(
            "w".to_string(),
            Parameter::new(Tensor::from_vec(values, &[n]).unwrap()),
        )])
    };
    fn on_pool<R: Send>(threads: usize, awake: bool, f: impl Fn() -> R + Sync) -> R {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| if awake { with_awake_pool(&f) } else { f() })
    }
    let rules: [fn() -> Optimizer<f32>; 3] = [
        || Sgd::new(0.1).momentum(0.9).build(),
        || Adam::new(0.01).build(),
        || RmsProp::new(0.01).build(),
    ];
    for (r, rule) in rules.iter().enumerate() {
        let three_steps = || {
            let mut m = model(start.clone());
            let mut opt = rule();
            let g = Tensor::from_vec(grad.clone(), &[n]).unwrap();
            for _ in 0..3 {
                opt.step_with(&mut m, |_, _| Some(g.clone())).unwrap();
            }
            m.0[0].1.value().to_vec()
        };
        let one: Vec<u32> = on_pool(1, false, three_steps)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let split: Vec<u32> = on_pool(2, true, three_steps)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(one, split, "rule {r}");
        assert_ne!(one, start.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    for bad in [7, n / 2 + 3, n - 5] {
        let message = |nan_gradient: bool| {
            let run = || {
                let mut m = model(start.clone());
                let mut g = grad.clone();
                // A NaN gradient, or one whose update overflows to -inf.
                g[bad] = if nan_gradient { f32::NAN } else { f32::MAX };
                let g = Tensor::from_vec(g, &[n]).unwrap();
                let err = Sgd::new(10.0)
                    .build()
                    .step_with(&mut m, |_, _| Some(g.clone()))
                    .unwrap_err();
                assert_eq!(m.0[0].1.value().to_vec(), start, "a refused step changed w");
                err.to_string()
            };
            (on_pool(1, false, run), on_pool(2, true, run))
        };
        let (one, split) = message(true);
        assert_eq!(one, split);
        assert_eq!(
            one,
            format!(
                "optimizer: gradient of w is NaN at flat index {bad} (shape [{n}]); the step was not applied"
            )
        );
        let (one, split) = message(false);
        assert_eq!(one, split);
        assert!(one.contains(&format!("-inf at flat index {bad})")), "{one}");
    }
}
