use polyhead::prelude::*;

#[derive(MultiOutput)]
struct MissingValue {
    #[head(loss)]
    out: Dense,
}

fn main() {}
