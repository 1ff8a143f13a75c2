//! Per-op recording overhead of the autograd tape.
//!
//! Each benchmark runs a chain of 1000 ops on one-element tensors, where the
//! arithmetic is negligible and what is measured is the bookkeeping:
//! - `tensor_add`: plain `Tensor::add` (allocation of the result only);
//! - `tape_add`: the same adds recorded on a tape (`Var::add`);
//! - `tape_add_backward`: recording plus the backward sweep;
//! - `no_record_add`: the same model code on a `Tape::no_record()`.
//!
//! Divide the reported time by 1000 for the per-op figure. Run with
//! `cargo bench --bench autograd_overhead`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use polyhead::autograd::Tape;
use polyhead::tensor::Tensor;

const CHAIN: usize = 1000;

fn overhead(c: &mut Criterion) {
    let one = Tensor::<f32>::scalar(1.0);
    let mut group = c.benchmark_group("autograd_overhead_x1000");

    group.bench_function("tensor_add", |b| {
        b.iter(|| {
            let mut acc = one.clone();
            for _ in 0..CHAIN {
                acc = acc.add(black_box(&one)).unwrap();
            }
            acc
        })
    });

    group.bench_function("tape_add", |b| {
        b.iter(|| {
            let tape = Tape::new();
            let x = tape.leaf(one.clone());
            let mut acc = x;
            for _ in 0..CHAIN {
                acc = acc.add(black_box(x)).unwrap();
            }
            acc.value()
        })
    });

    group.bench_function("tape_add_backward", |b| {
        b.iter(|| {
            let tape = Tape::new();
            let x = tape.leaf(one.clone());
            let mut acc = x;
            for _ in 0..CHAIN {
                acc = acc.add(black_box(x)).unwrap();
            }
            tape.backward(acc).unwrap().wrt(x).unwrap()
        })
    });

    group.bench_function("no_record_add", |b| {
        b.iter(|| {
            let tape = Tape::no_record();
            let x = tape.leaf(one.clone());
            let mut acc = x;
            for _ in 0..CHAIN {
                acc = acc.add(black_box(x)).unwrap();
            }
            acc.value()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = overhead
}
criterion_main!(benches);
