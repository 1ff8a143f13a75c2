//! Convolution over one or two spatial axes, channels last (Keras'
//! layout): the geometry of windows and padding, the im2col / col2im
//! kernels, and the recorded op whose backward sits beside its forward.
//!
//! A convolution is a product: each output position's window of the input
//! (`kh * kw * C/groups` values, gathered by [`im2col`]) times the kernel
//! reshaped to `[kh * kw * C/groups, F]`, one product per group through the
//! tensor crate's GEMM. Backward is two more products: the kernel's
//! gradient `patches^T G`, and the patches' gradient `G K^T`, which
//! [`col2im`] adds back onto the input positions they came from.
//!
//! The bias and a ReLU are applied in the op's own pass over its output
//! (backward reads the ReLU's mask from that output), so a `Conv2D(...,
//! activation = relu)` records one op, not three. The patches live in
//! buffers the layer keeps from step to step ([`Scratch`]), bounded by one
//! batch's patches. Convolutions with very few filters per group (depthwise)
//! skip im2col for direct loops, where the GEMM would be degenerate.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Slice};
use polyhead_autograd::{BackwardContext, Op, Parameter, Var};
use polyhead_tensor::{Float, Rng, Tensor, gemm};
use rayon::prelude::*;

use crate::activation::Activation;
use crate::error::{LayerError, Result};
use crate::initializer::Initializer;
use crate::module::{Module, child};

/// How a convolution or pooling window treats the input's borders (Keras'
/// `padding`).
///
/// ```
/// use polyhead_layers::Padding;
/// assert_eq!(Padding::Same.output_len(8, 3, 2, 1).unwrap(), (4, 0)); // 0 before, 1 after
/// assert_eq!(Padding::Valid.output_len(8, 3, 2, 1).unwrap(), (3, 0));
/// assert_eq!(Padding::Causal.output_len(8, 3, 1, 2).unwrap(), (8, 4));
/// assert_eq!(Padding::Explicit(1).output_len(8, 3, 2, 1).unwrap(), (4, 1)); // PyTorch's padding=1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: windows lie inside the input.
    Valid,
    /// `ceil(n / stride)` outputs; the total padding is split with the
    /// extra element at the end (TensorFlow's rule).
    Same,
    /// `(k - 1) * dilation` zeros before, none after (1-D only).
    Causal,
    /// This many zeros before and after on every spatial axis (PyTorch's
    /// integer `padding`).
    Explicit(usize),
}

impl Padding {
    /// The number of outputs and the padding before the first element for
    /// an axis of `n` elements, a window of `k`, `stride` and `dilation`;
    /// an error if a `valid` window does not fit.
    ///
    /// ```
    /// let (out, before) = polyhead_layers::Padding::Same.output_len(7, 4, 2, 1).unwrap();
    /// assert_eq!((out, before), (4, 1)); // 1 zero before, 2 after
    /// ```
    pub fn output_len(
        self,
        n: usize,
        k: usize,
        stride: usize,
        dilation: usize,
    ) -> std::result::Result<(usize, usize), String> {
        if k == 0 || stride == 0 || dilation == 0 {
            return Err(format!(
                "kernel size, stride and dilation must be at least 1 (got {k}, {stride}, {dilation})"
            ));
        }
        let span = (k - 1) * dilation + 1;
        match self {
            Padding::Valid => {
                if span > n {
                    Err(format!(
                        "a window of {span} (kernel {k}, dilation {dilation}) does not fit an axis of {n} with padding `valid`"
                    ))
                } else {
                    Ok(((n - span) / stride + 1, 0))
                }
            }
            Padding::Same => {
                let out = n.div_ceil(stride);
                let total = ((out.max(1) - 1) * stride + span).saturating_sub(n);
                Ok((out, total / 2))
            }
            Padding::Explicit(p) => {
                if span > n + 2 * p {
                    Err(format!(
                        "a window of {span} (kernel {k}, dilation {dilation}) does not fit an axis of {n} padded by {p} on each side"
                    ))
                } else {
                    Ok(((n + 2 * p - span) / stride + 1, p))
                }
            }
            Padding::Causal => {
                // n + (span - 1) padded values hold (n - 1) / stride + 1
                // windows of span; an empty axis holds none.
                let before = span - 1;
                Ok((if n == 0 { 0 } else { (n - 1) / stride + 1 }, before))
            }
        }
    }
}

/// One spatial axis of a convolution: input length, kernel, stride,
/// dilation, padding before, output length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Axis {
    pub n: usize,
    pub k: usize,
    pub stride: usize,
    pub dilation: usize,
    pub before: usize,
    pub out: usize,
}

impl Axis {
    pub(crate) fn new(
        n: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
        layer: &'static str,
    ) -> Result<Self> {
        let (out, before) = padding
            .output_len(n, k, stride, dilation)
            .map_err(|message| LayerError::Shape { layer, message })?;
        Ok(Axis {
            n,
            k,
            stride,
            dilation,
            before,
            out,
        })
    }

    /// The input index read by output `o` at kernel tap `t`, if inside.
    #[inline(always)]
    pub(crate) fn source(&self, o: usize, t: usize) -> Option<usize> {
        (o * self.stride + t * self.dilation)
            .checked_sub(self.before)
            .filter(|&i| i < self.n)
    }
}

/// The shape of a 2-D convolution over `[B, H, W, C]` (1-D is `H = 1`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub h: Axis,
    pub w: Axis,
    pub channels: usize,
    pub groups: usize,
    pub filters: usize,
}

impl Geometry {
    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }
    fn patch_len(&self) -> usize {
        self.h.k * self.w.k * self.group_channels()
    }
    fn rows(&self) -> usize {
        self.batch * self.h.out * self.w.out
    }
}

/// Scratch buffers that a layer's convolutions reuse from step to step
/// (the im2col patches, the patches' gradient, the gradient through the
/// fused activation), so that a training step does not ask the allocator
/// for fresh pages each time. It keeps at most four buffers: a chunk's
/// patches and their gradient per thread, and the batch's gradient through
/// the ReLU.
#[derive(Default)]
pub(crate) struct Scratch<T> {
    free: std::sync::Mutex<Vec<Vec<T>>>,
}

impl<T: Float> Scratch<T> {
    /// A buffer of `len` elements with unspecified contents (the callers
    /// overwrite every element): the smallest kept buffer that holds
    /// `len`, else the largest, grown.
    fn take(&self, len: usize) -> Vec<T> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let fits = (0..free.len())
            .filter(|&i| free[i].capacity() >= len)
            .min_by_key(|&i| free[i].capacity());
        let largest = (0..free.len()).max_by_key(|&i| free[i].capacity());
        let mut buffer = fits
            .or(largest)
            .map(|i| free.swap_remove(i))
            .unwrap_or_default();
        drop(free);
        buffer.resize(len, T::ZERO);
        buffer
    }

    /// Returns a buffer for the next step.
    fn give(&self, buffer: Vec<T>) {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if free.len() < 4 {
            free.push(buffer);
        }
    }
}

impl<T> std::fmt::Debug for Scratch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// The output positions `[lo, hi)` of an axis whose tap `t` reads a real
/// input element (`o * stride + t * dilation - before` in `0..n`).
fn tap_range(a: &Axis, t: usize) -> (usize, usize) {
    let offset = t * a.dilation;
    // o * stride >= before - offset, and o * stride + offset - before < n.
    let lo = a.before.saturating_sub(offset).div_ceil(a.stride);
    let hi = if a.n + a.before > offset {
        (a.n + a.before - offset).div_ceil(a.stride).min(a.out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Copies `src` into `dst` (same length): one element assigned directly,
/// so that a one-channel patch is not a call to `memcpy` per value.
#[inline(always)]
fn copy_channels<T: Float>(dst: &mut [T], src: &[T]) {
    if dst.len() == 1 {
        dst[0] = src[0];
    } else {
        dst.copy_from_slice(src);
    }
}

/// The windows of group `g` as rows of `patches` (`[B * Ho * Wo, kh * kw *
/// C/groups]`, every element written), columns in kernel order (tap row,
/// tap column, channel); padding reads 0. It walks one output row and one
/// tap at a time, over the output columns whose tap is inside the input.
fn im2col_into<T: Float>(x: &[T], geo: &Geometry, g: usize, patches: &mut [T]) {
    let (cg, c, len) = (geo.group_channels(), geo.channels, geo.patch_len());
    debug_assert_eq!(patches.len(), geo.rows() * len);
    let (wo, kw) = (geo.w.out, geo.w.k);
    if wo * len == 0 {
        return; // no patches, or empty ones
    }
    let ranges: Vec<(usize, usize)> = (0..kw).map(|tw| tap_range(&geo.w, tw)).collect();
    for (bo, out_row) in patches.chunks_exact_mut(wo * len).enumerate() {
        let (b, oh) = (bo / geo.h.out, bo % geo.h.out);
        for th in 0..geo.h.k {
            let ih = geo.h.source(oh, th);
            for (tw, &(lo, hi)) in ranges.iter().enumerate() {
                let at = (th * kw + tw) * cg;
                let Some(ih) = ih else {
                    for ow in 0..wo {
                        out_row[ow * len + at..ow * len + at + cg].fill(T::ZERO);
                    }
                    continue;
                };
                for ow in (0..lo).chain(hi..wo) {
                    out_row[ow * len + at..ow * len + at + cg].fill(T::ZERO);
                }
                let row_base = (b * geo.h.n + ih) * geo.w.n;
                for ow in lo..hi {
                    let iw = ow * geo.w.stride + tw * geo.w.dilation - geo.w.before;
                    let src = (row_base + iw) * c + g * cg;
                    copy_channels(
                        &mut out_row[ow * len + at..ow * len + at + cg],
                        &x[src..src + cg],
                    );
                }
            }
        }
    }
}

/// [`im2col_into`] a new array.
fn im2col<T: Float>(x: &[T], geo: &Geometry, g: usize) -> Array2<T> {
    let mut patches = Array2::from_elem((geo.rows(), geo.patch_len()), T::ZERO);
    im2col_into(
        x,
        geo,
        g,
        patches.as_slice_mut().expect("a new array is contiguous"),
    );
    patches
}

/// Calls `f(row, tap, input offset)` for every output position (`row`)
/// and every kernel tap (`tap = th * kw + tw`) that reads a real input
/// position, whose group-`g` channels start at `input offset`.
#[inline(always)]
fn each_tap(geo: &Geometry, g: usize, mut f: impl FnMut(usize, usize, usize)) {
    let (cg, c) = (geo.group_channels(), geo.channels);
    let mut row = 0;
    for b in 0..geo.batch {
        for oh in 0..geo.h.out {
            for ow in 0..geo.w.out {
                for th in 0..geo.h.k {
                    let Some(ih) = geo.h.source(oh, th) else {
                        continue;
                    };
                    for tw in 0..geo.w.k {
                        let Some(iw) = geo.w.source(ow, tw) else {
                            continue;
                        };
                        f(
                            row,
                            th * geo.w.k + tw,
                            ((b * geo.h.n + ih) * geo.w.n + iw) * c + g * cg,
                        );
                    }
                }
                row += 1;
            }
        }
    }
}

/// The mirror of [`im2col`]: adds each patch value back onto the input
/// position it was read from (positions read by several windows sum).
fn col2im<T: Float>(patches: ArrayView2<'_, T>, geo: &Geometry, g: usize, dx: &mut [T]) {
    let cg = geo.group_channels();
    let patches = patches.as_standard_layout();
    let p = patches.as_slice().expect("standard layout");
    let len = geo.patch_len();
    each_tap(geo, g, |row, tap, src| {
        let from = &p[row * len + tap * cg..row * len + (tap + 1) * cg];
        for (d, &v) in dx[src..src + cg].iter_mut().zip(from) {
            *d += v;
        }
    });
}

/// The direct convolution of group `g` for short patches (where a GEMM
/// would spend its time packing): `y[row, group filters] += x * kernel
/// row` for every tap, the filters innermost.
fn direct_forward<T: Float>(x: &[T], k: &[T], geo: &Geometry, g: usize, y: &mut [T]) {
    let (cg, f) = (geo.group_channels(), geo.filters);
    let fg = f / geo.groups;
    each_tap(geo, g, |row, tap, src| {
        let out = &mut y[row * f + g * fg..row * f + (g + 1) * fg];
        for ci in 0..cg {
            let xv = x[src + ci];
            let krow = &k[(tap * cg + ci) * f + g * fg..(tap * cg + ci) * f + (g + 1) * fg];
            for (o, &kv) in out.iter_mut().zip(krow) {
                *o += xv * kv;
            }
        }
    });
}

/// The direct convolution's kernel gradient: `dk[tap row, group filters]
/// += x * gy[row, group filters]`.
fn direct_kernel_grad<T: Float>(x: &[T], gy: &[T], geo: &Geometry, g: usize, dk: &mut [T]) {
    let (cg, f) = (geo.group_channels(), geo.filters);
    let fg = f / geo.groups;
    each_tap(geo, g, |row, tap, src| {
        let grad = &gy[row * f + g * fg..row * f + (g + 1) * fg];
        for ci in 0..cg {
            let xv = x[src + ci];
            let krow = &mut dk[(tap * cg + ci) * f + g * fg..(tap * cg + ci) * f + (g + 1) * fg];
            for (d, &gv) in krow.iter_mut().zip(grad) {
                *d += xv * gv;
            }
        }
    });
}

/// The direct convolution's input gradient: `dx += gy[row, group filters]
/// . kernel row` for every tap.
fn direct_input_grad<T: Float>(gy: &[T], k: &[T], geo: &Geometry, g: usize, dx: &mut [T]) {
    let (cg, f) = (geo.group_channels(), geo.filters);
    let fg = f / geo.groups;
    each_tap(geo, g, |row, tap, src| {
        let grad = &gy[row * f + g * fg..row * f + (g + 1) * fg];
        for ci in 0..cg {
            let krow = &k[(tap * cg + ci) * f + g * fg..(tap * cg + ci) * f + (g + 1) * fg];
            let mut acc = T::ZERO;
            for (&gv, &kv) in grad.iter().zip(krow) {
                acc += gv * kv;
            }
            dx[src + ci] += acc;
        }
    });
}

/// The columns of filter group `g` (of `fg` filters each).
fn group(g: usize, fg: usize) -> Slice {
    Slice::from(g * fg..(g + 1) * fg)
}

/// The direct kernels serve convolutions whose GEMM would be degenerate:
/// fewer than this many filters per group (a depthwise convolution has
/// `depth_multiplier`), over short patches. Everything else goes through
/// im2col and the GEMM, whose runtime-selected SIMD kernels beat the
/// portable direct loops even for a 3x3 kernel over one channel (measured
/// on the bench's `cnn` step: 5.5 ms with the GEMM, 6.0 ms direct).
const DIRECT_MAX_FILTERS_PER_GROUP: usize = 8;
const DIRECT_MAX_PATCH_LEN: usize = 32;

/// The im2col path works on chunks of samples whose patches take about
/// this many bytes (a core's L2 cache), in parallel over the rayon pool.
const CHUNK_PATCH_BYTES: usize = 1 << 20;

/// The recorded convolution: inputs `x [B, H, W, C]`, `kernel [kh, kw,
/// C/groups, F]` and, when `bias`, the bias `[F]`; output `[B, Ho, Wo, F]`,
/// with the bias added and, when `relu`, the ReLU applied in the same pass
/// over the output (other activations are recorded after it).
pub(crate) struct ConvOp<T> {
    pub geo: Geometry,
    /// Inputs hold a bias, added to every output position.
    pub bias: bool,
    /// ReLU applied to the output (`max(y, 0)`, NaN kept, as
    /// [`Var::relu`]); backward passes the gradient where `y > 0`.
    pub relu: bool,
    /// The layer's reusable buffers.
    pub scratch: std::sync::Arc<Scratch<T>>,
}

impl<T: Float> ConvOp<T> {
    fn kernel_matrix<'a>(&self, kernel: &'a [T]) -> ArrayView2<'a, T> {
        let k = self.geo.h.k * self.geo.w.k * self.geo.group_channels();
        ArrayView2::from_shape((k, self.geo.filters), kernel)
            .expect("kernel shape checked by the layer")
    }

    fn contiguous(t: &Tensor<T>) -> std::borrow::Cow<'_, [T]> {
        match t.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(t.to_vec()),
        }
    }

    fn direct(&self) -> bool {
        self.geo.filters / self.geo.groups < DIRECT_MAX_FILTERS_PER_GROUP
            && self.geo.patch_len() < DIRECT_MAX_PATCH_LEN
    }
}

impl<T: Float> ConvOp<T> {
    /// Samples per chunk of the im2col path: about [`CHUNK_PATCH_BYTES`]
    /// of patches, so that a chunk's patches stay in cache between im2col
    /// and the GEMM. It depends on the geometry only, never on the thread
    /// count, so results do not either.
    fn chunk_samples(&self) -> usize {
        let geo = &self.geo;
        let row_bytes = geo.patch_len() * std::mem::size_of::<T>();
        let per_sample = (geo.h.out * geo.w.out * row_bytes).max(1);
        (CHUNK_PATCH_BYTES / per_sample).clamp(1, geo.batch.max(1))
    }

    /// The geometry of `samples` samples of this one.
    fn of_samples(&self, samples: usize) -> Geometry {
        Geometry {
            batch: samples,
            ..self.geo
        }
    }

    /// The im2col forward of one chunk: `ys` its output rows, `xs` its
    /// input samples.
    fn forward_chunk(&self, xs: &[T], kernel: &[T], ys: &mut [T]) -> polyhead_tensor::Result<()> {
        let geo = self.of_samples(ys.len() / (self.geo.h.out * self.geo.w.out * self.geo.filters));
        let fg = geo.filters / geo.groups;
        let k = self.kernel_matrix(kernel);
        let mut patches = self.scratch.take(geo.rows() * geo.patch_len());
        let mut ym =
            ArrayViewMut2::from_shape((geo.rows(), geo.filters), ys).expect("the output's shape");
        for g in 0..geo.groups {
            im2col_into(xs, &geo, g, &mut patches);
            let pm = ArrayView2::from_shape((geo.rows(), geo.patch_len()), &patches)
                .expect("the patches' shape");
            gemm(
                T::ONE,
                pm,
                k.slice_axis(ndarray::Axis(1), group(g, fg)),
                T::ZERO,
                ym.slice_axis_mut(ndarray::Axis(1), group(g, fg)),
            )?;
        }
        self.scratch.give(patches);
        Ok(())
    }

    /// Adds the bias and applies the ReLU to output rows.
    fn epilogue(&self, ys: &mut [T], bias: Option<&[T]>) {
        for row in ys.chunks_exact_mut(self.geo.filters) {
            if let Some(b) = bias {
                for (v, &b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
            if self.relu {
                for v in row.iter_mut() {
                    // As `Var::relu`: positive or NaN kept, else 0.
                    *v = if *v > T::ZERO || v.is_nan() {
                        *v
                    } else {
                        T::ZERO
                    };
                }
            }
        }
    }
}

impl<T: Float> Op<T> for ConvOp<T> {
    fn name(&self) -> &'static str {
        "conv"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> polyhead_autograd::Result<Tensor<T>> {
        let geo = self.geo;
        let x = Self::contiguous(inputs[0]);
        let kernel = Self::contiguous(inputs[1]);
        let bias = self.bias.then(|| Self::contiguous(inputs[2]));
        let mut y = vec![T::ZERO; geo.rows() * geo.filters];
        let out_per = geo.h.out * geo.w.out * geo.filters;
        let in_per = geo.h.n * geo.w.n * geo.channels;
        if self.direct() {
            for g in 0..geo.groups {
                direct_forward(&x, &kernel, &geo, g, &mut y);
            }
            self.epilogue(&mut y, bias.as_deref());
        } else if out_per > 0 {
            // Chunks of samples in parallel, each im2col, GEMM and
            // epilogue while its rows are in cache.
            let chunk = self.chunk_samples();
            let this = &*self;
            y.par_chunks_mut(chunk * out_per)
                .enumerate()
                .try_for_each(|(c, ys)| {
                    let b0 = c * chunk;
                    let xs = &x[b0 * in_per..(b0 + ys.len() / out_per) * in_per];
                    this.forward_chunk(xs, &kernel, ys)?;
                    this.epilogue(ys, bias.as_deref());
                    Ok::<(), polyhead_tensor::TensorError>(())
                })?;
        }
        Ok(Tensor::from_vec(
            y,
            &[geo.batch, geo.h.out, geo.w.out, geo.filters],
        )?)
    }

    fn backward(
        &self,
        ctx: &BackwardContext<'_, T>,
    ) -> polyhead_autograd::Result<Vec<Option<Tensor<T>>>> {
        let geo = self.geo;
        let fg = geo.filters / geo.groups;
        let mut grad = Self::contiguous(ctx.grad_output);
        if self.relu {
            // The gradient through the ReLU, from the output: y > 0 exactly
            // where the pre-activation was (multiplied, not selected, as
            // `Var::relu`'s backward does, so an infinite gradient at a
            // clipped position still gives NaN).
            let y = Self::contiguous(ctx.output);
            let mut through = self.scratch.take(grad.len());
            through
                .par_chunks_mut(4096)
                .zip(grad.par_chunks(4096).zip(y.par_chunks(4096)))
                .for_each(|(t, (g, y))| {
                    for ((t, &g), &y) in t.iter_mut().zip(g).zip(y) {
                        *t = g * if y > T::ZERO { T::ONE } else { T::ZERO };
                    }
                });
            grad = std::borrow::Cow::Owned(through);
        }
        let x = Self::contiguous(ctx.inputs[0]);
        let kernel = Self::contiguous(ctx.inputs[1]);
        let k = self.kernel_matrix(&kernel);
        let out_per = geo.h.out * geo.w.out * geo.filters;
        let in_per = geo.h.n * geo.w.n * geo.channels;
        let chunk = self.chunk_samples();
        let dx = ctx.grad_for(0, || {
            let mut dx = vec![T::ZERO; x.len()];
            if self.direct() {
                for g in 0..geo.groups {
                    direct_input_grad(&grad, &kernel, &geo, g, &mut dx);
                }
            } else if in_per > 0 && out_per > 0 {
                // Each chunk of samples: the patches' gradient G K^T, added
                // back onto the chunk's own input positions.
                dx.par_chunks_mut(chunk * in_per)
                    .enumerate()
                    .try_for_each(|(c, dxs)| {
                        let samples = dxs.len() / in_per;
                        let sub = self.of_samples(samples);
                        let b0 = c * chunk;
                        let gy = ArrayView2::from_shape(
                            (sub.rows(), geo.filters),
                            &grad[b0 * out_per..(b0 + samples) * out_per],
                        )
                        .expect("the output's shape");
                        let mut dpatches = self.scratch.take(sub.rows() * sub.patch_len());
                        for g in 0..geo.groups {
                            let mut dp = ArrayViewMut2::from_shape(
                                (sub.rows(), sub.patch_len()),
                                &mut dpatches,
                            )
                            .expect("the patches' shape");
                            gemm(
                                T::ONE,
                                gy.slice_axis(ndarray::Axis(1), group(g, fg)),
                                k.slice_axis(ndarray::Axis(1), group(g, fg)).t(),
                                T::ZERO,
                                dp.view_mut(),
                            )?;
                            col2im(dp.view(), &sub, g, dxs);
                        }
                        self.scratch.give(dpatches);
                        Ok::<(), polyhead_tensor::TensorError>(())
                    })?;
            }
            Ok(Tensor::from_vec(dx, ctx.inputs[0].shape())?)
        })?;
        let dk = ctx.grad_for(1, || {
            let kernel_len = geo.patch_len() * geo.filters;
            if self.direct() {
                let mut dk = vec![T::ZERO; kernel_len];
                for g in 0..geo.groups {
                    direct_kernel_grad(&x, &grad, &geo, g, &mut dk);
                }
                return Ok(Tensor::from_vec(dk, ctx.inputs[1].shape())?);
            }
            // Each chunk's patches^T G, then the chunks' sum in chunk order
            // (the same sum on any number of threads).
            let chunks = geo.batch.div_ceil(chunk);
            let partials = (0..chunks)
                .into_par_iter()
                .map(|c| {
                    let b0 = c * chunk;
                    let samples = chunk.min(geo.batch - b0);
                    let sub = self.of_samples(samples);
                    let gy = ArrayView2::from_shape(
                        (sub.rows(), geo.filters),
                        &grad[b0 * out_per..(b0 + samples) * out_per],
                    )
                    .expect("the output's shape");
                    let xs = &x[b0 * in_per..(b0 + samples) * in_per];
                    let mut dk = vec![T::ZERO; kernel_len];
                    let mut dkm =
                        ArrayViewMut2::from_shape((sub.patch_len(), geo.filters), &mut dk)
                            .expect("the kernel's shape");
                    let mut patches = self.scratch.take(sub.rows() * sub.patch_len());
                    for g in 0..geo.groups {
                        im2col_into(xs, &sub, g, &mut patches);
                        let pm = ArrayView2::from_shape((sub.rows(), sub.patch_len()), &patches)
                            .expect("the patches' shape");
                        gemm(
                            T::ONE,
                            pm.t(),
                            gy.slice_axis(ndarray::Axis(1), group(g, fg)),
                            T::ZERO,
                            dkm.slice_axis_mut(ndarray::Axis(1), group(g, fg)),
                        )?;
                    }
                    self.scratch.give(patches);
                    Ok::<Vec<T>, polyhead_tensor::TensorError>(dk)
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let mut dk = vec![T::ZERO; kernel_len];
            for partial in &partials {
                for (d, &p) in dk.iter_mut().zip(partial) {
                    *d += p;
                }
            }
            Ok(Tensor::from_vec(dk, ctx.inputs[1].shape())?)
        })?;
        let mut grads = vec![dx, dk];
        if self.bias {
            grads.push(ctx.grad_for(2, || {
                // Column sums in blocks of rows, then the blocks' sums (a
                // shorter chain of additions than one running sum).
                let mut db = vec![T::ZERO; geo.filters];
                let mut block = vec![T::ZERO; geo.filters];
                for rows in grad.chunks(256 * geo.filters) {
                    block.fill(T::ZERO);
                    for row in rows.chunks_exact(geo.filters) {
                        for (b, &g) in block.iter_mut().zip(row) {
                            *b += g;
                        }
                    }
                    for (d, &b) in db.iter_mut().zip(&block) {
                        *d += b;
                    }
                }
                Ok(Tensor::from_vec(db, &[geo.filters])?)
            })?);
        }
        if let std::borrow::Cow::Owned(through) = grad
            && self.relu
        {
            self.scratch.give(through);
        }
        Ok(grads)
    }
}

/// The parts Conv1D and Conv2D share: parameters, options, the recorded
/// op, bias and activation.
#[derive(Debug, Clone)]
struct ConvCore<T: Float> {
    kernel: Parameter<T>,
    bias: Option<Parameter<T>>,
    strides: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
    groups: usize,
    activation: Activation,
    layer: &'static str,
    in_channels: usize,
    filters: usize,
    /// Patch buffers reused from step to step (shared by clones).
    scratch: std::sync::Arc<Scratch<T>>,
}

impl<T: Float> ConvCore<T> {
    /// The kernel parameter has Keras' shape (`[k, C/groups, F]` in 1-D,
    /// `[kh, kw, C/groups, F]` in 2-D).
    fn new(
        layer: &'static str,
        spec: &ConvSpec,
        kernel_shape: &[usize],
        rng: &mut Rng,
    ) -> Result<Self> {
        let invalid = |message: String| LayerError::Invalid {
            what: layer,
            message,
        };
        if spec.in_channels == 0 || spec.filters == 0 {
            return Err(invalid(format!(
                "input channels and filters must be at least 1 (got {} and {})",
                spec.in_channels, spec.filters
            )));
        }
        if spec.groups == 0
            || !spec.in_channels.is_multiple_of(spec.groups)
            || !spec.filters.is_multiple_of(spec.groups)
        {
            return Err(invalid(format!(
                "groups = {} must divide the input channels ({}) and the filters ({})",
                spec.groups, spec.in_channels, spec.filters
            )));
        }
        for (what, values) in [
            ("kernel size", spec.kernel),
            ("strides", spec.strides),
            ("dilation_rate", spec.dilation),
        ] {
            if values.contains(&0) {
                return Err(invalid(format!(
                    "{what} must be at least 1, got {values:?}"
                )));
            }
        }
        if spec.padding == Padding::Causal && spec.kernel[0] != 1 {
            return Err(invalid(
                "padding `causal` is for 1-D convolutions only".into(),
            ));
        }
        let taps = spec.kernel[0] * spec.kernel[1];
        let fan_in = taps * spec.in_channels / spec.groups;
        let fan_out = taps * spec.filters / spec.groups;
        let kernel = Initializer::GlorotUniform.init::<T>(kernel_shape, fan_in, fan_out, rng)?;
        Ok(ConvCore {
            kernel: Parameter::new(kernel),
            bias: if spec.use_bias {
                Some(Parameter::new(Tensor::zeros(&[spec.filters])?))
            } else {
                None
            },
            strides: spec.strides,
            dilation: spec.dilation,
            padding: spec.padding,
            groups: spec.groups,
            activation: spec.activation,
            layer,
            in_channels: spec.in_channels,
            filters: spec.filters,
            scratch: Default::default(),
        })
    }

    fn filters(&self) -> usize {
        self.filters
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// `x4` is `[B, H, W, C]`; `kernel_hw` the kernel's spatial size.
    fn forward<'t>(
        &self,
        x4: Var<'t, T>,
        kernel_hw: [usize; 2],
        one_d: bool,
    ) -> Result<Var<'t, T>> {
        let shape = x4.shape();
        let (batch, h, w, c) = (shape[0], shape[1], shape[2], shape[3]);
        if c != self.in_channels() {
            return Err(LayerError::Shape {
                layer: self.layer,
                message: format!(
                    "input has {c} channels (last axis of {shape:?}), the layer expects {}",
                    self.in_channels()
                ),
            });
        }
        let geo = Geometry {
            batch,
            h: Axis::new(
                h,
                kernel_hw[0],
                self.strides[0],
                self.dilation[0],
                // A 1-D convolution's height axis (1, kernel 1) is never padded.
                if one_d { Padding::Valid } else { self.padding },
                self.layer,
            )?,
            w: Axis::new(
                w,
                kernel_hw[1],
                self.strides[1],
                self.dilation[1],
                self.padding,
                self.layer,
            )?,
            channels: c,
            groups: self.groups,
            filters: self.filters(),
        };
        let tape = x4.tape();
        // Bias and ReLU are fused into the op's output pass; any other
        // activation is recorded after it.
        let relu = self.activation == Activation::Relu;
        let op = ConvOp {
            geo,
            bias: self.bias.is_some(),
            relu,
            scratch: self.scratch.clone(),
        };
        let kernel = tape.param(&self.kernel);
        let y = match &self.bias {
            Some(b) => tape.apply(op, &[x4, kernel, tape.param(b)])?,
            None => tape.apply(op, &[x4, kernel])?,
        };
        if relu {
            Ok(y)
        } else {
            self.activation.apply(y)
        }
    }

    /// The convolution as an ONNX `Conv` between transposes to and from
    /// channels first: `one_d` for `[B, L, C]` input, `depthwise` with the
    /// depth multiplier for a depthwise kernel `[kh, kw, C, M]`.
    fn export(
        &self,
        g: &mut crate::export::Graph,
        name: &str,
        x: &str,
        one_d: bool,
        depthwise: Option<usize>,
    ) -> Result<String> {
        use crate::export::Attribute;
        let k = self.kernel.value();
        let ks = k.shape().to_vec();
        // ONNX's weight [out, in/groups, spatial...].
        let (weight, spatial, group) = if one_d {
            // [k, C/g, F] -> [F, C/g, k]
            (
                k.permute(&[2, 1, 0])?.to_contiguous(),
                vec![ks[0]],
                self.groups,
            )
        } else if let Some(m) = depthwise {
            // [kh, kw, C, M] -> [C, M, kh, kw] -> [C*M, 1, kh, kw]
            let c = ks[2];
            (
                k.permute(&[2, 3, 0, 1])?
                    .to_contiguous()
                    .reshape(&[c * m, 1, ks[0], ks[1]])?,
                vec![ks[0], ks[1]],
                c,
            )
        } else {
            // [kh, kw, C/g, F] -> [F, C/g, kh, kw]
            (
                k.permute(&[3, 2, 0, 1])?.to_contiguous(),
                vec![ks[0], ks[1]],
                self.groups,
            )
        };
        let axes = |v: [usize; 2]| -> Vec<i64> {
            if one_d {
                vec![v[1] as i64]
            } else {
                vec![v[0] as i64, v[1] as i64]
            }
        };
        let rank = spatial.len();
        let mut attributes = vec![
            (
                "kernel_shape",
                Attribute::Ints(spatial.iter().map(|&d| d as i64).collect()),
            ),
            ("strides", Attribute::Ints(axes(self.strides))),
            ("dilations", Attribute::Ints(axes(self.dilation))),
            ("group", Attribute::Int(group as i64)),
        ];
        attributes.push(
            crate::export::padding_attributes(self.padding, rank).unwrap_or_else(|| {
                // Causal: (k - 1) * dilation zeros before the last axis.
                let mut pads = vec![0; 2 * rank];
                pads[rank - 1] = ((spatial[rank - 1] - 1) * self.dilation[1]) as i64;
                ("pads", Attribute::Ints(pads))
            }),
        );
        let (to_first, to_last): (&[i64], &[i64]) = if one_d {
            (&[0, 2, 1], &[0, 2, 1])
        } else {
            (&[0, 3, 1, 2], &[0, 2, 3, 1])
        };
        let first = g.transpose(name, x, to_first);
        let mut inputs = vec![first, g.constant(&format!("{name}.kernel"), &weight)];
        if let Some(b) = &self.bias {
            inputs.push(g.constant(&format!("{name}.bias"), b.value()));
        }
        let y = g.op(name, "Conv", &inputs, attributes);
        let last = g.transpose(name, &y, to_last);
        Ok(self.activation.export(g, name, &last))
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        f(child(prefix, "kernel"), &self.kernel);
        if let Some(b) = &self.bias {
            f(child(prefix, "bias"), b);
        }
    }

    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        f(child(prefix, "kernel"), &mut self.kernel);
        if let Some(b) = &mut self.bias {
            f(child(prefix, "bias"), b);
        }
    }
}

/// A convolution's options, as Keras names them (shared by the builders).
#[derive(Debug, Clone, Copy)]
struct ConvSpec {
    in_channels: usize,
    filters: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
    groups: usize,
    use_bias: bool,
    activation: Activation,
}

impl ConvSpec {
    fn new(in_channels: usize, filters: usize, kernel: [usize; 2]) -> Self {
        ConvSpec {
            in_channels,
            filters,
            kernel,
            strides: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
            groups: 1,
            use_bias: true,
            activation: Activation::Linear,
        }
    }
}

/// The `Module` parameter visitors of a layer whose parameters live in its
/// `core: ConvCore` (every convolution layer).
macro_rules! parameters_of_core {
    () => {
        fn visit_parameters<'a>(
            &'a self,
            prefix: &str,
            f: &mut dyn FnMut(String, &'a Parameter<T>),
        ) {
            self.core.visit(prefix, f);
        }
        fn visit_parameters_mut<'a>(
            &'a mut self,
            prefix: &str,
            f: &mut dyn FnMut(String, &'a mut Parameter<T>),
        ) {
            self.core.visit_mut(prefix, f);
        }
    };
}

/// Keras' `Conv2D` on channels-last input `[B, H, W, C]`: kernel `[kh, kw,
/// C/groups, filters]`, bias `[filters]`, output `[B, Ho, Wo, filters]`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Activation, Conv2D, Module, Padding};
/// use polyhead_tensor::{Rng, Tensor};
/// let conv = Conv2D::<f32>::builder(1, 16, [3, 3])
///     .padding(Padding::Same)
///     .activation(Activation::Relu)
///     .build(&mut Rng::new(0))?;
/// let tape = Tape::new();
/// let y = conv.forward(tape.constant(Tensor::ones(&[2, 28, 28, 1])?))?;
/// assert_eq!(y.shape(), vec![2, 28, 28, 16]);
/// // Mistakes are errors naming the layer and the rule:
/// let err = conv.forward(tape.constant(Tensor::ones(&[2, 28, 28, 3])?)).unwrap_err();
/// assert_eq!(err.to_string(), "conv2d: input has 3 channels (last axis of [2, 28, 28, 3]), the layer expects 1");
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv2D<T: Float = f32> {
    core: ConvCore<T>,
}

/// Builds a [`Conv2D`] (see [`Conv2D::builder`]).
#[derive(Debug, Clone, Copy)]
pub struct Conv2DBuilder<T: Float = f32> {
    spec: ConvSpec,
    element: std::marker::PhantomData<T>,
}

impl<T: Float> Conv2D<T> {
    /// A builder for a convolution from `in_channels` to `filters` channels
    /// with a `kernel` of `[kh, kw]`: stride 1, no dilation, `valid`
    /// padding, one group, a bias, no activation (Keras' defaults).
    ///
    /// ```
    /// let b = polyhead_layers::Conv2D::<f32>::builder(3, 8, [3, 3]).strides([2, 2]).groups(1);
    /// # let _ = b;
    /// ```
    pub fn builder(in_channels: usize, filters: usize, kernel: [usize; 2]) -> Conv2DBuilder<T> {
        Conv2DBuilder {
            element: std::marker::PhantomData,
            spec: ConvSpec::new(in_channels, filters, kernel),
        }
    }

    /// The kernel `[kh, kw, C/groups, filters]`.
    ///
    /// ```
    /// let c = polyhead_layers::Conv2D::<f32>::builder(4, 6, [3, 2]).groups(2).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(c.kernel().value().shape(), &[3, 2, 2, 6]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn kernel(&self) -> &Parameter<T> {
        &self.core.kernel
    }

    /// The bias `[filters]`, if the layer has one.
    ///
    /// ```
    /// let c = polyhead_layers::Conv2D::<f32>::builder(1, 2, [3, 3]).use_bias(false).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert!(c.bias().is_none());
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn bias(&self) -> Option<&Parameter<T>> {
        self.core.bias.as_ref()
    }
}

macro_rules! conv_builder_options {
    ($builder:ident, $dims:ty, $to2:expr) => {
        impl<T: Float> $builder<T> {
            /// The step between windows along each spatial axis (Keras'
            /// `strides`).
            ///
            /// ```
            /// let conv = polyhead_layers::Conv2D::<f32>::builder(1, 2, [3, 3]).strides([2, 2]).build(&mut polyhead_tensor::Rng::new(0))?;
            /// # let _ = conv;
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn strides(mut self, strides: $dims) -> Self {
                self.spec.strides = $to2(strides);
                self
            }
            /// The spacing between kernel taps (Keras' `dilation_rate`).
            ///
            /// ```
            /// let conv = polyhead_layers::Conv2D::<f32>::builder(1, 2, [3, 3]).dilation_rate([2, 1]).build(&mut polyhead_tensor::Rng::new(0))?;
            /// # let _ = conv;
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn dilation_rate(mut self, dilation: $dims) -> Self {
                self.spec.dilation = $to2(dilation);
                self
            }
            /// `valid` (the default), `same` or (1-D) `causal`.
            ///
            /// ```
            /// let conv = polyhead_layers::Conv2D::<f32>::builder(1, 2, [3, 3]).padding(polyhead_layers::Padding::Same).build(&mut polyhead_tensor::Rng::new(0))?;
            /// # let _ = conv;
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn padding(mut self, padding: Padding) -> Self {
                self.spec.padding = padding;
                self
            }
            /// Split channels and filters into this many groups (Keras'
            /// `groups`): filter group j sees input group j only.
            ///
            /// ```
            /// let conv = polyhead_layers::Conv2D::<f32>::builder(4, 6, [3, 3]).groups(2).build(&mut polyhead_tensor::Rng::new(0))?;
            /// assert_eq!(conv.kernel().value().shape(), &[3, 3, 2, 6]);
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn groups(mut self, groups: usize) -> Self {
                self.spec.groups = groups;
                self
            }
            /// Whether the layer adds a bias (default true).
            ///
            /// ```
            /// let conv = polyhead_layers::Conv2D::<f32>::builder(1, 2, [3, 3]).use_bias(false).build(&mut polyhead_tensor::Rng::new(0))?;
            /// assert!(conv.bias().is_none());
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn use_bias(mut self, use_bias: bool) -> Self {
                self.spec.use_bias = use_bias;
                self
            }
            /// The activation applied after the bias (default linear).
            ///
            /// ```
            /// use polyhead_layers::{Activation, Conv2D};
            /// let conv = Conv2D::<f32>::builder(1, 2, [3, 3]).activation(Activation::Relu).build(&mut polyhead_tensor::Rng::new(0))?;
            /// # let _ = conv;
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn activation(mut self, activation: Activation) -> Self {
                self.spec.activation = activation;
                self
            }
        }
    };
}

conv_builder_options!(Conv2DBuilder, [usize; 2], |d: [usize; 2]| d);
conv_builder_options!(Conv1DBuilder, usize, |d: usize| [1, d]);

impl<T: Float> Conv2DBuilder<T> {
    /// The layer, its kernel drawn Glorot-uniform from `rng` and its bias
    /// zero; an error for options that cannot work together.
    ///
    /// ```
    /// let err = polyhead_layers::Conv2D::<f32>::builder(3, 4, [3, 3]).groups(2).build(&mut polyhead_tensor::Rng::new(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "conv2d: groups = 2 must divide the input channels (3) and the filters (4)");
    /// ```
    pub fn build(self, rng: &mut Rng) -> Result<Conv2D<T>> {
        let s = self.spec;
        if s.padding == Padding::Causal {
            return Err(LayerError::Invalid {
                what: "conv2d",
                message: "padding `causal` is for 1-D convolutions only".into(),
            });
        }
        let shape = [
            s.kernel[0],
            s.kernel[1],
            s.in_channels / s.groups.max(1),
            s.filters,
        ];
        Ok(Conv2D {
            core: ConvCore::new("conv2d", &s, &shape, rng)?,
        })
    }
}

impl<T: Float> Module<T> for Conv2D<T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        if x.shape().len() != 4 {
            return Err(LayerError::Shape {
                layer: "conv2d",
                message: format!(
                    "input must be [batch, height, width, channels], got shape {:?}",
                    x.shape()
                ),
            });
        }
        let k = self.core.kernel.value().shape();
        let hw = [k[0], k[1]];
        self.core.forward(x, hw, false)
    }
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        self.core.export(g, name, x, false, None)
    }
    parameters_of_core!();
}

/// Keras' `Conv1D` on channels-last sequences `[B, L, C]`: kernel `[k,
/// C/groups, filters]`, bias `[filters]`, output `[B, Lo, filters]`;
/// `causal` padding puts `(k - 1) * dilation` zeros before the sequence.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Conv1D, Module, Padding};
/// use polyhead_tensor::{Rng, Tensor};
/// let conv = Conv1D::<f32>::builder(4, 8, 3).padding(Padding::Causal).build(&mut Rng::new(0))?;
/// let tape = Tape::new();
/// assert_eq!(conv.forward(tape.constant(Tensor::ones(&[2, 10, 4])?))?.shape(), vec![2, 10, 8]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv1D<T: Float = f32> {
    core: ConvCore<T>,
}

/// Builds a [`Conv1D`] (see [`Conv1D::builder`]).
#[derive(Debug, Clone, Copy)]
pub struct Conv1DBuilder<T: Float = f32> {
    spec: ConvSpec,
    element: std::marker::PhantomData<T>,
}

impl<T: Float> Conv1D<T> {
    /// A builder for a convolution from `in_channels` to `filters` channels
    /// with a kernel of `kernel` steps (Keras' defaults otherwise).
    ///
    /// ```
    /// let b = polyhead_layers::Conv1D::<f32>::builder(3, 8, 5).strides(2);
    /// # let _ = b;
    /// ```
    pub fn builder(in_channels: usize, filters: usize, kernel: usize) -> Conv1DBuilder<T> {
        Conv1DBuilder {
            element: std::marker::PhantomData,
            spec: ConvSpec::new(in_channels, filters, [1, kernel]),
        }
    }

    /// The kernel `[k, C/groups, filters]`.
    ///
    /// ```
    /// let c = polyhead_layers::Conv1D::<f32>::builder(4, 6, 3).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(c.kernel().value().shape(), &[3, 4, 6]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn kernel(&self) -> &Parameter<T> {
        &self.core.kernel
    }
}

impl<T: Float> Conv1DBuilder<T> {
    /// The layer, its kernel drawn Glorot-uniform from `rng` and its bias
    /// zero; an error for options that cannot work together.
    ///
    /// ```
    /// let err = polyhead_layers::Conv1D::<f32>::builder(2, 2, 0).build(&mut polyhead_tensor::Rng::new(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "conv1d: kernel size must be at least 1, got [1, 0]");
    /// ```
    pub fn build(self, rng: &mut Rng) -> Result<Conv1D<T>> {
        let s = self.spec;
        let shape = [s.kernel[1], s.in_channels / s.groups.max(1), s.filters];
        Ok(Conv1D {
            core: ConvCore::new("conv1d", &s, &shape, rng)?,
        })
    }
}

impl<T: Float> Module<T> for Conv1D<T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let shape = x.shape();
        if shape.len() != 3 {
            return Err(LayerError::Shape {
                layer: "conv1d",
                message: format!("input must be [batch, steps, channels], got shape {shape:?}"),
            });
        }
        let k = self.core.kernel.value().shape()[0];
        let y = self
            .core
            .forward(x.reshape(&[shape[0], 1, shape[1], shape[2]])?, [1, k], true)?;
        let out = y.shape();
        Ok(y.reshape(&[out[0], out[2], out[3]])?)
    }
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        self.core.export(g, name, x, true, None)
    }
    parameters_of_core!();
}

/// Keras' `DepthwiseConv2D` on `[B, H, W, C]`: each input channel `c` is
/// convolved with its own `depth_multiplier` filters, `kernel [kh, kw, C,
/// multiplier]`, bias `[C * multiplier]`; output channel `c * multiplier +
/// m` is channel `c` convolved with `kernel[:, :, c, m]`. (A grouped
/// convolution with one group per channel, run by the same op.)
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{DepthwiseConv2D, Module, Padding};
/// use polyhead_tensor::{Rng, Tensor};
/// let dw = DepthwiseConv2D::<f32>::builder(3, [3, 3]).depth_multiplier(2).padding(Padding::Same).build(&mut Rng::new(0))?;
/// assert_eq!(dw.kernel().value().shape(), &[3, 3, 3, 2]);
/// let tape = Tape::new();
/// assert_eq!(dw.forward(tape.constant(Tensor::ones(&[1, 5, 5, 3])?))?.shape(), vec![1, 5, 5, 6]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DepthwiseConv2D<T: Float = f32> {
    core: ConvCore<T>,
    multiplier: usize,
}

/// Builds a [`DepthwiseConv2D`] (see [`DepthwiseConv2D::builder`]).
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseConv2DBuilder<T: Float = f32> {
    spec: ConvSpec,
    multiplier: usize,
    element: std::marker::PhantomData<T>,
}

impl<T: Float> DepthwiseConv2D<T> {
    /// A builder over `channels` input channels with a `kernel` of `[kh,
    /// kw]`: depth multiplier 1, Keras' defaults otherwise.
    ///
    /// ```
    /// let dw = polyhead_layers::DepthwiseConv2D::<f32>::builder(3, [3, 3]).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(dw.kernel().value().shape(), &[3, 3, 3, 1]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn builder(channels: usize, kernel: [usize; 2]) -> DepthwiseConv2DBuilder<T> {
        DepthwiseConv2DBuilder {
            spec: ConvSpec::new(channels, channels, kernel),
            multiplier: 1,
            element: std::marker::PhantomData,
        }
    }

    /// The kernel `[kh, kw, C, multiplier]`.
    ///
    /// ```
    /// let dw = polyhead_layers::DepthwiseConv2D::<f32>::builder(2, [3, 1]).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(dw.kernel().value().shape(), &[3, 1, 2, 1]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn kernel(&self) -> &Parameter<T> {
        &self.core.kernel
    }
}

conv_builder_options!(DepthwiseConv2DBuilder, [usize; 2], |d: [usize; 2]| d);

impl<T: Float> DepthwiseConv2DBuilder<T> {
    /// Filters per input channel (Keras' `depth_multiplier`).
    ///
    /// ```
    /// let dw = polyhead_layers::DepthwiseConv2D::<f32>::builder(2, [3, 3]).depth_multiplier(3).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(dw.kernel().value().shape(), &[3, 3, 2, 3]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn depth_multiplier(mut self, multiplier: usize) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The layer, its kernel drawn Glorot-uniform from `rng` and its bias
    /// zero.
    ///
    /// ```
    /// let err = polyhead_layers::DepthwiseConv2D::<f32>::builder(3, [3, 3]).depth_multiplier(0).build(&mut polyhead_tensor::Rng::new(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "depthwise_conv2d: depth_multiplier must be at least 1");
    /// ```
    pub fn build(self, rng: &mut Rng) -> Result<DepthwiseConv2D<T>> {
        let layer = "depthwise_conv2d";
        if self.multiplier == 0 {
            return Err(LayerError::Invalid {
                what: layer,
                message: "depth_multiplier must be at least 1".into(),
            });
        }
        if self.spec.groups != 1 || self.spec.padding == Padding::Causal {
            return Err(LayerError::Invalid {
                what: layer,
                message: "a depthwise convolution takes no groups and no causal padding".into(),
            });
        }
        let c = self.spec.in_channels;
        let spec = ConvSpec {
            filters: c * self.multiplier,
            groups: c.max(1),
            ..self.spec
        };
        let shape = [spec.kernel[0], spec.kernel[1], c, self.multiplier];
        Ok(DepthwiseConv2D {
            core: ConvCore::new(layer, &spec, &shape, rng)?,
            multiplier: self.multiplier,
        })
    }
}

impl<T: Float> Module<T> for DepthwiseConv2D<T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let shape = x.shape();
        if shape.len() != 4 {
            return Err(LayerError::Shape {
                layer: "depthwise_conv2d",
                message: format!(
                    "input must be [batch, height, width, channels], got shape {shape:?}"
                ),
            });
        }
        let k = self.core.kernel.value().shape();
        debug_assert_eq!(k[3], self.multiplier);
        self.core.forward(x, [k[0], k[1]], false)
    }
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        self.core.export(g, name, x, false, Some(self.multiplier))
    }
    parameters_of_core!();
}

/// The recorded transposed convolution: inputs `x [B, n_h, n_w, Cin]` and
/// `kernel [kh, kw, F, Cin]`, output the full `[B, L_h, L_w, F]` (every
/// input pixel adds `x * kernel` at offset `i * stride`). It is the
/// convolution `geo` (from the output's grid to the input's) run
/// backwards: forward is that convolution's input gradient, backward its
/// forward and its kernel gradient.
struct ConvTransposeOp {
    geo: Geometry,
}

impl<T: Float> Op<T> for ConvTransposeOp {
    fn name(&self) -> &'static str {
        "conv_transpose"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> polyhead_autograd::Result<Tensor<T>> {
        let geo = self.geo;
        let x = inputs[0].to_contiguous();
        let xm =
            ArrayView2::from_shape((geo.rows(), geo.filters), x.as_slice().expect("contiguous"))
                .expect("the input's shape");
        let kernel = inputs[1].to_contiguous();
        let k = ArrayView2::from_shape(
            (geo.patch_len(), geo.filters),
            kernel.as_slice().expect("contiguous"),
        )
        .expect("the kernel's shape");
        let patches = polyhead_tensor::gemm_new(T::ONE, xm, k.t())?;
        let mut y = vec![T::ZERO; geo.batch * geo.h.n * geo.w.n * geo.channels];
        col2im(patches.view(), &geo, 0, &mut y);
        Ok(Tensor::from_vec(
            y,
            &[geo.batch, geo.h.n, geo.w.n, geo.channels],
        )?)
    }

    fn backward(
        &self,
        ctx: &BackwardContext<'_, T>,
    ) -> polyhead_autograd::Result<Vec<Option<Tensor<T>>>> {
        let geo = self.geo;
        let g = ctx.grad_output.to_contiguous();
        let patches = im2col(g.as_slice().expect("contiguous"), &geo, 0);
        let kernel = ctx.inputs[1].to_contiguous();
        let k = ArrayView2::from_shape(
            (geo.patch_len(), geo.filters),
            kernel.as_slice().expect("contiguous"),
        )
        .expect("the kernel's shape");
        let dx = ctx.grad_for(0, || {
            let dx = polyhead_tensor::gemm_new(T::ONE, patches.view(), k)?;
            Ok(Tensor::from_array(dx).reshape(ctx.inputs[0].shape())?)
        })?;
        let dk = ctx.grad_for(1, || {
            let x = ctx.inputs[0].to_contiguous();
            let xm = ArrayView2::from_shape(
                (geo.rows(), geo.filters),
                x.as_slice().expect("contiguous"),
            )
            .expect("the input's shape");
            let dk = polyhead_tensor::gemm_new(T::ONE, patches.t(), xm)?;
            Ok(Tensor::from_array(dk).reshape(ctx.inputs[1].shape())?)
        })?;
        Ok(vec![dx, dk])
    }
}

/// Keras' `Conv2DTranspose` on `[B, H, W, C]`: kernel `[kh, kw, filters,
/// C]` (output channels before input channels), bias `[filters]`. Every
/// input pixel adds `x * kernel` at offset `i * stride` of a full result of
/// `(n - 1) * stride + k` per axis, of which the layer keeps:
///
/// - `valid`: all of it, `(n - 1) * stride + max(k, stride)` (zeros after
///   when the kernel is below the stride);
/// - `same`: `n * stride`, from `(k - stride) / 2` (rounded down, as
///   TensorFlow crops);
/// - `Padding::Explicit(p)` (PyTorch's `padding`): `(n - 1) * stride + k -
///   2p`, from `p`;
/// - with [`output_padding`](Conv2DTransposeBuilder::output_padding) `op`
///   (Keras' and PyTorch's, below the stride): `(n - 1) * stride + k - 2p +
///   op`, where `p` is 0 for `valid`, `k / 2` for `same` (Keras' rule, kept
///   from where TensorFlow's `same` starts) and the explicit padding;
///   positions past the full result are zeros plus the bias.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Conv2DTranspose, Module, Padding};
/// use polyhead_tensor::{Rng, Tensor};
/// let up = Conv2DTranspose::<f32>::builder(4, 2, [3, 3]).strides([2, 2]).padding(Padding::Same).build(&mut Rng::new(0))?;
/// assert_eq!(up.kernel().value().shape(), &[3, 3, 2, 4]);
/// let tape = Tape::new();
/// assert_eq!(up.forward(tape.constant(Tensor::ones(&[1, 5, 6, 4])?))?.shape(), vec![1, 10, 12, 2]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv2DTranspose<T: Float = f32> {
    /// Parameters and options (its `forward` is not used: the geometry
    /// runs the other way).
    core: ConvCore<T>,
    output_padding: Option<[usize; 2]>,
}

/// Builds a [`Conv2DTranspose`] (see [`Conv2DTranspose::builder`]).
#[derive(Debug, Clone, Copy)]
pub struct Conv2DTransposeBuilder<T: Float = f32> {
    spec: ConvSpec,
    output_padding: Option<[usize; 2]>,
    element: std::marker::PhantomData<T>,
}

impl<T: Float> Conv2DTranspose<T> {
    /// A builder from `in_channels` to `filters` channels with a `kernel`
    /// of `[kh, kw]` (stride 1, `valid`, a bias, no activation).
    ///
    /// ```
    /// let b = polyhead_layers::Conv2DTranspose::<f32>::builder(4, 2, [3, 3]).strides([2, 2]);
    /// # let _ = b;
    /// ```
    pub fn builder(
        in_channels: usize,
        filters: usize,
        kernel: [usize; 2],
    ) -> Conv2DTransposeBuilder<T> {
        Conv2DTransposeBuilder {
            spec: ConvSpec::new(in_channels, filters, kernel),
            output_padding: None,
            element: std::marker::PhantomData,
        }
    }

    /// The kernel `[kh, kw, filters, C]`.
    ///
    /// ```
    /// let up = polyhead_layers::Conv2DTranspose::<f32>::builder(4, 2, [2, 2]).build(&mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(up.kernel().value().shape(), &[2, 2, 2, 4]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn kernel(&self) -> &Parameter<T> {
        &self.core.kernel
    }
}

conv_builder_options!(Conv2DTransposeBuilder, [usize; 2], |d: [usize; 2]| d);

impl<T: Float> Conv2DTransposeBuilder<T> {
    /// Extra rows and columns at the end of the output (Keras' and
    /// PyTorch's `output_padding`, each below the stride), which pick one
    /// of the `stride` output sizes that a strided convolution maps back
    /// to the same input size.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Conv2DTranspose, Module, Padding};
    /// use polyhead_tensor::{Rng, Tensor};
    /// // PyTorch's ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1): twice the size.
    /// let up = Conv2DTranspose::<f32>::builder(4, 2, [3, 3])
    ///     .strides([2, 2])
    ///     .padding(Padding::Explicit(1))
    ///     .output_padding([1, 1])
    ///     .build(&mut Rng::new(0))?;
    /// let tape = Tape::new();
    /// assert_eq!(up.forward(tape.constant(Tensor::ones(&[1, 5, 6, 4])?))?.shape(), vec![1, 10, 12, 2]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn output_padding(mut self, output_padding: [usize; 2]) -> Self {
        self.output_padding = Some(output_padding);
        self
    }

    /// The layer, its kernel drawn Glorot-uniform from `rng` and its bias
    /// zero.
    ///
    /// ```
    /// let err = polyhead_layers::Conv2DTranspose::<f32>::builder(2, 2, [3, 3]).dilation_rate([2, 2]).build(&mut polyhead_tensor::Rng::new(0)).unwrap_err();
    /// assert_eq!(err.to_string(), "conv2d_transpose: takes no dilation and no groups");
    /// ```
    pub fn build(self, rng: &mut Rng) -> Result<Conv2DTranspose<T>> {
        let layer = "conv2d_transpose";
        let s = self.spec;
        if s.dilation != [1, 1] || s.groups != 1 {
            return Err(LayerError::Invalid {
                what: layer,
                message: "takes no dilation and no groups".into(),
            });
        }
        if s.padding == Padding::Causal {
            return Err(LayerError::Invalid {
                what: layer,
                message: "takes padding `valid`, `same` or explicit".into(),
            });
        }
        if let Some(op) = self.output_padding
            && (op[0] >= s.strides[0] || op[1] >= s.strides[1])
        {
            return Err(LayerError::Invalid {
                what: layer,
                message: format!(
                    "output_padding {op:?} must be smaller than the strides {:?}",
                    s.strides
                ),
            });
        }
        let shape = [s.kernel[0], s.kernel[1], s.filters, s.in_channels];
        Ok(Conv2DTranspose {
            core: ConvCore::new(layer, &s, &shape, rng)?,
            output_padding: self.output_padding,
        })
    }
}

impl<T: Float> Conv2DTranspose<T> {
    /// The part of an axis's full transposed convolution the layer keeps
    /// (start and length), for `n` inputs, kernel `k`, stride `s` and
    /// output padding `op` (Keras' and PyTorch's formulas). The full
    /// result reaches `(n - 1) * s + k`; a kept part running past it ends
    /// in zeros.
    fn kept(&self, n: usize, k: usize, s: usize, op: Option<usize>) -> Result<(usize, usize)> {
        let reach = (n.max(1) - 1) * s + k;
        let (start, len) = match (self.core.padding, op) {
            (Padding::Same, None) => (k.saturating_sub(s) / 2, Some(n * s)),
            (Padding::Same, Some(op)) => {
                let len = (reach + op).checked_sub(k / 2 * 2);
                (len.map_or(0, |len| reach.saturating_sub(len) / 2), len)
            }
            (Padding::Explicit(p), op) => (p, (reach + op.unwrap_or(0)).checked_sub(2 * p)),
            (_, op) => (0, Some(op.map_or(reach.max(n * s), |op| reach + op))),
        };
        let len = len.filter(|&len| len > 0 || n == 0).ok_or_else(|| LayerError::Shape {
            layer: "conv2d_transpose",
            message: format!(
                "padding {:?} crops all of an axis of {n} upsampled to {reach} (kernel {k}, stride {s})",
                self.core.padding
            ),
        })?;
        Ok((start, len))
    }
}

impl<T: Float> Module<T> for Conv2DTranspose<T> {
    /// ONNX's `ConvTranspose` between transposes: the kept part of each
    /// axis as `pads` (cropped from the full result) and `output_padding`
    /// (zeros past its end), which do not depend on the input's size.
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        use crate::export::Attribute;
        let core = &self.core;
        let k = core.kernel.value();
        let ks = k.shape().to_vec();
        let (mut begin, mut end, mut extra) = (vec![], vec![], vec![]);
        for axis in 0..2 {
            // Any input size gives the same crop; 4 inputs, say.
            let (s, n) = (core.strides[axis], 4);
            let (start, len) = self.kept(n, ks[axis], s, self.output_padding.map(|o| o[axis]))?;
            let reach = (n - 1) * s + ks[axis];
            begin.push(start as i64);
            end.push(reach.saturating_sub(start + len) as i64);
            extra.push((start + len).saturating_sub(reach) as i64);
        }
        // [kh, kw, F, C] -> ONNX's [C, F, kh, kw].
        let weight = k.permute(&[3, 2, 0, 1])?.to_contiguous();
        let first = g.transpose(name, x, &[0, 3, 1, 2]);
        let mut inputs = vec![first, g.constant(&format!("{name}.kernel"), &weight)];
        if let Some(b) = &core.bias {
            inputs.push(g.constant(&format!("{name}.bias"), b.value()));
        }
        begin.extend(end);
        let y = g.op(
            name,
            "ConvTranspose",
            &inputs,
            vec![
                (
                    "kernel_shape",
                    Attribute::Ints(vec![ks[0] as i64, ks[1] as i64]),
                ),
                (
                    "strides",
                    Attribute::Ints(core.strides.iter().map(|&v| v as i64).collect()),
                ),
                ("pads", Attribute::Ints(begin)),
                ("output_padding", Attribute::Ints(extra)),
            ],
        );
        let last = g.transpose(name, &y, &[0, 2, 3, 1]);
        Ok(core.activation.export(g, name, &last))
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let layer = "conv2d_transpose";
        let shape = x.shape();
        let core = &self.core;
        let k = core.kernel.value().shape().to_vec();
        if shape.len() != 4 || shape[3] != k[3] {
            return Err(LayerError::Shape {
                layer,
                message: format!(
                    "input must be [batch, height, width, {}], got shape {shape:?}",
                    k[3]
                ),
            });
        }
        // Per axis: the kept part (start, length) of the full result, and
        // the full length (long enough to hold the kept part, which ends
        // in zeros where it runs past what the kernel reaches).
        let axis =
            |n: usize, k: usize, s: usize, op: Option<usize>| -> Result<(Axis, usize, usize)> {
                let (start, len) = self.kept(n, k, s, op)?;
                let reach = (n.max(1) - 1) * s + k;
                Ok((
                    Axis {
                        n: reach.max(start + len),
                        k,
                        stride: s,
                        dilation: 1,
                        before: 0,
                        out: n,
                    },
                    start,
                    len,
                ))
            };
        let op = self.output_padding;
        let (h, h0, hl) = axis(shape[1], k[0], core.strides[0], op.map(|o| o[0]))?;
        let (w, w0, wl) = axis(shape[2], k[1], core.strides[1], op.map(|o| o[1]))?;
        let geo = Geometry {
            batch: shape[0],
            h,
            w,
            channels: k[2],
            groups: 1,
            filters: k[3],
        };
        let tape = x.tape();
        let mut y = tape.apply(ConvTransposeOp { geo }, &[x, tape.param(&core.kernel)])?;
        if (h0, hl) != (0, h.n) {
            y = y.slice_axis(1, h0, h0 + hl)?;
        }
        if (w0, wl) != (0, w.n) {
            y = y.slice_axis(2, w0, w0 + wl)?;
        }
        let y = match &core.bias {
            Some(b) => y.add(tape.param(b))?,
            None => y,
        };
        core.activation.apply(y)
    }
    parameters_of_core!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col by the definition: each patch element read through
    /// `Axis::source`, 0 outside.
    fn naive_im2col(x: &[f64], geo: &Geometry, g: usize) -> Vec<f64> {
        let cg = geo.group_channels();
        let mut out = Vec::new();
        for b in 0..geo.batch {
            for oh in 0..geo.h.out {
                for ow in 0..geo.w.out {
                    for th in 0..geo.h.k {
                        for tw in 0..geo.w.k {
                            for ci in 0..cg {
                                out.push(match (geo.h.source(oh, th), geo.w.source(ow, tw)) {
                                    (Some(ih), Some(iw)) => {
                                        x[((b * geo.h.n + ih) * geo.w.n + iw) * geo.channels
                                            + g * cg
                                            + ci]
                                    }
                                    _ => 0.0,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_its_definition_for_every_geometry() {
        let paddings = [
            Padding::Valid,
            Padding::Same,
            Padding::Explicit(1),
            Padding::Explicit(2),
        ];
        let mut checked = 0;
        for (n, k, stride, dilation, padding) in itertools_product(&paddings) {
            let Ok(h) = Axis::new(n, k, stride, dilation, padding, "test") else {
                continue;
            };
            let Ok(w) = Axis::new(n + 1, k, stride, dilation, padding, "test") else {
                continue;
            };
            for groups in [1, 2] {
                let geo = Geometry {
                    batch: 2,
                    h,
                    w,
                    channels: 2 * groups,
                    groups,
                    filters: groups,
                };
                let x: Vec<f64> = (0..2 * h.n * w.n * geo.channels)
                    .map(|i| i as f64 + 1.0)
                    .collect();
                for g in 0..groups {
                    // Stale contents must be overwritten everywhere.
                    let mut patches = vec![f64::NAN; geo.rows() * geo.patch_len()];
                    im2col_into(&x, &geo, g, &mut patches);
                    assert_eq!(patches, naive_im2col(&x, &geo, g), "{geo:?} group {g}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    /// A convolution of several chunks (5 samples of 24 x 24 x 8, 3 x 3,
    /// 9 filters: about 330 KB of f64 patches a sample, so chunks of 3 and
    /// 2 samples), against its definition, identical on 1 and 2 threads.
    #[test]
    fn chunked_convolution_matches_its_definition_on_any_thread_count() {
        let (batch, n, c, f, k) = (5, 24, 8, 9, 3);
        let axis = Axis::new(n, k, 1, 1, Padding::Same, "test").unwrap();
        let geo = Geometry {
            batch,
            h: axis,
            w: axis,
            channels: c,
            groups: 1,
            filters: f,
        };
        let x = Tensor::<f64>::rand_normal(&[batch, n, n, c], 0.0, 1.0, 1).unwrap();
        let kernel = Tensor::<f64>::rand_normal(&[k, k, c, f], 0.0, 1.0, 2).unwrap();
        let bias = Tensor::<f64>::rand_normal(&[f], 0.0, 1.0, 3).unwrap();
        let upstream = Tensor::<f64>::rand_normal(&[batch, n, n, f], 0.0, 1.0, 4).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut op = ConvOp {
                    geo,
                    bias: true,
                    relu: true,
                    scratch: Default::default(),
                };
                assert!(op.chunk_samples() < batch, "{}", op.chunk_samples());
                let y = op.forward(&[&x, &kernel, &bias]).unwrap();
                let ctx = BackwardContext {
                    inputs: &[&x, &kernel, &bias],
                    output: &y,
                    grad_output: &upstream,
                    needs_grad: &[true, true, true],
                };
                let grads: Vec<Vec<f64>> = op
                    .backward(&ctx)
                    .unwrap()
                    .into_iter()
                    .map(|g| g.unwrap().to_vec())
                    .collect();
                (y.to_vec(), grads)
            })
        };
        let (y, grads) = run(1);
        assert_eq!(
            (y.clone(), grads.clone()),
            run(2),
            "thread count changed a result"
        );
        // The definition, position by position.
        let (xv, kv, bv, gv) = (
            x.to_vec(),
            kernel.to_vec(),
            bias.to_vec(),
            upstream.to_vec(),
        );
        let (mut dx, mut dk, mut db) = (vec![0.0; xv.len()], vec![0.0; kv.len()], vec![0.0; f]);
        for b in 0..batch {
            for oh in 0..n {
                for ow in 0..n {
                    for fi in 0..f {
                        let mut pre = bv[fi];
                        let taps = || {
                            (0..k)
                                .flat_map(move |th| (0..k).map(move |tw| (th, tw)))
                                .filter_map(move |(th, tw)| {
                                    Some((th, tw, axis.source(oh, th)?, axis.source(ow, tw)?))
                                })
                        };
                        for (th, tw, ih, iw) in taps() {
                            for ci in 0..c {
                                pre += xv[((b * n + ih) * n + iw) * c + ci]
                                    * kv[((th * k + tw) * c + ci) * f + fi];
                            }
                        }
                        let at = ((b * n + oh) * n + ow) * f + fi;
                        assert!((y[at] - pre.max(0.0)).abs() < 1e-12, "y[{at}]");
                        let g = if pre > 0.0 { gv[at] } else { 0.0 };
                        db[fi] += g;
                        for (th, tw, ih, iw) in taps() {
                            for ci in 0..c {
                                let xi = ((b * n + ih) * n + iw) * c + ci;
                                let ki = ((th * k + tw) * c + ci) * f + fi;
                                dx[xi] += kv[ki] * g;
                                dk[ki] += xv[xi] * g;
                            }
                        }
                    }
                }
            }
        }
        for (name, got, want) in [
            ("dx", &grads[0], &dx),
            ("dk", &grads[1], &dk),
            ("db", &grads[2], &db),
        ] {
            for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                    "{name}[{i}]: {a} vs {b}"
                );
            }
        }
    }

    fn itertools_product(paddings: &[Padding]) -> Vec<(usize, usize, usize, usize, Padding)> {
        let mut all = Vec::new();
        for n in 1..6 {
            for k in 1..4 {
                for stride in 1..4 {
                    for dilation in 1..3 {
                        for &padding in paddings {
                            all.push((n, k, stride, dilation, padding));
                        }
                    }
                }
            }
        }
        all
    }
}
