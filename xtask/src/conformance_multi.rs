//! The multi-output half of `cargo xtask conformance`: a variant file of
//! schema `polyhead-fixtures/multi_output_variant/v1` (with its setup file
//! beside it) is replayed on a `#[derive(MultiOutput)]` model: outputs,
//! per-head and total losses, every gradient, and the weights and logs
//! after each optimizer step.

use std::collections::BTreeMap;
use std::path::Path;

use polyhead::MultiOutput;
use polyhead::autograd::Tape;
use polyhead::layers::{Activation, Adam, Dense, Module, Optimizer, Sgd};
use polyhead::losses::{CrossEntropy, Loss, Mse, closure_loss};
use polyhead::prelude::LossWeights;
use polyhead::tensor::{Float, Tensor};
use serde_json::Value;

use crate::conformance::{CaseOutcome, array};

type BoxedLoss<T> = Box<dyn Loss<T, Target = Tensor<T>>>;

/// The fixture's architecture: `hidden` (the trunk) feeding `class` and
/// `bbox`, each loss chosen at run time from the file.
#[derive(MultiOutput)]
struct FixtureModel<T: Float> {
    #[trunk]
    hidden: Dense<T>,
    #[head(loss = self.class_loss, weight = 1.0)]
    class: Dense<T>,
    #[head(loss = self.bbox_loss, weight = 0.5)]
    bbox: Dense<T>,
    class_loss: BoxedLoss<T>,
    bbox_loss: BoxedLoss<T>,
}

fn activation(name: &str) -> Result<Activation, String> {
    Ok(match name {
        "relu" => Activation::Relu,
        "softmax" => Activation::Softmax,
        "linear" | "" => Activation::Linear,
        "sigmoid" => Activation::Sigmoid,
        "tanh" => Activation::Tanh,
        other => return Err(format!("unsupported activation {other:?}")),
    })
}

/// The loss a Keras compile name stands for, given the head's activation.
fn loss<T: Float>(name: &str, head_activation: &str) -> Result<BoxedLoss<T>, String> {
    Ok(match (name, head_activation) {
        ("categorical_crossentropy", "softmax") => Box::new(CrossEntropy::from_probabilities()),
        ("categorical_crossentropy", "linear") => Box::new(CrossEntropy::from_logits()),
        ("mse" | "mean_squared_error", _) => Box::new(Mse::new()),
        // FORMAT.md: mean_j c_j * h(e_j), c = [1, 1, 2, 2],
        // h(e) = 0.5 min(|e|, 0.5)^2 + 0.5 (|e| - min(|e|, 0.5)).
        ("bbox_huber_like", _) => {
            Box::new(closure_loss::<T, _>("bbox_huber_like", |pred, target| {
                let tape = pred.tape();
                let e = pred.sub(target)?.abs();
                let small = e.minimum(tape.constant(Tensor::scalar(T::from_f64(0.5))))?;
                let h = small
                    .mul(small)?
                    .scale(T::from_f64(0.5))
                    .add(e.sub(small)?.scale(T::from_f64(0.5)))?;
                let c = Tensor::from_vec([1.0, 1.0, 2.0, 2.0].map(T::from_f64).to_vec(), &[4])?;
                h.mul(tape.constant(c))?.mean_axis(-1, false)
            }))
        }
        (other, act) => return Err(format!("unsupported loss {other:?} on a {act} head")),
    })
}

/// FORMAT.md's tolerances: float32 arrays `|a-b| <= 2e-5|b| + 2e-6 max|b|`,
/// scalars relative 1e-5; float64 `|a-b| <= 1e-10|b| + 1e-12`.
pub(crate) struct Rule {
    pub(crate) f64: bool,
}

impl Rule {
    pub(crate) fn array<T: Float>(
        &self,
        what: &str,
        got: &Tensor<T>,
        want: &Value,
    ) -> Result<(), String> {
        let want: Tensor<f64> = array(want, what)?;
        if got.shape() != want.shape() {
            return Err(format!(
                "{what}: shape {:?}, expected {:?}",
                got.shape(),
                want.shape()
            ));
        }
        let w = want.to_vec();
        let scale = w.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let mut worst: Option<(usize, f64, f64, f64)> = None;
        for (i, (g, &b)) in got.to_vec().iter().zip(&w).enumerate() {
            let g = g.to_f64();
            let tol = if self.f64 {
                1e-10 * b.abs() + 1e-12
            } else {
                2e-5 * b.abs() + 2e-6 * scale
            };
            let excess = (g - b).abs() - tol;
            if (excess > 0.0 || excess.is_nan()) && worst.is_none_or(|(_, _, _, e)| excess > e) {
                worst = Some((i, g, b, excess));
            }
        }
        match worst {
            None => Ok(()),
            Some((i, g, b, _)) => Err(format!("{what}[{i}]: got {g:e}, Keras {b:e}")),
        }
    }

    fn scalar(&self, what: &str, got: f64, want: f64) -> Result<(), String> {
        let tol = if self.f64 {
            1e-10 * want.abs() + 1e-12
        } else {
            1e-5 * want.abs()
        };
        if (got - want).abs() <= tol {
            Ok(())
        } else {
            Err(format!("{what}: got {got:e}, Keras {want:e}"))
        }
    }
}

/// Runs one variant file (its setup file is looked up beside it).
pub fn run_variant_file(path: &Path, json: &Value) -> Result<Vec<CaseOutcome>, String> {
    let setup_name = json["setup"].as_str().ok_or("no `setup` file named")?;
    let setup_path = path.with_file_name(setup_name);
    let setup: Value = serde_json::from_str(
        &std::fs::read_to_string(&setup_path)
            .map_err(|e| format!("{}: {e}", setup_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", setup_path.display()))?;
    match json["dtype"].as_str() {
        Some("float32") => run::<f32>(json, &setup),
        Some("float64") => run::<f64>(json, &setup),
        other => Err(format!("unsupported dtype {other:?}")),
    }
}

fn run<T: Float>(variant: &Value, setup: &Value) -> Result<Vec<CaseOutcome>, String> {
    let variant_name = variant["variant"].as_str().unwrap_or("?").to_string();
    let rule = Rule {
        f64: T::NAME == "f64",
    };
    let layers: BTreeMap<String, &Value> = setup["model"]["layers"]
        .as_array()
        .ok_or("setup: no model.layers")?
        .iter()
        .map(|l| (l["name"].as_str().unwrap_or("").to_string(), l))
        .collect();
    let shape_ok = layers.len() == 3
        && layers.get("hidden").is_some_and(|l| l["input"] == "input")
        && ["class", "bbox"]
            .iter()
            .all(|h| layers.get(*h).is_some_and(|l| l["input"] == "hidden"));
    if !shape_ok {
        return Err(
            "unsupported architecture: expected a `hidden` trunk feeding `class` and `bbox` heads"
                .into(),
        );
    }
    let weights0 = &setup["initial_weights"];
    let dense = |name: &str| -> Result<Dense<T>, String> {
        let act = activation(layers[name]["activation"].as_str().unwrap_or(""))?;
        Dense::from_tensors(
            array(&weights0[format!("{name}.kernel")], name)?,
            Some(array(&weights0[format!("{name}.bias")], name)?),
            act,
        )
        .map_err(|e| e.to_string())
    };
    let act = |name: &str| {
        layers[name]["activation"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let compile = &variant["compile"];
    let mut model = FixtureModel::<T> {
        hidden: dense("hidden")?,
        class: dense("class")?,
        bbox: dense("bbox")?,
        class_loss: loss(
            compile["loss"]["class"].as_str().unwrap_or(""),
            &act("class"),
        )?,
        bbox_loss: loss(compile["loss"]["bbox"].as_str().unwrap_or(""), &act("bbox"))?,
    };
    let mut loss_weights = FixtureModelLossWeights::default();
    for (head, w) in compile["loss_weights"]
        .as_object()
        .ok_or("no loss_weights")?
    {
        loss_weights
            .set(head, w.as_f64().ok_or("bad loss weight")?)
            .map_err(|e| e.to_string())?;
    }
    let opt_config = &compile["optimizer"]["config"];
    let lr = opt_config["learning_rate"]
        .as_f64()
        .ok_or("no learning rate")?;
    let mut optimizer: Optimizer<T> = match compile["optimizer"]["class"].as_str() {
        Some("SGD") => Sgd::new(lr)
            .momentum(opt_config["momentum"].as_f64().unwrap_or(0.0))
            .build(),
        Some("Adam") => Adam::new(lr)
            .betas(
                opt_config["beta_1"].as_f64().unwrap_or(0.9),
                opt_config["beta_2"].as_f64().unwrap_or(0.999),
            )
            .epsilon(opt_config["epsilon"].as_f64().unwrap_or(1e-7))
            .build(),
        other => return Err(format!("unsupported optimizer {other:?}")),
    };
    let x: Tensor<T> = array(&setup["x"], "x")?;
    let targets = FixtureModelTargets::new(
        array(&setup["y"]["class"], "y.class")?,
        array(&setup["y"]["bbox"], "y.bbox")?,
    );

    let mut outcomes = Vec::new();
    let mut check = |id: &str, result: Result<(), String>| {
        outcomes.push(CaseOutcome {
            id: format!("{variant_name}/{id}"),
            failure: result.err(),
        })
    };

    // The forward pass, losses and gradients at the initial weights.
    {
        let tape = Tape::new();
        let outputs = model
            .forward_heads(tape.constant(x.clone()))
            .map_err(|e| e.to_string())?;
        let total = model
            .weighted_loss(&outputs, &targets, &loss_weights)
            .map_err(|e| e.to_string())?;
        check("outputs", {
            rule.array(
                "outputs.class",
                &outputs.class.value(),
                &variant["outputs"]["class"],
            )
            .and(rule.array(
                "outputs.bbox",
                &outputs.bbox.value(),
                &variant["outputs"]["bbox"],
            ))
        });
        check("head_losses", {
            let mut r = Ok(());
            for (name, v) in &total.parts {
                let want = variant["head_losses"][*name].as_f64().unwrap_or(f64::NAN);
                r = r.and(rule.scalar(
                    &format!("head_losses.{name}"),
                    v.value().item().map_err(|e| e.to_string())?.to_f64(),
                    want,
                ));
            }
            r
        });
        check(
            "total_loss",
            rule.scalar(
                "total_loss",
                total
                    .total
                    .value()
                    .item()
                    .map_err(|e| e.to_string())?
                    .to_f64(),
                variant["total_loss"].as_f64().unwrap_or(f64::NAN),
            ),
        );
        if !variant["grads"].is_null() {
            let grads = tape.backward(total.total).map_err(|e| e.to_string())?;
            let mut r = Ok(());
            for (name, p) in model.parameters() {
                let g = grads
                    .by_id(p.id())
                    .cloned()
                    .unwrap_or_else(|| Tensor::zeros(p.value().shape()).expect("shape"));
                r = r.and(rule.array(&format!("grads.{name}"), &g, &variant["grads"][&name]));
            }
            check("grads", r);
        }
    }

    // Each recorded train_on_batch: logs from the forward before the update,
    // then the weights after it.
    for step in variant["steps"].as_array().ok_or("no steps")? {
        let k = step["step"].as_u64().unwrap_or(0);
        let tape = Tape::new();
        let outputs = model
            .forward_heads(tape.constant(x.clone()))
            .map_err(|e| e.to_string())?;
        let total = model
            .weighted_loss(&outputs, &targets, &loss_weights)
            .map_err(|e| e.to_string())?;
        let logs = total.logs().map_err(|e| e.to_string())?;
        let mut r = Ok(());
        for (name, value) in &logs {
            if let Some(want) = step["logs"][name].as_f64() {
                r = r.and(rule.scalar(&format!("step {k} logs.{name}"), *value, want));
            }
        }
        check(&format!("step{k}_logs"), r);
        let grads = tape.backward(total.total).map_err(|e| e.to_string())?;
        optimizer
            .step(&mut model, &grads)
            .map_err(|e| e.to_string())?;
        let mut r = Ok(());
        for (name, p) in model.parameters() {
            r = r.and(rule.array(
                &format!("step {k} weights.{name}"),
                p.value(),
                &step["weights"][&name],
            ));
        }
        check(&format!("step{k}_weights"), r);
    }
    Ok(outcomes)
}
