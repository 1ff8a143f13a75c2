//! A per-thread pool of released tensor buffers.
//!
//! A training step makes the same tensors every step: activations, their
//! gradients, products. Each is an `ArcArray`, a buffer plus a reference
//! count: two heap allocations, and for a large one fresh pages the kernel
//! zeroes. When a [`Tensor`](crate::Tensor) is dropped and nothing else
//! shares its buffer, the array goes to this thread's pool instead of the
//! allocator. The next tensor of the same number of elements made on this
//! thread by a kernel that writes every element takes it back, reshaped,
//! with no allocation at all: [`Tensor::from_fill`](crate::Tensor::from_fill)
//! (the way in for kernels of one's own), products
//! ([`Tensor::matmul`](crate::Tensor::matmul), [`gemm_tensor`](crate::gemm_tensor)),
//! [`Tensor::map`](crate::Tensor::map), [`Tensor::zip_map`](crate::Tensor::zip_map)
//! and the ops built on them, `sum_to_shape` over the batch axis, and the
//! loss kernels' gradients (`polyhead-losses`). Values never depend on the
//! pool: whoever takes a buffer writes every element of it.
//!
//! Only sizes a kernel has asked the pool for keep their arrays: a
//! tensor of a size nobody on this thread makes from the pool (a batch read
//! from a file on another thread, dropped here) is freed as usual, so the
//! pool holds a training step's own working set and not whatever passes
//! through. It holds at most [`MAX_PER_SIZE`] arrays of one size,
//! [`MAX_BUFFERS`] arrays and [`MAX_BYTES`] bytes per thread and element
//! type. [`release_pooled_buffers`] empties this thread's pools.
//!
//! ```
//! use polyhead_tensor::Tensor;
//! let a = Tensor::<f32>::ones(&[64, 64])?;
//! let first = a.map(|v| v * 2.0);
//! let address = first.as_slice().unwrap().as_ptr();
//! drop(first); // back to this thread's pool
//! let second = a.map(|v| v * 3.0); // the same buffer, no allocation
//! assert_eq!(second.as_slice().unwrap().as_ptr(), address);
//! assert!(second.to_vec().iter().all(|&v| v == 3.0));
//! polyhead_tensor::release_pooled_buffers();
//! # Ok::<(), polyhead_tensor::TensorError>(())
//! ```

use std::cell::RefCell;

use ndarray::{ArcArray, IxDyn};

use crate::element::Float;
use crate::local::with_local;

/// Arrays kept per thread and element type.
pub const MAX_BUFFERS: usize = 64;

/// Arrays of one element count kept per thread and element type (a
/// training step's activations and gradients of one layer).
pub const MAX_PER_SIZE: usize = 16;

/// Bytes kept per thread and element type (64 MiB).
pub const MAX_BYTES: usize = 64 << 20;

/// Released arrays of one element type, most recent last.
struct Pool<T> {
    arrays: Vec<ArcArray<T, IxDyn>>,
    bytes: usize,
    /// The element counts asked for (found or not), most recent last; only
    /// arrays of these sizes are kept.
    wanted: Vec<usize>,
}

impl<T> Pool<T> {
    const fn new() -> Self {
        Pool {
            arrays: Vec::new(),
            bytes: 0,
            wanted: Vec::new(),
        }
    }

    /// Notes that a kernel asked for arrays of `len` elements (the last
    /// [`MAX_BUFFERS`] sizes asked for are remembered).
    fn want(&mut self, len: usize) {
        if let Some(at) = self.wanted.iter().rposition(|&w| w == len) {
            self.wanted.remove(at);
        } else if self.wanted.len() == MAX_BUFFERS {
            self.wanted.remove(0);
        }
        self.wanted.push(len);
    }
}

thread_local! {
    static POOL_F32: RefCell<Pool<f32>> = const { RefCell::new(Pool::new()) };
    static POOL_F64: RefCell<Pool<f64>> = const { RefCell::new(Pool::new()) };
}

/// Runs `f` on this thread's pool for `T` (see [`with_local`]).
fn with_pool<T: Float, R>(f: impl FnOnce(&mut Pool<T>) -> R) -> Option<R> {
    with_local(&POOL_F32, &POOL_F64, f)
}

/// A released row-major array of `shape`'s element count from this thread's
/// pool, reshaped to `shape` and not shared (so writable in place without a
/// copy); `None` when the pool holds none of that length. Its contents are
/// stale, some dropped tensor's values: the caller must overwrite every
/// element ([`Tensor::from_fill`](crate::Tensor::from_fill) is the safe
/// way to use it).
///
/// ```
/// use polyhead_tensor::{Tensor, pool};
/// let a = Tensor::<f32>::ones(&[2, 3])?;
/// drop(a.map(|v| v + 1.0));
/// let mut reused = pool::take_array::<f32>(&[3, 2]).expect("a buffer of 6");
/// assert_eq!(reused.shape(), &[3, 2]);
/// reused.fill(0.0);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub fn take_array<T: Float>(shape: &[usize]) -> Option<ArcArray<T, IxDyn>> {
    let len: usize = shape.iter().product();
    let array = with_pool::<T, _>(|pool| {
        pool.want(len);
        let at = pool.arrays.iter().rposition(|a| a.len() == len)?;
        pool.bytes -= len * size_of::<T>();
        Some(pool.arrays.swap_remove(at))
    })??;
    array.into_shape_with_order(IxDyn(shape)).ok()
}

/// Keeps `array` for [`take_array`] if nothing else shares its buffer, it
/// is row-major and non-empty, a kernel on this thread asks for its size,
/// and the pool has room; otherwise drops it.
pub(crate) fn give<T: Float>(array: ArcArray<T, IxDyn>) {
    let bytes = array.len() * size_of::<T>();
    if array.is_empty() || !array.is_standard_layout() || !array.is_unique() {
        return;
    }
    // An array the pool refuses comes back and is dropped here, after the
    // pool's borrow has ended.
    let refused = with_pool::<T, _>(move |pool| {
        let len = array.len();
        let full = pool.arrays.len() >= MAX_BUFFERS
            || pool.bytes + bytes > MAX_BYTES
            || pool.arrays.iter().filter(|a| a.len() == len).count() >= MAX_PER_SIZE;
        if full || !pool.wanted.contains(&len) {
            return Some(array);
        }
        pool.bytes += bytes;
        pool.arrays.push(array);
        None
    });
    drop(refused);
}

/// Frees every buffer this thread's pools hold (see the [module
/// docs](self)) and returns how many bytes they held; other threads' pools
/// are theirs to empty.
///
/// ```
/// use polyhead_tensor::Tensor;
/// drop(Tensor::<f32>::ones(&[3])?);
/// polyhead_tensor::release_pooled_buffers();
/// assert_eq!(polyhead_tensor::pool::pooled_bytes::<f32>(), 0);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub fn release_pooled_buffers() -> usize {
    fn release<T: Float>() -> usize {
        with_pool::<T, _>(|pool| {
            let bytes = pool.bytes;
            pool.arrays = Vec::new();
            pool.bytes = 0;
            pool.wanted = Vec::new();
            bytes
        })
        .unwrap_or(0)
    }
    release::<f32>() + release::<f64>()
}

/// Bytes of `T` buffers this thread's pool holds.
///
/// ```
/// use polyhead_tensor::Tensor;
/// let a = Tensor::<f64>::ones(&[4])?;
/// polyhead_tensor::release_pooled_buffers();
/// drop(a.map(|v| v * 2.0));
/// assert_eq!(polyhead_tensor::pool::pooled_bytes::<f64>(), 32);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
pub fn pooled_bytes<T: Float>() -> usize {
    with_pool::<T, _>(|pool| pool.bytes).unwrap_or(0)
}
