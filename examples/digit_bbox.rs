//! The main job: train the multi-output model of the Keras article on
//! synthetic digit images, a class head and a box head on a shared layer.
//!
//! `cargo run --release --example digit_bbox` prints one line per epoch, the
//! final validation accuracy and box error, and writes the history plot to
//! `target/digit_bbox/history.svg` and `history.png` (and the numbers to
//! `history.json`).

use polyhead::Progress;
use polyhead_examples::digit_bbox::{Config, run};

fn main() -> polyhead::Result<()> {
    let config = Config {
        train: 30000,
        validation: 1000,
        epochs: 15,
        progress: Progress::Auto,
        weighting: polyhead::weighting::Weighting::Fixed,
    };
    println!(
        "digit_bbox: 784 -> Dense 64 relu -> class (10, cross-entropy, weight 1.0) + bbox (4, mse, weight 0.5)\n\
         {} training and {} validation images of 10 glyphs at random positions and scales",
        config.train, config.validation
    );
    let report = run(&config)?;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/digit_bbox");
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
    println!(
        "history plot: {} (and history.png)",
        out.join("history.svg").display()
    );
    Ok(())
}
