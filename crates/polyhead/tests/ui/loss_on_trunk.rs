use polyhead::prelude::*;

#[derive(MultiOutput)]
struct LossOnTrunk {
    #[trunk(loss = Mse::new())]
    body: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

fn main() {}
