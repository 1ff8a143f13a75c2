//! Keras weights in: [`load_keras_weights`] and its name map.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use polyhead_tensor::{Float, Tensor};

use crate::error::{LayerError, Result};
use crate::import::{Kind, NameMap, layers, model_values, set_values, split};
use crate::module::Module;

/// Where each polyhead layer's weights are in a Keras weights file: by
/// default a layer at `hidden` reads Keras' layer `hidden`, and a layer at
/// `body.0` reads `body/layers/0`; [`layer`](Self::layer) maps one
/// elsewhere.
///
/// ```
/// let names = polyhead_layers::KerasNames::new().layer("body.0", "sequential/layers/conv2d");
/// # let _ = names;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KerasNames {
    layers: NameMap,
}

impl KerasNames {
    /// Every layer under its own name.
    ///
    /// ```
    /// let names = polyhead_layers::KerasNames::new();
    /// # let _ = names;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The polyhead layer (or container) at `polyhead` reads the Keras
    /// layer at `keras` (a path of layer names joined by `/layers/`, as
    /// Keras nests them); layers inside keep their relative names.
    ///
    /// ```
    /// let names = polyhead_layers::KerasNames::new().layer("class", "class_output");
    /// # let _ = names;
    /// ```
    pub fn layer(mut self, polyhead: &str, keras: &str) -> Self {
        self.layers.push(polyhead, keras);
        self
    }

    /// The group (under the file's root) of polyhead layer prefix `prefix`.
    fn group(&self, prefix: &str) -> String {
        let (head, tail) = self.layers.resolve(prefix);
        let head = head.unwrap_or("").to_string();
        let tail: Vec<&str> = tail.split('.').filter(|s| !s.is_empty()).collect();
        let mut path = head;
        for part in tail {
            if !path.is_empty() {
                path.push_str("/layers/");
            }
            path.push_str(part);
        }
        format!("layers/{path}")
    }
}

/// Keras weights in (feature `keras-h5`, which needs libhdf5: Debian's
/// `libhdf5-dev`): a Keras 3 `model.save_weights("model.weights.h5")` file
/// loaded into the polyhead model of the same architecture. Polyhead keeps
/// Keras' layouts, so values move as they are; what is read from where:
///
/// | polyhead layer at `P` | the file's datasets |
/// | --- | --- |
/// | `Dense`, convolutions, `BatchNormalization`, `LayerNorm`, `Embedding` | `layers/K/vars/0, 1, ...` in Keras' order (kernel, bias; gamma, beta, moving mean, moving variance; embeddings) |
/// | `Lstm`, `Gru` | `layers/K/cell/vars/0..2` (kernel, recurrent kernel, bias) |
/// | `Bidirectional` | `layers/K/forward_layer/cell/vars/*`, `layers/K/backward_layer/cell/vars/*` |
/// | `MultiHeadAttention` | `layers/K/query_dense/vars/*`, `key_dense`, `value_dense`, `output_dense` (a leading `_` accepted too) |
///
/// `K` is the Keras layer's name: by default the polyhead layer's, with a
/// container's children as `container/layers/child`; [`KerasNames`] maps
/// others (Keras names layers `dense`, `dense_1`, ... unless told). Every
/// mismatch is listed at once and nothing is loaded.
///
/// Loads a Keras 3 `.weights.h5` file into `model`. Every mismatch is listed in one error and nothing
/// is loaded.
///
/// ```no_run
/// use polyhead_layers::{load_keras_weights, Dense, KerasNames};
/// let mut dense = Dense::<f32>::new(784, 64, &mut polyhead_tensor::Rng::new(0))?;
/// load_keras_weights("model.weights.h5", &mut dense, &KerasNames::new().layer("", "dense"))?;
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub fn load_keras_weights<T: Float>(
    path: impl AsRef<Path>,
    model: &mut dyn Module<T>,
    names: &KerasNames,
) -> Result<()> {
    let path = path.as_ref();
    let fail = |message: String| LayerError::KerasWeights {
        path: path.display().to_string(),
        message,
    };
    // libhdf5 prints a diagnostic for every failed lookup (this function
    // probes for optional groups); the errors still arrive as `Result`s.
    hdf5::silence_errors(true);
    let file = hdf5::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let wanted = model_values(model);
    let mut problems = Vec::new();
    let mut read: BTreeSet<String> = BTreeSet::new();
    let mut values: HashMap<String, Tensor<f64>> = HashMap::new();
    for (prefix, kind) in layers(&wanted) {
        let group = names.group(&prefix);
        // This layer's values, in the model's order (Keras' order), each
        // with the sub-layer whose `vars` hold it.
        let mine: Vec<(&String, &Vec<usize>, String)> = wanted
            .iter()
            .filter_map(|(n, shape)| {
                let (p, local) = split(n);
                (p == prefix).then_some((n, shape, local))
            })
            .collect();
        let mut counters: HashMap<String, usize> = HashMap::new();
        for (name, shape, local) in mine {
            // The first of the sub-layer's possible names the file has.
            let candidates = owner(kind, &local);
            let sub = candidates
                .iter()
                .find(|sub| file.link_exists(&format!("{group}{sub}")))
                .unwrap_or(&candidates[0])
                .clone();
            let vars = format!("{group}{sub}/vars");
            let index = counters.entry(vars.clone()).or_insert(0);
            let dataset = format!("{vars}/{index}");
            *index += 1;
            read.insert(dataset.clone());
            match file.dataset(&dataset) {
                Err(_) => problems.push(format!(
                    "{name}: the file has no {dataset} (the model's shape is {shape:?})"
                )),
                Ok(ds) => {
                    let got = ds.shape();
                    if &got != shape {
                        problems.push(format!(
                            "{name}: {dataset} has shape {got:?}, the model has {shape:?}"
                        ));
                        continue;
                    }
                    match ds.read_raw::<f64>() {
                        Err(e) => problems.push(format!("{name}: {dataset}: {e}")),
                        Ok(v) => match v.iter().position(|x| !x.is_finite()) {
                            Some(i) => problems.push(format!(
                                "{name}: {dataset} holds {} at flat index {i}",
                                v[i]
                            )),
                            None => {
                                values.insert(name.clone(), Tensor::from_vec(v, shape)?);
                            }
                        },
                    }
                }
            }
        }
    }
    // Every weight in the file that no layer read.
    let mut stored = Vec::new();
    if let Ok(root) = file.group("layers") {
        collect_vars(&root, "layers", &mut stored);
    }
    for dataset in stored {
        if !read.contains(&dataset) {
            problems.push(format!("{dataset}: in the file but not read by the model"));
        }
    }
    if !problems.is_empty() {
        return Err(fail(format!(
            "does not fit the model:\n  {}",
            problems.join("\n  ")
        )));
    }
    set_values(model, &values)
}

/// The sub-layer paths (below the layer's group) whose `vars` may hold
/// value `local` of a layer of `kind`, the usual first. Attention's
/// projections are `query_dense`... in the files Keras 3.15 writes (checked
/// against one, `tests/keras_h5/`); the attributes' names in Keras' source,
/// `_query_dense`..., are accepted too.
fn owner(kind: Kind, local: &str) -> Vec<String> {
    let first = local.split('.').next().unwrap_or(local);
    let one = |s: &str| vec![s.to_string()];
    match kind {
        Kind::Recurrent => one("/cell"),
        Kind::Bidirectional if first.starts_with("forward_") => one("/forward_layer/cell"),
        Kind::Bidirectional => one("/backward_layer/cell"),
        Kind::Attention => {
            let projection = match first {
                "query" => "query_dense",
                "key" => "key_dense",
                "value" => "value_dense",
                _ => "output_dense",
            };
            vec![format!("/{projection}"), format!("/_{projection}")]
        }
        _ => one(""),
    }
}

/// Every `.../vars/N` dataset under `group` (at `path`).
fn collect_vars(group: &hdf5::Group, path: &str, out: &mut Vec<String>) {
    for member in group.member_names().unwrap_or_default() {
        let child = format!("{path}/{member}");
        if let Ok(g) = group.group(&member) {
            collect_vars(&g, &child, out);
        } else if path.ends_with("/vars") {
            out.push(child);
        }
    }
}
