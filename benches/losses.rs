//! Value-and-gradient throughput of the fused loss kernels (f32): softmax
//! cross-entropy from logits with integer labels at B x 10 and B x 1000,
//! with dense (one-hot, label-smoothed) targets at B x 10, on logits far
//! apart (a class masked at -1e9 in every row; logits spread 40 times
//! wider, so some exponentials are subnormal), binary cross-entropy from
//! logits at B x 10 (a multi-label head), and mean squared error at B x 4,
//! reusing the gradient buffer between calls as a training loop would.
//! Throughput is in samples (rows) per second.
//!
//! Run with `cargo bench --bench losses`.

use std::hint::black_box;

use criterion::{Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use polyhead::losses::{BinaryCrossEntropy, CrossEntropy, Labels, Loss, Mse, SparseCrossEntropy};
use polyhead::tensor::{Rng, Tensor};

/// Times `loss`'s value and gradient, each call writing into the previous
/// call's gradient buffer, as a training loop does.
fn value_and_grad_reusing_buffer<L: Loss<f32>>(
    b: &mut Bencher<'_>,
    loss: &L,
    pred: &Tensor<f32>,
    target: &L::Target,
) {
    let mut grad = None;
    b.iter(|| {
        let out = loss
            .value_and_grad_into(black_box(pred), target, None, grad.take())
            .unwrap();
        grad = Some(out.grad);
        out.value
    })
}

fn cross_entropy(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_entropy_value_and_grad");
    let loss = SparseCrossEntropy::from_logits();
    for (batch, classes) in [
        (32, 10),
        (1024, 10),
        (65536, 10),
        (1024, 1000),
        (16384, 1000),
    ] {
        let logits = Tensor::<f32>::rand_normal(&[batch, classes], 0.0, 3.0, 1).unwrap();
        let mut rng = Rng::new(2);
        let labels: Vec<usize> = (0..batch)
            .map(|_| rng.below(classes as u64) as usize)
            .collect();
        let labels = Labels::from_classes(&labels);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{batch}x{classes}")),
            &(),
            |b, _| value_and_grad_reusing_buffer(b, &loss, &logits, &labels),
        );
    }
    group.finish();
}

/// Cross-entropy 1024 x 10 on ordinary, masked and widely spread logits:
/// the exponential leaves its vectorised path only for the values that need
/// `f32::exp` (see `polyhead_tensor::Float::exp_slice`).
fn cross_entropy_far_logits(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_entropy_far_logits");
    let loss = SparseCrossEntropy::from_logits();
    let (batch, classes) = (1024, 10);
    let ordinary = Tensor::<f32>::rand_normal(&[batch, classes], 0.0, 3.0, 1).unwrap();
    let mut masked = ordinary.to_vec();
    masked.iter_mut().step_by(classes).for_each(|v| *v = -1e9);
    let wide: Vec<f32> = ordinary.to_vec().iter().map(|v| v * 40.0).collect();
    let mut rng = Rng::new(2);
    // Labels avoid the masked class 0.
    let labels: Vec<usize> = (0..batch)
        .map(|_| 1 + rng.below(classes as u64 - 1) as usize)
        .collect();
    let labels = Labels::from_classes(&labels);
    group.throughput(Throughput::Elements(batch as u64));
    for (name, logits) in [
        ("ordinary", ordinary.clone()),
        (
            "masked",
            Tensor::from_vec(masked, &[batch, classes]).unwrap(),
        ),
        ("wide", Tensor::from_vec(wide, &[batch, classes]).unwrap()),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), &(), |b, _| {
            value_and_grad_reusing_buffer(b, &loss, &logits, &labels)
        });
    }
    group.finish();
}

fn dense_cross_entropy(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_cross_entropy_value_and_grad");
    let loss = CrossEntropy::from_logits().label_smoothing(0.1);
    for batch in [32, 1024, 65536] {
        let logits = Tensor::<f32>::rand_normal(&[batch, 10], 0.0, 3.0, 1).unwrap();
        let labels: Vec<usize> = (0..batch).map(|i| (i * 7) % 10).collect();
        let onehot = Labels::from_classes(&labels).one_hot::<f32>(10).unwrap();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{batch}x10")),
            &(),
            |b, _| value_and_grad_reusing_buffer(b, &loss, &logits, &onehot),
        );
    }
    group.finish();
}

/// Binary cross-entropy from logits against 0/1 targets, B x 10.
fn binary_cross_entropy(c: &mut Criterion) {
    let mut group = c.benchmark_group("binary_cross_entropy_value_and_grad");
    let loss = BinaryCrossEntropy::from_logits();
    for batch in [1024, 65536] {
        let logits = Tensor::<f32>::rand_normal(&[batch, 10], 0.0, 3.0, 1).unwrap();
        let targets = Tensor::<f32>::rand_uniform(&[batch, 10], 0.0, 1.0, 2)
            .unwrap()
            .map(|v| if v > 0.5 { 1.0 } else { 0.0 });
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{batch}x10")),
            &(),
            |b, _| value_and_grad_reusing_buffer(b, &loss, &logits, &targets),
        );
    }
    group.finish();
}

fn mse(c: &mut Criterion) {
    let mut group = c.benchmark_group("mse_value_and_grad");
    let loss = Mse::new();
    for batch in [32, 1024, 65536] {
        let pred = Tensor::<f32>::rand_normal(&[batch, 4], 0.0, 1.0, 3).unwrap();
        let target = Tensor::<f32>::rand_normal(&[batch, 4], 0.0, 1.0, 4).unwrap();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{batch}x4")),
            &(),
            |b, _| value_and_grad_reusing_buffer(b, &loss, &pred, &target),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = cross_entropy, cross_entropy_far_logits, dense_cross_entropy, binary_cross_entropy, mse
}
criterion_main!(benches);
