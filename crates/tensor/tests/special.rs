//! The special functions against Python's `math.erf`/`math.erfc` (reference
//! values printed by CPython 3.11, which uses the C library's erf).

use polyhead_tensor::Float;
use polyhead_tensor::special::{erf, erfc, normal_cdf, normal_pdf};

/// (x, erf(x), erfc(x)) from CPython's math module.
const REFERENCE: &[(f64, f64, f64)] = &[
    (0.0, 0.0, 1.0),
    (1e-10, 1.1283791670955126e-10, 0.999999999887162),
    (0.001, 0.0011283787909692365, 0.9988716212090307),
    (0.1, 0.1124629160182849, 0.8875370839817152),
    (0.5, 0.5204998778130465, 0.4795001221869535),
    (0.9, 0.7969082124228322, 0.20309178757716786),
    (1.0, 0.8427007929497149, 0.15729920705028513),
    (1.5, 0.9661051464753108, 0.033894853524689274),
    (2.0, 0.9953222650189527, 0.004677734981047265),
    (2.5, 0.999593047982555, 0.0004069520174449589),
    (2.9, 0.9999589021219005, 4.109787809945886e-05),
    (2.999, 0.9999777698314002, 2.2230168599834058e-05),
    (3.0, 0.9999779095030014, 2.2090496998585438e-05),
    (3.001, 0.9999780483390822, 2.19516609177373e-05),
    (3.5, 0.9999992569016276, 7.430983723414128e-07),
    (4.0, 0.9999999845827421, 1.541725790028002e-08),
    (5.0, 0.9999999999984626, 1.5374597944280351e-12),
    (6.0, 1.0, 2.1519736712498916e-17),
    (8.0, 1.0, 1.1224297172982928e-29),
    (10.0, 1.0, 2.088487583762545e-45),
    (26.0, 1.0, 5.663192408856143e-296),
    (-0.3, -0.3286267594591274, 1.3286267594591274),
    (-1.0, -0.8427007929497149, 1.842700792949715),
    (-2.7, -0.9998656672600594, 1.9998656672600594),
    (-3.2, -0.9999939742388483, 1.9999939742388482),
    (-5.0, -0.9999999999984626, 1.9999999999984626),
];

#[test]
fn erf_and_erfc_match_the_c_library_to_a_few_ulps() {
    for &(x, e, ec) in REFERENCE {
        let got = erf(x);
        assert!(
            (got - e).abs() <= 4.0 * f64::EPSILON * e.abs().max(f64::MIN_POSITIVE),
            "erf({x}) = {got:e}, want {e:e}"
        );
        let got = erfc(x);
        assert!(
            (got - ec).abs() <= 8.0 * f64::EPSILON * ec.abs(),
            "erfc({x}) = {got:e}, want {ec:e}"
        );
    }
}

#[test]
fn normal_cdf_derivative_is_the_density() {
    for i in -60..=60 {
        let x = i as f64 / 10.0;
        let h = 1e-5;
        let numeric = (normal_cdf(x + h) - normal_cdf(x - h)) / (2.0 * h);
        // Central differences have error ~ h^2 * |phi''| / 6 ~ 1e-11 plus
        // rounding ~ eps / h ~ 1e-11.
        assert!((numeric - normal_pdf(x)).abs() < 1e-10, "x = {x}");
    }
}

#[test]
fn special_functions_handle_nan_and_infinity() {
    assert!(erf(f64::NAN).is_nan());
    assert!(erfc(f64::NAN).is_nan());
    assert_eq!(erf(f64::INFINITY), 1.0);
    assert_eq!(erf(f64::NEG_INFINITY), -1.0);
    assert_eq!(erfc(f64::INFINITY), 0.0);
    assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
}

/// The f32 `exp_slice` is within 1 ulp of the correctly rounded exponential
/// (computed in f64) over its whole range, and exact at the edges.
#[test]
fn f32_exp_slice_is_within_one_ulp() {
    use polyhead_tensor::Float;
    let n = 200_000;
    let mut xs: Vec<f32> = (0..=n)
        .map(|i| -87.3 + (88.0 + 87.3) * i as f32 / n as f32)
        .collect();
    // Every value is inside the polynomial's range [-87.3, 88.0], so this
    // slice takes the fast path.
    xs.extend([0.0, -0.0, 1e-30, -1e-30, 88.0, -87.3]);
    let mut got = xs.clone();
    f32::exp_slice(&mut got);
    let mut worst = 0.0_f64;
    for (&x, &g) in xs.iter().zip(&got) {
        let want = (x as f64).exp();
        // The spacing of f32 values at the true result (one ulp).
        let w = want as f32;
        let ulp = f32::from_bits(w.to_bits() + 1) - w;
        let err = (g as f64 - want).abs() / ulp as f64;
        worst = worst.max(err);
    }
    // Measured worst: 0.90 ulps (truncation ~0.05 ulp plus the rounding of
    // the fused multiply-adds); see the exhaustive variant below.
    assert!(worst <= 1.0, "worst error {worst} ulps");
    // Out of range: those elements take the exact path; in-range neighbours
    // still take the polynomial, so a result never depends on its slice.
    let mut edge = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -100.0,
        1.0,
        88.7,
    ];
    f32::exp_slice(&mut edge);
    assert!(edge[0].is_nan());
    assert_eq!(edge[1..4], [f32::INFINITY, 0.0, (-100.0f32).exp()]);
    // Below -104 (masked logits) the result underflows to exactly +0, as
    // f32::exp gives, without leaving the vectorised path.
    let mut tiny = [-104.001_f32, -1e9, f32::MIN, f32::NEG_INFINITY, 1.0];
    f32::exp_slice(&mut tiny);
    for (&x, &got) in [-104.001_f32, -1e9, f32::MIN, f32::NEG_INFINITY]
        .iter()
        .zip(&tiny)
    {
        assert_eq!(got.to_bits(), x.exp().to_bits(), "x = {x}");
        assert_eq!(got.to_bits(), 0.0_f32.to_bits(), "x = {x}");
    }
    let mut alone = [1.0_f32];
    f32::exp_slice(&mut alone);
    assert_eq!(edge[4].to_bits(), alone[0].to_bits());
    assert!((edge[4] as f64 - 1.0f64.exp()).abs() <= 1.5 * f32::EPSILON as f64 * 2.0);
    assert_eq!(edge[5], 88.7f32.exp());
}

/// [`f32_exp_slice_is_within_one_ulp`] on every f32 (about 4.3 billion
/// values: about 25 s with `--release`), when `POLYHEAD_EXHAUSTIVE` is
/// set: within 1 ulp of `f64::exp` on the polynomial's range, and the bits
/// of `f32::exp` everywhere else.
#[test]
fn f32_exp_slice_exhaustive() {
    use polyhead_tensor::Float;
    if std::env::var_os("POLYHEAD_EXHAUSTIVE").is_none() {
        return;
    }
    let mut worst = (0.0_f64, 0.0_f32);
    let mut chunk = Vec::with_capacity(1 << 16);
    let mut first = 0u32;
    loop {
        let last = first | ((1 << 16) - 1);
        chunk.clear();
        chunk.extend((first..=last).map(f32::from_bits));
        let xs = chunk.clone();
        f32::exp_slice(&mut chunk);
        for (&x, &g) in xs.iter().zip(&chunk) {
            if (-87.3..=88.0).contains(&x) {
                let want = (x as f64).exp();
                let w = want as f32;
                let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
                let err = (g as f64 - want).abs() / ulp;
                if err > worst.0 {
                    worst = (err, x);
                }
            } else {
                let want = x.exp();
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "exp_slice({x}) = {g}, f32::exp gives {want}"
                );
            }
        }
        if last == u32::MAX {
            break;
        }
        first = last + 1;
    }
    eprintln!("exp_slice: worst error {} ulps at x = {}", worst.0, worst.1);
    assert!(
        worst.0 <= 1.0,
        "worst error {} ulps at x = {}",
        worst.0,
        worst.1
    );
}

/// Each element of the f32 `exp_slice` and `ln_slice` depends on its own
/// input only, so a kernel may exponentiate a whole block of rows at once
/// and get the bits it would get row by row: checked on slices that mix
/// every kind of input, with chunks of the fallback path (256 values) that
/// hold none, one or many values out of the polynomials' ranges.
#[test]
fn f32_exp_and_ln_slices_do_not_depend_on_the_rest_of_the_slice() {
    use polyhead_tensor::Float;
    let xs: Vec<f32> = (0..2000)
        .map(|i| match i {
            // A clean chunk (in range for exp) between dirty ones.
            512..768 => -60.0 + (i % 97) as f32,
            _ if i % 7 == 0 => -120.0 + i as f32 * 0.01,
            _ if i % 11 == 0 => f32::NAN,
            _ if i % 13 == 0 => -95.0 - (i % 9) as f32,
            _ if i % 17 == 0 => f32::NEG_INFINITY,
            _ if i % 19 == 0 => 88.5,
            _ if i % 23 == 0 => -0.0,
            _ if i % 29 == 0 => 1e-40,
            _ => -80.0 + (i % 350) as f32 * 0.5,
        })
        .collect();
    /// A slice function and the standard library's function it replaces.
    type Pair = (&'static str, fn(&mut [f32]), fn(f32) -> f32);
    let slices: [Pair; 2] = [
        ("exp", f32::exp_slice, f32::exp),
        ("ln", f32::ln_slice, f32::ln),
    ];
    for (name, slice_fn, plain) in slices {
        let mut whole = xs.clone();
        slice_fn(&mut whole);
        for (i, &x) in xs.iter().enumerate() {
            let mut one = [x];
            slice_fn(&mut one);
            assert_eq!(one[0].to_bits(), whole[i].to_bits(), "{name}({x}) at {i}");
            // Outside the polynomials' ranges the result is the standard
            // library's, bit for bit (NaN stays NaN).
            let exp_outside = !(-104.0..=88.0).contains(&x) || x < -87.3;
            let ln_outside = !(f32::MIN_POSITIVE..=f32::MAX).contains(&x);
            let outside = if name == "exp" {
                exp_outside
            } else {
                ln_outside
            };
            if outside {
                let want = plain(x);
                assert!(
                    want.to_bits() == whole[i].to_bits() || (want.is_nan() && whole[i].is_nan()),
                    "{name}({x}) = {} at {i}, std gives {want}",
                    whole[i]
                );
            }
        }
    }
}

/// The f32 `ln_slice` against f64's correctly rounded logarithm, over the
/// whole positive normal range (every exponent, dense mantissas) and close
/// to 1, where the result is small and a relative error shows most.
#[test]
fn f32_ln_slice_is_within_one_ulp() {
    use polyhead_tensor::Float;
    let mut xs: Vec<f32> = Vec::new();
    // Every 97th bit pattern from the smallest normal to the largest finite.
    let mut bits = f32::MIN_POSITIVE.to_bits();
    while bits < f32::MAX.to_bits() {
        xs.push(f32::from_bits(bits));
        bits += 97;
    }
    xs.push(f32::MAX);
    // Around 1: 1 +- k ulps.
    for k in 1..20_000u32 {
        xs.push(f32::from_bits(1.0f32.to_bits() + k));
        xs.push(f32::from_bits(1.0f32.to_bits() - k));
    }
    let mut got = xs.clone();
    f32::ln_slice(&mut got);
    let mut worst = 0.0_f64;
    for (&x, &g) in xs.iter().zip(&got) {
        let want = (x as f64).ln();
        if want == 0.0 {
            assert_eq!(g, 0.0);
            continue;
        }
        let w = want as f32;
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        worst = worst.max((g as f64 - want).abs() / ulp);
    }
    // Measured worst: 0.80 ulps (the division and the final sums).
    assert!(worst <= 1.0, "worst error {worst} ulps");
    // Outside the polynomial's range: exactly f32::ln, element by element.
    let mut edge = [0.0_f32, -1.0, f32::INFINITY, f32::NAN, 1e-40, 2.0];
    f32::ln_slice(&mut edge);
    assert_eq!(edge[0], f32::NEG_INFINITY);
    assert!(edge[1].is_nan() && edge[3].is_nan());
    assert_eq!(edge[2], f32::INFINITY);
    assert_eq!(edge[4], 1e-40f32.ln());
    let mut alone = [2.0_f32];
    f32::ln_slice(&mut alone);
    assert_eq!(edge[5].to_bits(), alone[0].to_bits());
    // A slice with one zero takes the element-by-element path, compiled for
    // baseline x86-64; an all-normal slice takes the vector path (AVX2 where
    // the CPU has it). The normal elements must agree bit for bit.
    let normal: Vec<f32> = (1..5000).map(|i| i as f32 * 0.0137 + 1e-3).collect();
    let mut vector = normal.clone();
    f32::ln_slice(&mut vector);
    let mut mixed = normal.clone();
    mixed.push(0.0);
    f32::ln_slice(&mut mixed);
    for (a, b) in vector.iter().zip(&mixed) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
}

/// The f32 `ln_1p_slice` against f64's `ln_1p` over its series' range
/// `[-0.5, 1]` (every 257th bit pattern, negative and positive, the
/// subnormals included; every one of its 2.1 billion inputs when
/// `POLYHEAD_EXHAUSTIVE` is set, about 30 s with `--release`), and
/// `f32::ln_1p`'s exact results outside it.
#[test]
fn f32_ln_1p_slice_is_within_two_ulps() {
    use polyhead_tensor::Float;
    let stride = if std::env::var_os("POLYHEAD_EXHAUSTIVE").is_some() {
        1
    } else {
        257
    };
    // Positive inputs below 1, then negative ones down to -0.5, by bits.
    let ranges = [
        (1u32, 1.0f32.to_bits()),
        ((-0.0f32).to_bits() + 1, (-0.5f32).to_bits() + 1),
    ];
    let extra = [0.0, -0.0, -0.5, 1.0, f32::EPSILON, f32::EPSILON / 2.0];
    let mut worst = (0.0_f64, 0.0_f32);
    let mut check = |xs: &[f32]| {
        let mut got = xs.to_vec();
        f32::ln_1p_slice(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = (x as f64).ln_1p();
            if want == 0.0 {
                assert_eq!(g, 0.0, "x = {x}");
                continue;
            }
            let w = (want as f32).abs();
            let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
            let err = (g as f64 - want).abs() / ulp;
            if err > worst.0 {
                worst = (err, x);
            }
        }
    };
    check(&extra);
    for (first, end) in ranges {
        let mut xs = Vec::with_capacity(1 << 16);
        let mut bits = first;
        while bits < end {
            xs.clear();
            while bits < end && xs.len() < 1 << 16 {
                xs.push(f32::from_bits(bits));
                bits += stride;
            }
            check(&xs);
        }
    }
    // Measured worst: see the doc of `Float::ln_1p_slice`.
    assert!(
        worst.0 <= 2.0,
        "worst error {} ulps at x = {}",
        worst.0,
        worst.1
    );
    eprintln!(
        "ln_1p_slice: worst error {} ulps at x = {}",
        worst.0, worst.1
    );
    // Outside the range: exactly f32::ln_1p, element by element; in-range
    // neighbours keep the polynomial's bits.
    let mut edge = [-1.0_f32, -2.0, -0.75, f32::INFINITY, f32::NAN, 3.5, 0.25];
    f32::ln_1p_slice(&mut edge);
    assert_eq!(edge[0], f32::NEG_INFINITY);
    assert!(edge[1].is_nan() && edge[4].is_nan());
    assert_eq!(edge[2].to_bits(), (-0.75f32).ln_1p().to_bits());
    assert_eq!(edge[3], f32::INFINITY);
    assert_eq!(edge[5].to_bits(), 3.5f32.ln_1p().to_bits());
    let mut alone = [0.25_f32];
    f32::ln_1p_slice(&mut alone);
    assert_eq!(edge[6].to_bits(), alone[0].to_bits());
    // f64 is f64::ln_1p itself.
    let mut v = [1e-300_f64, 0.5, -0.9];
    f64::ln_1p_slice(&mut v);
    assert_eq!(v, [1e-300_f64.ln_1p(), 0.5f64.ln_1p(), (-0.9f64).ln_1p()]);
}

/// `row_sums_4x4` sums each row from left to right whatever the element
/// type and however it is computed (SSE for f32 on x86-64): the bits must
/// equal a plain loop's, including rounding-sensitive sums, signed zeros,
/// infinities and NaN.
#[test]
fn row_sums_4x4_match_a_plain_left_to_right_loop() {
    let plain = |block: &[f32; 16], scale: f32| -> Vec<u32> {
        (0..4)
            .map(|r| {
                let row = &block[4 * r..4 * r + 4];
                ((((row[0] + row[1]) + row[2]) + row[3]) * scale).to_bits()
            })
            .collect()
    };
    let mut rng = polyhead_tensor::Rng::new(5);
    let mut blocks: Vec<[f32; 16]> = (0..200)
        .map(|_| std::array::from_fn(|_| (rng.normal() * 1e3) as f32))
        .collect();
    // Left to right differs from pairwise here: (1e8 + 1) + (-1e8) + 1.
    blocks.push([
        1e8,
        1.0,
        -1e8,
        1.0,
        -0.0,
        -0.0,
        -0.0,
        -0.0,
        f32::INFINITY,
        1.0,
        -f32::INFINITY,
        2.0,
        f32::NAN,
        1.0,
        2.0,
        3.0,
    ]);
    for block in &blocks {
        for scale in [1.0_f32, 0.25, 1.0 / 3.0] {
            let got: Vec<u32> = f32::row_sums_4x4(block, scale)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, plain(block, scale), "block {block:?} scale {scale}");
        }
    }
    let last = f32::row_sums_4x4(blocks.last().unwrap(), 1.0);
    assert_eq!(last[0], 1.0); // not 2.0: each row from left to right
    assert_eq!(last[1].to_bits(), (-0.0_f32).to_bits());
    assert!(last[2].is_nan() && last[3].is_nan());
    let f64_block: [f64; 16] = std::array::from_fn(|i| i as f64);
    assert_eq!(
        f64::row_sums_4x4(&f64_block, 2.0),
        [12.0, 44.0, 76.0, 108.0]
    );
}

/// `row_sums` and `row_maxes` fold each row from left to right (the sums
/// from 0, the maxima from -inf keeping the first of equal elements and
/// skipping NaN) however they are computed (four rows at a time in SSE for
/// f32 on x86-64, with or without AVX2 around them): the bits must equal
/// plain folds for every row and column count, including the rows and
/// columns left over after groups of four, cancelling sums, signed zeros,
/// infinities and NaN.
#[test]
fn row_sums_and_maxes_match_plain_left_to_right_folds() {
    use polyhead_tensor::simd::{SimdLevel, with_simd_level};
    let specials = [
        f32::NAN,
        0.0,
        -0.0,
        f32::INFINITY,
        -f32::INFINITY,
        1e8,
        -1e8,
        1.0,
    ];
    let mut rng = polyhead_tensor::Rng::new(9);
    for rows in 0..=13 {
        for cols in 0..=13 {
            let block: Vec<f32> = (0..rows * cols)
                .map(|_| {
                    if rng.uniform() < 0.15 {
                        specials[(rng.uniform() * specials.len() as f64) as usize % specials.len()]
                    } else {
                        (rng.normal() * 1e3) as f32
                    }
                })
                .collect();
            let row = |r: usize| &block[r * cols..(r + 1) * cols];
            let plain_sums: Vec<u32> = (0..rows)
                .map(|r| row(r).iter().fold(0.0_f32, |a, &v| a + v).to_bits())
                .collect();
            let plain_maxes: Vec<u32> = (0..rows)
                .map(|r| {
                    row(r)
                        .iter()
                        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
                        .to_bits()
                })
                .collect();
            for level in [SimdLevel::Baseline, SimdLevel::Avx2] {
                let (sums, maxes) = with_simd_level(level, || {
                    let (mut sums, mut maxes) = (vec![7.0_f32; rows], vec![7.0_f32; rows]);
                    f32::row_sums(&block, cols, &mut sums);
                    f32::row_maxes(&block, cols, &mut maxes);
                    (sums, maxes)
                });
                let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(sums),
                    plain_sums,
                    "sums {rows}x{cols} {level:?}: {block:?}"
                );
                assert_eq!(
                    bits(maxes),
                    plain_maxes,
                    "maxes {rows}x{cols} {level:?}: {block:?}"
                );
            }
        }
    }
    // Left to right, not pairwise: (1e8 + 1) - 1e8 + 1 = 1 in f32.
    let mut sums = [0.0_f32; 4];
    let block = [1e8_f32, 1.0, -1e8, 1.0].repeat(4);
    f32::row_sums(&block, 4, &mut sums);
    assert_eq!(sums, [1.0; 4]);
    let mut f64_sums = [0.0_f64; 2];
    f64::row_sums(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, &mut f64_sums);
    assert_eq!(f64_sums, [6.0, 15.0]);
    let mut f64_maxes = [0.0_f64; 2];
    f64::row_maxes(&[1.0, f64::NAN, 3.0, -4.0, -5.0, -6.0], 3, &mut f64_maxes);
    assert_eq!(f64_maxes, [3.0, -4.0]);
}

#[test]
#[should_panic(expected = "row_sums: block is not out.len() rows of cols")]
fn row_sums_of_a_block_of_the_wrong_length_panic_with_a_message() {
    let mut out = [0.0_f32; 2];
    f32::row_sums(&[1.0; 5], 3, &mut out);
}
