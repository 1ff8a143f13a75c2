//! Checkpoints: a model's named parameters, and optionally its optimizer's
//! state, in the safetensors format, saved atomically.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use polyhead_tensor::{Float, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{LayerError, Result};
use crate::module::Module;
use crate::optim::Optimizer;

/// The prefix of optimizer-state tensors in a checkpoint.
const OPTIMIZER_PREFIX: &str = "optimizer.";

fn checkpoint_error(path: &Path, message: impl Into<String>) -> LayerError {
    LayerError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn dtype_of<T: Float>() -> Dtype {
    if T::NAME == "f64" {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

fn encode<T: Float>(values: &[T]) -> Vec<u8> {
    if T::NAME == "f64" {
        values
            .iter()
            .flat_map(|v| v.to_f64().to_le_bytes())
            .collect()
    } else {
        values
            .iter()
            .flat_map(|v| (v.to_f64() as f32).to_le_bytes())
            .collect()
    }
}

fn decode<T: Float>(bytes: &[u8]) -> Vec<T> {
    if T::NAME == "f64" {
        bytes
            .chunks_exact(8)
            .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
            .collect()
    } else {
        bytes
            .chunks_exact(4)
            .map(|c| {
                T::from_f64(f64::from(f32::from_le_bytes(
                    c.try_into().expect("4 bytes"),
                )))
            })
            .collect()
    }
}

/// Saves `model`'s parameters (and `optimizer`'s state, if given) to
/// `path` in the safetensors format, atomically: the bytes go to a
/// temporary file in the same directory, which is flushed to disk and then
/// renamed over `path`. A crash at any point leaves the previous checkpoint
/// intact.
///
/// ```
/// use polyhead_layers::{load_checkpoint, save_checkpoint, Dense, Module};
/// use polyhead_tensor::Rng;
/// let dir = std::env::temp_dir().join(format!("polyhead-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("dense.safetensors");
///
/// let model = Dense::<f32>::new(3, 2, &mut Rng::new(1))?;
/// save_checkpoint(&path, &model, None)?;
/// let mut fresh = Dense::<f32>::new(3, 2, &mut Rng::new(2))?;
/// load_checkpoint(&path, &mut fresh, None)?;
/// assert_eq!(fresh.kernel().value().to_vec(), model.kernel().value().to_vec());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub fn save_checkpoint<T: Float>(
    path: impl AsRef<Path>,
    model: &dyn Module<T>,
    optimizer: Option<&Optimizer<T>>,
) -> Result<()> {
    let path = path.as_ref();
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = stored_values(model)
        .into_iter()
        .map(|(name, value)| (name, value.shape().to_vec(), encode(&value.to_vec())))
        .collect();
    let shapes: HashMap<String, Vec<usize>> = named
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "polyhead".to_string());
    metadata.insert("dtype".to_string(), T::NAME.to_string());
    if let Some(opt) = optimizer {
        let (steps, state) = opt.state();
        metadata.insert("optimizer.steps".to_string(), steps.to_string());
        metadata.insert("optimizer.rule".to_string(), opt.rule_name().to_string());
        for (name, values) in state {
            let param = name.rsplit_once('.').map_or(name.as_str(), |(p, _)| p);
            let shape = shapes
                .get(param)
                .cloned()
                .unwrap_or_else(|| vec![values.len()]);
            named.push((format!("{OPTIMIZER_PREFIX}{name}"), shape, encode(&values)));
        }
    }
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(dtype_of::<T>(), shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| checkpoint_error(path, format!("cannot encode {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| checkpoint_error(path, e.to_string()))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it
/// over `path` and syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| checkpoint_error(path, "the path names no file"))?
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        checkpoint_error(path, format!("cannot write: {e}"))
    })
}

/// Loads a checkpoint saved by [`save_checkpoint`] into `model` (and
/// `optimizer`'s state, if given).
///
/// Every name, dtype and shape is checked first, and all mismatches are
/// reported together; on any error the model and optimizer are unchanged.
/// A truncated or garbage file is an error, never a panic.
///
/// ```
/// use polyhead_layers::{load_checkpoint, save_checkpoint, Dense, Module};
/// use polyhead_tensor::Rng;
/// let dir = std::env::temp_dir().join(format!("polyhead-doc-load-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("m.safetensors");
/// save_checkpoint(&path, &Dense::<f32>::new(3, 2, &mut Rng::new(1))?, None)?;
/// let mut wrong = Dense::<f32>::new(4, 2, &mut Rng::new(1))?;
/// let err = load_checkpoint(&path, &mut wrong, None).unwrap_err();
/// assert!(err.to_string().ends_with("kernel: shape [3, 2] in the file, [4, 2] in the model"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub fn load_checkpoint<T: Float>(
    path: impl AsRef<Path>,
    model: &mut dyn Module<T>,
    optimizer: Option<&mut Optimizer<T>>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| checkpoint_error(path, format!("cannot read: {e}")))?;
    load_from(path, &bytes, model, optimizer)
}

/// [`load_checkpoint`] from bytes already in memory (`what` names them in
/// errors): the same validation, never a panic on any input.
///
/// ```
/// use polyhead_layers::{load_checkpoint_bytes, Dense};
/// use polyhead_tensor::Rng;
/// let mut model = Dense::<f32>::new(2, 2, &mut Rng::new(0))?;
/// let err = load_checkpoint_bytes("upload", &[1, 2, 3], &mut model, None).unwrap_err();
/// assert!(err.to_string().starts_with("checkpoint upload: not a valid safetensors file"));
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
pub fn load_checkpoint_bytes<T: Float>(
    what: &str,
    bytes: &[u8],
    model: &mut dyn Module<T>,
    optimizer: Option<&mut Optimizer<T>>,
) -> Result<()> {
    load_from(Path::new(what), bytes, model, optimizer)
}

fn load_from<T: Float>(
    path: &Path,
    bytes: &[u8],
    model: &mut dyn Module<T>,
    optimizer: Option<&mut Optimizer<T>>,
) -> Result<()> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| checkpoint_error(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| checkpoint_error(path, format!("not a valid safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let stored: HashMap<String, TensorView<'_>> = file.tensors().into_iter().collect();

    let mut problems = Vec::new();
    let mut values: Vec<(String, Vec<usize>, Vec<T>)> = Vec::new();
    let params = stored_values(model);
    for (name, value) in &params {
        let want_shape = value.shape();
        match stored.get(name) {
            None => problems.push(format!(
                "{name}: missing from the file (the model has shape {want_shape:?})"
            )),
            Some(v) if v.dtype() != dtype_of::<T>() => problems.push(format!(
                "{name}: dtype {:?} in the file, the model is {}",
                v.dtype(),
                T::NAME
            )),
            Some(v) if v.shape() != want_shape => problems.push(format!(
                "{name}: shape {:?} in the file, {want_shape:?} in the model",
                v.shape()
            )),
            Some(v) => {
                let data: Vec<T> = decode(v.data());
                match data.iter().position(|x| !x.is_finite()) {
                    Some(i) => {
                        problems.push(format!("{name}: holds {:?} at flat index {i}", data[i]))
                    }
                    None => values.push((name.clone(), want_shape.to_vec(), data)),
                }
            }
        }
    }
    let known: std::collections::HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<&String> = stored
        .keys()
        .filter(|k| !k.starts_with(OPTIMIZER_PREFIX) && !known.contains(k.as_str()))
        .collect();
    extra.sort();
    for name in extra {
        problems.push(format!("{name}: in the file but not in the model"));
    }
    drop(params);

    let mut restore_optimizer = None;
    if let Some(opt) = optimizer {
        match meta
            .get("optimizer.steps")
            .and_then(|s| s.parse::<u64>().ok())
        {
            None => problems.push("the file has no optimizer state".to_string()),
            Some(steps) => {
                let rule = meta
                    .get("optimizer.rule")
                    .map(String::as_str)
                    .unwrap_or("?");
                if rule != opt.rule_name() {
                    problems.push(format!(
                        "optimizer state is for {rule}, the optimizer is {}",
                        opt.rule_name()
                    ));
                }
                restore_optimizer = Some((opt, steps));
            }
        }
    }
    if let Some((opt, steps)) = &mut restore_optimizer {
        let sizes: Vec<(String, usize)> = values
            .iter()
            .map(|(n, s, _)| (n.clone(), s.iter().product()))
            .collect();
        let mut candidate = (*opt).clone();
        let lookup = |key: &str| {
            stored
                .get(&format!("{OPTIMIZER_PREFIX}{key}"))
                .filter(|v| v.dtype() == dtype_of::<T>())
                .map(|v| decode::<T>(v.data()))
        };
        match candidate.restore(*steps, &sizes, lookup) {
            Ok(()) if problems.is_empty() => **opt = candidate,
            Ok(()) => {}
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(checkpoint_error(
            path,
            format!("does not fit the model:\n  {}", problems.join("\n  ")),
        ));
    }
    let mut by_name: HashMap<String, (Vec<usize>, Vec<T>)> =
        values.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    for (name, b) in model.buffers() {
        let (shape, v) = by_name.remove(&name).expect("validated above");
        b.set_value(Tensor::from_vec(v, &shape)?)?;
    }
    for (name, p) in model.parameters_mut() {
        let (shape, v) = by_name.remove(&name).expect("validated above");
        p.set_value(Tensor::from_vec(v, &shape)?)?;
    }
    Ok(())
}

/// What a checkpoint holds of a model: every parameter, then every buffer
/// (state that is not trained), by name.
fn stored_values<T: Float>(model: &dyn Module<T>) -> Vec<(String, Tensor<T>)> {
    let mut values: Vec<(String, Tensor<T>)> = model
        .parameters()
        .into_iter()
        .map(|(name, p)| (name, p.value().clone()))
        .collect();
    values.extend(
        model
            .buffers()
            .into_iter()
            .map(|(name, b)| (name, b.value())),
    );
    values
}
