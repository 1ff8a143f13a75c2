//! Two tasks on a real data set shipped by a crate (linfa-datasets' iris):
//! from sepal length, sepal width and petal length, predict the species
//! (cross-entropy) and the petal width (mean squared error) with one shared
//! layer. Reports both metrics on a held-out 30%.
//!
//! `cargo run --release --example iris_multitask`; with `-- --write-csv
//! FILE` it also writes the data set as a CSV (`sepal_length,
//! sepal_width, petal_length, petal_width, species`), and with `-- --csv
//! FILE` it reads the flowers from such a file instead (through
//! `polyhead::data::CsvReader`).

use polyhead::prelude::*;
use polyhead::{Progress, Trainer};

#[path = "iris_multitask/model.rs"]
mod model;
use model::{Iris, IrisTargets};

const COLUMNS: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// The flowers: 4 measurements a row, and the species.
fn flowers(args: &[String]) -> polyhead::Result<(Vec<f64>, Vec<usize>)> {
    match args {
        [] => {
            let iris = linfa_datasets::iris();
            Ok((
                iris.records().iter().copied().collect(),
                iris.targets().iter().copied().collect(),
            ))
        }
        [flag, path] if flag == "--write-csv" => {
            let (records, species) = flowers(&[])?;
            let mut text = format!("{},species\n", COLUMNS.join(","));
            for (row, s) in records.chunks(4).zip(&species) {
                let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                text.push_str(&format!("{},{s}\n", cells.join(",")));
            }
            std::fs::write(path, text)
                .map_err(|e| polyhead::Error::Other(format!("{path}: {e}")))?;
            println!("wrote {path}");
            Ok((records, species))
        }
        [flag, path] if flag == "--csv" => {
            let table = polyhead::data::CsvReader::new()
                .inputs(&COLUMNS)
                .classes("species", 3)
                .read::<f64>(path)?;
            if table.mask("species")?.to_vec().contains(&0.0) {
                return Err(polyhead::Error::Other(format!(
                    "{path}: every flower needs its species"
                )));
            }
            let species = table
                .labels("species")?
                .as_array()
                .iter()
                .map(|&c| c as usize)
                .collect();
            Ok((table.inputs().to_vec(), species))
        }
        other => Err(polyhead::Error::Other(format!(
            "iris_multitask: unknown arguments {other:?}; the options are --csv FILE or --write-csv FILE"
        ))),
    }
}

fn main() -> polyhead::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (records, species) = flowers(&args)?;
    let n = species.len();
    // Shuffle once, then standardise the three inputs on the training part.
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(3).shuffle(&mut order);
    let n_train = n * 7 / 10;
    let column = |c: usize, rows: &[usize]| -> Vec<f64> {
        rows.iter().map(|&r| records[r * 4 + c]).collect()
    };
    let stats: Vec<(f64, f64)> = (0..3)
        .map(|c| {
            let v = column(c, &order[..n_train]);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            (mean, std)
        })
        .collect();
    let split = |rows: &[usize]| -> polyhead::Result<(Tensor<f32>, IrisTargets<f32>)> {
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&r| (0..3).map(move |c| (r, c)))
            .map(|(r, c)| ((records[r * 4 + c] - stats[c].0) / stats[c].1) as f32)
            .collect();
        let width: Vec<f32> = rows.iter().map(|&r| records[r * 4 + 3] as f32).collect();
        let labels = Labels::from_classes(&rows.iter().map(|&r| species[r]).collect::<Vec<_>>());
        Ok((
            Tensor::from_vec(x, &[rows.len(), 3])?,
            IrisTargets::new(labels, Tensor::from_vec(width, &[rows.len(), 1])?),
        ))
    };
    let (x_train, t_train) = split(&order[..n_train])?;
    let (x_test, t_test) = split(&order[n_train..])?;

    let mut model = Iris::new(7)?;
    let mut trainer = Trainer::<Iris, f32>::new(Adam::new(0.01).build())
        .epochs(150)
        .batch_size(16)
        .metric("species", Metric::Accuracy)
        .metric("petal_width", Metric::Mae)
        .progress(Progress::Silent);
    let history = trainer.fit(&mut model, &x_train, &t_train)?;
    let test = trainer.evaluate(&mut model, &x_test, &t_test)?;
    let get = |name: &str| {
        test.iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |v| v.1)
    };
    println!(
        "iris: {n_train} training and {} held-out flowers, {} epochs",
        n - n_train,
        history.epochs()
    );
    println!("held-out species accuracy: {:.3}", get("species_accuracy"));
    // The predictions behind that accuracy, whole, in inference mode.
    let predicted = trainer.predict(&mut model, &x_test)?;
    let guesses: Vec<usize> = predicted
        .species
        .argmax_axis(1, false)?
        .iter()
        .copied()
        .collect();
    let right = order[n_train..]
        .iter()
        .zip(&guesses)
        .filter(|&(&row, &guess)| species[row] == guess)
        .count();
    assert_eq!(right as f64 / guesses.len() as f64, get("species_accuracy"));
    println!(
        "held-out petal width error: {:.3} cm (mean absolute)",
        get("petal_width_mae")
    );
    Ok(())
}
