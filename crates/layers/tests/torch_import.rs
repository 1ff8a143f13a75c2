//! PyTorch `state_dict` import beyond the reference fixtures (which
//! `cargo xtask conformance` replays through the same loader, layer by
//! layer): depthwise kernels, a model of several layers under a name map,
//! and files that do not fit, refused whole with every mismatch listed.

use polyhead_autograd::Tape;
use polyhead_layers::{
    Activation, Conv2D, Dense, DepthwiseConv2D, Gru, LayerNorm, Module, Padding, Sequential,
    TorchNames, load_torch_state_dict_bytes,
};
use polyhead_tensor::{Rng, Tensor};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// A safetensors file of float64 tensors (and raw others).
fn state_dict(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn f64s(t: &Tensor<f64>) -> Vec<u8> {
    t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn entry(name: &'static str, t: &Tensor<f64>) -> (&'static str, Dtype, Vec<usize>, Vec<u8>) {
    (name, Dtype::F64, t.shape().to_vec(), f64s(t))
}

/// PyTorch's depthwise convolution (`Conv2d(C, C*M, k, groups=C)`, weight
/// `[C*M, 1, kh, kw]`) loads into `DepthwiseConv2D` and into a grouped
/// `Conv2D`, and both compute the same outputs.
#[test]
fn a_depthwise_weight_loads_into_depthwise_and_grouped_convolutions_alike() {
    let (c, m) = (3, 2);
    let weight = Tensor::<f64>::rand_normal(&[c * m, 1, 3, 3], 0.0, 1.0, 1).unwrap();
    let bias = Tensor::<f64>::rand_normal(&[c * m], 0.0, 1.0, 2).unwrap();
    let bytes = state_dict(&[entry("weight", &weight), entry("bias", &bias)]);
    let mut rng = Rng::new(0);
    let mut depthwise = DepthwiseConv2D::<f64>::builder(c, [3, 3])
        .depth_multiplier(m)
        .padding(Padding::Same)
        .build(&mut rng)
        .unwrap();
    let mut grouped = Conv2D::<f64>::builder(c, c * m, [3, 3])
        .groups(c)
        .padding(Padding::Same)
        .build(&mut rng)
        .unwrap();
    load_torch_state_dict_bytes("dw", &bytes, &mut depthwise, &TorchNames::new()).unwrap();
    load_torch_state_dict_bytes("grouped", &bytes, &mut grouped, &TorchNames::new()).unwrap();
    // Output channel c*M + m is input channel c convolved with
    // weight[c*M + m, 0] (PyTorch's grouping).
    let k = depthwise.kernel().value().to_vec(); // [kh, kw, C, M]
    let w = weight.to_vec(); // [C*M, 1, kh, kw]
    for i in 0..3 {
        for j in 0..3 {
            for ci in 0..c {
                for mi in 0..m {
                    assert_eq!(
                        k[((i * 3 + j) * c + ci) * m + mi],
                        w[((ci * m + mi) * 3 + i) * 3 + j]
                    );
                }
            }
        }
    }
    let x = Tensor::<f64>::rand_normal(&[2, 5, 5, c], 0.0, 1.0, 3).unwrap();
    let tape = Tape::new();
    let a = depthwise.forward(tape.constant(x.clone())).unwrap().value();
    let b = grouped.forward(tape.constant(x)).unwrap().value();
    for (p, q) in a.to_vec().iter().zip(b.to_vec()) {
        assert!((p - q).abs() < 1e-12, "{p} vs {q}");
    }
}

fn model() -> Sequential<f64> {
    let mut rng = Rng::new(5);
    Sequential::new()
        .push(
            Dense::builder(4, 3)
                .activation(Activation::Relu)
                .build(&mut rng)
                .unwrap(),
        )
        .push(LayerNorm::new(3).unwrap())
        .push(Dense::new(3, 2, &mut rng).unwrap())
}

fn bits(m: &dyn Module<f64>) -> Vec<u64> {
    m.parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .map(f64::to_bits)
        .collect()
}

/// A three-layer model from a state_dict whose module names differ
/// (`encoder.fc`, `encoder.norm`, `head`): the map gives each, and the
/// model then computes PyTorch's function of the weights.
#[test]
fn a_model_of_several_layers_loads_through_a_name_map() {
    let w1 = Tensor::<f64>::rand_normal(&[3, 4], 0.0, 1.0, 1).unwrap();
    let b1 = Tensor::<f64>::rand_normal(&[3], 0.0, 1.0, 2).unwrap();
    let g = Tensor::<f64>::rand_normal(&[3], 1.0, 0.1, 3).unwrap();
    let beta = Tensor::<f64>::rand_normal(&[3], 0.0, 0.1, 4).unwrap();
    let w2 = Tensor::<f64>::rand_normal(&[2, 3], 0.0, 1.0, 5).unwrap();
    let b2 = Tensor::<f64>::rand_normal(&[2], 0.0, 1.0, 6).unwrap();
    let bytes = state_dict(&[
        entry("encoder.fc.weight", &w1),
        entry("encoder.fc.bias", &b1),
        entry("encoder.norm.weight", &g),
        entry("encoder.norm.bias", &beta),
        entry("head.weight", &w2),
        entry("head.bias", &b2),
    ]);
    let names = TorchNames::new()
        .layer("0", "encoder.fc")
        .layer("1", "encoder.norm")
        .layer("2", "head");
    let mut m = model();
    load_torch_state_dict_bytes("model", &bytes, &mut m, &names).unwrap();
    // PyTorch's forward by hand: relu(x W1^T + b1) -> layer norm -> W2.
    let x = Tensor::<f64>::rand_normal(&[5, 4], 0.0, 1.0, 7).unwrap();
    let (xv, w1v, w2v) = (x.to_vec(), w1.to_vec(), w2.to_vec());
    let tape = Tape::new();
    let y = m.forward(tape.constant(x)).unwrap().value().to_vec();
    for r in 0..5 {
        let h: Vec<f64> = (0..3)
            .map(|o| {
                let z: f64 =
                    (0..4).map(|i| xv[r * 4 + i] * w1v[o * 4 + i]).sum::<f64>() + b1.to_vec()[o];
                z.max(0.0)
            })
            .collect();
        let mean = h.iter().sum::<f64>() / 3.0;
        let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
        let n: Vec<f64> = (0..3)
            .map(|o| (h[o] - mean) / (var + 1e-3).sqrt() * g.to_vec()[o] + beta.to_vec()[o])
            .collect();
        for o in 0..2 {
            let want: f64 = (0..3).map(|i| n[i] * w2v[o * 3 + i]).sum::<f64>() + b2.to_vec()[o];
            assert!(
                (y[r * 2 + o] - want).abs() < 1e-12,
                "{} vs {want}",
                y[r * 2 + o]
            );
        }
    }
}

/// A file with a tensor missing, one misshaped, one left over, one of
/// another dtype and one holding NaN: one error lists them all, and the
/// model is untouched.
#[test]
fn a_state_dict_that_does_not_fit_is_refused_whole_with_every_mismatch() {
    let ok = |shape: &[usize], seed| Tensor::<f64>::rand_normal(shape, 0.0, 1.0, seed).unwrap();
    let mut nan = ok(&[3], 9).to_vec();
    nan[1] = f64::NAN;
    let nan = Tensor::from_vec(nan, &[3]).unwrap();
    let bytes = state_dict(&[
        entry("0.weight", &ok(&[3, 4], 1)),
        // 0.bias missing
        entry("1.weight", &ok(&[4], 2)), // LayerNorm(3) needs [3]
        entry("1.bias", &nan),
        entry("2.weight", &ok(&[2, 3], 3)),
        ("2.bias", Dtype::I64, vec![2], vec![0; 16]),
        entry("extra.weight", &ok(&[1], 4)),
    ]);
    let mut m = model();
    let before = bits(&m);
    let err = load_torch_state_dict_bytes("bad", &bytes, &mut m, &TorchNames::new())
        .unwrap_err()
        .to_string();
    for part in [
        "state_dict bad: does not fit the model:",
        "2.bias: dtype I64; float32 and float64 are read",
        "1.bias: holds NaN at flat index 1",
        "0.bias: missing from the state_dict",
        "1.gamma: PyTorch's tensor converts to [4], the model has [3]",
        "extra.weight: in the state_dict but not read by the model",
    ] {
        assert!(err.contains(part), "`{part}` in:\n{err}");
    }
    assert_eq!(bits(&m), before, "nothing loaded");
}

/// A GRU without `reset_after` has no PyTorch counterpart: said so.
#[test]
fn a_gru_without_reset_after_is_refused_by_name() {
    let mut gru = Gru::<f64>::new(2, 3, &mut Rng::new(0))
        .unwrap()
        .reset_after(false);
    let t = |shape: &[usize]| Tensor::<f64>::zeros(shape).unwrap();
    let bytes = state_dict(&[
        entry("weight_ih_l0", &t(&[9, 2])),
        entry("weight_hh_l0", &t(&[9, 3])),
        entry("bias_ih_l0", &t(&[9])),
        entry("bias_hh_l0", &t(&[9])),
    ]);
    let err = load_torch_state_dict_bytes("gru", &bytes, &mut gru, &TorchNames::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bias_ih_l0: a GRU with reset_after off has no PyTorch counterpart"),
        "{err}"
    );
}
