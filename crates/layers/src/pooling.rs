//! Pooling, channels last: max and average over windows placed like
//! convolution windows (Keras' `MaxPooling1D/2D`, `AveragePooling2D`), and
//! the global poolings over every position.
//!
//! Window rules (Keras): `strides` default to the pool size; `same`
//! padding never wins a max (it is not a value) and is not counted by an
//! average, which divides by the number of real elements in its window.
//! Max-pool backward sends a window's gradient to ONE element: the first
//! maximal element in row-major window order (the element with the
//! smallest row, then column, among those equal to the maximum), as
//! TensorFlow and JAX do; overlapping windows add their gradients.
//!
//! Two PyTorch options extend the rules: `ceil_mode` adds a last window
//! that starts inside the input (or its leading padding) but runs past its
//! end, and `count_include_pad` makes an average divide by the padded
//! window (explicit or `same` padding counts as elements; positions past
//! the padding that `ceil_mode` reaches never do).

use polyhead_autograd::{BackwardContext, Op, Parameter, Var};
use polyhead_tensor::{Float, Tensor};
use rayon::prelude::*;

use crate::conv::{Axis, Padding};
use crate::error::{LayerError, Result};
use crate::module::Module;

/// Max or average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Average,
}

/// The recorded pooling over `[B, H, W, C]`.
struct PoolOp {
    kind: Kind,
    batch: usize,
    h: Axis,
    w: Axis,
    channels: usize,
    /// Average: for each output position (`oh * Wo + ow`), the number its
    /// window's sum is divided by.
    divisors: Vec<usize>,
}

impl PoolOp {
    /// The windows of one sample, in output order: window `w` (output
    /// offset `w * channels`) pools the `channels` values at each input
    /// offset `taps[bounds[w]..bounds[w + 1]]` (offsets within a sample),
    /// its real positions in row-major order. The layers refuse padding
    /// that could leave a window empty.
    fn windows(&self) -> (Vec<usize>, Vec<usize>) {
        let c = self.channels;
        let mut taps = Vec::with_capacity(self.h.out * self.w.out * self.h.k * self.w.k);
        let mut bounds = Vec::with_capacity(self.h.out * self.w.out + 1);
        bounds.push(0);
        for oh in 0..self.h.out {
            for ow in 0..self.w.out {
                for th in 0..self.h.k {
                    let Some(ih) = self.h.source(oh, th) else {
                        continue;
                    };
                    for tw in 0..self.w.k {
                        if let Some(iw) = self.w.source(ow, tw) {
                            taps.push((ih * self.w.n + iw) * c);
                        }
                    }
                }
                bounds.push(taps.len());
            }
        }
        (taps, bounds)
    }

    /// Runs `f(first sample, out)` over chunks of samples in parallel,
    /// `out` being the chunk's part of `all` (`per_sample` elements a
    /// sample); chunks hold at least 64 KiB of work.
    fn per_samples<U: Send>(all: &mut [U], per_sample: usize, f: impl Fn(usize, &mut [U]) + Sync) {
        if per_sample == 0 {
            return;
        }
        let samples = (16384 / per_sample).max(1);
        all.par_chunks_mut(samples * per_sample)
            .enumerate()
            .for_each(|(c, out)| f(c * samples, out));
    }

    fn out_shape(&self) -> [usize; 4] {
        [self.batch, self.h.out, self.w.out, self.channels]
    }

    /// The average's divisor at each output position: the real elements
    /// of its window, or with `padded_end` (per axis, where the padding
    /// after the input ends) the real and padding elements.
    fn divisors(h: &Axis, w: &Axis, padded_end: Option<[usize; 2]>) -> Vec<usize> {
        let along = |a: &Axis, end: Option<usize>| -> Vec<usize> {
            (0..a.out)
                .map(|o| {
                    // Window [start, start + k) in padded coordinates, where
                    // the input occupies [before, before + n).
                    let start = o * a.stride;
                    let stop = start + (a.k - 1) * a.dilation + 1;
                    match end {
                        Some(end) => stop.min(a.before + end) - start,
                        None => (0..a.k).filter(|&t| a.source(o, t).is_some()).count(),
                    }
                })
                .collect()
        };
        let hs = along(h, padded_end.map(|e| e[0]));
        let ws = along(w, padded_end.map(|e| e[1]));
        hs.iter()
            .flat_map(|&a| ws.iter().map(move |&b| a * b))
            .collect()
    }
}

impl<T: Float> Op<T> for PoolOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Max => "max_pooling",
            Kind::Average => "average_pooling",
        }
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> polyhead_autograd::Result<Tensor<T>> {
        let x = inputs[0].to_contiguous();
        let x = x.as_slice().expect("contiguous");
        let n: usize = self.out_shape().iter().product();
        let c = self.channels;
        let (in_per, out_per) = (self.h.n * self.w.n * c, self.h.out * self.w.out * c);
        let (taps, bounds) = self.windows();
        let windows = bounds.len() - 1;
        let mut y = vec![T::ZERO; n];
        Self::per_samples(&mut y, out_per, |b0, chunk| {
            for (s, ys) in chunk.chunks_exact_mut(out_per).enumerate() {
                let xs = &x[(b0 + s) * in_per..(b0 + s + 1) * in_per];
                for w in 0..windows {
                    let ys = &mut ys[w * c..(w + 1) * c];
                    let taps = &taps[bounds[w]..bounds[w + 1]];
                    match self.kind {
                        Kind::Max => {
                            let Some((&first, rest)) = taps.split_first() else {
                                continue;
                            };
                            // The running maximum, replaced only by a
                            // strictly greater value (a select per lane, no
                            // branch), so the window's first maximal element
                            // is the one backward finds.
                            ys.copy_from_slice(&xs[first..first + c]);
                            for &i in rest {
                                for (y, &v) in ys.iter_mut().zip(&xs[i..i + c]) {
                                    *y = if v > *y { v } else { *y };
                                }
                            }
                        }
                        Kind::Average => {
                            for &i in taps {
                                for (s, &v) in ys.iter_mut().zip(&xs[i..i + c]) {
                                    *s += v;
                                }
                            }
                            let divisor = T::from_f64(self.divisors[w] as f64);
                            for s in ys.iter_mut() {
                                *s /= divisor;
                            }
                        }
                    }
                }
            }
        });
        Ok(Tensor::from_vec(y, &self.out_shape())?)
    }

    fn backward(
        &self,
        ctx: &BackwardContext<'_, T>,
    ) -> polyhead_autograd::Result<Vec<Option<Tensor<T>>>> {
        let dx = ctx.grad_for(0, || {
            let g = ctx.grad_output.to_contiguous();
            let g = g.as_slice().expect("contiguous");
            let x = ctx.inputs[0].to_contiguous();
            let x = x.as_slice().expect("contiguous");
            let y = ctx.output.to_contiguous();
            let y = y.as_slice().expect("contiguous");
            let c = self.channels;
            let (in_per, out_per) = (self.h.n * self.w.n * c, self.h.out * self.w.out * c);
            let (taps, bounds) = self.windows();
            let windows = bounds.len() - 1;
            let mut dx = vec![T::ZERO; ctx.inputs[0].len()];
            Self::per_samples(&mut dx, in_per, |b0, chunk| {
                let mut found = vec![false; c];
                let mut scaled = vec![T::ZERO; c];
                for (s, dxs) in chunk.chunks_exact_mut(in_per).enumerate() {
                    let b = b0 + s;
                    let xs = &x[b * in_per..(b + 1) * in_per];
                    let (ys, gs) = (
                        &y[b * out_per..(b + 1) * out_per],
                        &g[b * out_per..(b + 1) * out_per],
                    );
                    for w in 0..windows {
                        let taps = &taps[bounds[w]..bounds[w + 1]];
                        let (ys, gs) = (&ys[w * c..(w + 1) * c], &gs[w * c..(w + 1) * c]);
                        match self.kind {
                            Kind::Max => {
                                // The gradient goes to the first element of
                                // the window (row-major) equal to the
                                // maximum; to the window's first element
                                // when none is (a NaN maximum). Selects, not
                                // branches.
                                found.fill(false);
                                for &i in taps {
                                    let lanes = dxs[i..i + c].iter_mut().zip(&xs[i..i + c]);
                                    for (((d, &v), &m), (f, &gv)) in
                                        lanes.zip(ys).zip(found.iter_mut().zip(gs))
                                    {
                                        let hit = !*f & (v == m);
                                        *d += if hit { gv } else { T::ZERO };
                                        *f |= hit;
                                    }
                                }
                                if let Some(&first) = taps.first()
                                    && found.contains(&false)
                                {
                                    for ch in (0..c).filter(|&ch| !found[ch]) {
                                        dxs[first + ch] += gs[ch];
                                    }
                                }
                            }
                            Kind::Average => {
                                let divisor = T::from_f64(self.divisors[w] as f64);
                                for (s, &g) in scaled.iter_mut().zip(gs) {
                                    *s = g / divisor;
                                }
                                for &i in taps {
                                    for (d, &s) in dxs[i..i + c].iter_mut().zip(&scaled) {
                                        *d += s;
                                    }
                                }
                            }
                        }
                    }
                }
            });
            Ok(Tensor::from_vec(dx, ctx.inputs[0].shape())?)
        })?;
        Ok(vec![dx])
    }
}

/// Window settings shared by the pooling layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Windows {
    pool: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
    /// 1-D pooling: the height axis (1, window 1) is never padded.
    one_d: bool,
    /// PyTorch's `ceil_mode`: one more window where the last would leave
    /// input elements out.
    ceil_mode: bool,
    /// PyTorch's `count_include_pad` (average only).
    count_include_pad: bool,
}

impl Windows {
    /// The pooling as ONNX's `MaxPool` / `AveragePool` between transposes
    /// to and from channels first.
    fn export(
        &self,
        kind: Kind,
        g: &mut crate::export::Graph,
        name: &str,
        x: &str,
    ) -> crate::Result<String> {
        use crate::export::Attribute;
        let axes = |v: [usize; 2]| -> Vec<i64> {
            if self.one_d {
                vec![v[1] as i64]
            } else {
                vec![v[0] as i64, v[1] as i64]
            }
        };
        let rank = if self.one_d { 1 } else { 2 };
        let mut attributes = vec![
            ("kernel_shape", Attribute::Ints(axes(self.pool))),
            ("strides", Attribute::Ints(axes(self.strides))),
            ("ceil_mode", Attribute::Int(i64::from(self.ceil_mode))),
        ];
        attributes.push(
            crate::export::padding_attributes(self.padding, rank).ok_or_else(|| {
                crate::LayerError::NotExportable {
                    layer: name.to_string(),
                    reason: "causal pooling has no ONNX counterpart".into(),
                }
            })?,
        );
        let op = match kind {
            Kind::Max => "MaxPool",
            Kind::Average => {
                // Same padding averages the real elements only (ONNX's
                // default); explicit padding counts as PyTorch's flag says.
                let include =
                    matches!(self.padding, Padding::Explicit(_)) && self.count_include_pad;
                attributes.push(("count_include_pad", Attribute::Int(i64::from(include))));
                "AveragePool"
            }
        };
        let (to_first, to_last): (&[i64], &[i64]) = if self.one_d {
            (&[0, 2, 1], &[0, 2, 1])
        } else {
            (&[0, 3, 1, 2], &[0, 2, 3, 1])
        };
        let first = g.transpose(name, x, to_first);
        let y = g.op(name, op, &[first], attributes);
        Ok(g.transpose(name, &y, to_last))
    }

    fn new(pool: [usize; 2], one_d: bool) -> Self {
        Windows {
            pool,
            strides: pool,
            padding: Padding::Valid,
            one_d,
            ceil_mode: false,
            count_include_pad: false,
        }
    }

    /// An axis of `n` under these windows: Keras' output length, or with
    /// `ceil_mode` PyTorch's (`ceil((n + 2p - k) / s) + 1`, less one if
    /// the last window would start in the trailing padding).
    fn axis(
        &self,
        n: usize,
        k: usize,
        s: usize,
        padding: Padding,
        layer: &'static str,
    ) -> Result<Axis> {
        let mut axis = Axis::new(n, k, s, 1, padding, layer)?;
        if self.ceil_mode
            && let Padding::Valid | Padding::Explicit(_) = padding
        {
            let p = axis.before;
            if !(n + 2 * p - k).is_multiple_of(s) && axis.out * s < n + p {
                axis.out += 1;
            }
        }
        Ok(axis)
    }

    /// Where an axis's padding after the input ends (in input
    /// coordinates: `n` plus the trailing padding).
    fn padded_end(axis: &Axis, padding: Padding) -> usize {
        match padding {
            Padding::Explicit(p) => axis.n + p,
            Padding::Same => {
                let span = (axis.out.max(1) - 1) * axis.stride + axis.k;
                axis.n.max(span - axis.before)
            }
            Padding::Valid | Padding::Causal => axis.n,
        }
    }

    fn check(&self, kind: Kind, layer: &'static str) -> Result<()> {
        if self.count_include_pad && kind == Kind::Max {
            return Err(LayerError::Invalid {
                what: layer,
                message: "count_include_pad applies to average pooling only".into(),
            });
        }
        if self.pool.contains(&0) || self.strides.contains(&0) {
            return Err(LayerError::Invalid {
                what: layer,
                message: format!(
                    "pool size and strides must be at least 1, got {:?} and {:?}",
                    self.pool, self.strides
                ),
            });
        }
        if self.padding == Padding::Causal {
            return Err(LayerError::Invalid {
                what: layer,
                message: "pooling takes padding `valid`, `same` or explicit".into(),
            });
        }
        Ok(())
    }

    /// Pools `x4` (`[B, H, W, C]`).
    fn apply<'t, T: Float>(
        &self,
        kind: Kind,
        x4: Var<'t, T>,
        layer: &'static str,
    ) -> Result<Var<'t, T>> {
        let s = x4.shape();
        if let Padding::Explicit(p) = self.padding {
            // PyTorch's rule: padding at most half the window, so that every
            // window holds a real element (and an empty axis has none).
            let smallest = if self.one_d {
                self.pool[1]
            } else {
                self.pool[0].min(self.pool[1])
            };
            if 2 * p > smallest {
                return Err(LayerError::Invalid {
                    what: layer,
                    message: format!(
                        "explicit padding {p} is more than half the window {:?}: a window could hold only padding",
                        self.pool
                    ),
                });
            }
            if s[1] == 0 || s[2] == 0 {
                return Err(LayerError::Shape {
                    layer,
                    message: format!(
                        "an empty spatial axis cannot be padded and pooled (shape {s:?})"
                    ),
                });
            }
        }
        let h_padding = if self.one_d {
            Padding::Valid
        } else {
            self.padding
        };
        let h = self.axis(s[1], self.pool[0], self.strides[0], h_padding, layer)?;
        let w = self.axis(s[2], self.pool[1], self.strides[1], self.padding, layer)?;
        let padded_end = self.count_include_pad.then(|| {
            [
                Self::padded_end(&h, h_padding),
                Self::padded_end(&w, self.padding),
            ]
        });
        let divisors = match kind {
            Kind::Average => PoolOp::divisors(&h, &w, padded_end),
            Kind::Max => Vec::new(),
        };
        let op = PoolOp {
            kind,
            batch: s[0],
            h,
            w,
            channels: s[3],
            divisors,
        };
        Ok(x4.apply(op)?)
    }
}

fn rank_error(layer: &'static str, expected: &str, shape: &[usize]) -> LayerError {
    LayerError::Shape {
        layer,
        message: format!("input must be {expected}, got shape {shape:?}"),
    }
}

macro_rules! no_parameters {
    () => {
        fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<T>)) {}
        fn visit_parameters_mut<'a>(
            &'a mut self,
            _: &str,
            _: &mut dyn FnMut(String, &'a mut Parameter<T>),
        ) {
        }
    };
}

/// Keras' `MaxPooling2D` / `AveragePooling2D` on `[B, H, W, C]`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Module, Padding, Pooling2D};
/// use polyhead_tensor::Tensor;
/// let pool = Pooling2D::max([2, 2]);
/// let tape = Tape::new();
/// let x = Tensor::<f32>::from_vec((0..16).map(|v| v as f32).collect(), &[1, 4, 4, 1])?;
/// let y = pool.forward(tape.constant(x))?;
/// assert_eq!(y.value().to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
/// let avg = Pooling2D::average([3, 3]).strides([1, 1]).padding(Padding::Same);
/// assert_eq!(avg.forward(tape.constant(Tensor::<f32>::ones(&[1, 4, 4, 1])?))?.value().to_vec(), vec![1.0; 16]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling2D {
    kind: Kind,
    windows: Windows,
}

impl Pooling2D {
    /// Max pooling over windows of `pool` (strides = `pool`, `valid`).
    ///
    /// ```
    /// let pool = polyhead_layers::Pooling2D::max([2, 2]);
    /// # let _ = pool;
    /// ```
    pub fn max(pool: [usize; 2]) -> Self {
        Pooling2D {
            kind: Kind::Max,
            windows: Windows::new(pool, false),
        }
    }

    /// Average pooling over windows of `pool` (strides = `pool`, `valid`).
    ///
    /// ```
    /// let pool = polyhead_layers::Pooling2D::average([3, 3]);
    /// # let _ = pool;
    /// ```
    pub fn average(pool: [usize; 2]) -> Self {
        Pooling2D {
            kind: Kind::Average,
            ..Pooling2D::max(pool)
        }
    }

    /// The step between windows.
    ///
    /// ```
    /// let pool = polyhead_layers::Pooling2D::max([3, 3]).strides([2, 2]);
    /// # let _ = pool;
    /// ```
    pub fn strides(mut self, strides: [usize; 2]) -> Self {
        self.windows.strides = strides;
        self
    }

    /// `valid`, `same` or explicit (PyTorch's `padding`).
    ///
    /// ```
    /// let pool = polyhead_layers::Pooling2D::max([3, 3]).padding(polyhead_layers::Padding::Same);
    /// # let _ = pool;
    /// ```
    pub fn padding(mut self, padding: Padding) -> Self {
        self.windows.padding = padding;
        self
    }

    /// PyTorch's `ceil_mode` (with `valid` or explicit padding): a last
    /// window over the elements that whole windows leave out at the end
    /// (an average divides by the elements it holds).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Module, Pooling2D};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::new();
    /// let x = Tensor::<f32>::from_vec((0..9).map(|v| v as f32).collect(), &[1, 3, 3, 1])?;
    /// let y = Pooling2D::average([2, 2]).ceil_mode(true).forward(tape.constant(x))?;
    /// assert_eq!(y.value().to_vec(), vec![2.0, 3.5, 6.5, 8.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.windows.ceil_mode = ceil_mode;
        self
    }

    /// PyTorch's `count_include_pad` (average pooling only; PyTorch's
    /// default is `true`, Keras' behaviour and polyhead's default `false`):
    /// padding counts as elements of a window when dividing its sum.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Module, Padding, Pooling2D};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::new();
    /// let pool = Pooling2D::average([3, 3]).strides([1, 1]).padding(Padding::Explicit(1));
    /// let x = tape.constant(Tensor::<f32>::ones(&[1, 2, 2, 1])?);
    /// assert_eq!(pool.forward(x)?.value().to_vec(), vec![1.0; 4]);
    /// let counted = pool.count_include_pad(true).forward(x)?;
    /// assert_eq!(counted.value().to_vec(), vec![4.0 / 9.0; 4]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.windows.count_include_pad = count_include_pad;
        self
    }

    fn layer(&self) -> &'static str {
        match self.kind {
            Kind::Max => "max_pooling2d",
            Kind::Average => "average_pooling2d",
        }
    }
}

impl<T: Float> Module<T> for Pooling2D {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let layer = self.layer();
        self.windows.check(self.kind, layer)?;
        if x.shape().len() != 4 {
            return Err(rank_error(
                layer,
                "[batch, height, width, channels]",
                &x.shape(),
            ));
        }
        self.windows.apply(self.kind, x, layer)
    }
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        self.windows.export(self.kind, g, name, x)
    }
    no_parameters!();
}

/// Keras' `MaxPooling1D` on `[B, L, C]`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{MaxPooling1D, Module};
/// use polyhead_tensor::Tensor;
/// let tape = Tape::new();
/// let x = Tensor::<f32>::from_vec(vec![1.0, 3.0, 2.0, 0.0, 5.0], &[1, 5, 1])?;
/// let y = MaxPooling1D::new(2).forward(tape.constant(x))?;
/// assert_eq!(y.value().to_vec(), vec![3.0, 2.0]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPooling1D {
    windows: Windows,
}

impl MaxPooling1D {
    /// Windows of `pool` steps (strides = `pool`, `valid`).
    ///
    /// ```
    /// let pool = polyhead_layers::MaxPooling1D::new(2);
    /// # let _ = pool;
    /// ```
    pub fn new(pool: usize) -> Self {
        MaxPooling1D {
            windows: Windows::new([1, pool], true),
        }
    }

    /// The step between windows.
    ///
    /// ```
    /// let pool = polyhead_layers::MaxPooling1D::new(3).strides(1);
    /// # let _ = pool;
    /// ```
    pub fn strides(mut self, strides: usize) -> Self {
        self.windows.strides = [1, strides];
        self
    }

    /// `valid`, `same` or explicit.
    ///
    /// ```
    /// let pool = polyhead_layers::MaxPooling1D::new(3).padding(polyhead_layers::Padding::Same);
    /// # let _ = pool;
    /// ```
    pub fn padding(mut self, padding: Padding) -> Self {
        self.windows.padding = padding;
        self
    }

    /// PyTorch's `ceil_mode` (see [`Pooling2D::ceil_mode`]).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{MaxPooling1D, Module};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::new();
    /// let x = Tensor::<f32>::from_vec(vec![1.0, 3.0, 2.0, 0.0, 5.0], &[1, 5, 1])?;
    /// let y = MaxPooling1D::new(2).ceil_mode(true).forward(tape.constant(x))?;
    /// assert_eq!(y.value().to_vec(), vec![3.0, 2.0, 5.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.windows.ceil_mode = ceil_mode;
        self
    }
}

impl<T: Float> Module<T> for MaxPooling1D {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let layer = "max_pooling1d";
        self.windows.check(Kind::Max, layer)?;
        let s = x.shape();
        if s.len() != 3 {
            return Err(rank_error(layer, "[batch, steps, channels]", &s));
        }
        let y = self
            .windows
            .apply(Kind::Max, x.reshape(&[s[0], 1, s[1], s[2]])?, layer)?;
        let o = y.shape();
        Ok(y.reshape(&[o[0], o[2], o[3]])?)
    }
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        self.windows.export(Kind::Max, g, name, x)
    }
    no_parameters!();
}

/// Keras' global poolings: the average or maximum over every position of
/// `[B, L, C]` (1-D) or `[B, H, W, C]` (2-D), giving `[B, C]` (or, with
/// `keepdims`, the pooled axes kept as size 1).
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{GlobalPooling, Module};
/// use polyhead_tensor::Tensor;
/// let tape = Tape::new();
/// let x = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[1, 2, 2, 1])?;
/// assert_eq!(GlobalPooling::average_2d().forward(tape.constant(x.clone()))?.value().to_vec(), vec![3.0]);
/// assert_eq!(GlobalPooling::max_2d().keepdims(true).forward(tape.constant(x))?.shape(), vec![1, 1, 1, 1]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalPooling {
    kind: Kind,
    spatial_axes: usize,
    keepdims: bool,
}

impl GlobalPooling {
    /// `GlobalAveragePooling1D` over `[B, L, C]`.
    ///
    /// ```
    /// let pool = polyhead_layers::GlobalPooling::average_1d();
    /// # let _ = pool;
    /// ```
    pub fn average_1d() -> Self {
        GlobalPooling {
            kind: Kind::Average,
            spatial_axes: 1,
            keepdims: false,
        }
    }
    /// `GlobalAveragePooling2D` over `[B, H, W, C]`.
    ///
    /// ```
    /// let pool = polyhead_layers::GlobalPooling::average_2d();
    /// # let _ = pool;
    /// ```
    pub fn average_2d() -> Self {
        GlobalPooling {
            spatial_axes: 2,
            ..GlobalPooling::average_1d()
        }
    }
    /// `GlobalMaxPooling2D` over `[B, H, W, C]`.
    ///
    /// ```
    /// let pool = polyhead_layers::GlobalPooling::max_2d();
    /// # let _ = pool;
    /// ```
    pub fn max_2d() -> Self {
        GlobalPooling {
            kind: Kind::Max,
            ..GlobalPooling::average_2d()
        }
    }
    /// Keep the pooled axes as size 1 (Keras' `keepdims`).
    ///
    /// ```
    /// let pool = polyhead_layers::GlobalPooling::average_2d().keepdims(true);
    /// # let _ = pool;
    /// ```
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }

    /// `GlobalAveragePooling1D` over the real steps only: `mask` is `[B,
    /// T]` (nonzero = a real step), each row's average divides by its
    /// number of real steps. A row without any is an error (Keras would
    /// give NaN).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::GlobalPooling;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::<f32>::from_vec(vec![1.0, 3.0, 100.0], &[1, 3, 1])?);
    /// let mask = Tensor::from_vec(vec![1.0, 1.0, 0.0], &[1, 3])?;
    /// let y = GlobalPooling::average_1d().forward_masked(x, &mask)?;
    /// assert_eq!(y.value().to_vec(), vec![2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_masked<'t, T: Float>(
        &self,
        x: Var<'t, T>,
        mask: &Tensor<T>,
    ) -> Result<Var<'t, T>> {
        let layer = "global_average_pooling1d";
        if (self.kind, self.spatial_axes) != (Kind::Average, 1) {
            return Err(LayerError::Invalid {
                what: "global_pooling",
                message: "a mask applies to GlobalAveragePooling1D only".into(),
            });
        }
        let s = x.shape();
        if s.len() != 3 {
            return Err(rank_error(layer, "[batch, steps, channels]", &s));
        }
        crate::module::check_sequence_mask(layer, mask, &s)?;
        let m: Vec<T> = mask
            .to_vec()
            .iter()
            .map(|&v| if v != T::ZERO { T::ONE } else { T::ZERO })
            .collect();
        let counts: Vec<T> = m
            .chunks_exact(s[1].max(1))
            .map(|row| row.iter().fold(T::ZERO, |a, &b| a + b))
            .collect();
        if let Some(b) = counts.iter().position(|&c| c == T::ZERO) {
            return Err(LayerError::Shape {
                layer,
                message: format!("row {b} of the mask has no real step to average"),
            });
        }
        let tape = x.tape();
        let weights = Tensor::from_vec(m, &[s[0], s[1], 1])?;
        let sums = x.mul(tape.constant(weights))?.sum_axis(1, self.keepdims)?;
        let shape: Vec<usize> = if self.keepdims {
            vec![s[0], 1, 1]
        } else {
            vec![s[0], 1]
        };
        Ok(sums.div(tape.constant(Tensor::from_vec(counts, &shape)?))?)
    }
}

impl<T: Float> Module<T> for GlobalPooling {
    /// A mean or maximum over the spatial axes; on a masked sequence, the
    /// average over its real steps as in the forward pass (a row with none
    /// gives NaN where the forward pass refuses it).
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        use crate::export::Attribute;
        if let (Kind::Average, 1, Some(mask)) = (self.kind, self.spatial_axes, g.mask(x)) {
            let axis = g.int_constant(&format!("{name}.axes"), &[2]);
            let mask = g.op(name, "Unsqueeze", &[mask, axis], vec![]);
            // ONNX's TensorProto.FLOAT is 1.
            let weights = g.op(name, "Cast", &[mask], vec![("to", Attribute::Int(1))]);
            let kept = g.op(name, "Mul", &[x.to_string(), weights.clone()], vec![]);
            let steps = g.int_constant(&format!("{name}.axes"), &[1]);
            let keepdims = vec![("keepdims", Attribute::Int(i64::from(self.keepdims)))];
            let sums = g.op(name, "ReduceSum", &[kept, steps.clone()], keepdims.clone());
            let counts = g.op(name, "ReduceSum", &[weights, steps], keepdims);
            return Ok(g.op(name, "Div", &[sums, counts], vec![]));
        }
        let op = match self.kind {
            Kind::Max => "ReduceMax",
            Kind::Average => "ReduceMean",
        };
        Ok(g.op(
            name,
            op,
            &[x.to_string()],
            vec![
                (
                    "axes",
                    Attribute::Ints((1..=self.spatial_axes as i64).collect()),
                ),
                ("keepdims", Attribute::Int(i64::from(self.keepdims))),
            ],
        ))
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        // A sequence's mask: the average over its real steps (Keras).
        if let (Kind::Average, 1, Some(mask)) = (self.kind, self.spatial_axes, x.mask()) {
            return self.forward_masked(x, &mask);
        }
        let (layer, expected) = match (self.kind, self.spatial_axes) {
            (Kind::Average, 1) => ("global_average_pooling1d", "[batch, steps, channels]"),
            (Kind::Average, _) => (
                "global_average_pooling2d",
                "[batch, height, width, channels]",
            ),
            (Kind::Max, _) => ("global_max_pooling2d", "[batch, height, width, channels]"),
        };
        let s = x.shape();
        if s.len() != self.spatial_axes + 2 {
            return Err(rank_error(layer, expected, &s));
        }
        let positions: usize = s[1..s.len() - 1].iter().product();
        if positions == 0 {
            return Err(LayerError::Shape {
                layer,
                message: format!("input has no positions to pool (shape {s:?})"),
            });
        }
        // One axis of every position, then the reduction over it; the
        // max's backward goes to the first maximal position (row-major).
        let (batch, c) = (s[0], s[s.len() - 1]);
        let flat = x.reshape(&[batch, positions, c])?;
        let y = match self.kind {
            Kind::Average => flat.mean_axis(1, false)?,
            Kind::Max => flat.max_axis(1, false)?,
        };
        if self.keepdims {
            let mut kept = vec![batch];
            kept.extend(std::iter::repeat_n(1, self.spatial_axes));
            kept.push(c);
            Ok(y.reshape(&kept)?)
        } else {
            Ok(y)
        }
    }
    no_parameters!();
}
