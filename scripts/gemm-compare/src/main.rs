//! matrixmultiply (polyhead's GEMM) against the `gemm` crate on the exact
//! products of the bench's `train` step, f32, one thread (run it pinned:
//! `taskset -c 0 cargo run --release`), and whether `gemm` gives the same
//! bits when the product is cut into blocks of rows, as polyhead's thread
//! split cuts it (`cargo run --release -- blocks`).

use std::time::Instant;

/// `C[m, n] = A[m, k] B[k, n]`; `a_t` / `b_t`: the operand is the transpose
/// of a row-major array (as autograd's backward products read them).
#[derive(Clone, Copy)]
struct Product {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
}

/// Row and column strides of a logical `[rows, cols]` operand.
fn strides(rows: usize, cols: usize, transposed: bool) -> (isize, isize) {
    if transposed {
        (1, rows as isize)
    } else {
        (cols as isize, 1)
    }
}

/// Median seconds per call over 15 samples of 20 calls, after a warm-up.
fn median_seconds(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..20 {
                f();
            }
            t.elapsed().as_secs_f64() / 20.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[7]
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * seed) % 1000) as f32 / 997.0 - 0.5)
        .collect()
}

/// `gemm`'s product into `c` (row-major `[m, n]`), one thread.
///
/// # Safety
/// `a`, `b` and `c` hold the operands and output the strides describe.
unsafe fn gemm_crate(p: Product, a: &[f32], b: &[f32], c: &mut [f32], par: gemm::Parallelism) {
    let (rsa, csa) = strides(p.m, p.k, p.a_t);
    let (rsb, csb) = strides(p.k, p.n, p.b_t);
    // SAFETY: the caller's contract; `read_dst` false, so `c` is only written.
    unsafe {
        gemm::gemm(
            p.m,
            p.n,
            p.k,
            c.as_mut_ptr(),
            1,
            p.n as isize,
            false,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn timings() {
    for batch in [128, 1024] {
        let products = [
            Product {
                name: "x W1",
                m: batch,
                k: 784,
                n: 64,
                a_t: false,
                b_t: false,
            },
            Product {
                name: "x^T dH",
                m: 784,
                k: batch,
                n: 64,
                a_t: true,
                b_t: false,
            },
            Product {
                name: "h W2",
                m: batch,
                k: 64,
                n: 10,
                a_t: false,
                b_t: false,
            },
            Product {
                name: "h^T dY",
                m: 64,
                k: batch,
                n: 10,
                a_t: true,
                b_t: false,
            },
            Product {
                name: "dY W2^T",
                m: batch,
                k: 10,
                n: 64,
                a_t: false,
                b_t: true,
            },
        ];
        let (mut total_mm, mut total_gemm, mut total_best) = (0.0, 0.0, 0.0);
        for p in products {
            let a = values(p.m * p.k, 7919);
            let b = values(p.k * p.n, 104_729);
            let mut c = vec![0.0f32; p.m * p.n];
            let (rsa, csa) = strides(p.m, p.k, p.a_t);
            let (rsb, csb) = strides(p.k, p.n, p.b_t);
            // SAFETY: the vectors hold the operands the strides describe.
            let mm = median_seconds(|| unsafe {
                matrixmultiply::sgemm(
                    p.m,
                    p.k,
                    p.n,
                    1.0,
                    a.as_ptr(),
                    rsa,
                    csa,
                    b.as_ptr(),
                    rsb,
                    csb,
                    0.0,
                    c.as_mut_ptr(),
                    p.n as isize,
                    1,
                );
            });
            // SAFETY: as above.
            let g = median_seconds(|| unsafe {
                gemm_crate(p, &a, &b, &mut c, gemm::Parallelism::None)
            });
            println!(
                "batch {batch:5} {:8} {:4} x {:4} x {:4}: matrixmultiply {:8.1} us, gemm {:8.1} us, gemm {:.2}x faster",
                p.name,
                p.m,
                p.k,
                p.n,
                mm * 1e6,
                g * 1e6,
                mm / g
            );
            total_mm += mm;
            total_gemm += g;
            total_best += mm.min(g);
        }
        println!(
            "batch {batch}: the five products: matrixmultiply {:.1} us, gemm {:.1} us, the faster of the two per product {:.1} us\n",
            total_mm * 1e6,
            total_gemm * 1e6,
            total_best * 1e6
        );
    }
}

/// Does `gemm` give the whole product's bits when the rows are cut in two
/// (as polyhead's thread split cuts them), and with its own Rayon split?
fn blocks() {
    for (m, k, n) in [
        (128, 784, 64),
        (1024, 784, 64),
        (1024, 64, 10),
        (128, 64, 10),
    ] {
        let p = Product {
            name: "",
            m,
            k,
            n,
            a_t: false,
            b_t: false,
        };
        let a = values(m * k, 7919);
        let b = values(k * n, 104_729);
        let mut whole = vec![0.0f32; m * n];
        // SAFETY: the vectors hold the operands and output.
        unsafe { gemm_crate(p, &a, &b, &mut whole, gemm::Parallelism::None) };
        let same = |c: &[f32]| whole.iter().zip(c).all(|(x, y)| x.to_bits() == y.to_bits());
        let mut cuts_same = true;
        for cut in [16, 32, 64, m / 2] {
            let mut c = vec![0.0f32; m * n];
            let (top, bottom) = c.split_at_mut(cut * n);
            let first = Product { m: cut, ..p };
            let rest = Product { m: m - cut, ..p };
            // SAFETY: each call gets its own rows of `a` and of the output.
            unsafe {
                gemm_crate(first, &a[..cut * k], &b, top, gemm::Parallelism::None);
                gemm_crate(rest, &a[cut * k..], &b, bottom, gemm::Parallelism::None);
            }
            cuts_same &= same(&c);
        }
        let mut c = vec![0.0f32; m * n];
        // SAFETY: as above.
        unsafe { gemm_crate(p, &a, &b, &mut c, gemm::Parallelism::Rayon(2)) };
        println!(
            "{m} x {k} x {n}: rows cut in two give the same bits: {cuts_same}; gemm's own 2-thread split: {}",
            same(&c)
        );
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("blocks") => blocks(),
        _ => timings(),
    }
}
