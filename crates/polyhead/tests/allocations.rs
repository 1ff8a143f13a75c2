//! Heap allocations per training step, counted on the calling thread by a
//! wrapping global allocator: counts do not drift with the machine, so
//! they are asserted here (the bench reports them too). The performance
//! issue's targets: at most 5 for the batch-32 weighted loss (met: the
//! tensor pool, the tape's reused lists and ops' gradients written into
//! the tape's slots), at most 10 for a training step (not met: 41 here,
//! see the README's Performance section for what the rest is).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use polyhead::prelude::*;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call unchanged to the system allocator; the
// thread-local counter has no effect on the memory (`try_with` never
// allocates, and is skipped while the thread is being torn down).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

#[derive(MultiOutput)]
struct Net {
    #[trunk]
    hidden: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), weight = 1.0, target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
}

#[test]
fn training_steps_allocate_no_more_than_today() {
    let mut rng = Rng::new(1);
    let mut net = Net {
        hidden: Dense::builder(784, 64)
            .activation(Activation::Relu)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(64, 10, &mut rng).unwrap(),
        bbox: Dense::new(64, 4, &mut rng).unwrap(),
    };
    let mut opt = Sgd::new(0.1).build();
    let x = Tensor::<f32>::rand_uniform(&[128, 784], 0.0, 1.0, 2).unwrap();
    let targets = NetTargets::new(
        Labels::from_classes(&(0..128).map(|i| i % 10).collect::<Vec<_>>()),
        Tensor::rand_uniform(&[128, 4], 0.0, 1.0, 3).unwrap(),
    );
    let weights = NetLossWeights::default();
    let mut step = || {
        let tape = Tape::new();
        let outputs = net.forward_heads(tape.constant(x.clone())).unwrap();
        let loss = net.weighted_loss(&outputs, &targets, &weights).unwrap();
        let grads = tape.backward(loss.total).unwrap();
        opt.step(&mut net, &grads).unwrap();
    };
    step(); // warm-up: buffers the optimizer and losses keep
    let per_step = allocations(&mut step);
    // 41 here (a test build; the bench's release build counts 34): the
    // parameters' names and the optimizer's lists (27), matrixmultiply's
    // packing buffers (8, one per product), the loss list (2) and the
    // recorded ops that hold state (4). It was 112 before the tensor pool.
    assert!(
        per_step <= 41,
        "{per_step} allocations in a training step (41 before)"
    );

    // The weighted loss of two heads on a batch of 32, from outputs.
    let class_out = Tensor::<f32>::rand_normal(&[32, 10], 0.0, 3.0, 4).unwrap();
    let bbox_out = Tensor::<f32>::rand_normal(&[32, 4], 0.0, 1.0, 5).unwrap();
    let small = NetTargets::new(
        Labels::from_classes(&(0..32).map(|i| i % 10).collect::<Vec<_>>()),
        Tensor::rand_uniform(&[32, 4], 0.0, 1.0, 6).unwrap(),
    );
    let loss_step = || {
        let tape = Tape::new();
        let outputs = NetOutputs {
            class: tape.leaf(class_out.clone()),
            bbox: tape.leaf(bbox_out.clone()),
        };
        let loss = net.weighted_loss(&outputs, &small, &weights).unwrap();
        let _ = tape.backward(loss.total).unwrap();
    };
    loss_step();
    let per_loss = allocations(loss_step);
    // The tape's node list, its `Gradients` and every tensor buffer are
    // reused from the previous step; what is left: the two heads' recorded
    // loss ops and the weighted sum (boxed, they hold their gradients and
    // weights) and the step's list of losses with their names (2).
    assert!(
        per_loss <= 5,
        "{per_loss} allocations for the batch-32 weighted loss (the target: 5)"
    );
}
