use polyhead::prelude::*;

// Named inputs need a forward of one's own.
#[derive(MultiOutput)]
#[multi_output(inputs(image, meta))]
struct NoForward {
    #[head(loss = Mse::new())]
    out: Dense,
}

// An input named twice, an empty list, and a misplaced `#[layer]`.
#[derive(MultiOutput)]
#[multi_output(inputs(image, image), forward = Self::run)]
struct Twice {
    #[layer]
    #[trunk]
    body: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

#[derive(MultiOutput)]
#[multi_output(inputs(), forward = Self::run)]
struct Empty {
    #[head(loss = Mse::new())]
    out: Dense,
}

// `#[layer]` without a forward of one's own, and a trunk beside one.
#[derive(MultiOutput)]
struct LayerWithoutForward {
    #[layer]
    extra: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

#[derive(MultiOutput)]
#[multi_output(forward = Self::run)]
struct TrunkWithForward {
    #[trunk]
    body: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

// `#[layer(...)]` knows one key.
#[derive(MultiOutput)]
#[multi_output(forward = Self::run)]
struct LayerKey {
    #[layer(sharde)]
    body: Dense,
    #[head(loss = Mse::new())]
    out: Dense,
}

fn main() {}
