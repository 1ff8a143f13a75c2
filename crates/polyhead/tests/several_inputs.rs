//! Models beyond one trunk and its heads: several named inputs, a forward
//! of the user's own, a head at an intermediate depth; trained, evaluated
//! and predicted through the same `Trainer` as the simple models.

use polyhead::Progress;
use polyhead::prelude::*;

/// An image and a metadata vector; `class` and `bbox` on the joined
/// features, `aux` on the image features alone (an auxiliary head halfway
/// down, as in the two-input fixture).
#[derive(MultiOutput)]
#[multi_output(inputs(image, meta), forward = Self::forward_graph)]
struct TwoIn {
    #[layer]
    conv: Conv2D,
    #[layer]
    gap: GlobalPooling,
    #[layer]
    meta_dense: Dense,
    #[layer]
    joint: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 0.2, target = Labels)]
    aux: Dense,
}

impl TwoIn {
    fn new(seed: u64) -> TwoIn {
        let mut rng = Rng::new(seed);
        TwoIn {
            conv: Conv2D::builder(1, 4, [3, 3])
                .activation(Activation::Relu)
                .build(&mut rng)
                .unwrap(),
            gap: GlobalPooling::average_2d(),
            meta_dense: Dense::builder(3, 5)
                .activation(Activation::Relu)
                .build(&mut rng)
                .unwrap(),
            joint: Dense::builder(9, 8)
                .activation(Activation::Relu)
                .build(&mut rng)
                .unwrap(),
            class: Dense::new(8, 3, &mut rng).unwrap(),
            bbox: Dense::new(8, 2, &mut rng).unwrap(),
            aux: Dense::new(4, 3, &mut rng).unwrap(),
        }
    }

    fn forward_graph<'t>(
        &self,
        inputs: TwoInInputs<Var<'t, f32>>,
    ) -> polyhead::Result<TwoInOutputs<Var<'t, f32>>> {
        let image = self.gap.forward(self.conv.forward(inputs.image)?)?;
        let meta = self.meta_dense.forward(inputs.meta)?;
        let joint = self.joint.forward(Var::concat(&[image, meta], -1)?)?;
        Ok(TwoInOutputs {
            class: self.class.forward(joint)?,
            bbox: self.bbox.forward(joint)?,
            aux: self.aux.forward(image)?,
        })
    }
}

fn data(n: usize) -> (TwoInInputs<Tensor<f32>>, TwoInTargets<f32>) {
    let image = Tensor::<f32>::rand_normal(&[n, 6, 6, 1], 0.0, 1.0, 1).unwrap();
    let meta = Tensor::<f32>::rand_normal(&[n, 3], 0.0, 1.0, 2).unwrap();
    // The class is the meta vector's largest entry; the box its first two.
    let labels: Vec<usize> = meta
        .argmax_axis(1, false)
        .unwrap()
        .iter()
        .copied()
        .collect();
    let bbox = meta.slice_axis(1, 0, 2).unwrap().to_contiguous();
    let labels = Labels::from_classes(&labels);
    (
        TwoInInputs { image, meta },
        TwoInTargets::new(labels.clone(), bbox, labels),
    )
}

#[test]
fn a_two_input_model_names_its_inputs_parameters_and_losses() {
    assert_eq!(TwoIn::INPUTS, ["image", "meta"]);
    assert_eq!(TwoInInputs::<()>::NAMES, ["image", "meta"]);
    assert_eq!(TwoIn::HEADS, ["class", "bbox", "aux"]);
    assert_eq!(TwoIn::TRUNK, None);
    let names: Vec<String> = TwoIn::new(0)
        .parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "conv.kernel",
            "conv.bias",
            "meta_dense.kernel",
            "meta_dense.bias",
            "joint.kernel",
            "joint.bias",
            "class.kernel",
            "class.bias",
            "bbox.kernel",
            "bbox.bias",
            "aux.kernel",
            "aux.bias"
        ]
    );
    // Module::forward takes one input: a model of several says so.
    let tape = Tape::new();
    let err = TwoIn::new(0)
        .forward(tape.constant(Tensor::zeros(&[1, 3]).unwrap()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "multi_output: `TwoIn` takes several inputs (image, meta): call `forward_heads` with a `TwoInInputs`"
    );
}

#[test]
fn a_two_input_model_trains_evaluates_and_predicts() {
    let (x, t) = data(96);
    let mut model = TwoIn::new(3);
    let mut trainer = Trainer::<TwoIn, f32>::new(Adam::new(0.02).build())
        .epochs(30)
        .batch_size(16)
        .validation_split(0.25)
        .metric("class", Metric::Accuracy)
        .progress(Progress::Silent);
    let history = trainer.fit(&mut model, &x, &t).unwrap();
    let loss = history.get("loss").unwrap();
    assert!(loss.last().unwrap() < &(0.5 * loss[0]), "{loss:?}");
    for name in [
        "class_loss",
        "bbox_loss",
        "aux_loss",
        "val_loss",
        "val_class_accuracy",
    ] {
        assert!(
            history.get(name).is_some(),
            "no {name} in {:?}",
            history.names()
        );
    }
    let scores = trainer.evaluate(&mut model, &x, &t).unwrap();
    let predicted = trainer.predict(&mut model, &x).unwrap();
    assert_eq!(predicted.class.shape(), &[96, 3]);
    assert_eq!(predicted.bbox.shape(), &[96, 2]);
    assert_eq!(predicted.aux.shape(), &[96, 3]);
    // The weighted total evaluate reports is the one the predictions give.
    let tape = Tape::no_record();
    let outputs = predicted.map(|_, v| tape.constant(v));
    let total = model
        .weighted_loss(&outputs, &t, &Default::default())
        .unwrap();
    let loss = scores.iter().find(|(n, _)| n == "loss").unwrap().1;
    let from_predictions = f64::from(total.total.value().item().unwrap());
    assert!(
        (loss - from_predictions).abs() < 1e-5,
        "{loss} vs {from_predictions}"
    );
}

#[test]
fn inputs_that_disagree_on_the_sample_count_are_refused_by_name() {
    let (mut x, t) = data(8);
    x.meta = x.meta.slice_axis(0, 0, 7).unwrap().to_contiguous();
    let mut model = TwoIn::new(0);
    let mut trainer = Trainer::<TwoIn, f32>::new(Sgd::new(0.1).build()).progress(Progress::Silent);
    let expected = "the inputs disagree on the number of samples: `image` has 8, `meta` has 7 (shapes image [8, 6, 6, 1], meta [7, 3])";
    assert_eq!(
        trainer.fit(&mut model, &x, &t).unwrap_err().to_string(),
        expected
    );
    assert_eq!(
        trainer.predict(&mut model, &x).unwrap_err().to_string(),
        format!("predict: {expected}")
    );
    // NaN in one input is refused by that input's name.
    let (mut x, _) = data(8);
    let mut meta = x.meta.to_vec();
    meta[5] = f32::NAN;
    x.meta = Tensor::from_vec(meta, &[8, 3]).unwrap();
    let err = trainer.fit(&mut model, &x, &t).unwrap_err().to_string();
    assert!(err.contains("input meta"), "{err}");
}

/// One input and a forward of the user's own: a head reading an earlier
/// layer's output than the others (heads at any depth).
#[derive(MultiOutput)]
#[multi_output(forward = Self::forward_graph)]
struct Deep {
    #[layer]
    first: Dense,
    #[layer]
    second: Dense,
    #[head(loss = Mse::new())]
    late: Dense,
    #[head(loss = Mse::new(), weight = 0.2)]
    early: Dense,
}

impl Deep {
    fn forward_graph<'t>(&self, x: Var<'t, f32>) -> polyhead::Result<DeepOutputs<Var<'t, f32>>> {
        let h1 = self.first.forward(x)?;
        let h2 = self.second.forward(h1)?;
        Ok(DeepOutputs {
            late: self.late.forward(h2)?,
            early: self.early.forward(h1)?,
        })
    }
}

#[test]
fn a_head_can_read_an_intermediate_layer_through_a_forward_of_ones_own() {
    let mut rng = Rng::new(1);
    let mut model = Deep {
        first: Dense::builder(4, 6)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        second: Dense::builder(6, 5)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        late: Dense::new(5, 1, &mut rng).unwrap(),
        early: Dense::new(6, 1, &mut rng).unwrap(),
    };
    let x = Tensor::<f32>::rand_normal(&[16, 4], 0.0, 1.0, 3).unwrap();
    let y = x.sum_axis(1, true).unwrap();
    let t = DeepTargets::new(y.clone(), y);
    let trainer = Trainer::<Deep, f32>::new(Sgd::new(0.05).build()).progress(Progress::Silent);
    let predicted = trainer.predict(&mut model, &x).unwrap();
    // `early` depends on `first` only: its gradient reaches `first` but not
    // `second`.
    let tape = Tape::new();
    let outputs = model.forward_heads(tape.constant(x.clone())).unwrap();
    assert_eq!(predicted.early.to_vec(), outputs.early.value().to_vec());
    let grads = tape.backward(outputs.early.sum_all()).unwrap();
    let grad_of = |name: &str| {
        let params = model.parameters();
        let p = params.iter().find(|(n, _)| n == name).unwrap().1;
        grads.by_id(p.id()).is_some()
    };
    assert!(grad_of("first.kernel") && grad_of("early.kernel"));
    assert!(!grad_of("second.kernel") && !grad_of("late.kernel"));
    let _ = t;
}

/// A forward of one's own with the layers every head depends on marked
/// `#[layer(shared)]`: the strategies that balance gradients on shared
/// parameters work on it.
#[derive(MultiOutput)]
#[multi_output(forward = Self::graph)]
struct SharedBody {
    #[layer(shared)]
    body: Dense,
    #[layer]
    side: Dense,
    #[head(loss = Mse::new())]
    a: Dense,
    #[head(loss = Mse::new())]
    b: Dense,
}

impl SharedBody {
    fn graph<'t>(&self, x: Var<'t, f32>) -> polyhead::Result<SharedBodyOutputs<Var<'t, f32>>> {
        let h = self.body.forward(x)?;
        Ok(SharedBodyOutputs {
            a: self.a.forward(h)?,
            b: self.b.forward(self.side.forward(h)?)?,
        })
    }
}

#[test]
fn shared_layers_of_ones_own_forward_serve_the_gradient_strategies() {
    assert_eq!(SharedBody::SHARED, ["body"]);
    assert_eq!(TwoIn::SHARED, [] as [&str; 0]);
    let mut rng = Rng::new(2);
    let mut model = SharedBody {
        body: Dense::builder(3, 6)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        side: Dense::builder(6, 6)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        a: Dense::new(6, 1, &mut rng).unwrap(),
        b: Dense::new(6, 1, &mut rng).unwrap(),
    };
    let x = Tensor::<f32>::rand_normal(&[32, 3], 0.0, 1.0, 4).unwrap();
    let y = x.sum_axis(1, true).unwrap();
    let targets = SharedBodyTargets::new(y.clone(), y.mul_scalar(-1.0));
    let strategies: [Box<dyn polyhead::weighting::Weighting<f32>>; 2] = [
        Box::new(polyhead::weighting::GradNorm::new(1.5)),
        Box::new(polyhead::weighting::PcGrad::new()),
    ];
    for weighting in strategies {
        let history = Trainer::<SharedBody, f32>::new(Sgd::new(0.05).build())
            .epochs(3)
            .batch_size(8)
            .weighting(weighting)
            .progress(Progress::Silent)
            .fit(&mut model, &x, &targets)
            .unwrap();
        assert!(history.get("loss").unwrap().iter().all(|v| v.is_finite()));
    }
}
