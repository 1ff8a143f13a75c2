//! A user-written loss, twice: as a closure composing autograd ops, and as a
//! type implementing `Loss` with its own value and gradient. Both are
//! checked with `gradcheck`, agree with each other, and serve as a head's
//! loss in a derived model.
//!
//! The loss is the "huber-like" box loss of the Keras article:
//! `mean_j c_j h(e_j)` with `h(e) = 0.5 min(|e|, 0.5)^2 + 0.5 (|e| - min(|e|, 0.5))`
//! and `c = [1, 1, 2, 2]` (the box's far corner counts double).
//!
//! `cargo run --release --example custom_loss`

use polyhead::autograd::{GradcheckOptions, gradcheck};
use polyhead::prelude::*;

#[path = "custom_loss/model.rs"]
mod model;
use model::{HuberLike, Locator, LocatorTargets, huber_like_closure};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Both forms pass gradcheck (f64, central differences).
    let pred = Tensor::<f64>::rand_normal(&[5, 4], 0.0, 0.8, 1)?;
    let target = Tensor::<f64>::rand_normal(&[5, 4], 0.0, 0.8, 2)?;
    let opts = GradcheckOptions::default();
    let r1 = gradcheck(
        |_: &Tape<f64>, v| Ok(HuberLike.record(v[0], &target, None)?),
        std::slice::from_ref(&pred),
        &opts,
    )?;
    let closure = huber_like_closure::<f64>();
    let r2 = gradcheck(
        |_: &Tape<f64>, v| Ok(closure.record(v[0], &target, None)?),
        std::slice::from_ref(&pred),
        &opts,
    )?;
    println!(
        "gradcheck: trait form {} entries (worst |diff| {:.1e}), closure form {} entries (worst {:.1e})",
        r1.compared, r1.max_abs_diff, r2.compared, r2.max_abs_diff
    );

    // 2. They agree with each other.
    let a = HuberLike.value_and_grad(&pred, &target, None)?;
    let b = closure.value_and_grad(&pred, &target, None)?;
    let diff = a.grad.sub(&b.grad)?.abs().max_all()?.item()?;
    println!(
        "trait vs closure: values {:.12} and {:.12}, largest gradient difference {diff:.1e}",
        a.value.item()?,
        b.value.item()?
    );
    assert!(diff < 1e-12);

    // 3. As a head's loss: fit boxes that are a linear function of the input.
    let mut model = Locator::new(5)?;
    let x = Tensor::<f32>::rand_normal(&[128, 6], 0.0, 1.0, 6)?;
    let boxes = x.slice_axis(1, 0, 4)?.mul_scalar(0.3);
    let mut trainer = Trainer::<Locator, f32>::new(Adam::new(0.01).build())
        .epochs(60)
        .batch_size(32)
        .progress(polyhead::Progress::Silent);
    let targets = LocatorTargets::new(boxes.to_contiguous());
    let history = trainer.fit(&mut model, &x, &targets)?;
    let loss = history.get("bbox_loss").unwrap();
    println!(
        "training with the custom loss: bbox_loss {:.4} -> {:.4}",
        loss[0],
        loss[loss.len() - 1]
    );
    // evaluate's loss is the custom loss of predict's boxes.
    let scores = trainer.evaluate(&mut model, &x, &targets)?;
    let predicted = trainer.predict(&mut model, &x)?;
    let tape = Tape::no_record();
    let outputs = predicted.map(|_, boxes| tape.constant(boxes));
    let again = model.weighted_loss(&outputs, &targets, &Default::default())?;
    let (evaluated, recomputed) = (scores[0].1, f64::from(again.total.value().item()?));
    assert!((evaluated - recomputed).abs() <= 1e-6 * recomputed.max(1.0));
    println!("evaluate: bbox_loss {evaluated:.4}, the same from predict's boxes");
    Ok(())
}
