//! polyhead-losses on its own: plain ndarray arrays in, value and gradient
//! out. No model, no tape.
//!
//! `cargo run --release --example standalone_losses`

use ndarray::array;
use polyhead::losses::{
    BinaryCrossEntropy, Convention, CrossEntropy, Huber, Labels, Loss, Reduction,
    SparseCrossEntropy,
};
use polyhead::tensor::Tensor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logits = array![[2.0_f64, 0.5, -1.0], [0.1, 0.2, 3.0]];
    let onehot = array![[1.0_f64, 0.0, 0.0], [0.0, 0.0, 1.0]];

    // Keras' CategoricalCrossentropy(from_logits=True, label_smoothing=0.1).
    let ce = CrossEntropy::from_logits().label_smoothing(0.1);
    let out = ce.value_and_grad(&Tensor::from(logits.clone()), &Tensor::from(onehot), None)?;
    let grad: ndarray::ArrayD<f64> = out.grad.into_array();
    println!(
        "cross-entropy {:.6}\n  d/dlogits {grad:.4}",
        out.value.item()?
    );

    // PyTorch's cross_entropy(weight=[1, 2, 0.5], ignore_index=-100), per sample.
    let sparse = SparseCrossEntropy::from_logits()
        .class_weights(vec![1.0, 2.0, 0.5])
        .ignore_index(-100)
        .convention(Convention::PyTorch)
        .reduction(Reduction::None);
    let labels = Labels::new(vec![0, -100], &[2])?;
    let out = sparse.value_and_grad(&Tensor::from(logits), &labels, None)?;
    println!(
        "per-sample weighted cross-entropy {:?} (the ignored row is 0)",
        out.value.to_vec()
    );

    // Binary cross-entropy with PyTorch's pos_weight, and Huber on boxes.
    let bce = BinaryCrossEntropy::from_logits()
        .pos_weight(vec![3.0, 1.0])
        .convention(Convention::PyTorch);
    let out = bce.value_and_grad(
        &Tensor::from(array![[0.3_f32, -1.2]]),
        &Tensor::from(array![[1.0_f32, 0.0]]),
        None,
    )?;
    println!(
        "BCE with pos_weight {:.6}, grad {:?}",
        out.value.item()?,
        out.grad.to_vec()
    );
    let huber = Huber::new(1.0);
    let out = huber.value_and_grad(
        &Tensor::from(array![[0.5_f32, 3.0, -0.2, 1.0]]),
        &Tensor::zeros(&[1, 4])?,
        None,
    )?;
    println!(
        "Huber(1.0) {:.6}, grad {:?}",
        out.value.item()?,
        out.grad.to_vec()
    );
    Ok(())
}
