//! Joint intent detection and slot filling on flight-booking utterances
//! generated from a small grammar: one intent per utterance, one slot tag
//! per token, utterances padded with id 0 to a common length. The model
//! reads the padding mask from its embedding (`mask_zero`), so padded
//! tokens change neither the LSTMs' states nor the slot loss.

use polyhead::prelude::*;
use polyhead::{Progress, Trainer};

/// The intents, in label order.
pub const INTENTS: [&str; 3] = ["book_flight", "flight_status", "cancel_booking"];
/// The slot tags, in label order (`O`: not a slot).
pub const TAGS: [&str; 5] = ["O", "from", "to", "date", "class"];

const CITIES: [&str; 8] = [
    "boston", "denver", "paris", "tokyo", "madrid", "oslo", "lima", "cairo",
];
const DATES: [&str; 9] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "today",
    "tomorrow",
];
const CLASSES: [&str; 3] = ["economy", "business", "first"];
/// Words that may open an utterance (not slots), moving every other word.
const OPENERS: [&str; 5] = ["hey", "hi", "ok", "so", "uh"];

/// Each intent's templates: words, and `{from}`, `{to}`, `{date}`,
/// `{class}` for a slot value of that kind.
const TEMPLATES: [&[&str]; 3] = [
    &[
        "book a flight from {from} to {to} on {date}",
        "i want to fly from {from} to {to} {date} in {class}",
        "get me a {class} ticket to {to}",
        "please book {class} seats from {from} to {to}",
        "i need a flight to {to} on {date}",
    ],
    &[
        "is the flight to {to} on time",
        "what is the status of my flight from {from} {date}",
        "has the {date} flight from {from} to {to} left",
        "is my {class} flight to {to} delayed",
    ],
    &[
        "cancel my flight to {to} on {date}",
        "please cancel the {class} booking from {from}",
        "i want to cancel my trip from {from} to {to}",
        "drop my {date} reservation to {to}",
    ],
];

/// Utterances as padded token ids with their labels.
#[derive(Debug, Clone)]
pub struct Utterances {
    /// Token ids `[N, max_len]`, 0 = padding.
    pub ids: Tensor<f32>,
    /// One intent per utterance.
    pub intents: Labels,
    /// One tag per token `[N, max_len]` (`O` at padding; it does not count).
    pub tags: Labels,
    /// The vocabulary: id `i + 1` is `vocabulary[i]`.
    pub vocabulary: Vec<String>,
}

/// Every word the grammar can produce, sorted (ids start at 1).
fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = TEMPLATES
        .iter()
        .flat_map(|t| t.iter())
        .flat_map(|t| t.split(' '))
        .filter(|w| !w.starts_with('{'))
        .chain(
            CITIES
                .iter()
                .chain(&DATES)
                .chain(&CLASSES)
                .chain(&OPENERS)
                .copied(),
        )
        .chain(std::iter::once("thanks"))
        .map(str::to_string)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// `n` utterances drawn with `seed`, padded to `max_len` tokens.
///
/// ```
/// let data = polyhead_examples::intent_slots::generate(4, 12, 1)?;
/// assert_eq!(data.ids.shape(), &[4, 12]);
/// assert_eq!(data.tags.shape(), &[4, 12]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn generate(n: usize, max_len: usize, seed: u64) -> polyhead::Result<Utterances> {
    let vocabulary = vocabulary();
    let id = |w: &str| {
        vocabulary
            .binary_search_by(|v| v.as_str().cmp(w))
            .expect("in the vocabulary")
            + 1
    };
    let mut rng = Rng::new(seed);
    let mut ids = vec![0.0f32; n * max_len];
    let mut tags = vec![0i64; n * max_len];
    let mut intents = Vec::with_capacity(n);
    for i in 0..n {
        let intent = rng.below(3) as usize;
        let templates = TEMPLATES[intent];
        let template = templates[rng.below(templates.len() as u64) as usize];
        let mut from = CITIES[rng.below(8) as usize];
        let to = CITIES[rng.below(8) as usize];
        while from == to {
            from = CITIES[rng.below(8) as usize];
        }
        let mut words: Vec<(&str, usize)> = Vec::new();
        if rng.below(3) == 0 {
            words.push((OPENERS[rng.below(5) as usize], 0));
        }
        words.extend(template.split(' ').map(|w| match w {
            "{from}" => (from, 1),
            "{to}" => (to, 2),
            "{date}" => (DATES[rng.below(9) as usize], 3),
            "{class}" => (CLASSES[rng.below(3) as usize], 4),
            w => (w, 0),
        }));
        if rng.below(5) == 0 {
            words.push(("thanks", 0));
        }
        if words.len() > max_len {
            return Err(polyhead::Error::Other(format!(
                "an utterance of {} words does not fit max_len {max_len}",
                words.len()
            )));
        }
        for (t, (w, tag)) in words.iter().enumerate() {
            ids[i * max_len + t] = id(w) as f32;
            tags[i * max_len + t] = *tag as i64;
        }
        intents.push(intent);
    }
    Ok(Utterances {
        ids: Tensor::from_vec(ids, &[n, max_len])?,
        intents: Labels::from_classes(&intents),
        tags: Labels::new(tags, &[n, max_len])?,
        vocabulary,
    })
}

/// The joint model: embedding (id 0 masked) -> LSTM over every token (the
/// trunk); per-token slot logits, and a second LSTM's last real state ->
/// intent logits.
#[derive(MultiOutput)]
pub struct IntentSlots {
    /// Embedding with `mask_zero`, then a sequence LSTM.
    #[trunk]
    pub body: Sequential,
    /// One tag per token (the padding mask keeps padded tokens out of the
    /// loss).
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    pub slots: Dense,
    /// One intent per utterance.
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 0.5, target = Labels)]
    pub intent: Sequential,
}

impl IntentSlots {
    /// The model for a vocabulary of `vocab` words (plus padding).
    pub fn new(vocab: usize, seed: u64) -> polyhead::Result<Self> {
        let mut rng = Rng::new(seed);
        Ok(IntentSlots {
            body: Sequential::new()
                .push(Embedding::new(vocab + 1, 32, &mut rng)?.mask_zero(true))
                .push(polyhead::layers::Lstm::new(32, 48, &mut rng)?.return_sequences(true)),
            slots: Dense::new(48, TAGS.len(), &mut rng)?,
            intent: Sequential::new()
                .push(polyhead::layers::Lstm::new(48, 24, &mut rng)?)
                .push(Dense::new(24, INTENTS.len(), &mut rng)?),
        })
    }
}

/// Intent accuracy and slot F1 (micro, over tokens that are not padding;
/// a slot counts when its tag is not `O`).
///
/// ```
/// use polyhead::prelude::*;
/// let predicted = Tensor::<f32>::from_vec(vec![0.0, 5.0, 5.0, 0.0], &[1, 2, 2])?; // tags 1, 0
/// let ids = Tensor::from_vec(vec![7.0, 3.0], &[1, 2])?;
/// let gold = Labels::new(vec![1, 0], &[1, 2])?;
/// assert_eq!(polyhead_examples::intent_slots::slot_f1(&predicted, &gold, &ids), 1.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn slot_f1(predicted: &Tensor<f32>, gold: &Labels, ids: &Tensor<f32>) -> f64 {
    let guesses: Vec<usize> = predicted
        .argmax_axis(2, false)
        .map(|t| t.iter().copied().collect())
        .unwrap_or_default();
    let (mut right, mut guessed, mut real) = (0usize, 0usize, 0usize);
    for ((&g, &t), &id) in guesses
        .iter()
        .zip(gold.as_array().iter())
        .zip(ids.to_vec().iter())
    {
        if id == 0.0 {
            continue;
        }
        let t = t as usize;
        guessed += usize::from(g != 0);
        real += usize::from(t != 0);
        right += usize::from(g != 0 && g == t);
    }
    if guessed + real == 0 {
        return 1.0;
    }
    2.0 * right as f64 / (guessed + real) as f64
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// The epoch's Keras-named training logs (`loss`, `slots_loss`, ...).
    pub logs: Vec<(String, f64)>,
    /// Validation intent accuracy.
    pub val_intent_accuracy: f64,
    /// Validation slot F1, padding excluded.
    pub val_slots_f1: f64,
}

/// Trains for `epochs` on `train` utterances, reporting after each epoch
/// on `validation` ones (and printing a Keras-style line unless silent).
pub fn run(
    train: usize,
    validation: usize,
    epochs: usize,
    progress: Progress,
) -> polyhead::Result<Vec<EpochReport>> {
    const MAX_LEN: usize = 14;
    let data = generate(train, MAX_LEN, 1)?;
    let val = generate(validation, MAX_LEN, 2)?;
    let mut model = IntentSlots::new(data.vocabulary.len(), 7)?;
    let mut trainer = Trainer::<IntentSlots, f32>::new(Adam::new(1e-2).build())
        .epochs(1)
        .batch_size(32)
        .shuffle(Some(3))
        .progress(Progress::Silent);
    let targets = IntentSlotsTargets::new(data.tags.clone(), data.intents.clone());
    let mut reports = Vec::new();
    for epoch in 1..=epochs {
        let history = trainer.fit(&mut model, &data.ids, &targets)?;
        let predicted = trainer.predict(&mut model, &val.ids)?;
        let guesses: Vec<usize> = predicted
            .intent
            .argmax_axis(1, false)?
            .iter()
            .copied()
            .collect();
        let hits = guesses
            .iter()
            .zip(val.intents.as_array().iter())
            .filter(|&(&g, &t)| g as i64 == t)
            .count();
        let report = EpochReport {
            logs: history
                .names()
                .iter()
                .filter_map(|n| {
                    history
                        .get(n)
                        .and_then(|v| v.last())
                        .map(|&v| (n.to_string(), v))
                })
                .collect(),
            val_intent_accuracy: hits as f64 / validation.max(1) as f64,
            val_slots_f1: slot_f1(&predicted.slots, &val.tags, &val.ids),
        };
        if !matches!(progress, Progress::Silent) {
            let logs: Vec<String> = report
                .logs
                .iter()
                .map(|(n, v)| format!("{n}: {v:.4}"))
                .collect();
            println!(
                "epoch {epoch}/{epochs} - {} - val_intent_accuracy: {:.4} - val_slots_f1: {:.4}",
                logs.join(" - "),
                report.val_intent_accuracy,
                report.val_slots_f1
            );
        }
        reports.push(report);
    }
    Ok(reports)
}
