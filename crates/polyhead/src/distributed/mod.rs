//! Synchronous data-parallel training: several processes (ranks) each
//! train on a disjoint shard of every global batch and sum their gradients,
//! so that every rank applies the same update. [`Trainer::data_parallel`]
//! takes a [`DataParallel`] over a [`Collective`]: MPI's communicator
//! ([`Mpi`], cargo feature `mpi`, over the system's Open MPI or MPICH), or
//! [`ThreadGroup`], ranks on threads of one process (for tests, and for
//! trying the scheme without MPI).
//!
//! What a step exchanges: one small buffer with each rank's loss values
//! (weighted by its share of the batch) and its status (so a rank that
//! failed is named by every other rank instead of leaving them waiting),
//! then one buffer with the gradients (and the batch statistics a batch
//! normalization keeps), each scaled by the rank's share of the global
//! batch and summed. Strategies that combine per-head gradients get the
//! heads' gradients summed the same way first. Rank 0's parameters are
//! broadcast before the first step.
//!
//! ```
//! use polyhead::distributed::{DataParallel, ThreadGroup};
//! let ranks = ThreadGroup::new(2);
//! assert_eq!(ranks.len(), 2);
//! let parallel = DataParallel::new(ranks.rank(0)?);
//! assert_eq!((parallel.rank(), parallel.size()), (0, 2));
//! # Ok::<(), polyhead::Error>(())
//! ```
//!
//! [`Trainer::data_parallel`]: crate::Trainer::data_parallel

#[cfg(feature = "mpi")]
mod mpi;
mod threads;

use std::cell::Cell;
use std::time::{Duration, Instant};

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
pub use threads::ThreadGroup;

use crate::error::{Error, Result};

/// The collective operations data-parallel training needs from its ranks.
///
/// Each call is made by every rank, in the same order (a collective);
/// buffers have the same length on every rank.
///
/// ```
/// use polyhead::distributed::{Collective, ThreadGroup};
/// fn total(rank: &dyn Collective, mine: f64) -> polyhead::Result<f64> {
///     let mut buffer = [mine];
///     rank.all_sum(&mut buffer, true)?;
///     Ok(buffer[0])
/// }
/// assert_eq!(total(&ThreadGroup::new(1).rank(0)?, 3.0)?, 3.0);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub trait Collective {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buffer` on every rank by the elementwise sum over ranks.
    /// `deterministic`: summed in rank order, so every rank (and every
    /// run) gets the same bits.
    fn all_sum(&self, buffer: &mut [f64], deterministic: bool) -> Result<()>;
    /// Replaces `buffer` on every rank by rank 0's.
    fn broadcast(&self, buffer: &mut [f64]) -> Result<()>;
    /// Stops every rank after an error on this one that the others cannot
    /// learn of by the step's exchange: MPI aborts the job (`MPI_Abort`,
    /// not returning); threads end the others' waits with an error.
    fn abort(&self, message: &str);
}

/// Data-parallel training over a [`Collective`]: the trainer's batch size
/// is the global batch, split across the ranks.
///
/// ```
/// use polyhead::distributed::{DataParallel, ThreadGroup};
/// let parallel = DataParallel::new(ThreadGroup::new(1).rank(0)?).deterministic(true);
/// assert_eq!(parallel.stats().steps, 0);
/// # Ok::<(), polyhead::Error>(())
/// ```
pub struct DataParallel {
    collective: Box<dyn Collective>,
    deterministic: bool,
    stats: Cell<Stats>,
}

/// What the collectives cost so far: steps, bytes each rank sent into the
/// sums, the time spent in them and the training time around them.
///
/// ```
/// let stats = polyhead::distributed::Stats::default();
/// assert_eq!(stats.bytes_per_step(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Training steps taken.
    pub steps: u64,
    /// Bytes of the buffers summed (each rank's contribution).
    pub bytes: u64,
    /// Time inside collective calls.
    pub communication: Duration,
    /// Time of the training runs (`fit`'s epochs), communication included.
    pub total: Duration,
}

impl Stats {
    /// Bytes summed per step.
    ///
    /// ```
    /// let s = polyhead::distributed::Stats { steps: 2, bytes: 800, ..Default::default() };
    /// assert_eq!(s.bytes_per_step(), 400.0);
    /// ```
    pub fn bytes_per_step(&self) -> f64 {
        self.bytes as f64 / self.steps.max(1) as f64
    }

    /// The share of training time spent in communication.
    ///
    /// ```
    /// let s = polyhead::distributed::Stats::default();
    /// assert_eq!(s.communication_share(), 0.0);
    /// ```
    pub fn communication_share(&self) -> f64 {
        let total = self.total.as_secs_f64();
        if total > 0.0 {
            self.communication.as_secs_f64() / total
        } else {
            0.0
        }
    }
}

thread_local! {
    /// The rank of the data-parallel training running on this thread.
    static RANK: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread is rank 0 of the data-parallel training it runs (or
/// runs none): the rank that shows progress and writes files (checkpoints,
/// logs). Callbacks of one's own that write should check it.
///
/// ```
/// assert!(polyhead::distributed::is_primary());
/// ```
pub fn is_primary() -> bool {
    RANK.with(|r| r.get() == 0)
}

/// Sets this thread's rank for the duration of a training run.
pub(crate) struct RankScope(usize);

impl RankScope {
    pub(crate) fn enter(rank: usize) -> Self {
        RankScope(RANK.with(|r| r.replace(rank)))
    }
}

impl Drop for RankScope {
    fn drop(&mut self) {
        RANK.with(|r| r.set(self.0));
    }
}

/// Rank `rank` of `size`'s rows of a global batch and its share (see
/// [`DataParallel::shard`]).
pub(crate) fn shard(rows: &[usize], rank: usize, size: usize) -> (&[usize], f64) {
    let n = rows.len();
    let from = rank * n / size;
    let to = (rank + 1) * n / size;
    if from == to {
        (&rows[..1.min(n)], 0.0)
    } else {
        (&rows[from..to], (to - from) as f64 / n as f64)
    }
}

impl DataParallel {
    /// Data-parallel training over `collective` (MPI's world, a
    /// [`ThreadGroup`] rank...), summing with the collective's fastest
    /// reduction.
    ///
    /// ```
    /// let p = polyhead::distributed::DataParallel::new(polyhead::distributed::ThreadGroup::new(1).rank(0)?);
    /// # let _ = p;
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn new(collective: impl Collective + 'static) -> Self {
        DataParallel {
            collective: Box::new(collective),
            deterministic: false,
            stats: Cell::new(Stats::default()),
        }
    }

    /// Sums in rank order (gathering every rank's buffer first), so every
    /// rank and every run gets the same bits.
    ///
    /// ```
    /// let p = polyhead::distributed::DataParallel::new(polyhead::distributed::ThreadGroup::new(1).rank(0)?).deterministic(true);
    /// # let _ = p;
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn deterministic(mut self, on: bool) -> Self {
        self.deterministic = on;
        self
    }

    /// This process's rank.
    ///
    /// ```
    /// let p = polyhead::distributed::DataParallel::new(polyhead::distributed::ThreadGroup::new(1).rank(0)?);
    /// assert_eq!(p.rank(), 0);
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// The number of ranks.
    ///
    /// ```
    /// let p = polyhead::distributed::DataParallel::new(polyhead::distributed::ThreadGroup::new(1).rank(0)?);
    /// assert_eq!(p.size(), 1);
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.collective.size()
    }

    /// The communication so far.
    ///
    /// ```
    /// let p = polyhead::distributed::DataParallel::new(polyhead::distributed::ThreadGroup::new(1).rank(0)?);
    /// assert_eq!(p.stats().bytes, 0);
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// This rank's rows of a global batch (a contiguous, near-equal split)
    /// and its share of the batch; a rank left without rows computes on
    /// the batch's first row with share 0 (so every rank runs the same
    /// collectives).
    pub(crate) fn shard<'r>(&self, rows: &'r [usize]) -> (&'r [usize], f64) {
        shard(rows, self.rank(), self.size())
    }

    /// Sums `buffer` over the ranks.
    pub(crate) fn all_sum(&self, buffer: &mut [f64]) -> Result<()> {
        let started = Instant::now();
        let result = self.collective.all_sum(buffer, self.deterministic);
        let mut stats = self.stats.get();
        stats.bytes += std::mem::size_of_val(buffer) as u64;
        stats.communication += started.elapsed();
        self.stats.set(stats);
        result
    }

    /// Rank 0's `buffer` on every rank (once, before training: not
    /// counted in the step statistics, as it also waits for the slowest
    /// rank to start).
    pub(crate) fn broadcast(&self, buffer: &mut [f64]) -> Result<()> {
        self.collective.broadcast(buffer)
    }

    /// Counts a step.
    pub(crate) fn count_step(&self) {
        let mut stats = self.stats.get();
        stats.steps += 1;
        self.stats.set(stats);
    }

    /// Counts a training run's time.
    pub(crate) fn count_time(&self, elapsed: Duration) {
        let mut stats = self.stats.get();
        stats.total += elapsed;
        self.stats.set(stats);
    }

    /// The step's values summed over ranks, with each rank's status: every
    /// rank learns of a failure anywhere (`Error::RankFailed` naming the
    /// first failed rank). `local` is this rank's values (already scaled
    /// by its share) or its error.
    pub(crate) fn exchange(
        &self,
        local: std::result::Result<Vec<f64>, &Error>,
        len: usize,
        at: (usize, usize),
    ) -> Result<Vec<f64>> {
        let size = self.size();
        let mut buffer = vec![0.0; len + size];
        match &local {
            Ok(values) => buffer[..len].copy_from_slice(values),
            Err(_) => buffer[len + self.rank()] = 1.0,
        }
        self.all_sum(&mut buffer)?;
        if let Some(failed) = (0..size).find(|&r| buffer[len + r] != 0.0) {
            return Err(match local {
                Err(e) if failed == self.rank() => Error::RankFailed {
                    rank: failed,
                    epoch: at.0 + 1,
                    step: at.1 + 1,
                    message: e.to_string(),
                },
                _ => Error::RankFailed {
                    rank: failed,
                    epoch: at.0 + 1,
                    step: at.1 + 1,
                    message: "see that rank's output".into(),
                },
            });
        }
        buffer.truncate(len);
        Ok(buffer)
    }

    /// Stops every rank after an error the others cannot learn of.
    pub(crate) fn abort(&self, message: &str) {
        self.collective.abort(message)
    }
}
