use polyhead::prelude::*;

#[derive(MultiOutput)]
struct NoLoss {
    #[head(target = Labels)]
    target_without_loss: Dense,
    #[head()]
    empty: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

fn main() {}
