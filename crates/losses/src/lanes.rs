//! Row reductions in eight independent lanes. Floating-point addition is
//! not associative, so the compiler keeps a plain `fold` serial; splitting
//! the row into eight partial results by hand lets it use SIMD registers.
//! The summation order differs from a left-to-right fold by at most the
//! usual rounding of a pairwise sum, which is no less accurate.

use polyhead_tensor::Float;

const LANES: usize = 8;

/// The largest element (`-inf` for an empty slice). NaN elements are
/// skipped; callers that need NaN to propagate get it from the values
/// computed from the row itself.
#[inline]
pub(crate) fn max<T: Float>(x: &[T]) -> T {
    let mut acc = [T::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a = if v > *a { v } else { *a };
    }
    acc.iter()
        .fold(T::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// The sum of the elements.
#[inline]
pub(crate) fn sum<T: Float>(x: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += v;
    }
    acc.iter().fold(T::ZERO, |s, &v| s + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_sum_match_serial_folds() {
        for n in [0, 1, 7, 8, 9, 17, 1000] {
            let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
            let serial_max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            assert_eq!(max(&x), serial_max, "n = {n}");
            // Integers: every partial sum is exact, so the order cannot matter.
            assert_eq!(sum(&x), x.iter().sum::<f64>(), "n = {n}");
        }
    }

    #[test]
    fn max_skips_nan() {
        assert_eq!(max(&[1.0_f32, f32::NAN, 3.0, 2.0]), 3.0);
    }
}
