//! The two shapes of loss kernel, and how they become per-unit values:
//!
//! - **pointwise**: a term per element, `f(pred, target) -> (value, d/dpred)`
//!   (MSE, Huber, BCE, ...). Under Keras' convention the terms of the last
//!   axis are averaged (or summed) into one value per sample; under
//!   PyTorch's each element is its own unit.
//! - **rowwise**: a value per lane along the class axis, computed from the
//!   whole lane (cross-entropy, cosine, categorical hinge, ...); each lane
//!   is a unit.
//!
//! Both write the local gradient straight into the gradient buffer in the
//! same pass that computes the values.

use ndarray::{ArcArray, ArrayD, ArrayView1, ArrayViewMut1, Axis, IxDyn, Zip};
use polyhead_tensor::parallel::{pool_is_awake, run_each};
use polyhead_tensor::{Float, Tensor, shape};
use rayon::prelude::*;

use crate::lanes::{self, TOTAL_CHUNK};
use crate::reduction::{Convention, Units};

/// How Keras turns the last axis of pointwise terms into one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Mean,
    Sum,
}

/// A pointwise kernel: every element's term and derivative. A closure
/// `f(pred, target, column) -> (term, d term / d pred)` is one (`column` is
/// the index along the last axis, for per-class options), computed element
/// by element in a loop the compiler vectorises where `f` allows; a kernel
/// whose elements need a transcendental function (BCE from logits) works
/// on the slice instead, to call the vectorised [`Float::exp_slice`] and
/// [`Float::ln_1p_slice`] on it.
pub(crate) trait Pointwise<T: Float>: Sync {
    /// Every element's term into `terms` and `derivative * a * b` into `g`
    /// (`[a, b] = factors`: the reduction's scale and coefficient, or ones).
    /// The slices have the same length and start at a row boundary (rows of
    /// `cols` elements); each result must depend on its own element only,
    /// so that any split of the rows gives the same bits.
    fn terms_and_grads(
        &self,
        p: &[T],
        t: &[T],
        g: &mut [T],
        terms: &mut [T],
        cols: usize,
        factors: [T; 2],
    );

    /// Whether the kernel is compute-bound (a transcendental function per
    /// element): it then splits its rows over threads from the rowwise
    /// kernels' sizes, not from the memory-bound pointwise ones.
    fn compute_bound(&self) -> bool {
        false
    }
}

impl<T: Float, F: Fn(T, T, usize) -> (T, T) + Sync> Pointwise<T> for F {
    /// One flat loop; the column index passed to `f` cycles through
    /// `0..cols`.
    #[inline(always)]
    fn terms_and_grads(
        &self,
        p: &[T],
        t: &[T],
        g: &mut [T],
        terms: &mut [T],
        cols: usize,
        factors: [T; 2],
    ) {
        let [a, b] = factors;
        let mut j = 0;
        for (((&pv, &tv), gv), term) in p.iter().zip(t).zip(g.iter_mut()).zip(terms.iter_mut()) {
            let (tm, d) = self(pv, tv, j);
            *term = tm;
            *gv = d * a * b;
            j += 1;
            if j == cols {
                j = 0;
            }
        }
    }
}

/// Runs a pointwise kernel `f` (see [`Pointwise`]).
///
/// With `grad_coef = Some(c)` (the reduction's coefficient, known up front
/// when every unit weighs the same) the gradient leaves already multiplied
/// by `c`, exactly as [`finish`](crate::reduction::finish) would multiply
/// it, and the units are marked so it is not done twice.
pub(crate) fn pointwise<T: Float>(
    pred: &Tensor<T>,
    target: &Tensor<T>,
    convention: Convention,
    aggregate: Aggregate,
    buffer: Option<Tensor<T>>,
    grad_coef: Option<T>,
    f: impl Pointwise<T>,
) -> Units<T> {
    let last = Axis(pred.ndim() - 1);
    // Every element of the gradient is written below: no need to zero it.
    let mut grad = reused_buffer(pred.shape(), buffer);
    // Strided inputs are copied to row-major order first (rare; the
    // gradient buffer and the values are always row-major).
    let (p, t) = (pred.view(), target.view());
    let (p, t) = (p.as_standard_layout(), t.as_standard_layout());
    let contiguous = "row-major arrays have a slice";
    let (p, t) = (
        p.as_slice().expect(contiguous),
        t.as_slice().expect(contiguous),
    );
    let cols = pred.shape()[last.index()].max(1);
    // `(d * scale) * c` is the product finish forms; c = 1 leaves it as is.
    let c = grad_coef.unwrap_or(T::ONE);
    let mut units = match convention {
        Convention::Keras => {
            let scale = match aggregate {
                Aggregate::Mean => T::ONE / T::from_usize(cols),
                Aggregate::Sum => T::ONE,
            };
            let rows = KerasRows {
                cols,
                scale,
                c,
                f: &f,
            };
            block_units(
                if f.compute_bound() {
                    ROWWISE_PARALLEL
                } else {
                    POINTWISE_PARALLEL
                },
                pred.shape(),
                p,
                t,
                grad,
                grad_coef,
                |p, t, g, v| rows.run(p, t, g, v),
            )
        }
        Convention::PyTorch => {
            // Every element is its own unit.
            let mut values = ArrayD::from_elem(pred.shape(), T::ZERO);
            f.terms_and_grads(
                p,
                t,
                grad.as_slice_mut().expect(contiguous),
                values.as_slice_mut().expect(contiguous),
                cols,
                [c, T::ONE],
            );
            Units::new(values, grad, None)
        }
    };
    if let Some(c) = grad_coef {
        if c == T::ZERO {
            // finish gives a zero coefficient a zero gradient, even where
            // the local derivative is not finite.
            units.grad.fill(T::ZERO);
        }
        units.grad_final = true;
    }
    units
}

/// Elements of a Keras pointwise block handled per pass of
/// [`KerasRows::in_chunks`]
/// (whole rows; a row longer than this is handled on its own).
const KERAS_CHUNK: usize = 1024;

/// A Keras pointwise kernel on whole rows of `cols` elements: each row's
/// terms summed from left to right (the order of a plain row loop, so the
/// same bits on every path), times `scale`, and every element's gradient
/// `f`'s derivative times `scale` times `c`.
struct KerasRows<'f, T, F> {
    cols: usize,
    scale: T,
    c: T,
    f: &'f F,
}

impl<T: Float, F: Pointwise<T>> KerasRows<'_, T, F> {
    /// Rows of `p` and `t` into gradients `g` and row values `v`.
    #[inline]
    fn run(&self, p: &[T], t: &[T], g: &mut [T], v: &mut [T]) {
        if self.cols != 4 {
            return self.in_chunks(p, t, g, v);
        }
        // Rows of four (bounding boxes): four rows per pass, summed at once.
        let whole = p.len() / 16 * 16;
        let (p_blocks, p_rest) = p.split_at(whole);
        let (t_blocks, t_rest) = t.split_at(whole);
        let (g_blocks, g_rest) = g.split_at_mut(whole);
        let (v_blocks, v_rest) = v.split_at_mut(whole / 4);
        self.of_four(p_blocks, t_blocks, g_blocks, v_blocks);
        if !p_rest.is_empty() {
            self.in_chunks(p_rest, t_rest, g_rest, v_rest);
        }
    }

    /// The general path: chunks of whole rows, first every element's term
    /// (into a stack buffer) and gradient in one flat loop the compiler
    /// vectorises, then each row's sum from left to right, times `scale`.
    #[inline]
    fn in_chunks(&self, p: &[T], t: &[T], g: &mut [T], v: &mut [T]) {
        // Locals, so that stores to `g` cannot make the compiler reload them.
        let (cols, scale, c, f) = (self.cols, self.scale, self.c, self.f);
        let rows_per_chunk = (KERAS_CHUNK / cols).max(1);
        let mut small = [T::ZERO; KERAS_CHUNK];
        let mut large = Vec::new();
        let terms: &mut [T] = if cols <= KERAS_CHUNK {
            &mut small
        } else {
            large.resize(cols, T::ZERO);
            &mut large
        };
        let n = rows_per_chunk * cols;
        for (((pc, tc), gc), vc) in p
            .chunks(n)
            .zip(t.chunks(n))
            .zip(g.chunks_mut(n))
            .zip(v.chunks_mut(rows_per_chunk))
        {
            let terms = &mut terms[..pc.len()];
            f.terms_and_grads(pc, tc, gc, terms, cols, [scale, c]);
            // Row sums. Fixed widths let the compiler sum several rows at
            // once (each row still from left to right).
            match cols {
                2 => row_sums::<T, 2>(terms, vc, scale),
                3 => row_sums::<T, 3>(terms, vc, scale),
                4 => row_sums::<T, 4>(terms, vc, scale),
                _ => {
                    // Each row from left to right (for f32 four rows at a
                    // time in SSE registers, with the same bits).
                    T::row_sums(terms, cols, vc);
                    for value in vc.iter_mut() {
                        *value *= scale;
                    }
                }
            }
        }
    }

    /// Rows of four columns, whole blocks of four rows: each block's 16
    /// terms and gradients in one loop, then the four row sums at once with
    /// [`Float::row_sums_4x4`] (each row from left to right, as in the
    /// general path), with the same bits. Measured for f32 MSE with
    /// `cargo xtask bench`: 1024x4 2.1 -> 1.2 us; 65536x4 on two threads
    /// (each half in its core's L2) 70 -> 43 us; on one core, where the 3
    /// MB stream from L3, 145 -> 118 us.
    #[inline]
    fn of_four(&self, p: &[T], t: &[T], g: &mut [T], v: &mut [T]) {
        let (scale, c, f) = (self.scale, self.c, self.f);
        let (p, _) = p.as_chunks::<16>();
        let (t, _) = t.as_chunks::<16>();
        let (g, _) = g.as_chunks_mut::<16>();
        let (v, _) = v.as_chunks_mut::<4>();
        for (((p, t), g), v) in p.iter().zip(t).zip(g.iter_mut()).zip(v.iter_mut()) {
            // Terms and derivatives into locals first: with no store to `g`
            // inside the loop that calls `f`, values `f` captures by
            // reference stay in registers and the loop vectorises wherever
            // it is inlined (storing to `g` there made the compiler reload
            // them per element and emit scalar code on the threaded path).
            let mut terms = [T::ZERO; 16];
            let mut derivs = [T::ZERO; 16];
            f.terms_and_grads(p, t, &mut derivs, &mut terms, 4, [T::ONE, T::ONE]);
            for (g, d) in g.iter_mut().zip(derivs) {
                *g = d * scale * c;
            }
            *v = T::row_sums_4x4(&terms, scale);
        }
    }
}

/// `values[r] = (sum of row r of terms, left to right from 0) * scale` for
/// rows of `N` terms.
#[inline]
fn row_sums<T: Float, const N: usize>(terms: &[T], values: &mut [T], scale: T) {
    let (rows, _) = terms.as_chunks::<N>();
    for (value, row) in values.iter_mut().zip(rows) {
        *value = row.iter().fold(T::ZERO, |sum, &x| sum + x) * scale;
    }
}

/// Runs a kernel over lanes along `axis` of the prediction and a dense
/// target of the same shape: `f(pred_lane, target_lane, grad_lane) -> value`.
pub(crate) fn rowwise<T: Float>(
    pred: &Tensor<T>,
    target: &Tensor<T>,
    axis: usize,
    buffer: Option<Tensor<T>>,
    f: impl Fn(ArrayView1<'_, T>, ArrayView1<'_, T>, ArrayViewMut1<'_, T>) -> T + Sync,
) -> Units<T> {
    let mut grad = grad_buffer(pred.shape(), buffer);
    let mut unit_shape = pred.shape().to_vec();
    unit_shape.remove(axis);
    let mut values = ArrayD::from_elem(IxDyn(&unit_shape), T::ZERO);
    let (pv, tv) = (pred.view(), target.view());
    if let (true, Some(p), Some(t), Some(g), Some(v)) = (
        axis + 1 == pred.ndim(),
        pv.as_slice(),
        tv.as_slice(),
        grad.as_slice_mut(),
        values.as_slice_mut(),
    ) {
        // Contiguous rows along the last axis: plain chunks, no lane iterator.
        let c = pred.shape()[axis];
        for_each_row(ROWWISE_PARALLEL, p, t, c, g, v, |p, t, g| {
            f(
                ArrayView1::from(p),
                ArrayView1::from(t),
                ArrayViewMut1::from(g),
            )
        });
        return Units::new(values, grad, Some(axis));
    }
    Zip::from(pred.view().lanes(Axis(axis)))
        .and(target.view().lanes(Axis(axis)))
        .and(grad.lanes_mut(Axis(axis)))
        .and(&mut values)
        .for_each(|p, t, g, v| *v = f(p, t, g));
    Units::new(values, grad, Some(axis))
}

/// Runs a kernel over lanes along `axis` of the prediction with one integer
/// label per lane: `f(pred_lane, label, grad_lane) -> value`. Labels have
/// the prediction's shape without `axis`.
pub(crate) fn rowwise_labels<T: Float>(
    pred: &Tensor<T>,
    labels: &ArrayD<i64>,
    axis: usize,
    buffer: Option<Tensor<T>>,
    f: impl Fn(ArrayView1<'_, T>, i64, ArrayViewMut1<'_, T>) -> T + Sync,
) -> Units<T> {
    let mut grad = grad_buffer(pred.shape(), buffer);
    let mut values = ArrayD::from_elem(labels.raw_dim(), T::ZERO);
    let pv = pred.view();
    if let (true, Some(p), Some(y), Some(g), Some(v)) = (
        axis + 1 == pred.ndim(),
        pv.as_slice(),
        labels.as_slice(),
        grad.as_slice_mut(),
        values.as_slice_mut(),
    ) {
        let c = pred.shape()[axis];
        for_each_row(ROWWISE_PARALLEL, p, y, c, g, v, |p, y, g| {
            f(ArrayView1::from(p), y[0], ArrayViewMut1::from(g))
        });
        return Units::new(values, grad, Some(axis));
    }
    Zip::from(pred.view().lanes(Axis(axis)))
        .and(labels)
        .and(grad.lanes_mut(Axis(axis)))
        .and(&mut values)
        .for_each(|p, &y, g, v| *v = f(p, y, g));
    Units::new(values, grad, Some(axis))
}

/// Runs `block(pred_rows, target_rows, grad_rows, values)` over blocks of
/// whole rows along the last axis, for kernels that work on many short
/// rows at once (softmax over 10 classes fills barely one SIMD register
/// per row). `target` is row-major with the same number of rows: one
/// integer label per row, or a dense row per row. `None` when the
/// prediction's class axis is not its last or it is not row-major (the
/// buffer is then left for the caller's lane path). The kernel must write
/// every gradient element: the buffer is not zeroed.
///
/// With `total_coef = Some(c)` (`c` not 0: a reducing reduction where every
/// row weighs `c`) no array of values is made: each chunk of
/// [`TOTAL_CHUNK`] rows gets its values in a stack buffer and its total
/// at once (see [`Units::total`]).
pub(crate) fn rowwise_blocks<T: Float, U: Sync>(
    pred: &Tensor<T>,
    target: Option<&[U]>,
    axis: usize,
    buffer: &mut Option<Tensor<T>>,
    total_coef: Option<T>,
    block: impl Fn(&[T], &[U], &mut [T], &mut [T]) + Sync,
) -> Option<Units<T>> {
    let pv = pred.view();
    let (p, y) = (pv.as_slice()?, target?);
    if axis + 1 != pred.ndim() {
        return None;
    }
    let grad = reused_buffer(pred.shape(), buffer.take());
    Some(block_units(
        ROWWISE_PARALLEL,
        pred.shape(),
        p,
        y,
        grad,
        total_coef,
        block,
    ))
}

/// Runs `block(pred_rows, target_rows, grad_rows, values)` over the
/// row-major rows of a prediction of shape `pred_shape` (rows along its
/// last axis) and makes the units. With `total_coef = Some(c)` (`c` not 0:
/// every row weighs `c` in a reducing reduction) the reduced total is
/// formed chunk by chunk and no array of values is kept
/// ([`with_chunk_totals`]); otherwise each row's value is kept.
fn block_units<T: Float, U: Sync>(
    parallel_min: Thresholds,
    pred_shape: &[usize],
    pred: &[T],
    target: &[U],
    mut grad: ArcArray<T, IxDyn>,
    total_coef: Option<T>,
    block: impl Fn(&[T], &[U], &mut [T], &mut [T]) + Sync,
) -> Units<T> {
    let axis = pred_shape.len() - 1;
    let cols = pred_shape[axis];
    if let Some(c) = total_coef.filter(|&c| c != T::ZERO) {
        return with_chunk_totals(parallel_min, pred, target, cols, grad, axis, c, block);
    }
    let mut values = ArrayD::from_elem(&pred_shape[..axis], T::ZERO);
    let g = grad.as_slice_mut().expect("row-major buffer");
    let v = values.as_slice_mut().expect("new array");
    for_each_block(parallel_min, pred, target, cols, g, v, block);
    Units::new(values, grad, Some(axis))
}

/// The gradient buffer: the caller's previous gradient when it has the
/// right shape, is row-major and nobody else holds it, else one from this
/// thread's tensor pool, else a new one (see [`reused_buffer`]). Always
/// zeroed: some kernels write only part of a lane (multi-margin hinge skips
/// inactive classes, an ignored label skips its whole lane).
fn grad_buffer<T: Float>(shape: &[usize], buffer: Option<Tensor<T>>) -> ArcArray<T, IxDyn> {
    let mut a = reused_buffer(shape, buffer);
    a.fill(T::ZERO);
    a
}

/// The caller's previous gradient when it has the right shape, is
/// row-major and nobody else holds it; else a buffer of that size from this
/// thread's tensor pool (a gradient of an earlier step whose tape is gone:
/// see [`polyhead_tensor::pool`]); either with stale contents the kernel
/// overwrites. Else a new zeroed array. The loss's gradient tensor is made
/// from it without a copy or an allocation.
fn reused_buffer<T: Float>(shape: &[usize], buffer: Option<Tensor<T>>) -> ArcArray<T, IxDyn> {
    if let Some(b) = buffer
        && shape::same(b.shape(), shape)
        && b.is_contiguous()
    {
        let array = b.into_shared();
        if array.is_unique() {
            return array;
        }
    }
    polyhead_tensor::pool::take_array(shape)
        .unwrap_or_else(|| ArcArray::from_elem(IxDyn(shape), T::ZERO))
}

/// Softplus, `ln(1 + e^x)`, given `e = exp(-|x|)`: exact for any `x` (no
/// overflow, no loss of small values).
#[inline]
pub(crate) fn softplus_with<T: Float>(x: T, e: T) -> T {
    x.max(T::ZERO) + e.ln_1p()
}

/// [`polyhead_tensor::sigmoid`] of `x` given `e = exp(-|x|)`: the same
/// operations (`1 / (1 + e^-x)` for `x >= 0`, `e^x / (1 + e^x)` below), so
/// the same bits, without a second exponential when the caller needs `e`
/// for something else (the pointwise losses on logits: one library call
/// fewer per element).
#[inline]
pub(crate) fn sigmoid_with<T: Float>(x: T, e: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + e)
    } else {
        e / (T::ONE + e)
    }
}

/// `(softplus(x), sigmoid(x))` with one exponential, with the bits of the
/// two computed apart ([`softplus_with`], [`sigmoid_with`]).
#[inline]
pub(crate) fn softplus_and_sigmoid<T: Float>(x: T) -> (T, T) {
    let e = (-x.abs()).exp();
    (softplus_with(x, e), sigmoid_with(x, e))
}

/// Prediction elements per parallel task (whole rows, at least one).
const TASK_ELEMENTS: usize = 1 << 14;

/// From how many prediction elements a kernel splits its rows over the
/// rayon pool: `asleep` normally, `awake` inside
/// [`with_awake_pool`](polyhead_tensor::parallel::with_awake_pool), where
/// the other threads are polling and pick work up at once (then one block
/// of rows per thread).
#[derive(Clone, Copy)]
struct Thresholds {
    asleep: usize,
    awake: usize,
}

/// Rowwise kernels (an `exp` or a division per element). Measured with
/// `cargo xtask bench` on 2 cores: asleep, CE 65536x10 (655k elements) ran
/// 1.7x faster on two threads and CE 1024x10 no faster; awake, CE 1024x10
/// (10k elements) ran 1.4x faster (13.3 -> 9.6 us).
const ROWWISE_PARALLEL: Thresholds = Thresholds {
    asleep: 1 << 16,
    awake: 1 << 12,
};

/// Keras-convention pointwise kernels, whose few flops per element make them
/// bound by the cache the data sits in: asleep, MSE 65536x4 (262k elements,
/// 3 MB, more than one core's L2) ran 1.6x faster on two threads, each half
/// fitting its own core's cache; awake, MSE 1024x4 (4k elements) ran
/// slower split (2.2 -> 3.0 us), so the awake threshold is higher than for
/// rowwise kernels.
const POINTWISE_PARALLEL: Thresholds = Thresholds {
    asleep: 1 << 17,
    awake: 1 << 15,
};

/// Runs `row(pred_row, target_row, grad_row) -> value` over contiguous rows
/// of `cols` prediction elements (and the matching target elements), in
/// parallel over blocks of rows from the sizes in `parallel_min`. Each row
/// is computed the same way whatever the thread count, so results do not
/// depend on it.
fn for_each_row<T: Float, U: Sync>(
    parallel_min: Thresholds,
    pred: &[T],
    target: &[U],
    cols: usize,
    grad: &mut [T],
    values: &mut [T],
    row: impl Fn(&[T], &[U], &mut [T]) -> T + Sync,
) {
    let cols = cols.max(1);
    let target_cols = target.len() / values.len().max(1);
    for_each_block(
        parallel_min,
        pred,
        target,
        cols,
        grad,
        values,
        |pred, target, grad, values| {
            for (((p, t), g), v) in pred
                .chunks_exact(cols)
                .zip(target.chunks_exact(target_cols.max(1)))
                .zip(grad.chunks_exact_mut(cols))
                .zip(values.iter_mut())
            {
                *v = row(p, t, g);
            }
        },
    );
}

/// Runs `block(pred_rows, target_rows, grad_rows, values)` like
/// [`for_each_block`] on row-major rows of `cols` elements, writing `grad`,
/// but keeps no values: each chunk of [`TOTAL_CHUNK`] rows gets its values
/// in a stack buffer and its total, `c` times their sum, at once, while
/// they are in L1 (see [`Units::total`]). `c` is the coefficient
/// every unit has in a reducing reduction, and not 0.
#[allow(clippy::too_many_arguments)]
fn with_chunk_totals<T: Float, U: Sync>(
    parallel_min: Thresholds,
    pred: &[T],
    target: &[U],
    cols: usize,
    mut grad: ArcArray<T, IxDyn>,
    unit_axis: usize,
    c: T,
    block: impl Fn(&[T], &[U], &mut [T], &mut [T]) + Sync,
) -> Units<T> {
    let cols = cols.max(1);
    let rows = pred.len() / cols;
    let target_cols = (target.len() / rows.max(1)).max(1);
    let (n, nt) = (TOTAL_CHUNK * cols, TOTAL_CHUNK * target_cols);
    // Chunk totals on the stack for up to 16 chunks (4096 rows).
    let chunks = rows.div_ceil(TOTAL_CHUNK);
    let mut small = [T::ZERO; 16];
    let mut large = Vec::new();
    let totals: &mut [T] = if chunks <= small.len() {
        &mut small[..chunks]
    } else {
        large.resize(chunks, T::ZERO);
        &mut large
    };
    let g = grad.as_slice_mut().expect("row-major buffer");
    for_each_block_of(
        parallel_min,
        pred,
        target,
        cols,
        g,
        totals,
        TOTAL_CHUNK,
        |p, t, g, totals| {
            let mut values = [T::ZERO; TOTAL_CHUNK];
            for (((p, t), g), total) in p
                .chunks(n)
                .zip(t.chunks(nt))
                .zip(g.chunks_mut(n))
                .zip(totals)
            {
                let v = &mut values[..p.len() / cols];
                block(p, t, g, v);
                *total = lanes::scaled_chunk_sum(v, c);
            }
        },
    );
    let mut units = Units::new(
        ArrayD::from_elem(IxDyn(&[0]), T::ZERO),
        grad,
        Some(unit_axis),
    );
    units.total = Some(lanes::add_chunk_totals(totals.iter().copied()));
    units
}

/// Runs `block(pred_rows, target_rows, grad_rows, values)` on the whole
/// input, or in parallel on blocks of whole rows (about [`TASK_ELEMENTS`]
/// prediction elements each, or one per thread when the pool is awake) from
/// the sizes in `parallel_min`. A kernel that treats each row independently
/// gives the same bits either way.
fn for_each_block<T: Float, U: Sync>(
    parallel_min: Thresholds,
    pred: &[T],
    target: &[U],
    cols: usize,
    grad: &mut [T],
    values: &mut [T],
    block: impl Fn(&[T], &[U], &mut [T], &mut [T]) + Sync,
) {
    for_each_block_of(parallel_min, pred, target, cols, grad, values, 1, block);
}

/// [`for_each_block`] where each element of `out` belongs to
/// `rows_per_out` consecutive rows (1: a value per row; [`TOTAL_CHUNK`]:
/// a chunk's total), so blocks of rows are split on multiples of it.
#[allow(clippy::too_many_arguments)]
fn for_each_block_of<T: Float, U: Sync>(
    parallel_min: Thresholds,
    pred: &[T],
    target: &[U],
    cols: usize,
    grad: &mut [T],
    out: &mut [T],
    rows_per_out: usize,
    block: impl Fn(&[T], &[U], &mut [T], &mut [T]) + Sync,
) {
    let cols = cols.max(1);
    let n_rows = pred.len() / cols;
    // Target elements per row: the labels of sparse losses have one.
    let target_cols = (target.len() / n_rows.max(1)).max(1);
    let threads = rayon::current_num_threads();
    // Blocks of whole rows, on multiples of `rows_per_out`.
    let split = |rows: usize| {
        let rows = rows.div_ceil(rows_per_out).max(1) * rows_per_out;
        (rows * cols, rows * target_cols, rows / rows_per_out)
    };
    if threads >= 2 && pool_is_awake() && pred.len() >= parallel_min.awake {
        // The other threads are polling: one block of whole rows each.
        let (n, nt, no) = split(n_rows.div_ceil(threads));
        let blocks = pred
            .chunks(n)
            .zip(target.chunks(nt))
            .zip(grad.chunks_mut(n))
            .zip(out.chunks_mut(no));
        run_each(blocks, |(((p, t), g), o)| block(p, t, g, o));
        return;
    }
    if pred.len() < parallel_min.asleep || threads < 2 {
        block(pred, target, grad, out);
        return;
    }
    let (n, nt, no) = split(TASK_ELEMENTS / cols);
    pred.par_chunks(n)
        .zip(target.par_chunks(nt))
        .zip(grad.par_chunks_mut(n))
        .zip(out.par_chunks_mut(no))
        .for_each(|(((p, t), g), o)| block(p, t, g, o));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One exponential for both gives the bits of softplus and sigmoid
    /// computed apart, each with its own exponential, in f32 and f64.
    #[test]
    fn softplus_and_sigmoid_share_an_exponential_with_the_same_bits() {
        fn check<T: Float>(xs: &[f64]) {
            for &x in xs {
                let x = T::from_f64(x);
                let (softplus, sigmoid) = softplus_and_sigmoid(x);
                let apart = x.max(T::ZERO) + (-x.abs()).exp().ln_1p();
                let same = |a: T, b: T| a.to_f64().to_bits() == b.to_f64().to_bits();
                assert!(
                    same(softplus, apart) || (softplus.is_nan() && apart.is_nan()),
                    "softplus({x:?})"
                );
                let want = polyhead_tensor::sigmoid(x);
                assert!(
                    same(sigmoid, want) || (sigmoid.is_nan() && want.is_nan()),
                    "sigmoid({x:?})"
                );
            }
        }
        let xs: Vec<f64> = [
            0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 17.0, -17.0, 88.0, -88.0, 200.0, -200.0, 800.0,
            -800.0,
        ]
        .into_iter()
        .chain((-400..=400).map(|i| i as f64 * 0.37))
        .chain([f64::INFINITY, f64::NEG_INFINITY, f64::NAN])
        .collect();
        check::<f32>(&xs);
        check::<f64>(&xs);
    }
}
