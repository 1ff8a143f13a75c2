//! What weight import from other frameworks shares (`torch.rs`,
//! `keras_h5.rs`): recognising a model's layers from its values' names and
//! shapes, mapping polyhead layer names to the other framework's, and
//! setting the values once every one of them has been found and checked.

use std::collections::{BTreeSet, HashMap};

use polyhead_tensor::{Float, Tensor};

use crate::error::Result;
use crate::module::Module;

/// Polyhead layer prefixes mapped to another framework's names; the
/// longest mapped prefix of a layer wins and the rest of its name follows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NameMap {
    layers: Vec<(String, String)>,
}

impl NameMap {
    pub(crate) fn push(&mut self, polyhead: &str, other: &str) {
        self.layers.push((polyhead.to_string(), other.to_string()));
    }

    /// The mapped name of the longest mapped prefix of `prefix` (if any)
    /// and the dotted rest of `prefix` after it.
    pub(crate) fn resolve<'p>(&self, prefix: &'p str) -> (Option<&str>, &'p str) {
        let best = self
            .layers
            .iter()
            .filter(|(p, _)| {
                p == prefix
                    || (prefix.starts_with(p.as_str()) && prefix[p.len()..].starts_with('.'))
            })
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((p, other)) => (Some(other.as_str()), &prefix[p.len()..]),
            None => (None, prefix),
        }
    }
}

/// Every value of `model` (parameters, then buffers) with its shape.
pub(crate) fn model_values<T: Float>(model: &dyn Module<T>) -> Vec<(String, Vec<usize>)> {
    let mut values: Vec<(String, Vec<usize>)> = model
        .parameters()
        .into_iter()
        .map(|(n, p)| (n, p.value().shape().to_vec()))
        .collect();
    values.extend(
        model
            .buffers()
            .into_iter()
            .map(|(n, b)| (n, b.value().shape().to_vec())),
    );
    values
}

/// Sets each of `model`'s values found in `values` (checked beforehand:
/// shapes agree and every number is finite).
pub(crate) fn set_values<T: Float>(
    model: &mut dyn Module<T>,
    values: &HashMap<String, Tensor<f64>>,
) -> Result<()> {
    let as_t = |t: &Tensor<f64>| -> Result<Tensor<T>> {
        Ok(Tensor::from_vec(
            t.to_vec().into_iter().map(T::from_f64).collect(),
            t.shape(),
        )?)
    };
    for (name, b) in model.buffers() {
        if let Some(t) = values.get(&name) {
            b.set_value(as_t(t)?)?;
        }
    }
    for (name, p) in model.parameters_mut() {
        if let Some(t) = values.get(&name) {
            p.set_value(as_t(t)?)?;
        }
    }
    Ok(())
}

/// What a polyhead layer is, as far as its values' layout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `kernel` (2-, 3- or 4-D) and maybe `bias`.
    Kernel,
    /// `kernel`, `recurrent_kernel`, maybe `bias`.
    Recurrent,
    /// `forward_<cell>.*` and `backward_<cell>.*`.
    Bidirectional,
    /// `query.kernel`, ... `attention_output.bias`.
    Attention,
    /// `gamma`/`beta` and the moving statistics.
    BatchNorm,
    /// `gamma`/`beta` alone.
    LayerNorm,
    /// `embeddings`.
    Embedding,
}

/// A value's layer prefix and its name within the layer (for attention
/// and bidirectional layers, with their sub-layer's name).
pub(crate) fn split(name: &str) -> (String, String) {
    let parts: Vec<&str> = name.split('.').collect();
    let n = parts.len();
    let nested = n >= 2
        && (["query", "key", "value", "attention_output"].contains(&parts[n - 2])
            || parts[n - 2].starts_with("forward_")
            || parts[n - 2].starts_with("backward_"));
    let keep = if nested { n - 2 } else { n - 1 };
    (parts[..keep].join("."), parts[keep..].join("."))
}

/// The model's layers: each value's layer prefix and the layer's kind, in
/// the order the values come.
pub(crate) fn layers(wanted: &[(String, Vec<usize>)]) -> Vec<(String, Kind)> {
    let mut groups: Vec<(String, BTreeSet<String>)> = Vec::new();
    for (name, _) in wanted {
        let (prefix, local) = split(name);
        match groups.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, locals)) => {
                locals.insert(local);
            }
            None => groups.push((prefix, BTreeSet::from([local]))),
        }
    }
    groups
        .into_iter()
        .map(|(prefix, locals)| {
            let has = |l: &str| locals.contains(l);
            let kind = if has("query.kernel") {
                Kind::Attention
            } else if locals.iter().any(|l| l.starts_with("forward_")) {
                Kind::Bidirectional
            } else if has("recurrent_kernel") {
                Kind::Recurrent
            } else if has("embeddings") {
                Kind::Embedding
            } else if has("moving_mean") {
                Kind::BatchNorm
            } else if has("gamma") || has("beta") {
                Kind::LayerNorm
            } else {
                Kind::Kernel
            };
            (prefix, kind)
        })
        .collect()
}
