//! A tour of polyhead-tensor: one dense layer's forward pass and its
//! gradients, computed by hand with tensor ops, checked against finite
//! differences.
//!
//! Run with `cargo run --release --example tensor_tour`.

use polyhead::tensor::{Tensor, TensorError};

/// Mean softmax cross-entropy of `logits` [batch, classes] against one-hot
/// `targets`, and its gradient with respect to the logits.
fn cross_entropy(
    logits: &Tensor<f64>,
    targets: &Tensor<f64>,
) -> Result<(f64, Tensor<f64>), TensorError> {
    let batch = logits.shape()[0] as f64;
    let log_probs = logits.log_softmax(-1)?;
    let loss = -log_probs.mul(targets)?.sum_all(false).item()? / batch;
    let grad = logits.softmax(-1)?.sub(targets)?.mul_scalar(1.0 / batch);
    Ok((loss, grad))
}

fn main() -> Result<(), TensorError> {
    let (batch, features, classes) = (8, 5, 3);
    let x = Tensor::<f64>::rand_normal(&[batch, features], 0.0, 1.0, 1)?;
    let w = Tensor::<f64>::rand_uniform(&[features, classes], -0.5, 0.5, 2)?;
    let b = Tensor::<f64>::zeros(&[classes])?;
    let labels: Vec<usize> = (0..batch).map(|i| i % classes).collect();
    let mut onehot = vec![0.0; batch * classes];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * classes + l] = 1.0;
    }
    let targets = Tensor::from_vec(onehot, &[batch, classes])?;

    // Forward: logits = x W + b (the bias broadcasts over the batch).
    let logits = x.matmul(&w)?.add(&b)?;
    let (loss, dlogits) = cross_entropy(&logits, &targets)?;

    // Backward by hand: dW = x^T dlogits (a transposed view, no copy),
    // db = dlogits summed back to b's shape.
    let dw = x.transpose(0, 1)?.matmul(&dlogits)?;
    let db = dlogits.sum_to_shape(b.shape())?;

    // Check dW[i, j] against a central finite difference.
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for i in 0..features {
        for j in 0..classes {
            let bump = |delta: f64| -> Result<f64, TensorError> {
                let mut wv = w.to_vec();
                wv[i * classes + j] += delta;
                let wp = Tensor::from_vec(wv, w.shape())?;
                Ok(cross_entropy(&x.matmul(&wp)?.add(&b)?, &targets)?.0)
            };
            let numeric = (bump(eps)? - bump(-eps)?) / (2.0 * eps);
            worst = worst.max((numeric - dw.get(&[i, j])?).abs());
        }
    }

    let accuracy = logits
        .argmax_axis(-1, false)?
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count() as f64
        / batch as f64;
    println!("batch {batch}, {features} features, {classes} classes");
    println!("cross-entropy loss: {loss:.6}");
    println!("accuracy at random weights: {accuracy:.3}");
    println!("dL/db: {:?}", db.to_vec());
    println!("max |dL/dW - finite difference|: {worst:.2e}");
    assert!(
        worst < 1e-8,
        "hand-written gradient disagrees with finite differences"
    );
    Ok(())
}
