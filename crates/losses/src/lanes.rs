//! Row reductions in eight independent lanes. Floating-point addition is
//! not associative, so the compiler keeps a plain `fold` serial; splitting
//! the row into eight partial results by hand lets it use SIMD registers.
//! The lanes are then combined pairwise. The summation order differs from
//! a left-to-right fold by at most the usual rounding of a pairwise sum,
//! which is no less accurate.

use polyhead_tensor::Float;

const LANES: usize = 8;

/// Slices of at most this many elements (ten classes, four box
/// coordinates) are folded left to right instead: they barely fill the
/// lanes, and combining the lanes would cost more than it saves (measured:
/// CE 1024x10 13.9 -> 13.3 us).
pub(crate) const SHORT: usize = 16;

/// The largest element (`-inf` for an empty slice). NaN elements are
/// skipped; callers that need NaN to propagate get it from the values
/// computed from the row itself.
#[inline]
pub(crate) fn max<T: Float>(x: &[T]) -> T {
    if x.len() <= SHORT {
        return x
            .iter()
            .fold(T::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    }
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
    // Pairwise, so the fold's dependency chain is 3 steps, not 7.
    let pick = |a: T, b: T| if b > a { b } else { a };
    let quads = [
        pick(acc[0], acc[4]),
        pick(acc[1], acc[5]),
        pick(acc[2], acc[6]),
        pick(acc[3], acc[7]),
    ];
    pick(pick(quads[0], quads[2]), pick(quads[1], quads[3]))
}

/// The sum of the elements.
#[inline]
pub(crate) fn sum<T: Float>(x: &[T]) -> T {
    if x.len() <= SHORT {
        return x.iter().fold(T::ZERO, |s, &v| s + v);
    }
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
    fold_lanes(acc)
}

/// The lanes' total, pairwise (lane i with lane i + N/2, then i + N/4, ...,
/// i + 1): a dependency chain of log2(N) additions instead of N - 1. `N` is
/// a power of two.
#[inline]
fn fold_lanes<T: Float, const N: usize>(mut acc: [T; N]) -> T {
    let mut width = N / 2;
    while width > 0 {
        for i in 0..width {
            let upper = acc[i + width];
            acc[i] += upper;
        }
        width /= 2;
    }
    acc[0]
}

/// Lanes of the reduction totals ([`weighted_sum`], [`scaled_sum`]): eight
/// SSE registers' worth, so eight independent chains of additions hide the
/// adder's latency (a total over 65536 f32 units in L2: 4.0 -> 2.9 us with
/// 32 lanes instead of 8, whose two chains waited on every addition).
const TOTAL_LANES: usize = 32;

/// Units per chunk of a total. A total is the sum of its chunks' totals,
/// added from left to right; each chunk is summed in [`TOTAL_LANES`] lanes.
/// Fixed chunks let a kernel that splits its rows over threads on chunk
/// boundaries form each chunk's total while the values are still in L1,
/// with the same bits as [`scaled_sum`] over all the values. Small enough
/// that 1024 rows still split over two threads (CE 1024x10 on two threads:
/// 12.1 us with chunks of 1024 rows, one block; 7.9 us with 256).
pub(crate) const TOTAL_CHUNK: usize = 256;

/// `sum_i c_i v_i` over units, skipping units with `c_i = 0` (ignored
/// units: their value, even NaN, must not reach the total), by chunks of
/// [`TOTAL_CHUNK`]. [`scaled_sum`] with equal coefficients gives the same
/// bits.
pub(crate) fn weighted_sum<T: Float>(values: &[T], coefs: &[T]) -> T {
    let term = |v: T, c: T| if c == T::ZERO { T::ZERO } else { v * c };
    let chunk_total = |values: &[T], coefs: &[T]| {
        let mut acc = [T::ZERO; TOTAL_LANES];
        let chunks = values
            .chunks_exact(TOTAL_LANES)
            .zip(coefs.chunks_exact(TOTAL_LANES));
        let n = values.len() / TOTAL_LANES * TOTAL_LANES;
        for (vs, cs) in chunks {
            for ((a, &v), &c) in acc.iter_mut().zip(vs).zip(cs) {
                *a += term(v, c);
            }
        }
        for ((a, &v), &c) in acc.iter_mut().zip(&values[n..]).zip(&coefs[n..]) {
            *a += term(v, c);
        }
        fold_lanes(acc)
    };
    add_chunk_totals(
        values
            .chunks(TOTAL_CHUNK)
            .zip(coefs.chunks(TOTAL_CHUNK))
            .map(|(v, c)| chunk_total(v, c)),
    )
}

/// `sum_i c v_i` with one coefficient for every unit (0 gives 0), in the
/// chunks, lanes and order of [`weighted_sum`].
pub(crate) fn scaled_sum<T: Float>(values: &[T], c: T) -> T {
    if c == T::ZERO {
        return T::ZERO;
    }
    add_chunk_totals(values.chunks(TOTAL_CHUNK).map(|v| scaled_chunk_sum(v, c)))
}

/// One chunk's part of [`scaled_sum`] (at most [`TOTAL_CHUNK`] values;
/// `c` not zero).
#[inline]
pub(crate) fn scaled_chunk_sum<T: Float>(values: &[T], c: T) -> T {
    debug_assert!(values.len() <= TOTAL_CHUNK);
    let mut acc = [T::ZERO; TOTAL_LANES];
    let chunks = values.chunks_exact(TOTAL_LANES);
    let rest = chunks.remainder();
    for vs in chunks {
        for (a, &v) in acc.iter_mut().zip(vs) {
            *a += v * c;
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a += v * c;
    }
    fold_lanes(acc)
}

/// The total of chunk totals, from left to right (0 for none).
#[inline]
pub(crate) fn add_chunk_totals<T: Float>(totals: impl IntoIterator<Item = T>) -> T {
    let mut totals = totals.into_iter();
    let first = totals.next().unwrap_or(T::ZERO);
    totals.fold(first, |sum, t| sum + t)
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
    fn scaled_and_weighted_sums_agree_bit_for_bit() {
        for n in [0, 1, 7, 8, 9, 17, 31, 32, 33, 65, 1001, 1024, 1025, 5000] {
            // Mixed magnitudes make any change of order visible.
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1013) as f32 * 10f32.powi(i as i32 % 7 - 3))
                .collect();
            let c = 1.0 / 3.0;
            let same = scaled_sum(&v, c);
            assert_eq!(
                same.to_bits(),
                weighted_sum(&v, &vec![c; n]).to_bits(),
                "n = {n}"
            );
            let exact: f64 = v.iter().map(|&x| x as f64 * c as f64).sum();
            assert!(
                (same as f64 - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                "n = {n}"
            );
        }
        // A zero coefficient drops its unit, even a NaN one.
        assert_eq!(
            weighted_sum(&[1.0_f32, f32::NAN, 2.0], &[1.0, 0.0, 0.5]),
            2.0
        );
        assert_eq!(scaled_sum(&[f32::NAN], 0.0), 0.0);
    }

    #[test]
    fn max_skips_nan() {
        assert_eq!(max(&[1.0_f32, f32::NAN, 3.0, 2.0]), 3.0);
    }
}
