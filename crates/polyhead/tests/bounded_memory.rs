//! A data set larger than a memory budget trains in bounded memory: an
//! epoch of `fit_dataset` over a 64 MiB `.npy` file, memory-mapped by
//! `NpyRows`, never holds more than a 16 MiB heap at once, on the reader
//! thread and with batches read in the steps. (Mapped pages are the
//! kernel's page cache, which it reclaims under pressure; what the library
//! allocates is counted here, by a global allocator that tracks the bytes
//! live at any moment on every thread.)
//!
//! This file holds one test, so that nothing else allocates in the process
//! while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use polyhead::data::{FromFn, NpyRows};
use polyhead::prelude::*;

/// The system allocator, counting the bytes live now and the most live
/// since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(MultiOutput)]
struct Net {
    #[trunk]
    body: Dense,
    #[head(loss = Mse::new())]
    first: Dense,
}

const ROWS: usize = 131_072;
const COLUMNS: usize = 128;

/// Writes a float32 `.npy` of `[ROWS, COLUMNS]` a row at a time (never the
/// whole array in memory): values in `[-1, 1)` from a small generator.
fn write_large_npy(path: &std::path::Path) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({ROWS}, {COLUMNS}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut row = Vec::with_capacity(COLUMNS * 4);
    for _ in 0..ROWS {
        row.clear();
        for _ in 0..COLUMNS {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            row.extend_from_slice(&v.to_le_bytes());
        }
        file.write_all(&row).unwrap();
    }
    file.flush().unwrap();
}

#[test]
fn an_epoch_over_a_file_four_times_the_budget_stays_within_the_budget() {
    const BUDGET: usize = 16 << 20;
    let dir = std::env::temp_dir().join(format!("polyhead-bounded-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("large.npy");
    write_large_npy(&path);
    let file_bytes = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(file_bytes >= 4 * BUDGET, "the file is {file_bytes} bytes");

    let rows = NpyRows::open(&path).unwrap();
    // The target of a row is its first value: made from the inputs read.
    let data = FromFn::new(rows.len(), |r: &[usize]| {
        let x = rows.rows::<f32>(r)?;
        let first = x.slice_axis(1, 0, 1)?;
        Ok((x, NetTargets::new(first)))
    });
    let mut rng = Rng::new(1);
    let mut net = Net {
        body: Dense::builder(COLUMNS, 32)
            .activation(Activation::Relu)
            .build(&mut rng)
            .unwrap(),
        first: Dense::new(32, 1, &mut rng).unwrap(),
    };
    let trainer = || {
        polyhead::Trainer::<Net, f32>::new(Adam::new(1e-3).build())
            .epochs(1)
            .batch_size(512)
            .shuffle(Some(9))
            .progress(polyhead::Progress::Silent)
    };
    // Batches read in the steps (a pool with a thread per core), then by
    // the reader thread (a one-thread pool leaves it a core).
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (how, pool) in [("in the steps", None), ("on the reader thread", Some(&one))] {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        let before = LIVE.load(Ordering::Relaxed);
        let history = match pool {
            None => trainer().fit_dataset(&mut net, &data),
            Some(pool) => pool.install(|| trainer().fit_dataset(&mut net, &data)),
        }
        .unwrap();
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert!(
            peak < BUDGET,
            "read {how}: a {file_bytes}-byte file took a heap of {peak} bytes at its peak (budget {BUDGET})"
        );
        assert!(history.get("loss").unwrap()[0].is_finite());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
