//! Composite graphs, backward from several roots, gradcheck's own
//! behaviour (it must reject a wrong backward), and misuse errors.

use polyhead_autograd::{
    AutogradError, BackwardContext, GradcheckError, GradcheckMode, GradcheckOptions, Op, Parameter,
    Result, Tape, Var, gradcheck,
};
use polyhead_tensor::{Float, Tensor};

fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

fn close(a: &Tensor<f64>, b: &Tensor<f64>, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.to_vec()
            .iter()
            .zip(b.to_vec())
            .all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn a_value_used_by_several_consumers_accumulates_its_gradient() {
    // y = x*x + exp(x) + x  =>  dy/dx = 2x + exp(x) + 1
    let x0 = t(&[-0.5, 0.25, 1.5], &[3]);
    let tape = Tape::new();
    let x = tape.leaf(x0.clone());
    let y = x
        .mul(x)
        .unwrap()
        .add(x.exp())
        .unwrap()
        .add(x)
        .unwrap()
        .sum_all();
    let got = tape.backward(y).unwrap().wrt(x).unwrap();
    let want = x0.map(|v| 2.0 * v + v.exp() + 1.0);
    assert!(close(&got, &want, 1e-15), "{got:?} vs {want:?}");
}

/// A two-head model with a shared trunk: relu(x W1 + b1) feeding a softmax
/// cross-entropy head and a squared-error head.
struct TwoHeads {
    w1: Parameter<f64>,
    b1: Parameter<f64>,
    wa: Parameter<f64>,
    wb: Parameter<f64>,
}

impl TwoHeads {
    fn new() -> Self {
        let p = |shape: &[usize], seed| {
            Parameter::new(Tensor::rand_uniform(shape, -0.8, 0.8, seed).unwrap())
        };
        TwoHeads {
            w1: p(&[4, 5], 1),
            b1: p(&[5], 2),
            wa: p(&[5, 3], 3),
            wb: p(&[5, 2], 4),
        }
    }

    /// (class loss, box loss) for the fixed batch.
    fn losses<'t>(
        &self,
        tape: &'t Tape<f64>,
        w1: Var<'t, f64>,
    ) -> Result<(Var<'t, f64>, Var<'t, f64>)> {
        let x = tape.constant(Tensor::rand_normal(&[6, 4], 0.0, 1.0, 9)?);
        let onehot = tape.constant(Tensor::from_vec(
            (0..18)
                .map(|i| if i % 3 == (i / 3) % 3 { 1.0 } else { 0.0 })
                .collect(),
            &[6, 3],
        )?);
        let boxes = tape.constant(Tensor::rand_uniform(&[6, 2], 0.0, 1.0, 10)?);
        let trunk = x.matmul(w1)?.add(tape.param(&self.b1))?.relu();
        let logits = trunk.matmul(tape.param(&self.wa))?;
        let class_loss = logits
            .log_softmax(-1)?
            .mul(onehot)?
            .sum_all()
            .scale(-1.0 / 6.0);
        let err = trunk.matmul(tape.param(&self.wb))?.sub(boxes)?;
        let box_loss = err.mul(err)?.mean_all()?;
        Ok((class_loss, box_loss))
    }
}

#[test]
fn two_heads_on_a_shared_trunk_backward_from_each_root_and_the_total() {
    let model = TwoHeads::new();
    let tape = Tape::new();
    let w1 = tape.param(&model.w1);
    let (class_loss, box_loss) = model.losses(&tape, w1).unwrap();
    let total = class_loss.add(box_loss.scale(0.5)).unwrap();

    // Three backward passes on one tape.
    let g_class = tape.backward(class_loss).unwrap();
    let g_box = tape.backward(box_loss).unwrap();
    let g_total = tape.backward(total).unwrap();

    // The shared trunk's gradient is the weighted sum of the heads'.
    for p in [&model.w1, &model.b1] {
        let want = g_class
            .param(p)
            .unwrap()
            .add(&g_box.param(p).unwrap().mul_scalar(0.5))
            .unwrap();
        assert!(close(g_total.param(p).unwrap(), &want, 1e-14));
    }
    // Each head's own weights get nothing from the other head's loss.
    assert!(g_class.param(&model.wb).is_none());
    assert!(g_box.param(&model.wa).is_none());
    assert!(g_total.param(&model.wa).is_some());

    // And the total's gradient w.r.t. the trunk weights is right.
    let report = gradcheck(
        |tape, v| {
            let (c, b) = model.losses(tape, v[0])?;
            c.add(b.scale(0.5))
        },
        &[model.w1.value().clone()],
        &GradcheckOptions {
            atol: 1e-8,
            rtol: 1e-6,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.compared, 20);
}

/// x^2 with a deliberately wrong backward (3x instead of 2x).
struct WrongSquare;
impl<T: Float> Op<T> for WrongSquare {
    fn name(&self) -> &'static str {
        "wrong_square"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].mul(x[0])?)
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        let three = T::from_f64(3.0);
        Ok(vec![ctx.grad_for(0, || {
            Ok(ctx.grad_output.mul(&ctx.inputs[0].mul_scalar(three))?)
        })?])
    }
}

#[test]
fn gradcheck_rejects_a_wrong_backward_and_names_the_element() {
    let x = t(&[0.5, -1.0, 2.0, 0.0, 1.0, 3.0], &[2, 3]);
    let err = gradcheck(
        |tape, v| tape.apply(WrongSquare, &[v[0]]),
        std::slice::from_ref(&x),
        &Default::default(),
    )
    .unwrap_err();
    match &err {
        GradcheckError::Mismatch {
            input,
            element,
            output,
            analytic,
            numeric,
            ..
        } => {
            assert_eq!(*input, Some(0));
            assert_eq!(element, &vec![0, 0]);
            assert_eq!(output, &vec![0, 0]);
            assert!((analytic - 1.5).abs() < 1e-12); // 3 * 0.5
            assert!((numeric - 1.0).abs() < 1e-8); // 2 * 0.5
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("gradcheck: d output[0, 0] / d input 0[0, 0]: analytic 1.5e0, numeric"),
        "{msg}"
    );

    let fast = GradcheckOptions {
        mode: GradcheckMode::Fast { seed: 3 },
        ..Default::default()
    };
    assert!(matches!(
        gradcheck(
            |tape, v| tape.apply(WrongSquare, &[v[0]]),
            std::slice::from_ref(&x),
            &fast
        ),
        Err(GradcheckError::Mismatch { input: None, .. })
    ));
    // The right op passes in both modes.
    assert!(gradcheck(|_, v| v[0].mul(v[0]), std::slice::from_ref(&x), &fast).is_ok());
    assert!(gradcheck(|_, v| v[0].mul(v[0]), &[x], &Default::default()).is_ok());
}

#[test]
fn gradcheck_reports_a_failing_function() {
    let err = gradcheck(
        |_, v| v[0].reshape(&[7]),
        &[t(&[1.0, 2.0], &[2])],
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "gradcheck: the function failed: reshape: 2 elements cannot have shape [7] (7 elements)"
    );
}

#[test]
fn fast_mode_checks_large_inputs_with_one_backward_pass() {
    let x = Tensor::<f64>::rand_uniform(&[64, 32], -1.0, 1.0, 4).unwrap();
    let w = Tensor::<f64>::rand_uniform(&[32, 16], -1.0, 1.0, 5).unwrap();
    let opts = GradcheckOptions {
        mode: GradcheckMode::Fast { seed: 1 },
        ..Default::default()
    };
    let report = gradcheck(
        |_, v| v[0].matmul(v[1])?.tanh().log_softmax(-1),
        &[x, w],
        &opts,
    )
    .unwrap();
    assert_eq!(report.compared, 1);
    assert!(report.max_abs_diff < 1e-6);
}

#[test]
fn backward_from_a_non_scalar_needs_a_seed() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[1.0, 2.0], &[2]));
    let y = x.exp();
    let err = tape.backward(y).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backward: the root has shape [2], not a single element; pass a seed gradient of that shape with backward_with_seed"
    );
    let err = tape.backward_with_seed(y, &t(&[1.0], &[1])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backward: seed gradient has shape [1], but the root has shape [2]"
    );
    // A one-element root of any rank is fine.
    assert!(tape.backward(x.sum_axis(0, true).unwrap()).is_ok());
}

#[test]
fn handles_from_two_tapes_do_not_mix() {
    let a = Tape::<f64>::new();
    let b = Tape::<f64>::new();
    let x = a.leaf(t(&[1.0], &[1]));
    let y = b.leaf(t(&[2.0], &[1]));
    let err = x.add(y).unwrap_err();
    assert_eq!(err, AutogradError::ForeignVar { op: "add" },);
    assert!(
        err.to_string()
            .starts_with("add: operands come from different tapes")
    );
    assert!(matches!(
        b.backward(x.sum_all()),
        Err(AutogradError::ForeignVar { op: "backward" })
    ));
    let grads = a.backward(x.sum_all()).unwrap();
    assert!(grads.get(y).is_none());
    assert!(matches!(
        grads.wrt(y),
        Err(AutogradError::ForeignVar { .. })
    ));
}

#[test]
fn gradient_of_an_unconnected_value_is_none_or_zeros_as_documented() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[1.0, 2.0], &[2]));
    let unused = tape.leaf(t(&[3.0; 6], &[2, 3]));
    let p = Parameter::new(t(&[1.0], &[1]));
    let _p_on_tape = tape.param(&p);
    let grads = tape.backward(x.sum_all()).unwrap();
    assert!(grads.get(unused).is_none());
    assert_eq!(grads.wrt(unused).unwrap().to_vec(), vec![0.0; 6]);
    assert!(grads.param(&p).is_none());
    // A value recorded after the root is not reachable from it either.
    let later = tape.leaf(t(&[1.0], &[1]));
    assert!(grads.get(later).is_none());
}

#[test]
fn a_parameter_brought_onto_the_tape_twice_is_one_value() {
    let w = Parameter::new(t(&[3.0], &[1]));
    let tape = Tape::new();
    let a = tape.param(&w);
    let b = tape.param(&w);
    let y = a.mul(b).unwrap().sum_all(); // w^2
    assert_eq!(
        tape.backward(y).unwrap().param(&w).unwrap().to_vec(),
        vec![6.0]
    );
    // A clone is a different parameter.
    let w2 = w.clone();
    assert_ne!(w.id(), w2.id());
    assert!(tape.backward(y).unwrap().param(&w2).is_none());
}

#[test]
fn no_record_tape_computes_values_but_refuses_backward() {
    let tape = Tape::<f64>::no_record();
    let w = Parameter::new(t(&[2.0], &[1]));
    let y = tape
        .param(&w)
        .mul(tape.leaf(t(&[3.0], &[1])))
        .unwrap()
        .sum_all();
    assert_eq!(y.value().item().unwrap(), 6.0);
    assert_eq!(
        tape.backward(y).unwrap_err().to_string(),
        "backward: this tape does not record a graph (it was made with Tape::no_record)"
    );
}

/// A custom op whose backward returns a gradient of the wrong shape.
struct BadShape;
impl Op<f64> for BadShape {
    fn name(&self) -> &'static str {
        "bad_shape"
    }
    fn forward(&mut self, x: &[&Tensor<f64>]) -> Result<Tensor<f64>> {
        Ok(x[0].clone())
    }
    fn backward(&self, _: &BackwardContext<'_, f64>) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![Some(Tensor::zeros(&[5])?)])
    }
}

#[test]
fn a_custom_op_with_a_misshaped_gradient_is_reported_by_name() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[1.0, 2.0], &[2]));
    let y = tape.apply(BadShape, &[x]).unwrap().sum_all();
    assert_eq!(
        tape.backward(y).unwrap_err().to_string(),
        "bad_shape: backward returned a gradient of shape [5] for input 0 of shape [2]"
    );
}

#[test]
fn op_argument_errors_name_the_op_and_values() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]));
    let labels = ndarray::array![[0_usize], [2]].into_dyn();
    assert_eq!(
        x.gather(1, &labels).unwrap_err().to_string(),
        "gather: index 2 at position [1, 0] is out of range for axis 1 of length 2"
    );
    assert_eq!(
        x.index_select(0, &[0, 5]).unwrap_err().to_string(),
        "index_select: index 5 (position 1) is out of range for axis 0 of shape [2, 2]"
    );
    assert_eq!(
        x.matmul(tape.leaf(t(&[1.0; 3], &[3, 1])))
            .unwrap_err()
            .to_string(),
        "matmul: inner dimensions differ: [2, 2] x [3, 1]"
    );
    assert_eq!(
        x.softmax(2).unwrap_err().to_string(),
        "softmax: axis 2 is out of range for shape [2, 2] (rank 2)"
    );
}

/// `Tape::weighted_sum`: the exact total of `x * 1` terms and scaled ones,
/// one recorded op, and errors (not panics) for mismatched arguments.
#[test]
fn weighted_sum_totals_terms_and_rejects_mismatches() {
    let tape = Tape::<f32>::new();
    let a = tape.leaf(Tensor::from_vec(vec![0.1, 0.2], &[2]).unwrap());
    let b = tape.leaf(Tensor::from_vec(vec![3.0, -4.0], &[2]).unwrap());
    let total = tape.weighted_sum(&[a, b], &[1.0, 0.5]).unwrap();
    // Left to right, the weight-1 term unmultiplied: the bits of a + b * 0.5.
    assert_eq!(
        total.value().to_vec(),
        vec![0.1 + 3.0 * 0.5, 0.2 + -4.0 * 0.5]
    );
    let grads = tape.backward(total.sum_all()).unwrap();
    assert_eq!(grads.wrt(a).unwrap().to_vec(), vec![1.0, 1.0]);
    assert_eq!(grads.wrt(b).unwrap().to_vec(), vec![0.5, 0.5]);

    let err =
        |r: polyhead_autograd::Result<_>| r.map(|_: Var<'_, f32>| ()).unwrap_err().to_string();
    assert_eq!(
        err(tape.weighted_sum(&[a, b], &[1.0])),
        "weighted_sum: needs one weight per term and at least one term, got 2 terms and 1 weights"
    );
    assert_eq!(
        err(tape.weighted_sum(&[], &[])),
        "weighted_sum: needs one weight per term and at least one term, got 0 terms and 0 weights"
    );
    let c = tape.leaf(Tensor::zeros(&[3]).unwrap());
    assert_eq!(
        err(tape.weighted_sum(&[a, c], &[1.0, 1.0])),
        "weighted_sum: every term must have the same shape, got [2] and [3]"
    );
}
