use polyhead::prelude::*;

#[derive(MultiOutput)]
enum Heads {
    A(Dense),
}

#[derive(MultiOutput)]
struct Tuple(#[head] Dense);

fn main() {}
