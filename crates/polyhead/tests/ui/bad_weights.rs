use polyhead::prelude::*;

#[derive(MultiOutput)]
struct BadWeights {
    #[head(loss = Mse::new(), weight = -1.0)]
    negative: Dense,
    #[head(loss = Mse::new(), weight = "half")]
    not_a_number: Dense,
    #[head(weight = 0.5)]
    weight_without_loss: Dense,
}

fn main() {}
