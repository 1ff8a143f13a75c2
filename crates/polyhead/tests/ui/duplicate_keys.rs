use polyhead::autograd::{AutogradError, Var};
use polyhead::prelude::*;

fn extra<'t>(_: &TwiceOutputs<Var<'t, f32>>, _: &TwiceTargets<f32>) -> Result<Var<'t, f32>, AutogradError> {
    Err(AutogradError::Op { op: "extra", message: String::new() })
}

// Every key given twice is an error at its second occurrence.
#[derive(MultiOutput)]
#[multi_output(element = f32, element = f64)]
#[multi_output(term(name = "a", name = "b", with = extra, weight = 1.0, weight = 2.0, with = extra))]
struct Twice {
    #[head(loss = Mse::new(), loss = Mae::new())]
    first: Dense,
    #[head(loss = Mse::new(), weight = 0.5, weight = 2.0)]
    second: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels, target = Tensor)]
    third: Dense,
}

fn main() {}
