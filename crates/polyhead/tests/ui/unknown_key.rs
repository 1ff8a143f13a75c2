use polyhead::prelude::*;

#[derive(MultiOutput)]
struct Typo {
    #[head(loss = Mse::new(), wieght = 0.5)]
    out: Dense,
}

fn main() {}
