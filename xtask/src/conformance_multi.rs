//! The multi-output half of `cargo xtask conformance`: a variant file of
//! schema `polyhead-fixtures/multi_output_variant/v1` (with its setup file
//! beside it) is replayed on a `#[derive(MultiOutput)]` model: outputs,
//! per-head and total losses, every gradient, and the weights and logs
//! after each optimizer step. One-input files build the trunk from the
//! setup's layer list; the two-input and sequence files run on models
//! with their own forward (`TwoInputFixture`: two inputs, heads at two
//! depths; `SequenceFixture`: a masked embedding and two LSTMs).

use std::collections::BTreeMap;
use std::path::Path;

use polyhead::MultiOutput;
use polyhead::autograd::Tape;
use polyhead::layers::{
    Activation, Adam, BatchNormalization, Conv2D, Dense, Embedding, GlobalPooling, Lstm, Module,
    Optimizer, Padding, Pooling2D, Sequential, Sgd,
};
use polyhead::losses::{CrossEntropy, Labels, Loss, Mse, SparseCrossEntropy, closure_loss};
use polyhead::prelude::LossWeights;
use polyhead::tensor::{Float, Tensor};
use serde_json::Value;

use crate::conformance::{CaseOutcome, array};

type BoxedLoss<T> = Box<dyn Loss<T, Target = Tensor<T>>>;

/// The fixture's architecture: a chain of layers from the input (the
/// trunk, built from the setup file's layer list) feeding the `class` and
/// `bbox` heads, each loss chosen at run time from the file.
#[derive(MultiOutput)]
struct FixtureModel<T: Float> {
    #[trunk]
    body: Sequential<T>,
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
    f64: bool,
    f32: F32Rule,
}

impl Rule {
    /// FORMAT's rules for float64 or float32 files.
    pub(crate) fn standard(f64: bool) -> Self {
        Rule {
            f64,
            f32: F32Rule {
                rel: 2e-5,
                scale: 2e-6,
            },
        }
    }
}

/// A float32 array rule `|a - b| <= rel |b| + scale max|b|`.
#[derive(Clone, Copy)]
struct F32Rule {
    rel: f64,
    scale: f64,
}

/// The variant's own float32 rule (`tolerance.float32_rule`, e.g. "per
/// array |a - b| <= 1e-4 * |b| + 2e-5 * max|b| ..."), else FORMAT's.
fn f32_rule(variant: &Value) -> Result<F32Rule, String> {
    let Some(text) = variant["tolerance"]["float32_rule"].as_str() else {
        return Ok(F32Rule {
            rel: 2e-5,
            scale: 2e-6,
        });
    };
    let parse = || -> Option<F32Rule> {
        let rhs = text.split("<=").nth(1)?;
        let mut numbers = rhs
            .split('*')
            .filter_map(|part| part.split_whitespace().last()?.parse::<f64>().ok());
        Some(F32Rule {
            rel: numbers.next()?,
            scale: numbers.next()?,
        })
    };
    parse().ok_or(format!("cannot read the float32 rule {text:?}"))
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
                self.f32.rel * b.abs() + self.f32.scale * scale
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
    if setup["model"]["inputs"].is_array() {
        return run_two_inputs::<T>(variant, setup);
    }
    if setup["model"]["layers"][0]["type"] == "Embedding" {
        return run_sequence::<T>(variant, setup);
    }
    let rule = Rule {
        f64: T::NAME == "f64",
        f32: f32_rule(variant)?,
    };
    let layer_list = setup["model"]["layers"]
        .as_array()
        .ok_or("setup: no model.layers")?;
    let layers: BTreeMap<String, &Value> = layer_list
        .iter()
        .map(|l| (l["name"].as_str().unwrap_or("").to_string(), l))
        .collect();
    // The trunk: the chain of layers from the input to the heads' input.
    let heads_input = ["class", "bbox"]
        .iter()
        .map(|h| layers.get(*h).map(|l| l["input"].as_str().unwrap_or("")))
        .collect::<Option<Vec<_>>>()
        .ok_or("unsupported architecture: expected heads `class` and `bbox`")?;
    if heads_input[0] != heads_input[1] || layers.len() < 3 {
        return Err("unsupported architecture: both heads must read one trunk".into());
    }
    let mut chain: Vec<&Value> = Vec::new();
    let mut at = heads_input[0].to_string();
    while at != "input" {
        let l = layers
            .get(&at)
            .ok_or(format!("unsupported architecture: no layer {at:?}"))?;
        chain.push(l);
        at = l["input"].as_str().unwrap_or("").to_string();
    }
    chain.reverse();
    if chain.len() + 2 != layers.len() {
        return Err("unsupported architecture: every layer must be in the trunk or a head".into());
    }
    let weights0 = &setup["initial_weights"];
    let weight = |layer: &str, w: &str| -> Result<Tensor<T>, String> {
        array(&weights0[format!("{layer}.{w}")], &format!("{layer}.{w}"))
    };
    let dense = |name: &str| -> Result<Dense<T>, String> {
        let l = layers[name];
        let act = l["activation"]
            .as_str()
            .or(l["config"]["activation"].as_str())
            .unwrap_or("linear");
        Dense::from_tensors(
            weight(name, "kernel")?,
            Some(weight(name, "bias")?),
            activation(act)?,
        )
        .map_err(|e| e.to_string())
    };
    // Keras' weight names and polyhead's, both ways.
    let mut names: Vec<(String, String)> = Vec::new();
    let mut body = Sequential::<T>::new();
    for (i, l) in chain.iter().enumerate() {
        let name = l["name"].as_str().unwrap_or("");
        let config = &l["config"];
        let kind = l["type"].as_str().unwrap_or("Dense");
        body = match kind {
            "Dense" => body.push(dense(name)?),
            "Conv2D" => {
                let kernel = weight(name, "kernel")?;
                let k = kernel.shape().to_vec();
                let conv = Conv2D::<T>::builder(k[2], k[3], [k[0], k[1]])
                    .padding(match config["padding"].as_str().unwrap_or("valid") {
                        "same" => Padding::Same,
                        _ => Padding::Valid,
                    })
                    .activation(activation(
                        config["activation"].as_str().unwrap_or("linear"),
                    )?)
                    .build(&mut polyhead::tensor::Rng::new(0))
                    .map_err(|e| e.to_string())?;
                body.push(conv)
            }
            "MaxPooling2D" => {
                let p = config["pool_size"].as_u64().unwrap_or(2) as usize;
                body.push(Pooling2D::max([p, p]))
            }
            "GlobalAveragePooling2D" => body.push(GlobalPooling::average_2d()),
            "BatchNormalization" => {
                let bn = BatchNormalization::<T>::new(weight(name, "gamma")?.len())
                    .map_err(|e| e.to_string())?;
                body.push(bn)
            }
            other => return Err(format!("unsupported layer {other:?} in the trunk")),
        };
        for w in l["weights"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_else(|| vec!["kernel".into(), "bias".into()])
        {
            names.push((format!("{name}.{w}"), format!("body.{i}.{w}")));
        }
    }
    for head in ["class", "bbox"] {
        for w in ["kernel", "bias"] {
            names.push((format!("{head}.{w}"), format!("{head}.{w}")));
        }
    }
    let act = |name: &str| {
        let l = layers[name];
        l["activation"]
            .as_str()
            .or(l["config"]["activation"].as_str())
            .unwrap_or("linear")
            .to_string()
    };
    let compile = &variant["compile"];
    let mut model = FixtureModel::<T> {
        body,
        class: dense("class")?,
        bbox: dense("bbox")?,
        class_loss: loss(
            compile["loss"]["class"].as_str().unwrap_or(""),
            &act("class"),
        )?,
        bbox_loss: loss(compile["loss"]["bbox"].as_str().unwrap_or(""), &act("bbox"))?,
    };
    // Every weight and buffer from the setup file, by its Keras name.
    let keras_name = |ours: &str| -> String {
        names
            .iter()
            .find(|(_, o)| o == ours)
            .map_or_else(|| ours.to_string(), |(k, _)| k.clone())
    };
    for (name, p) in model.parameters_mut() {
        let k = keras_name(&name);
        p.set_value(array(&weights0[&k], &k)?)
            .map_err(|e| format!("{k}: {e}"))?;
    }
    for (name, b) in model.buffers() {
        let k = keras_name(&name);
        b.set_value(array(&weights0[&k], &k)?)
            .map_err(|e| format!("{k}: {e}"))?;
    }
    let loss_weights = loss_weights_of::<FixtureModelLossWeights>(compile)?;
    let mut optimizer = optimizer_of::<T>(compile)?;
    let x: Tensor<T> = array(&setup["x"], "x")?;
    let targets = FixtureModelTargets::new(
        array(&setup["y"]["class"], "y.class")?,
        array(&setup["y"]["bbox"], "y.bbox")?,
    );
    replay(
        &mut Replay {
            variant,
            weights0,
            rule: &rule,
            keras_name: &keras_name,
        },
        &mut model,
        &x,
        &targets,
        &loss_weights,
        &mut optimizer,
    )
}

/// The compile's loss weights, by head name.
fn loss_weights_of<W: LossWeights + Default>(compile: &Value) -> Result<W, String> {
    let mut weights = W::default();
    for (head, w) in compile["loss_weights"]
        .as_object()
        .ok_or("no loss_weights")?
    {
        weights
            .set(head, w.as_f64().ok_or("bad loss weight")?)
            .map_err(|e| e.to_string())?;
    }
    Ok(weights)
}

/// The compile's optimizer (Keras' SGD or Adam and their settings).
fn optimizer_of<T: Float>(compile: &Value) -> Result<Optimizer<T>, String> {
    let opt_config = &compile["optimizer"]["config"];
    let lr = opt_config["learning_rate"]
        .as_f64()
        .ok_or("no learning rate")?;
    Ok(match compile["optimizer"]["class"].as_str() {
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
    })
}

/// The two-input fixture's model: `image` -> conv -> gap (the image
/// features), `meta` -> meta_dense, both concatenated -> joint; `class` and
/// `bbox` on joint, `aux` on the image features. Its forward is its own
/// (heads at two depths, two inputs); the losses come from the file.
#[derive(MultiOutput)]
#[multi_output(inputs(image, meta), forward = Self::graph)]
struct TwoInputFixture<T: Float> {
    #[layer]
    conv: Conv2D<T>,
    #[layer]
    gap: GlobalPooling,
    #[layer]
    meta_dense: Dense<T>,
    #[layer]
    joint: Dense<T>,
    #[head(loss = self.losses[0], weight = 1.0)]
    class: Dense<T>,
    #[head(loss = self.losses[1], weight = 0.5)]
    bbox: Dense<T>,
    #[head(loss = self.losses[2], weight = 0.2)]
    aux: Dense<T>,
    losses: [BoxedLoss<T>; 3],
}

impl<T: Float> TwoInputFixture<T> {
    fn graph<'t>(
        &self,
        inputs: TwoInputFixtureInputs<polyhead::autograd::Var<'t, T>>,
    ) -> polyhead::Result<TwoInputFixtureOutputs<polyhead::autograd::Var<'t, T>>> {
        let image = self.gap.forward(self.conv.forward(inputs.image)?)?;
        let meta = self.meta_dense.forward(inputs.meta)?;
        let joined = polyhead::autograd::Var::concat(&[image, meta], -1)?;
        let joint = self.joint.forward(joined)?;
        Ok(TwoInputFixtureOutputs {
            class: self.class.forward(joint)?,
            bbox: self.bbox.forward(joint)?,
            aux: self.aux.forward(image)?,
        })
    }
}

/// The two-input variant files: the setup's graph must be the one
/// [`TwoInputFixture`] wires (checked layer by layer), then the same
/// replay as the one-input files.
fn run_two_inputs<T: Float>(variant: &Value, setup: &Value) -> Result<Vec<CaseOutcome>, String> {
    let rule = Rule {
        f64: T::NAME == "f64",
        f32: f32_rule(variant)?,
    };
    let model_json = &setup["model"];
    let wiring = [
        ("conv", "Conv2D", &["image"][..]),
        ("gap", "GlobalAveragePooling2D", &["conv"][..]),
        ("meta_dense", "Dense", &["meta"][..]),
        ("concat", "Concatenate", &["gap", "meta_dense"][..]),
        ("joint", "Dense", &["concat"][..]),
        ("class", "Dense", &["joint"][..]),
        ("bbox", "Dense", &["joint"][..]),
        ("aux", "Dense", &["gap"][..]),
    ];
    let layers = model_json["layers"]
        .as_array()
        .ok_or("setup: no model.layers")?;
    let described: Vec<(&str, &str, Vec<&str>)> = layers
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or(""),
                l["type"].as_str().unwrap_or(""),
                l["inputs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str, Vec<&str>)> = wiring
        .iter()
        .map(|(n, t, i)| (*n, *t, i.to_vec()))
        .collect();
    if described != expected {
        return Err(format!(
            "unsupported architecture: the two-input model is wired {expected:?}, the file describes {described:?}"
        ));
    }
    let config =
        |name: &str| &layers.iter().find(|l| l["name"] == name).expect("checked")["config"];
    if config("concat")["axis"].as_i64() != Some(-1) || config("conv")["padding"] != "valid" {
        return Err("unsupported architecture: expected concatenation on the last axis and a `valid` convolution".into());
    }
    let weights0 = &setup["initial_weights"];
    let weight = |layer: &str, w: &str| -> Result<Tensor<T>, String> {
        array(&weights0[format!("{layer}.{w}")], &format!("{layer}.{w}"))
    };
    let act = |name: &str| {
        config(name)["activation"]
            .as_str()
            .unwrap_or("linear")
            .to_string()
    };
    let dense = |name: &str| -> Result<Dense<T>, String> {
        Dense::from_tensors(
            weight(name, "kernel")?,
            Some(weight(name, "bias")?),
            activation(&act(name))?,
        )
        .map_err(|e| e.to_string())
    };
    let kernel = weight("conv", "kernel")?;
    let k = kernel.shape().to_vec();
    let mut conv = Conv2D::<T>::builder(k[2], k[3], [k[0], k[1]])
        .activation(activation(&act("conv"))?)
        .build(&mut polyhead::tensor::Rng::new(0))
        .map_err(|e| e.to_string())?;
    for (name, p) in conv.parameters_mut() {
        p.set_value(weight("conv", &name)?)
            .map_err(|e| format!("conv.{name}: {e}"))?;
    }
    let compile = &variant["compile"];
    let head_loss =
        |head: &str| loss::<T>(compile["loss"][head].as_str().unwrap_or(""), &act(head));
    let mut model = TwoInputFixture::<T> {
        conv,
        gap: GlobalPooling::average_2d(),
        meta_dense: dense("meta_dense")?,
        joint: dense("joint")?,
        class: dense("class")?,
        bbox: dense("bbox")?,
        aux: dense("aux")?,
        losses: [head_loss("class")?, head_loss("bbox")?, head_loss("aux")?],
    };
    let loss_weights = loss_weights_of::<TwoInputFixtureLossWeights>(compile)?;
    let mut optimizer = optimizer_of::<T>(compile)?;
    let x = TwoInputFixtureInputs {
        image: array(&setup["x"]["image"], "x.image")?,
        meta: array(&setup["x"]["meta"], "x.meta")?,
    };
    let targets = TwoInputFixtureTargets::new(
        array(&setup["y"]["class"], "y.class")?,
        array(&setup["y"]["bbox"], "y.bbox")?,
        array(&setup["y"]["aux"], "y.aux")?,
    );
    // The fields are named as Keras' layers: the names are the same.
    let same = |name: &str| name.to_string();
    replay(
        &mut Replay {
            variant,
            weights0,
            rule: &rule,
            keras_name: &same,
        },
        &mut model,
        &x,
        &targets,
        &loss_weights,
        &mut optimizer,
    )
}

/// The sequence fixture's model (joint intent and slots) as a plain
/// trunk and heads: token ids -> embedding with `mask_zero` -> LSTM over
/// every step (the trunk), per-token `slots` logits, and `intent`, a
/// second LSTM's last real state -> softmax. Nothing passes the padding
/// mask by hand: the embedding's output carries it through the trunk, the
/// LSTMs honour it and the slots loss averages over the real tokens.
#[derive(MultiOutput)]
struct SequenceFixture<T: Float> {
    #[trunk]
    body: Sequential<T>,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    slots: Dense<T>,
    #[head(loss = SparseCrossEntropy::from_probabilities(), weight = 0.5, target = Labels)]
    intent: Sequential<T>,
}

/// The sequence variant files: the setup's layers must be the ones
/// [`SequenceFixture`] wires; labels are class indices, and the slots
/// loss averages over the real tokens only.
fn run_sequence<T: Float>(variant: &Value, setup: &Value) -> Result<Vec<CaseOutcome>, String> {
    let rule = Rule {
        f64: T::NAME == "f64",
        f32: f32_rule(variant)?,
    };
    let layers = setup["model"]["layers"]
        .as_array()
        .ok_or("setup: no model.layers")?;
    let described: Vec<(&str, &str, &str)> = layers
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or(""),
                l["type"].as_str().unwrap_or(""),
                l["input"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let expected = [
        ("embedding", "Embedding", "input"),
        ("lstm", "LSTM", "embedding"),
        ("slots", "Dense", "lstm"),
        ("intent_lstm", "LSTM", "lstm"),
        ("intent", "Dense", "intent_lstm"),
    ];
    if described != expected {
        return Err(format!(
            "unsupported architecture: the sequence model is wired {expected:?}, the file describes {described:?}"
        ));
    }
    let config = |i: usize| &layers[i]["config"];
    if config(0)["mask_zero"] != true
        || config(1)["return_sequences"] != true
        || config(3)["return_sequences"].as_bool().unwrap_or(false)
        || config(2)["activation"].as_str().unwrap_or("linear") != "linear"
        || config(4)["activation"] != "softmax"
    {
        return Err("unsupported architecture: expected mask_zero, a sequence LSTM, slot logits, a last-state LSTM and softmax intents".into());
    }
    let weights0 = &setup["initial_weights"];
    let weight = |name: &str| -> Result<Tensor<T>, String> { array(&weights0[name], name) };
    let mut rng = polyhead::tensor::Rng::new(0);
    let embeddings = weight("embedding.embeddings")?;
    let lstm_of = |name: &str, rng: &mut polyhead::tensor::Rng| -> Result<Lstm<T>, String> {
        let k = weight(&format!("{name}.kernel"))?;
        let u = weight(&format!("{name}.recurrent_kernel"))?.shape()[0];
        Lstm::new(k.shape()[0], u, rng).map_err(|e| e.to_string())
    };
    let dense = |name: &str| -> Result<Dense<T>, String> {
        Dense::from_tensors(
            weight(&format!("{name}.kernel"))?,
            Some(weight(&format!("{name}.bias"))?),
            Activation::Linear,
        )
        .map_err(|e| e.to_string())
    };
    let mut model = SequenceFixture::<T> {
        body: Sequential::new()
            .push(
                Embedding::new(embeddings.shape()[0], embeddings.shape()[1], &mut rng)
                    .map_err(|e| e.to_string())?
                    .mask_zero(true),
            )
            .push(lstm_of("lstm", &mut rng)?.return_sequences(true)),
        slots: dense("slots")?,
        intent: Sequential::new()
            .push(lstm_of("intent_lstm", &mut rng)?)
            .push(
                Dense::from_tensors(
                    weight("intent.kernel")?,
                    Some(weight("intent.bias")?),
                    Activation::Softmax,
                )
                .map_err(|e| e.to_string())?,
            ),
    };
    // polyhead's names -> Keras' layer names.
    let keras_name = |ours: &str| -> String {
        [
            ("body.0.", "embedding."),
            ("body.1.", "lstm."),
            ("intent.0.", "intent_lstm."),
            ("intent.1.", "intent."),
        ]
        .iter()
        .find_map(|(p, k)| ours.strip_prefix(p).map(|rest| format!("{k}{rest}")))
        .unwrap_or_else(|| ours.to_string())
    };
    for (name, p) in model.parameters_mut() {
        let k = keras_name(&name);
        p.set_value(weight(&k)?).map_err(|e| format!("{k}: {e}"))?;
    }
    let compile = &variant["compile"];
    let losses = (
        compile["loss"]["slots"].as_str(),
        compile["loss"]["intent"].as_str(),
    );
    if losses
        != (
            Some("SparseCategoricalCrossentropy(from_logits=True), masked"),
            Some("sparse_categorical_crossentropy"),
        )
    {
        return Err(format!("unsupported losses {losses:?}"));
    }
    let loss_weights = loss_weights_of::<SequenceFixtureLossWeights>(compile)?;
    let mut optimizer = optimizer_of::<T>(compile)?;
    let ids: Tensor<T> = array(&setup["x"], "x")?;
    let labels = |v: &Value, what: &str| -> Result<Labels, String> {
        let t: Tensor<f64> = array(v, what)?;
        Labels::new(t.to_vec().iter().map(|&c| c as i64).collect(), t.shape())
            .map_err(|e| e.to_string())
    };
    // No slots mask here: the model's output carries the padding mask.
    let targets = SequenceFixtureTargets::new(
        labels(&setup["y"]["slots"], "y.slots")?,
        labels(&setup["y"]["intent"], "y.intent")?,
    );
    replay(
        &mut Replay {
            variant,
            weights0,
            rule: &rule,
            keras_name: &keras_name,
        },
        &mut model,
        &ids,
        &targets,
        &loss_weights,
        &mut optimizer,
    )
}

/// What a replay compares against and how it names weights.
struct Replay<'a> {
    variant: &'a Value,
    weights0: &'a Value,
    rule: &'a Rule,
    /// polyhead's parameter or buffer name -> Keras' (`layer.weight`).
    keras_name: &'a dyn Fn(&str) -> String,
}

/// Replays a variant file on `model` (its weights and buffers already the
/// setup's): inference outputs if recorded, the outputs, head losses,
/// total and gradients at the initial weights, then each recorded
/// `train_on_batch`: its logs and the weights after it.
fn replay<M: MultiOutput<T>, T: Float>(
    r: &mut Replay<'_>,
    model: &mut M,
    x: &M::Inputs<Tensor<T>>,
    targets: &M::Targets,
    loss_weights: &M::LossWeights,
    optimizer: &mut Optimizer<T>,
) -> Result<Vec<CaseOutcome>, String> {
    let (variant, weights0, rule, keras_name) = (r.variant, r.weights0, r.rule, r.keras_name);
    let variant_name = variant["variant"].as_str().unwrap_or("?").to_string();
    let mut outcomes = Vec::new();
    let mut check = |id: &str, result: Result<(), String>| {
        outcomes.push(CaseOutcome::ran(format!("{variant_name}/{id}"), result))
    };
    // Every head's output against the file's, by head name.
    let compare_outputs =
        |what: &str, outputs: &M::Outputs<polyhead::autograd::Var<'_, T>>, want: &Value| {
            let mut r = Ok(());
            for (head, v) in M::head_values(outputs) {
                r = r.and(rule.array(&format!("{what}.{head}"), &v.value(), &want[head]));
            }
            r
        };

    // Inference at the initial weights (moving statistics; changes nothing).
    if !variant["outputs_inference"].is_null() {
        model.set_training(false);
        let tape = Tape::no_record();
        let outputs = model
            .forward_heads(M::input_vars(&tape, x))
            .map_err(|e| e.to_string())?;
        check(
            "outputs_inference",
            compare_outputs("outputs_inference", &outputs, &variant["outputs_inference"]),
        );
        model.set_training(true);
    }

    // The forward pass, losses and gradients at the initial weights.
    {
        let tape = Tape::new();
        let outputs = model
            .forward_heads(M::input_vars(&tape, x))
            .map_err(|e| e.to_string())?;
        let total = model
            .weighted_loss(&outputs, targets, loss_weights)
            .map_err(|e| e.to_string())?;
        check(
            "outputs",
            compare_outputs("outputs", &outputs, &variant["outputs"]),
        );
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
                let k = keras_name(&name);
                r = r.and(rule.array(&format!("grads.{k}"), &g, &variant["grads"][&k]));
            }
            check("grads", r);
        }
    }

    // That training-mode forward moved the moving statistics; the steps
    // below start from the setup's, as Keras' do.
    for (name, b) in model.buffers() {
        let k = keras_name(&name);
        b.set_value(array(&weights0[&k], &k)?)
            .map_err(|e| format!("{k}: {e}"))?;
    }

    // Each recorded train_on_batch: logs from the forward before the update,
    // then the weights after it.
    for step in variant["steps"].as_array().ok_or("no steps")? {
        let k = step["step"].as_u64().unwrap_or(0);
        let tape = Tape::new();
        let outputs = model
            .forward_heads(M::input_vars(&tape, x))
            .map_err(|e| e.to_string())?;
        let total = model
            .weighted_loss(&outputs, targets, loss_weights)
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
        optimizer.step(model, &grads).map_err(|e| e.to_string())?;
        let mut r = Ok(());
        for (name, p) in model.parameters() {
            let kn = keras_name(&name);
            r = r.and(rule.array(
                &format!("step {k} weights.{kn}"),
                p.value(),
                &step["weights"][&kn],
            ));
        }
        for (name, b) in model.buffers() {
            let kn = keras_name(&name);
            r = r.and(rule.array(
                &format!("step {k} weights.{kn}"),
                &b.value(),
                &step["weights"][&kn],
            ));
        }
        check(&format!("step{k}_weights"), r);
    }
    Ok(outcomes)
}
