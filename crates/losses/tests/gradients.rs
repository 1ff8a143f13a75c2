//! Property tests: for random shapes, options, weights and reductions,
//! (1) every loss's fused gradient equals central finite differences of its
//! own value, taken through the tape (f64), and (2) for the main losses the
//! fused gradient equals the gradient of the same loss composed of autograd
//! ops.
//!
//! Inputs are kept away from kinks (|e| = delta, margins at 0, exact
//! matches) where finite differences straddle two branches.
//!
//! Tolerance: gradcheck with eps = 1e-6 has truncation error ~1e-12 and
//! rounding error ~2e-16 * |f| / eps; with |f| below ~500 (MAPE scales by
//! 100) that is below 1e-7, so atol = 1e-7, rtol = 1e-6 holds with margin.

use ndarray::ArrayD;
use polyhead_autograd::{GradcheckOptions, Tape, Var, gradcheck};
use polyhead_losses::*;
use polyhead_tensor::{Rng, Tensor};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("POLYHEAD_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

fn opts() -> GradcheckOptions {
    GradcheckOptions {
        atol: 1e-7,
        rtol: 1e-6,
        ..GradcheckOptions::default()
    }
}

/// Random test data from one seed.
struct Gen(Rng);

impl Gen {
    fn u(&mut self) -> f64 {
        self.0.uniform()
    }
    fn tensor(&mut self, shape: &[usize], f: impl Fn(&mut Self) -> f64) -> Tensor<f64> {
        let n = shape.iter().product();
        let v = (0..n).map(|_| f(self)).collect();
        Tensor::from_vec(v, shape).unwrap()
    }
    /// A magnitude in [0.1, 0.9] or [1.1, 2.0] (away from 0 and 1) with a random sign.
    fn off_kink(&mut self) -> f64 {
        let m = if self.u() < 0.5 {
            0.1 + 0.8 * self.u()
        } else {
            1.1 + 0.9 * self.u()
        };
        if self.u() < 0.5 { -m } else { m }
    }
    fn normal(&mut self, shape: &[usize]) -> Tensor<f64> {
        self.tensor(shape, |g| 2.0 * g.0.normal())
    }
    /// Rows of probabilities along the last axis, each in [0.05, 1).
    fn probs(&mut self, shape: &[usize]) -> Tensor<f64> {
        let raw = self.tensor(shape, |g| 0.2 + g.u());
        let sum = raw.sum_axis(-1, true).unwrap();
        raw.div(&sum).unwrap()
    }
    fn onehot(&mut self, rows: usize, classes: usize) -> (Tensor<f64>, Vec<usize>) {
        let labels: Vec<usize> = (0..rows)
            .map(|_| self.0.below(classes as u64) as usize)
            .collect();
        (
            Labels::from_classes(&labels).one_hot(classes).unwrap(),
            labels,
        )
    }
    fn weights(&mut self, shape: &[usize]) -> Tensor<f64> {
        self.tensor(shape, |g| 0.5 + 1.5 * g.u())
    }
    fn reduction(&mut self) -> Reduction {
        [
            Reduction::Mean,
            Reduction::Sum,
            Reduction::None,
            Reduction::WeightedMean,
        ][self.0.below(4) as usize]
    }
}

/// gradcheck of a loss recorded on the tape (fused node), with the output
/// of Reduction::None checked through its full Jacobian.
fn check_fused<L: Loss<f64>>(
    loss: &L,
    pred: Tensor<f64>,
    target: &L::Target,
    w: Option<&Tensor<f64>>,
) -> Result<(), TestCaseError> {
    gradcheck(
        |_: &Tape<f64>, v| Ok(loss.record(v[0], target, w)?),
        &[pred],
        &opts(),
    )
    .map(|_| ())
    .map_err(|e| TestCaseError::fail(format!("{}: {e}", loss.name())))
}

fn close(a: &Tensor<f64>, b: &Tensor<f64>) -> bool {
    a.all_close(b, 1e-12, 1e-13)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn classification_losses_match_finite_differences(rows in 1usize..4, classes in 2usize..5, seed in any::<u64>()) {
        let mut g = Gen(Rng::new(seed));
        let shape = [rows, classes];
        let logits = g.normal(&shape);
        let (onehot, labels) = g.onehot(rows, classes);
        let soft = g.probs(&shape);
        let w = g.weights(&[rows]);
        let r = g.reduction();
        let cw: Vec<f64> = (0..classes).map(|_| 0.5 + g.u()).collect();
        check_fused(&CrossEntropy::from_logits().label_smoothing(0.1).reduction(r), logits.clone(), &soft, Some(&w))?;
        check_fused(&CrossEntropy::from_logits().class_weights(cw.clone()).convention(Convention::PyTorch).reduction(r), logits.clone(), &soft, None)?;
        check_fused(&CrossEntropy::from_probabilities().reduction(r), g.probs(&shape), &onehot, Some(&w))?;
        let labels = Labels::from_classes(&labels);
        check_fused(&SparseCrossEntropy::from_logits().class_weights(cw.clone()).label_smoothing(0.2).convention(Convention::PyTorch), logits.clone(), &labels, None)?;
        check_fused(&SparseCrossEntropy::from_logits().class_weights(cw.clone()).reduction(r), logits.clone(), &labels, Some(&w))?;
        check_fused(&SparseCrossEntropy::from_probabilities().reduction(r), g.probs(&shape), &labels, Some(&w))?;
        check_fused(&SparseCrossEntropy::from_log_probabilities().convention(Convention::PyTorch), logits.log_softmax(-1).unwrap(), &labels, None)?;
        check_fused(&CategoricalFocalCrossEntropy::from_logits().gamma(1.5).reduction(r), logits.clone(), &onehot, Some(&w))?;
        check_fused(&CategoricalFocalCrossEntropy::from_probabilities(), g.probs(&shape), &soft, None)?;
        check_fused(&CategoricalHinge::new().reduction(r), logits.clone(), &onehot, Some(&w))?;
        check_fused(&KlDivergence::new().reduction(r), g.probs(&shape), &soft, Some(&w))?;
        check_fused(&KlDivergence::new().convention(Convention::PyTorch).reduction(Reduction::BatchMean), logits.log_softmax(-1).unwrap(), &soft, None)?;
        check_fused(&KlDivergence::new().log_target(true).convention(Convention::PyTorch), logits.log_softmax(-1).unwrap(), &soft.ln(), None)?;
        check_fused(&CosineSimilarity::new().reduction(r), logits.clone(), &soft, Some(&w))?;
        let sign = g.tensor(&[rows], |g| if g.u() < 0.5 { 1.0 } else { -1.0 });
        check_fused(&CosineEmbedding::new(-2.0), logits.clone(), &CosineTarget { other: soft.clone(), sign }, None)?;
    }

    #[test]
    fn binary_and_margin_losses_match_finite_differences(rows in 1usize..4, cols in 1usize..4, seed in any::<u64>()) {
        let mut g = Gen(Rng::new(seed));
        let shape = [rows, cols];
        let x = g.tensor(&shape, |g| 2.0 * g.off_kink());
        let y01 = g.tensor(&shape, |g| if g.u() < 0.5 { 0.0 } else { 1.0 });
        let soft = g.tensor(&shape, |g| g.u());
        let probs = g.tensor(&shape, |g| 0.05 + 0.9 * g.u());
        let w = g.weights(&[rows]);
        let r = g.reduction();
        let pw: Vec<f64> = (0..cols).map(|_| 0.5 + 2.0 * g.u()).collect();
        let torch = Convention::PyTorch;
        check_fused(&BinaryCrossEntropy::from_logits().label_smoothing(0.1).reduction(r), x.clone(), &soft, Some(&w))?;
        check_fused(&BinaryCrossEntropy::from_logits().pos_weight(pw).convention(torch).reduction(r), x.clone(), &soft, Some(&g.weights(&[rows, 1])))?;
        check_fused(&BinaryCrossEntropy::from_probabilities().reduction(r), probs.clone(), &soft, Some(&w))?;
        check_fused(&BinaryCrossEntropy::from_probabilities().convention(torch), probs.clone(), &soft, None)?;
        check_fused(&BinaryFocalLoss::from_logits().gamma(2.0).alpha(0.3).reduction(r), x.clone(), &soft, Some(&w))?;
        check_fused(&BinaryFocalLoss::from_logits().gamma(0.5).convention(torch), x.clone(), &y01, None)?;
        check_fused(&BinaryFocalLoss::from_probabilities().gamma(1.5), probs.clone(), &soft, None)?;
        // Margins 1 - y x stay away from 0 because |x| avoids 1.
        let x_unit = g.tensor(&shape, |g| g.off_kink());
        check_fused(&Hinge::new().reduction(r), x_unit.clone(), &y01, Some(&w))?;
        check_fused(&SquaredHinge::new().reduction(r), x_unit.clone(), &y01, Some(&w))?;
        let pm1 = y01.map(|v| 2.0 * v - 1.0);
        check_fused(&HingeEmbedding::new(0.0), x_unit.clone(), &pm1, None)?;
        check_fused(&SoftMargin::new(), x.clone(), &pm1, None)?;
        // Multi-margin: margins 1 - x_y + x_i away from 0.
        if cols >= 2 {
            let labels: Vec<usize> = (0..rows).map(|_| g.0.below(cols as u64) as usize).collect();
            let scores = g.tensor(&shape, |g| 0.4 * g.off_kink());
            let far = scores.map(|v| v * 0.5);
            check_fused(&MultiMargin::new().p(2).margin(0.05), far, &Labels::from_classes(&labels), None)?;
        }
    }

    #[test]
    fn regression_losses_match_finite_differences(rows in 1usize..4, cols in 1usize..4, three_d in any::<bool>(), seed in any::<u64>()) {
        let mut g = Gen(Rng::new(seed));
        let shape: Vec<usize> = if three_d { vec![rows, 2, cols] } else { vec![rows, cols] };
        let unit_shape = &shape[..shape.len() - 1];
        let t = g.normal(&shape);
        let e = g.tensor(&shape, |g| g.off_kink());
        let p = t.add(&e).unwrap();
        let w = g.weights(unit_shape);
        let r = g.reduction();
        let torch = Convention::PyTorch;
        check_fused(&Mse::new().reduction(r), p.clone(), &t, Some(&w))?;
        check_fused(&Mse::new().convention(torch).reduction(r), p.clone(), &t, None)?;
        check_fused(&Mae::new().reduction(r), p.clone(), &t, Some(&w))?;
        check_fused(&Huber::new(1.0).reduction(r), p.clone(), &t, Some(&w))?;
        check_fused(&SmoothL1::new(1.0).convention(torch), p.clone(), &t, None)?;
        check_fused(&LogCosh::new().reduction(r), p.clone(), &t, Some(&w))?;
        let t_far = g.tensor(&shape, |g| 2.0 * g.off_kink());
        check_fused(&MeanAbsolutePercentageError::new(), t_far.add(&e).unwrap(), &t_far, Some(&w))?;
        let rates = g.tensor(&shape, |g| 0.1 + 3.0 * g.u());
        let counts = g.tensor(&shape, |g| (5.0 * g.u()).floor());
        check_fused(&MeanSquaredLogarithmicError::new(), rates.clone(), &counts, None)?;
        check_fused(&Poisson::new().reduction(r), rates.clone(), &counts, Some(&w))?;
        check_fused(&Poisson::new().log_input(true).full(true).convention(torch), t.clone(), &counts, None)?;
    }

    #[test]
    fn fused_gradients_equal_autograd_composed_ones(rows in 1usize..4, classes in 2usize..5, seed in any::<u64>()) {
        let mut g = Gen(Rng::new(seed));
        let shape = [rows, classes];
        let logits = g.normal(&shape);
        let soft = g.probs(&shape);
        let w = g.weights(&[rows]);
        let n = rows as f64;

        // Keras CE from logits with smoothing and sample weights:
        // sum_i w_i * (-sum_j y'_ij log_softmax(x)_ij) / n.
        let eps = 0.1;
        let smoothed = soft.map(|y| y * (1.0 - eps) + eps / classes as f64);
        let fused = CrossEntropy::from_logits().label_smoothing(eps).value_and_grad(&logits, &soft, Some(&w)).unwrap();
        let composed = composed_grad(&logits, |x| {
            let t = x.tape();
            x.log_softmax(-1)?.mul(t.constant(smoothed.clone()))?.sum_axis(-1, false)?.mul(t.constant(w.clone()))?.sum_all().scale(-1.0 / n).reshape(&[])
        });
        prop_assert!(close(&fused.grad, &composed.1), "CE grad {:?} vs {:?}", fused.grad, composed.1);
        prop_assert!((fused.value.item().unwrap() - composed.0).abs() < 1e-12);

        // PyTorch sparse CE with class weights: sum_i w[y_i] (-log p_{i,y_i}) / sum_i w[y_i].
        let (onehot, labels) = g.onehot(rows, classes);
        let cw: Vec<f64> = (0..classes).map(|_| 0.5 + g.u()).collect();
        let cwt = Tensor::from_vec(cw.clone(), &[classes]).unwrap();
        let denom: f64 = labels.iter().map(|&y| cw[y]).sum();
        let fused = SparseCrossEntropy::from_logits().class_weights(cw.clone()).convention(Convention::PyTorch)
            .value_and_grad(&logits, &Labels::from_classes(&labels), None).unwrap();
        let composed = composed_grad(&logits, |x| {
            let t = x.tape();
            x.log_softmax(1)?.mul(t.constant(onehot.clone()))?.mul(t.constant(cwt.clone()))?.sum_all().scale(-1.0 / denom).reshape(&[])
        });
        prop_assert!(close(&fused.grad, &composed.1), "sparse CE grad {:?} vs {:?}", fused.grad, composed.1);

        // Keras MSE with sample weights: sum_i w_i mean_j (p - t)^2 / n.
        let target = g.normal(&shape);
        let fused = Mse::new().value_and_grad(&logits, &target, Some(&w)).unwrap();
        let composed = composed_grad(&logits, |x| {
            let t = x.tape();
            let e = x.sub(t.constant(target.clone()))?;
            e.mul(e)?.mean_axis(-1, false)?.mul(t.constant(w.clone()))?.sum_all().scale(1.0 / n).reshape(&[])
        });
        prop_assert!(close(&fused.grad, &composed.1));

        // PyTorch BCE with logits: mean of (1 - y) x + softplus(-x).
        let fused = BinaryCrossEntropy::from_logits().convention(Convention::PyTorch).value_and_grad(&logits, &soft, None).unwrap();
        let count = (rows * classes) as f64;
        let composed = composed_grad(&logits, |x| {
            let t = x.tape();
            let softplus_neg = x.neg().relu().add(x.abs().neg().exp().add_scalar(1.0).ln())?;
            let one_minus_y = t.constant(soft.map(|y| 1.0 - y));
            one_minus_y.mul(x)?.add(softplus_neg)?.sum_all().scale(1.0 / count).reshape(&[])
        });
        prop_assert!(close(&fused.grad, &composed.1));

        // Keras Huber (delta 1) with a mask-selected branch.
        let e = g.tensor(&shape, |g| g.off_kink());
        let pred = target.add(&e).unwrap();
        let small: ArrayD<bool> = e.view().mapv(|v| v.abs() <= 1.0);
        let fused = Huber::new(1.0).value_and_grad(&pred, &target, None).unwrap();
        let composed = composed_grad(&pred, |x| {
            let t = x.tape();
            let d = x.sub(t.constant(target.clone()))?;
            let quad = d.mul(d)?.scale(0.5);
            let lin = d.abs().add_scalar(-0.5);
            Var::select(&small, quad, lin)?.mean_axis(-1, false)?.sum_all().scale(1.0 / n).reshape(&[])
        });
        prop_assert!(close(&fused.grad, &composed.1));
    }
}

/// The value and gradient of `f(x)` composed of autograd ops.
fn composed_grad(
    x0: &Tensor<f64>,
    f: impl for<'t> Fn(Var<'t, f64>) -> polyhead_autograd::Result<Var<'t, f64>>,
) -> (f64, Tensor<f64>) {
    let tape = Tape::new();
    let x = tape.leaf(x0.clone());
    let y = f(x).unwrap();
    let grad = tape.backward(y).unwrap().wrt(x).unwrap();
    (y.value().item().unwrap(), grad)
}

#[test]
fn a_reused_gradient_buffer_gives_the_same_numbers() {
    let logits = Tensor::<f64>::rand_normal(&[8, 5], 0.0, 1.0, 3).unwrap();
    let labels = Labels::from_classes(&[0, 1, 2, 3, 4, 0, 1, 2]);
    let loss = SparseCrossEntropy::from_logits();
    let fresh = loss.value_and_grad(&logits, &labels, None).unwrap();
    // A buffer holding garbage of the right shape is overwritten.
    let garbage = Tensor::full(&[8, 5], f64::NAN).unwrap();
    let reused = loss
        .value_and_grad_into(&logits, &labels, None, Some(garbage))
        .unwrap();
    assert_eq!(reused.grad.to_vec(), fresh.grad.to_vec());
    // A buffer of the wrong shape is ignored, not an error.
    let wrong = Tensor::zeros(&[3]).unwrap();
    let out = loss
        .value_and_grad_into(&logits, &labels, None, Some(wrong))
        .unwrap();
    assert_eq!(out.grad.to_vec(), fresh.grad.to_vec());
}

#[test]
fn reduction_none_on_the_tape_scales_each_sample_by_its_upstream_gradient() {
    let pred = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let target = Tensor::zeros(&[2, 2]).unwrap();
    let tape = Tape::new();
    let p = tape.leaf(pred);
    let per_sample = Mse::new()
        .reduction(Reduction::None)
        .record(p, &target, None)
        .unwrap();
    assert_eq!(per_sample.value().to_vec(), vec![2.5, 12.5]);
    let seed = Tensor::from_vec(vec![1.0, 10.0], &[2]).unwrap();
    let grad = tape
        .backward_with_seed(per_sample, &seed)
        .unwrap()
        .wrt(p)
        .unwrap();
    // d mean_j p_j^2 / dp = p; row 1 scaled by 10.
    assert_eq!(grad.to_vec(), vec![1.0, 2.0, 30.0, 40.0]);
}

/// BCE from logits in f32 runs a slice kernel with vectorised `exp` and
/// `ln_1p` polynomials (within 1 and 1.28 ulps); every element's value and
/// gradient must stay within a few f32 ulps of the same formula in f64
/// (libm's functions), over logits from tiny to huge, both signs, with
/// and without positive weights and smoothing. The bound: the value is
/// `max(x, 0) - x y + ln(1 + e)`, a sum of terms whose rounding errors add
/// up to a few ulps of the largest term; 8 ulps of the largest term is
/// checked.
#[test]
fn f32_bce_from_logits_matches_f64_within_a_few_ulps() {
    let mut xs: Vec<f32> = vec![
        0.0, -0.0, 1e-30, -1e-30, 16.0, -16.0, 88.0, -88.0, 100.0, -1e30, 1e30,
    ];
    xs.extend((0..4000).map(|i| (i as f32 - 2000.0) * 0.0123));
    let n = xs.len();
    let ys: Vec<f32> = (0..n).map(|i| [0.0, 1.0, 0.3][i % 3]).collect();
    for (pos, eps) in [(None, 0.0), (Some(vec![3.0]), 0.1)] {
        let loss = |l: BinaryCrossEntropy| {
            let l = l
                .label_smoothing(eps)
                .convention(Convention::PyTorch)
                .reduction(Reduction::None);
            match &pos {
                Some(p) => l.pos_weight(p.clone()),
                None => l,
            }
        };
        let x32 = Tensor::from_vec(xs.clone(), &[n, 1]).unwrap();
        let y32 = Tensor::from_vec(ys.clone(), &[n, 1]).unwrap();
        let x64 = Tensor::from_vec(xs.iter().map(|&v| v as f64).collect(), &[n, 1]).unwrap();
        let y64 = Tensor::from_vec(ys.iter().map(|&v| v as f64).collect(), &[n, 1]).unwrap();
        let a = loss(BinaryCrossEntropy::from_logits())
            .value_and_grad(&x32, &y32, None)
            .unwrap();
        let b = loss(BinaryCrossEntropy::from_logits())
            .value_and_grad(&x64, &y64, None)
            .unwrap();
        let (va, vb) = (a.value.to_vec(), b.value.to_vec());
        let (ga, gb) = (a.grad.to_vec(), b.grad.to_vec());
        for i in 0..n {
            let (x, y) = (xs[i] as f64, ys[i] as f64 * (1.0 - eps) + eps / 2.0);
            // The largest term of the value, and of the gradient (1).
            let scale = x.abs().max(x.abs() * y).max(1.0);
            let ulp = f32::EPSILON as f64 * scale;
            assert!(
                (va[i] as f64 - vb[i]).abs() <= 8.0 * ulp,
                "value at x = {x}, y = {y}: {} vs {}",
                va[i],
                vb[i]
            );
            assert!(
                (ga[i] as f64 - gb[i]).abs() <= 8.0 * f32::EPSILON as f64,
                "gradient at x = {x}, y = {y}: {} vs {}",
                ga[i],
                gb[i]
            );
        }
    }
}
