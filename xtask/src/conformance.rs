//! `cargo xtask conformance FILE...`: runs every case of a fixture file
//! (schema `polyhead-fixtures/losses/v1`, see `fixtures/README.md`)
//! through polyhead and compares value and gradient.
//!
//! A case is mapped to polyhead's API by its framework loss name, options,
//! convention and reduction, never by its id, so a new fixture file of the
//! same schema needs no code. A loss or option polyhead lacks is a failure.

use std::collections::BTreeMap;

use polyhead_autograd::Tape;
use polyhead_losses::{
    BinaryCrossEntropy, BinaryFocalLoss, CategoricalFocalCrossEntropy, CategoricalHinge,
    Convention, CosineEmbedding, CosineSimilarity, CosineTarget, CrossEntropy, Hinge,
    HingeEmbedding, Huber, KlDivergence, Labels, LogCosh, Loss, LossOutput, Mae,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Mse, MultiMargin, Poisson, Reduction,
    SmoothL1, SoftMargin, SparseCrossEntropy, SquaredHinge,
};
use polyhead_tensor::Tensor;
use serde_json::Value;

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseOutcome {
    /// The case id (for the report only).
    pub id: String,
    /// `None` if it passed, else what failed.
    pub failure: Option<String>,
    /// A case of a layer that an open issue is to add (the sequence
    /// layers of #19): not run, reported as not supported, never counted
    /// as passed.
    pub not_supported: Option<String>,
}

impl CaseOutcome {
    /// The outcome of a case that ran: passed if `result` is `Ok`.
    pub fn ran(id: impl Into<String>, result: Result<(), String>) -> Self {
        CaseOutcome {
            id: id.into(),
            failure: result.err(),
            not_supported: None,
        }
    }

    /// Passed: it ran and matched.
    #[cfg(test)]
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.not_supported.is_none()
    }
}

/// Recommended float64 tolerance (FORMAT.md): `|a - b| <= 1e-10 |b| + 1e-12`.
const RTOL: f64 = 1e-10;
const ATOL: f64 = 1e-12;

/// Every fixture file in `dir` that holds cases (setup files are read
/// through the variant files that name them), sorted by name.
pub fn repository_fixture_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let is_json = path.extension().is_some_and(|e| e == "json");
        let is_setup = path
            .file_stem()
            .and_then(|s| s.to_str())
            .is_some_and(|s| s.ends_with("_setup"));
        if is_json && !is_setup {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no fixture files", dir.display()));
    }
    Ok(files)
}

/// Runs every case of a fixture file: a loss file, or a multi-output
/// variant file (whose setup file must sit beside it).
pub fn run_file(path: &std::path::Path, json: &Value) -> Result<Vec<CaseOutcome>, String> {
    match json["schema"].as_str().unwrap_or("") {
        "polyhead-fixtures/losses/v1" => run_loss_file(json),
        "polyhead-fixtures/multi_output_variant/v1" => {
            crate::conformance_multi::run_variant_file(path, json)
        }
        "polyhead-fixtures/layers/v1" => crate::conformance_layers::run_layer_file(json),
        "polyhead-fixtures/multi_output_setup/v1" => {
            Err("a setup file has no cases; pass the variant files that name it".into())
        }
        other => Err(format!("unsupported schema {other:?}")),
    }
}

/// Runs every case of a loss fixture file.
pub fn run_loss_file(json: &Value) -> Result<Vec<CaseOutcome>, String> {
    let schema = json["schema"].as_str().unwrap_or("");
    if schema != "polyhead-fixtures/losses/v1" {
        return Err(format!("unsupported schema {schema:?}"));
    }
    let cases = json["cases"].as_array().ok_or("no `cases` array")?;
    Ok(cases
        .iter()
        .map(|case| CaseOutcome::ran(case["id"].as_str().unwrap_or("?"), run_case(case)))
        .collect())
}

fn tensor(v: &Value, what: &str) -> Result<Tensor<f64>, String> {
    if let Some(x) = v.as_f64() {
        return Ok(Tensor::scalar(x));
    }
    array(v, what)
}

/// A fixture array `{"shape": [...], "data": [...]}` as a tensor of `T`
/// (f32 files: `parse as f64, then cast`, as FORMAT.md specifies).
pub fn array<T: polyhead_tensor::Float>(v: &Value, what: &str) -> Result<Tensor<T>, String> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .ok_or(format!("{what}: no shape"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or(format!("{what}: bad shape"))
        })
        .collect::<Result<_, _>>()?;
    let data = v["data"]
        .as_array()
        .ok_or(format!("{what}: no data"))?
        .iter()
        .map(|d| {
            d.as_f64()
                .map(T::from_f64)
                .ok_or(format!("{what}: non-numeric data"))
        })
        .collect::<Result<_, _>>()?;
    Tensor::from_vec(data, &shape).map_err(|e| format!("{what}: {e}"))
}

fn labels(v: &Value) -> Result<Labels, String> {
    let t = tensor(v, "y_true")?;
    let shape = t.shape().to_vec();
    Labels::new(t.to_vec().iter().map(|&x| x as i64).collect(), &shape).map_err(|e| e.to_string())
}

/// Options of a case, consumed as they are read; any left over at the end
/// are options polyhead lacks.
struct Options(BTreeMap<String, Value>);

impl Options {
    fn f64(&mut self, key: &str, default: f64) -> f64 {
        self.0
            .remove(key)
            .and_then(|v| v.as_f64())
            .unwrap_or(default)
    }
    fn bool(&mut self, key: &str, default: bool) -> bool {
        self.0
            .remove(key)
            .and_then(|v| v.as_bool())
            .unwrap_or(default)
    }
    fn opt_i64(&mut self, key: &str) -> Option<i64> {
        self.0.remove(key).and_then(|v| v.as_i64())
    }
}

fn vec_of(t: &Tensor<f64>) -> Vec<f64> {
    t.to_vec()
}

/// A loss built from a case, by target kind.
enum Built {
    Dense(Box<dyn Loss<f64, Target = Tensor<f64>>>),
    Sparse(Box<dyn Loss<f64, Target = Labels>>),
    Cosine(CosineEmbedding),
}

fn reduction(case: &Value) -> Result<Reduction, String> {
    Ok(match case["reduction"].as_str().unwrap_or("") {
        "sum_over_batch_size" | "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        "mean_with_sample_weight" => Reduction::WeightedMean,
        "batchmean" => Reduction::BatchMean,
        other => return Err(format!("unsupported reduction {other:?}")),
    })
}

fn build(
    case: &Value,
    opts: &mut Options,
    tensor_opts: &mut BTreeMap<String, Value>,
) -> Result<Built, String> {
    let r = reduction(case)?;
    let name = case["loss"].as_str().unwrap_or("");
    let mut class_weights = || -> Result<Option<Vec<f64>>, String> {
        tensor_opts
            .remove("weight")
            .map(|w| tensor(&w, "weight").map(|t| vec_of(&t)))
            .transpose()
    };
    let built = match case["convention"].as_str().unwrap_or("") {
        "keras" => {
            let k = Convention::Keras;
            match name {
                "categorical_crossentropy" => {
                    let ce = if opts.bool("from_logits", false) {
                        CrossEntropy::from_logits()
                    } else {
                        CrossEntropy::from_probabilities()
                    };
                    let ce = ce.label_smoothing(opts.f64("label_smoothing", 0.0));
                    let ce = match opts.opt_i64("axis") {
                        Some(a) => ce.class_axis(a as isize),
                        None => ce,
                    };
                    Built::Dense(Box::new(ce.convention(k).reduction(r)))
                }
                "sparse_categorical_crossentropy" => {
                    let ce = if opts.bool("from_logits", false) {
                        SparseCrossEntropy::from_logits()
                    } else {
                        SparseCrossEntropy::from_probabilities()
                    };
                    let ce = match opts.opt_i64("ignore_class") {
                        Some(i) => ce.ignore_index(i),
                        None => ce,
                    };
                    Built::Sparse(Box::new(ce.convention(k).reduction(r)))
                }
                "binary_crossentropy" => {
                    let bce = if opts.bool("from_logits", false) {
                        BinaryCrossEntropy::from_logits()
                    } else {
                        BinaryCrossEntropy::from_probabilities()
                    };
                    Built::Dense(Box::new(
                        bce.label_smoothing(opts.f64("label_smoothing", 0.0))
                            .convention(k)
                            .reduction(r),
                    ))
                }
                "binary_focal_crossentropy" => {
                    let f = if opts.bool("from_logits", false) {
                        BinaryFocalLoss::from_logits()
                    } else {
                        BinaryFocalLoss::from_probabilities()
                    };
                    let f = f
                        .gamma(opts.f64("gamma", 2.0))
                        .label_smoothing(opts.f64("label_smoothing", 0.0));
                    let alpha = opts.f64("alpha", 0.25);
                    let f = if opts.bool("apply_class_balancing", false) {
                        f.alpha(alpha)
                    } else {
                        f
                    };
                    Built::Dense(Box::new(f.convention(k).reduction(r)))
                }
                "categorical_focal_crossentropy" => {
                    let f = if opts.bool("from_logits", false) {
                        CategoricalFocalCrossEntropy::from_logits()
                    } else {
                        CategoricalFocalCrossEntropy::from_probabilities()
                    };
                    let f = f
                        .alpha(opts.f64("alpha", 0.25))
                        .gamma(opts.f64("gamma", 2.0));
                    Built::Dense(Box::new(f.convention(k).reduction(r)))
                }
                "categorical_hinge" => {
                    Built::Dense(Box::new(CategoricalHinge::new().convention(k).reduction(r)))
                }
                "hinge" => Built::Dense(Box::new(Hinge::new().convention(k).reduction(r))),
                "squared_hinge" => {
                    Built::Dense(Box::new(SquaredHinge::new().convention(k).reduction(r)))
                }
                "cosine_similarity" => {
                    let axis = opts.f64("axis", -1.0);
                    if axis != -1.0 {
                        return Err(format!(
                            "cosine_similarity: axis {axis} is not supported (only -1)"
                        ));
                    }
                    Built::Dense(Box::new(CosineSimilarity::new().convention(k).reduction(r)))
                }
                "huber" => Built::Dense(Box::new(
                    Huber::new(opts.f64("delta", 1.0))
                        .convention(k)
                        .reduction(r),
                )),
                "kl_divergence" => {
                    Built::Dense(Box::new(KlDivergence::new().convention(k).reduction(r)))
                }
                "log_cosh" => Built::Dense(Box::new(LogCosh::new().convention(k).reduction(r))),
                "mean_absolute_error" => {
                    Built::Dense(Box::new(Mae::new().convention(k).reduction(r)))
                }
                "mean_absolute_percentage_error" => Built::Dense(Box::new(
                    MeanAbsolutePercentageError::new()
                        .convention(k)
                        .reduction(r),
                )),
                "mean_squared_error" => {
                    Built::Dense(Box::new(Mse::new().convention(k).reduction(r)))
                }
                "mean_squared_logarithmic_error" => Built::Dense(Box::new(
                    MeanSquaredLogarithmicError::new()
                        .convention(k)
                        .reduction(r),
                )),
                "poisson" => Built::Dense(Box::new(Poisson::new().convention(k).reduction(r))),
                other => return Err(format!("polyhead has no Keras loss {other:?}")),
            }
        }
        "pytorch" => {
            let t = Convention::PyTorch;
            match name {
                "cross_entropy" => {
                    let smoothing = opts.f64("label_smoothing", 0.0);
                    let weights = class_weights()?;
                    if opts.bool("probability_targets", false) {
                        let ce = CrossEntropy::from_logits()
                            .label_smoothing(smoothing)
                            .convention(t)
                            .reduction(r);
                        Built::Dense(Box::new(match weights {
                            Some(w) => ce.class_weights(w),
                            None => ce,
                        }))
                    } else {
                        let ce = SparseCrossEntropy::from_logits()
                            .label_smoothing(smoothing)
                            .convention(t)
                            .reduction(r);
                        let ce = match opts.opt_i64("ignore_index") {
                            Some(i) => ce.ignore_index(i),
                            None => ce.ignore_index(-100),
                        };
                        Built::Sparse(Box::new(match weights {
                            Some(w) => ce.class_weights(w),
                            None => ce,
                        }))
                    }
                }
                "nll_loss" => {
                    let ce = SparseCrossEntropy::from_log_probabilities()
                        .convention(t)
                        .reduction(r);
                    let ce = ce.ignore_index(opts.opt_i64("ignore_index").unwrap_or(-100));
                    Built::Sparse(Box::new(match class_weights()? {
                        Some(w) => ce.class_weights(w),
                        None => ce,
                    }))
                }
                "binary_cross_entropy" => Built::Dense(Box::new(
                    BinaryCrossEntropy::from_probabilities()
                        .convention(t)
                        .reduction(r),
                )),
                "binary_cross_entropy_with_logits" => {
                    let bce = BinaryCrossEntropy::from_logits().convention(t).reduction(r);
                    let bce = match tensor_opts.remove("pos_weight") {
                        Some(pw) => bce.pos_weight(vec_of(&tensor(&pw, "pos_weight")?)),
                        None => bce,
                    };
                    Built::Dense(Box::new(bce))
                }
                "sigmoid_focal_loss" => {
                    let f = BinaryFocalLoss::from_logits().gamma(opts.f64("gamma", 2.0));
                    let alpha = opts.f64("alpha", 0.25);
                    let f = if alpha >= 0.0 { f.alpha(alpha) } else { f };
                    Built::Dense(Box::new(f.convention(t).reduction(r)))
                }
                "mse_loss" => Built::Dense(Box::new(Mse::new().convention(t).reduction(r))),
                "l1_loss" => Built::Dense(Box::new(Mae::new().convention(t).reduction(r))),
                "huber_loss" => Built::Dense(Box::new(
                    Huber::new(opts.f64("delta", 1.0))
                        .convention(t)
                        .reduction(r),
                )),
                "smooth_l1_loss" => Built::Dense(Box::new(
                    SmoothL1::new(opts.f64("beta", 1.0))
                        .convention(t)
                        .reduction(r),
                )),
                "kl_div" => Built::Dense(Box::new(
                    KlDivergence::new()
                        .log_target(opts.bool("log_target", false))
                        .convention(t)
                        .reduction(r),
                )),
                "poisson_nll_loss" => {
                    let p = Poisson::new()
                        .log_input(opts.bool("log_input", true))
                        .full(opts.bool("full", false))
                        .eps(opts.f64("eps", 1e-8));
                    Built::Dense(Box::new(p.convention(t).reduction(r)))
                }
                "cosine_embedding_loss" => Built::Cosine(
                    CosineEmbedding::new(opts.f64("margin", 0.0))
                        .convention(t)
                        .reduction(r),
                ),
                "hinge_embedding_loss" => Built::Dense(Box::new(
                    HingeEmbedding::new(opts.f64("margin", 1.0))
                        .convention(t)
                        .reduction(r),
                )),
                "soft_margin_loss" => {
                    Built::Dense(Box::new(SoftMargin::new().convention(t).reduction(r)))
                }
                "multi_margin_loss" => {
                    let m = MultiMargin::new()
                        .p(opts.f64("p", 1.0) as i32)
                        .margin(opts.f64("margin", 1.0))
                        .convention(t)
                        .reduction(r);
                    Built::Sparse(Box::new(match class_weights()? {
                        Some(w) => m.class_weights(w),
                        None => m,
                    }))
                }
                other => return Err(format!("polyhead has no PyTorch loss {other:?}")),
            }
        }
        other => return Err(format!("unknown convention {other:?}")),
    };
    Ok(built)
}

fn compare(what: &str, got: &Tensor<f64>, want: &Tensor<f64>, atol: f64) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "{what}: shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let mut worst: Option<(usize, f64, f64, f64)> = None;
    for (i, (&g, &w)) in got.to_vec().iter().zip(&want.to_vec()).enumerate() {
        let excess = (g - w).abs() - (RTOL * w.abs() + atol);
        let fails = excess.is_nan() || excess > 0.0;
        if fails && worst.is_none_or(|(_, _, _, e)| excess > e || excess.is_nan()) {
            worst = Some((i, g, w, excess));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, g, w, _)) => Err(format!(
            "{what}[{i}]: got {g:e}, expected {w:e} (diff {:e})",
            (g - w).abs()
        )),
    }
}

fn run_case(case: &Value) -> Result<(), String> {
    let mut opts = Options(
        case["options"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    );
    let mut tensor_opts: BTreeMap<String, Value> = case["tensor_options"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let pred = tensor(&case["y_pred"], "y_pred")?;
    let mut sample_weight = match &case["sample_weight"] {
        Value::Null => None,
        w => Some(tensor(w, "sample_weight")?),
    };
    let built = build(case, &mut opts, &mut tensor_opts)?;
    // PyTorch's element `weight` of the elementwise losses is a sample weight
    // broadcast against the prediction.
    if let Some(w) = tensor_opts.remove("weight") {
        sample_weight = Some(tensor(&w, "weight")?);
    }
    let cosine_sign = tensor_opts
        .remove("target")
        .map(|t| tensor(&t, "target"))
        .transpose()?;
    if !opts.0.is_empty() || !tensor_opts.is_empty() {
        let keys: Vec<&String> = opts.0.keys().chain(tensor_opts.keys()).collect();
        return Err(format!(
            "polyhead lacks option(s) {keys:?} for {}",
            case["loss"]
        ));
    }
    let sw = sample_weight.as_ref();
    let y_true = &case["y_true"];
    let dense = || tensor(y_true, "y_true");
    let out: LossOutput<f64> = match &built {
        Built::Dense(l) => l.value_and_grad(&pred, &dense()?, sw),
        Built::Sparse(l) => l.value_and_grad(&pred, &labels(y_true)?, sw),
        Built::Cosine(l) => {
            let sign = cosine_sign
                .clone()
                .ok_or("cosine_embedding_loss needs tensor option `target`")?;
            l.value_and_grad(
                &pred,
                &CosineTarget {
                    other: dense()?,
                    sign,
                },
                sw,
            )
        }
    }
    .map_err(|e| format!("polyhead error: {e}"))?;

    let value_atol = case["tolerance"]["value_atol"].as_f64().unwrap_or(ATOL);
    compare(
        "value",
        &out.value,
        &tensor(&case["value"], "value")?,
        value_atol,
    )?;
    compare(
        "grad_y_pred",
        &out.grad,
        &tensor(&case["grad_y_pred"], "grad_y_pred")?,
        ATOL,
    )?;

    // Where y_pred was made from logits, check the gradient through the
    // activation too, with the loss recorded on the tape.
    if let (Some(act), false) = (case["logits_to_y_pred"].as_str(), case["logits"].is_null()) {
        let logits = tensor(&case["logits"], "logits")?;
        let tape = Tape::<f64>::new();
        let x = tape.leaf(logits);
        let axis = case["class_axis"].as_i64().unwrap_or(-1) as isize;
        let y = match act {
            "softmax" => x.softmax(axis),
            "log_softmax" => x.log_softmax(axis),
            "sigmoid" => Ok(x.sigmoid()),
            other => return Err(format!("unknown activation {other:?}")),
        }
        .map_err(|e| e.to_string())?;
        let loss = match &built {
            Built::Dense(l) => l.record(y, &dense()?, sw),
            Built::Sparse(l) => l.record(y, &labels(y_true)?, sw),
            Built::Cosine(_) => return Err("cosine loss from logits".into()),
        }
        .map_err(|e| e.to_string())?;
        let seed = Tensor::ones(&loss.shape()).map_err(|e| e.to_string())?;
        let grads = tape
            .backward_with_seed(loss, &seed)
            .map_err(|e| e.to_string())?;
        let g = grads.wrt(x).map_err(|e| e.to_string())?;
        compare(
            "grad_logits",
            &g,
            &tensor(&case["grad_logits"], "grad_logits")?,
            ATOL,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    fn fixture(name: &str) -> Value {
        let path = fixture_path(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    fn assert_all_pass(name: &str) {
        let outcomes = run_loss_file(&fixture(name)).unwrap();
        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.id)))
            .collect();
        assert!(
            outcomes.len() > 300,
            "{name}: only {} cases",
            outcomes.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {} cases fail:\n{}",
            failures.len(),
            outcomes.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn every_keras_loss_case_matches() {
        assert_all_pass("losses_keras_f64.json");
    }

    #[test]
    fn every_pytorch_loss_case_matches() {
        assert_all_pass("losses_torch_f64.json");
    }

    /// The acceptance test of the derive: Keras' multi-output runs (SGD f32
    /// and f64, a custom loss with weights 0.3/2.0, Adam for three steps)
    /// replayed on a `#[derive(MultiOutput)]` model.
    #[test]
    fn every_multi_output_variant_matches_keras() {
        for name in [
            "multi_output_sgd_f32.json",
            "multi_output_sgd_f64.json",
            "multi_output_custom_f32.json",
            "multi_output_adam3_f32.json",
        ] {
            let outcomes = run_file(&fixture_path(name), &fixture(name)).unwrap();
            let failures: Vec<String> = outcomes
                .iter()
                .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.id)))
                .collect();
            assert!(
                outcomes.len() >= 6,
                "{name}: only {} checks",
                outcomes.len()
            );
            assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
        }
    }

    #[test]
    fn an_unknown_loss_or_option_fails_instead_of_being_skipped() {
        let mut json = fixture("losses_torch_f64.json");
        let cases = json["cases"].as_array_mut().unwrap();
        cases.truncate(2);
        cases[0]["loss"] = Value::from("triplet_margin_loss");
        cases[1]["options"]["swap"] = Value::from(true);
        let outcomes = run_loss_file(&json).unwrap();
        assert_eq!(
            outcomes[0].failure.as_deref(),
            Some("polyhead has no PyTorch loss \"triplet_margin_loss\"")
        );
        assert!(
            outcomes[1]
                .failure
                .as_deref()
                .unwrap()
                .starts_with("polyhead lacks option(s) [\"swap\"]")
        );
    }

    /// `cargo xtask conformance` with no arguments: every case file of the
    /// repository's `fixtures/` passes (the losses, and each multi-output
    /// variant with its setup file beside it).
    #[test]
    fn every_fixture_file_of_the_repository_passes() {
        let dir = fixture_path("");
        let files = repository_fixture_files(&dir).unwrap();
        assert!(files.len() >= 6, "{files:?}");
        let (mut passed, mut not_supported) = (0, 0);
        for file in &files {
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            for o in run_file(file, &json).unwrap() {
                assert!(
                    o.failure.is_none(),
                    "{}: {}: {:?}",
                    file.display(),
                    o.id,
                    o.failure
                );
                if o.passed() {
                    passed += 1;
                } else {
                    not_supported += 1;
                }
            }
        }
        assert!(passed >= 1018, "only {passed} cases");
        // Every case of the repository's files runs.
        assert_eq!(not_supported, 0, "{not_supported} cases not supported");
    }

    /// The copies in `fixtures/` are byte-identical to the files listed in
    /// `fixtures/SHA256SUMS` (the digests of the framework-computed
    /// originals), and every JSON file there is listed.
    #[test]
    fn repository_fixtures_match_their_recorded_digests() {
        use sha2::Digest;
        let dir = fixture_path("");
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let mut listed = std::collections::BTreeSet::new();
        for line in sums.lines() {
            let (digest, name) = line.split_once("  ").expect("`DIGEST  NAME` lines");
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let actual: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(actual, digest, "{name} differs from the recorded original");
            listed.insert(name.to_string());
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                assert!(listed.contains(&name), "{name} is not in SHA256SUMS");
            }
        }
    }
}
