use polyhead::prelude::*;

#[derive(MultiOutput)]
union Heads {
    a: f32,
}

fn main() {}
