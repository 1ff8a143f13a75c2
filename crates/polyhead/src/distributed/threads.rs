//! Ranks on threads of one process: the [`Collective`] for tests and for
//! trying data-parallel training without MPI.

use std::sync::{Arc, Condvar, Mutex};

use super::Collective;
use crate::error::{Error, Result};

/// A group of `n` ranks that meet in one process; give each training
/// thread its [`ThreadRank`] with [`rank`](ThreadGroup::rank).
///
/// ```
/// use polyhead::distributed::{Collective, ThreadGroup};
/// let group = ThreadGroup::new(2);
/// let sums: Vec<Vec<f64>> = std::thread::scope(|s| {
///     let handles: Vec<_> = (0..2)
///         .map(|r| {
///             let rank = group.rank(r).unwrap();
///             s.spawn(move || {
///                 let mut buffer = vec![r as f64 + 1.0; 2];
///                 rank.all_sum(&mut buffer, true).unwrap();
///                 buffer
///             })
///         })
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(sums, vec![vec![3.0, 3.0], vec![3.0, 3.0]]);
/// ```
#[derive(Clone)]
pub struct ThreadGroup {
    shared: Arc<Shared>,
}

/// One rank of a [`ThreadGroup`].
///
/// ```
/// use polyhead::distributed::{Collective, ThreadGroup};
/// let rank = ThreadGroup::new(1).rank(0)?;
/// let mut buffer = vec![2.0];
/// rank.all_sum(&mut buffer, false)?; // alone: its own values
/// assert_eq!((rank.rank(), rank.size(), buffer), (0, 1, vec![2.0]));
/// # Ok::<(), polyhead::Error>(())
/// ```
pub struct ThreadRank {
    shared: Arc<Shared>,
    rank: usize,
}

struct Shared {
    size: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Each rank's contribution to the collective under way.
    slots: Vec<Option<Vec<f64>>>,
    arrived: usize,
    /// Completed collectives.
    generation: u64,
    /// The last collective's result.
    result: Vec<f64>,
    /// A rank that stopped, and why.
    stopped: Option<(usize, String)>,
}

impl ThreadGroup {
    /// A group of `size` ranks.
    ///
    /// ```
    /// assert_eq!(polyhead::distributed::ThreadGroup::new(3).len(), 3);
    /// ```
    pub fn new(size: usize) -> Self {
        ThreadGroup {
            shared: Arc::new(Shared {
                size,
                state: Mutex::new(State {
                    slots: vec![None; size],
                    ..State::default()
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// The number of ranks.
    ///
    /// ```
    /// assert!(!polyhead::distributed::ThreadGroup::new(1).is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.shared.size
    }

    /// Whether the group has no ranks.
    ///
    /// ```
    /// assert!(polyhead::distributed::ThreadGroup::new(0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.size == 0
    }

    /// Rank `rank`'s handle (to move to the thread that trains as it).
    ///
    /// ```
    /// assert!(polyhead::distributed::ThreadGroup::new(2).rank(2).is_err());
    /// ```
    pub fn rank(&self, rank: usize) -> Result<ThreadRank> {
        if rank >= self.shared.size {
            return Err(Error::Invalid(format!(
                "rank {rank} of a group of {}",
                self.shared.size
            )));
        }
        Ok(ThreadRank {
            shared: Arc::clone(&self.shared),
            rank,
        })
    }
}

impl ThreadRank {
    /// Every rank brings `mine`; once all have, each gets `combine` of
    /// them (in rank order). A stopped rank ends the wait with an error.
    fn meet(&self, mine: Vec<f64>, combine: impl Fn(&[Vec<f64>]) -> Vec<f64>) -> Result<Vec<f64>> {
        let shared = &self.shared;
        let mut state = shared.state.lock().expect("thread group lock");
        let stopped = |state: &State| {
            state.stopped.as_ref().map(|(rank, why)| Error::RankFailed {
                rank: *rank,
                epoch: 0,
                step: 0,
                message: why.clone(),
            })
        };
        if let Some(e) = stopped(&state) {
            return Err(e);
        }
        state.slots[self.rank] = Some(mine);
        state.arrived += 1;
        let generation = state.generation;
        if state.arrived == shared.size {
            let all: Vec<Vec<f64>> = state
                .slots
                .iter_mut()
                .map(|s| s.take().unwrap_or_default())
                .collect();
            state.result = combine(&all);
            state.arrived = 0;
            state.generation += 1;
            shared.changed.notify_all();
        } else {
            while state.generation == generation {
                if let Some(e) = stopped(&state) {
                    return Err(e);
                }
                state = shared.changed.wait(state).expect("thread group lock");
            }
        }
        Ok(state.result.clone())
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_sum(&self, buffer: &mut [f64], _deterministic: bool) -> Result<()> {
        // Always in rank order.
        let sum = self.meet(buffer.to_vec(), |all| {
            let mut sum = vec![0.0; all.first().map_or(0, Vec::len)];
            for part in all {
                sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
            }
            sum
        })?;
        buffer.copy_from_slice(&sum);
        Ok(())
    }

    fn broadcast(&self, buffer: &mut [f64]) -> Result<()> {
        let first = self.meet(buffer.to_vec(), |all| all[0].clone())?;
        buffer.copy_from_slice(&first);
        Ok(())
    }

    fn abort(&self, message: &str) {
        let mut state = self.shared.state.lock().expect("thread group lock");
        state
            .stopped
            .get_or_insert((self.rank, message.to_string()));
        self.shared.changed.notify_all();
    }
}

/// A rank that goes away (its thread ended or panicked) ends the others'
/// waits: they cannot complete a collective without it.
impl Drop for ThreadRank {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state
                .stopped
                .get_or_insert((self.rank, "the rank stopped".into()));
            self.shared.changed.notify_all();
        }
    }
}
