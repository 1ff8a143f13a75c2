//! Checkpoints: bit-exact round trips, optimizer-state resume, one error
//! listing every mismatch, bad files, and atomicity under a killed process.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use polyhead_autograd::{Parameter, Tape};
use polyhead_layers::*;
use polyhead_tensor::{Float, Rng, Tensor};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("polyhead-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn model(seed: u64) -> Sequential<f32> {
    let mut rng = Rng::new(seed);
    Sequential::new()
        .push(
            Dense::builder(6, 8)
                .activation(Activation::Relu)
                .bias_initializer(Initializer::Uniform(-0.1, 0.1))
                .build(&mut rng)
                .unwrap(),
        )
        .push(LayerNorm::new(8).unwrap())
        .push(Dense::new(8, 3, &mut rng).unwrap())
}

fn output(m: &Sequential<f32>, x: &Tensor<f32>) -> Vec<u32> {
    let tape = Tape::no_record();
    m.forward(tape.constant(x.clone()))
        .unwrap()
        .value()
        .to_vec()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn round_trip_gives_bit_identical_outputs() {
    let dir = TempDir::new("roundtrip");
    let path = dir.file("m.safetensors");
    let a = model(1);
    save_checkpoint(&path, &a, None).unwrap();
    let mut b = model(2);
    let x = Tensor::rand_normal(&[5, 6], 0.0, 1.0, 3).unwrap();
    assert_ne!(output(&a, &x), output(&b, &x));
    load_checkpoint(&path, &mut b, None).unwrap();
    assert_eq!(output(&a, &x), output(&b, &x));
    // The file is a plain safetensors file with the dotted names.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors_names(&bytes);
    assert_eq!(
        st,
        vec![
            "0.bias", "0.kernel", "1.beta", "1.gamma", "2.bias", "2.kernel"
        ]
    );
}

fn safetensors_names(bytes: &[u8]) -> Vec<String> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    names.sort();
    names
}

fn train_steps(m: &mut Sequential<f32>, opt: &mut Optimizer<f32>, steps: usize) {
    let x = Tensor::rand_normal(&[16, 6], 0.0, 1.0, 9).unwrap();
    let y = Tensor::rand_normal(&[16, 3], 0.0, 1.0, 10).unwrap();
    for _ in 0..steps {
        let tape = Tape::new();
        let err = m
            .forward(tape.constant(x.clone()))
            .unwrap()
            .sub(tape.constant(y.clone()))
            .unwrap();
        let loss = err.mul(err).unwrap().mean_all().unwrap();
        let grads = tape.backward(loss).unwrap();
        opt.step(m, &grads).unwrap();
    }
}

fn bits(m: &Sequential<f32>) -> Vec<u32> {
    m.parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .map(f32::to_bits)
        .collect()
}

#[test]
fn resuming_from_a_checkpoint_reproduces_the_uninterrupted_run() {
    let dir = TempDir::new("resume");
    let path = dir.file("run.safetensors");
    let mut a = model(1);
    let mut opt_a = Adam::new(1e-2).build();
    train_steps(&mut a, &mut opt_a, 3);
    save_checkpoint(&path, &a, Some(&opt_a)).unwrap();
    train_steps(&mut a, &mut opt_a, 2);

    let mut b = model(99);
    let mut opt_b = Adam::new(1e-2).build();
    load_checkpoint(&path, &mut b, Some(&mut opt_b)).unwrap();
    assert_eq!(opt_b.steps(), 3);
    train_steps(&mut b, &mut opt_b, 2);
    assert_eq!(bits(&a), bits(&b));

    // Asking for optimizer state from a file without it is an error, and
    // the model is left as it was.
    let plain = dir.file("plain.safetensors");
    save_checkpoint(&plain, &a, None).unwrap();
    let before = bits(&b);
    let err = load_checkpoint(&plain, &mut b, Some(&mut Adam::new(1e-2).build())).unwrap_err();
    assert!(
        err.to_string().contains("the file has no optimizer state"),
        "{err}"
    );
    assert_eq!(bits(&b), before);
    // State for another rule is refused too.
    let err = load_checkpoint(
        &path,
        &mut b,
        Some(&mut Sgd::new(0.1).momentum(0.9).build()),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("optimizer state is for adam, the optimizer is sgd"),
        "{err}"
    );
}

/// Named parameters only.
struct Named<T: Float>(Vec<(String, Parameter<T>)>);

impl<T: Float> Module<T> for Named<T> {
    fn forward<'t>(
        &self,
        x: polyhead_autograd::Var<'t, T>,
    ) -> Result<polyhead_autograd::Var<'t, T>> {
        Ok(x)
    }
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        for (n, p) in &self.0 {
            f(format!("{prefix}{n}"), p);
        }
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        for (n, p) in &mut self.0 {
            f(format!("{prefix}{n}"), p);
        }
    }
}

fn named<T: Float>(spec: &[(&str, &[usize])]) -> Named<T> {
    Named(
        spec.iter()
            .map(|(n, s)| (n.to_string(), Parameter::new(Tensor::ones(s).unwrap())))
            .collect(),
    )
}

#[test]
fn every_mismatch_is_reported_at_once_and_nothing_is_loaded() {
    let dir = TempDir::new("mismatch");
    let path = dir.file("m.safetensors");
    save_checkpoint(
        &path,
        &named::<f32>(&[("a", &[2]), ("b", &[3]), ("c", &[4])]),
        None,
    )
    .unwrap();
    let mut target = named::<f32>(&[("a", &[2]), ("b", &[5]), ("d", &[1])]);
    target.0[0]
        .1
        .set_value(Tensor::zeros(&[2]).unwrap())
        .unwrap();
    let err = load_checkpoint(&path, &mut target, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "checkpoint {}: does not fit the model:\n  b: shape [3] in the file, [5] in the model\n  d: missing from the file (the model has shape [1])\n  c: in the file but not in the model",
            path.display()
        )
    );
    assert_eq!(
        target.0[0].1.value().to_vec(),
        vec![0.0, 0.0],
        "a was loaded despite the error"
    );

    let f64_path = dir.file("f64.safetensors");
    save_checkpoint(&f64_path, &named::<f64>(&[("a", &[2])]), None).unwrap();
    let err = load_checkpoint(&f64_path, &mut named::<f32>(&[("a", &[2])]), None).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("a: dtype F64 in the file, the model is f32"),
        "{err}"
    );
}

#[test]
fn truncated_garbage_and_missing_files_are_errors() {
    let dir = TempDir::new("bad");
    let path = dir.file("m.safetensors");
    save_checkpoint(&path, &model(1), None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut m = model(2);
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.file(&format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = load_checkpoint(&p, &mut m, None).unwrap_err().to_string();
        assert!(
            err.contains("not a valid safetensors file"),
            "cut at {cut}: {err}"
        );
    }
    let mut rng = Rng::new(4);
    for trial in 0..20 {
        let garbage: Vec<u8> = (0..(rng.below(400) as usize))
            .map(|_| rng.below(256) as u8)
            .collect();
        let p = dir.file(&format!("garbage{trial}"));
        std::fs::write(&p, &garbage).unwrap();
        assert!(load_checkpoint(&p, &mut m, None).is_err());
    }
    let err = load_checkpoint(dir.file("nope.safetensors"), &mut m, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn saving_where_no_file_can_be_written_is_an_error() {
    let dir = TempDir::new("unwritable");
    // The parent "directory" is a regular file.
    let blocker = dir.file("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let err = save_checkpoint(blocker.join("m.safetensors"), &model(1), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "checkpoint {}",
            blocker.join("m.safetensors").display()
        )),
        "{err}"
    );
    assert!(err.contains("cannot write"), "{err}");
    assert!(save_checkpoint(dir.file("missing/m.safetensors"), &model(1), None).is_err());
}

const SAVE_LOOP_ENV: &str = "POLYHEAD_TEST_SAVE_LOOP";

/// Not a test on its own: when the environment names a file, saves a large
/// model there over and over, every parameter equal to the iteration
/// number, and prints each number once its save is complete. It stops when
/// it is killed, when nobody reads its output any more, or after 100000
/// saves.
#[test]
fn helper_save_loop() {
    use std::io::Write;
    let Ok(path) = std::env::var(SAVE_LOOP_ENV) else {
        return;
    };
    let mut m = named::<f32>(&[("big", &[512, 1024]), ("small", &[7])]);
    let mut out = std::io::stdout().lock();
    for k in 1..=100_000_u32 {
        for (_, p) in &mut m.0 {
            let shape = p.value().shape().to_vec();
            p.set_value(Tensor::full(&shape, k as f32).unwrap())
                .unwrap();
        }
        save_checkpoint(&path, &m, None).unwrap();
        if writeln!(out, "{k}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// Loads the checkpoint and returns the one value every parameter holds,
/// failing if the file is incomplete or mixes two saves.
fn load_uniform(path: &std::path::Path, m: &mut Named<f32>, when: &str) -> f32 {
    load_checkpoint(path, m, None)
        .unwrap_or_else(|e| panic!("{when}: a reader saw an incomplete checkpoint: {e}"));
    let values: Vec<f32> = m.0.iter().flat_map(|(_, p)| p.value().to_vec()).collect();
    assert!(
        values.iter().all(|&v| v == values[0]),
        "{when}: mixed iterations in one checkpoint"
    );
    values[0]
}

/// A child process saves over and over while this process reads the file;
/// the child is killed at a random point between two observed saves. No
/// clock is involved: each round waits until the child has reported a
/// random number (1 to 4) of complete saves, then looks at the file a random
/// number of times more (0 to 19999, about one save's time) before the kill, so the kill lands at a different
/// point of a later save each round however busy the machine is.
#[test]
fn readers_during_saves_and_kills_midway_always_see_a_complete_checkpoint() {
    use std::io::BufRead;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let dir = TempDir::new("kill");
    let path = dir.file("m.safetensors");
    let mut m = named::<f32>(&[("big", &[512, 1024]), ("small", &[7])]);
    save_checkpoint(&path, &m, None).unwrap(); // all ones
    let complete_len = std::fs::metadata(&path).unwrap().len();
    let mut rng = Rng::new(2026);
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..10 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "helper_save_loop", "--test-threads=1", "--quiet"])
            .env(SAVE_LOOP_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The child's report of complete saves: the libtest harness's own
        // lines are not numbers and are passed over.
        let completed = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let stdout = child.stdout.take().unwrap();
            let (completed, closed) = (Arc::clone(&completed), Arc::clone(&closed));
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(k) = line.trim().parse::<u64>() {
                        completed.store(k, Ordering::SeqCst);
                    }
                }
                closed.store(true, Ordering::SeqCst);
            })
        };
        let saves_before_kill = 1 + rng.below(4);
        let reads_after_that = rng.below(20_000);
        let (mut reads_since, mut loaded_at) = (0, u64::MAX);
        loop {
            // While the child saves, a reader must only ever see complete
            // checkpoints. Every save has the same size, so a look at the
            // length (a few microseconds) catches a non-atomic writer's
            // truncated file in the fraction of a millisecond it exists;
            // the whole file is loaded once per reported save.
            let len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(
                len, complete_len,
                "while saving: a reader saw an incomplete checkpoint"
            );
            let done = completed.load(Ordering::SeqCst);
            if done != loaded_at {
                load_uniform(&path, &mut m, "while saving");
                loaded_at = done;
            }
            if done >= saves_before_kill {
                if reads_since == reads_after_that {
                    break;
                }
                reads_since += 1;
            } else if closed.load(Ordering::SeqCst) {
                panic!("round {round}: the saving child stopped after {done} saves");
            }
        }
        let reported_before_kill = completed.load(Ordering::SeqCst);
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let reported = completed.load(Ordering::SeqCst);
        // Every value comes from one save: a complete, consistent file,
        // at least as late as the last save reported before the kill and
        // at most the one after the last reported (complete, killed
        // before it could say so).
        let v = load_uniform(&path, &mut m, "after the kill") as u64;
        assert!(
            (reported_before_kill..=reported + 1).contains(&v),
            "round {round}: the file holds save {v}; saves {reported_before_kill} to {reported} were reported"
        );
        seen.insert(v);
    }
    // The kills landed at different points of the child's saves.
    assert!(
        seen.len() > 1,
        "every round ended on the same save: {seen:?}"
    );
}

/// A user's own layer with state that is not trained: a learnable scale
/// and a running count kept in a `Buffer`, updated by `forward` in
/// training mode.
struct Counting {
    scale: Parameter<f32>,
    seen: Buffer<f32>,
    training: bool,
}

impl Counting {
    fn new(scale: f32, seen: &[f32]) -> Self {
        Counting {
            scale: Parameter::new(Tensor::full(&[1], scale).unwrap()),
            seen: Buffer::new(Tensor::from_vec(seen.to_vec(), &[seen.len()]).unwrap()),
            training: true,
        }
    }
}

impl Module<f32> for Counting {
    fn forward<'t>(
        &self,
        x: polyhead_autograd::Var<'t, f32>,
    ) -> Result<polyhead_autograd::Var<'t, f32>> {
        if self.training {
            let seen = self.seen.value().add_scalar(1.0);
            self.seen.set_value(seen)?;
        }
        Ok(x.mul(x.tape().param(&self.scale))?)
    }
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<f32>)) {
        f(format!("{prefix}scale"), &self.scale);
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<f32>),
    ) {
        f(format!("{prefix}scale"), &mut self.scale);
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn visit_buffers<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Buffer<f32>)) {
        f(format!("{prefix}seen"), &self.seen);
    }
}

#[test]
fn buffers_are_saved_and_restored_and_optimizers_leave_them_alone() {
    let dir = TempDir::new("buffers");
    let path = dir.file("m.safetensors");
    let mut model = Sequential::new().push(Counting::new(2.0, &[0.0, 10.0]));
    assert_eq!(model.buffers().len(), 1);
    assert_eq!(model.buffers()[0].0, "0.seen");
    // Training-mode forwards update the buffer; an optimizer step moves
    // the parameter only.
    let mut opt = Sgd::new(0.5).build();
    for _ in 0..3 {
        let tape = Tape::new();
        let y = model
            .forward(tape.constant(Tensor::ones(&[1]).unwrap()))
            .unwrap();
        let grads = tape.backward(y.sum_all()).unwrap();
        opt.step(&mut model, &grads).unwrap();
    }
    assert_eq!(model.buffers()[0].1.value().to_vec(), vec![3.0, 13.0]);
    assert_eq!(model.parameters()[0].1.value().to_vec(), vec![0.5]);
    model.set_training(false);
    let tape = Tape::new();
    model
        .forward(tape.constant(Tensor::ones(&[1]).unwrap()))
        .unwrap();
    assert_eq!(
        model.buffers()[0].1.value().to_vec(),
        vec![3.0, 13.0],
        "inference changes nothing"
    );

    save_checkpoint(&path, &model, None).unwrap();
    let mut fresh = Sequential::new().push(Counting::new(7.0, &[0.0, 0.0]));
    load_checkpoint(&path, &mut fresh, None).unwrap();
    assert_eq!(fresh.buffers()[0].1.value().to_vec(), vec![3.0, 13.0]);
    assert_eq!(fresh.parameters()[0].1.value().to_vec(), vec![0.5]);

    // A checkpoint without the buffer, or with it misshaped, is refused
    // whole: nothing is loaded.
    let without = dir.file("without.safetensors");
    save_checkpoint(
        &without,
        &Sequential::new().push(Dense::<f32>::new(1, 1, &mut Rng::new(0)).unwrap()),
        None,
    )
    .unwrap();
    let mut target = Sequential::new().push(Counting::new(7.0, &[1.0, 2.0]));
    let err = load_checkpoint(&without, &mut target, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0.seen: missing from the file (the model has shape [2])"),
        "{err}"
    );
    assert_eq!(target.buffers()[0].1.value().to_vec(), vec![1.0, 2.0]);
    let mut three = Sequential::new().push(Counting::new(7.0, &[1.0, 2.0, 3.0]));
    let err = load_checkpoint(&path, &mut three, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0.seen: shape [2] in the file, [3] in the model"),
        "{err}"
    );
    assert_eq!(
        three.parameters()[0].1.value().to_vec(),
        vec![7.0],
        "nothing loaded"
    );
}

#[test]
fn a_checkpoint_holding_nan_is_refused_naming_the_value() {
    let dir = TempDir::new("nan-buffer");
    let path = dir.file("m.safetensors");
    let model = Sequential::new().push(Counting::new(2.0, &[0.0, 1.0]));
    save_checkpoint(&path, &model, None).unwrap();
    // Corrupt the buffer's second value in the file's bytes: it is the
    // last tensor's last four bytes (safetensors stores data after the
    // header, in name order: `0.scale` then `0.seen`).
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let mut target = Sequential::new().push(Counting::new(5.0, &[4.0, 4.0]));
    let err = load_checkpoint(&path, &mut target, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0.seen: holds NaN at flat index 1"), "{err}");
    assert_eq!(target.parameters()[0].1.value().to_vec(), vec![5.0]);
    assert_eq!(target.buffers()[0].1.value().to_vec(), vec![4.0, 4.0]);
}
