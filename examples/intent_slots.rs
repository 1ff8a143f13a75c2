//! Joint intent detection and slot filling: utterances about flights,
//! generated from a small grammar and padded to 14 tokens, train one model
//! with an utterance head (the intent) and a per-token head (the slots:
//! from, to, date, class). Each epoch prints the Keras-named losses, the
//! validation intent accuracy and the slot F1 (padding excluded).
//!
//! `cargo run --release --example intent_slots`

use polyhead::Progress;
use polyhead_examples::intent_slots::run;

fn main() -> polyhead::Result<()> {
    let reports = run(600, 500, 5, Progress::Auto)?;
    let last = reports.last().expect("at least one epoch");
    println!(
        "validation intent accuracy {:.3} (chance 0.333), slot F1 {:.3}",
        last.val_intent_accuracy, last.val_slots_f1
    );
    Ok(())
}
