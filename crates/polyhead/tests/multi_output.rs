//! `#[derive(MultiOutput)]` end to end: the issue's example model, the
//! generated outputs/targets/weights, masks, sample weights, cross-head
//! terms, generic models, errors naming the head, and the weighted total's
//! gradient against finite differences.

use polyhead::autograd::{AutogradError, GradcheckOptions, Var};
use polyhead::prelude::*;
use polyhead::tensor::Rng;
use proptest::prelude::*;

/// The model of the Keras article: a shared body, a class head, a box head
/// and an output-only embedding head.
#[derive(MultiOutput)]
struct DigitLocator {
    /// Shared features.
    #[trunk]
    body: Sequential,
    /// Ten class logits.
    #[head(loss = CrossEntropy::from_logits(), weight = 1.0)]
    class: Dense,
    /// Box corners.
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
    /// Output only (Keras' `None` loss).
    #[head]
    embedding: Dense,
}

fn digit_locator(seed: u64) -> DigitLocator {
    let mut rng = Rng::new(seed);
    DigitLocator {
        body: Sequential::new().push(
            Dense::builder(12, 16)
                .activation(Activation::Relu)
                .build(&mut rng)
                .unwrap(),
        ),
        class: Dense::new(16, 3, &mut rng).unwrap(),
        bbox: Dense::new(16, 4, &mut rng).unwrap(),
        embedding: Dense::new(16, 2, &mut rng).unwrap(),
    }
}

/// A learnable toy task: the class is the argmax of three input features,
/// the box four other features.
fn data(n: usize, seed: u64) -> (Tensor<f32>, DigitLocatorTargets<f32>) {
    let x = Tensor::<f32>::rand_normal(&[n, 12], 0.0, 1.0, seed).unwrap();
    let labels: Vec<usize> = x
        .slice_axis(1, 0, 3)
        .unwrap()
        .argmax_axis(1, false)
        .unwrap()
        .iter()
        .copied()
        .collect();
    let onehot = Labels::from_classes(&labels).one_hot(3).unwrap();
    let boxes = x.slice_axis(1, 3, 7).unwrap().to_contiguous();
    (x, DigitLocatorTargets::new(onehot, boxes))
}

#[test]
fn the_issue_example_trains() {
    let mut model = digit_locator(1);
    let (x, targets) = data(64, 2);
    let mut opt = Adam::new(1e-2).build();
    let weights = DigitLocatorLossWeights::default();
    let mut history = Vec::new();
    for _ in 0..150 {
        let tape = Tape::new();
        let outputs = model.forward_heads(tape.constant(x.clone())).unwrap();
        let loss = model.weighted_loss(&outputs, &targets, &weights).unwrap();
        history.push(loss.logs().unwrap());
        let grads = tape.backward(loss.total).unwrap();
        assert!(
            grads.param(model.embedding.kernel()).is_none(),
            "the output-only head has no loss"
        );
        opt.step(&mut model, &grads).unwrap();
    }
    let (first, last) = (&history[0], history.last().unwrap());
    assert_eq!(
        first.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["loss", "class_loss", "bbox_loss"]
    );
    assert!(
        last[0].1 < 0.2 * first[0].1,
        "total {} -> {}",
        first[0].1,
        last[0].1
    );
    assert!(
        last[1].1 < 0.3 * first[1].1,
        "class {} -> {}",
        first[1].1,
        last[1].1
    );
    assert!(
        last[2].1 < 0.2 * first[2].1,
        "bbox {} -> {}",
        first[2].1,
        last[2].1
    );
}

#[test]
fn generated_outputs_targets_and_weights() {
    let model = digit_locator(3);
    let (x, _) = data(5, 4);
    let tape = Tape::no_record();
    let outputs = model.forward_heads(tape.constant(x)).unwrap();
    assert_eq!(
        DigitLocatorOutputs::<()>::NAMES,
        ["class", "bbox", "embedding"]
    );
    assert_eq!(
        <DigitLocator as MultiOutput<f32>>::HEADS,
        &["class", "bbox", "embedding"]
    );
    assert_eq!(
        <DigitLocator as MultiOutput<f32>>::LOSSES,
        &["class", "bbox"]
    );
    let shapes = outputs.map(|_, v| v.shape());
    assert_eq!(
        (
            shapes.class.clone(),
            shapes.bbox.clone(),
            shapes.embedding.clone()
        ),
        (vec![5, 3], vec![5, 4], vec![5, 2])
    );
    let (c, b, e): (Vec<usize>, Vec<usize>, Vec<usize>) = shapes.clone().into();
    assert_eq!((c[1], b[1], e[1]), (3, 4, 2));
    let names: Vec<&str> = shapes.iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["class", "bbox", "embedding"]);
    assert_eq!(shapes.into_iter().count(), 3);
    // Module: the parameters of every part, prefixed by its field name.
    let params: Vec<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        params,
        [
            "body.0.kernel",
            "body.0.bias",
            "class.kernel",
            "class.bias",
            "bbox.kernel",
            "bbox.bias",
            "embedding.kernel",
            "embedding.bias"
        ]
    );
    // Module::forward concatenates the heads.
    assert_eq!(
        model
            .forward(tape.constant(Tensor::zeros(&[5, 12]).unwrap()))
            .unwrap()
            .shape(),
        vec![5, 9]
    );
    // Weights: defaults from the attributes, settable by name, validated.
    let mut w = DigitLocatorLossWeights::default();
    assert_eq!((w.class, w.bbox), (1.0, 0.5));
    w.set("bbox", 2.0).unwrap();
    assert_eq!(w.values(), vec![1.0, 2.0]);
    assert_eq!(
        w.set("bbox", -1.0).unwrap_err().to_string(),
        "loss weight of `bbox` must be finite and non-negative, got -1"
    );
    assert_eq!(
        w.set("embedding", 1.0).unwrap_err().to_string(),
        "loss weights: no head or loss named `embedding`; the names are [\"class\", \"bbox\"]"
    );
}

#[test]
fn the_total_is_the_weighted_sum_of_standalone_losses_and_weights_apply_at_run_time() {
    let model = digit_locator(5);
    let (x, targets) = data(8, 6);
    let tape = Tape::new();
    let outputs = model.forward_heads(tape.constant(x)).unwrap();
    let class = CrossEntropy::from_logits()
        .value_and_grad(&outputs.class.value(), &targets.class, None)
        .unwrap()
        .value
        .item()
        .unwrap();
    let bbox = Mse::new()
        .value_and_grad(&outputs.bbox.value(), &targets.bbox, None)
        .unwrap()
        .value
        .item()
        .unwrap();
    let total = |w: &DigitLocatorLossWeights| {
        model
            .weighted_loss(&outputs, &targets, w)
            .unwrap()
            .total
            .value()
            .item()
            .unwrap()
    };
    assert!((total(&DigitLocatorLossWeights::default()) - (class + 0.5 * bbox)).abs() < 1e-6);
    let w = DigitLocatorLossWeights {
        class: 0.0,
        bbox: 3.0,
    };
    assert!((total(&w) - 3.0 * bbox).abs() < 1e-6);
}

#[test]
fn masks_and_sample_weights_travel_with_the_targets() {
    let model = digit_locator(7);
    let (x, targets) = data(4, 8);
    let tape = Tape::new();
    let outputs = model.forward_heads(tape.constant(x)).unwrap();
    let per_sample = Mse::new()
        .reduction(Reduction::None)
        .value_and_grad(&outputs.bbox.value(), &targets.bbox, None)
        .unwrap()
        .value
        .to_vec();
    let bbox_loss = |t: &DigitLocatorTargets<f32>| {
        model
            .weighted_loss(&outputs, t, &DigitLocatorLossWeights::default())
            .unwrap()
            .parts[1]
            .1
            .value()
            .item()
            .unwrap()
    };
    let same_targets = || DigitLocatorTargets::new(targets.class.clone(), targets.bbox.clone());
    // A mask: the mean over samples 0 and 2 only.
    let masked =
        same_targets().bbox_mask(Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], &[4]).unwrap());
    assert!((bbox_loss(&masked) - (per_sample[0] + per_sample[2]) / 2.0).abs() < 1e-6);
    // Everything masked: 0, not NaN.
    assert_eq!(
        bbox_loss(&same_targets().bbox_mask(Tensor::zeros(&[4]).unwrap())),
        0.0
    );
    // Sample weights: Keras' sum(w v) / n.
    let weighted = same_targets()
        .bbox_sample_weight(Tensor::from_vec(vec![2.0, 0.0, 0.0, 0.0], &[4]).unwrap());
    assert!((bbox_loss(&weighted) - 2.0 * per_sample[0] / 4.0).abs() < 1e-6);
    // A mask of the wrong shape names the head.
    let bad = same_targets().bbox_mask(Tensor::ones(&[3]).unwrap());
    let err = model
        .weighted_loss(&outputs, &bad, &DigitLocatorLossWeights::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bbox: mask has shape [3], expected [4] (one 0/1 per sample) or a prefix of the output's shape [4, 4] (one per position)"
    );
}

#[test]
fn loss_errors_name_the_head() {
    let model = digit_locator(9);
    let (x, targets) = data(4, 10);
    let tape = Tape::new();
    let outputs = model.forward_heads(tape.constant(x)).unwrap();
    let wrong = DigitLocatorTargets::new(targets.class.clone(), Tensor::zeros(&[4, 1]).unwrap());
    let err = model
        .weighted_loss(&outputs, &wrong, &DigitLocatorLossWeights::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bbox: mse: prediction has shape [4, 4] but target has shape [4, 1]; shapes must match exactly (no broadcasting)"
    );
    let err = model
        .forward_heads(tape.constant(Tensor::zeros(&[4, 7]).unwrap()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "body: dense: input has 7 features (shape [4, 7]), the layer expects 12"
    );
}

/// A generic model without a trunk, in f64, with a sparse head, a closure
/// loss and a cross-head term: the box loss counts only where the class
/// head's label says an object is present (class 1).
#[derive(MultiOutput)]
#[multi_output(term(name = "box_if_object", weight = 2.0, with = box_if_object))]
pub struct Detector<T: Float> {
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    pub class: Dense<T>,
    #[head(loss = |pred, target| pred.sub(target)?.abs().mean_axis(-1, false), weight = 0.0)]
    pub bbox: Dense<T>,
}

fn box_if_object<'t, T: Float>(
    outputs: &DetectorOutputs<Var<'t, T>>,
    targets: &DetectorTargets<T>,
) -> Result<Var<'t, T>, AutogradError> {
    let tape = outputs.bbox.tape();
    let present: Vec<T> = targets
        .class
        .as_array()
        .iter()
        .map(|&y| if y == 1 { T::ONE } else { T::ZERO })
        .collect();
    let n = present.len();
    let mask = tape.constant(Tensor::from_vec(present, &[n, 1])?);
    let err = outputs.bbox.sub(tape.constant(targets.bbox.clone()))?;
    err.mul(err)?.mul(mask)?.mean_all()
}

fn detector(seed: u64) -> Detector<f64> {
    let mut rng = Rng::new(seed);
    Detector {
        class: Dense::new(3, 2, &mut rng).unwrap(),
        bbox: Dense::new(3, 2, &mut rng).unwrap(),
    }
}

#[test]
fn a_generic_model_with_a_closure_loss_and_a_cross_head_term() {
    let model = detector(11);
    let x = Tensor::<f64>::rand_normal(&[4, 3], 0.0, 1.0, 12).unwrap();
    let targets = DetectorTargets::new(
        Labels::from_classes(&[1, 0, 1, 0]),
        Tensor::ones(&[4, 2]).unwrap(),
    );
    let tape = Tape::new();
    let outputs = model.forward_heads(tape.constant(x)).unwrap();
    let loss = model
        .weighted_loss(&outputs, &targets, &DetectorLossWeights::default())
        .unwrap();
    let logs = loss.logs().unwrap();
    let names: Vec<&str> = logs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["loss", "class_loss", "bbox_loss", "box_if_object_loss"]
    );
    // The term: squared box errors of rows 0 and 2 only, over all 8 entries.
    let b = outputs.bbox.value().to_vec();
    let want: f64 = [0, 2]
        .iter()
        .flat_map(|&r| [b[2 * r] - 1.0, b[2 * r + 1] - 1.0])
        .map(|e| e * e)
        .sum::<f64>()
        / 8.0;
    assert!((logs[3].1 - want).abs() < 1e-12);
    assert!((logs[0].1 - (logs[1].1 + 0.0 * logs[2].1 + 2.0 * want)).abs() < 1e-12);
    assert_eq!(
        <Detector<f64> as MultiOutput<f64>>::LOSSES,
        &["class", "bbox", "box_if_object"]
    );
}

/// Random sizes and weights: the weighted total's gradient with respect to
/// every parameter equals central finite differences (f64).
#[derive(MultiOutput)]
struct Probe<T: Float> {
    #[trunk]
    trunk: Dense<T>,
    #[head(loss = CrossEntropy::from_logits().label_smoothing(0.1), weight = 1.0)]
    a: Dense<T>,
    #[head(loss = Huber::new(1.0), weight = 1.0)]
    b: Dense<T>,
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(8) })]

    #[test]
    fn weighted_total_gradient_matches_finite_differences(
        width in 1usize..4, classes in 2usize..4, outs in 1usize..3,
        wa in 0.0f64..2.0, wb in 0.0f64..2.0, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let mut model = Probe::<f64> {
            trunk: Dense::builder(3, width).activation(Activation::Tanh).bias_initializer(Initializer::Uniform(-0.5, 0.5)).build(&mut rng).unwrap(),
            a: Dense::new(width, classes, &mut rng).unwrap(),
            b: Dense::new(width, outs, &mut rng).unwrap(),
        };
        let x = Tensor::<f64>::rand_normal(&[3, 3], 0.0, 1.0, seed ^ 1).unwrap();
        let (onehot, _) = (Labels::from_classes(&[0, 1, classes - 1]).one_hot(classes).unwrap(), ());
        let targets = ProbeTargets::new(onehot, Tensor::rand_normal(&[3, outs], 0.0, 3.0, seed ^ 2).unwrap());
        let weights = ProbeLossWeights { a: wa, b: wb };
        // Gradient check of each parameter through the whole model: the
        // parameter's value is the gradcheck input, set into the model.
        let names: Vec<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
        for name in names {
            let value = model.parameters().into_iter().find(|(n, _)| *n == name).unwrap().1.value().clone();
            let set = |m: &mut Probe<f64>, v: Tensor<f64>| {
                for (n, p) in m.parameters_mut() {
                    if n == name { p.set_value(v.clone()).unwrap(); }
                }
            };
            // Analytic: backward on the model's own tape.
            let tape = Tape::new();
            let outputs = model.forward_heads(tape.constant(x.clone())).unwrap();
            let total = model.weighted_loss(&outputs, &targets, &weights).unwrap().total;
            let grads = tape.backward(total).unwrap();
            let p_id = model.parameters().into_iter().find(|(n, _)| *n == name).unwrap().1.id();
            let analytic = grads.by_id(p_id).unwrap().to_vec();
            // Numeric: central differences of the total.
            let eps = 1e-6;
            let base = value.to_vec();
            for i in 0..base.len() {
                let mut eval = |delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    set(&mut model, Tensor::from_vec(v, value.shape()).unwrap());
                    let tape = Tape::no_record();
                    let outputs = model.forward_heads(tape.constant(x.clone())).unwrap();
                    model.weighted_loss(&outputs, &targets, &weights).unwrap().total.value().item().unwrap()
                };
                let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
                set(&mut model, value.clone());
                // Same tolerance reasoning as the autograd property tests.
                prop_assert!((analytic[i] - numeric).abs() <= 1e-7 + 1e-6 * numeric.abs(), "{name}[{i}]: analytic {} numeric {numeric}", analytic[i]);
            }
        }
        let _ = GradcheckOptions::default();
    }
}

mod loss_weight_count {
    //! A hand-written model whose loss weights are one short of its losses:
    //! the weighted total and `fit` both refuse it instead of dropping the
    //! unweighted loss.
    use polyhead::autograd::{Parameter, Tape, Var};
    use polyhead::prelude::*;
    use polyhead::tensor::Rng;
    use polyhead::{LossWeights, Progress};

    #[derive(MultiOutput)]
    struct Two {
        #[head(loss = Mse::new())]
        a: Dense,
        #[head(loss = Mse::new())]
        b: Dense,
    }

    /// One weight for a model with two losses.
    #[derive(Clone, Default)]
    struct OneWeight;

    impl LossWeights for OneWeight {
        fn names(&self) -> &'static [&'static str] {
            &["a"]
        }
        fn values(&self) -> Vec<f64> {
            vec![1.0]
        }
        fn set(&mut self, _: &str, _: f64) -> polyhead::Result<()> {
            Ok(())
        }
    }

    struct Short(Two);

    impl Module<f32> for Short {
        fn forward<'t>(&self, x: Var<'t, f32>) -> polyhead::layers::Result<Var<'t, f32>> {
            self.0.a.forward(x)
        }
        fn visit_parameters<'a>(
            &'a self,
            prefix: &str,
            f: &mut dyn FnMut(String, &'a Parameter<f32>),
        ) {
            self.0.visit_parameters(prefix, f)
        }
        fn visit_parameters_mut<'a>(
            &'a mut self,
            prefix: &str,
            f: &mut dyn FnMut(String, &'a mut Parameter<f32>),
        ) {
            self.0.visit_parameters_mut(prefix, f)
        }
    }

    impl MultiOutput<f32> for Short {
        type Inputs<V> = V;
        type Outputs<V> = TwoOutputs<V>;
        type Targets = TwoTargets<f32>;
        type LossWeights = OneWeight;
        const HEADS: &'static [&'static str] = Two::HEADS;
        const LOSSES: &'static [&'static str] = Two::LOSSES;
        const TRUNK: Option<&'static str> = None;
        const SHARED: &'static [&'static str] = &[];
        const INPUTS: &'static [&'static str] = Two::INPUTS;
        fn inputs_of(x: &Tensor<f32>) -> Vec<(&'static str, &Tensor<f32>)> {
            Two::inputs_of(x)
        }
        fn select_input_rows(x: &Tensor<f32>, rows: &[usize]) -> polyhead::Result<Tensor<f32>> {
            Two::select_input_rows(x, rows)
        }
        fn input_vars<'t>(tape: &'t Tape<f32>, x: &Tensor<f32>) -> Var<'t, f32> {
            Two::input_vars(tape, x)
        }
        // `Self::Inputs<..>` (here a bare `Var`) as the trait writes it, so
        // that `'t` is bound the same way.
        fn forward_with_features<'t>(
            &self,
            x: Self::Inputs<Var<'t, f32>>,
        ) -> polyhead::Result<(Option<Var<'t, f32>>, TwoOutputs<Var<'t, f32>>)> {
            self.0.forward_with_features(x)
        }
        fn head_values<'t>(
            outputs: &Self::Outputs<Var<'t, f32>>,
        ) -> Vec<(&'static str, Var<'t, f32>)> {
            Two::head_values(outputs)
        }
        fn map_outputs<V, U>(
            outputs: TwoOutputs<V>,
            f: impl FnMut(&'static str, V) -> U,
        ) -> TwoOutputs<U> {
            outputs.map(f)
        }
        fn head_losses<'t>(
            &self,
            outputs: &Self::Outputs<Var<'t, f32>>,
            targets: &TwoTargets<f32>,
        ) -> polyhead::Result<Vec<Var<'t, f32>>> {
            self.0.head_losses(outputs, targets)
        }
    }

    fn model() -> Short {
        let mut rng = Rng::new(5);
        Short(Two {
            a: Dense::new(3, 1, &mut rng).unwrap(),
            b: Dense::new(3, 1, &mut rng).unwrap(),
        })
    }

    const MESSAGE: &str = "2 loss(es) (a, b) but 1 loss weight(s); give one weight per loss, in the order of `MultiOutput::LOSSES`";

    #[test]
    fn weighted_loss_refuses_loss_weights_of_another_length() {
        let m = model();
        let x = Tensor::<f32>::ones(&[4, 3]).unwrap();
        let t = TwoTargets::new(
            Tensor::zeros(&[4, 1]).unwrap(),
            Tensor::zeros(&[4, 1]).unwrap(),
        );
        let tape = Tape::new();
        let out = m.forward_heads(tape.constant(x)).unwrap();
        let err = m.weighted_loss(&out, &t, &OneWeight).unwrap_err();
        assert!(matches!(
            err,
            polyhead::Error::LossWeightCount {
                losses: 2,
                weights: 1,
                ..
            }
        ));
        assert_eq!(err.to_string(), format!("weighted_loss: {MESSAGE}"));
    }

    #[test]
    fn fit_refuses_loss_weights_of_another_length() {
        let mut m = model();
        let x = Tensor::<f32>::ones(&[4, 3]).unwrap();
        let t = TwoTargets::new(
            Tensor::zeros(&[4, 1]).unwrap(),
            Tensor::zeros(&[4, 1]).unwrap(),
        );
        let err = Trainer::<Short, f32>::new(Sgd::new(0.1).build())
            .progress(Progress::Silent)
            .fit(&mut m, &x, &t)
            .unwrap_err();
        assert_eq!(err.to_string(), format!("loss weighting: {MESSAGE}"));
    }
}

mod buffers_in_a_derived_model {
    //! A derived model lists its parts' buffers under `<field>.<name>`, so
    //! checkpoints keep a user's layer's state that is not trained.
    use polyhead::autograd::{Parameter, Var};
    use polyhead::layers::Buffer;
    use polyhead::prelude::*;
    use polyhead::tensor::Rng;

    /// The identity, counting the training-mode batches it has seen.
    struct Counter {
        seen: Buffer<f32>,
    }

    impl Module<f32> for Counter {
        fn forward<'t>(&self, x: Var<'t, f32>) -> polyhead::layers::Result<Var<'t, f32>> {
            self.seen.set_value(self.seen.value().add_scalar(1.0))?;
            Ok(x)
        }
        fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<f32>)) {}
        fn visit_parameters_mut<'a>(
            &'a mut self,
            _: &str,
            _: &mut dyn FnMut(String, &'a mut Parameter<f32>),
        ) {
        }
        fn visit_buffers<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Buffer<f32>)) {
            f(format!("{prefix}seen"), &self.seen);
        }
    }

    #[derive(MultiOutput)]
    struct Counted {
        #[trunk]
        body: Sequential,
        #[head(loss = Mse::new())]
        out: Dense,
    }

    fn model(start: f32) -> Counted {
        let mut rng = Rng::new(1);
        Counted {
            body: Sequential::new()
                .push(Dense::new(2, 3, &mut rng).unwrap())
                .push(Counter {
                    seen: Buffer::new(Tensor::full(&[1], start).unwrap()),
                }),
            out: Dense::new(3, 1, &mut rng).unwrap(),
        }
    }

    #[test]
    fn buffers_are_named_by_field_and_survive_a_checkpoint() {
        let m = model(0.0);
        let names: Vec<String> = m.buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["body.1.seen"]);
        let tape = polyhead::autograd::Tape::new();
        m.forward_heads(tape.constant(Tensor::ones(&[4, 2]).unwrap()))
            .unwrap();
        m.forward_heads(tape.constant(Tensor::ones(&[4, 2]).unwrap()))
            .unwrap();
        let path = std::env::temp_dir().join(format!(
            "polyhead-derived-buffers-{}.safetensors",
            std::process::id()
        ));
        polyhead::layers::save_checkpoint(&path, &m, None).unwrap();
        let mut other = model(40.0);
        polyhead::layers::load_checkpoint(&path, &mut other, None).unwrap();
        assert_eq!(other.buffers()[0].1.value().to_vec(), vec![2.0]);
        let _ = std::fs::remove_file(&path);
    }
}
