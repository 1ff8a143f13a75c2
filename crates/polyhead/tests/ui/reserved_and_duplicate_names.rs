use polyhead::prelude::*;
use polyhead::autograd::{AutogradError, Var};

fn extra<'t>(_: &ReservedOutputs<Var<'t, f32>>, _: &ReservedTargets<f32>) -> Result<Var<'t, f32>, AutogradError> {
    Err(AutogradError::Op { op: "extra", message: String::new() })
}

#[derive(MultiOutput)]
#[multi_output(term(name = "class", with = extra))]
struct Reserved {
    #[head(loss = Mse::new())]
    loss: Dense,
    #[head(loss = Mse::new())]
    class: Dense,
}

fn main() {}
