//! Data-parallel training over MPI (feature `mpi`): each test launches
//! this test binary under `mpirun -n 2`, asking for the same test with
//! `POLYHEAD_MPI_WORKER` set; run that way, the test is one rank of the
//! job (its `worker_*` function) and prints what it found, which the
//! launching test checks. `cargo test -p polyhead --features mpi --test
//! mpi` needs Open MPI's `mpirun` (CI installs it: `.ci/run`).
#![cfg(feature = "mpi")]

use std::process::Command;

use polyhead::distributed::{Collective, DataParallel, Mpi};
use polyhead::prelude::*;
use polyhead::{ModelCheckpoint, Progress, Trainer};

mod common;
use common::{Net, net};

/// The shared data with the shared seed.
fn data(n: usize) -> (Tensor<f64>, common::NetTargets<f64>) {
    common::data(n, 3)
}

fn values(model: &Net) -> Vec<f64> {
    model
        .parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .collect()
}

fn trainer(epochs: usize) -> Trainer<Net, f64> {
    Trainer::<Net, f64>::new(Adam::new(0.01).build())
        .epochs(epochs)
        .batch_size(16)
        .shuffle(Some(5))
        .progress(Progress::Silent)
}

/// Whether this process is a rank launched by `launch` (not the test run
/// that launches it).
fn is_worker() -> bool {
    std::env::var_os("POLYHEAD_MPI_WORKER").is_some()
}

/// Runs test `name` of this binary as 2 MPI ranks (each a worker); returns
/// mpirun's success and output.
fn launch(name: &str, dir: &std::path::Path) -> (bool, String) {
    let out = Command::new("mpirun")
        .args(["-n", "2", "--oversubscribe"])
        .args(if running_as_root() {
            &["--allow-run-as-root"][..]
        } else {
            &[][..]
        })
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env("POLYHEAD_MPI_DIR", dir)
        .env("POLYHEAD_MPI_WORKER", "1")
        .output()
        .expect("mpirun runs (Open MPI installed)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn running_as_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("polyhead-mpi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two ranks, sums by `MPI_Allreduce` and, deterministic, by gather: both
/// ranks end with the same parameters bit for bit, those of one process
/// with the same global batch to float64 summation order (1e-9); only
/// rank 0 writes its checkpoint, which one process resumes.
#[test]
fn two_ranks_train_as_one_process() {
    if is_worker() {
        return worker_trains();
    }
    let dir = scratch("train");
    let (ok, text) = launch("two_ranks_train_as_one_process", &dir);
    assert!(ok, "{text}");
    for rank in 0..2 {
        for mode in ["allreduce", "deterministic"] {
            assert!(
                text.contains(&format!(
                    "rank {rank} {mode}: same on every rank, one-process match"
                )),
                "{text}"
            );
        }
    }
    assert!(dir.join("rank0.safetensors").exists());
    assert!(
        !dir.join("rank1.safetensors").exists(),
        "rank 1 wrote a checkpoint"
    );
    let mut resumed = net(9);
    let mut more = trainer(1);
    more.load_checkpoint(dir.join("rank0.safetensors"), &mut resumed)
        .unwrap();
    assert_eq!(more.optimizer().steps(), 8, "2 epochs of 4 steps restored");
    let (x, t) = data(50);
    more.fit(&mut resumed, &x, &t).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rank whose data fails: both ranks stop with an error naming it.
#[test]
fn a_failing_rank_stops_both() {
    if is_worker() {
        return worker_fails();
    }
    let dir = scratch("fail");
    let (ok, text) = launch("a_failing_rank_stops_both", &dir);
    assert!(ok, "{text}");
    assert!(
        text.contains("rank 0 stopped: data-parallel training stopped: rank 1 failed at epoch 1, step 2: see that rank's output"),
        "{text}"
    );
    assert!(
        text.contains("rank 1 stopped: data-parallel training stopped: rank 1 failed at epoch 1, step 2: shard.npy: unreadable"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rank that dies (its process exits mid-training): mpirun ends the job
/// instead of leaving rank 0 waiting; the checkpoint rank 0 wrote before is
/// whole and loads.
#[test]
fn a_killed_rank_ends_the_job_and_the_checkpoint_loads() {
    if is_worker() {
        return worker_dies();
    }
    let dir = scratch("killed");
    let (ok, text) = launch("a_killed_rank_ends_the_job_and_the_checkpoint_loads", &dir);
    assert!(!ok, "the job should fail when a rank dies: {text}");
    let mut model = net(1);
    Trainer::<Net, f64>::new(Adam::new(0.01).build())
        .load_checkpoint(dir.join("rank0.safetensors"), &mut model)
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

fn world() -> (mpi::environment::Universe, usize) {
    let universe = mpi::initialize().expect("MPI initialises once");
    let rank = universe.world().rank() as usize;
    (universe, rank)
}

use mpi::topology::Communicator;

/// One rank of the job its test launches.
fn worker_trains() {
    let dir = std::path::PathBuf::from(std::env::var("POLYHEAD_MPI_DIR").unwrap());
    let (universe, rank) = world();
    let (x, t) = data(50);
    let mut alone = net(1);
    trainer(2).fit(&mut alone, &x, &t).unwrap();
    for (mode, deterministic) in [("allreduce", false), ("deterministic", true)] {
        let mut model = net(1 + rank as u64);
        let mut tr = trainer(2).data_parallel(
            DataParallel::new(Mpi::new(universe.world())).deterministic(deterministic),
        );
        if deterministic {
            tr = tr.callback(ModelCheckpoint::new(
                dir.join(format!("rank{rank}.safetensors")),
            ));
        }
        tr.fit(&mut model, &x, &t).unwrap();
        let mine = values(&model);
        // Rank 0's values on every rank, compared bit for bit.
        let mut first = mine.clone();
        let check = Mpi::new(universe.world());
        check.broadcast(&mut first).unwrap();
        let differ = mine
            .iter()
            .zip(&first)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        let mut all = vec![differ as f64];
        check.all_sum(&mut all, true).unwrap();
        assert_eq!(all[0], 0.0, "{mode}: parameters differ between ranks");
        for (a, b) in mine.iter().zip(&values(&alone)) {
            assert!(
                (a - b).abs() <= 1e-9 * (1.0 + a.abs()),
                "{mode}: {a} vs one process {b}"
            );
        }
        let stats = tr.parallel().unwrap().stats();
        println!(
            "rank {rank} {mode}: same on every rank, one-process match ({} bytes per step, {:.1}% of training time in communication)",
            stats.bytes_per_step(),
            100.0 * stats.communication_share()
        );
    }
}

/// One rank of the job its test launches.
fn worker_fails() {
    use polyhead::data::FromFn;
    let (universe, rank) = world();
    let (x, t) = data(50);
    let data = FromFn::new(50, |rows: &[usize]| {
        if rank == 1 && rows.contains(&30) {
            return Err(polyhead::Error::File {
                path: "shard.npy".into(),
                message: "unreadable".into(),
            });
        }
        Ok((
            <Net as polyhead::MultiOutput<f64>>::select_input_rows(&x, rows)?,
            polyhead::TargetSet::<f64>::select_rows(&t, rows)?,
        ))
    });
    let mut model = net(1);
    let err = trainer(1)
        .shuffle(None)
        .data_parallel(DataParallel::new(Mpi::new(universe.world())))
        .fit_dataset(&mut model, &data)
        .unwrap_err();
    println!("rank {rank} stopped: {err}");
}

/// One rank of the job its test launches.
fn worker_dies() {
    let dir = std::path::PathBuf::from(std::env::var("POLYHEAD_MPI_DIR").unwrap());
    let (universe, rank) = world();
    let (x, t) = data(50);
    let mut model = net(1);
    // Rank 1 exits during the second epoch, after rank 0 saved the first.
    struct Die(usize);
    impl polyhead::Callback<Net, f64> for Die {
        fn on_epoch_begin(
            &mut self,
            epoch: usize,
            _: &mut polyhead::TrainContext<'_, Net, f64>,
        ) -> polyhead::Result<()> {
            if self.0 == 1 && epoch == 1 {
                std::process::exit(3);
            }
            Ok(())
        }
    }
    let _ = trainer(3)
        .callback(ModelCheckpoint::new(
            dir.join(format!("rank{rank}.safetensors")),
        ))
        .callback(Die(rank))
        .data_parallel(DataParallel::new(Mpi::new(universe.world())))
        .fit(&mut model, &x, &t);
}
