use polyhead::prelude::*;

#[derive(MultiOutput)]
struct WrongTarget {
    // A sparse loss needs `target = Labels`.
    #[head(loss = SparseCrossEntropy::from_logits())]
    class: Dense,
}

fn main() {}
