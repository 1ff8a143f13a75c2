//! MPI's communicator as the [`Collective`] (cargo feature `mpi`, through
//! the `mpi` crate over the system's Open MPI or MPICH).

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::Collective;
use crate::error::Result;

/// A rank of an MPI communicator (usually the world: `mpi::initialize()`'s
/// `universe.world()`). Sums are one `MPI_Allreduce` (deterministic: an
/// `MPI_Allgather` and a sum in rank order); a rank's failure that the
/// others cannot learn of aborts the job (`MPI_Abort`), naming the rank.
///
/// ```no_run
/// let universe = mpi::initialize().expect("MPI initialises once");
/// let parallel = polyhead::distributed::DataParallel::new(polyhead::distributed::Mpi::new(universe.world()));
/// # let _ = parallel;
/// ```
pub struct Mpi {
    world: SimpleCommunicator,
}

impl Mpi {
    /// This process's rank of `world`.
    ///
    /// ```no_run
    /// let universe = mpi::initialize().unwrap();
    /// let rank = polyhead::distributed::Mpi::new(universe.world());
    /// # let _ = rank;
    /// ```
    pub fn new(world: SimpleCommunicator) -> Self {
        Mpi { world }
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_sum(&self, buffer: &mut [f64], deterministic: bool) -> Result<()> {
        if deterministic {
            let mut all = vec![0.0; buffer.len() * self.size()];
            self.world.all_gather_into(&buffer[..], &mut all[..]);
            buffer.iter_mut().for_each(|b| *b = 0.0);
            for part in all.chunks(buffer.len().max(1)) {
                buffer.iter_mut().zip(part).for_each(|(b, v)| *b += v);
            }
        } else {
            let mine = buffer.to_vec();
            self.world
                .all_reduce_into(&mine[..], buffer, SystemOperation::sum());
        }
        Ok(())
    }

    fn broadcast(&self, buffer: &mut [f64]) -> Result<()> {
        self.world.process_at_rank(0).broadcast_into(buffer);
        Ok(())
    }

    fn abort(&self, message: &str) {
        eprintln!(
            "polyhead: rank {} failed: {message}; aborting every rank",
            self.rank()
        );
        self.world.abort(1)
    }
}
