//! PyTorch weights in: [`load_torch_state_dict`] and its name map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use polyhead_tensor::{Float, Tensor};
use safetensors::{Dtype, SafeTensors};

use crate::error::{LayerError, Result};
use crate::import::{Kind, NameMap, layers, model_values, set_values};
use crate::module::Module;

/// Where each polyhead layer's weights are in the PyTorch `state_dict`:
/// by default a layer at `hidden` reads PyTorch's module `hidden`
/// (`hidden.weight`, ...); [`layer`](Self::layer) maps one elsewhere.
///
/// ```
/// let names = polyhead_layers::TorchNames::new().layer("hidden", "backbone.0").layer("class", "heads.class");
/// # let _ = names;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorchNames {
    layers: NameMap,
}

impl TorchNames {
    /// Every layer under its own name.
    ///
    /// ```
    /// let names = polyhead_layers::TorchNames::new();
    /// # let _ = names;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The polyhead layer (or container) at `polyhead` reads PyTorch's
    /// module at `torch`; layers inside it keep their relative names.
    ///
    /// ```
    /// let names = polyhead_layers::TorchNames::new().layer("trunk", "features");
    /// # let _ = names;
    /// ```
    pub fn layer(mut self, polyhead: &str, torch: &str) -> Self {
        self.layers.push(polyhead, torch);
        self
    }

    /// The PyTorch module prefix of polyhead layer prefix `prefix`.
    fn torch_prefix(&self, prefix: &str) -> String {
        match self.layers.resolve(prefix) {
            (Some(torch), rest) => format!("{torch}{rest}"),
            (None, rest) => rest.to_string(),
        }
    }
}

/// `prefix.name`, or `name` at the top.
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The `state_dict`'s tensors, as f64, which were read, and which were
/// asked for but missing.
struct StateDict {
    tensors: BTreeMap<String, Tensor<f64>>,
    used: BTreeSet<String>,
    missing: Vec<String>,
}

impl StateDict {
    /// Tensor `name`, or `None` with `name` noted as missing.
    fn take(&mut self, name: &str) -> Option<Tensor<f64>> {
        match self.tensors.get(name) {
            Some(t) => {
                self.used.insert(name.to_string());
                Some(t.clone())
            }
            None => {
                self.missing.push(name.to_string());
                None
            }
        }
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// PyTorch weights in: a `state_dict` saved as safetensors
/// (`safetensors.torch.save_file(model.state_dict(), path)`) loaded into a
/// polyhead model, each tensor moved from PyTorch's layout to polyhead's
/// (Keras') one. Which conversion a parameter needs is read from the
/// polyhead layer it belongs to, recognised by its parameters' names and
/// shapes:
///
/// | polyhead layer | its values | PyTorch's tensors |
/// | --- | --- | --- |
/// | `Dense` | `kernel [in, out]`, `bias` | `Linear`: `weight [out, in]` (transposed), `bias` |
/// | `Conv1D` | `kernel [k, in, out]` | `Conv1d`: `weight [out, in, k]` |
/// | `Conv2D`, `Conv2DTranspose` | `kernel [kh, kw, a, b]` | `Conv2d` `[out, in/groups, kh, kw]`, `ConvTranspose2d` `[in, out, kh, kw]` |
/// | `DepthwiseConv2D` | `kernel [kh, kw, C, M]` | `Conv2d(groups=C)`: `weight [C*M, 1, kh, kw]` |
/// | `BatchNormalization` | `gamma`, `beta`, `moving_mean`, `moving_variance` | `weight`, `bias`, `running_mean`, `running_var` (`num_batches_tracked` ignored) |
/// | `LayerNorm` | `gamma`, `beta` | `weight`, `bias` |
/// | `Embedding` | `embeddings` | `weight` |
/// | `Lstm` | `kernel [in, 4U]`, `recurrent_kernel [U, 4U]`, `bias [4U]` | `weight_ih_l0 [4U, in]`, `weight_hh_l0`, `bias_ih_l0 + bias_hh_l0` (gates i, f, g, o in both) |
/// | `Gru` (reset_after) | `kernel [in, 3U]`, `recurrent_kernel`, `bias [2, 3U]` | the same names, gates r, z, n reordered to z, r, h; the two biases as the two rows |
/// | `Bidirectional` | `forward_lstm.*`, `backward_lstm.*` (or `_gru`) | one module's `*_l0` and `*_l0_reverse` |
/// | `MultiHeadAttention` | `query/key/value.kernel [in, H, K]` and `.bias [H, K]`, `attention_output.kernel [H, K, E]`, `.bias` | `in_proj_weight [3E, E]` (or `q/k/v_proj_weight`), `in_proj_bias`, `out_proj.weight`, `out_proj.bias` |
///
/// Only weights move: a layer's settings are the model's to match (PyTorch's
/// `eps` of 1e-5 for `LayerNorm` and `BatchNorm` against Keras' 1e-3,
/// `BatchNormalization::pytorch()` for its moving statistics, `Padding`).
/// A polyhead layer at `hidden` reads PyTorch's module at `hidden` unless
/// [`TorchNames`] maps it elsewhere. Every mismatch (a tensor missing, one
/// left over, a shape that does not convert, another dtype, a non-finite
/// value) is reported at once and nothing is loaded, as with checkpoints.
///
/// Loads a PyTorch `state_dict` saved as safetensors into `model`. Every mismatch is listed in one
/// error and nothing is loaded.
///
/// ```
/// use polyhead_layers::{load_torch_state_dict, Dense, Module, TorchNames};
/// use polyhead_tensor::{Rng, Tensor};
/// // A torch.nn.Linear(2, 3) state_dict: weight [3, 2], bias [3].
/// let weight: Vec<f32> = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let bias: Vec<f32> = vec![0.5, 0.0, -0.5];
/// let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
/// let (w, b) = (bytes(&weight), bytes(&bias));
/// let tensors = [
///     ("weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2], &w).unwrap()),
///     ("bias", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &b).unwrap()),
/// ];
/// let path = std::env::temp_dir().join(format!("polyhead-doc-torch-{}.safetensors", std::process::id()));
/// safetensors::serialize_to_file(tensors, None, &path).unwrap();
///
/// let mut dense = Dense::<f32>::new(2, 3, &mut Rng::new(0))?;
/// load_torch_state_dict(&path, &mut dense, &TorchNames::new())?;
/// assert_eq!(dense.kernel().value().to_vec(), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]); // transposed
///
/// let mut wrong = Dense::<f32>::new(3, 3, &mut Rng::new(0))?;
/// let err = load_torch_state_dict(&path, &mut wrong, &TorchNames::new()).unwrap_err();
/// assert!(err.to_string().contains("kernel: weight [3, 2] converts to [2, 3], the model has [3, 3]"), "{err}");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub fn load_torch_state_dict<T: Float>(
    path: impl AsRef<Path>,
    model: &mut dyn Module<T>,
    names: &TorchNames,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| error(path, format!("cannot read: {e}")))?;
    load_torch_state_dict_bytes(&path.display().to_string(), &bytes, model, names)
}

/// [`load_torch_state_dict`] from bytes in memory (`what` names them in
/// errors).
///
/// ```
/// use polyhead_layers::{load_torch_state_dict_bytes, Dense, TorchNames};
/// let mut dense = Dense::<f32>::new(2, 3, &mut polyhead_tensor::Rng::new(0))?;
/// let err = load_torch_state_dict_bytes("upload", b"nonsense", &mut dense, &TorchNames::new()).unwrap_err();
/// assert!(err.to_string().starts_with("state_dict upload: not a valid safetensors file"));
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub fn load_torch_state_dict_bytes<T: Float>(
    what: &str,
    bytes: &[u8],
    model: &mut dyn Module<T>,
    names: &TorchNames,
) -> Result<()> {
    let path = Path::new(what);
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| error(path, format!("not a valid safetensors file: {e}")))?;
    let mut problems = Vec::new();
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        if name.ends_with("num_batches_tracked") {
            continue; // BatchNorm's step counter: polyhead keeps none.
        }
        let values: Vec<f64> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            other => {
                problems.push(format!(
                    "{name}: dtype {other:?}; float32 and float64 are read"
                ));
                continue;
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            problems.push(format!("{name}: holds {} at flat index {i}", values[i]));
            continue;
        }
        tensors.insert(name, Tensor::from_vec(values, view.shape())?);
    }
    let mut state = StateDict {
        tensors,
        used: BTreeSet::new(),
        missing: Vec::new(),
    };
    let wanted = model_values(model);
    let shapes: HashMap<String, Vec<usize>> = wanted.iter().cloned().collect();
    let mut converted: HashMap<String, Tensor<f64>> = HashMap::new();
    for (prefix, kind) in layers(&wanted) {
        let torch = names.torch_prefix(&prefix);
        let shape = |local: &str| shapes.get(&join(&prefix, local)).cloned();
        let mut out = Vec::new();
        let result = convert(kind, &prefix, &torch, &shape, &mut state, &mut out);
        if let Err(mut p) = result {
            problems.append(&mut p);
        }
        for (local, tensor) in out {
            let name = join(&prefix, &local);
            match shapes.get(&name) {
                Some(want) if want.as_slice() != tensor.shape() => problems.push(format!(
                    "{name}: PyTorch's tensor converts to {:?}, the model has {want:?}",
                    tensor.shape()
                )),
                _ => {
                    converted.insert(name, tensor);
                }
            }
        }
    }
    for name in &state.missing {
        problems.push(format!("{name}: missing from the state_dict"));
    }
    for name in state.tensors.keys() {
        if !state.used.contains(name) {
            problems.push(format!(
                "{name}: in the state_dict but not read by the model"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(error(
            path,
            format!("does not fit the model:\n  {}", problems.join("\n  ")),
        ));
    }
    set_values(model, &converted)
}

fn error(path: &Path, message: String) -> LayerError {
    LayerError::StateDict {
        path: path.display().to_string(),
        message,
    }
}

/// Problems found while converting one layer.
type Problems = Vec<String>;

/// Converts the PyTorch tensors of one layer (at `torch`) to the polyhead
/// values (local names) its `kind` has, pushing them to `out`.
fn convert(
    kind: Kind,
    polyhead: &str,
    torch: &str,
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    state: &mut StateDict,
    out: &mut Vec<(String, Tensor<f64>)>,
) -> std::result::Result<(), Problems> {
    let mut problems = Vec::new();
    let get = |state: &mut StateDict, local: &str| state.take(&join(torch, local));
    match kind {
        Kind::Kernel => {
            if let (Some(want), Some(w)) = (shape("kernel"), get(state, "weight")) {
                match kernel_from_torch(&join(torch, "weight"), &w, &want) {
                    Ok(k) => out.push(("kernel".into(), k)),
                    Err(e) => problems.push(format!("{}: {e}", join(polyhead, "kernel"))),
                }
            }
            if shape("bias").is_some()
                && let Some(b) = get(state, "bias")
            {
                out.push(("bias".into(), b));
            }
        }
        Kind::BatchNorm | Kind::LayerNorm | Kind::Embedding => {
            for (local, theirs) in [
                ("gamma", "weight"),
                ("beta", "bias"),
                ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"),
                ("embeddings", "weight"),
            ] {
                if shape(local).is_some()
                    && let Some(t) = get(state, theirs)
                {
                    out.push((local.into(), t));
                }
            }
        }
        Kind::Recurrent => {
            recurrent(torch, "", "", shape, state, out, &mut problems);
        }
        Kind::Bidirectional => {
            for (side, suffix) in [("forward", ""), ("backward", "_reverse")] {
                for cell in ["lstm", "gru"] {
                    let sub = format!("{side}_{cell}.");
                    if shape(&format!("{sub}kernel")).is_some() {
                        recurrent(torch, &sub, suffix, shape, state, out, &mut problems);
                    }
                }
            }
        }
        Kind::Attention => attention(torch, shape, state, out, &mut problems),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A convolution or dense kernel in polyhead's layout `want` from
/// PyTorch's `weight`.
fn kernel_from_torch(
    name: &str,
    w: &Tensor<f64>,
    want: &[usize],
) -> std::result::Result<Tensor<f64>, String> {
    let permuted = |axes: &[usize]| -> std::result::Result<Tensor<f64>, String> {
        w.permute(axes)
            .map(|t| t.to_contiguous())
            .map_err(|e| e.to_string())
    };
    let converted = match (w.ndim(), want.len()) {
        (2, 2) => permuted(&[1, 0])?,
        (3, 3) => permuted(&[2, 1, 0])?,
        (4, 4) => {
            let k = permuted(&[2, 3, 1, 0])?;
            let s = w.shape();
            // A depthwise convolution: [C * M, 1, kh, kw] -> [kh, kw, C, M].
            if k.shape() != want && s[1] == 1 && want[2] * want[3] == s[0] {
                w.reshape(&[want[2], want[3], s[2], s[3]])
                    .and_then(|t| t.permute(&[2, 3, 0, 1]))
                    .map(|t| t.to_contiguous())
                    .map_err(|e| e.to_string())?
            } else {
                k
            }
        }
        _ => {
            return Err(format!(
                "{name} {:?} has {} axes, the model's kernel {want:?} {}",
                w.shape(),
                w.ndim(),
                want.len()
            ));
        }
    };
    if converted.shape() != want {
        return Err(format!(
            "{name} {:?} converts to {:?}, the model has {want:?}",
            w.shape(),
            converted.shape()
        ));
    }
    Ok(converted)
}

/// An LSTM or GRU (`sub` its polyhead sub-layer, `suffix` PyTorch's
/// `_reverse` for a backward direction).
#[allow(clippy::too_many_arguments)]
fn recurrent(
    torch: &str,
    sub: &str,
    suffix: &str,
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    state: &mut StateDict,
    out: &mut Vec<(String, Tensor<f64>)>,
    problems: &mut Problems,
) {
    let Some(recurrent_shape) = shape(&format!("{sub}recurrent_kernel")) else {
        return;
    };
    let (units, width) = (recurrent_shape[0], recurrent_shape[1]);
    let lstm = width == 4 * units;
    // Polyhead's gate blocks from PyTorch's: LSTM i, f, g, o is Keras'
    // i, f, c, o; GRU r, z, n becomes z, r, h.
    let order: &[usize] = if lstm { &[0, 1, 2, 3] } else { &[1, 0, 2] };
    let name = |what: &str| join(torch, &format!("{what}_l0{suffix}"));
    let reorder = |t: &Tensor<f64>| -> std::result::Result<Tensor<f64>, String> {
        let blocks: Vec<Tensor<f64>> = order
            .iter()
            .map(|&g| {
                t.slice_axis(0, g * units, (g + 1) * units)
                    .map(|b| b.to_contiguous())
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Tensor::concat(&blocks, 0).map_err(|e| e.to_string())
    };
    let mut push = |local: &str, from: &str, t: std::result::Result<Tensor<f64>, String>| match t {
        Ok(t) => out.push((format!("{sub}{local}"), t)),
        Err(e) => problems.push(format!("{from}: {e}")),
    };
    for (local, what) in [("kernel", "weight_ih"), ("recurrent_kernel", "weight_hh")] {
        if let Some(w) = state.take(&name(what)) {
            let rows = w.shape().first().copied().unwrap_or(0);
            let t = if rows != order.len() * units {
                Err(format!(
                    "{:?} has {rows} rows, the model's gates need {}",
                    w.shape(),
                    order.len() * units
                ))
            } else {
                reorder(&w).and_then(|t| {
                    t.transpose(0, 1)
                        .map(|t| t.to_contiguous())
                        .map_err(|e| e.to_string())
                })
            };
            push(local, &name(what), t);
        }
    }
    if let Some(bias_shape) = shape(&format!("{sub}bias")) {
        let (Some(bi), Some(bh)) = (state.take(&name("bias_ih")), state.take(&name("bias_hh")))
        else {
            return;
        };
        let t = match (lstm, bias_shape.len()) {
            (true, _) => reorder(&bi).and_then(|a| {
                reorder(&bh).and_then(|b| a.add(&b).map_err(|e| e.to_string()))
            }),
            (false, 2) => reorder(&bi).and_then(|a| {
                reorder(&bh).and_then(|b| {
                    Tensor::stack(&[a, b], 0).map_err(|e| e.to_string())
                })
            }),
            (false, _) => Err(
                "a GRU with reset_after off has no PyTorch counterpart (PyTorch's GRU resets after the product)"
                    .into(),
            ),
        };
        push("bias", &name("bias_ih"), t);
    }
}

/// `nn.MultiheadAttention`'s projections as polyhead's per-head kernels.
fn attention(
    torch: &str,
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    state: &mut StateDict,
    out: &mut Vec<(String, Tensor<f64>)>,
    problems: &mut Problems,
) {
    let Some(q_shape) = shape("query.kernel") else {
        return;
    };
    let (heads, head_dim) = (q_shape[1], q_shape[2]);
    let embed = heads * head_dim;
    let name = |n: &str| join(torch, n);
    let err = |e: polyhead_tensor::TensorError| e.to_string();
    // q, k, v weights [E, in]: one packed tensor or three.
    let weights: Vec<Option<(String, Tensor<f64>)>> = if state.has(&name("in_proj_weight")) {
        let all = state.take(&name("in_proj_weight"));
        (0..3)
            .map(|i| {
                all.as_ref().and_then(|w| {
                    w.slice_axis(0, i * embed, (i + 1) * embed)
                        .ok()
                        .map(|t| (name("in_proj_weight"), t.to_contiguous()))
                })
            })
            .collect()
    } else {
        ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
            .iter()
            .map(|n| state.take(&name(n)).map(|t| (name(n), t)))
            .collect()
    };
    let bias = if shape("query.bias").is_some() {
        state.take(&name("in_proj_bias"))
    } else {
        None
    };
    for (i, (local, w)) in ["query", "key", "value"].iter().zip(weights).enumerate() {
        let Some((from, w)) = w else { continue };
        let Some(want) = shape(&format!("{local}.kernel")) else {
            continue;
        };
        let t = w
            .transpose(0, 1)
            .map(|t| t.to_contiguous())
            .and_then(|t| t.reshape(&[want[0], heads, head_dim]))
            .map_err(err);
        match t {
            Ok(t) => out.push((format!("{local}.kernel"), t)),
            Err(e) => problems.push(format!("{from}: {e}")),
        }
        if let Some(b) = &bias {
            match b
                .slice_axis(0, i * embed, (i + 1) * embed)
                .map(|t| t.to_contiguous())
                .and_then(|t| t.reshape(&[heads, head_dim]))
            {
                Ok(t) => out.push((format!("{local}.bias"), t)),
                Err(e) => problems.push(format!("{}: {e}", name("in_proj_bias"))),
            }
        }
    }
    if let Some(w) = state.take(&name("out_proj.weight")) {
        match w
            .transpose(0, 1)
            .map(|t| t.to_contiguous())
            .and_then(|t| t.reshape(&[heads, head_dim, w.shape()[0]]))
        {
            Ok(t) => out.push(("attention_output.kernel".into(), t)),
            Err(e) => problems.push(format!("{}: {e}", name("out_proj.weight"))),
        }
    }
    if shape("attention_output.bias").is_some()
        && let Some(b) = state.take(&name("out_proj.bias"))
    {
        out.push(("attention_output.bias".into(), b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_prefixes_keep_their_tails_and_the_longest_wins() {
        let names = TorchNames::new()
            .layer("trunk", "features")
            .layer("trunk.2", "features.conv");
        assert_eq!(names.torch_prefix("trunk.0"), "features.0");
        assert_eq!(names.torch_prefix("trunk.2"), "features.conv");
        assert_eq!(names.torch_prefix("trunk2"), "trunk2");
        assert_eq!(names.torch_prefix("class"), "class");
        assert_eq!(names.torch_prefix(""), "");
    }
}
