//! The main job: train the multi-output model of the Keras article on
//! synthetic digit images, a class head and a box head on a shared layer.
//!
//! `cargo run --release --example digit_bbox` prints one line per epoch, the
//! final validation accuracy and box error, and writes the history plot to
//! `target/digit_bbox/history.svg` and `history.png` (and the numbers to
//! `history.json`). With `-- --cnn` it trains the convolutional version of
//! the model on the same glyphs (10000 images, 8 epochs) and writes to
//! `target/digit_bbox_cnn/`. With `-- --from-disk` it writes the glyphs to
//! `target/digit_bbox_data/` as image folders (one PNG per glyph and a
//! manifest `labels.csv`, 20% of the training classes and, separately, 20%
//! of the training boxes left out; and the pixels again in `images.npz`),
//! then trains the dense model streaming the training PNGs through
//! `fit_dataset`, each head on the rows that have its label, and validates
//! on the `.npz` and its manifest. The default run also writes its plot to
//! `docs/images/digit_bbox_history.png` (the README's picture). With
//! `-- --tensorboard DIR` any run writes TensorBoard logs to `DIR`. With
//! `-- --mpi`, built with `--features mpi` and started by `mpirun -n N`,
//! the run is data-parallel over the N processes (rank 0 reports and
//! writes; the others train their shards silently).

use polyhead::Progress;

/// mimalloc instead of the system allocator: a training step allocates its
/// activations afresh, and glibc's malloc returns the large blocks to the
/// kernel between steps, which then zeroes fresh pages for the next one
/// (on this machine the convolutional run spent three quarters of its time
/// in the kernel that way: 17.6 s with glibc, 5.6 s with mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use polyhead_examples::digit_bbox::{Architecture, Config, run, run_from_disk};

fn main() -> polyhead::Result<()> {
    let usage = "the options are --cnn, --from-disk, --tensorboard DIR and --mpi";
    let (mut cnn, mut from_disk, mut tensorboard, mut mpi) = (false, false, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cnn" => cnn = true,
            "--from-disk" => from_disk = true,
            "--mpi" => mpi = true,
            "--tensorboard" => {
                let dir = args.next().ok_or_else(|| {
                    polyhead::Error::Other(format!(
                        "digit_bbox: --tensorboard needs a folder; {usage}"
                    ))
                })?;
                tensorboard = Some(std::path::PathBuf::from(dir));
            }
            other => {
                return Err(polyhead::Error::Other(format!(
                    "digit_bbox: unknown argument {other:?}; {usage}"
                )));
            }
        }
    }
    if cnn && from_disk {
        return Err(polyhead::Error::Other(format!(
            "digit_bbox: --cnn and --from-disk are separate runs; {usage}"
        )));
    }
    // Data-parallel over MPI: the universe lives until the end of main.
    #[cfg(feature = "mpi")]
    let universe = if mpi {
        Some(mpi::initialize().ok_or_else(|| {
            polyhead::Error::Other("digit_bbox: MPI was already initialised".into())
        })?)
    } else {
        None
    };
    #[cfg(feature = "mpi")]
    let (rank, ranks) = universe.as_ref().map_or((0, 1), |u| {
        use mpi::topology::Communicator;
        (u.world().rank() as usize, u.world().size() as usize)
    });
    #[cfg(not(feature = "mpi"))]
    let (rank, ranks) = if mpi {
        return Err(polyhead::Error::Other(
            "digit_bbox: --mpi needs the example built with `--features mpi`".into(),
        ));
    } else {
        (0, 1)
    };
    let config = Config {
        architecture: if cnn {
            Architecture::Convolutional
        } else {
            Architecture::Dense
        },
        train: if cnn { 10000 } else { 30000 },
        validation: 1000,
        epochs: if cnn { 8 } else { 15 },
        progress: Progress::Auto,
        weighting: || Box::new(polyhead::weighting::Fixed),
        tensorboard: tensorboard.clone(),
        data_parallel: data_parallel(ranks),
    };
    let model = if cnn {
        "28x28x1 -> Conv2D 16 relu -> max pool -> Conv2D 32 relu -> max pool -> Dense 64 relu"
    } else {
        "784 -> Dense 64 relu"
    };
    if rank != 0 {
        // Another rank: train its shards; rank 0 reports and writes.
        if from_disk {
            run_from_disk(
                &config,
                &std::env::temp_dir().join(format!("digit_bbox_rank{rank}")),
                0.2,
            )?;
        } else {
            run(&config)?;
        }
        return Ok(());
    }
    println!(
        "digit_bbox: {model} -> class (10, cross-entropy, weight 1.0) + bbox (4, mse, weight 0.5)\n\
         {} training and {} validation images of 10 glyphs at random positions and scales",
        config.train, config.validation
    );
    let started = std::time::Instant::now();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = if from_disk {
        run_from_disk(&config, &root.join("target/digit_bbox_data"), 0.2)?
    } else {
        run(&config)?
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(stats) = report.communication {
        println!(
            "data-parallel over {ranks} ranks: {:.0} training samples/s, {:.0} bytes summed per step, {:.1}% of training time in communication",
            (config.train * config.epochs) as f64 / stats.total.as_secs_f64(),
            stats.bytes_per_step(),
            100.0 * stats.communication_share()
        );
    }
    let folder = match (cnn, from_disk) {
        (true, _) => "target/digit_bbox_cnn",
        (_, true) => "target/digit_bbox_from_disk",
        _ => "target/digit_bbox",
    };
    let out = root.join(folder);
    std::fs::create_dir_all(&out).map_err(|e| polyhead::Error::Other(e.to_string()))?;
    report.history.save_svg(out.join("history.svg"))?;
    report.history.save_png(out.join("history.png"))?;
    report.history.save_json(out.join("history.json"))?;
    println!(
        "validation accuracy: {:.3} (chance: 0.100)",
        report.val_accuracy
    );
    println!(
        "validation box error: {:.2} pixels (mean absolute, per coordinate)",
        report.val_box_error_pixels
    );
    println!("training and validation took {seconds:.1} s");
    println!(
        "history plot: {} (and history.png)",
        out.join("history.svg").display()
    );
    if !cnn && !from_disk && ranks == 1 {
        // The README's picture, the same bytes on every run (training is
        // seeded and bit-identical for any thread count).
        report
            .history
            .save_png(root.join("docs/images/digit_bbox_history.png"))?;
    }
    if let Some(dir) = tensorboard {
        println!(
            "TensorBoard logs: {} (open with: tensorboard --logdir {})",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The data-parallel ranks for `ranks` MPI processes (none for one).
#[cfg(feature = "mpi")]
fn data_parallel(ranks: usize) -> Option<fn() -> polyhead::distributed::DataParallel> {
    (ranks > 1).then_some(|| {
        polyhead::distributed::DataParallel::new(polyhead::distributed::Mpi::new(
            mpi::topology::SimpleCommunicator::world(),
        ))
    })
}

#[cfg(not(feature = "mpi"))]
fn data_parallel(_: usize) -> Option<fn() -> polyhead::distributed::DataParallel> {
    None
}
