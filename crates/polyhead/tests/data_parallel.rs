//! Data-parallel training, with ranks on threads (`ThreadGroup`, the same
//! code path as MPI's ranks save the collective itself): every rank ends
//! with the same parameters, bit for bit; N ranks with global batch B
//! train as one process with batch B (float64, to summation order); logs
//! are global; only rank 0 writes checkpoints; a checkpoint resumes on
//! another number of ranks; a rank's failure stops every rank with an
//! error naming it. The MPI runs are `tests/mpi.rs` (feature `mpi`, under
//! `mpirun -n 2`).

use polyhead::distributed::{DataParallel, ThreadGroup};
use polyhead::prelude::*;
use polyhead::weighting::{Famo, Fixed, GradNorm, Mgda, PcGrad, Uncertainty, UpGrad, Weighting};
use polyhead::{History, ModelCheckpoint, Progress, Trainer};

mod common;

#[derive(MultiOutput)]
#[multi_output(element = f64)]
struct Net {
    #[trunk]
    body: Sequential<f64>,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense<f64>,
    #[head(loss = Mse::new(), weight = 0.5)]
    value: Dense<f64>,
}

fn net(seed: u64) -> Net {
    let mut rng = Rng::new(seed);
    Net {
        body: Sequential::new()
            .push(
                Dense::builder(4, 12)
                    .activation(Activation::Tanh)
                    .build(&mut rng)
                    .unwrap(),
            )
            .push(BatchNormalization::new(12).unwrap()),
        class: Dense::new(12, 3, &mut rng).unwrap(),
        value: Dense::new(12, 1, &mut rng).unwrap(),
    }
}

fn data(n: usize) -> (Tensor<f64>, NetTargets<f64>) {
    let x = Tensor::<f64>::rand_normal(&[n, 4], 0.0, 1.0, 3).unwrap();
    let labels: Vec<usize> = x
        .slice_axis(1, 0, 3)
        .unwrap()
        .argmax_axis(1, false)
        .unwrap()
        .iter()
        .copied()
        .collect();
    let value = x.sum_axis(1, true).unwrap();
    (x, NetTargets::new(Labels::from_classes(&labels), value))
}

fn values(model: &Net) -> Vec<f64> {
    let mut v: Vec<f64> = model
        .parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .collect();
    v.extend(model.buffers().iter().flat_map(|(_, b)| b.value().to_vec()));
    v
}

type Make = fn() -> Box<dyn Weighting<f64>>;

/// Trains `net(seed + rank)` on every rank of a group of `ranks` (rank 0's
/// weights win), returning each rank's final values and History.
fn train_ranks(
    ranks: usize,
    weighting: Make,
    deterministic: bool,
    configure: impl Fn(usize, Trainer<Net, f64>) -> Trainer<Net, f64> + Sync,
) -> Vec<polyhead::Result<(Vec<f64>, History)>> {
    let (x, t) = data(50);
    let group = ThreadGroup::new(ranks);
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..ranks)
            .map(|r| {
                let (x, t, configure) = (&x, &t, &configure);
                let rank = group.rank(r).unwrap();
                s.spawn(move || {
                    let mut model = net(1 + r as u64);
                    let trainer = Trainer::<Net, f64>::new(Adam::new(0.01).build())
                        .epochs(3)
                        .batch_size(16)
                        .shuffle(Some(5))
                        .weighting(weighting())
                        .data_parallel(DataParallel::new(rank).deterministic(deterministic))
                        .progress(Progress::Silent);
                    let mut trainer = configure(r, trainer);
                    let history = trainer.fit(&mut model, x, t)?;
                    Ok((values(&model), history))
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn close(a: &[f64], b: &[f64], tolerance: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * (1.0 + x.abs().max(y.abs())),
            "{what}, value {i}: {x} vs {y}"
        );
    }
}

/// Every strategy kind (weights, an objective, combined head gradients,
/// losses after the step) on 2 and 3 ranks: the same values on every rank
/// bit for bit, and those of one process with the same global batch.
///
/// Tolerance: float64, the same sums in another order (a batch's gradient
/// summed per shard, then over ranks) for 3 epochs of Adam: 1e-9 relative.
/// Batch normalization normalises each shard by its own statistics (as
/// PyTorch's DistributedDataParallel without SyncBatchNorm), so its model
/// is compared on a model without it below.
#[test]
fn ranks_agree_bitwise_and_match_one_process() {
    let strategies: Vec<(&str, Make)> = vec![
        ("fixed", || Box::new(Fixed)),
        ("uncertainty", || Box::new(Uncertainty::new())),
        ("gradnorm", || Box::new(GradNorm::new(1.5))),
        ("pcgrad", || Box::new(PcGrad::new())),
        ("famo", || Box::new(Famo::new())),
        ("mgda", || Box::new(Mgda::new())),
        ("upgrad", || Box::new(UpGrad::new())),
    ];
    for (name, make) in strategies {
        for ranks in [2, 3] {
            for deterministic in [false, true] {
                let runs = train_ranks(ranks, make, deterministic, |_, t| t);
                let runs: Vec<(Vec<f64>, History)> = runs.into_iter().map(|r| r.unwrap()).collect();
                for (r, (v, h)) in runs.iter().enumerate().skip(1) {
                    assert_eq!(v, &runs[0].0, "{name}, {ranks} ranks: rank {r}'s values");
                    assert_eq!(
                        h.get("loss"),
                        runs[0].1.get("loss"),
                        "{name}: rank {r}'s logs"
                    );
                }
            }
        }
        let _ = name;
    }
}

#[test]
fn ranks_train_as_one_process_with_the_global_batch() {
    let (x, t) = common::data(50, 3);
    let strategies: Vec<(&str, Make)> = vec![
        ("fixed", || Box::new(Fixed)),
        ("uncertainty", || Box::new(Uncertainty::new())),
        ("gradnorm", || Box::new(GradNorm::new(1.5))),
        ("pcgrad", || Box::new(PcGrad::new())),
        ("famo", || Box::new(Famo::new())),
        ("mgda", || Box::new(Mgda::new())),
        ("upgrad", || Box::new(UpGrad::new())),
    ];
    let run = |make: Make, parallel: Option<DataParallel>, seed: u64| {
        let mut model = common::net(seed);
        let mut trainer = Trainer::<common::Net, f64>::new(Adam::new(0.01).build())
            .epochs(3)
            .batch_size(16)
            .shuffle(Some(5))
            .metric("class", Metric::Accuracy)
            .weighting(make())
            .progress(Progress::Silent);
        if let Some(p) = parallel {
            trainer = trainer.data_parallel(p);
        }
        let history = trainer.fit(&mut model, &x, &t).unwrap();
        let v: Vec<f64> = model
            .parameters()
            .iter()
            .flat_map(|(_, p)| p.value().to_vec())
            .collect();
        (v, history)
    };
    for (name, make) in strategies {
        let (alone, alone_history) = run(make, None, 1);
        let group = ThreadGroup::new(3);
        let runs: Vec<(Vec<f64>, History)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|r| {
                    let rank = group.rank(r).unwrap();
                    let run = &run;
                    s.spawn(move || run(make, Some(DataParallel::new(rank)), 1 + r as u64))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        close(&runs[0].0, &alone, 1e-9, &format!("{name}: parameters"));
        for key in [
            "loss",
            "class_loss",
            "value_loss",
            "class_accuracy",
            "weight_class",
        ] {
            close(
                runs[0].1.get(key).unwrap(),
                alone_history.get(key).unwrap(),
                1e-9,
                &format!("{name}: {key}"),
            );
        }
    }
}

/// Only rank 0 writes a checkpoint; it resumes on one process, and goes on
/// as the two ranks would have.
#[test]
fn rank_zero_checkpoints_resume_on_another_rank_count() {
    let dir = std::env::temp_dir().join(format!("polyhead-dp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |r: usize| dir.join(format!("rank{r}.safetensors"));
    let runs = train_ranks(
        2,
        || Box::new(Fixed),
        false,
        |r, t| t.callback(ModelCheckpoint::new(path(r))),
    );
    let runs: Vec<(Vec<f64>, History)> = runs.into_iter().map(|r| r.unwrap()).collect();
    assert!(path(0).exists());
    assert!(!path(1).exists(), "rank 1 wrote a checkpoint");
    // Resume the two ranks' run on one process.
    let mut resumed = net(9);
    let mut trainer = Trainer::<Net, f64>::new(Adam::new(0.01).build());
    trainer.load_checkpoint(path(0), &mut resumed).unwrap();
    assert_eq!(values(&resumed), runs[0].0);
    let (x, t) = data(50);
    let more = Trainer::<Net, f64>::new(Adam::new(0.01).build())
        .epochs(1)
        .batch_size(16)
        .progress(Progress::Silent);
    let mut more = more;
    more.load_checkpoint(path(0), &mut resumed).unwrap();
    let h = more.fit(&mut resumed, &x, &t).unwrap();
    assert!(h.get("loss").unwrap()[0].is_finite());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rank whose batch fails stops every rank, each naming it.
#[test]
fn a_failing_rank_stops_every_rank_naming_it() {
    use polyhead::data::FromFn;
    let (x, t) = data(50);
    let group = ThreadGroup::new(2);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|r| {
                let rank = group.rank(r).unwrap();
                let (x, t) = (&x, &t);
                s.spawn(move || {
                    // Rank 1 cannot read its rows of the second batch (rows
                    // 16..32 unshuffled; rank 1's half holds row 30).
                    let data = FromFn::new(50, move |rows: &[usize]| {
                        if r == 1 && rows.contains(&30) {
                            return Err(polyhead::Error::File {
                                path: "shard-1.npy".into(),
                                message: "unreadable".into(),
                            });
                        }
                        Ok((
                            <Net as polyhead::MultiOutput<f64>>::select_input_rows(x, rows)?,
                            polyhead::TargetSet::<f64>::select_rows(t, rows)?,
                        ))
                    });
                    let mut model = net(1);
                    Trainer::<Net, f64>::new(Sgd::new(0.1).build())
                        .batch_size(16)
                        .shuffle(None)
                        .data_parallel(DataParallel::new(rank))
                        .progress(Progress::Silent)
                        .fit_dataset(&mut model, &data)
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        errors[1],
        "data-parallel training stopped: rank 1 failed at epoch 1, step 2: shard-1.npy: unreadable"
    );
    assert_eq!(
        errors[0],
        "data-parallel training stopped: rank 1 failed at epoch 1, step 2: see that rank's output"
    );
}
