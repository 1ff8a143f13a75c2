use polyhead::prelude::*;

// An unknown key is one error, whatever its value; the keys after it are
// still read (the weight below is checked too).
#[derive(MultiOutput)]
struct Typo {
    #[head(loss = Mse::new(), wieght = 0.5)]
    out: Dense,
    #[head(loss = Mse::new(), reduction(mean), weight = -2.0)]
    other: Dense,
}

fn main() {}
