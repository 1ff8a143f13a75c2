//! The `iris_multitask` example's model (its own file, so that the ONNX
//! tests run this very model in tract).

use polyhead::prelude::*;

/// A shared hidden layer, then the species (3 classes) and the petal width.
#[derive(MultiOutput)]
pub struct Iris {
    #[trunk]
    pub shared: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    pub species: Dense,
    #[head(loss = Mse::new(), weight = 1.0)]
    pub petal_width: Dense,
}

impl Iris {
    /// For three standardised measurements; weights drawn from `seed`.
    pub fn new(seed: u64) -> polyhead::Result<Self> {
        let mut rng = Rng::new(seed);
        Ok(Iris {
            shared: Dense::builder(3, 16)
                .activation(Activation::Relu)
                .build(&mut rng)?,
            species: Dense::new(16, 3, &mut rng)?,
            petal_width: Dense::new(16, 1, &mut rng)?,
        })
    }
}
