//! Keeping the rayon pool awake through a burst of parallel work.
//!
//! An idle rayon worker goes to sleep within microseconds, and waking it
//! takes tens of microseconds (about 60 us measured on the 2-core virtual
//! machine this project targets). A training step runs a few GEMMs of tens
//! of microseconds each with other work between them, so a product split
//! over two threads finished *later* than on one: its second half waited
//! for the sleeping worker. [`with_awake_pool`] keeps the pool's other
//! threads polling for work while a closure runs (what OpenMP runtimes call
//! an active wait policy), and [`gemm`](crate::gemm) then splits products
//! from a much smaller size. The price: those threads spin at full speed
//! meanwhile. Results never depend on it, only when split work starts.
//!
//! ```
//! use polyhead_tensor::Tensor;
//! use polyhead_tensor::parallel::{pool_is_awake, with_awake_pool};
//! let a = Tensor::<f32>::ones(&[256, 256])?;
//! let product = with_awake_pool(|| a.matmul(&a))?;
//! assert_eq!(product.to_vec()[0], 256.0);
//! assert!(!pool_is_awake());
//! # Ok::<(), polyhead_tensor::TensorError>(())
//! ```

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static AWAKE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is running a closure given to
/// [`with_awake_pool`] with a pool of two or more threads.
///
/// ```
/// assert!(!polyhead_tensor::parallel::pool_is_awake());
/// ```
pub fn pool_is_awake() -> bool {
    AWAKE.with(Cell::get)
}

/// Runs `f` on the calling thread while the current rayon pool's other
/// threads poll for work instead of sleeping, and returns its result. With
/// a pool of one thread, or inside another `with_awake_pool`, it just runs
/// `f`. The pollers stop when `f` returns or panics.
///
/// ```
/// let sum = polyhead_tensor::parallel::with_awake_pool(|| (1..=10).sum::<i32>());
/// assert_eq!(sum, 55);
/// ```
pub fn with_awake_pool<R>(f: impl FnOnce() -> R) -> R {
    let threads = rayon::current_num_threads();
    if threads < 2 || pool_is_awake() {
        return f();
    }
    let done = Arc::new(AtomicBool::new(false));
    // One poller per other thread of the pool: the calling thread (a
    // worker or not) works on `f` itself, so the cores stay one per thread.
    let owner = rayon::current_thread_index();
    for _ in 1..threads {
        let done = Arc::clone(&done);
        rayon::spawn(move || {
            // The owner may pick this job up while it waits for split work;
            // it must not get stuck polling instead of finishing `f`.
            if rayon::current_thread_index() == owner {
                return;
            }
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        });
    }
    let _stop = SetOnDrop(&done);
    let was = AWAKE.with(|a| a.replace(true));
    let _restore = RestoreOnDrop(was);
    f()
}

/// Runs `first` on the calling thread and each of `rest` on the pool, and
/// returns when all are done. The caller waits by polling (running pool
/// work meanwhile if it is a worker), never by sleeping, so it resumes as
/// soon as the last job ends. Meant for use inside [`with_awake_pool`],
/// where a worker picks each job up at once (elsewhere a job may wait for
/// a sleeping worker to wake while the caller spins). While `first` runs,
/// [`pool_is_awake`] is `false` on the calling thread, as it is on the
/// workers: the other threads are busy with `rest`, so work inside a piece
/// does not split again.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use polyhead_tensor::parallel::{run_all, with_awake_pool};
/// let count = AtomicUsize::new(0);
/// with_awake_pool(|| {
///     let bump = || { count.fetch_add(1, Ordering::Relaxed); };
///     run_all(bump, vec![Box::new(bump), Box::new(bump)]);
///     // Inside a piece, work does not split again.
///     run_all(|| assert!(!polyhead_tensor::parallel::pool_is_awake()), vec![]);
/// });
/// assert_eq!(count.load(Ordering::Relaxed), 3);
/// ```
pub fn run_all<'a>(first: impl FnOnce(), rest: Vec<Box<dyn FnOnce() + Send + 'a>>) {
    let finished: Vec<AtomicBool> = rest.iter().map(|_| AtomicBool::new(false)).collect();
    rayon::in_place_scope(|scope| {
        for (job, flag) in rest.into_iter().zip(&finished) {
            scope.spawn(move |_| {
                let _done = SetOnDrop(flag);
                job();
            });
        }
        {
            let was = AWAKE.with(|a| a.replace(false));
            let _restore = RestoreOnDrop(was);
            first();
        }
        while !finished.iter().all(|f| f.load(Ordering::Acquire)) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
    });
}

/// Runs `f(item)` for every item: the first on the calling thread, the
/// others on the pool, as [`run_all`] does (one item per thread for work
/// split in advance: blocks of rows, pieces of a slice).
///
/// ```
/// use polyhead_tensor::parallel::{run_each, with_awake_pool};
/// let mut data = vec![1.0_f32; 1000];
/// with_awake_pool(|| run_each(data.chunks_mut(500), |piece| piece.iter_mut().for_each(|v| *v *= 3.0)));
/// assert!(data.iter().all(|&v| v == 3.0));
/// ```
pub fn run_each<I: Send>(items: impl IntoIterator<Item = I>, f: impl Fn(I) + Sync) {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return;
    };
    let f = &f;
    let rest: Vec<Box<dyn FnOnce() + Send + '_>> = items
        .map(|item| Box::new(move || f(item)) as Box<dyn FnOnce() + Send>)
        .collect();
    run_all(|| f(first), rest);
}

/// Runs `f(out_piece, input_piece)` on matching pieces of two slices of
/// the same length: one piece per thread when the pool is awake (see
/// [`with_awake_pool`]) and the slices hold at least `min` elements, else
/// the whole slices on the calling thread. For elementwise work whose
/// result does not depend on how the slices are cut.
///
/// ```
/// use polyhead_tensor::parallel::{for_each_piece, with_awake_pool};
/// let input: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
/// let mut out = vec![0.0; input.len()];
/// with_awake_pool(|| {
///     for_each_piece(&mut out, &input, 1 << 15, |o, i| {
///         o.iter_mut().zip(i).for_each(|(o, &i)| *o = i * 0.5)
///     })
/// });
/// assert_eq!(out[99_999], 49_999.5);
/// ```
pub fn for_each_piece<T: Send + Sync>(
    out: &mut [T],
    input: &[T],
    min: usize,
    f: impl Fn(&mut [T], &[T]) + Sync,
) {
    assert_eq!(
        out.len(),
        input.len(),
        "for_each_piece: slices of different lengths"
    );
    let Some(piece) = piece_len(out.len(), min) else {
        return f(out, input);
    };
    run_each(out.chunks_mut(piece).zip(input.chunks(piece)), |(o, i)| {
        f(o, i)
    });
}

/// The length of each of the pieces (one per thread) that work on `len`
/// items should be split into, or `None` to run it whole on the calling
/// thread: splitting pays only inside [`with_awake_pool`], on two threads
/// or more, from `min` items (and at least one per thread).
///
/// ```
/// use polyhead_tensor::parallel::{piece_len, pool_is_awake, with_awake_pool};
/// assert_eq!(piece_len(100_000, 1 << 15), None); // the pool is not awake
/// with_awake_pool(|| {
///     let threads = rayon::current_num_threads();
///     if pool_is_awake() {
///         assert_eq!(piece_len(100_000, 1 << 15), Some(100_000_usize.div_ceil(threads)));
///         assert_eq!(piece_len(1_000, 1 << 15), None); // too small
///     }
/// });
/// ```
pub fn piece_len(len: usize, min: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (threads >= 2 && pool_is_awake() && len >= min.max(threads)).then(|| len.div_ceil(threads))
}

/// Sets the flag when dropped (also when unwinding from a panic).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Restores the thread's awake flag when dropped.
struct RestoreOnDrop(bool);

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        AWAKE.with(|a| a.set(self.0));
    }
}
