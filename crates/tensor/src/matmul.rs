//! Matrix multiplication: one safe, strided GEMM wrapper over
//! `matrixmultiply`, and [`Tensor::matmul`] for 2-D and batched 3-D operands.
//!
//! Operands are passed to the kernel with their real strides, so a transposed
//! or sliced view is multiplied without being copied: `a.transpose(0, 1)?
//! .matmul(&b)` costs the same as a contiguous `A^T B`.
//!
//! Large products are split into blocks of rows (or columns) of `C` and run
//! on the current rayon pool. Each element of `C` is still computed by one
//! kernel call over the same `k` order, and blocks start at multiples of
//! [`SPLIT_ALIGN`] (a multiple of every kernel's tile size), so the result
//! is bit-identical whatever the number of threads.
#![allow(unsafe_code)]

use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut2, Axis, Ix2, Ix3};
use rayon::prelude::*;

use crate::element::Float;
use crate::error::{Result, TensorError};
use crate::shape::checked_len;
use crate::tensor::Tensor;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The raw GEMM kernel for one element type (`sgemm` for `f32`, `dgemm` for
/// `f64`). Sealed: implemented only for `f32` and `f64`. Call the safe
/// [`gemm`] instead.
///
/// ```
/// // Only f32 and f64 implement it, as a supertrait of `Float`.
/// fn takes_gemm<T: polyhead_tensor::Gemm>() {}
/// takes_gemm::<f32>();
/// takes_gemm::<f64>();
/// ```
pub trait Gemm: sealed::Sealed + Sized {
    /// `C <- alpha A B + beta C` on raw strided matrices.
    ///
    /// # Safety
    /// `a` must point at an `m x k` matrix readable at every offset
    /// `i*rsa + j*csa`; likewise `b` (`k x n`). `c` must point at an `m x n`
    /// matrix writable at every `i*rsc + j*csc`, whose elements do not alias
    /// each other nor `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_gemm {
    ($t:ty, $kernel:path) => {
        impl Gemm for $t {
            unsafe fn gemm_raw(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: the caller upholds this method's contract, which is
                // exactly the contract of the matrixmultiply kernel.
                unsafe { $kernel(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }
        }
    };
}

impl_gemm!(f32, matrixmultiply::sgemm);
impl_gemm!(f64, matrixmultiply::dgemm);

/// Products of fewer multiply-adds than this run on one thread. Measured on the
/// 2-core CI machine kind with `cargo xtask bench`: a training step whose
/// products have 6.4M multiply-adds got *slower* on two threads (each product
/// alone ran 1.4x faster, but waking the idle rayon worker between products
/// cost more), while one with 51M-element products ran 1.35x faster.
const PARALLEL_GEMM_MIN: usize = 1 << 23;

/// The same inside [`with_awake_pool`](crate::parallel::with_awake_pool),
/// where the other threads are polling for work: measured on the same
/// machine, a 6.4M product ran in 48 us on two threads against 83 us on one.
const AWAKE_PARALLEL_GEMM_MIN: usize = 1 << 21;

/// Blocks of `C` start at multiples of this many rows or columns: a multiple of
/// matrixmultiply's micro-tile sizes (at most 16), so each block is tiled exactly
/// as the whole product would be and rounding does not depend on the split.
const SPLIT_ALIGN: usize = 64;

/// `C <- alpha A B + beta C` on ndarray views with any strides (transposed,
/// sliced, negative). With `beta = 0` the old contents of `C` are ignored
/// (even NaN). Errors if the shapes do not fit. Products of more than 8M
/// multiply-adds (2M inside
/// [`with_awake_pool`](crate::parallel::with_awake_pool)) use the threads of
/// the current rayon pool, with results bit-identical to one thread.
///
/// ```
/// use ndarray::{array, Array2};
/// let a = array![[1.0_f32, 2.0], [3.0, 4.0]];
/// let mut c = Array2::<f32>::zeros((2, 2));
/// // C = A^T A, passing the transposed view directly.
/// polyhead_tensor::gemm(1.0, a.t(), a.view(), 0.0, c.view_mut())?;
/// assert_eq!(c, array![[10.0, 14.0], [14.0, 20.0]]);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub fn gemm<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    let (m, k, n) = product_dims(&a, &b)?;
    if c.dim() != (m, n) {
        return Err(TensorError::Invalid {
            op: "gemm",
            message: format!(
                "output has shape {:?}, expected [{m}, {n}] for {:?} x {:?}",
                c.shape(),
                a.shape(),
                b.shape()
            ),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // A B is the zero matrix; C <- beta C (beta = 0 overwrites, as BLAS does).
        if beta == T::ZERO {
            c.fill(T::ZERO);
        } else {
            c.mapv_inplace(|v| v * beta);
        }
        return Ok(());
    }
    let out = Out {
        ptr: c.as_mut_ptr(),
        rs: c.strides()[0],
        cs: c.strides()[1],
    };
    // SAFETY: `out` addresses the elements of `c`, an (m, n) view borrowed
    // mutably for this whole call, whose elements do not alias each other
    // nor `a` and `b` (shared views cannot alias a unique one).
    unsafe { product(alpha, a, b, beta, out, n) };
    Ok(())
}

/// `alpha A B` into a new row-major array: [`gemm`] with `beta = 0`, without
/// first filling the output with zeros (the kernel writes every element, so
/// the zero-fill was a pass over the output on one thread, before the
/// threads wrote their blocks). Same threading and bits as [`gemm`].
///
/// ```
/// use ndarray::array;
/// let a = array![[1.0_f32, 2.0], [3.0, 4.0]];
/// let c = polyhead_tensor::gemm_new(2.0, a.t(), a.view())?;
/// assert_eq!(c, array![[20.0, 28.0], [28.0, 40.0]]);
/// assert!(polyhead_tensor::gemm_new(1.0, a.view(), array![[1.0_f32, 2.0]].view()).is_err());
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub fn gemm_new<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
) -> Result<Array2<T>> {
    let (m, k, n) = product_dims(&a, &b)?;
    let len = checked_len("gemm_new", &[m, n], size_of::<T>())?;
    if len == 0 || k == 0 {
        return Ok(Array2::from_elem((m, n), T::ZERO));
    }
    let mut data: Vec<T> = Vec::with_capacity(len);
    let out = Out {
        ptr: data.as_mut_ptr(),
        rs: n as isize,
        cs: 1,
    };
    // SAFETY: `out` addresses `data`'s allocation of `m * n` elements as a
    // row-major (m, n) matrix (distinct elements, no alias with the shared
    // inputs), and `data` outlives the call. With `beta = 0` the kernel
    // never reads C (matrixmultiply: "if beta is zero, C does not need to
    // be initialized") and writes every element of each block, and the
    // blocks cover all rows (or all columns) of C; so all `m * n` elements
    // are initialized when `product` returns, which makes `set_len` sound.
    unsafe {
        product(alpha, a, b, T::ZERO, out, n);
        data.set_len(len);
    }
    Ok(Array2::from_shape_vec((m, n), data).expect("m * n elements"))
}

/// `alpha a b` as a new 2-D tensor, its buffer from this thread's
/// [`pool`](crate::pool) when the pool holds one of `m * n` elements (no
/// allocation), else new: the product autograd's matmul backward makes
/// (`G B^T`, `A^T G` from transposed views). Same threading and bits as
/// [`gemm`] and [`gemm_new`].
///
/// ```
/// use ndarray::array;
/// let a = array![[1.0_f32, 2.0], [3.0, 4.0]];
/// let c = polyhead_tensor::gemm_tensor(1.0, a.t(), a.view())?;
/// assert_eq!(c.to_vec(), vec![10.0, 14.0, 14.0, 20.0]);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub fn gemm_tensor<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
) -> Result<Tensor<T>> {
    let (m, _, n) = product_dims(&a, &b)?;
    checked_len("gemm_tensor", &[m, n], size_of::<T>())?;
    let mut done = Ok(());
    let c = Tensor::from_fill(&[m, n], |out| done = gemm_into(alpha, a, b, out));
    done.map(|()| c)
}

/// `alpha a b` written into `out`, a row-major (m, n) buffer whose old
/// contents are never read (every element is written): the product into a
/// pooled buffer, for [`Tensor::matmul`]. Same threading and bits as
/// [`gemm`].
fn gemm_into<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    out: &mut [T],
) -> Result<()> {
    let (m, k, n) = product_dims(&a, &b)?;
    assert_eq!(out.len(), m * n, "gemm_into: the output is (m, n)");
    if out.is_empty() {
        return Ok(());
    }
    if k == 0 {
        out.fill(T::ZERO);
        return Ok(());
    }
    let c = Out {
        ptr: out.as_mut_ptr(),
        rs: n as isize,
        cs: 1,
    };
    // SAFETY: `c` addresses `out`, a row-major (m, n) matrix of distinct
    // elements borrowed mutably for the call (so no alias with the shared
    // inputs). With `beta = 0` the kernel never reads C (see `gemm_new`).
    unsafe { product(alpha, a, b, T::ZERO, c, n) };
    Ok(())
}

/// `(m, k, n)` of the product of an (m, k) and a (k2, n) matrix, or an
/// error naming both shapes when `k != k2`.
fn product_dims<T>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Result<(usize, usize, usize)> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 {
        return Err(TensorError::Matmul {
            reason: "inner dimensions differ",
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        });
    }
    Ok((m, k, n))
}

/// The output matrix of a product, as the raw kernel takes it: element
/// `[i, j]` at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Out<T> {
    ptr: *mut T,
    rs: isize,
    cs: isize,
}

// SAFETY: an `Out` is sent to another thread only by `product`, for one
// block of the output; the blocks address disjoint elements, and `product`
// returns (so the buffer is still borrowed) only after every block is done.
unsafe impl<T: Send> Send for Out<T> {}

/// Runs the product on non-empty, shape-checked operands (`a`: (m, k), `b`:
/// (k, n) with m, n, k > 0), splitting it over the rayon pool when it is
/// large enough (see [`gemm`]).
///
/// # Safety
/// `out` must address a writable (m, n) matrix whose elements do not alias
/// each other nor `a` and `b`, alive until this returns. With `beta != 0`
/// its elements must be initialized.
unsafe fn product<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    out: Out<T>,
    n: usize,
) {
    let work = a.nrows() * n * a.ncols();
    let threads = rayon::current_num_threads();
    let awake = crate::parallel::pool_is_awake();
    // SAFETY (all three calls): forwarded from this function's contract.
    unsafe {
        if awake && work >= AWAKE_PARALLEL_GEMM_MIN {
            gemm_split(alpha, a, b, beta, out, threads, true);
        } else if work >= PARALLEL_GEMM_MIN {
            gemm_split(alpha, a, b, beta, out, threads, false);
        } else {
            gemm_serial(alpha, a, b, beta, out);
        }
    }
}

/// The block boundaries of a dimension of length `len` cut into up to
/// `pieces` blocks: `0`, cut points rounded to the nearest multiple of
/// [`SPLIT_ALIGN`], `len`.
fn block_bounds(len: usize, pieces: usize) -> Vec<usize> {
    let mut bounds = vec![0];
    for i in 1..pieces {
        let cut = ((len * i / pieces + SPLIT_ALIGN / 2) / SPLIT_ALIGN) * SPLIT_ALIGN;
        if cut > *bounds.last().expect("starts with 0") && cut < len {
            bounds.push(cut);
        }
    }
    bounds.push(len);
    bounds
}

/// The product as up to `pieces` blocks of rows (or columns, whichever
/// dimension of `C` is longer), each one kernel call. Inside
/// [`with_awake_pool`](crate::parallel::with_awake_pool) the calling thread
/// computes the first block and polling workers the others, and the caller
/// waits without sleeping; elsewhere rayon schedules the blocks.
///
/// # Safety
/// As for [`product`].
unsafe fn gemm_split<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    out: Out<T>,
    pieces: usize,
    awake: bool,
) {
    let (m, n) = (a.nrows(), b.ncols());
    let split_rows = m >= n;
    let bounds = block_bounds(if split_rows { m } else { n }, pieces);
    let mut blocks = Vec::with_capacity(bounds.len() - 1);
    let (mut a_rest, mut b_rest) = (a, b);
    for w in bounds.windows(2).rev() {
        // Peel blocks off the end, so each split point is relative to the
        // start of what remains; the output block starts at row (or column)
        // `w[0]` of the whole output.
        let at = w[0] as isize;
        if split_rows {
            let (a0, a1) = a_rest.split_at(Axis(0), w[0]);
            // SAFETY: row `at < m` of the output: inside its allocation.
            let ptr = unsafe { out.ptr.offset(at * out.rs) };
            blocks.push((a1, b_rest, Out { ptr, ..out }));
            a_rest = a0;
        } else {
            let (b0, b1) = b_rest.split_at(Axis(1), w[0]);
            // SAFETY: column `at < n` of the output: inside its allocation.
            let ptr = unsafe { out.ptr.offset(at * out.cs) };
            blocks.push((a_rest, b1, Out { ptr, ..out }));
            b_rest = b0;
        }
    }
    // SAFETY (each block): a block's output is the (rows of a) x (columns
    // of b) part of `out`, disjoint from every other block's.
    let run = |(a, b, out)| unsafe { gemm_serial(alpha, a, b, beta, out) };
    if blocks.len() == 1 {
        return run(blocks.pop().expect("one block"));
    }
    if awake {
        // The first block (pushed last) runs on the calling thread.
        blocks.reverse();
        crate::parallel::run_each(blocks, run);
    } else {
        blocks.into_par_iter().for_each(run);
    }
}

/// One kernel call on non-empty, shape-checked operands.
///
/// # Safety
/// As for [`product`], for the (a.nrows(), b.ncols()) matrix `out`.
unsafe fn gemm_serial<T: Float>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    out: Out<T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let [rsa, csa] = strides(&a.view());
    let [rsb, csb] = strides(&b.view());
    // SAFETY: `a` and `b` are live ndarray views of shapes (m, k) and
    // (k, n), all non-empty (callers return early otherwise, and
    // `gemm_split` never makes an empty block); `as_ptr` is the element at
    // [0, 0] and every `i*rs + j*cs` within the shape is an element of the
    // view. `out` satisfies the kernel's contract for C by this function's.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            out.ptr,
            out.rs,
            out.cs,
        );
    }
}

fn strides<T>(v: &ArrayView2<'_, T>) -> [isize; 2] {
    [v.strides()[0], v.strides()[1]]
}

impl<T: Float> Tensor<T> {
    /// Matrix product. `[m, k] x [k, n] -> [m, n]`; batched 3-D operands
    /// `[b, m, k] x [b, k, n] -> [b, m, n]`, where a batch of 1 or a 2-D
    /// operand is broadcast over the other's batch. Transposed and sliced
    /// inputs are multiplied in place through their strides (no copies).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let w = Tensor::from_vec(vec![1.0_f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[2, 3])?;
    /// assert_eq!(x.matmul(&w)?.to_vec(), vec![3.0, 2.0, 2.0, 7.0, 4.0, 4.0]);
    /// // x^T x without materialising the transpose:
    /// assert_eq!(x.transpose(0, 1)?.matmul(&x)?.to_vec(), vec![10.0, 14.0, 14.0, 20.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        let err = |reason| TensorError::Matmul {
            reason,
            lhs: self.shape().to_vec(),
            rhs: other.shape().to_vec(),
        };
        match (self.ndim(), other.ndim()) {
            (2, 2) => {
                let a = self.view().into_dimensionality::<Ix2>().expect("2-D");
                let b = other.view().into_dimensionality::<Ix2>().expect("2-D");
                if a.ncols() != b.nrows() {
                    return Err(err("inner dimensions differ"));
                }
                checked_len("matmul", &[a.nrows(), b.ncols()], size_of::<T>())?;
                gemm_tensor(T::ONE, a, b)
            }
            (2 | 3, 2 | 3) => {
                let a = as_batched(self);
                let b = as_batched(other);
                let (ba, m, k) = a.dim();
                let (bb, k2, n) = b.dim();
                if k != k2 {
                    return Err(err("inner dimensions differ"));
                }
                if ba != bb && ba != 1 && bb != 1 {
                    return Err(err("batch dimensions differ"));
                }
                // NumPy broadcasting: a batch of 1 takes the other's length (even 0).
                let batch = if ba == 1 { bb } else { ba };
                checked_len("matmul", &[batch, m, n], size_of::<T>())?;
                let mut out = Array3::from_elem((batch, m, n), T::ZERO);
                for (i, c) in out.axis_iter_mut(Axis(0)).enumerate() {
                    let ai = a.index_axis(Axis(0), if ba == 1 { 0 } else { i });
                    let bi = b.index_axis(Axis(0), if bb == 1 { 0 } else { i });
                    gemm(T::ONE, ai, bi, T::ZERO, c)?;
                }
                Ok(Tensor::from_array(out))
            }
            _ => Err(err("expected 2-D or 3-D operands")),
        }
    }
}

/// A 2-D or 3-D tensor as a 3-D view (a 2-D operand gets a batch of 1).
fn as_batched<T: Float>(t: &Tensor<T>) -> ndarray::ArrayView3<'_, T> {
    let v = t.view();
    if v.ndim() == 2 {
        v.insert_axis(Axis(0))
            .into_dimensionality::<Ix3>()
            .expect("2-D plus one axis is 3-D")
    } else {
        v.into_dimensionality::<Ix3>().expect("checked 3-D")
    }
}

#[cfg(test)]
mod tests {
    use super::block_bounds;

    #[test]
    fn block_bounds_cut_at_multiples_of_the_alignment() {
        assert_eq!(block_bounds(784, 2), vec![0, 384, 784]);
        assert_eq!(block_bounds(128, 2), vec![0, 64, 128]);
        assert_eq!(block_bounds(100, 2), vec![0, 64, 100]);
        assert_eq!(block_bounds(60, 2), vec![0, 60]);
        assert_eq!(block_bounds(1000, 3), vec![0, 320, 640, 1000]);
        assert_eq!(block_bounds(64, 4), vec![0, 64]);
        assert_eq!(block_bounds(500, 1), vec![0, 500]);
    }
}
