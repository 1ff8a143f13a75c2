use polyhead::prelude::*;

#[derive(MultiOutput)]
struct Both {
    #[trunk]
    #[head(loss = Mse::new())]
    body: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

fn main() {}
