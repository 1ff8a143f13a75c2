//! The joint intent and slot example learns both heads, and padding never
//! counts: the same utterances padded further give the same losses.

use polyhead::Progress;
use polyhead::prelude::*;
use polyhead_examples::intent_slots::{IntentSlots, IntentSlotsTargets, generate, run};

#[test]
fn a_short_intent_slots_run_learns_both_heads() {
    let reports = run(600, 200, 4, Progress::Silent).unwrap();
    let last = reports.last().unwrap();
    assert!(last.val_intent_accuracy > 0.9, "{last:?}");
    assert!(last.val_slots_f1 > 0.9, "{last:?}");
    let first_loss = reports[0].logs.iter().find(|(n, _)| n == "loss").unwrap().1;
    let last_loss = last.logs.iter().find(|(n, _)| n == "loss").unwrap().1;
    assert!(last_loss < 0.2 * first_loss, "{first_loss} -> {last_loss}");
}

#[test]
fn more_padding_changes_no_output_and_no_loss() {
    let short = generate(16, 14, 5).unwrap();
    let long = generate(16, 20, 5).unwrap();
    assert_eq!(
        long.ids.slice_axis(1, 0, 14).unwrap().to_vec(),
        short.ids.to_vec()
    );
    let model = IntentSlots::new(short.vocabulary.len(), 1).unwrap();
    let loss = |u: &polyhead_examples::intent_slots::Utterances| {
        let tape = Tape::new();
        let outputs = model.forward_heads(tape.constant(u.ids.clone())).unwrap();
        let targets = IntentSlotsTargets::new(u.tags.clone(), u.intents.clone());
        let total = model
            .weighted_loss(&outputs, &targets, &Default::default())
            .unwrap();
        let logs = total.logs().unwrap();
        (outputs.intent.value().to_vec(), logs)
    };
    let (intent_short, logs_short) = loss(&short);
    let (intent_long, logs_long) = loss(&long);
    // The intent LSTM stops at the last real token either way; the slot
    // loss averages over real tokens only.
    assert_eq!(intent_short, intent_long);
    for ((name, a), (_, b)) in logs_short.iter().zip(&logs_long) {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "{name}: {a} vs {b}"
        );
    }
}
