//! The two-head float64 model and data several test files share: a tanh
//! trunk, a class head (3 classes) and a value head (weight 0.5).
// Each test file uses what it needs of this.
#![allow(dead_code)]

use polyhead::prelude::*;

#[derive(MultiOutput)]
#[multi_output(element = f64)]
pub struct Net {
    #[trunk]
    pub body: Dense<f64>,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    pub class: Dense<f64>,
    #[head(loss = Mse::new(), weight = 0.5)]
    pub value: Dense<f64>,
}

/// The model with weights drawn from `seed`.
pub fn net(seed: u64) -> Net {
    let mut rng = Rng::new(seed);
    Net {
        body: Dense::builder(4, 12)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(12, 3, &mut rng).unwrap(),
        value: Dense::new(12, 1, &mut rng).unwrap(),
    }
}

/// `n` samples drawn from `seed`: the class is the largest of the first
/// three features, the value three times their sum.
pub fn data(n: usize, seed: u64) -> (Tensor<f64>, NetTargets<f64>) {
    let x = Tensor::<f64>::rand_normal(&[n, 4], 0.0, 1.0, seed).unwrap();
    let first3 = x.slice_axis(1, 0, 3).unwrap();
    let labels: Vec<usize> = first3
        .argmax_axis(1, false)
        .unwrap()
        .iter()
        .copied()
        .collect();
    (
        x.clone(),
        NetTargets::new(
            Labels::from_classes(&labels),
            first3.sum_axis(1, true).unwrap().mul_scalar(3.0),
        ),
    )
}
