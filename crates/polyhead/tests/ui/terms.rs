use polyhead::autograd::{AutogradError, Var};
use polyhead::prelude::*;

fn extra<'t>(_: &TermsOutputs<Var<'t, f32>>, _: &TermsTargets<f32>) -> Result<Var<'t, f32>, AutogradError> {
    Err(AutogradError::Op { op: "extra", message: String::new() })
}

// A reserved name, two terms of one name, a name that is no identifier,
// a term without `with`, an unknown key inside term(...) and one in
// #[multi_output(...)]: each reported once, at its token.
#[derive(MultiOutput)]
#[multi_output(term(name = "masks", with = extra))]
#[multi_output(term(name = "smooth", with = extra), term(name = "smooth", with = extra))]
#[multi_output(term(name = "two words", with = extra))]
#[multi_output(term(name = "lonely"))]
#[multi_output(term(name = "typo", wieght = 2.0, with = extra))]
#[multi_output(elemnt = f64)]
struct Terms {
    #[head(loss = Mse::new())]
    out: Dense,
}

fn main() {}
