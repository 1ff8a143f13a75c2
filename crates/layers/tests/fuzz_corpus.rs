//! Replays the checkpoint fuzzing corpus (`fuzz/corpus/checkpoint/`, grown
//! by `scripts/fuzz.sh`): every input loads or fails with an error, never a
//! panic. Also writes the seed inputs the corpus starts from.

use std::path::PathBuf;

use polyhead_layers::{Adam, Dense, load_checkpoint_bytes, save_checkpoint};
use polyhead_tensor::Rng;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/checkpoint")
}

#[test]
fn every_corpus_input_loads_or_errs_without_panicking() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "the seed corpus is missing: {}",
        corpus().display()
    );
    let mut loaded = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let mut model = Dense::<f32>::new(3, 2, &mut Rng::new(0)).unwrap();
        let mut opt = Adam::new(1e-3).build();
        if load_checkpoint_bytes("corpus", &bytes, &mut model, Some(&mut opt)).is_ok() {
            loaded += 1;
        }
        let _ = load_checkpoint_bytes("corpus", &bytes, &mut model, None);
    }
    assert!(loaded >= 1, "no corpus input is a valid checkpoint");
}

/// Regenerates the seed inputs when asked (`POLYHEAD_WRITE_SEEDS=1`).
#[test]
fn seed_inputs() {
    if std::env::var("POLYHEAD_WRITE_SEEDS").is_err() {
        return;
    }
    let dir = corpus();
    std::fs::create_dir_all(&dir).unwrap();
    let model = Dense::<f32>::new(3, 2, &mut Rng::new(0)).unwrap();
    let valid = dir.join("seed-valid-with-optimizer");
    save_checkpoint(&valid, &model, Some(&Adam::new(1e-3).build())).unwrap();
    let plain = dir.join("seed-valid-plain");
    save_checkpoint(&plain, &model, None).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    std::fs::write(dir.join("seed-truncated-header"), &bytes[..12]).unwrap();
    std::fs::write(dir.join("seed-truncated-data"), &bytes[..bytes.len() - 5]).unwrap();
    std::fs::write(dir.join("seed-empty"), b"").unwrap();
    let wrong = Dense::<f64>::new(3, 2, &mut Rng::new(0)).unwrap();
    save_checkpoint(dir.join("seed-f64"), &wrong, None).unwrap();
}
