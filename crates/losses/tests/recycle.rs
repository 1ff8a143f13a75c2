//! Recorded losses reuse their gradient buffers from one tape to the next
//! (through the tensor crate's per-thread pool). Reuse must be invisible:
//! the same bits as fresh buffers, and never a buffer someone still holds.

use polyhead_autograd::Tape;
use polyhead_losses::*;
use polyhead_tensor::Tensor;

/// One step: the loss of `pred` recorded on a new tape, times `weight`;
/// `look(value, gradient)` runs before the tape is dropped.
fn run<L: Loss<f32>, R>(
    loss: &L,
    pred: &Tensor<f32>,
    target: &L::Target,
    weight: f32,
    look: impl FnOnce(f32, &Tensor<f32>) -> R,
) -> R {
    let tape = Tape::new();
    let x = tape.leaf(pred.clone());
    let l = loss.record(x, target, None).unwrap();
    let total = if weight == 1.0 { l } else { l.scale(weight) };
    let grads = tape.backward(total).unwrap();
    let g = grads.wrt(x).unwrap();
    let seen = look(total.value().item().unwrap(), &g);
    drop((g, grads));
    seen
}

/// [`run`] returning the value, the gradient's values and its address:
/// nothing holds the gradient when the tape is dropped.
fn step<L: Loss<f32>>(
    loss: &L,
    pred: &Tensor<f32>,
    target: &L::Target,
    weight: f32,
) -> (f32, Vec<f32>, usize) {
    run(loss, pred, target, weight, |v, g| {
        (v, g.to_vec(), g.view().as_ptr() as usize)
    })
}

/// [`run`] returning the gradient tensor itself, which outlives the tape.
fn step_keeping<L: Loss<f32>>(
    loss: &L,
    pred: &Tensor<f32>,
    target: &L::Target,
    weight: f32,
) -> (f32, Tensor<f32>, usize) {
    run(loss, pred, target, weight, |v, g| {
        (v, g.clone(), g.view().as_ptr() as usize)
    })
}

#[test]
fn second_step_reuses_the_buffer_with_the_same_bits() {
    release_recycled_buffers();
    let logits = Tensor::<f32>::rand_normal(&[4096, 10], 0.0, 3.0, 1).unwrap();
    let labels = Labels::from_classes(&(0..4096).map(|i| (i * 7) % 10).collect::<Vec<_>>());
    let boxes = Tensor::<f32>::rand_normal(&[4096, 4], 0.0, 1.0, 2).unwrap();
    let box_targets = Tensor::<f32>::rand_uniform(&[4096, 4], 0.0, 1.0, 3).unwrap();
    let ce = SparseCrossEntropy::from_logits();
    let fresh_ce = ce.value_and_grad(&logits, &labels, None).unwrap();
    let fresh_mse = Mse::new()
        .value_and_grad(&boxes, &box_targets, None)
        .unwrap();

    let (v1, _, a1) = step(&ce, &logits, &labels, 1.0);
    let (v2, g2, a2) = step(&ce, &logits, &labels, 1.0);
    assert_eq!(
        a1, a2,
        "the second step writes into the first step's buffer"
    );
    assert_eq!(v1, v2);
    assert_eq!(v2, fresh_ce.value.item().unwrap());
    assert_eq!(g2, fresh_ce.grad.to_vec());

    // A head weighted 0.5: the scaled gradient is recycled too, and equals
    // the kernel's gradient times 0.5 bit for bit.
    let want: Vec<f32> = fresh_mse.grad.to_vec().iter().map(|g| g * 0.5).collect();
    let mut addresses = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let (v, g, a) = step(&Mse::new(), &boxes, &box_targets, 0.5);
        assert_eq!(v, fresh_mse.value.item().unwrap() * 0.5);
        assert_eq!(g, want);
        addresses.insert(a);
    }
    // The kernel's gradient and its scaled copy take turns in two buffers.
    assert!(addresses.len() <= 2, "{addresses:?}");
    assert!(release_recycled_buffers() >= 4096 * 4 * 4);
}

#[test]
fn a_gradient_still_held_is_never_reused() {
    release_recycled_buffers();
    let a = Tensor::<f32>::rand_normal(&[4096, 4], 0.0, 1.0, 4).unwrap();
    let b = Tensor::<f32>::rand_normal(&[4096, 4], 0.0, 1.0, 5).unwrap();
    let t = Tensor::<f32>::zeros(&[4096, 4]).unwrap();
    let (_, kept, kept_address) = step_keeping(&Mse::new(), &a, &t, 1.0);
    let kept_values = kept.to_vec();
    // The next steps (another input) must not write into `kept`.
    for _ in 0..3 {
        let (_, g, address) = step(&Mse::new(), &b, &t, 1.0);
        assert_ne!(address, kept_address);
        assert_eq!(
            g,
            Mse::new()
                .value_and_grad(&b, &t, None)
                .unwrap()
                .grad
                .to_vec()
        );
    }
    assert_eq!(kept.to_vec(), kept_values);
}

/// Small gradients are reused too (the tensor pool keeps buffers of any
/// size: a batch-32 step allocates no gradient buffer after the first).
#[test]
fn small_buffers_are_reused_too() {
    release_recycled_buffers();
    let p = Tensor::<f32>::ones(&[32, 4]).unwrap();
    let t = Tensor::<f32>::zeros(&[32, 4]).unwrap();
    let (v, g, a1) = step(&Mse::new(), &p, &t, 1.0);
    assert_eq!(v, 1.0);
    assert_eq!(g, vec![2.0 / 128.0; 128]);
    let (v, g, a2) = step(&Mse::new(), &p, &t, 1.0);
    assert_eq!((v, a2), (1.0, a1));
    assert_eq!(g, vec![2.0 / 128.0; 128]);
    assert!(release_recycled_buffers() >= 128 * 4);
    assert_eq!(release_recycled_buffers(), 0);
}

/// A user's loss that ignores the buffer (the trait's default
/// `value_and_grad_into`) still gets its own gradient.
#[test]
fn custom_losses_ignore_recycled_buffers() {
    struct Doubled;
    impl Loss<f32> for Doubled {
        type Target = Tensor<f32>;
        fn name(&self) -> &str {
            "doubled"
        }
        fn value_and_grad(
            &self,
            pred: &Tensor<f32>,
            _target: &Tensor<f32>,
            _w: Option<&Tensor<f32>>,
        ) -> Result<LossOutput<f32>> {
            Ok(LossOutput {
                value: pred.sum_all(false),
                grad: Tensor::full(pred.shape(), 1.0)?,
                unit_axis: None,
            })
        }
    }
    release_recycled_buffers();
    let p = Tensor::<f32>::rand_normal(&[4096, 4], 0.0, 1.0, 6).unwrap();
    let t = Tensor::<f32>::zeros(&[4096, 4]).unwrap();
    drop(step(&Mse::new(), &p, &t, 1.0)); // leaves a buffer of this shape
    let (_, g, _) = step(&Doubled, &p, &t, 1.0);
    assert_eq!(g, vec![1.0; 4096 * 4]);
}

/// A step of an elementwise MSE on `pred` (every gradient element written,
/// none zero), then a step of `loss`: the second writes into the buffer
/// the first left behind, and must still give exactly the gradient of a
/// fresh call.
fn check_reuse<L: Loss<f32>>(name: &str, loss: &L, pred: &Tensor<f32>, target: &L::Target) {
    let fresh = loss
        .value_and_grad(pred, target, None)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let primer = Mse::new().convention(Convention::PyTorch);
    let minus_ones = Tensor::<f32>::full(pred.shape(), -1.0).unwrap();
    let (_, primed, first) = step(&primer, pred, &minus_ones, 1.0);
    assert!(primed.iter().all(|&g| g != 0.0));
    let (value, grad, second) = step(loss, pred, target, 1.0);
    assert_eq!(first, second, "{name}: the buffer was not recycled");
    assert_eq!(
        value.to_bits(),
        fresh.value.item().unwrap().to_bits(),
        "{name}: value"
    );
    let want: Vec<u32> = fresh.grad.to_vec().iter().map(|g| g.to_bits()).collect();
    let got: Vec<u32> = grad.iter().map(|g| g.to_bits()).collect();
    assert!(
        got == want,
        "{name}: a stale gradient element leaked into the result"
    );
}

/// Every built-in loss overwrites every element of a recycled buffer (or
/// zeroes it first): kernels that skip elements (ignored labels, inactive
/// hinge classes, clipped probabilities) must not leave the previous step's
/// values behind.
#[test]
fn every_builtin_loss_gives_fresh_results_in_a_recycled_buffer() {
    release_recycled_buffers();
    let shape = [1024, 8];
    let unit = |seed| Tensor::<f32>::rand_uniform(&shape, 0.05, 0.95, seed).unwrap();
    let wide = |seed| Tensor::<f32>::rand_normal(&shape, 0.0, 2.0, seed).unwrap();
    let (pb, y) = (unit(2), unit(3));
    let xb = wide(5);
    let signs = y.map(|v| if v > 0.5 { 1.0 } else { -1.0 });
    let zero_one = y.map(|v| if v > 0.5 { 1.0 } else { 0.0 });
    check_reuse("mse", &Mse::new(), &xb, &y);
    // Rows of four (the bounding-box kernel).
    let boxes = |seed| Tensor::<f32>::rand_normal(&[4096, 4], 0.0, 2.0, seed).unwrap();
    let (bb, by) = (boxes(7), boxes(8));
    check_reuse("mse rows of four", &Mse::new(), &bb, &by);
    check_reuse("huber rows of four", &Huber::new(1.0), &bb, &by);
    check_reuse("mae", &Mae::new(), &xb, &y);
    check_reuse("huber", &Huber::new(1.0), &xb, &y);
    check_reuse("smooth_l1", &SmoothL1::new(1.0), &xb, &y);
    check_reuse("log_cosh", &LogCosh::new(), &xb, &y);
    check_reuse("mape", &MeanAbsolutePercentageError::new(), &xb, &y);
    check_reuse("msle", &MeanSquaredLogarithmicError::new(), &pb, &y);
    check_reuse("poisson", &Poisson::new(), &pb, &y);
    check_reuse(
        "bce logits",
        &BinaryCrossEntropy::from_logits(),
        &xb,
        &zero_one,
    );
    check_reuse(
        "bce probabilities",
        &BinaryCrossEntropy::from_probabilities(),
        &pb,
        &zero_one,
    );
    check_reuse(
        "binary focal",
        &BinaryFocalLoss::from_logits(),
        &xb,
        &zero_one,
    );
    check_reuse(
        "categorical focal",
        &CategoricalFocalCrossEntropy::from_logits(),
        &xb,
        &y,
    );
    check_reuse(
        "ce logits",
        &CrossEntropy::from_logits().label_smoothing(0.1),
        &xb,
        &y,
    );
    check_reuse(
        "ce probabilities",
        &CrossEntropy::from_probabilities(),
        &pb,
        &y,
    );
    check_reuse("kl divergence", &KlDivergence::new(), &pb, &y);
    check_reuse("cosine similarity", &CosineSimilarity::new(), &xb, &y);
    check_reuse("hinge", &Hinge::new(), &xb, &signs);
    check_reuse("squared hinge", &SquaredHinge::new(), &xb, &signs);
    check_reuse(
        "categorical hinge",
        &CategoricalHinge::new(),
        &xb,
        &zero_one,
    );
    check_reuse("soft margin", &SoftMargin::new(), &xb, &signs);
    check_reuse("hinge embedding", &HingeEmbedding::new(1.0), &pb, &signs);
    // Labels, some ignored: those rows' gradients must be zero, not stale.
    let classes: Vec<i64> = (0..1024)
        .map(|i| if i % 7 == 0 { -1 } else { (i % 8) as i64 })
        .collect();
    let labels = Labels::new(classes, &[1024]).unwrap();
    check_reuse(
        "sparse ce",
        &SparseCrossEntropy::from_logits().ignore_index(-1),
        &xb,
        &labels,
    );
    let kept: Vec<usize> = (0..1024).map(|i| i % 8).collect();
    check_reuse(
        "multi margin",
        &MultiMargin::new(),
        &xb,
        &Labels::from_classes(&kept),
    );
}
