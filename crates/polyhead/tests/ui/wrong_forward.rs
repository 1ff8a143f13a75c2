use polyhead::prelude::*;

// A forward of one's own that builds the wrong head set is a compile error
// at the user's struct literal.
#[derive(MultiOutput)]
#[multi_output(forward = Self::run)]
struct Net {
    #[layer]
    body: Dense,
    #[head(loss = Mse::new())]
    a: Dense,
    #[head(loss = Mse::new())]
    b: Dense,
}

impl Net {
    fn run<'t>(&self, x: Var<'t, f32>) -> polyhead::Result<NetOutputs<Var<'t, f32>>> {
        let h = self.body.forward(x)?;
        Ok(NetOutputs { a: self.a.forward(h)?, c: self.b.forward(h)? })
    }
}

// A forward with the wrong signature (it ignores the inputs struct).
#[derive(MultiOutput)]
#[multi_output(inputs(image, meta), forward = Self::run)]
struct Two {
    #[head(loss = Mse::new())]
    a: Dense,
}

impl Two {
    fn run<'t>(&self, x: Var<'t, f32>) -> polyhead::Result<TwoOutputs<Var<'t, f32>>> {
        Ok(TwoOutputs { a: self.a.forward(x)? })
    }
}

fn main() {}
