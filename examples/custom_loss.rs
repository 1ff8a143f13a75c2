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
use polyhead::losses::LossOutput;
use polyhead::prelude::*;

const CORNER_WEIGHTS: [f64; 4] = [1.0, 1.0, 2.0, 2.0];

/// The loss as a type: value and gradient written by hand, mean over the
/// batch (Keras' convention).
struct HuberLike;

impl<T: Float> Loss<T> for HuberLike {
    type Target = Tensor<T>;

    fn name(&self) -> &str {
        "huber_like"
    }

    fn value_and_grad(
        &self,
        pred: &Tensor<T>,
        target: &Tensor<T>,
        _w: Option<&Tensor<T>>,
    ) -> polyhead::losses::Result<LossOutput<T>> {
        if pred.shape() != target.shape() || pred.shape().last() != Some(&4) {
            return Err(polyhead::losses::LossError::Invalid {
                loss: "huber_like",
                message: format!(
                    "needs [batch, 4] boxes, got {:?} and {:?}",
                    pred.shape(),
                    target.shape()
                ),
            });
        }
        let n = pred.len() as f64; // batch * 4: mean over coordinates, then over the batch
        let (mut value, mut grad) = (0.0, Vec::with_capacity(pred.len()));
        for (i, (p, t)) in pred.to_vec().iter().zip(target.to_vec()).enumerate() {
            let e = p.to_f64() - t.to_f64();
            let c = CORNER_WEIGHTS[i % 4];
            let small = e.abs().min(0.5);
            value += c * (0.5 * small * small + 0.5 * (e.abs() - small));
            // h'(e) = e inside |e| < 0.5, else 0.5 sign(e).
            let dh = if e.abs() < 0.5 { e } else { 0.5 * e.signum() };
            grad.push(T::from_f64(c * dh / n));
        }
        Ok(LossOutput {
            value: Tensor::scalar(T::from_f64(value / n)),
            grad: Tensor::from_vec(grad, pred.shape())?,
            unit_axis: None,
        })
    }
}

/// The same loss as a closure over autograd ops (its gradient comes from the tape).
fn huber_like_closure<T: Float>() -> impl Loss<T, Target = Tensor<T>> {
    closure_loss::<T, _>("huber_like", |pred, target| {
        let tape = pred.tape();
        let e = pred.sub(target)?.abs();
        let small = e.minimum(tape.constant(Tensor::scalar(T::from_f64(0.5))))?;
        let h = small
            .mul(small)?
            .scale(T::from_f64(0.5))
            .add(e.sub(small)?.scale(T::from_f64(0.5)))?;
        let c = tape.constant(Tensor::from_vec(
            CORNER_WEIGHTS.map(T::from_f64).to_vec(),
            &[4],
        )?);
        h.mul(c)?.mean_axis(-1, false) // per sample; averaged over the batch
    })
}

#[derive(MultiOutput)]
struct Locator {
    #[trunk]
    body: Dense,
    #[head(loss = HuberLike, weight = 2.0)]
    bbox: Dense,
}

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
    let mut rng = Rng::new(5);
    let mut model = Locator {
        body: Dense::builder(6, 16)
            .activation(Activation::Tanh)
            .build(&mut rng)?,
        bbox: Dense::new(16, 4, &mut rng)?,
    };
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
