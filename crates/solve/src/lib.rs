//! The small problems polyhead's gradient-combining loss weighting
//! strategies solve over the `K x K` Gram matrix `G = [g_i . g_j]` of the
//! heads' gradients: quadratic and conic programs go to the
//! [Clarabel](https://clarabel.org) interior-point solver; the symmetric
//! eigendecomposition of a `K x K` matrix is cyclic Jacobi and a small
//! linear system Gaussian elimination.
//!
//! A crate of its own so that Clarabel's generic code is compiled here,
//! optimised even in the workspace's test builds.
//!
//! ```
//! use polyhead_solve::{Cone, conic};
//! // min x0^2 + x1^2 on x0 + x1 = 1, x >= 0.
//! let x = conic(&[vec![2.0, 0.0], vec![0.0, 2.0]], &[0.0, 0.0],
//!     &[vec![1.0, 1.0], vec![-1.0, 0.0], vec![0.0, -1.0]], &[1.0, 0.0, 0.0],
//!     &[Cone::Zero(1), Cone::Nonnegative(2)])?;
//! assert!((x[0] - 0.5).abs() < 1e-7);
//! # Ok::<(), polyhead_solve::SolveError>(())
//! ```

#![forbid(unsafe_code)]

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettings, DefaultSolver, IPSolver, SolverStatus, SupportedConeT};

/// Why a program was not solved.
///
/// ```
/// let e = polyhead_solve::SolveError("stopped".into());
/// assert_eq!(e.to_string(), "stopped");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SolveError(pub String);

/// A cone the slacks `s = b - A x` lie in, by consecutive rows.
///
/// ```
/// let cones = [polyhead_solve::Cone::Zero(1), polyhead_solve::Cone::Nonnegative(3)];
/// # let _ = cones;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cone {
    /// `n` rows equal to zero (equalities).
    Zero(usize),
    /// `n` rows at least zero (inequalities).
    Nonnegative(usize),
    /// `n` rows `(t, v)` with `|v| <= t`.
    SecondOrder(usize),
    /// Three rows `(x, y, z)` with `y exp(x / y) <= z`.
    Exponential,
}

impl Cone {
    fn clarabel(self) -> SupportedConeT<f64> {
        match self {
            Cone::Zero(n) => SupportedConeT::ZeroConeT(n),
            Cone::Nonnegative(n) => SupportedConeT::NonnegativeConeT(n),
            Cone::SecondOrder(n) => SupportedConeT::SecondOrderConeT(n),
            Cone::Exponential => SupportedConeT::ExponentialConeT(),
        }
    }
}

type Result<T> = std::result::Result<T, SolveError>;

/// A dense matrix as Clarabel's compressed columns (`upper`: only the
/// upper triangle, as Clarabel reads a cost matrix).
fn csc(rows: usize, cols: usize, at: impl Fn(usize, usize) -> f64, upper: bool) -> CscMatrix<f64> {
    let (mut colptr, mut rowval, mut nzval) = (vec![0], Vec::new(), Vec::new());
    for c in 0..cols {
        for r in 0..rows {
            let v = at(r, c);
            if v != 0.0 && (!upper || r <= c) {
                rowval.push(r);
                nzval.push(v);
            }
        }
        colptr.push(rowval.len());
    }
    CscMatrix::new(rows, cols, colptr, rowval, nzval)
}

/// Minimises `1/2 x^T P x + q^T x` subject to `A x + s = b`, `s` in
/// `cones` (Clarabel's standard form); `P` (symmetric, its upper triangle
/// read; empty for none) and `A` dense, row-major.
///
/// ```
/// use polyhead_solve::{Cone, conic};
/// // min -x on x <= 2 (x + s = 2, s >= 0).
/// let x = conic(&[], &[-1.0], &[vec![1.0]], &[2.0], &[Cone::Nonnegative(1)])?;
/// assert!((x[0] - 2.0).abs() < 1e-6);
/// # Ok::<(), polyhead_solve::SolveError>(())
/// ```
pub fn conic(
    p: &[Vec<f64>],
    q: &[f64],
    a: &[Vec<f64>],
    b: &[f64],
    cones: &[Cone],
) -> Result<Vec<f64>> {
    solve_conic(p, q, a, b, cones, false)
}

/// [`conic`], also taking the last iterate when the solver stops at its
/// iteration limit or for lack of progress (for problems where any
/// feasible point is usable and the caller projects it back).
///
/// ```
/// use polyhead_solve::{Cone, conic_best_effort};
/// let x = conic_best_effort(&[], &[-1.0], &[vec![1.0]], &[2.0], &[Cone::Nonnegative(1)])?;
/// assert!((x[0] - 2.0).abs() < 1e-6);
/// # Ok::<(), polyhead_solve::SolveError>(())
/// ```
pub fn conic_best_effort(
    p: &[Vec<f64>],
    q: &[f64],
    a: &[Vec<f64>],
    b: &[f64],
    cones: &[Cone],
) -> Result<Vec<f64>> {
    solve_conic(p, q, a, b, cones, true)
}

fn solve_conic(
    p: &[Vec<f64>],
    q: &[f64],
    a: &[Vec<f64>],
    b: &[f64],
    cones: &[Cone],
    best_effort: bool,
) -> Result<Vec<f64>> {
    let n = q.len();
    let p = csc(
        n,
        n,
        |r, c| p.get(r).and_then(|row| row.get(c)).copied().unwrap_or(0.0),
        true,
    );
    let a = csc(a.len(), n, |r, c| a[r][c], false);
    let cones: Vec<SupportedConeT<f64>> = cones.iter().map(|c| c.clarabel()).collect();
    // First tighter than Clarabel's 1e-8 defaults (the weights feed
    // optimality conditions that the tests check to 1e-9, and these
    // programs are tiny); if that stalls, Clarabel's own tolerances.
    let mut solver = None;
    for tolerance in [1e-10, 1e-8] {
        let settings = DefaultSettings {
            verbose: false,
            tol_gap_abs: tolerance,
            tol_gap_rel: tolerance,
            tol_feas: tolerance,
            tol_ktratio: tolerance * 100.0,
            max_iter: 400,
            ..DefaultSettings::default()
        };
        let mut attempt = DefaultSolver::new(&p, q, &a, b, &cones, settings)
            .map_err(|e| SolveError(format!("the solver refused the problem: {e}")))?;
        attempt.solve();
        let done = matches!(
            attempt.solution.status,
            SolverStatus::Solved | SolverStatus::AlmostSolved
        );
        solver = Some(attempt);
        if done {
            break;
        }
    }
    let solver = solver.expect("at least one attempt");
    let x = &solver.solution.x;
    let finite = x.iter().all(|v| v.is_finite());
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved if finite => Ok(x.clone()),
        SolverStatus::MaxIterations | SolverStatus::InsufficientProgress
            if best_effort && finite =>
        {
            Ok(x.clone())
        }
        status => Err(SolveError(format!(
            "the solver stopped with status {status:?}"
        ))),
    }
}

/// The eigenvalues (ascending) and eigenvectors (`vectors[i][k]`: entry
/// `i` of the `k`-th) of a symmetric matrix, by cyclic Jacobi rotations.
///
/// ```
/// let (values, vectors) = polyhead_solve::symmetric_eigen(&[vec![2.0, 1.0], vec![1.0, 2.0]]);
/// assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
/// assert!((vectors[0][1] - vectors[1][1]).abs() < 1e-12); // (1, 1) / sqrt 2
/// ```
pub fn symmetric_eigen(m: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let k = m.len();
    let mut a: Vec<Vec<f64>> = m.to_vec();
    let mut v: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let scale: f64 = a.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                if a[p][q] == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q].
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (arp, arq) = (row[p], row[q]);
                    row[p] = c * arp - s * arq;
                    row[q] = s * arp + c * arq;
                }
                let (row_p, row_q) = (a[p].clone(), a[q].clone());
                for (r, (apr, aqr)) in row_p.iter().zip(&row_q).enumerate() {
                    a[p][r] = c * apr - s * aqr;
                    a[q][r] = s * apr + c * aqr;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| a[x][x].total_cmp(&a[y][y]));
    let values = order.iter().map(|&j| a[j][j]).collect();
    let vectors = (0..k)
        .map(|i| order.iter().map(|&j| v[i][j]).collect())
        .collect();
    (values, vectors)
}

/// Solves the small dense system `m x = rhs` by Gaussian elimination with
/// partial pivoting; `None` if `m` is singular.
///
/// ```
/// let x = polyhead_solve::solve_linear(&[vec![2.0, 0.0], vec![0.0, 4.0]], &[2.0, 2.0]).unwrap();
/// assert_eq!(x, vec![1.0, 0.5]);
/// ```
pub fn solve_linear(m: &[Vec<f64>], rhs: &[f64]) -> Option<Vec<f64>> {
    let n = rhs.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .zip(rhs)
        .map(|(row, &r)| row.iter().copied().chain([r]).collect())
        .collect();
    let scale = a.iter().flatten().fold(0.0f64, |s, x| s.max(x.abs()));
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() <= 1e-13 * scale {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in a.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (a[r][n] - s) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs_a_symmetric_matrix() {
        let m = vec![
            vec![4.0, 1.0, -2.0],
            vec![1.0, 2.0, 0.5],
            vec![-2.0, 0.5, 3.0],
        ];
        let (values, vectors) = symmetric_eigen(&m);
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        for i in 0..3 {
            for j in 0..3 {
                let back: f64 = (0..3)
                    .map(|k| vectors[i][k] * values[k] * vectors[j][k])
                    .sum();
                assert!(
                    (back - m[i][j]).abs() < 1e-12,
                    "{i},{j}: {back} vs {}",
                    m[i][j]
                );
                let orth: f64 = (0..3).map(|r| vectors[r][i] * vectors[r][j]).sum();
                assert!((orth - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gaussian_elimination_solves_and_refuses_singular_systems() {
        let x = solve_linear(&[vec![0.0, 2.0], vec![3.0, 1.0]], &[4.0, 5.0]).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-15 && (x[1] - 2.0).abs() < 1e-15);
        assert!(solve_linear(&[vec![1.0, 2.0], vec![2.0, 4.0]], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn a_quadratic_program_on_the_simplex() {
        // min x0^2 + x1^2 on x0 + x1 = 1, x >= 0: (0.5, 0.5).
        let x = conic(
            &[vec![2.0, 0.0], vec![0.0, 2.0]],
            &[0.0, 0.0],
            &[vec![1.0, 1.0], vec![-1.0, 0.0], vec![0.0, -1.0]],
            &[1.0, 0.0, 0.0],
            &[Cone::Zero(1), Cone::Nonnegative(2)],
        )
        .unwrap();
        assert!((x[0] - 0.5).abs() < 1e-7 && (x[1] - 0.5).abs() < 1e-7);
    }
}
