//! Recurrent layers over `[B, T, features]` (Keras' `LSTM` and `GRU`, and
//! `Bidirectional` around either): each a recorded op whose backward
//! (backpropagation through time) sits beside its forward.
//!
//! The input projection of every time step is one product (`[B * T, in] x
//! [in, gates]`) before the loop; only the recurrent product runs step by
//! step. A mask (`[B, T]`, 1 = a real step) makes a padded step carry the
//! state over unchanged, as Keras does: its output is the previous output
//! (zeros before the first real step), and its input gets no gradient.

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use polyhead_autograd::{BackwardContext, Op, Parameter, Var};
use polyhead_tensor::{Float, Rng, Tensor, gemm};

use crate::error::{LayerError, Result};
use crate::initializer::Initializer;
use crate::module::{Module, child};

/// Which recurrence an op runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Gates i, f, c, o (4 blocks).
    Lstm,
    /// Gates z, r, h (3 blocks); `reset_after`: the reset gate multiplies
    /// the recurrent product (Keras' default) rather than the state.
    Gru { reset_after: bool },
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
        }
    }
}

fn sigmoid<T: Float>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// `sigmoid` of every element, `1 / (1 + e^-x)` with the exponentials in
/// one vectorised call (`Float::exp_slice`: the same bits as `exp` for
/// f64, within 1 ulp for f32).
fn sigmoid_slice<T: Float>(values: &mut [T]) {
    for v in values.iter_mut() {
        *v = -*v;
    }
    T::exp_slice(values);
    for v in values.iter_mut() {
        *v = T::ONE / (T::ONE + *v);
    }
}

/// `tanh` of every element. f64: the C library's `tanh`. f32: one minus
/// `2 / (1 + e^{2x})` with the exponentials vectorised, and for `|x| <
/// 0.4` the odd series to `x^15` (where the subtraction would cancel);
/// the test below bounds its error against f64's `tanh`.
#[cfg(test)]
fn tanh_slice<T: Float>(values: &mut [T]) {
    let mut scratch = Vec::new();
    tanh_with(values, &mut scratch);
}

/// [`tanh_slice`] with a buffer the caller keeps (no allocation per call).
fn tanh_with<T: Float>(values: &mut [T], scratch: &mut Vec<T>) {
    if T::NAME != "f32" {
        for v in values.iter_mut() {
            *v = v.tanh();
        }
        return;
    }
    let small = T::from_f64(0.4);
    scratch.clear();
    scratch.extend(values.iter().map(|&x| x + x));
    let e = &mut scratch[..];
    T::exp_slice(e);
    // The odd series of tanh to x^15 (the next term is below 1e-10 of the
    // result for |x| < 0.4); beyond 0.4 the subtraction loses under 2 bits.
    let coefficients = [
        -1.0 / 3.0,
        2.0 / 15.0,
        -17.0 / 315.0,
        62.0 / 2835.0,
        -1382.0 / 155925.0,
        21844.0 / 6081075.0,
        -929569.0 / 638512875.0,
    ]
    .map(T::from_f64);
    let two = T::ONE + T::ONE;
    for (v, &e) in values.iter_mut().zip(e.iter()) {
        let x = *v;
        *v = if x.abs() < small {
            let x2 = x * x;
            let tail = coefficients
                .iter()
                .rev()
                .fold(T::ZERO, |acc, &c| acc * x2 + c);
            x + x * x2 * tail
        } else if x.is_nan() {
            x
        } else {
            // e = inf for large x gives 1; e = 0 for very negative x, -1.
            T::ONE - two / (T::ONE + e)
        };
    }
}

/// `c = a b` (`a` `[m, k]`, `b` `[k, n]`, row-major slices) with `beta`
/// times the old `c` added.
fn product<T: Float>(
    a: &[T],
    b: &[T],
    c: &mut [T],
    (m, k, n): (usize, usize, usize),
    transpose: (bool, bool),
    beta: T,
) -> polyhead_tensor::Result<()> {
    let a = view(a, m, k, transpose.0);
    let b = view(b, k, n, transpose.1);
    let c = ArrayViewMut2::from_shape((m, n), c).expect("output shape");
    gemm(T::ONE, a, b, beta, c)
}

/// `s` as a `[rows, cols]` matrix, or as the transpose of a row-major
/// `[cols, rows]` one.
fn view<T: Float>(s: &[T], rows: usize, cols: usize, transposed: bool) -> ArrayView2<'_, T> {
    if transposed {
        ArrayView2::from_shape((cols, rows), s)
            .expect("operand shape")
            .reversed_axes()
    } else {
        ArrayView2::from_shape((rows, cols), s).expect("operand shape")
    }
}

/// The recorded recurrence. Inputs: `x [B, T, D]`, `kernel [D, G U]`,
/// `recurrent [U, G U]`, then (if `bias`) the bias (`[G U]`, or `[2, 3U]`
/// for a GRU with `reset_after`), then (if `initial`) the initial state
/// (`h0 [B, U]`, and `c0 [B, U]` for an LSTM). Output: per step the state,
/// `[B, T, U]` (GRU) or `[B, T, 2U]` (LSTM: h then c), at the input's time
/// positions (a `reverse` op reads from the end).
struct RecurrentOp<T: Float> {
    cell: Cell,
    units: usize,
    bias: bool,
    initial: bool,
    reverse: bool,
    /// `[B * T]`, true = a real step.
    mask: Option<Vec<bool>>,
    /// Saved by forward: the gate activations per step `[B, T, G U]`, and
    /// for a GRU the recurrent candidate term (`rh` or `r * h_prev`).
    gates: Vec<T>,
    extra: Vec<T>,
}

/// For a GRU without `reset_after`, the candidate's (h) block of the
/// recurrent kernel `[U, G U]` as its own `[U, U]` copy (`r * h` is
/// multiplied by it alone); empty otherwise.
fn candidate_block<T: Float>(cell: Cell, recurrent: &[T], g: usize, u: usize) -> Vec<T> {
    match cell {
        Cell::Gru { reset_after: false } => recurrent
            .chunks_exact(g * u)
            .flat_map(|row| row[2 * u..].iter().copied())
            .collect(),
        _ => Vec::new(),
    }
}

impl<T: Float> RecurrentOp<T> {
    /// The LSTM's loop, fast: each step's recurrent product accumulates
    /// into that step's rows of the input projection `xz` (which then holds
    /// the gates), the gate activations run over whole rows, and `tanh(c)`
    /// is kept for backward in `extra`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_steps(
        &mut self,
        xz: &mut [T],
        recurrent: &[T],
        h: &mut [T],
        c: &mut [T],
        out: &mut [T],
        (batch, steps): (usize, usize),
    ) -> polyhead_tensor::Result<()> {
        let u = self.units;
        let width = 2 * u;
        self.extra = vec![T::ZERO; batch * steps * u];
        if batch == 0 {
            return Ok(());
        }
        let rk = ArrayView2::from_shape((u, 4 * u), recurrent).expect("recurrent kernel shape");
        let mut tc = vec![T::ZERO; u];
        let mut scratch = Vec::with_capacity(u);
        for t in self.order(steps) {
            {
                let hv = ArrayView2::from_shape((batch, u), &*h).expect("state shape");
                let rows = ArrayViewMut2::from_shape(
                    (batch, 4 * u).strides((steps * 4 * u, 1)),
                    &mut xz[t * 4 * u..],
                )
                .expect("step rows");
                gemm(T::ONE, hv, rk, T::ONE, rows)?;
            }
            for b in 0..batch {
                let o = (b * steps + t) * width;
                if !self.real(b, t, steps) {
                    out[o..o + u].copy_from_slice(&h[b * u..(b + 1) * u]);
                    out[o + u..o + 2 * u].copy_from_slice(&c[b * u..(b + 1) * u]);
                    continue;
                }
                let at = (b * steps + t) * 4 * u;
                let z = &mut xz[at..at + 4 * u];
                sigmoid_slice(&mut z[..2 * u]);
                tanh_with(&mut z[2 * u..3 * u], &mut scratch);
                sigmoid_slice(&mut z[3 * u..]);
                for j in 0..u {
                    let cn = z[u + j] * c[b * u + j] + z[j] * z[2 * u + j];
                    c[b * u + j] = cn;
                    tc[j] = cn;
                }
                tanh_with(&mut tc, &mut scratch);
                for j in 0..u {
                    let hn = z[3 * u + j] * tc[j];
                    h[b * u + j] = hn;
                    out[o + j] = hn;
                    out[o + u + j] = c[b * u + j];
                }
                self.extra[(b * steps + t) * u..(b * steps + t + 1) * u].copy_from_slice(&tc);
            }
        }
        Ok(())
    }

    fn dims(&self, x: &Tensor<T>) -> (usize, usize, usize) {
        let s = x.shape();
        (s[0], s[1], s[2])
    }
    /// Output features per step.
    fn width(&self) -> usize {
        match self.cell {
            Cell::Lstm => 2 * self.units,
            Cell::Gru { .. } => self.units,
        }
    }
    fn real(&self, b: usize, t: usize, steps: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m[b * steps + t])
    }
    /// Time positions in processing order.
    fn order(&self, steps: usize) -> Vec<usize> {
        if self.reverse {
            (0..steps).rev().collect()
        } else {
            (0..steps).collect()
        }
    }
}

fn contiguous<T: Float>(t: &Tensor<T>) -> std::borrow::Cow<'_, [T]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_vec()),
    }
}

impl<T: Float> Op<T> for RecurrentOp<T> {
    fn name(&self) -> &'static str {
        match self.cell {
            Cell::Lstm => "lstm",
            Cell::Gru { .. } => "gru",
        }
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> polyhead_autograd::Result<Tensor<T>> {
        let (batch, steps, d) = self.dims(inputs[0]);
        let (u, g) = (self.units, self.cell.gates());
        let x = contiguous(inputs[0]);
        let kernel = contiguous(inputs[1]);
        let recurrent = contiguous(inputs[2]);
        let bias = self.bias.then(|| contiguous(inputs[3]));
        let first_state = 3 + usize::from(self.bias);
        // Every step's input projection at once, plus the input bias.
        let mut xz = vec![T::ZERO; batch * steps * g * u];
        product(
            &x,
            &kernel,
            &mut xz,
            (batch * steps, d, g * u),
            (false, false),
            T::ZERO,
        )?;
        if let Some(b) = &bias {
            for row in xz.chunks_exact_mut(g * u) {
                for (v, &b) in row.iter_mut().zip(&b[..g * u]) {
                    *v += b;
                }
            }
        }
        let recurrent_bias: Option<&[T]> = match (self.cell, &bias) {
            (Cell::Gru { reset_after: true }, Some(b)) => Some(&b[g * u..]),
            _ => None,
        };
        let mut h = vec![T::ZERO; batch * u];
        let mut c = vec![T::ZERO; batch * u];
        if self.initial {
            h.copy_from_slice(&contiguous(inputs[first_state]));
            if self.cell == Cell::Lstm {
                c.copy_from_slice(&contiguous(inputs[first_state + 1]));
            }
        }
        let width = self.width();
        let mut out = vec![T::ZERO; batch * steps * width];
        if self.cell == Cell::Lstm {
            self.lstm_steps(
                &mut xz,
                &recurrent,
                &mut h,
                &mut c,
                &mut out,
                (batch, steps),
            )?;
            self.gates = xz;
            return Ok(Tensor::from_vec(out, &[batch, steps, width])?);
        }
        self.gates = vec![T::ZERO; batch * steps * g * u];
        self.extra = match self.cell {
            Cell::Gru { .. } => vec![T::ZERO; batch * steps * u],
            Cell::Lstm => Vec::new(),
        };
        let mut hr = vec![T::ZERO; batch * g * u];
        let mut rh = vec![T::ZERO; batch * u];
        // A GRU without reset_after multiplies r * h by the h block of the
        // recurrent kernel: that block, copied once.
        let rk_h = candidate_block(self.cell, &recurrent, g, u);
        let mut rh_product = vec![T::ZERO; batch * u];
        for t in self.order(steps) {
            // The recurrent product of the previous state (GRU without
            // reset_after: the z and r blocks only; h waits for r).
            product(
                &h,
                &recurrent,
                &mut hr,
                (batch, u, g * u),
                (false, false),
                T::ZERO,
            )?;
            if let Cell::Gru { reset_after: false } = self.cell {
                for b in 0..batch {
                    let at = (b * steps + t) * g * u;
                    for j in 0..u {
                        let r = sigmoid(xz[at + u + j] + hr[b * g * u + u + j]);
                        rh[b * u + j] = r * h[b * u + j];
                    }
                }
                // (r * h) R_h: the h block of the recurrent kernel.
                product(
                    &rh,
                    &rk_h,
                    &mut rh_product,
                    (batch, u, u),
                    (false, false),
                    T::ZERO,
                )?;
            }
            for b in 0..batch {
                if !self.real(b, t, steps) {
                    // A padded step: the state carries over.
                    let o = (b * steps + t) * width;
                    out[o..o + u].copy_from_slice(&h[b * u..(b + 1) * u]);
                    if self.cell == Cell::Lstm {
                        out[o + u..o + 2 * u].copy_from_slice(&c[b * u..(b + 1) * u]);
                    }
                    continue;
                }
                let at = (b * steps + t) * g * u;
                let z = &xz[at..at + g * u];
                let r = &hr[b * g * u..(b + 1) * g * u];
                let gates = &mut self.gates[at..at + g * u];
                let o = (b * steps + t) * width;
                match self.cell {
                    Cell::Lstm => {
                        for j in 0..u {
                            let i = sigmoid(z[j] + r[j]);
                            let f = sigmoid(z[u + j] + r[u + j]);
                            let cand = (z[2 * u + j] + r[2 * u + j]).tanh();
                            let og = sigmoid(z[3 * u + j] + r[3 * u + j]);
                            let cn = f * c[b * u + j] + i * cand;
                            let hn = og * cn.tanh();
                            gates[j] = i;
                            gates[u + j] = f;
                            gates[2 * u + j] = cand;
                            gates[3 * u + j] = og;
                            c[b * u + j] = cn;
                            h[b * u + j] = hn;
                            out[o + j] = hn;
                            out[o + u + j] = cn;
                        }
                    }
                    Cell::Gru { reset_after } => {
                        let extra = &mut self.extra[(b * steps + t) * u..(b * steps + t + 1) * u];
                        for j in 0..u {
                            let (rz, rr) = match recurrent_bias {
                                Some(rb) => (r[j] + rb[j], r[u + j] + rb[u + j]),
                                None => (r[j], r[u + j]),
                            };
                            let zg = sigmoid(z[j] + rz);
                            let rg = sigmoid(z[u + j] + rr);
                            let term = if reset_after {
                                let rh = r[2 * u + j]
                                    + recurrent_bias.map_or(T::ZERO, |rb| rb[2 * u + j]);
                                extra[j] = rh;
                                rg * rh
                            } else {
                                extra[j] = rh[b * u + j];
                                rh_product[b * u + j]
                            };
                            let cand = (z[2 * u + j] + term).tanh();
                            let hn = zg * h[b * u + j] + (T::ONE - zg) * cand;
                            gates[j] = zg;
                            gates[u + j] = rg;
                            gates[2 * u + j] = cand;
                            h[b * u + j] = hn;
                            out[o + j] = hn;
                        }
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, &[batch, steps, width])?)
    }

    fn backward(
        &self,
        ctx: &BackwardContext<'_, T>,
    ) -> polyhead_autograd::Result<Vec<Option<Tensor<T>>>> {
        let (batch, steps, d) = self.dims(ctx.inputs[0]);
        let (u, g, width) = (self.units, self.cell.gates(), self.width());
        let x = contiguous(ctx.inputs[0]);
        let kernel = contiguous(ctx.inputs[1]);
        let recurrent = contiguous(ctx.inputs[2]);
        let out = contiguous(ctx.output);
        let grad = contiguous(ctx.grad_output);
        let first_state = 3 + usize::from(self.bias);
        let (h0, c0) = if self.initial {
            (
                contiguous(ctx.inputs[first_state]).into_owned(),
                match self.cell {
                    Cell::Lstm => contiguous(ctx.inputs[first_state + 1]).into_owned(),
                    Cell::Gru { .. } => vec![T::ZERO; batch * u],
                },
            )
        } else {
            (vec![T::ZERO; batch * u], vec![T::ZERO; batch * u])
        };
        // The state before step t (in processing order): the previous
        // step's output, or the initial state.
        let order = self.order(steps);
        let previous = |b: usize, k: usize, cell_state: bool| -> &[T] {
            let offset = if cell_state { u } else { 0 };
            if k == 0 {
                let s = if cell_state { &c0 } else { &h0 };
                &s[b * u..(b + 1) * u]
            } else {
                let o = (b * steps + order[k - 1]) * width + offset;
                &out[o..o + u]
            }
        };
        let recurrent_bias = matches!(self.cell, Cell::Gru { reset_after: true }) && self.bias;
        // Gradients of the pre-activations: dxz for the input projection,
        // dhr for the recurrent product (they differ for the GRU).
        let mut dxz = vec![T::ZERO; batch * steps * g * u];
        let mut drecurrent = vec![T::ZERO; u * g * u];
        let mut drecurrent_bias = vec![T::ZERO; g * u];
        let mut dh_next = vec![T::ZERO; batch * u];
        let mut dc_next = vec![T::ZERO; batch * u];
        let mut dhr = vec![T::ZERO; batch * g * u];
        let mut h_prev = vec![T::ZERO; batch * u];
        let mut dh_prev = vec![T::ZERO; batch * u];
        let mut h_prev_all = vec![T::ZERO; batch * steps * u];
        let mut dhr_all = vec![T::ZERO; batch * steps * g * u];
        // A GRU without reset_after: the candidate's gradient per step, and
        // its share of the recurrent kernel's gradient.
        let mut da = vec![T::ZERO; batch * u];
        let mut drk_h = vec![T::ZERO; u * u];
        let mut rh_prev = vec![T::ZERO; batch * u];
        let mut drh = vec![T::ZERO; batch * u];
        let rk_h = candidate_block(self.cell, &recurrent, g, u);
        for k in (0..steps).rev() {
            let t = order[k];
            dhr.fill(T::ZERO);
            drh.fill(T::ZERO);
            for b in 0..batch {
                h_prev[b * u..(b + 1) * u].copy_from_slice(previous(b, k, false));
            }
            for b in 0..batch {
                let o = (b * steps + t) * width;
                let real = self.real(b, t, steps);
                for j in 0..u {
                    let dh = grad[o + j] + dh_next[b * u + j];
                    if !real {
                        // The state passed through: so does its gradient.
                        dh_next[b * u + j] = dh;
                        if self.cell == Cell::Lstm {
                            dc_next[b * u + j] += grad[o + u + j];
                        }
                        continue;
                    }
                    let at = (b * steps + t) * g * u;
                    let gates = &self.gates[at..at + g * u];
                    match self.cell {
                        Cell::Lstm => {
                            let (i, f, cand, og) =
                                (gates[j], gates[u + j], gates[2 * u + j], gates[3 * u + j]);
                            let tc = self.extra[(b * steps + t) * u + j];
                            let c_prev = previous(b, k, true)[j];
                            let dc =
                                grad[o + u + j] + dc_next[b * u + j] + dh * og * (T::ONE - tc * tc);
                            let pre = [
                                dc * cand * i * (T::ONE - i),
                                dc * c_prev * f * (T::ONE - f),
                                dc * i * (T::ONE - cand * cand),
                                dh * tc * og * (T::ONE - og),
                            ];
                            for (q, p) in pre.into_iter().enumerate() {
                                dxz[at + q * u + j] = p;
                                dhr[b * g * u + q * u + j] = p;
                            }
                            dc_next[b * u + j] = dc * f;
                            dh_next[b * u + j] = T::ZERO;
                        }
                        Cell::Gru { reset_after } => {
                            let (zg, rg, cand) = (gates[j], gates[u + j], gates[2 * u + j]);
                            let hp = h_prev[b * u + j];
                            let extra = self.extra[(b * steps + t) * u + j];
                            let dz = dh * (hp - cand) * zg * (T::ONE - zg);
                            let da = dh * (T::ONE - zg) * (T::ONE - cand * cand);
                            let dr = if reset_after { da * extra } else { T::ZERO };
                            dxz[at + j] = dz;
                            dxz[at + 2 * u + j] = da;
                            dhr[b * g * u + j] = dz;
                            if reset_after {
                                let dzr = dr * rg * (T::ONE - rg);
                                dxz[at + u + j] = dzr;
                                dhr[b * g * u + u + j] = dzr;
                                dhr[b * g * u + 2 * u + j] = da * rg;
                            } else {
                                // r * h_prev feeds R_h: its gradient waits
                                // for the product below.
                                rh_prev[b * u + j] = extra;
                            }
                            dh_next[b * u + j] = dh * zg;
                        }
                    }
                }
            }
            if let Cell::Gru { reset_after: false } = self.cell {
                // d(r * h) = da R_h^T; then r's gradient and h's share.
                for (b, row) in da.chunks_exact_mut(u).enumerate() {
                    let at = (b * steps + t) * g * u;
                    row.copy_from_slice(&dxz[at + 2 * u..at + 3 * u]);
                }
                product(&da, &rk_h, &mut drh, (batch, u, u), (false, true), T::ZERO)?;
                // dR_h += (r * h_prev)^T da.
                product(
                    &rh_prev,
                    &da,
                    &mut drk_h,
                    (u, batch, u),
                    (true, false),
                    T::ZERO,
                )?;
                for (row, add) in drecurrent
                    .chunks_exact_mut(g * u)
                    .zip(drk_h.chunks_exact(u))
                {
                    for (v, &a) in row[2 * u..].iter_mut().zip(add) {
                        *v += a;
                    }
                }
                for b in 0..batch {
                    if !self.real(b, t, steps) {
                        continue;
                    }
                    let at = (b * steps + t) * g * u;
                    for j in 0..u {
                        let rg = self.gates[at + u + j];
                        let dr = drh[b * u + j] * h_prev[b * u + j];
                        let dzr = dr * rg * (T::ONE - rg);
                        dxz[at + u + j] = dzr;
                        dhr[b * g * u + u + j] = dzr;
                        dh_next[b * u + j] += drh[b * u + j] * rg;
                    }
                }
            }
            // The recurrent product's share: dh_prev += dhr R^T (for a GRU
            // without reset_after, R_h's share is in dh_next already and
            // its dhr block is zero), dR += h_prev^T dhr.
            product(
                &dhr,
                &recurrent,
                &mut dh_prev,
                (batch, g * u, u),
                (false, true),
                T::ZERO,
            )?;
            for (n, &p) in dh_next.iter_mut().zip(&dh_prev) {
                *n += p;
            }
            // dR += h_prev^T dhr waits for one product over every step.
            for b in 0..batch {
                let row = b * steps + t;
                h_prev_all[row * u..(row + 1) * u].copy_from_slice(&h_prev[b * u..(b + 1) * u]);
                dhr_all[row * g * u..(row + 1) * g * u]
                    .copy_from_slice(&dhr[b * g * u..(b + 1) * g * u]);
            }
            if recurrent_bias {
                for row in dhr.chunks_exact(g * u) {
                    for (v, &d) in drecurrent_bias.iter_mut().zip(row) {
                        *v += d;
                    }
                }
            }
        }
        product(
            &h_prev_all,
            &dhr_all,
            &mut drecurrent,
            (u, batch * steps, g * u),
            (true, false),
            T::ONE,
        )?;
        let dx = ctx.grad_for(0, || {
            let mut dx = vec![T::ZERO; batch * steps * d];
            product(
                &dxz,
                &kernel,
                &mut dx,
                (batch * steps, g * u, d),
                (false, true),
                T::ZERO,
            )?;
            Ok(Tensor::from_vec(dx, ctx.inputs[0].shape())?)
        })?;
        let dk = ctx.grad_for(1, || {
            let mut dk = vec![T::ZERO; d * g * u];
            product(
                &x,
                &dxz,
                &mut dk,
                (d, batch * steps, g * u),
                (true, false),
                T::ZERO,
            )?;
            Ok(Tensor::from_vec(dk, ctx.inputs[1].shape())?)
        })?;
        let dr = ctx.grad_for(2, || {
            Ok(Tensor::from_vec(drecurrent.clone(), ctx.inputs[2].shape())?)
        })?;
        let mut grads = vec![dx, dk, dr];
        if self.bias {
            grads.push(ctx.grad_for(3, || {
                let mut db = vec![T::ZERO; g * u];
                for row in dxz.chunks_exact(g * u) {
                    for (v, &dz) in db.iter_mut().zip(row) {
                        *v += dz;
                    }
                }
                if recurrent_bias {
                    db.extend_from_slice(&drecurrent_bias);
                }
                Ok(Tensor::from_vec(db, ctx.inputs[3].shape())?)
            })?);
        }
        if self.initial {
            grads.push(ctx.grad_for(first_state, || {
                Ok(Tensor::from_vec(dh_next.clone(), &[batch, u])?)
            })?);
            if self.cell == Cell::Lstm {
                grads.push(ctx.grad_for(first_state + 1, || {
                    Ok(Tensor::from_vec(dc_next.clone(), &[batch, u])?)
                })?);
            }
        }
        Ok(grads)
    }
}

/// The parameters and options an LSTM or GRU layer shares.
#[derive(Debug, Clone)]
struct Recurrence<T: Float> {
    cell: Cell,
    units: usize,
    kernel: Parameter<T>,
    recurrent_kernel: Parameter<T>,
    bias: Option<Parameter<T>>,
    return_sequences: bool,
    layer: &'static str,
}

/// Recurrent layers as ONNX's `LSTM` / `GRU` operators (time-major, so
/// the input and outputs are transposed around the node): `directions`
/// are the forward and, for a bidirectional layer, the backward recurrence,
/// merged by `merge`. On a masked sequence (an embedding's `mask_zero`),
/// each direction is a `Scan` instead ([`Recurrence::export_scan`]), since
/// ONNX's operators cannot skip padded steps in the middle of a sequence.
fn export_recurrence<T: Float>(
    directions: &[&Recurrence<T>],
    merge: Merge,
    g: &mut crate::export::Graph,
    name: &str,
    x: &str,
) -> Result<String> {
    use crate::export::Attribute;
    let first = directions[0];
    if let Some(mask) = g.mask(x) {
        let mut sequences = Vec::new();
        let mut lasts = Vec::new();
        for (k, dir) in directions.iter().enumerate() {
            let side = if k == 0 { "forward" } else { "backward" };
            let (seq, last) = dir.export_scan(g, &format!("{name}/{side}"), x, &mask, k == 1)?;
            sequences.push(seq);
            lasts.push(last);
        }
        let (parts, axis) = if first.return_sequences {
            (sequences, 2)
        } else {
            (lasts, 1)
        };
        let y = match merge {
            Merge::Sum if parts.len() == 2 => g.op(name, "Add", &parts, vec![]),
            _ if parts.len() == 1 => parts[0].clone(),
            _ => g.op(name, "Concat", &parts, vec![("axis", Attribute::Int(axis))]),
        };
        if first.return_sequences {
            g.pass_mask(x, &y);
        }
        return Ok(y);
    }
    let units = first.units;
    let (op, outputs, mut attributes) = match first.cell {
        Cell::Lstm => ("LSTM", 3, vec![]),
        Cell::Gru { reset_after } => (
            "GRU",
            2,
            vec![(
                "linear_before_reset",
                Attribute::Int(i64::from(reset_after)),
            )],
        ),
    };
    attributes.push(("hidden_size", Attribute::Int(units as i64)));
    let d = directions.len();
    attributes.push((
        "direction",
        Attribute::String(if d == 2 { "bidirectional" } else { "forward" }.into()),
    ));
    let mut w = Vec::new();
    let mut r = Vec::new();
    let mut b = Vec::new();
    for dir in directions {
        let (wi, ri, bi) = dir.onnx_weights()?;
        w.push(wi);
        r.push(ri);
        b.push(bi);
    }
    let w = g.constant(&format!("{name}.W"), &Tensor::stack(&w, 0)?);
    let r = g.constant(&format!("{name}.R"), &Tensor::stack(&r, 0)?);
    let b = g.constant(&format!("{name}.B"), &Tensor::stack(&b, 0)?);
    let time_major = g.transpose(name, x, &[1, 0, 2]);
    let out = g.op_outputs(name, op, &[time_major, w, r, b], attributes, outputs);
    let reduce_directions = |g: &mut crate::export::Graph, value: String, axis: i64| {
        let axes = g.int_constant(&format!("{name}.axes"), &[axis]);
        g.op(
            name,
            "ReduceSum",
            &[value, axes],
            vec![("keepdims", Attribute::Int(0))],
        )
    };
    if first.return_sequences {
        // Y [T, D, B, U] -> [B, T, D, U] -> [B, T, D*U] (concat) or sum.
        let y = g.transpose(name, &out[0], &[2, 0, 1, 3]);
        Ok(match merge {
            Merge::Sum if d == 2 => reduce_directions(g, y, 2),
            _ => {
                let shape = g.int_constant(&format!("{name}.shape"), &[0, 0, -1]);
                g.op(name, "Reshape", &[y, shape], vec![])
            }
        })
    } else {
        // Y_h [D, B, U] -> [B, D, U] -> [B, D*U] (concat) or sum.
        let h = g.transpose(name, &out[1], &[1, 0, 2]);
        Ok(match merge {
            Merge::Sum if d == 2 => reduce_directions(g, h, 1),
            _ => {
                let shape = g.int_constant(&format!("{name}.shape"), &[0, -1]);
                g.op(name, "Reshape", &[h, shape], vec![])
            }
        })
    }
}

impl<T: Float> Recurrence<T> {
    /// One direction over a masked sequence as ONNX `Scan` over the steps,
    /// in ONNX's LSTM/GRU equations and weights ([`Self::onnx_weights`]):
    /// a padded step keeps the state and repeats the previous output, as
    /// the forward pass does. `mask` is boolean `[B, T]`; a `reverse`
    /// direction reads the steps from the end and its outputs are
    /// realigned. Returns every step's output `[B, T, U]` and the final
    /// state `[B, U]`.
    ///
    /// Each gate has its own products (no `Split` in the body: tract's
    /// optimiser fails on a split scan input).
    fn export_scan(
        &self,
        g: &mut crate::export::Graph,
        name: &str,
        x: &str,
        mask: &str,
        reverse: bool,
    ) -> Result<(String, String)> {
        use crate::export::{Attribute, ElementType, Subgraph};
        let (u, gates) = (self.units, self.cell.gates());
        let gu = gates * u;
        let (w, r, b) = self.onnx_weights()?;
        // Gate k's block of rows of `t` (from `offset`), transposed for a
        // product on the right.
        let block = |t: &Tensor<T>, k: usize| -> Result<Tensor<T>> {
            Ok(t.slice_axis(0, k * u, (k + 1) * u)?
                .transpose(0, 1)?
                .to_contiguous())
        };
        let bias = |k: usize, offset: usize| -> Result<Tensor<T>> {
            Ok(b.slice_axis(0, offset + k * u, offset + (k + 1) * u)?
                .to_contiguous())
        };
        let flip = |g: &mut crate::export::Graph, v: String| {
            let starts = g.int_constant(&format!("{name}.starts"), &[-1]);
            let ends = g.int_constant(&format!("{name}.ends"), &[i64::MIN]);
            let axes = g.int_constant(&format!("{name}.axes"), &[1]);
            let steps = g.int_constant(&format!("{name}.steps"), &[-1]);
            g.op(name, "Slice", &[v, starts, ends, axes, steps], vec![])
        };
        let (mut x, mut mask) = (x.to_string(), mask.to_string());
        if reverse {
            x = flip(g, x);
            mask = flip(g, mask);
        }
        // Every step's input projection and input bias at once, a
        // [B, T, U] value per gate.
        let mut scanned = Vec::new();
        for k in 0..gates {
            let kernel = g.constant(&format!("{name}.W"), &block(&w, k)?);
            let projected = g.op(name, "MatMul", &[x.clone(), kernel], vec![]);
            let input_bias = g.constant(&format!("{name}.Wb"), &bias(k, 0)?);
            scanned.push(g.op(name, "Add", &[projected, input_bias], vec![]));
        }
        let axis = g.int_constant(&format!("{name}.axes"), &[2]);
        scanned.push(g.op(name, "Unsqueeze", &[mask, axis], vec![]));
        // The zero initial state [B, U]: zeros [1, U] expanded to the batch.
        let shape = g.op(name, "Shape", &[x], vec![]);
        let (from, to) = (
            g.int_constant(&format!("{name}.starts"), &[0]),
            g.int_constant(&format!("{name}.ends"), &[1]),
        );
        let batch = g.op(name, "Slice", &[shape, from, to], vec![]);
        let units = g.int_constant(&format!("{name}.units"), &[u as i64]);
        let state_shape = g.op(
            name,
            "Concat",
            &[batch, units],
            vec![("axis", Attribute::Int(0))],
        );
        let zeros = g.constant(&format!("{name}.zeros"), &Tensor::<T>::zeros(&[1, u])?);
        let zero_state = g.op(name, "Expand", &[zeros, state_shape], vec![]);

        // The body: one step on (states..., each gate's input, mask).
        let mut body = g.nested();
        let step = format!("{name}/step");
        let lstm = self.cell == Cell::Lstm;
        let h = body.fresh(&format!("{step}/h"));
        let mut inputs = vec![(h.clone(), ElementType::Float)];
        let c = body.fresh(&format!("{step}/c"));
        if lstm {
            inputs.push((c.clone(), ElementType::Float));
        }
        let gate_inputs: Vec<String> = (0..gates)
            .map(|_| body.fresh(&format!("{step}/x")))
            .collect();
        inputs.extend(gate_inputs.iter().map(|v| (v.clone(), ElementType::Float)));
        let m = body.fresh(&format!("{step}/mask"));
        inputs.push((m.clone(), ElementType::Bool));
        // Gate k's pre-activation: its input plus h R_k (+ recurrent bias).
        let recurrent = |body: &mut crate::export::Graph, k: usize| -> Result<String> {
            let rk = body.constant(&format!("{step}.R"), &block(&r, k)?);
            let hr = body.op(&step, "MatMul", &[h.clone(), rk], vec![]);
            let rb = body.constant(&format!("{step}.Rb"), &bias(k, gu)?);
            Ok(body.op(&step, "Add", &[hr, rb], vec![]))
        };
        let new_states = match self.cell {
            Cell::Lstm => {
                // ONNX's gate order i, o, f, c.
                let mut pre = Vec::new();
                for (k, input) in gate_inputs.iter().enumerate() {
                    let hr = recurrent(&mut body, k)?;
                    pre.push(body.op(&step, "Add", &[input.clone(), hr], vec![]));
                }
                let i = body.op(&step, "Sigmoid", &[pre[0].clone()], vec![]);
                let o = body.op(&step, "Sigmoid", &[pre[1].clone()], vec![]);
                let f = body.op(&step, "Sigmoid", &[pre[2].clone()], vec![]);
                let cand = body.op(&step, "Tanh", &[pre[3].clone()], vec![]);
                let kept = body.op(&step, "Mul", &[f, c.clone()], vec![]);
                let added = body.op(&step, "Mul", &[i, cand], vec![]);
                let c_new = body.op(&step, "Add", &[kept, added], vec![]);
                let squashed = body.op(&step, "Tanh", std::slice::from_ref(&c_new), vec![]);
                let h_new = body.op(&step, "Mul", &[o, squashed], vec![]);
                vec![(h_new, h.clone()), (c_new, c)]
            }
            Cell::Gru { reset_after } => {
                // ONNX's gate order z, r, h.
                let hz = recurrent(&mut body, 0)?;
                let zs = body.op(&step, "Add", &[gate_inputs[0].clone(), hz], vec![]);
                let update = body.op(&step, "Sigmoid", &[zs], vec![]);
                let hr = recurrent(&mut body, 1)?;
                let rs = body.op(&step, "Add", &[gate_inputs[1].clone(), hr], vec![]);
                let reset = body.op(&step, "Sigmoid", &[rs], vec![]);
                let term = if reset_after {
                    let hh = recurrent(&mut body, 2)?;
                    body.op(&step, "Mul", &[reset, hh], vec![])
                } else {
                    // (r * h) R_h (a GRU without reset_after has no
                    // recurrent bias).
                    let rh = body.constant(&format!("{step}.R"), &block(&r, 2)?);
                    let gated = body.op(&step, "Mul", &[reset, h.clone()], vec![]);
                    body.op(&step, "MatMul", &[gated, rh], vec![])
                };
                let pre = body.op(&step, "Add", &[gate_inputs[2].clone(), term], vec![]);
                let cand = body.op(&step, "Tanh", &[pre], vec![]);
                let one = body.constant(&format!("{step}.one"), &Tensor::<T>::ones(&[1])?);
                let rest = body.op(&step, "Sub", &[one, update.clone()], vec![]);
                let fresh = body.op(&step, "Mul", &[rest, cand], vec![]);
                let kept = body.op(&step, "Mul", &[update, h.clone()], vec![]);
                let h_new = body.op(&step, "Add", &[fresh, kept], vec![]);
                vec![(h_new, h.clone())]
            }
        };
        // A padded step keeps every state; the step's output is the state.
        let mut outputs: Vec<(String, ElementType)> = new_states
            .into_iter()
            .map(|(new, old)| {
                let kept = body.op(&step, "Where", &[m.clone(), new, old], vec![]);
                (kept, ElementType::Float)
            })
            .collect();
        let output = body.op(&step, "Identity", &[outputs[0].0.clone()], vec![]);
        outputs.push((output, ElementType::Float));
        let state_count = outputs.len() - 1;
        let body = Subgraph {
            graph: body,
            inputs,
            outputs,
        };
        let mut scan_inputs = vec![zero_state; state_count];
        scan_inputs.extend(scanned);
        let out = g.op_outputs(
            name,
            "Scan",
            &scan_inputs,
            vec![
                ("body", Attribute::Graph(Box::new(body))),
                ("num_scan_inputs", Attribute::Int(gates as i64 + 1)),
                ("scan_input_axes", Attribute::Ints(vec![1; gates + 1])),
                ("scan_output_axes", Attribute::Ints(vec![1])),
            ],
            state_count + 1,
        );
        let mut sequence = out[state_count].clone();
        if reverse {
            sequence = flip(g, sequence);
        }
        Ok((sequence, out[0].clone()))
    }

    /// ONNX's `W [G U, in]`, `R [G U, U]` and `B [2 G U]` for this
    /// direction: gate blocks in ONNX's order (LSTM i, o, f, c from Keras'
    /// i, f, c, o; GRU z, r, h as Keras), the input bias then the
    /// recurrent one.
    fn onnx_weights(&self) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
        let u = self.units;
        let order: &[usize] = match self.cell {
            Cell::Lstm => &[0, 3, 1, 2],
            Cell::Gru { .. } => &[0, 1, 2],
        };
        let gu = order.len() * u;
        let blocks = |t: &Tensor<T>| -> Result<Tensor<T>> {
            let parts: Vec<Tensor<T>> = order
                .iter()
                .map(|&k| {
                    t.slice_axis(0, k * u, (k + 1) * u)
                        .map(|p| p.to_contiguous())
                })
                .collect::<std::result::Result<_, _>>()?;
            Ok(Tensor::concat(&parts, 0)?)
        };
        let w = blocks(&self.kernel.value().transpose(0, 1)?.to_contiguous())?;
        let r = blocks(
            &self
                .recurrent_kernel
                .value()
                .transpose(0, 1)?
                .to_contiguous(),
        )?;
        let zeros = Tensor::<T>::zeros(&[gu])?;
        let (input_bias, recurrent_bias) = match (&self.bias, self.cell) {
            (None, _) => (zeros.clone(), zeros),
            (Some(b), Cell::Gru { reset_after: true }) => {
                let b = b.value();
                (
                    blocks(&b.slice_axis(0, 0, 1)?.reshape(&[gu])?)?,
                    blocks(&b.slice_axis(0, 1, 2)?.reshape(&[gu])?)?,
                )
            }
            (Some(b), _) => (blocks(b.value())?, zeros),
        };
        Ok((w, r, Tensor::concat(&[input_bias, recurrent_bias], 0)?))
    }

    fn new(
        cell: Cell,
        input_dim: usize,
        units: usize,
        layer: &'static str,
        rng: &mut Rng,
    ) -> Result<Self> {
        if input_dim == 0 || units == 0 {
            return Err(LayerError::Invalid {
                what: layer,
                message: format!(
                    "input features and units must be at least 1 (got {input_dim} and {units})"
                ),
            });
        }
        let g = cell.gates();
        // Keras' defaults: Glorot-uniform kernel, an orthogonal recurrent
        // kernel (here Glorot-uniform over its [U, G U] shape: polyhead has
        // no orthogonal initializer yet), zero bias with the LSTM's forget
        // gate at 1 (`unit_forget_bias`).
        let kernel = Initializer::GlorotUniform.init::<T>(
            &[input_dim, g * units],
            input_dim,
            g * units,
            rng,
        )?;
        let recurrent =
            Initializer::GlorotUniform.init::<T>(&[units, g * units], units, g * units, rng)?;
        let bias = match cell {
            Cell::Lstm => {
                let mut b = vec![T::ZERO; 4 * units];
                b[units..2 * units].fill(T::ONE);
                Tensor::from_vec(b, &[4 * units])?
            }
            Cell::Gru { reset_after: true } => Tensor::zeros(&[2, 3 * units])?,
            Cell::Gru { reset_after: false } => Tensor::zeros(&[3 * units])?,
        };
        Ok(Recurrence {
            cell,
            units,
            kernel: Parameter::new(kernel),
            recurrent_kernel: Parameter::new(recurrent),
            bias: Some(Parameter::new(bias)),
            return_sequences: false,
            layer,
        })
    }

    fn input_dim(&self) -> usize {
        self.kernel.value().shape()[0]
    }

    /// Runs the recurrence; the full per-step states `[B, T, width]`.
    fn states<'t>(
        &self,
        x: Var<'t, T>,
        mask: Option<&Tensor<T>>,
        initial: Option<&[Var<'t, T>]>,
        reverse: bool,
    ) -> Result<Var<'t, T>> {
        let layer = self.layer;
        let s = x.shape();
        if s.len() != 3 || s[2] != self.input_dim() {
            return Err(LayerError::Shape {
                layer,
                message: format!(
                    "input must be [batch, steps, {}], got shape {s:?}",
                    self.input_dim()
                ),
            });
        }
        if s[1] == 0 {
            return Err(LayerError::Shape {
                layer,
                message: format!("a sequence needs at least one step, got shape {s:?}"),
            });
        }
        let mask = match mask {
            None => None,
            Some(m) => {
                crate::module::check_sequence_mask(layer, m, &s)?;
                Some(m.to_vec().iter().map(|&v| v != T::ZERO).collect())
            }
        };
        let tape = x.tape();
        let mut inputs = vec![
            x,
            tape.param(&self.kernel),
            tape.param(&self.recurrent_kernel),
        ];
        if let Some(b) = &self.bias {
            inputs.push(tape.param(b));
        }
        if let Some(states) = initial {
            let wanted = if self.cell == Cell::Lstm { 2 } else { 1 };
            if states.len() != wanted {
                return Err(LayerError::Shape {
                    layer,
                    message: format!(
                        "the initial state is {wanted} tensor(s), got {}",
                        states.len()
                    ),
                });
            }
            for st in states {
                if st.shape() != [s[0], self.units] {
                    return Err(LayerError::Shape {
                        layer,
                        message: format!(
                            "an initial state must be [batch, units] = [{}, {}], got shape {:?}",
                            s[0],
                            self.units,
                            st.shape()
                        ),
                    });
                }
                inputs.push(*st);
            }
        }
        let op = RecurrentOp {
            cell: self.cell,
            units: self.units,
            bias: self.bias.is_some(),
            initial: initial.is_some(),
            reverse,
            mask,
            gates: Vec::new(),
            extra: Vec::new(),
        };
        Ok(tape.apply(op, &inputs)?)
    }

    /// The layer's output from the states: every step's h, or the final
    /// one (the last position, or the first for a reversed run).
    fn output<'t>(&self, states: Var<'t, T>, reverse: bool) -> Result<Var<'t, T>> {
        let s = states.shape();
        let h = if self.cell == Cell::Lstm {
            states.slice_axis(2, 0, self.units)?
        } else {
            states
        };
        if self.return_sequences {
            return Ok(h);
        }
        let t = if reverse { 0 } else { s[1] - 1 };
        Ok(h.slice_axis(1, t, t + 1)?.reshape(&[s[0], self.units])?)
    }

    /// A sequence output carries the mask on; a last state consumed it.
    fn masked_output<'t>(&self, y: Var<'t, T>, mask: Option<Tensor<T>>) -> Result<Var<'t, T>> {
        match mask {
            Some(m) if self.return_sequences => Ok(y.with_mask(m)?),
            _ => Ok(y),
        }
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        f(child(prefix, "kernel"), &self.kernel);
        f(child(prefix, "recurrent_kernel"), &self.recurrent_kernel);
        if let Some(b) = &self.bias {
            f(child(prefix, "bias"), b);
        }
    }

    fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        f(child(prefix, "kernel"), &mut self.kernel);
        f(
            child(prefix, "recurrent_kernel"),
            &mut self.recurrent_kernel,
        );
        if let Some(b) = &mut self.bias {
            f(child(prefix, "bias"), b);
        }
    }
}

macro_rules! recurrent_layer {
    ($(#[$doc:meta])* $name:ident, $layer:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<T: Float = f32> {
            inner: Recurrence<T>,
        }

        impl<T: Float> $name<T> {
            /// Every step's output `[B, T, units]` instead of the last
            /// `[B, units]` (Keras' `return_sequences`).
            ///
            /// ```
            #[doc = concat!("let layer = polyhead_layers::", stringify!($name), "::<f32>::new(3, 4, &mut polyhead_tensor::Rng::new(0))?.return_sequences(true);")]
            /// # let _ = layer;
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn return_sequences(mut self, yes: bool) -> Self {
                self.inner.return_sequences = yes;
                self
            }

            /// Without the bias (Keras' `use_bias=False`).
            ///
            /// ```
            /// use polyhead_layers::Module;
            #[doc = concat!("let layer = polyhead_layers::", stringify!($name), "::<f32>::new(3, 4, &mut polyhead_tensor::Rng::new(0))?.use_bias(false);")]
            /// assert_eq!(layer.parameters().len(), 2);
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn use_bias(mut self, yes: bool) -> Self {
                if !yes {
                    self.inner.bias = None;
                }
                self
            }

            /// The layer on `x` with a mask (`[B, T]`, nonzero = a real
            /// step; `None`: the mask `x` carries, if any): a padded step
            /// carries the state over, its output is the previous output
            /// and its input gets no gradient. With `return_sequences` the
            /// output carries the mask on.
            ///
            /// ```
            /// use polyhead_autograd::Tape;
            /// use polyhead_tensor::{Rng, Tensor};
            #[doc = concat!("let layer = polyhead_layers::", stringify!($name), "::<f64>::new(2, 3, &mut Rng::new(0))?;")]
            /// let tape = Tape::new();
            /// let x = tape.constant(Tensor::rand_normal(&[1, 4, 2], 0.0, 1.0, 1)?);
            /// // The last two steps are padding: the output is the state after step 1.
            /// let mask = Tensor::from_vec(vec![1.0, 1.0, 0.0, 0.0], &[1, 4])?;
            /// let padded = layer.forward_masked(x, Some(&mask))?;
            /// let short = layer.forward_masked(tape.constant(x.value().slice_axis(1, 0, 2)?.to_contiguous()), None)?;
            /// assert_eq!(padded.value().to_vec(), short.value().to_vec());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn forward_masked<'t>(&self, x: Var<'t, T>, mask: Option<&Tensor<T>>) -> Result<Var<'t, T>> {
                let mask = mask.cloned().or_else(|| x.mask());
                let states = self.inner.states(x, mask.as_ref(), None, false)?;
                self.inner.masked_output(self.inner.output(states, false)?, mask)
            }

            /// The kernel `[in, gates * units]`.
            ///
            /// ```
            #[doc = concat!("let layer = polyhead_layers::", stringify!($name), "::<f32>::new(3, 4, &mut polyhead_tensor::Rng::new(0))?;")]
            /// assert_eq!(layer.kernel().value().shape()[0], 3);
            /// # Ok::<(), polyhead_layers::LayerError>(())
            /// ```
            pub fn kernel(&self) -> &Parameter<T> {
                &self.inner.kernel
            }
        }

        impl<T: Float> Module<T> for $name<T> {
            fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
                self.forward_masked(x, None)
            }
            /// ONNX's recurrent operator (zero initial state); on a masked
            /// sequence a `Scan` over the steps that skips padded ones.
            fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
                export_recurrence(&[&self.inner], Merge::Concat, g, name, x)
            }
            fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
                self.inner.visit(prefix, f);
            }
            fn visit_parameters_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
                self.inner.visit_mut(prefix, f);
            }
        }
    };
}

recurrent_layer!(
    /// Keras' `LSTM` over `[B, T, in]`: kernel `[in, 4U]`, recurrent kernel
    /// `[U, 4U]`, bias `[4U]`, gate blocks i, f, c, o; tanh and the logistic
    /// sigmoid. Returns the last state `[B, U]`, or with `return_sequences`
    /// every step's `[B, T, U]`;
    /// [`forward_with_state`](Lstm::forward_with_state) also returns the
    /// final h and c and takes an initial state.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Lstm, Module};
    /// use polyhead_tensor::{Rng, Tensor};
    /// let lstm = Lstm::<f32>::new(5, 8, &mut Rng::new(0))?.return_sequences(true);
    /// let tape = Tape::new();
    /// let y = lstm.forward(tape.constant(Tensor::ones(&[2, 7, 5])?))?;
    /// assert_eq!(y.shape(), vec![2, 7, 8]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    Lstm,
    "lstm"
);

recurrent_layer!(
    /// Keras' `GRU` over `[B, T, in]`: kernel `[in, 3U]`, recurrent kernel
    /// `[U, 3U]`, gate blocks z, r, h; with `reset_after` (Keras' default)
    /// the bias is `[2, 3U]` (input and recurrent) and the reset gate
    /// multiplies the recurrent product, without it `[3U]` and the reset
    /// gate multiplies the state.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Gru, Module};
    /// use polyhead_tensor::{Rng, Tensor};
    /// let gru = Gru::<f32>::new(5, 8, &mut Rng::new(0))?;
    /// assert_eq!(gru.parameters()[2].1.value().shape(), &[2, 24]);
    /// let tape = Tape::new();
    /// assert_eq!(gru.forward(tape.constant(Tensor::ones(&[2, 7, 5])?))?.shape(), vec![2, 8]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    Gru,
    "gru"
);

impl<T: Float> Lstm<T> {
    /// An LSTM from `input_dim` features to `units`, Keras' initializers
    /// (Glorot-uniform kernels, the forget gate's bias at 1).
    ///
    /// ```
    /// let lstm = polyhead_layers::Lstm::<f32>::new(3, 4, &mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(lstm.kernel().value().shape(), &[3, 16]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn new(input_dim: usize, units: usize, rng: &mut Rng) -> Result<Self> {
        Ok(Lstm {
            inner: Recurrence::new(Cell::Lstm, input_dim, units, "lstm", rng)?,
        })
    }

    /// The output (as `forward` gives it) and the final state `(h, c)`,
    /// from an optional initial state `(h0, c0)` (each `[B, U]`; zeros by
    /// default) and mask (Keras' `return_state` and `initial_state`).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::Lstm;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let lstm = Lstm::<f64>::new(2, 3, &mut Rng::new(0))?;
    /// let tape = Tape::new();
    /// let x = Tensor::rand_normal(&[1, 6, 2], 0.0, 1.0, 1)?;
    /// // Running the second half from the first half's state is running it whole.
    /// let (_, h, c) = lstm.forward_with_state(tape.constant(x.slice_axis(1, 0, 3)?.to_contiguous()), None, None)?;
    /// let (rest, _, _) = lstm.forward_with_state(tape.constant(x.slice_axis(1, 3, 6)?.to_contiguous()), Some((h, c)), None)?;
    /// let (whole, _, _) = lstm.forward_with_state(tape.constant(x), None, None)?;
    /// let diff: f64 = rest.value().to_vec().iter().zip(whole.value().to_vec()).map(|(a, b)| (a - b).abs()).sum();
    /// assert!(diff < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn forward_with_state<'t>(
        &self,
        x: Var<'t, T>,
        initial: Option<(Var<'t, T>, Var<'t, T>)>,
        mask: Option<&Tensor<T>>,
    ) -> Result<(Var<'t, T>, Var<'t, T>, Var<'t, T>)> {
        let initial = initial.map(|(h, c)| [h, c]);
        let mask = mask.cloned().or_else(|| x.mask());
        let states =
            self.inner
                .states(x, mask.as_ref(), initial.as_ref().map(|s| &s[..]), false)?;
        let s = states.shape();
        let u = self.inner.units;
        let last = states
            .slice_axis(1, s[1] - 1, s[1])?
            .reshape(&[s[0], 2 * u])?;
        let h = last.slice_axis(1, 0, u)?;
        let c = last.slice_axis(1, u, 2 * u)?;
        Ok((
            self.inner
                .masked_output(self.inner.output(states, false)?, mask)?,
            h,
            c,
        ))
    }
}

impl<T: Float> Gru<T> {
    /// A GRU from `input_dim` features to `units` (`reset_after`, Keras'
    /// default; see [`Gru::reset_after`]).
    ///
    /// ```
    /// let gru = polyhead_layers::Gru::<f32>::new(3, 4, &mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(gru.kernel().value().shape(), &[3, 12]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn new(input_dim: usize, units: usize, rng: &mut Rng) -> Result<Self> {
        Ok(Gru {
            inner: Recurrence::new(
                Cell::Gru { reset_after: true },
                input_dim,
                units,
                "gru",
                rng,
            )?,
        })
    }

    /// Keras' `reset_after`: `true` (the default) applies the reset gate
    /// after the recurrent product and keeps a recurrent bias; `false`
    /// before it, with one bias. Changing it resets the bias to zeros of
    /// the new shape.
    ///
    /// ```
    /// use polyhead_layers::Module;
    /// let gru = polyhead_layers::Gru::<f32>::new(3, 4, &mut polyhead_tensor::Rng::new(0))?.reset_after(false);
    /// assert_eq!(gru.parameters()[2].1.value().shape(), &[12]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset_after(mut self, reset_after: bool) -> Self {
        let u = self.inner.units;
        self.inner.cell = Cell::Gru { reset_after };
        if self.inner.bias.is_some() {
            let shape: &[usize] = if reset_after { &[2, 3 * u] } else { &[3 * u] };
            self.inner.bias = Tensor::zeros(shape).ok().map(Parameter::new);
        }
        self
    }

    /// The output and the final state `h`, from an optional initial state
    /// (`[B, U]`) and mask.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let gru = polyhead_layers::Gru::<f32>::new(2, 3, &mut Rng::new(0))?;
    /// let tape = Tape::new();
    /// let (y, h) = gru.forward_with_state(tape.constant(Tensor::ones(&[4, 5, 2])?), None, None)?;
    /// assert_eq!(y.value().to_vec(), h.value().to_vec());
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn forward_with_state<'t>(
        &self,
        x: Var<'t, T>,
        initial: Option<Var<'t, T>>,
        mask: Option<&Tensor<T>>,
    ) -> Result<(Var<'t, T>, Var<'t, T>)> {
        let initial = initial.map(|h| [h]);
        let mask = mask.cloned().or_else(|| x.mask());
        let states =
            self.inner
                .states(x, mask.as_ref(), initial.as_ref().map(|s| &s[..]), false)?;
        let s = states.shape();
        let h = states
            .slice_axis(1, s[1] - 1, s[1])?
            .reshape(&[s[0], self.inner.units])?;
        Ok((
            self.inner
                .masked_output(self.inner.output(states, false)?, mask)?,
            h,
        ))
    }
}

/// How [`Bidirectional`] joins its two directions (Keras' `merge_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `[forward, backward]` along the last axis (the default).
    Concat,
    /// `forward + backward`.
    Sum,
}

/// Keras' `Bidirectional` around an [`Lstm`] or a [`Gru`]: a second layer
/// of the same kind reads the sequence from the end, its outputs realigned
/// with the input's steps; parameters `forward_<kind>.*` and
/// `backward_<kind>.*` as Keras names them.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Bidirectional, Lstm, Merge, Module};
/// use polyhead_tensor::{Rng, Tensor};
/// let mut rng = Rng::new(0);
/// let bi = Bidirectional::lstm(Lstm::<f32>::new(3, 4, &mut rng)?.return_sequences(true), Lstm::new(3, 4, &mut rng)?.return_sequences(true))?;
/// let tape = Tape::new();
/// assert_eq!(bi.forward(tape.constant(Tensor::ones(&[2, 5, 3])?))?.shape(), vec![2, 5, 8]);
/// assert_eq!(bi.parameters()[3].0, "backward_lstm.kernel");
/// let summed = bi.merge(Merge::Sum);
/// assert_eq!(summed.forward(tape.constant(Tensor::ones(&[2, 5, 3])?))?.shape(), vec![2, 5, 4]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bidirectional<T: Float = f32> {
    forward: Recurrence<T>,
    backward: Recurrence<T>,
    merge: Merge,
}

impl<T: Float> Bidirectional<T> {
    fn new(forward: Recurrence<T>, backward: Recurrence<T>) -> Result<Self> {
        if forward.cell != backward.cell
            || forward.units != backward.units
            || forward.input_dim() != backward.input_dim()
            || forward.return_sequences != backward.return_sequences
        {
            return Err(LayerError::Invalid {
                what: "bidirectional",
                message: "the two directions must be the same kind of layer with the same sizes and options".into(),
            });
        }
        Ok(Bidirectional {
            forward,
            backward,
            merge: Merge::Concat,
        })
    }

    /// Two LSTMs (the second reads from the end).
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(0);
    /// let bi = polyhead_layers::Bidirectional::lstm(polyhead_layers::Lstm::<f32>::new(3, 4, &mut rng)?, polyhead_layers::Lstm::new(3, 4, &mut rng)?)?;
    /// # let _ = bi;
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn lstm(forward: Lstm<T>, backward: Lstm<T>) -> Result<Self> {
        Self::new(forward.inner, backward.inner)
    }

    /// Two GRUs (the second reads from the end).
    ///
    /// ```
    /// let mut rng = polyhead_tensor::Rng::new(0);
    /// let bi = polyhead_layers::Bidirectional::gru(polyhead_layers::Gru::<f32>::new(3, 4, &mut rng)?, polyhead_layers::Gru::new(3, 4, &mut rng)?)?;
    /// # let _ = bi;
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn gru(forward: Gru<T>, backward: Gru<T>) -> Result<Self> {
        Self::new(forward.inner, backward.inner)
    }

    /// Keras' `merge_mode` (`Concat` by default).
    ///
    /// ```
    /// # let mut rng = polyhead_tensor::Rng::new(0);
    /// # let bi = polyhead_layers::Bidirectional::lstm(polyhead_layers::Lstm::<f32>::new(3, 4, &mut rng)?, polyhead_layers::Lstm::new(3, 4, &mut rng)?)?;
    /// let bi = bi.merge(polyhead_layers::Merge::Sum);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn merge(mut self, merge: Merge) -> Self {
        self.merge = merge;
        self
    }

    /// Both directions on `x` with an optional mask (`[B, T]`; `None`: the
    /// mask `x` carries, if any).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut rng = Rng::new(0);
    /// let bi = polyhead_layers::Bidirectional::gru(polyhead_layers::Gru::<f32>::new(3, 4, &mut rng)?, polyhead_layers::Gru::new(3, 4, &mut rng)?)?;
    /// let tape = Tape::new();
    /// let mask = Tensor::ones(&[2, 5])?;
    /// assert_eq!(bi.forward_masked(tape.constant(Tensor::ones(&[2, 5, 3])?), Some(&mask))?.shape(), vec![2, 8]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn forward_masked<'t>(
        &self,
        x: Var<'t, T>,
        mask: Option<&Tensor<T>>,
    ) -> Result<Var<'t, T>> {
        let mask = mask.cloned().or_else(|| x.mask());
        let f = self
            .forward
            .output(self.forward.states(x, mask.as_ref(), None, false)?, false)?;
        let b = self
            .backward
            .output(self.backward.states(x, mask.as_ref(), None, true)?, true)?;
        let y = match self.merge {
            Merge::Concat => Var::concat(&[f, b], -1)?,
            Merge::Sum => f.add(b)?,
        };
        self.forward.masked_output(y, mask)
    }

    fn prefix(&self) -> (&'static str, &'static str) {
        match self.forward.cell {
            Cell::Lstm => ("forward_lstm", "backward_lstm"),
            Cell::Gru { .. } => ("forward_gru", "backward_gru"),
        }
    }
}

impl<T: Float> Module<T> for Bidirectional<T> {
    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        self.forward_masked(x, None)
    }
    /// One bidirectional ONNX operator, its two directions merged (on a
    /// masked sequence, a `Scan` per direction).
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        export_recurrence(&[&self.forward, &self.backward], self.merge, g, name, x)
    }
    fn visit_parameters<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        let (fw, bw) = self.prefix();
        self.forward.visit(&format!("{prefix}{fw}."), f);
        self.backward.visit(&format!("{prefix}{bw}."), f);
    }
    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
        let (fw, bw) = self.prefix();
        self.forward.visit_mut(&format!("{prefix}{fw}."), f);
        self.backward.visit_mut(&format!("{prefix}{bw}."), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 `tanh` against f64's over [-12, 12] in steps that hit both
    /// branches and the switch between them: within 3 ulp of the result.
    #[test]
    fn f32_tanh_is_within_a_few_ulp() {
        let xs: Vec<f32> = (-120_000..=120_000).map(|i| i as f32 * 1e-4).collect();
        let mut ys = xs.clone();
        tanh_slice(&mut ys);
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = (x as f64).tanh();
            let ulp = (exact as f32).abs().max(f32::MIN_POSITIVE) * f32::EPSILON;
            worst = worst.max((y as f64 - exact).abs() / ulp as f64);
        }
        assert!(worst <= 3.0, "{worst} ulp");
        let mut special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        tanh_slice(&mut special);
        assert!(special[0].is_nan());
        assert_eq!(&special[1..], &[1.0, -1.0, 0.0, -0.0]);
    }
}
