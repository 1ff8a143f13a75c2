//! `cargo xtask conformance` on layer fixture files (schema
//! `polyhead-fixtures/layers/v1`): each case builds the polyhead layer from
//! the case's Keras `config`, loads its `weights`, and compares the output,
//! the input's gradient and every weight's gradient under the cotangent
//! `upstream`. A layer or option polyhead does not have yet is a failure
//! that says so, never a pass.

use polyhead::autograd::Var;
use polyhead::autograd::{Parameter, Tape};
use polyhead::layers::{
    Activation, BatchNormalization, Bidirectional, Conv1D, Conv2D, Conv2DTranspose,
    DepthwiseConv2D, GlobalPooling, Gru, LayerNorm, Lstm, MaxPooling1D, Merge, Module,
    MovingStatistics, MultiHeadAttention, Padding, Pooling2D,
};
use polyhead::tensor::{Float, Rng, Tensor};
use serde_json::Value;

use crate::conformance::{CaseOutcome, array};
use crate::conformance_multi::Rule;

/// Runs every case of a layer fixture file.
pub fn run_layer_file(json: &Value) -> Result<Vec<CaseOutcome>, String> {
    if json["convention"] == "pytorch" {
        return run_torch_layer_file(json);
    }
    let cases = json["cases"].as_array().ok_or("no `cases` array")?;
    let f64_file = json["dtype"] == "float64";
    Ok(cases
        .iter()
        .map(|case| {
            let id = case["id"].as_str().unwrap_or("?");
            if let Some(outcome) = sequence_case(id, case["layer"].as_str(), &case["mask"]) {
                return outcome;
            }
            let result = match (case["layer"].as_str(), f64_file) {
                (Some("MultiHeadAttention"), true) => {
                    run_attention::<f64>(case, &Rule::standard(true))
                }
                (Some("MultiHeadAttention"), false) => {
                    run_attention::<f32>(case, &Rule::standard(false))
                }
                (_, true) => run_case::<f64>(case, &Rule::standard(true)),
                (_, false) => run_case::<f32>(case, &Rule::standard(false)),
            };
            CaseOutcome::ran(id, result)
        })
        .collect())
}

/// The layers of the sequence issue (#19) polyhead does not have yet, in
/// Keras' and PyTorch's names (none left).
const SEQUENCE_LAYERS: [&str; 0] = [];

/// A case that needs #19 (a sequence layer, or a mask): not supported,
/// and not run. Only these may be reported so; any other layer polyhead
/// lacks is a failure.
fn sequence_case(id: &str, layer: Option<&str>, mask: &Value) -> Option<CaseOutcome> {
    let layer = layer.unwrap_or("?");
    let reason = if SEQUENCE_LAYERS.contains(&layer) {
        format!("{layer} is a sequence layer (issue #19)")
    } else {
        let _ = mask;
        return None;
    };
    Some(CaseOutcome {
        id: id.to_string(),
        failure: None,
        not_supported: Some(reason),
    })
}

/// An integer or a list of integers (Keras accepts both), as `[a, b]`.
fn pair(v: &Value, default: usize) -> Result<[usize; 2], String> {
    match v {
        Value::Null => Ok([default, default]),
        Value::Number(n) => {
            let n = n.as_u64().ok_or("not a count")? as usize;
            Ok([n, n])
        }
        Value::Array(a) if a.len() == 2 => Ok([
            a[0].as_u64().ok_or("not a count")? as usize,
            a[1].as_u64().ok_or("not a count")? as usize,
        ]),
        Value::Array(a) if a.len() == 1 => {
            let n = a[0].as_u64().ok_or("not a count")? as usize;
            Ok([n, n])
        }
        other => Err(format!("unexpected size {other}")),
    }
}

/// Max or average pooling over `pool` windows, `strides` defaulting to
/// the window (both frameworks' rule).
fn pooling_2d(
    max: bool,
    pool: &Value,
    strides: &Value,
    padding: Padding,
) -> Result<Pooling2D, String> {
    let pool = pair(pool, 2)?;
    let strides = if strides.is_null() {
        pool
    } else {
        pair(strides, 1)?
    };
    let base = if max {
        Pooling2D::max(pool)
    } else {
        Pooling2D::average(pool)
    };
    Ok(base.strides(strides).padding(padding))
}

fn padding(config: &Value) -> Result<Padding, String> {
    match config["padding"].as_str().unwrap_or("valid") {
        "valid" => Ok(Padding::Valid),
        "same" => Ok(Padding::Same),
        "causal" => Ok(Padding::Causal),
        other => Err(format!("unknown padding {other:?}")),
    }
}

fn activation(config: &Value) -> Result<Activation, String> {
    match config["activation"].as_str().unwrap_or("linear") {
        "linear" => Ok(Activation::Linear),
        "relu" => Ok(Activation::Relu),
        "tanh" => Ok(Activation::Tanh),
        "sigmoid" => Ok(Activation::Sigmoid),
        other => Err(format!("polyhead has no activation {other:?} here")),
    }
}

/// Refuses a config key this runner does not map, so nothing is ignored.
fn known_keys(config: &Value, keys: &[&str]) -> Result<(), String> {
    let unknown: Vec<&String> = config
        .as_object()
        .map(|o| o.keys().filter(|k| !keys.contains(&k.as_str())).collect())
        .unwrap_or_default();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("polyhead lacks config option(s) {unknown:?}"))
    }
}

/// A boolean `[B, T]` mask of a case (true = a real step) as 1/0.
fn mask<T: Float>(v: &Value) -> Result<Option<Tensor<T>>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .ok_or("mask: no shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or("mask: bad shape"))
        .collect::<Result<_, _>>()?;
    let data: Vec<T> = v["data"]
        .as_array()
        .ok_or("mask: no data")?
        .iter()
        .map(|b| {
            b.as_bool()
                .map(|b| if b { T::ONE } else { T::ZERO })
                .ok_or("mask: not a boolean")
        })
        .collect::<Result<_, _>>()?;
    Tensor::from_vec(data, &shape)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A layer's forward that takes a mask (`Lstm::forward_masked`, ...).
type MaskedForward<T, L> =
    for<'t> fn(&L, Var<'t, T>, Option<&Tensor<T>>) -> polyhead::layers::Result<Var<'t, T>>;

/// A layer whose forward takes the case's mask.
struct WithMask<T: Float, L> {
    layer: L,
    mask: Option<Tensor<T>>,
    run: MaskedForward<T, L>,
}

impl<T: Float, L: Module<T>> Module<T> for WithMask<T, L> {
    fn forward<'t>(&self, x: Var<'t, T>) -> polyhead::layers::Result<Var<'t, T>> {
        (self.run)(&self.layer, x, self.mask.as_ref())
    }
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        self.layer.visit_parameters(prefix, f)
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        self.layer.visit_parameters_mut(prefix, f)
    }
}

/// Keras' LSTM or GRU from its config (`units`, `return_sequences`, and
/// the GRU's `reset_after`), for `input` features.
enum Rnn<T: Float> {
    Lstm(Lstm<T>),
    Gru(Gru<T>),
}

fn rnn<T: Float>(class: &str, config: &Value, input: usize) -> Result<Rnn<T>, String> {
    let units = config["units"].as_u64().ok_or("no units")? as usize;
    let sequences = config["return_sequences"].as_bool().unwrap_or(false);
    let mut rng = Rng::new(0);
    match class {
        "LSTM" => {
            known_keys(config, &["units", "return_sequences"])?;
            Ok(Rnn::Lstm(
                Lstm::<T>::new(input, units, &mut rng)
                    .map_err(|e| e.to_string())?
                    .return_sequences(sequences),
            ))
        }
        "GRU" => {
            known_keys(config, &["units", "return_sequences", "reset_after"])?;
            Ok(Rnn::Gru(
                Gru::<T>::new(input, units, &mut rng)
                    .map_err(|e| e.to_string())?
                    .reset_after(config["reset_after"].as_bool().unwrap_or(true))
                    .return_sequences(sequences),
            ))
        }
        other => Err(format!("polyhead has no recurrent layer {other:?}")),
    }
}

/// Runs `module` on `x` (in the case's layout), compares `y` and the
/// input's gradient of `sum(y * upstream)` with the case's, and returns
/// every gradient for the weights' checks.
fn output_and_input_gradient<T: Float>(
    module: &dyn Module<T>,
    x: Tensor<T>,
    case: &Value,
    rule: &Rule,
) -> Result<polyhead::autograd::Gradients<T>, String> {
    let tape = Tape::new();
    let xv = tape.leaf(x);
    let y = module.forward(xv).map_err(|e| e.to_string())?;
    rule.array("y", &y.value(), &case["y"])?;
    let upstream: Tensor<T> = array(&case["upstream"], "upstream")?;
    let objective = y
        .mul(tape.constant(upstream))
        .map_err(|e| e.to_string())?
        .sum_all();
    let grads = tape.backward(objective).map_err(|e| e.to_string())?;
    rule.array(
        "grad_x",
        &grads.wrt(xv).map_err(|e| e.to_string())?,
        &case["grad_x"],
    )?;
    Ok(grads)
}

fn run_case<T: Float>(case: &Value, rule: &Rule) -> Result<(), String> {
    let layer = case["layer"].as_str().unwrap_or("?");
    let config = &case["config"];
    let x: Tensor<T> = array(&case["x"], "x")?;
    let mask = mask::<T>(&case["mask"])?;
    let conv_keys = [
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "dilation_rate",
        "groups",
        "use_bias",
        "activation",
    ];
    let mut module: Box<dyn Module<T>> = match layer {
        "Conv2D" | "Conv1D" => {
            known_keys(config, &conv_keys)?;
            let filters = config["filters"].as_u64().ok_or("no filters")? as usize;
            let kernel = pair(&config["kernel_size"], 1)?;
            let strides = pair(&config["strides"], 1)?;
            let dilation = pair(&config["dilation_rate"], 1)?;
            let groups = config["groups"].as_u64().unwrap_or(1) as usize;
            let use_bias = config["use_bias"].as_bool().unwrap_or(true);
            let cin = *x.shape().last().ok_or("x has no axes")?;
            let mut rng = Rng::new(0);
            if layer == "Conv2D" {
                Box::new(
                    Conv2D::<T>::builder(cin, filters, kernel)
                        .strides(strides)
                        .dilation_rate(dilation)
                        .padding(padding(config)?)
                        .groups(groups)
                        .use_bias(use_bias)
                        .activation(activation(config)?)
                        .build(&mut rng)
                        .map_err(|e| e.to_string())?,
                )
            } else {
                Box::new(
                    Conv1D::<T>::builder(cin, filters, kernel[0])
                        .strides(strides[0])
                        .dilation_rate(dilation[0])
                        .padding(padding(config)?)
                        .groups(groups)
                        .use_bias(use_bias)
                        .activation(activation(config)?)
                        .build(&mut rng)
                        .map_err(|e| e.to_string())?,
                )
            }
        }
        "LayerNormalization" => {
            known_keys(config, &["epsilon", "center", "scale"])?;
            let c = *x.shape().last().ok_or("x has no axes")?;
            Box::new(
                LayerNorm::<T>::new(c)
                    .map_err(|e| e.to_string())?
                    .eps(config["epsilon"].as_f64().unwrap_or(1e-3))
                    .center(config["center"].as_bool().unwrap_or(true))
                    .scale(config["scale"].as_bool().unwrap_or(true)),
            )
        }
        "DepthwiseConv2D" => {
            known_keys(
                config,
                &[
                    "kernel_size",
                    "strides",
                    "padding",
                    "dilation_rate",
                    "depth_multiplier",
                    "use_bias",
                    "activation",
                ],
            )?;
            let cin = *x.shape().last().ok_or("x has no axes")?;
            Box::new(
                DepthwiseConv2D::<T>::builder(cin, pair(&config["kernel_size"], 1)?)
                    .depth_multiplier(config["depth_multiplier"].as_u64().unwrap_or(1) as usize)
                    .strides(pair(&config["strides"], 1)?)
                    .dilation_rate(pair(&config["dilation_rate"], 1)?)
                    .padding(padding(config)?)
                    .use_bias(config["use_bias"].as_bool().unwrap_or(true))
                    .activation(activation(config)?)
                    .build(&mut Rng::new(0))
                    .map_err(|e| e.to_string())?,
            )
        }
        "Conv2DTranspose" => {
            known_keys(
                config,
                &[
                    "filters",
                    "kernel_size",
                    "strides",
                    "padding",
                    "use_bias",
                    "activation",
                ],
            )?;
            let cin = *x.shape().last().ok_or("x has no axes")?;
            let filters = config["filters"].as_u64().ok_or("no filters")? as usize;
            Box::new(
                Conv2DTranspose::<T>::builder(cin, filters, pair(&config["kernel_size"], 1)?)
                    .strides(pair(&config["strides"], 1)?)
                    .padding(padding(config)?)
                    .use_bias(config["use_bias"].as_bool().unwrap_or(true))
                    .activation(activation(config)?)
                    .build(&mut Rng::new(0))
                    .map_err(|e| e.to_string())?,
            )
        }
        "MaxPooling2D" | "AveragePooling2D" => {
            known_keys(config, &["pool_size", "strides", "padding"])?;
            Box::new(pooling_2d(
                layer == "MaxPooling2D",
                &config["pool_size"],
                &config["strides"],
                padding(config)?,
            )?)
        }
        "MaxPooling1D" => {
            known_keys(config, &["pool_size", "strides", "padding"])?;
            let pool = pair(&config["pool_size"], 2)?[0];
            let strides = if config["strides"].is_null() {
                pool
            } else {
                pair(&config["strides"], 1)?[0]
            };
            Box::new(
                MaxPooling1D::new(pool)
                    .strides(strides)
                    .padding(padding(config)?),
            )
        }
        "GlobalAveragePooling1D" if mask.is_some() => {
            known_keys(config, &["keepdims"])?;
            Box::new(WithMask {
                layer: GlobalPooling::average_1d()
                    .keepdims(config["keepdims"].as_bool().unwrap_or(false)),
                mask: mask.clone(),
                run: |l, x, m| l.forward_masked(x, m.expect("a mask")),
            })
        }
        "LSTM" | "GRU" => {
            let input = *x.shape().last().ok_or("x has no axes")?;
            match rnn::<T>(layer, config, input)? {
                Rnn::Lstm(l) => Box::new(WithMask {
                    layer: l,
                    mask: mask.clone(),
                    run: Lstm::forward_masked,
                }),
                Rnn::Gru(g) => Box::new(WithMask {
                    layer: g,
                    mask: mask.clone(),
                    run: Gru::forward_masked,
                }),
            }
        }
        "Bidirectional" => {
            known_keys(config, &["layer", "merge_mode"])?;
            let input = *x.shape().last().ok_or("x has no axes")?;
            let inner = &config["layer"];
            let class = inner["class_name"].as_str().ok_or("no wrapped layer")?;
            let bi = match (
                rnn::<T>(class, &inner["config"], input)?,
                rnn::<T>(class, &inner["config"], input)?,
            ) {
                (Rnn::Lstm(f), Rnn::Lstm(b)) => Bidirectional::lstm(f, b),
                (Rnn::Gru(f), Rnn::Gru(b)) => Bidirectional::gru(f, b),
                _ => unreachable!("one class"),
            }
            .map_err(|e| e.to_string())?
            .merge(match config["merge_mode"].as_str().unwrap_or("concat") {
                "concat" => Merge::Concat,
                "sum" => Merge::Sum,
                other => return Err(format!("polyhead has no merge_mode {other:?}")),
            });
            Box::new(WithMask {
                layer: bi,
                mask: mask.clone(),
                run: Bidirectional::forward_masked,
            })
        }
        "GlobalAveragePooling1D" | "GlobalAveragePooling2D" | "GlobalMaxPooling2D" => {
            known_keys(config, &["keepdims"])?;
            let base = match layer {
                "GlobalAveragePooling1D" => GlobalPooling::average_1d(),
                "GlobalAveragePooling2D" => GlobalPooling::average_2d(),
                _ => GlobalPooling::max_2d(),
            };
            Box::new(base.keepdims(config["keepdims"].as_bool().unwrap_or(false)))
        }
        "BatchNormalization" => {
            known_keys(config, &["momentum", "epsilon", "center", "scale"])?;
            let c = *x.shape().last().ok_or("x has no axes")?;
            let mut bn = BatchNormalization::<T>::new(c)
                .map_err(|e| e.to_string())?
                .epsilon(config["epsilon"].as_f64().unwrap_or(1e-3))
                .moving_statistics(MovingStatistics {
                    keep: config["momentum"].as_f64().unwrap_or(0.99),
                    unbiased_variance: false,
                })
                .center(config["center"].as_bool().unwrap_or(true))
                .scale(config["scale"].as_bool().unwrap_or(true));
            bn.set_training(case["training"].as_bool().unwrap_or(false));
            Box::new(bn)
        }
        other => return Err(format!("polyhead has no layer {other:?} yet")),
    };
    // Load the case's weights by name, every one of them.
    let weights = case["weights"].as_object().ok_or("no weights")?;
    let mut names: Vec<String> = Vec::new();
    // Keras paths use `/` (`forward_lstm/kernel`) where polyhead uses `.`.
    for (name, p) in module.parameters_mut() {
        let name = name.replace('.', "/");
        let value: Tensor<T> = array(
            weights
                .get(&name)
                .ok_or(format!("the case has no weight {name}"))?,
            &name,
        )?;
        p.set_value(value).map_err(|e| format!("{name}: {e}"))?;
        names.push(name);
    }
    for (name, b) in module.buffers() {
        let value: Tensor<T> = array(
            weights
                .get(&name)
                .ok_or(format!("the case has no weight {name}"))?,
            &name,
        )?;
        b.set_value(value).map_err(|e| format!("{name}: {e}"))?;
        names.push(name);
    }
    if let Some(extra) = weights.keys().find(|k| !names.contains(k)) {
        return Err(format!("the layer has no weight {extra}"));
    }
    let grads = output_and_input_gradient(module.as_ref(), x, case, rule)?;
    let params: Vec<(String, &Parameter<T>)> = module.parameters();
    for (name, p) in params {
        let name = name.replace('.', "/");
        let g = grads
            .by_id(p.id())
            .ok_or(format!("no gradient for {name}"))?;
        rule.array(
            &format!("grad_weights.{name}"),
            g,
            &case["grad_weights"][&name],
        )?;
    }
    Ok(())
}

/// Runs every case of a PyTorch layer file (channels first, `state_dict`
/// names): inputs and weights are moved to polyhead's layouts, results back
/// to PyTorch's before comparing.
pub fn run_torch_layer_file(json: &Value) -> Result<Vec<CaseOutcome>, String> {
    let cases = json["cases"].as_array().ok_or("no `cases` array")?;
    Ok(cases
        .iter()
        .map(|case| {
            let id = case["id"].as_str().unwrap_or("?");
            sequence_case(id, case["module"].as_str(), &Value::Null).unwrap_or_else(|| {
                CaseOutcome::ran(id, run_torch_case(case, &Rule::standard(true)))
            })
        })
        .collect())
}

/// The permutation moving axis 1 (channels) last, and its inverse.
fn channels_last(ndim: usize) -> (Vec<usize>, Vec<usize>) {
    let mut to_last: Vec<usize> = vec![0];
    to_last.extend(2..ndim);
    to_last.push(1);
    let mut to_first = vec![0; ndim];
    for (i, &a) in to_last.iter().enumerate() {
        to_first[a] = i;
    }
    (to_last, to_first)
}

fn permuted(t: &Tensor<f64>, axes: &[usize]) -> Result<Tensor<f64>, String> {
    Ok(t.permute(axes).map_err(|e| e.to_string())?.to_contiguous())
}

/// An int, a pair, `"same"` or `"valid"`: PyTorch's `padding`.
fn torch_padding(v: &Value) -> Result<Padding, String> {
    match v {
        Value::Null => Ok(Padding::Valid),
        Value::String(s) if s == "same" => Ok(Padding::Same),
        Value::String(s) if s == "valid" => Ok(Padding::Valid),
        other => {
            let [a, b] = pair(other, 0)?;
            if a != b {
                return Err(format!("polyhead has no asymmetric padding {other}"));
            }
            Ok(if a == 0 {
                Padding::Valid
            } else {
                Padding::Explicit(a)
            })
        }
    }
}

fn run_torch_case(case: &Value, rule: &Rule) -> Result<(), String> {
    let module = case["module"].as_str().unwrap_or("?");
    if matches!(module, "LSTM" | "GRU") {
        return run_torch_recurrent(case, rule);
    }
    if module == "MultiheadAttention" {
        return run_torch_attention(case, rule);
    }
    if !matches!(
        module,
        "Conv1d"
            | "Conv2d"
            | "ConvTranspose2d"
            | "BatchNorm1d"
            | "BatchNorm2d"
            | "MaxPool2d"
            | "AvgPool2d"
            | "AdaptiveAvgPool2d"
    ) {
        return Err(format!("polyhead has no layer for torch.nn.{module} yet"));
    }
    let args = &case["module_args"];
    let x: Tensor<f64> = array(&case["x"], "x")?;
    let (to_last, to_first) = channels_last(x.ndim());
    // (polyhead name, PyTorch name, polyhead layout from PyTorch's), to
    // bring the gradients back to PyTorch's layout.
    let mut names: Vec<(String, String, Vec<usize>)> = Vec::new();
    let refuse = |keys: &[&str]| -> Result<(), String> {
        let unknown: Vec<&String> = args
            .as_object()
            .map(|o| o.keys().filter(|k| !keys.contains(&k.as_str())).collect())
            .unwrap_or_default();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("polyhead lacks module argument(s) {unknown:?}"))
        }
    };
    let mut layer: Box<dyn Module<f64>> = match module {
        "Conv1d" | "Conv2d" => {
            refuse(&[
                "in_channels",
                "out_channels",
                "kernel_size",
                "stride",
                "padding",
                "dilation",
                "groups",
                "bias",
            ])?;
            let cin = args["in_channels"].as_u64().ok_or("no in_channels")? as usize;
            let cout = args["out_channels"].as_u64().ok_or("no out_channels")? as usize;
            let groups = args["groups"].as_u64().unwrap_or(1) as usize;
            let bias = args["bias"].as_bool().unwrap_or(true);
            let padding = torch_padding(&args["padding"])?;
            let (kernel, stride, dilation) = (
                pair(&args["kernel_size"], 1)?,
                pair(&args["stride"], 1)?,
                pair(&args["dilation"], 1)?,
            );
            let mut rng = Rng::new(0);
            let (layer, layout): (Box<dyn Module<f64>>, Vec<usize>) = if module == "Conv2d" {
                (
                    Box::new(
                        Conv2D::<f64>::builder(cin, cout, kernel)
                            .strides(stride)
                            .dilation_rate(dilation)
                            .padding(padding)
                            .groups(groups)
                            .use_bias(bias)
                            .build(&mut rng)
                            .map_err(|e| e.to_string())?,
                    ),
                    vec![2, 3, 1, 0],
                )
            } else {
                (
                    Box::new(
                        Conv1D::<f64>::builder(cin, cout, kernel[0])
                            .strides(stride[0])
                            .dilation_rate(dilation[0])
                            .padding(padding)
                            .groups(groups)
                            .use_bias(bias)
                            .build(&mut rng)
                            .map_err(|e| e.to_string())?,
                    ),
                    vec![2, 1, 0],
                )
            };
            names.push(("kernel".into(), "weight".into(), layout));
            if bias {
                names.push(("bias".into(), "bias".into(), vec![0]));
            }
            layer
        }
        "ConvTranspose2d" => {
            refuse(&[
                "in_channels",
                "out_channels",
                "kernel_size",
                "stride",
                "padding",
                "output_padding",
                "bias",
            ])?;
            let cin = args["in_channels"].as_u64().ok_or("no in_channels")? as usize;
            let cout = args["out_channels"].as_u64().ok_or("no out_channels")? as usize;
            let bias = args["bias"].as_bool().unwrap_or(true);
            let mut builder =
                Conv2DTranspose::<f64>::builder(cin, cout, pair(&args["kernel_size"], 1)?)
                    .strides(pair(&args["stride"], 1)?)
                    .padding(match torch_padding(&args["padding"])? {
                        // PyTorch's padding 0 keeps (n - 1) * stride + k even
                        // when k < stride, where Keras' `valid` keeps more.
                        Padding::Valid => Padding::Explicit(0),
                        other => other,
                    })
                    .use_bias(bias);
            let output_padding = pair(&args["output_padding"], 0)?;
            if output_padding != [0, 0] {
                builder = builder.output_padding(output_padding);
            }
            // weight [in, out, kh, kw] -> [kh, kw, out, in]
            names.push(("kernel".into(), "weight".into(), vec![2, 3, 1, 0]));
            if bias {
                names.push(("bias".into(), "bias".into(), vec![0]));
            }
            Box::new(builder.build(&mut Rng::new(0)).map_err(|e| e.to_string())?)
        }
        "BatchNorm1d" | "BatchNorm2d" => {
            refuse(&["num_features", "affine", "momentum", "eps"])?;
            let c = args["num_features"].as_u64().ok_or("no num_features")? as usize;
            let affine = args["affine"].as_bool().unwrap_or(true);
            let mut bn = BatchNormalization::<f64>::new(c)
                .map_err(|e| e.to_string())?
                .pytorch()
                .center(affine)
                .scale(affine);
            if let Some(eps) = args["eps"].as_f64() {
                bn = bn.epsilon(eps);
            }
            if let Some(m) = args["momentum"].as_f64() {
                bn = bn.moving_statistics(MovingStatistics {
                    keep: 1.0 - m,
                    unbiased_variance: true,
                });
            }
            bn.set_training(case["training"].as_bool().unwrap_or(false));
            if affine {
                names.push(("gamma".into(), "weight".into(), vec![0]));
                names.push(("beta".into(), "bias".into(), vec![0]));
            }
            names.push(("moving_mean".into(), "running_mean".into(), vec![0]));
            names.push(("moving_variance".into(), "running_var".into(), vec![0]));
            Box::new(bn)
        }
        "MaxPool2d" | "AvgPool2d" => {
            refuse(&[
                "kernel_size",
                "stride",
                "padding",
                "ceil_mode",
                "count_include_pad",
            ])?;
            let padding = torch_padding(&args["padding"])?;
            let pool = pooling_2d(
                module == "MaxPool2d",
                &args["kernel_size"],
                &args["stride"],
                padding,
            )?
            .ceil_mode(args["ceil_mode"].as_bool().unwrap_or(false));
            Box::new(if module == "AvgPool2d" {
                // PyTorch counts padding unless told not to.
                pool.count_include_pad(args["count_include_pad"].as_bool().unwrap_or(true))
            } else {
                pool
            })
        }
        "AdaptiveAvgPool2d" => {
            refuse(&["output_size"])?;
            if pair(&args["output_size"], 1)? != [1, 1] {
                return Err("polyhead's adaptive pooling has output size 1 only".into());
            }
            Box::new(GlobalPooling::average_2d().keepdims(true))
        }
        other => return Err(format!("polyhead has no layer for torch.nn.{other} yet")),
    };
    // The weights go in as a user's would: a safetensors state_dict
    // through `load_torch_state_dict_bytes`, which converts the layouts
    // (`names` is kept to bring the gradients back to PyTorch's).
    load_state_dict(case, layer.as_mut())?;
    let tape = Tape::new();
    let xv = tape.leaf(permuted(&x, &to_last)?);
    let y = layer.forward(xv).map_err(|e| e.to_string())?;
    rule.array("y", &permuted(&y.value(), &to_first)?, &case["y"])?;
    let upstream = permuted(&array(&case["upstream"], "upstream")?, &to_last)?;
    let objective = y
        .mul(tape.constant(upstream))
        .map_err(|e| e.to_string())?
        .sum_all();
    let grads = tape.backward(objective).map_err(|e| e.to_string())?;
    let gx = grads.wrt(xv).map_err(|e| e.to_string())?;
    rule.array("grad_x", &permuted(&gx, &to_first)?, &case["grad_x"])?;
    for (name, p) in layer.parameters() {
        let (_, torch, layout) = names
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or(format!("no PyTorch name for {name}"))?;
        let mut back = vec![0; layout.len()];
        for (i, &a) in layout.iter().enumerate() {
            back[a] = i;
        }
        let g = grads
            .by_id(p.id())
            .ok_or(format!("no gradient for {name}"))?;
        rule.array(
            &format!("grad_weights.{torch}"),
            &permuted(g, &back)?,
            &case["grad_weights"][torch],
        )?;
    }
    for (name, b) in layer.buffers() {
        let (_, torch, _) = names
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or(format!("no PyTorch name for {name}"))?;
        let after = &case[format!("{torch}_after")];
        if !after.is_null() {
            rule.array(&format!("{torch}_after"), &b.value(), after)?;
        }
    }
    // `num_batches_tracked_after` counts calls; polyhead keeps no such
    // counter (a momentum of None, which would use it, is not offered).
    Ok(())
}

/// Writes the case's `weights` (its `state_dict`) as safetensors bytes and
/// loads them into `layer` with `polyhead_layers::load_torch_state_dict_bytes`.
fn load_state_dict(case: &Value, layer: &mut dyn Module<f64>) -> Result<(), String> {
    let weights = case["weights"].as_object().ok_or("no weights")?;
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(name, v)| {
            let t: Tensor<f64> = array(v, name)?;
            let bytes = t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
            Ok((name.clone(), t.shape().to_vec(), bytes))
        })
        .collect::<Result<_, String>>()?;
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F64, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| e.to_string())?;
    let id = case["id"].as_str().unwrap_or("case");
    polyhead::layers::load_torch_state_dict_bytes(
        id,
        &bytes,
        layer,
        &polyhead::layers::TorchNames::new(),
    )
    .map_err(|e| e.to_string())
}

/// PyTorch's `nn.LSTM` / `nn.GRU` (batch first, one layer, optionally
/// bidirectional) on polyhead's layers: Keras' kernel is `weight_ih^T`, the
/// LSTM's one bias is `bias_ih + bias_hh` (each gets the bias's gradient),
/// the GRU's blocks are PyTorch's r, z, n reordered z, r, h with the two
/// biases as the `[2, 3H]` bias of `reset_after`.
fn run_torch_recurrent(case: &Value, rule: &Rule) -> Result<(), String> {
    let module = case["module"].as_str().unwrap_or("?");
    let args = &case["module_args"];
    let unknown: Vec<&String> = args
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| {
                    !["input_size", "hidden_size", "batch_first", "bidirectional"]
                        .contains(&k.as_str())
                })
                .collect()
        })
        .unwrap_or_default();
    if !unknown.is_empty() {
        return Err(format!("polyhead lacks module argument(s) {unknown:?}"));
    }
    if args["batch_first"].as_bool() != Some(true) {
        return Err("only batch_first=True is replayed".into());
    }
    let input = args["input_size"].as_u64().ok_or("no input_size")? as usize;
    let hidden = args["hidden_size"].as_u64().ok_or("no hidden_size")? as usize;
    let bidirectional = args["bidirectional"].as_bool().unwrap_or(false);
    let lstm = module == "LSTM";
    let g = if lstm { 4 } else { 3 };
    // polyhead's gate block b is PyTorch's block order[b].
    let order: Vec<usize> = if lstm {
        vec![0, 1, 2, 3]
    } else {
        vec![1, 0, 2]
    };
    // Rows of a PyTorch [G H, ...] tensor in polyhead's block order.
    let reorder_rows = |t: &Tensor<f64>| -> Result<Tensor<f64>, String> {
        let blocks: Vec<Tensor<f64>> = order
            .iter()
            .map(|&b| {
                t.slice_axis(0, b * hidden, (b + 1) * hidden)
                    .map(|s| s.to_contiguous())
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Tensor::concat(&blocks, 0).map_err(|e| e.to_string())
    };
    let mut rng = Rng::new(0);
    let make = |rng: &mut Rng| -> Result<Rnn<f64>, String> {
        Ok(if lstm {
            Rnn::Lstm(
                Lstm::new(input, hidden, rng)
                    .map_err(|e| e.to_string())?
                    .return_sequences(true),
            )
        } else {
            Rnn::Gru(
                Gru::new(input, hidden, rng)
                    .map_err(|e| e.to_string())?
                    .return_sequences(true),
            )
        })
    };
    let mut layer: Box<dyn Module<f64>> = match (make(&mut rng)?, bidirectional) {
        (Rnn::Lstm(l), false) => Box::new(l),
        (Rnn::Gru(l), false) => Box::new(l),
        (Rnn::Lstm(f), true) => match make(&mut rng)? {
            Rnn::Lstm(b) => Box::new(Bidirectional::lstm(f, b).map_err(|e| e.to_string())?),
            Rnn::Gru(_) => unreachable!("one kind"),
        },
        (Rnn::Gru(f), true) => match make(&mut rng)? {
            Rnn::Gru(b) => Box::new(Bidirectional::gru(f, b).map_err(|e| e.to_string())?),
            Rnn::Lstm(_) => unreachable!("one kind"),
        },
    };
    load_state_dict(case, layer.as_mut())?;
    let grads = output_and_input_gradient(layer.as_ref(), array(&case["x"], "x")?, case, rule)?;
    // polyhead's gradients back in PyTorch's layout: blocks in PyTorch's
    // order (the GRU's swap is its own inverse), kernels transposed.
    let ours: Vec<Tensor<f64>> = layer
        .parameters()
        .iter()
        .map(|(name, p)| {
            grads
                .by_id(p.id())
                .cloned()
                .ok_or(format!("no gradient for {name}"))
        })
        .collect::<Result<_, _>>()?;
    let suffixes: &[&str] = if bidirectional {
        &["", "_reverse"]
    } else {
        &[""]
    };
    for (d, suffix) in suffixes.iter().enumerate() {
        let [dk, dr, db] = [&ours[3 * d], &ours[3 * d + 1], &ours[3 * d + 2]];
        let back = |t: &Tensor<f64>| -> Result<Tensor<f64>, String> {
            reorder_rows(
                &t.transpose(0, 1)
                    .map_err(|e| e.to_string())?
                    .to_contiguous(),
            )
        };
        rule.array(
            &format!("weight_ih_l0{suffix}"),
            &back(dk)?,
            &case["grad_weights"][format!("weight_ih_l0{suffix}")],
        )?;
        rule.array(
            &format!("weight_hh_l0{suffix}"),
            &back(dr)?,
            &case["grad_weights"][format!("weight_hh_l0{suffix}")],
        )?;
        let (gi, gh) = if lstm {
            (reorder_rows(db)?, reorder_rows(db)?)
        } else {
            (
                reorder_rows(
                    &db.slice_axis(0, 0, 1)
                        .map_err(|e| e.to_string())?
                        .reshape(&[g * hidden])
                        .map_err(|e| e.to_string())?,
                )?,
                reorder_rows(
                    &db.slice_axis(0, 1, 2)
                        .map_err(|e| e.to_string())?
                        .reshape(&[g * hidden])
                        .map_err(|e| e.to_string())?,
                )?,
            )
        };
        rule.array(
            &format!("bias_ih_l0{suffix}"),
            &gi,
            &case["grad_weights"][format!("bias_ih_l0{suffix}")],
        )?;
        rule.array(
            &format!("bias_hh_l0{suffix}"),
            &gh,
            &case["grad_weights"][format!("bias_hh_l0{suffix}")],
        )?;
    }
    Ok(())
}

/// A Keras `MultiHeadAttention` case: query, value, optional key and
/// attention mask; the file's `attention_scale` (the factor Keras really
/// used) as the score scale; every weight by its Keras path.
fn run_attention<T: Float>(case: &Value, rule: &Rule) -> Result<(), String> {
    let config = &case["config"];
    known_keys(config, &["num_heads", "key_dim", "value_dim"])?;
    let query: Tensor<T> = array(&case["query"], "query")?;
    let value: Tensor<T> = array(&case["value"], "value")?;
    let key: Option<Tensor<T>> = if case["key"].is_null() {
        None
    } else {
        Some(array(&case["key"], "key")?)
    };
    let mut builder = MultiHeadAttention::<T>::builder(
        config["num_heads"].as_u64().ok_or("no num_heads")? as usize,
        config["key_dim"].as_u64().ok_or("no key_dim")? as usize,
        query.shape()[2],
    )
    .value_features(value.shape()[2])
    .key_features(key.as_ref().map_or(value.shape()[2], |k| k.shape()[2]));
    if let Some(v) = config["value_dim"].as_u64() {
        builder = builder.value_dim(v as usize);
    }
    if let Some(scale) = case["attention_scale"].as_f64() {
        builder = builder.score_scale(scale);
    }
    let mut mha = builder.build(&mut Rng::new(0)).map_err(|e| e.to_string())?;
    let weights = case["weights"].as_object().ok_or("no weights")?;
    let mut names = Vec::new();
    for (name, p) in mha.parameters_mut() {
        let name = name.replace('.', "/");
        p.set_value(array(
            weights
                .get(&name)
                .ok_or(format!("the case has no weight {name}"))?,
            &name,
        )?)
        .map_err(|e| format!("{name}: {e}"))?;
        names.push(name);
    }
    if let Some(extra) = weights.keys().find(|k| !names.contains(k)) {
        return Err(format!("the layer has no weight {extra}"));
    }
    let attention_mask = mask::<T>(&case["attention_mask"])?;
    let tape = Tape::new();
    let (qv, vv) = (tape.leaf(query), tape.leaf(value));
    let kv = key.map(|k| tape.leaf(k));
    let y = mha
        .attend(qv, vv, kv, attention_mask.as_ref())
        .map_err(|e| e.to_string())?;
    rule.array("y", &y.value(), &case["y"])?;
    let upstream: Tensor<T> = array(&case["upstream"], "upstream")?;
    let objective = y
        .mul(tape.constant(upstream))
        .map_err(|e| e.to_string())?
        .sum_all();
    let grads = tape.backward(objective).map_err(|e| e.to_string())?;
    rule.array(
        "grad_query",
        &grads.wrt(qv).map_err(|e| e.to_string())?,
        &case["grad_query"],
    )?;
    rule.array(
        "grad_value",
        &grads.wrt(vv).map_err(|e| e.to_string())?,
        &case["grad_value"],
    )?;
    if let Some(kv) = kv {
        rule.array(
            "grad_key",
            &grads.wrt(kv).map_err(|e| e.to_string())?,
            &case["grad_key"],
        )?;
    }
    let largest_query_bias = grads
        .by_id(
            mha.parameters()
                .iter()
                .find(|(n, _)| n == "query.bias")
                .map(|(_, p)| p.id())
                .ok_or("no query bias")?,
        )
        .map(|g| {
            g.to_vec()
                .iter()
                .fold(0.0f64, |m, v| m.max(v.to_f64().abs()))
        })
        .unwrap_or(0.0);
    for (name, p) in mha.parameters() {
        let name = name.replace('.', "/");
        let g = grads
            .by_id(p.id())
            .ok_or(format!("no gradient for {name}"))?;
        if name == "key/bias" {
            // Exactly 0 in exact arithmetic (a per-row constant added to
            // every score leaves a softmax unchanged); the files hold
            // rounding noise, so FORMAT.md bounds it absolutely.
            let bound = if T::NAME == "f64" { 1e-12 } else { 1e-5 } * largest_query_bias.max(1.0);
            let worst = g
                .to_vec()
                .iter()
                .fold(0.0f64, |m, v| m.max(v.to_f64().abs()));
            if worst > bound {
                return Err(format!(
                    "grad_weights.key/bias: |{worst:e}| above the bound {bound:e}"
                ));
            }
            continue;
        }
        rule.array(
            &format!("grad_weights.{name}"),
            g,
            &case["grad_weights"][&name],
        )?;
    }
    Ok(())
}

/// PyTorch's `nn.MultiheadAttention` (batch first) on polyhead's layer:
/// Keras' `query/kernel [E, H, K]` is PyTorch's q rows of the input
/// projection, transposed and split per head; `key_padding_mask` (true =
/// ignore that key) and `attn_mask` (true = not allowed) become polyhead's
/// `[B, L, S]` mask (nonzero = may attend).
fn run_torch_attention(case: &Value, rule: &Rule) -> Result<(), String> {
    let args = &case["module_args"];
    let unknown: Vec<&String> = args
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| {
                    !["embed_dim", "num_heads", "batch_first", "kdim", "vdim"].contains(&k.as_str())
                })
                .collect()
        })
        .unwrap_or_default();
    if !unknown.is_empty() {
        return Err(format!("polyhead lacks module argument(s) {unknown:?}"));
    }
    if args["batch_first"].as_bool() != Some(true) {
        return Err("only batch_first=True is replayed".into());
    }
    let e = args["embed_dim"].as_u64().ok_or("no embed_dim")? as usize;
    let h = args["num_heads"].as_u64().ok_or("no num_heads")? as usize;
    let kdim = args["kdim"].as_u64().map_or(e, |d| d as usize);
    let vdim = args["vdim"].as_u64().map_or(e, |d| d as usize);
    let k = e / h;
    let err = |e: polyhead::tensor::TensorError| e.to_string();
    let mut mha = MultiHeadAttention::<f64>::builder(h, k, e)
        .key_features(kdim)
        .value_features(vdim)
        .build(&mut Rng::new(0))
        .map_err(|e| e.to_string())?;
    load_state_dict(case, &mut mha)?;
    let query: Tensor<f64> = array(&case["query"], "query")?;
    let key: Tensor<f64> = array(&case["key"], "key")?;
    let value: Tensor<f64> = array(&case["value"], "value")?;
    let (b, l, s_len) = (query.shape()[0], query.shape()[1], key.shape()[1]);
    let bool_array = |v: &Value| -> Result<Option<Vec<bool>>, String> {
        if v.is_null() {
            return Ok(None);
        }
        v["data"]
            .as_array()
            .ok_or("mask: no data")?
            .iter()
            .map(|x| x.as_bool().ok_or("mask: not a boolean".to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    let padding = bool_array(&case["key_padding_mask"])?;
    let attn = bool_array(&case["attn_mask"])?;
    let mask = if padding.is_none() && attn.is_none() {
        None
    } else {
        let mut m = Vec::with_capacity(b * l * s_len);
        for bi in 0..b {
            for t in 0..l {
                for si in 0..s_len {
                    let ignored = padding.as_ref().is_some_and(|p| p[bi * s_len + si]);
                    let forbidden = attn.as_ref().is_some_and(|a| a[t * s_len + si]);
                    m.push(if ignored || forbidden { 0.0 } else { 1.0 });
                }
            }
        }
        Some(Tensor::from_vec(m, &[b, l, s_len]).map_err(err)?)
    };
    let tape = Tape::new();
    let (qv, kv, vv) = (tape.leaf(query), tape.leaf(key), tape.leaf(value));
    let y = mha
        .attend(qv, vv, Some(kv), mask.as_ref())
        .map_err(|e| e.to_string())?;
    rule.array("y", &y.value(), &case["y"])?;
    let upstream: Tensor<f64> = array(&case["upstream"], "upstream")?;
    let grads = tape
        .backward(
            y.mul(tape.constant(upstream))
                .map_err(|e| e.to_string())?
                .sum_all(),
        )
        .map_err(|e| e.to_string())?;
    for (what, var) in [("grad_query", qv), ("grad_key", kv), ("grad_value", vv)] {
        rule.array(
            what,
            &grads.wrt(var).map_err(|e| e.to_string())?,
            &case[what],
        )?;
    }
    // polyhead's gradients in PyTorch's layouts.
    let g: Vec<Tensor<f64>> = mha
        .parameters()
        .iter()
        .map(|(name, p)| {
            grads
                .by_id(p.id())
                .cloned()
                .ok_or(format!("no gradient for {name}"))
        })
        .collect::<Result<_, _>>()?;
    let weight_back = |t: &Tensor<f64>, input: usize| -> Result<Tensor<f64>, String> {
        t.reshape(&[input, e])
            .map_err(err)?
            .transpose(0, 1)
            .map_err(err)
            .map(|t| t.to_contiguous())
    };
    let (gq, gk, gv) = (
        weight_back(&g[0], e)?,
        weight_back(&g[2], kdim)?,
        weight_back(&g[4], vdim)?,
    );
    let flat = |t: &Tensor<f64>| t.reshape(&[e]).map_err(err);
    let gbias = Tensor::concat(&[flat(&g[1])?, flat(&g[3])?, flat(&g[5])?], 0).map_err(err)?;
    let want = &case["grad_weights"];
    if want["in_proj_weight"].is_null() {
        rule.array("q_proj_weight", &gq, &want["q_proj_weight"])?;
        rule.array("k_proj_weight", &gk, &want["k_proj_weight"])?;
        rule.array("v_proj_weight", &gv, &want["v_proj_weight"])?;
    } else {
        rule.array(
            "in_proj_weight",
            &Tensor::concat(&[gq, gk, gv], 0).map_err(err)?,
            &want["in_proj_weight"],
        )?;
    }
    // The key bias's gradient is 0 in exact arithmetic: compare the q and
    // v parts, and bound the k part absolutely (FORMAT.md).
    let got = gbias.to_vec();
    let wanted: Tensor<f64> = array(&want["in_proj_bias"], "in_proj_bias")?;
    let largest = got[..e].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(wanted.to_vec()).enumerate() {
        let ok = if (e..2 * e).contains(&i) {
            a.abs() <= 1e-12 * largest.max(1.0) && b.abs() <= 1e-12 * largest.max(1.0)
        } else {
            (a - b).abs() <= 1e-10 * b.abs() + 1e-12
        };
        if !ok {
            return Err(format!("in_proj_bias[{i}]: {a} vs {b}"));
        }
    }
    let gout = g[6]
        .reshape(&[e, e])
        .map_err(err)?
        .transpose(0, 1)
        .map_err(err)?
        .to_contiguous();
    rule.array("out_proj.weight", &gout, &want["out_proj.weight"])?;
    rule.array("out_proj.bias", &g[7], &want["out_proj.bias"])?;
    Ok(())
}
