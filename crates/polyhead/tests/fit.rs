//! `Trainer::fit` end to end: validation, early stopping with best-weight
//! restore, resuming from a checkpoint, the non-finite guard, callbacks
//! and progress output when not on a terminal.

use std::sync::{Arc, Mutex};

use polyhead::prelude::*;
use polyhead::tensor::Rng;
use polyhead::{
    CsvLogger, EarlyStopping, LossWeightSchedule, ModelCheckpoint, OnNonFinite, Progress,
};

#[derive(MultiOutput)]
struct Net {
    #[trunk]
    body: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    value: Dense,
}

fn net(seed: u64) -> Net {
    let mut rng = Rng::new(seed);
    Net {
        body: Dense::builder(4, 16)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(16, 3, &mut rng).unwrap(),
        value: Dense::new(16, 1, &mut rng).unwrap(),
    }
}

/// Class: which of the first three features is largest; value: their sum.
fn data(n: usize, seed: u64) -> (Tensor<f32>, NetTargets<f32>) {
    let x = Tensor::<f32>::rand_normal(&[n, 4], 0.0, 1.0, seed).unwrap();
    let first3 = x.slice_axis(1, 0, 3).unwrap();
    let labels: Vec<usize> = first3
        .argmax_axis(1, false)
        .unwrap()
        .iter()
        .copied()
        .collect();
    let value = first3.sum_axis(1, true).unwrap();
    (x, NetTargets::new(Labels::from_classes(&labels), value))
}

fn trainer(epochs: usize) -> Trainer<Net, f32> {
    Trainer::new(Adam::new(0.02).build())
        .epochs(epochs)
        .batch_size(16)
        .metric("class", Metric::Accuracy)
        .metric("value", Metric::Mae)
        .progress(Progress::Silent)
}

fn bits(m: &Net) -> Vec<u32> {
    m.parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .map(f32::to_bits)
        .collect()
}

#[test]
fn fit_with_validation_logs_keras_names_and_learns() {
    let (x, t) = data(200, 1);
    let mut model = net(2);
    let history = trainer(25)
        .validation_split(0.2)
        .fit(&mut model, &x, &t)
        .unwrap();
    assert_eq!(
        history.names(),
        vec![
            "loss",
            "class_loss",
            "value_loss",
            "class_accuracy",
            "value_mae",
            "weight_class",
            "weight_value",
            "val_loss",
            "val_class_loss",
            "val_value_loss",
            "val_class_accuracy",
            "val_value_mae"
        ]
    );
    assert_eq!(history.epochs(), 25);
    let acc = history.get("val_class_accuracy").unwrap();
    assert!(*acc.last().unwrap() > 0.8, "val accuracy {acc:?}");
    let loss = history.get("loss").unwrap();
    assert!(loss[24] < 0.3 * loss[0]);
    // The logged total is the weighted sum of the logged parts (epoch means).
    let (c, v) = (
        history.get("class_loss").unwrap(),
        history.get("value_loss").unwrap(),
    );
    assert!((loss[3] - (c[3] + 0.5 * v[3])).abs() < 1e-5);
    // Validation data given explicitly gives the same kind of logs.
    let (vx, vt) = data(50, 9);
    let h2 = trainer(1)
        .validation_data(vx, vt)
        .fit(&mut net(2), &x, &t)
        .unwrap();
    assert!(h2.get("val_value_mae").is_some());
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let (x, t) = data(120, 3);
    // A learning rate so high that validation loss soon gets worse.
    let mut model = net(4);
    let history = Trainer::<Net, f32>::new(Sgd::new(0.5).build())
        .epochs(40)
        .batch_size(8)
        .validation_split(0.25)
        .progress(Progress::Silent)
        .callback(
            EarlyStopping::new("val_loss")
                .patience(2)
                .restore_best_weights(true),
        )
        .fit(&mut model, &x, &t)
        .unwrap();
    let val = history.get("val_loss").unwrap();
    assert!(history.epochs() < 40, "never stopped: {val:?}");
    let best = val.iter().cloned().fold(f64::INFINITY, f64::min);
    // The restored model scores the best epoch's validation loss.
    let (vx, vt) = (
        x.slice_axis(0, 90, 120).unwrap().to_contiguous(),
        polyhead::TargetSet::select_rows(&t, &(90..120).collect::<Vec<_>>()).unwrap(),
    );
    let now = trainer(1).evaluate(&mut model, &vx, &vt).unwrap();
    let now_loss = now.iter().find(|(n, _)| n == "loss").unwrap().1;
    assert!(
        (now_loss - best).abs() < 1e-5,
        "restored loss {now_loss}, best {best}, history {val:?}"
    );
}

#[test]
fn resuming_from_a_checkpoint_matches_the_uninterrupted_run() {
    let dir = std::env::temp_dir().join(format!("polyhead-fit-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    let (x, t) = data(96, 5);

    // Uninterrupted: 6 epochs.
    let mut a = net(6);
    let mut ta = trainer(6).shuffle(None);
    ta.fit(&mut a, &x, &t).unwrap();

    // Interrupted: 3 epochs with a checkpoint, then a fresh process
    // (new model, new trainer) loads it and trains 3 more.
    let mut b = net(6);
    trainer(3)
        .shuffle(None)
        .callback(ModelCheckpoint::new(&path))
        .fit(&mut b, &x, &t)
        .unwrap();
    let mut c = net(99);
    let mut opt = Adam::new(0.02).build();
    load_checkpoint(&path, &mut c, Some(&mut opt)).unwrap();
    Trainer::<Net, f32>::new(opt)
        .epochs(3)
        .batch_size(16)
        .shuffle(None)
        .progress(Progress::Silent)
        .fit(&mut c, &x, &t)
        .unwrap();

    assert_eq!(bits(&a), bits(&c));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Poisson head on a rate that is negative for one sample: its loss is
/// NaN in that sample's batch only (the log of a negative rate).
#[derive(MultiOutput)]
struct RateNet {
    #[head(loss = polyhead::losses::Poisson::new())]
    rate: Dense,
}

fn rate_data() -> (RateNet, Tensor<f32>, RateNetTargets<f32>) {
    // rate = x0 exactly: kernel picks feature 0, bias 0.
    let kernel = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0], &[4, 1]).unwrap();
    let model = RateNet {
        rate: Dense::from_tensors(
            kernel,
            Some(Tensor::zeros(&[1]).unwrap()),
            Activation::Linear,
        )
        .unwrap(),
    };
    let mut x = vec![1.0_f32; 64 * 4];
    x[40 * 4] = -5.0; // sample 40 is in the third batch of 16
    (
        model,
        Tensor::from_vec(x, &[64, 4]).unwrap(),
        RateNetTargets::new(Tensor::ones(&[64, 1]).unwrap()),
    )
}

#[test]
fn a_nan_loss_stops_training_naming_the_head_epoch_and_step_and_keeps_good_weights() {
    let (mut model, x, t) = rate_data();
    let mut tr = Trainer::<RateNet, f32>::new(Sgd::new(1e-3).build())
        .batch_size(16)
        .shuffle(None)
        .progress(Progress::Silent);
    let err = tr.fit(&mut model, &x, &t).unwrap_err();
    assert_eq!(
        err.to_string(),
        "training stopped: rate_loss (head `rate`) is NaN at epoch 1, step 3; the weights are those after the last good step"
    );
    // A typed error: a caller can react to the head, epoch and step.
    assert!(matches!(
        err,
        polyhead::Error::NonFiniteLoss { ref head, value, epoch: 1, step: 3 }
            if head.as_deref() == Some("rate") && value.is_nan()
    ));
    assert!(
        model
            .parameters()
            .iter()
            .all(|(_, p)| p.value().to_vec().iter().all(|v| v.is_finite()))
    );
    assert_eq!(
        tr.optimizer().steps(),
        2,
        "exactly the two good steps were applied"
    );
    // Skipping instead: training goes on and counts the skipped steps.
    let (mut model, x, t) = rate_data();
    let history = Trainer::<RateNet, f32>::new(Sgd::new(1e-3).build())
        .epochs(2)
        .batch_size(16)
        .shuffle(None)
        .on_non_finite(OnNonFinite::SkipStep)
        .progress(Progress::Silent)
        .fit(&mut model, &x, &t)
        .unwrap();
    assert_eq!(history.get("skipped_steps").unwrap(), &[1.0, 1.0]);
    assert!(history.get("loss").unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn nan_in_the_data_is_refused_where_it_enters() {
    let (x, t) = data(64, 7);
    let mut v = t.value.to_vec();
    v[40] = f32::NAN;
    let bad = NetTargets::new(t.class.clone(), Tensor::from_vec(v, &[64, 1]).unwrap());
    let err = trainer(1).fit(&mut net(8), &x, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target of `value` holds NaN at sample 40, element 0 (shape [64, 1]); clean the data or mask the sample"
    );
    let mut xs = x.to_vec();
    xs[7] = f32::INFINITY;
    let err = trainer(1)
        .fit(&mut net(8), &Tensor::from_vec(xs, &[64, 4]).unwrap(), &t)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input x holds inf at sample 1, element 3 (shape [64, 4]); clean the data or mask the sample"
    );
}

#[test]
fn without_a_terminal_progress_is_one_plain_line_per_epoch() {
    let (x, t) = data(48, 11);
    let sink: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    trainer(3)
        .progress(Progress::LinesTo(sink.clone()))
        .fit(&mut net(12), &x, &t)
        .unwrap();
    let text = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("epoch {}/3 - loss: ", i + 1)),
            "{line}"
        );
        assert!(
            line.contains(" - class_loss: ") && line.contains(" - value_mae: "),
            "{line}"
        );
        assert!(
            !line.contains('\r') && !line.contains('\x1b'),
            "control characters in {line:?}"
        );
    }
}

#[test]
fn csv_logger_weight_schedule_and_history_files() {
    let dir = std::env::temp_dir().join(format!("polyhead-fit-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (x, t) = data(32, 13);
    let mut tr = trainer(3)
        .callback(CsvLogger::new(dir.join("log.csv")))
        .callback(LossWeightSchedule::new("value", |epoch| epoch as f64));
    let history = tr.fit(&mut net(14), &x, &t).unwrap();
    assert_eq!(tr.current_loss_weights().value, 2.0);
    // Epoch 1 had value weight 0: its total is the class loss alone.
    assert!((history.get("loss").unwrap()[0] - history.get("class_loss").unwrap()[0]).abs() < 1e-6);
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.starts_with(
        "epoch,loss,class_loss,value_loss,class_accuracy,value_mae,weight_class,weight_value\n1,"
    ));
    // The schedule's weights are logged per epoch.
    assert_eq!(history.get("weight_value").unwrap(), &[0.0, 1.0, 2.0]);
    history.save_json(dir.join("h.json")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("h.json")).unwrap()).unwrap();
    assert_eq!(json["loss"].as_array().unwrap().len(), 3);
    history.save_svg(dir.join("h.svg")).unwrap();
    assert!(
        std::fs::read_to_string(dir.join("h.svg"))
            .unwrap()
            .contains("class_accuracy")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_sample_counts_are_errors() {
    let (x, t) = data(32, 15);
    let err = trainer(1)
        .fit(&mut net(1), &x.slice_axis(0, 0, 30).unwrap(), &t)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the inputs have 30 samples but the targets 32"
    );
    let bad = NetTargets::new(t.class.clone(), Tensor::zeros(&[31, 1]).unwrap());
    let err = trainer(1).fit(&mut net(1), &x, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "targets disagree on the number of samples: [(\"class\", 32), (\"value\", 31)]"
    );
}

/// A name first logged in a later epoch (`skipped_steps` appears from the
/// epoch where a step was first skipped) gets its own column; earlier rows
/// have an empty cell there and no value moves under another name.
#[test]
fn csv_logger_keeps_columns_when_a_name_appears_in_a_later_epoch() {
    use polyhead::weighting::Fixed;
    use polyhead::{Callback, History, TrainContext};
    let dir = std::env::temp_dir().join(format!("polyhead-csv-late-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.csv");
    let mut model = net(3);
    let mut optimizer = Sgd::new(0.1).build();
    let mut weighting = Fixed;
    let mut loss_weights = NetLossWeights::default();
    let history = History::default();
    let mut logger = CsvLogger::new(&path);
    let epochs: [&[(&str, f64)]; 3] = [
        &[("loss", 1.5), ("weight_class", 1.0)],
        &[
            ("loss", 1.25),
            ("skipped_steps", 2.0),
            ("weight_class", 1.0),
        ],
        &[("loss", 1.0), ("weight_class", 0.5)],
    ];
    for (epoch, logs) in epochs.iter().enumerate() {
        let logs: Vec<(String, f64)> = logs.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let mut ctx = TrainContext {
            model: &mut model,
            optimizer: &mut optimizer,
            weighting: &mut weighting,
            loss_weights: &mut loss_weights,
            history: &history,
        };
        Callback::<Net, f32>::on_epoch_end(&mut logger, epoch, &logs, &mut ctx).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "epoch,loss,weight_class,skipped_steps\n1,1.5,1,\n2,1.25,1,2\n3,1,0.5,\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_joins_the_batches_and_equals_one_inference_forward() {
    let (x, _) = data(37, 11);
    let mut model = net(3);
    // Batches of 16, 16 and 5 rows against one forward over all 37: each
    // row's numbers come from the same products (no cross-row sums), so
    // the bits agree.
    let predicted = trainer(1).predict(&mut model, &x).unwrap();
    let tape = Tape::no_record();
    let whole = model.forward_heads(tape.constant(x.clone())).unwrap();
    assert_eq!(predicted.class.shape(), &[37, 3]);
    assert_eq!(predicted.value.shape(), &[37, 1]);
    assert_eq!(predicted.class.to_vec(), whole.class.value().to_vec());
    assert_eq!(predicted.value.to_vec(), whole.value.value().to_vec());
    // An empty input gives empty heads of the right widths.
    let empty = Tensor::<f32>::zeros(&[0, 4]).unwrap();
    let none = trainer(1).predict(&mut model, &empty).unwrap();
    assert_eq!(
        (none.class.shape(), none.value.shape()),
        (&[0, 3][..], &[0, 1][..])
    );
}

#[test]
fn predict_and_evaluate_refuse_inputs_of_the_wrong_width_or_count() {
    let (x, t) = data(12, 2);
    let mut model = net(1);
    let narrow = Tensor::<f32>::zeros(&[12, 3]).unwrap();
    let err = trainer(1)
        .predict(&mut model, &narrow)
        .unwrap_err()
        .to_string();
    assert!(err.contains("body") && err.contains("[12, 3]"), "{err}");
    let short = x.slice_axis(0, 0, 10).unwrap().to_contiguous();
    let err = trainer(1)
        .evaluate(&mut model, &short, &t)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "evaluate: the inputs have 10 rows (x [10, 4]) but the targets have 12"
    );
    let scalar = Tensor::<f32>::from_vec(vec![1.0], &[]).unwrap();
    let err = trainer(1)
        .predict(&mut model, &scalar)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "predict: input `x` must have a first (batch) axis, got a scalar of shape []"
    );
}

/// A model whose training and inference behaviours differ: batch
/// normalization and dropout in the trunk.
#[derive(MultiOutput)]
struct Noisy {
    #[trunk]
    body: Sequential,
    #[head(loss = Mse::new())]
    out: Dense,
}

#[test]
fn predict_and_evaluate_run_in_inference_mode_and_leave_the_statistics_alone() {
    let mut rng = Rng::new(4);
    let mut model = Noisy {
        body: Sequential::new()
            .push(Dense::new(4, 8, &mut rng).unwrap())
            .push(BatchNormalization::new(8).unwrap())
            .push(Dropout::new(0.5, 9).unwrap()),
        out: Dense::new(8, 1, &mut rng).unwrap(),
    };
    let x = Tensor::<f32>::rand_normal(&[20, 4], 0.0, 1.0, 6).unwrap();
    let targets = NoisyTargets::new(Tensor::zeros(&[20, 1]).unwrap());
    let statistics = |m: &Noisy| -> Vec<f32> {
        m.buffers()
            .iter()
            .flat_map(|(_, b)| b.value().to_vec())
            .collect()
    };
    let before = statistics(&model);
    // New layers start in training mode (as in PyTorch); predict and
    // evaluate switch to inference by themselves.
    let trainer = Trainer::<Noisy, f32>::new(Sgd::new(0.1).build()).batch_size(8);
    let first = trainer.predict(&mut model, &x).unwrap();
    let again = trainer.predict(&mut model, &x).unwrap();
    assert_eq!(first.out.to_vec(), again.out.to_vec(), "dropout was active");
    let scores = trainer.evaluate(&mut model, &x, &targets).unwrap();
    assert_eq!(statistics(&model), before, "the moving statistics changed");
    // Inference uses the moving statistics (mean 0, variance 1 at the
    // start): the same as a forward in inference mode.
    model.set_training(false);
    let tape = Tape::no_record();
    let forward = model.forward_heads(tape.constant(x.clone())).unwrap();
    assert_eq!(first.out.to_vec(), forward.out.value().to_vec());
    let mse: f64 = first
        .out
        .to_vec()
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        / 20.0;
    let loss = scores.iter().find(|(n, _)| n == "loss").unwrap().1;
    assert!((loss - mse).abs() < 1e-6 * mse.max(1.0), "{loss} vs {mse}");
}

#[test]
fn metrics_count_only_the_rows_a_heads_mask_keeps() {
    let (x, t) = data(40, 13);
    let mut model = net(2);
    let trainer = trainer(1);
    let predicted = trainer.predict(&mut model, &x).unwrap();
    let guesses: Vec<usize> = predicted
        .class
        .argmax_axis(1, false)
        .unwrap()
        .iter()
        .copied()
        .collect();
    // Rows 0, 3, 6, ... are unlabelled for the class head.
    let mask: Vec<f32> = (0..40)
        .map(|i| if i % 3 == 0 { 0.0 } else { 1.0 })
        .collect();
    let labels: Vec<i64> = t.class.as_array().iter().copied().collect();
    let (hits, kept) = (0..40).filter(|i| i % 3 != 0).fold((0, 0), |(h, k), i| {
        (h + usize::from(guesses[i] as i64 == labels[i]), k + 1)
    });
    let masked = t.class_mask(Tensor::from_vec(mask, &[40]).unwrap());
    let scores = trainer.evaluate(&mut model, &x, &masked).unwrap();
    let accuracy = scores
        .iter()
        .find(|(n, _)| n == "class_accuracy")
        .unwrap()
        .1;
    assert_eq!(accuracy, hits as f64 / kept as f64);
}
