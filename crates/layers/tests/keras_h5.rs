//! Keras `.weights.h5` import (feature `keras-h5`, which needs libhdf5:
//! `cargo test -p polyhead-layers --features keras-h5`). A file Keras 3.15
//! wrote itself (`tests/keras_h5/`) loads and gives Keras' outputs; files
//! the test writes in Keras' layout with the `hdf5` crate
//! (`layers/<name>/vars/N`, recurrent cells under `cell`, bidirectional
//! directions under `forward_layer`/`backward_layer`, attention's
//! projections under the `_`-prefixed names Keras' source gives them) load
//! every value where it belongs; and a file that does not fit is refused
//! whole with every mismatch.
#![cfg(feature = "keras-h5")]

use polyhead_layers::{
    BatchNormalization, Bidirectional, Dense, Embedding, KerasNames, LayerNorm, Lstm, Module,
    MultiHeadAttention, Sequential, load_keras_weights,
};
use polyhead_tensor::{Rng, Tensor};

/// Writes datasets (`path`, shape, values) into a new HDF5 file, making
/// the groups on the way.
fn write(file: &std::path::Path, datasets: &[(String, Vec<usize>, Vec<f32>)]) {
    let f = hdf5::File::create(file).unwrap();
    for (path, shape, values) in datasets {
        let (dir, name) = path.rsplit_once('/').unwrap();
        let mut group = f.group("/").unwrap();
        for part in dir.split('/') {
            group = if group.link_exists(part) {
                group.group(part).unwrap()
            } else {
                group.create_group(part).unwrap()
            };
        }
        let ds = group
            .new_dataset::<f32>()
            .shape(shape.clone())
            .create(name)
            .unwrap();
        ds.write_raw(values).unwrap();
    }
}

fn model() -> Sequential<f32> {
    let mut rng = Rng::new(1);
    Sequential::new()
        .push(Embedding::new(10, 4, &mut rng).unwrap())
        .push(
            MultiHeadAttention::builder(2, 3, 4)
                .build(&mut rng)
                .unwrap(),
        )
        .push(LayerNorm::new(4).unwrap())
        .push(
            Bidirectional::lstm(
                Lstm::new(4, 3, &mut rng).unwrap(),
                Lstm::new(4, 3, &mut rng).unwrap(),
            )
            .unwrap(),
        )
        .push(BatchNormalization::new(6).unwrap())
        .push(Dense::new(6, 2, &mut rng).unwrap())
}

fn names() -> KerasNames {
    KerasNames::new()
        .layer("0", "embedding")
        .layer("1", "multi_head_attention")
        .layer("2", "layer_normalization")
        .layer("3", "bidirectional")
        .layer("4", "batch_normalization")
        .layer("5", "dense")
}

/// Where Keras keeps each of the model's values, in the model's order.
fn keras_paths() -> Vec<&'static str> {
    vec![
        "layers/embedding/vars/0",
        "layers/multi_head_attention/_query_dense/vars/0",
        "layers/multi_head_attention/_query_dense/vars/1",
        "layers/multi_head_attention/_key_dense/vars/0",
        "layers/multi_head_attention/_key_dense/vars/1",
        "layers/multi_head_attention/_value_dense/vars/0",
        "layers/multi_head_attention/_value_dense/vars/1",
        "layers/multi_head_attention/_output_dense/vars/0",
        "layers/multi_head_attention/_output_dense/vars/1",
        "layers/layer_normalization/vars/0",
        "layers/layer_normalization/vars/1",
        "layers/bidirectional/forward_layer/cell/vars/0",
        "layers/bidirectional/forward_layer/cell/vars/1",
        "layers/bidirectional/forward_layer/cell/vars/2",
        "layers/bidirectional/backward_layer/cell/vars/0",
        "layers/bidirectional/backward_layer/cell/vars/1",
        "layers/bidirectional/backward_layer/cell/vars/2",
        "layers/batch_normalization/vars/0",
        "layers/batch_normalization/vars/1",
        "layers/dense/vars/0",
        "layers/dense/vars/1",
        // Buffers come after every parameter: batch norm's moving
        // statistics, Keras' vars 2 and 3.
        "layers/batch_normalization/vars/2",
        "layers/batch_normalization/vars/3",
    ]
}

/// The model's values (parameters, then buffers) with Keras' path for
/// each and random contents.
fn file_for(m: &Sequential<f32>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut shapes: Vec<Vec<usize>> = m
        .parameters()
        .iter()
        .map(|(_, p)| p.value().shape().to_vec())
        .collect();
    shapes.extend(m.buffers().iter().map(|(_, b)| b.value().shape().to_vec()));
    assert_eq!(shapes.len(), keras_paths().len());
    keras_paths()
        .into_iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (path, shape))| {
            let values = Tensor::<f32>::rand_uniform(&shape, 0.1, 1.0, i as u64).unwrap();
            (path.to_string(), shape, values.to_vec())
        })
        .collect()
}

#[test]
fn a_keras_weights_file_loads_every_value_where_keras_keeps_it() {
    let dir = std::env::temp_dir().join(format!("polyhead-keras-h5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.weights.h5");
    let mut m = model();
    let datasets = file_for(&m);
    write(&path, &datasets);
    load_keras_weights(&path, &mut m, &names()).unwrap();
    let mut loaded: Vec<Vec<f32>> = m
        .parameters()
        .iter()
        .map(|(_, p)| p.value().to_vec())
        .collect();
    loaded.extend(m.buffers().iter().map(|(_, b)| b.value().to_vec()));
    for ((path, _, want), got) in datasets.iter().zip(&loaded) {
        assert_eq!(got, want, "{path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_keras_weights_file_that_does_not_fit_is_refused_whole() {
    let dir = std::env::temp_dir().join(format!("polyhead-keras-h5-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.weights.h5");
    let mut m = model();
    let mut datasets = file_for(&m);
    // The dense bias missing, the layer norm's gamma misshaped, a NaN in
    // the embeddings, a layer the model does not have.
    datasets.retain(|(p, _, _)| p != "layers/dense/vars/1");
    for (p, shape, values) in &mut datasets {
        if p == "layers/layer_normalization/vars/0" {
            *shape = vec![5];
            *values = vec![1.0; 5];
        }
        if p == "layers/embedding/vars/0" {
            values[3] = f32::NAN;
        }
    }
    datasets.push(("layers/dense_1/vars/0".into(), vec![2], vec![0.0, 1.0]));
    write(&path, &datasets);
    let before: Vec<u32> = m
        .parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .map(f32::to_bits)
        .collect();
    let err = load_keras_weights(&path, &mut m, &names())
        .unwrap_err()
        .to_string();
    for part in [
        "does not fit the model:",
        "5.bias: the file has no layers/dense/vars/1 (the model's shape is [2])",
        "2.gamma: layers/layer_normalization/vars/0 has shape [5], the model has [4]",
        "0.embeddings: layers/embedding/vars/0 holds NaN at flat index 3",
        "layers/dense_1/vars/0: in the file but not read by the model",
    ] {
        assert!(err.contains(part), "`{part}` in:\n{err}");
    }
    let after: Vec<u32> = m
        .parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .map(f32::to_bits)
        .collect();
    assert_eq!(before, after, "nothing loaded");
    let err = load_keras_weights(dir.join("none.h5"), &mut m, &names()).unwrap_err();
    assert!(err.to_string().contains("cannot open"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file Keras itself wrote (`scripts/fixtures/keras_weights.py`: Keras
/// 3.15.1 on JAX, this test's model with every weight and moving statistic
/// random, `model.save_weights`), loaded into the same polyhead model:
/// the inference outputs are Keras' on the same ids.
///
/// Tolerance: float32 in both, through attention, layer norm, an LSTM and
/// batch norm, each summing in its own order: within 2e-6 of each output
/// (a few float32 ulps of these O(1) values).
#[test]
fn a_file_keras_wrote_gives_keras_outputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keras_h5");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut m = model();
    load_keras_weights(dir.join("model.weights.h5"), &mut m, &names()).unwrap();
    m.set_training(false);
    let ids: Vec<f32> = expected["ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let rows = expected["ids"].as_array().unwrap().len();
    let tape = polyhead_autograd::Tape::no_record();
    let y = m
        .forward(tape.constant(Tensor::from_vec(ids, &[rows, ids_len(&expected)]).unwrap()))
        .unwrap()
        .value();
    let want: Vec<f64> = expected["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(y.shape(), &[rows, 2]);
    for (i, (got, want)) in y.to_vec().iter().zip(&want).enumerate() {
        assert!(
            (f64::from(*got) - want).abs() <= 2e-6,
            "output {i}: polyhead {got}, Keras {want}"
        );
    }
}

fn ids_len(expected: &serde_json::Value) -> usize {
    expected["ids"][0].as_array().unwrap().len()
}
