use polyhead::prelude::*;

#[derive(MultiOutput)]
struct TwoTrunks {
    #[trunk]
    body: Dense,
    #[trunk]
    neck: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

fn main() {}
