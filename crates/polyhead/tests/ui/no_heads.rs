use polyhead::prelude::*;

#[derive(MultiOutput)]
struct NoHeads {
    #[trunk]
    body: Dense,
}

fn main() {}
