//! The `digit_bbox` model trained with each loss weighting strategy for the
//! same budget (same data, seed, optimizer and epochs). Prints a table of
//! the final validation metrics and the weights each strategy ended with.
//!
//! `cargo run --release --example weighting` (`-- --tensorboard DIR`
//! writes each strategy's TensorBoard logs to its own folder under `DIR`,
//! so that TensorBoard shows them side by side).

use polyhead::Progress;
use polyhead::weighting::{
    AlignedMtl, CaGrad, Dwa, Famo, Fixed, GradNorm, ImtlG, Mgda, NashMtl, PcGrad, Uncertainty,
    UncertaintyKind, UpGrad, Weighting,
};
use polyhead_examples::digit_bbox::{Config, run};

fn main() -> polyhead::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tensorboard = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--tensorboard" => Some(std::path::PathBuf::from(dir)),
        other => {
            return Err(polyhead::Error::Other(format!(
                "weighting: unknown arguments {other:?}; the option is --tensorboard DIR"
            )));
        }
    };
    // Each strategy made fresh for its run.
    type Make = fn() -> Box<dyn Weighting<f32>>;
    let strategies: Vec<(&str, Make)> = vec![
        ("fixed 1.0 / 0.5", || Box::new(Fixed)),
        ("uncertainty (Kendall)", || {
            Box::new(
                Uncertainty::new()
                    .kind("class", UncertaintyKind::Classification)
                    .kind("bbox", UncertaintyKind::Regression),
            )
        }),
        ("DWA, T = 2", || Box::new(Dwa::new(2.0))),
        ("GradNorm, alpha = 1.5", || Box::new(GradNorm::new(1.5))),
        ("GradNorm, rep_grad", || {
            Box::new(GradNorm::new(1.5).rep_grad(true))
        }),
        ("PCGrad", || Box::new(PcGrad::new())),
        ("PCGrad, rep_grad", || {
            Box::new(PcGrad::new().rep_grad(true))
        }),
        ("FAMO", || Box::new(Famo::new())),
        ("MGDA", || Box::new(Mgda::new())),
        ("MGDA-UB (rep_grad)", || {
            Box::new(Mgda::new().rep_grad(true))
        }),
        ("IMTL-G", || Box::new(ImtlG::new())),
        ("CAGrad, c = 0.4", || Box::new(CaGrad::new())),
        ("Nash-MTL", || Box::new(NashMtl::new())),
        ("Aligned-MTL", || Box::new(AlignedMtl::new())),
        ("UPGrad", || Box::new(UpGrad::new())),
    ];
    println!(
        "| strategy | val class accuracy | val box error (px) | final weight class | final weight bbox | seconds |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (label, weighting) in strategies {
        let started = std::time::Instant::now();
        let report = run(&Config {
            architecture: Default::default(),
            train: 10_000,
            validation: 1000,
            epochs: 8,
            progress: Progress::Silent,
            weighting,
            // One run per strategy: `fixed_1_0_0_5`, `uncertainty_kendall`, ...
            tensorboard: tensorboard.as_ref().map(|dir| dir.join(slug(label))),
            data_parallel: None,
        })?;
        let last = |name: &str| {
            report
                .history
                .get(name)
                .and_then(|v| v.last().copied())
                .unwrap_or(f64::NAN)
        };
        println!(
            "| {label} | {:.3} | {:.2} | {:.3} | {:.3} | {:.1} |",
            report.val_accuracy,
            report.val_box_error_pixels,
            last("weight_class"),
            last("weight_bbox"),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `label` as a folder name: lower-case letters and digits, `_` between.
fn slug(label: &str) -> String {
    label
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}
