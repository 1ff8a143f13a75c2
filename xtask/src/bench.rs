//! `cargo xtask bench`: loss and training throughput against the machine's
//! own limits. Runs itself in release mode; prints a table and writes
//! `target/bench/bench.json`.
//!
//! Each workload is f32, value and gradient, timed as the median of several
//! repetitions after a warm-up, inside `with_awake_pool` (as `Trainer::fit`
//! runs its steps). Rows report samples/s, the effective memory
//! traffic (GB/s) and the share of the roofline: bytes that must move at the
//! measured triad bandwidth, or FLOPs at the measured GEMM rate.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use polyhead::MultiOutput;
use polyhead::autograd::Tape;
use polyhead::layers::{
    Activation, Conv2D, Dense, Embedding, GlobalPooling, Lstm, Padding, Pooling2D, Sequential, Sgd,
};
use polyhead::losses::{BinaryCrossEntropy, Labels, Loss, Mse, SparseCrossEntropy};
use polyhead::tensor::parallel::with_awake_pool;
use polyhead::tensor::{Rng, Tensor};

/// Counts allocations, to report allocations per iteration, over mimalloc
/// (as the examples run: with glibc's malloc, a training step's fresh
/// activations come from pages the kernel must zero again every step; see
/// README's Performance section).
pub struct CountingAlloc;

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated now, and the most since the last reset.
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

fn count_alloc(bytes: usize) {
    let live = LIVE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: forwards every call unchanged to mimalloc; the
// counter is a relaxed atomic increment with no effect on the memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        count_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { INNER.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        count_alloc(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

/// The derived model of the `multi` and `train` workloads.
#[derive(MultiOutput)]
struct BenchModel {
    #[trunk]
    hidden: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
}

struct Row {
    /// The peak heap memory of one step beyond what was live before it
    /// (bytes; 0 where not measured).
    peak: f64,
    workload: String,
    shape: String,
    threads: usize,
    batch: usize,
    seconds: f64,
    bytes: f64,
    flops: f64,
    allocations: f64,
}

/// Median seconds per iteration of `f`, after warm-up, and allocations per
/// iteration.
/// The most heap memory `f` holds at once beyond what was live before it
/// (bytes, over one call).
fn peak_bytes(mut f: impl FnMut()) -> f64 {
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(base, Ordering::Relaxed);
    f();
    (PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(base)) as f64
}

fn time(quick: bool, mut f: impl FnMut()) -> (f64, f64) {
    let budget = if quick { 0.05 } else { 0.4 };
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed().as_secs_f64() < budget / 4.0 || iters < 3 {
        f();
        iters += 1;
    }
    let per = start.elapsed().as_secs_f64() / iters as f64;
    let inner = ((budget / 7.0 / per) as u64).max(1);
    let mut samples = Vec::new();
    let mut allocs = 0.0;
    for _ in 0..7 {
        let a0 = ALLOCATIONS.load(Ordering::Relaxed);
        let t = Instant::now();
        for _ in 0..inner {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() / inner as f64);
        allocs = (ALLOCATIONS.load(Ordering::Relaxed) - a0) as f64 / inner as f64;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[3], allocs)
}

/// STREAM triad `a = b + s c` over arrays far larger than the caches: GB/s.
fn triad_bandwidth(quick: bool) -> f64 {
    let n = if quick { 4 << 20 } else { 32 << 20 };
    let b = vec![1.0_f32; n];
    let c = vec![2.0_f32; n];
    let mut a = vec![0.0_f32; n];
    let (t, _) = time(quick, || {
        for ((a, b), c) in a.iter_mut().zip(&b).zip(&c) {
            *a = b + 3.0 * c;
        }
        black_box(&a);
    });
    (3 * 4 * n) as f64 / t / 1e9
}

/// matrixmultiply f32 GEMM throughput on 1024^3 (512^3 quick): GFLOP/s.
fn gemm_rate(quick: bool) -> f64 {
    let n = if quick { 512 } else { 1024 };
    let a = Tensor::<f32>::rand_normal(&[n, n], 0.0, 1.0, 1).unwrap();
    let b = Tensor::<f32>::rand_normal(&[n, n], 0.0, 1.0, 2).unwrap();
    let (t, _) = time(quick, || {
        black_box(a.matmul(&b).unwrap());
    });
    2.0 * (n * n * n) as f64 / t / 1e9
}

fn labels(batch: usize, classes: usize, seed: u64) -> Labels {
    let mut rng = Rng::new(seed);
    Labels::from_classes(
        &(0..batch)
            .map(|_| rng.below(classes as u64) as usize)
            .collect::<Vec<_>>(),
    )
}

fn ce_row(quick: bool, batch: usize, classes: usize) -> Row {
    let logits = Tensor::<f32>::rand_normal(&[batch, classes], 0.0, 3.0, 1).unwrap();
    let y = labels(batch, classes, 2);
    let loss = SparseCrossEntropy::from_logits();
    let mut grad = None;
    let (seconds, allocations) = time(quick, || {
        let out = loss
            .value_and_grad_into(&logits, &y, None, grad.take())
            .unwrap();
        grad = Some(out.grad);
    });
    let bytes = (batch * classes * 8 + batch * 8) as f64;
    Row {
        workload: "ce".into(),
        shape: format!("{batch}x{classes}"),
        threads: 1,
        batch,
        seconds,
        bytes,
        flops: 0.0,
        allocations,
        peak: 0.0,
    }
}

/// Binary cross-entropy from logits (Keras' convention, mean), targets 0
/// or 1: the pointwise loss on logits whose `exp` and `log1p` per element
/// make it compute-bound.
fn bce_row(quick: bool, batch: usize, classes: usize) -> Row {
    let logits = Tensor::<f32>::rand_normal(&[batch, classes], 0.0, 3.0, 1).unwrap();
    let t = Tensor::<f32>::rand_uniform(&[batch, classes], 0.0, 1.0, 2)
        .unwrap()
        .map(|u| if u < 0.5 { 1.0 } else { 0.0 });
    let loss = BinaryCrossEntropy::from_logits();
    let mut grad = None;
    let (seconds, allocations) = time(quick, || {
        let out = loss
            .value_and_grad_into(&logits, &t, None, grad.take())
            .unwrap();
        grad = Some(out.grad);
    });
    Row {
        workload: "bce".into(),
        shape: format!("{batch}x{classes}"),
        threads: 1,
        batch,
        seconds,
        bytes: (batch * classes * 12) as f64,
        flops: 0.0,
        allocations,
        peak: 0.0,
    }
}

fn mse_row(quick: bool, batch: usize) -> Row {
    let p = Tensor::<f32>::rand_normal(&[batch, 4], 0.0, 1.0, 1).unwrap();
    let t = Tensor::<f32>::rand_normal(&[batch, 4], 0.0, 1.0, 2).unwrap();
    let loss = Mse::new();
    let mut grad = None;
    let (seconds, allocations) = time(quick, || {
        let out = loss.value_and_grad_into(&p, &t, None, grad.take()).unwrap();
        grad = Some(out.grad);
    });
    Row {
        workload: "mse".into(),
        shape: format!("{batch}x4"),
        threads: 1,
        batch,
        seconds,
        bytes: (batch * 4 * 12) as f64,
        flops: 0.0,
        allocations,
        peak: 0.0,
    }
}

fn model(seed: u64) -> BenchModel {
    let mut rng = Rng::new(seed);
    BenchModel {
        hidden: Dense::builder(784, 64)
            .activation(Activation::Relu)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(64, 10, &mut rng).unwrap(),
        bbox: Dense::new(64, 4, &mut rng).unwrap(),
    }
}

/// The derived model's weighted loss, gradients w.r.t. both heads' outputs.
fn multi_row(quick: bool, batch: usize) -> Row {
    let m = model(1);
    let class_out = Tensor::<f32>::rand_normal(&[batch, 10], 0.0, 3.0, 3).unwrap();
    let bbox_out = Tensor::<f32>::rand_normal(&[batch, 4], 0.0, 1.0, 4).unwrap();
    let targets = BenchModelTargets::new(
        labels(batch, 10, 5),
        Tensor::rand_uniform(&[batch, 4], 0.0, 1.0, 6).unwrap(),
    );
    let weights = BenchModelLossWeights::default();
    let (seconds, allocations) = time(quick, || {
        let tape = Tape::new();
        let outputs = BenchModelOutputs {
            class: tape.leaf(class_out.clone()),
            bbox: tape.leaf(bbox_out.clone()),
        };
        let loss = m.weighted_loss(&outputs, &targets, &weights).unwrap();
        let grads = tape.backward(loss.total).unwrap();
        black_box((
            grads.get(outputs.class).is_some(),
            grads.get(outputs.bbox).is_some(),
        ));
    });
    let bytes = (batch * 10 * 8 + batch * 8 + batch * 4 * 12) as f64;
    Row {
        workload: "multi".into(),
        shape: format!("{batch}"),
        threads: 1,
        batch,
        seconds,
        bytes,
        flops: 0.0,
        allocations,
        peak: 0.0,
    }
}

#[derive(MultiOutput)]
struct CnnBenchModel {
    #[trunk]
    body: Sequential,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
}

/// One SGD step of the convolutional model: `[B, 28, 28, 1]` ->
/// Conv2D(16, 3, same, relu) -> MaxPooling2D(2) -> Conv2D(32, 3, same,
/// relu) -> MaxPooling2D(2) -> GlobalAveragePooling2D -> Dense(10) sparse
/// cross-entropy (1.0) and Dense(4) MSE (0.5).
fn cnn_row(quick: bool, batch: usize) -> Row {
    let mut rng = Rng::new(5);
    let conv = |cin, cout, rng: &mut Rng| {
        Conv2D::builder(cin, cout, [3, 3])
            .padding(Padding::Same)
            .activation(Activation::Relu)
            .build(rng)
            .unwrap()
    };
    let m = CnnBenchModel {
        body: Sequential::new()
            .push(conv(1, 16, &mut rng))
            .push(Pooling2D::max([2, 2]))
            .push(conv(16, 32, &mut rng))
            .push(Pooling2D::max([2, 2]))
            .push(GlobalPooling::average_2d()),
        class: Dense::new(32, 10, &mut rng).unwrap(),
        bbox: Dense::new(32, 4, &mut rng).unwrap(),
    };
    let x = Tensor::<f32>::rand_uniform(&[batch, 28, 28, 1], 0.0, 1.0, 7).unwrap();
    let targets = CnnBenchModelTargets::new(
        labels(batch, 10, 8),
        Tensor::rand_uniform(&[batch, 4], 0.0, 1.0, 9).unwrap(),
    );
    // The count: about 5.9 MFLOP per sample for the step.
    step_row(
        quick,
        "cnn",
        format!("{batch}x28x28"),
        batch,
        5.9e6 * batch as f64,
        m,
        x,
        targets,
    )
}

#[derive(MultiOutput)]
struct SeqBenchModel {
    #[trunk]
    body: Sequential,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    tokens: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 0.5, target = Labels)]
    utterance: Sequential,
}

/// One SGD step of the sequence issue's model: token ids `[B, 32]`
/// (vocabulary 1000) -> Embedding(64) -> LSTM(64, every step) -> a
/// per-token Dense(9) and a mean-pooled Dense(5), both sparse
/// cross-entropy from logits (weights 1.0 and 0.5).
fn seq_row(quick: bool, batch: usize) -> Row {
    let mut rng = Rng::new(6);
    let m = SeqBenchModel {
        body: Sequential::new()
            .push(Embedding::new(1000, 64, &mut rng).unwrap())
            .push(Lstm::new(64, 64, &mut rng).unwrap().return_sequences(true)),
        tokens: Dense::new(64, 9, &mut rng).unwrap(),
        utterance: Sequential::new()
            .push(GlobalPooling::average_1d())
            .push(Dense::new(64, 5, &mut rng).unwrap()),
    };
    let mut ids_rng = Rng::new(10);
    let ids: Vec<f32> = (0..batch * 32)
        .map(|_| ids_rng.below(1000) as f32)
        .collect();
    let x = Tensor::from_vec(ids, &[batch, 32]).unwrap();
    let token_labels = Labels::new(
        (0..batch * 32).map(|i| (i * 7 % 9) as i64).collect(),
        &[batch, 32],
    )
    .unwrap();
    let targets = SeqBenchModelTargets::new(token_labels, labels(batch, 5, 11));
    // The count: about 6.3 MFLOP per sample for the step.
    step_row(
        quick,
        "seq",
        format!("{batch}x32"),
        batch,
        6.3e6 * batch as f64,
        m,
        x,
        targets,
    )
}

/// One workload of whole training steps (forward, weighted loss, backward,
/// SGD update) of `model` on `x` and `targets`: the step's time, heap
/// allocations and peak memory, and `flops` per step for the roofline.
#[allow(clippy::too_many_arguments)]
fn step_row<M: MultiOutput<f32>>(
    quick: bool,
    workload: &str,
    shape: String,
    batch: usize,
    flops: f64,
    mut model: M,
    x: M::Inputs<Tensor<f32>>,
    targets: M::Targets,
) -> Row {
    let mut opt = Sgd::new(0.1).build();
    let weights = M::LossWeights::default();
    let mut step = || {
        let tape = Tape::new();
        let outputs = model.forward_heads(M::input_vars(&tape, &x)).unwrap();
        let loss = model.weighted_loss(&outputs, &targets, &weights).unwrap();
        let grads = tape.backward(loss.total).unwrap();
        opt.step(&mut model, &grads).unwrap();
    };
    step();
    let peak = peak_bytes(&mut step);
    let (seconds, allocations) = time(quick, step);
    Row {
        workload: workload.into(),
        shape,
        threads: 1,
        batch,
        seconds,
        bytes: 0.0,
        flops,
        allocations,
        peak,
    }
}

/// One SGD step (forward, backward, update) of the derived model.
fn train_row(quick: bool, batch: usize) -> Row {
    let x = Tensor::<f32>::rand_uniform(&[batch, 784], 0.0, 1.0, 7).unwrap();
    let targets = BenchModelTargets::new(
        labels(batch, 10, 8),
        Tensor::rand_uniform(&[batch, 4], 0.0, 1.0, 9).unwrap(),
    );
    // Forward 2*B*(784*64 + 64*14) FLOPs. Backward: the heads need their
    // kernels' and inputs' gradients (twice their forward), the first layer
    // only its kernel's (once: the input is a constant).
    let flops = 2.0 * batch as f64 * (2.0 * 784.0 * 64.0 + 3.0 * 64.0 * 14.0);
    step_row(
        quick,
        "train",
        format!("{batch}"),
        batch,
        flops,
        model(1),
        x,
        targets,
    )
}

/// One epoch of `fit` on the `train` workload's model (4096 samples,
/// batches of 128, SGD 0.1), from `source`: `memory` (the tensors), `npy`
/// (`fit_dataset` copying the inputs' rows out of a memory-mapped `.npy`),
/// `images` (`fit_dataset` decoding a folder of 28x28 grey PNGs listed by
/// a manifest) or `csv` (a CSV of the 784 inputs read whole with
/// `CsvReader`, then one epoch of `fit`: text is parsed once, not per
/// epoch, so this row is the parse plus an epoch). The README compares
/// each with `memory` at the same thread count (the data issue's target:
/// under 5% more for `npy` on two threads).
fn data_row(quick: bool, source: &str) -> Row {
    use polyhead::data::{CsvReader, FromFn, ImageFolder, NpyRows, write_npy};
    let n = if quick { 1024 } else { 4096 };
    // 8-bit levels, so that every source holds the same numbers.
    let x = Tensor::<f32>::from_vec(
        Tensor::<f32>::rand_uniform(&[n, 784], 0.0, 1.0, 7)
            .unwrap()
            .to_vec()
            .iter()
            .map(|v| (v * 255.0).round() / 255.0)
            .collect(),
        &[n, 784],
    )
    .unwrap();
    let targets = BenchModelTargets::new(
        labels(n, 10, 8),
        Tensor::rand_uniform(&[n, 4], 0.0, 1.0, 9).unwrap(),
    );
    let dir = std::env::temp_dir().join(format!(
        "polyhead-bench-data-{source}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let pixels = x.to_vec();
    let inputs: Vec<String> = (0..784).map(|c| format!("p{c}")).collect();
    match source {
        "npy" => write_npy(dir.join("x.npy"), &x).unwrap(),
        "csv" => {
            let mut text = inputs.join(",");
            text.push('\n');
            for row in pixels.chunks(784) {
                let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                text.push_str(&cells.join(","));
                text.push('\n');
            }
            std::fs::write(dir.join("x.csv"), text).unwrap();
        }
        "images" => {
            let mut manifest = String::from("file\n");
            for (i, row) in pixels.chunks(784).enumerate() {
                let levels = row.iter().map(|v| (v * 255.0).round() as u8).collect();
                image::GrayImage::from_raw(28, 28, levels)
                    .unwrap()
                    .save(dir.join(format!("{i}.png")))
                    .unwrap();
                manifest.push_str(&format!("{i}.png\n"));
            }
            std::fs::write(dir.join("manifest.csv"), manifest).unwrap();
        }
        _ => {}
    }
    let npy = (source == "npy").then(|| NpyRows::open(dir.join("x.npy")).unwrap());
    let images = (source == "images").then(|| {
        ImageFolder::new(&dir, "manifest.csv", "file", [28, 28], 1)
            .index::<f32>(&CsvReader::new())
            .unwrap()
            .0
    });
    let data = FromFn::new(n, |r: &[usize]| {
        let x = match (&npy, &images) {
            (Some(rows), _) => rows.rows::<f32>(r)?,
            (_, Some(images)) => images.rows::<f32>(r)?.reshape(&[r.len(), 784])?,
            _ => unreachable!("a streamed source"),
        };
        Ok((x, polyhead::TargetSet::select_rows(&targets, r)?))
    });
    let columns: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let mut m = model(1);
    let mut epoch = || {
        let mut trainer = polyhead::Trainer::<BenchModel, f32>::new(Sgd::new(0.1).build())
            .epochs(1)
            .batch_size(128)
            .shuffle(Some(3))
            .progress(polyhead::Progress::Silent);
        let history = match source {
            "memory" => trainer.fit(&mut m, &x, &targets),
            "csv" => {
                let table = CsvReader::new()
                    .inputs(&columns)
                    .read::<f32>(dir.join("x.csv"))
                    .unwrap();
                trainer.fit(&mut m, table.inputs(), &targets)
            }
            _ => trainer.fit_dataset(&mut m, &data),
        };
        black_box(history.unwrap());
    };
    let (seconds, allocations) = time(quick, &mut epoch);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        workload: "data".into(),
        shape: format!("{source} {n}x784"),
        threads: 1,
        batch: n,
        seconds,
        bytes: 0.0,
        flops: 0.0,
        allocations,
        peak: 0.0,
    }
}

/// For each streamed source's row, the share of its epoch spent beyond the
/// in-memory epoch at the same thread count (waiting for data: reading,
/// decoding, or the reader thread's share of the cores), one line each.
fn data_waits(rows: &[Row]) -> Vec<String> {
    let memory = |threads: usize| {
        rows.iter()
            .find(|r| r.workload == "data" && r.shape.starts_with("memory") && r.threads == threads)
    };
    rows.iter()
        .filter(|r| r.workload == "data" && !r.shape.starts_with("memory"))
        .filter_map(|r| {
            let m = memory(r.threads)?;
            Some(format!(
                "data {} on {} thread{}: {:.1}% of the epoch beyond the in-memory epoch ({:.2} ms vs {:.2} ms)",
                r.shape,
                r.threads,
                if r.threads == 1 { "" } else { "s" },
                100.0 * (r.seconds - m.seconds) / r.seconds,
                r.seconds * 1e3,
                m.seconds * 1e3
            ))
        })
        .collect()
}

pub const WORKLOADS: &[&str] = &["ce", "bce", "mse", "multi", "train", "cnn", "seq", "data"];

/// What `cargo xtask bench` was asked for.
#[derive(Debug, Default)]
pub struct Options {
    /// A reduced set that runs in seconds.
    pub quick: bool,
    /// Only these workloads (every one when `None`).
    pub filter: Option<Vec<String>>,
    /// Peers timed by `scripts/peers/peers.py`: a speed-up column each.
    pub peers: Vec<crate::peers::Peer>,
}

/// Runs the benchmark.
pub fn run(options: &Options) -> Result<(), String> {
    let quick = options.quick;
    let filter = &options.filter;
    let wants = |w: &str| filter.as_ref().is_none_or(|f| f.iter().any(|x| x == w));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "polyhead bench ({}; {threads} threads available; each workload at 1 and {threads} threads; \
         rooflines use the single-thread triad and GEMM rates)",
        if quick { "quick" } else { "full" }
    );
    let mut thread_counts = vec![1];
    if threads > 1 {
        thread_counts.push(threads);
    }
    // Runs a workload inside a rayon pool of each size and labels the rows.
    let at_threads = |make: &(dyn Fn() -> Row + Sync)| -> Vec<Row> {
        thread_counts
            .iter()
            .map(|&n| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("a rayon thread pool");
                // As in `Trainer::fit`, the pool's other threads poll for
                // work while the workload repeats (a no-op on one thread).
                let mut row = pool.install(|| with_awake_pool(make));
                row.threads = n;
                row
            })
            .collect()
    };
    let bandwidth = triad_bandwidth(quick);
    // polyhead's GEMM splits large products over the rayon pool, so the
    // single-thread rate (the roofline) is measured inside a 1-thread pool.
    let gemm_at = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("a rayon thread pool")
            .install(|| gemm_rate(quick))
    };
    let gflops = gemm_at(1);
    let gflops_all = if threads > 1 {
        gemm_at(threads)
    } else {
        gflops
    };
    println!(
        "machine: triad {bandwidth:.1} GB/s, f32 GEMM {gflops:.1} GFLOP/s on 1 thread, \
         {gflops_all:.1} on {threads} (polyhead's blocked matrixmultiply)\n"
    );

    let mut rows = Vec::new();
    if wants("ce") {
        let shapes: &[(usize, usize)] = if quick {
            &[(32, 10), (1024, 10)]
        } else {
            &[
                (32, 10),
                (1024, 10),
                (65536, 10),
                (1024, 1000),
                (16384, 1000),
            ]
        };
        rows.extend(
            shapes
                .iter()
                .flat_map(|&(b, c)| at_threads(&|| ce_row(quick, b, c))),
        );
    }
    if wants("bce") {
        let batches: &[usize] = if quick { &[1024] } else { &[1024, 65536] };
        rows.extend(
            batches
                .iter()
                .flat_map(|&b| at_threads(&|| bce_row(quick, b, 10))),
        );
    }
    if wants("mse") {
        let batches: &[usize] = if quick {
            &[32, 1024]
        } else {
            &[32, 1024, 65536]
        };
        rows.extend(
            batches
                .iter()
                .flat_map(|&b| at_threads(&|| mse_row(quick, b))),
        );
    }
    if wants("multi") {
        let batches: &[usize] = if quick { &[32] } else { &[32, 1024, 65536] };
        rows.extend(
            batches
                .iter()
                .flat_map(|&b| at_threads(&|| multi_row(quick, b))),
        );
    }
    if wants("train") {
        let batches: &[usize] = if quick { &[128] } else { &[128, 1024] };
        rows.extend(
            batches
                .iter()
                .flat_map(|&b| at_threads(&|| train_row(quick, b))),
        );
    }

    if wants("cnn") {
        let batches: &[usize] = if quick { &[32] } else { &[32, 256] };
        rows.extend(
            batches
                .iter()
                .flat_map(|&b| at_threads(&|| cnn_row(quick, b))),
        );
    }

    for p in &options.peers {
        println!(
            "x {}: {} seconds per iteration (timed {}) / polyhead's, same workload and thread count",
            p.short_name(),
            p.name,
            p.date
        );
    }
    let peer_heads: String = options
        .peers
        .iter()
        .map(|p| format!(" x {} |", p.short_name()))
        .collect();
    if wants("seq") {
        let batches: &[usize] = if quick { &[32] } else { &[32, 128] };
        rows.extend(
            batches
                .iter()
                .flat_map(|&b| at_threads(&|| seq_row(quick, b))),
        );
    }

    if wants("data") {
        for source in ["memory", "npy", "images", "csv"] {
            rows.extend(at_threads(&|| data_row(quick, source)));
        }
    }

    println!(
        "| workload | shape | threads | time/iter | samples/s | GB/s | roofline | allocs/iter | peak MB |{peer_heads}"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |{}",
        " --- |".repeat(options.peers.len())
    );
    let mut json = Vec::new();
    for r in &rows {
        let gbs = r.bytes / r.seconds / 1e9;
        let roofline = if r.flops > 0.0 {
            r.flops / (gflops * 1e9) / r.seconds
        } else {
            r.bytes / (bandwidth * 1e9) / r.seconds
        };
        let time = if r.seconds < 1e-3 {
            format!("{:.1} us", r.seconds * 1e6)
        } else {
            format!("{:.2} ms", r.seconds * 1e3)
        };
        let speedups: Vec<(String, Option<f64>)> = options
            .peers
            .iter()
            .map(|p| {
                let ratio = p
                    .seconds(&r.workload, &r.shape, r.threads)
                    .map(|s| s / r.seconds);
                (p.name.clone(), ratio)
            })
            .collect();
        let peer_cells: String = speedups
            .iter()
            .map(|(_, ratio)| match ratio {
                Some(x) => format!(" {x:.2} |"),
                None => " - |".into(),
            })
            .collect();
        println!(
            "| {} | {} | {} | {time} | {:.3e} | {} | {:.1}% | {:.0} | {} |{peer_cells}",
            r.workload,
            r.shape,
            r.threads,
            r.batch as f64 / r.seconds,
            if r.bytes > 0.0 {
                format!("{gbs:.2}")
            } else {
                "-".into()
            },
            roofline * 100.0,
            r.allocations,
            if r.peak > 0.0 {
                format!("{:.1}", r.peak / 1e6)
            } else {
                "-".into()
            }
        );
        json.push(serde_json::json!({
            "workload": r.workload, "shape": r.shape, "threads": r.threads, "batch": r.batch,
            "seconds_per_iter": r.seconds, "samples_per_second": r.batch as f64 / r.seconds,
            "gb_per_second": gbs, "roofline_fraction": roofline, "allocations_per_iter": r.allocations, "peak_bytes": r.peak,
            "speedup_over_peers": speedups.iter().filter_map(|(n, x)| x.map(|x| (n.clone(), serde_json::json!(x)))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    let out = serde_json::json!({
        "quick": quick, "threads_available": threads,
        "machine": { "triad_gb_per_second": bandwidth, "gemm_gflops": gflops, "gemm_gflops_all_threads": gflops_all },
        "rows": json,
        "peers": options.peers.iter().map(|p| serde_json::json!({"name": p.name, "timed": p.date})).collect::<Vec<_>>(),
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("bench.json"),
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    for line in data_waits(&rows) {
        println!("{line}");
    }
    println!("\nwrote target/bench/bench.json");
    Ok(())
}
