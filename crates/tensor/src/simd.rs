//! Runtime choice of SIMD instruction set for vectorised loops.
//!
//! polyhead is compiled for baseline x86-64 (SSE2, four `f32` lanes), so it
//! runs on any x86-64 CPU. [`with_simd`] runs a closure compiled a second
//! time with AVX2 and FMA enabled (eight lanes) when the CPU has them. The
//! loops inside do the same IEEE operations in the same order either way
//! (Rust never fuses a multiply and an add on its own, and an explicit
//! `mul_add` is one correctly rounded operation on every path: an FMA
//! instruction here, the C library's `fmaf`/`fma` on the baseline), so
//! results are bit for bit the same; only the number of lanes per
//! instruction changes.
//!
//! ```
//! use polyhead_tensor::simd::{SimdLevel, with_simd, with_simd_level};
//! let x: Vec<f32> = (0..1000).map(|i| i as f32 * 0.37).collect();
//! let square_all = || x.iter().map(|v| v * v - 1.0).collect::<Vec<f32>>();
//! let fast = with_simd(square_all);
//! let plain = with_simd_level(SimdLevel::Baseline, square_all);
//! assert_eq!(fast, plain);
//! assert!(SimdLevel::detected() >= SimdLevel::Baseline);
//! ```
#![allow(unsafe_code)]

/// An instruction set [`with_simd_level`] can compile a closure for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// What the crate is compiled for (SSE2 on x86-64).
    Baseline,
    /// x86-64 AVX2 with FMA.
    Avx2,
}

impl SimdLevel {
    /// The widest level this CPU supports (cached by the standard library's
    /// feature detection, so cheap to call).
    ///
    /// ```
    /// let level = polyhead_tensor::simd::SimdLevel::detected();
    /// println!("vector loops run with {level:?}");
    /// ```
    #[inline]
    pub fn detected() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }
}

/// Runs `f` compiled for the widest instruction set the CPU has (see the
/// module documentation). Loops in `f` and in the generic functions it
/// inlines are vectorised at that width.
///
/// ```
/// let sum = polyhead_tensor::simd::with_simd(|| (0..100).map(|i| i as f32).sum::<f32>());
/// assert_eq!(sum, 4950.0);
/// ```
#[inline]
pub fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    with_simd_level(SimdLevel::detected(), f)
}

/// Runs `f` compiled for `level`, or for the baseline when the CPU lacks
/// it: for tests and benchmarks that compare the two.
///
/// ```
/// use polyhead_tensor::simd::{SimdLevel, with_simd_level};
/// assert_eq!(with_simd_level(SimdLevel::Avx2, || 2 + 2), 4); // safe on any CPU
/// ```
#[inline]
pub fn with_simd_level<R>(level: SimdLevel, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if level == SimdLevel::Avx2 && SimdLevel::detected() == SimdLevel::Avx2 {
            // SAFETY: `run_avx2` only requires AVX2 and FMA, and
            // `detected()` has just confirmed the CPU has both.
            return unsafe { run_avx2(f) };
        }
    }
    let _ = level;
    f()
}

/// `f()`, with AVX2 and FMA enabled for the code inlined into it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The `f32` override of [`Float::row_sums_4x4`](crate::Float::row_sums_4x4):
/// the block is transposed in SSE registers so that each vector add adds
/// the next column to all four rows' running sums. Every row is still summed
/// from left to right, so the bits equal the scalar loop's.
#[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
#[inline(always)]
pub(crate) fn row_sums_4x4_f32(block: &[f32; 16], scale: f32) -> [f32; 4] {
    use std::arch::x86_64::{
        _mm_add_ps, _mm_loadu_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_mul_ps, _mm_set1_ps,
        _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
    };
    let mut out = [0.0_f32; 4];
    let q = block.as_ptr();
    // SAFETY: the intrinsics need SSE, which every x86-64 CPU has (and the
    // cfg above requires). The four unaligned 4-lane loads at offsets 0, 4,
    // 8 and 12 stay inside `block`'s 16 f32s; the one store writes exactly
    // `out`'s four.
    unsafe {
        let (r0, r1, r2, r3) = (
            _mm_loadu_ps(q),
            _mm_loadu_ps(q.add(4)),
            _mm_loadu_ps(q.add(8)),
            _mm_loadu_ps(q.add(12)),
        );
        // Transpose: c_j holds column j of rows 0..4.
        let (lo01, lo23) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
        let (hi01, hi23) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
        let (c0, c1) = (_mm_movelh_ps(lo01, lo23), _mm_movehl_ps(lo23, lo01));
        let (c2, c3) = (_mm_movelh_ps(hi01, hi23), _mm_movehl_ps(hi23, hi01));
        let sums = _mm_mul_ps(
            _mm_add_ps(_mm_add_ps(_mm_add_ps(c0, c1), c2), c3),
            _mm_set1_ps(scale),
        );
        _mm_storeu_ps(out.as_mut_ptr(), sums);
    }
    out
}

/// The `f32` override of [`Float::row_sums`](crate::Float::row_sums).
#[inline(always)]
pub(crate) fn row_sums_f32(block: &[f32], cols: usize, out: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: SSE is part of x86-64 (and required by the cfg).
    let add = |acc, column| unsafe { std::arch::x86_64::_mm_add_ps(acc, column) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let add = ();
    row_folds_f32("row_sums", block, cols, out, 0.0, add, |acc, v| acc + v);
}

/// The `f32` override of [`Float::row_maxes`](crate::Float::row_maxes).
/// `_mm_max_ps(v, m)` is `v > m ? v : m` lane by lane (it returns its second
/// operand when the comparison is false, NaN included): the scalar rule.
#[inline(always)]
pub(crate) fn row_maxes_f32(block: &[f32], cols: usize, out: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: SSE is part of x86-64 (and required by the cfg).
    let max = |acc, column| unsafe { std::arch::x86_64::_mm_max_ps(column, acc) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let max = ();
    row_folds_f32(
        "row_maxes",
        block,
        cols,
        out,
        f32::NEG_INFINITY,
        max,
        |m, v| {
            if v > m { v } else { m }
        },
    );
}

/// Folds each row of `block` (rows of `cols`, as many as `out` has; panics,
/// naming `op`, if the lengths disagree) from
/// left to right, starting at `init`, with `scalar`; four rows at a time
/// with `vector`, which must be `scalar` lane by lane. Each group of four
/// rows is transposed four columns at a time so that one `vector` step
/// takes the next column of all four rows; the columns after the last
/// group of four, and the rows after the last group of four, go through
/// `scalar`, in order.
#[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
#[inline(always)]
fn row_folds_f32(
    op: &str,
    block: &[f32],
    cols: usize,
    out: &mut [f32],
    init: f32,
    vector: impl Fn(std::arch::x86_64::__m128, std::arch::x86_64::__m128) -> std::arch::x86_64::__m128,
    scalar: impl Fn(f32, f32) -> f32,
) {
    assert_eq!(
        block.len(),
        cols * out.len(),
        "{op}: block is not out.len() rows of cols"
    );
    use std::arch::x86_64::{
        _mm_loadu_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_set1_ps, _mm_storeu_ps, _mm_unpackhi_ps,
        _mm_unpacklo_ps,
    };
    let rows = out.len();
    let full = cols / 4 * 4;
    let groups = if full == 0 { 0 } else { rows / 4 };
    for group in 0..groups {
        let first = 4 * group;
        let p = block[first * cols..].as_ptr();
        // SAFETY: SSE is part of x86-64. `block` holds `rows * cols`
        // elements (asserted above) and rows `first..first + 4`
        // exist, so each 4-lane load at `i * cols + k` (row `first + i`,
        // columns `k..k + 4` with `k + 4 <= full <= cols`) reads inside
        // that row; the store writes `out[first..first + 4]`.
        unsafe {
            let mut acc = _mm_set1_ps(init);
            for k in (0..full).step_by(4) {
                let (r0, r1, r2, r3) = (
                    _mm_loadu_ps(p.add(k)),
                    _mm_loadu_ps(p.add(cols + k)),
                    _mm_loadu_ps(p.add(2 * cols + k)),
                    _mm_loadu_ps(p.add(3 * cols + k)),
                );
                // Transpose: c_j holds column k + j of the four rows.
                let (lo01, lo23) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
                let (hi01, hi23) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
                let (c0, c1) = (_mm_movelh_ps(lo01, lo23), _mm_movehl_ps(lo23, lo01));
                let (c2, c3) = (_mm_movelh_ps(hi01, hi23), _mm_movehl_ps(hi23, hi01));
                acc = vector(vector(vector(vector(acc, c0), c1), c2), c3);
            }
            _mm_storeu_ps(out[first..first + 4].as_mut_ptr(), acc);
        }
        for (i, o) in out[first..first + 4].iter_mut().enumerate() {
            let row = &block[(first + i) * cols..(first + i + 1) * cols];
            *o = row[full..].iter().fold(*o, |acc, &v| scalar(acc, v));
        }
    }
    for (i, o) in out.iter_mut().enumerate().skip(4 * groups) {
        *o = block[i * cols..(i + 1) * cols]
            .iter()
            .fold(init, |acc, &v| scalar(acc, v));
    }
}

/// The portable version of [`row_folds_f32`]: every row through `scalar`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
#[inline(always)]
fn row_folds_f32(
    op: &str,
    block: &[f32],
    cols: usize,
    out: &mut [f32],
    init: f32,
    _vector: (),
    scalar: impl Fn(f32, f32) -> f32,
) {
    assert_eq!(
        block.len(),
        cols * out.len(),
        "{op}: block is not out.len() rows of cols"
    );
    for (i, o) in out.iter_mut().enumerate() {
        *o = block[i * cols..(i + 1) * cols]
            .iter()
            .fold(init, |acc, &v| scalar(acc, v));
    }
}

/// The portable version of [`row_sums_4x4_f32`] for other architectures.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
#[inline(always)]
pub(crate) fn row_sums_4x4_f32(block: &[f32; 16], scale: f32) -> [f32; 4] {
    std::array::from_fn(|r| {
        let row = &block[4 * r..4 * r + 4];
        (((row[0] + row[1]) + row[2]) + row[3]) * scale
    })
}
