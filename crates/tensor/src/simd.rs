//! Runtime choice of SIMD instruction set for vectorised loops.
//!
//! polyhead is compiled for baseline x86-64 (SSE2, four `f32` lanes), so it
//! runs on any x86-64 CPU. [`with_simd`] runs a closure compiled a second
//! time with AVX2 and FMA enabled (eight lanes) when the CPU has them. The
//! loops inside do the same IEEE operations in the same order either way
//! (Rust never fuses a multiply and an add on its own), so results are bit
//! for bit the same; only the number of lanes per instruction changes.
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
