//! The `custom_loss` example's loss, in both forms, and the model that
//! uses it (their own file, so that the ONNX tests run this very model in
//! tract).

use polyhead::losses::LossOutput;
use polyhead::prelude::*;

const CORNER_WEIGHTS: [f64; 4] = [1.0, 1.0, 2.0, 2.0];

/// The loss as a type: value and gradient written by hand, mean over the
/// batch (Keras' convention).
pub struct HuberLike;

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
pub fn huber_like_closure<T: Float>() -> impl Loss<T, Target = Tensor<T>> {
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

/// A box from six features, trained with the loss.
#[derive(MultiOutput)]
pub struct Locator {
    #[trunk]
    pub body: Dense,
    #[head(loss = HuberLike, weight = 2.0)]
    pub bbox: Dense,
}

impl Locator {
    /// Weights drawn from `seed`.
    pub fn new(seed: u64) -> polyhead::Result<Self> {
        let mut rng = Rng::new(seed);
        Ok(Locator {
            body: Dense::builder(6, 16)
                .activation(Activation::Tanh)
                .build(&mut rng)?,
            bbox: Dense::new(16, 4, &mut rng)?,
        })
    }
}
