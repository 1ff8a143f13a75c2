//! The TensorBoard callback's event files, read back: every value of the
//! History per epoch (training in `train/`, validation in `validation/`
//! under the same tags), every step's logs, the learning rate, and each
//! parameter's histogram, in Keras' layout and tags.

use polyhead::prelude::*;
use polyhead::tensorboard::{Value, What, read_events, read_scalars};

#[derive(MultiOutput)]
struct Net {
    #[trunk]
    body: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
}

fn data(n: usize, seed: u64) -> (Tensor<f32>, NetTargets<f32>) {
    let x = Tensor::<f32>::rand_normal(&[n, 3], 0.0, 1.0, seed).unwrap();
    let v = x.to_vec();
    let classes: Vec<usize> = v.chunks(3).map(|r| usize::from(r[0] > 0.0)).collect();
    let boxes =
        Tensor::from_vec(v.chunks(3).flat_map(|r| [r[1], r[2]]).collect(), &[n, 2]).unwrap();
    (x, NetTargets::new(Labels::from_classes(&classes), boxes))
}

#[test]
fn every_logged_value_reaches_the_event_files() {
    let logs = std::env::temp_dir().join(format!("polyhead-tensorboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    let mut rng = Rng::new(3);
    let mut net = Net {
        body: Dense::builder(3, 5)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(5, 2, &mut rng).unwrap(),
        bbox: Dense::new(5, 2, &mut rng).unwrap(),
    };
    let (x, targets) = data(40, 1);
    let (vx, vt) = data(12, 2);
    let (epochs, batch) = (4, 16); // 3 steps an epoch: 16, 16, 8 rows
    let history = polyhead::Trainer::<Net, f32>::new(Adam::new(0.01).build())
        .epochs(epochs)
        .batch_size(batch)
        .metric("class", Metric::Accuracy)
        .validation_data(vx, vt)
        .callback(
            polyhead::TensorBoard::new(&logs)
                .update_freq(1)
                .histogram_freq(2),
        )
        .progress(polyhead::Progress::Silent)
        .fit(&mut net, &x, &targets)
        .unwrap();

    let train = read_scalars(logs.join("train")).unwrap();
    let validation = read_scalars(logs.join("validation")).unwrap();
    let series = |scalars: &[(String, i64, f32)], tag: &str| -> Vec<(i64, f32)> {
        scalars
            .iter()
            .filter(|(t, _, _)| t == tag)
            .map(|(_, s, v)| (*s, *v))
            .collect()
    };
    // Every History value, at step = epoch, as float32 (the format's
    // scalar type), in the run its name says.
    let mut compared = 0;
    for name in history.names() {
        let (scalars, tag) = match name.strip_prefix("val_") {
            Some(rest) => (&validation, format!("epoch_{rest}")),
            None => (&train, format!("epoch_{name}")),
        };
        let want: Vec<(i64, f32)> = history
            .get(name)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(e, v)| (e as i64, *v as f32))
            .collect();
        assert_eq!(series(scalars, &tag), want, "{name} as {tag}");
        compared += want.len();
    }
    assert!(history.names().contains(&"val_class_accuracy"));
    assert_eq!(compared, history.names().len() * epochs);
    assert_eq!(
        series(&train, "epoch_learning_rate"),
        (0..epochs as i64).map(|e| (e, 0.01f32)).collect::<Vec<_>>()
    );
    // Every step, at the global step: the step's own values, whose
    // sample-weighted mean over an epoch is the epoch's value.
    let steps = 3;
    for name in [
        "loss",
        "class_loss",
        "bbox_loss",
        "weight_class",
        "weight_bbox",
    ] {
        let per_step = series(&train, &format!("batch_{name}"));
        assert_eq!(
            per_step.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..(epochs * steps) as i64).collect::<Vec<_>>(),
            "{name}"
        );
        for (e, epoch_value) in history.get(name).unwrap().iter().enumerate() {
            let rows = [16.0, 16.0, 8.0];
            let mean: f64 = per_step[e * steps..(e + 1) * steps]
                .iter()
                .zip(rows)
                .map(|(s, r)| f64::from(s.1) * r)
                .sum::<f64>()
                / 40.0;
            // The step values were rounded to float32 before this mean.
            assert!(
                (mean - epoch_value).abs() <= 1e-6 * epoch_value.abs().max(1.0),
                "{name} epoch {e}: {mean} vs {epoch_value}"
            );
        }
    }
    assert_eq!(series(&train, "batch_weight_bbox")[0].1, 0.5);

    // Histograms of every parameter at epochs 0 and 2, with the
    // parameter's element count.
    let files: Vec<_> = std::fs::read_dir(logs.join("train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("events.out.tfevents.") && name.ends_with(".v2"),
        "{name}"
    );
    let events = read_events(&files[0]).unwrap();
    assert_eq!(
        events[0].what,
        Some(What::FileVersion("brain.Event:2".into()))
    );
    let mut histograms = Vec::new();
    for event in &events {
        if let Some(What::Summary(summary)) = &event.what {
            for v in &summary.value {
                if let Some(Value::Histo(h)) = &v.value {
                    assert_eq!(h.bucket.iter().sum::<f64>(), h.num);
                    histograms.push((v.tag.clone(), event.step, h.num));
                }
            }
        }
    }
    let sizes: Vec<(String, f64)> = net
        .parameters()
        .iter()
        .map(|(n, p)| (format!("{n}/histogram"), p.value().to_vec().len() as f64))
        .collect();
    let expected: Vec<(String, i64, f64)> = [0, 2]
        .iter()
        .flat_map(|&e| sizes.iter().map(move |(n, k)| (n.clone(), e, *k)))
        .collect();
    assert_eq!(histograms, expected);
    let _ = std::fs::remove_dir_all(&logs);
}

/// A second run into the same folder adds its own event files: nothing
/// written before is overwritten.
#[test]
fn a_second_run_adds_files_and_overwrites_none() {
    let logs =
        std::env::temp_dir().join(format!("polyhead-tensorboard-twice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    let (x, targets) = data(8, 1);
    for _ in 0..2 {
        let mut rng = Rng::new(3);
        let mut net = Net {
            body: Dense::new(3, 5, &mut rng).unwrap(),
            class: Dense::new(5, 2, &mut rng).unwrap(),
            bbox: Dense::new(5, 2, &mut rng).unwrap(),
        };
        polyhead::Trainer::<Net, f32>::new(Sgd::new(0.1).build())
            .epochs(2)
            .callback(polyhead::TensorBoard::new(&logs))
            .progress(polyhead::Progress::Silent)
            .fit(&mut net, &x, &targets)
            .unwrap();
    }
    assert_eq!(std::fs::read_dir(logs.join("train")).unwrap().count(), 2);
    let losses: Vec<(i64, f32)> = read_scalars(logs.join("train"))
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| t == "epoch_loss")
        .map(|(_, s, v)| (s, v))
        .collect();
    assert_eq!(losses.len(), 4);
    assert_eq!(losses[..2], losses[2..], "two identical runs, both kept");
    assert!(
        !logs.join("validation").exists(),
        "no validation data, no run"
    );
    let _ = std::fs::remove_dir_all(&logs);
}

/// With a learning-rate schedule, each epoch logs `learning_rate` (the rate
/// the next step will use, as Keras logs it): in History, in the plot's
/// own panel, and in TensorBoard as `epoch_learning_rate`.
#[test]
fn a_scheduled_learning_rate_is_logged_plotted_and_sent() {
    let logs = std::env::temp_dir().join(format!("polyhead-tensorboard-lr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    let (x, targets) = data(20, 1);
    let mut rng = Rng::new(3);
    let mut net = Net {
        body: Dense::new(3, 5, &mut rng).unwrap(),
        class: Dense::new(5, 2, &mut rng).unwrap(),
        bbox: Dense::new(5, 2, &mut rng).unwrap(),
    };
    let schedule = polyhead::layers::Schedule::Step {
        initial: 0.1,
        step_size: 4,
        gamma: 0.5,
    };
    // Two steps an epoch: the rate halves every second epoch.
    let history = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.1).build().schedule(schedule))
        .epochs(5)
        .batch_size(10)
        .callback(polyhead::TensorBoard::new(&logs))
        .progress(polyhead::Progress::Silent)
        .fit(&mut net, &x, &targets)
        .unwrap();
    let want: Vec<f64> = (1..=5).map(|e| schedule.at(2 * e)).collect();
    assert_eq!(history.get("learning_rate").unwrap(), want);
    assert_eq!(want, [0.1, 0.05, 0.05, 0.025, 0.025]);
    let sent: Vec<f32> = read_scalars(logs.join("train"))
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| t == "epoch_learning_rate")
        .map(|s| s.2)
        .collect();
    assert_eq!(sent, want.iter().map(|&v| v as f32).collect::<Vec<_>>());
    assert!(history.to_svg().contains(r#"class="title" "#));
    assert!(history.to_svg().contains(">learning rate</text>"));
    // Without a schedule, History stays as Keras' (no learning_rate).
    let plain = polyhead::Trainer::<Net, f32>::new(Sgd::new(0.1).build())
        .epochs(1)
        .progress(polyhead::Progress::Silent)
        .fit(&mut net, &x, &targets)
        .unwrap();
    assert!(plain.get("learning_rate").is_none());
    let _ = std::fs::remove_dir_all(&logs);
}
