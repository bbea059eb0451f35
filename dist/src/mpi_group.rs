//! [`MpiGroup`] (feature `mpi`): ranks as MPI processes (`mpirun -np N`), through rsmpi.
//! No protocol of our own: every collective is an MPI collective. The rank-ordered sum: on
//! two ranks one `MPI_Allreduce` (one addition per element, and IEEE addition commutes, so
//! every rank gets the same bits); on more, a reduce-scatter by `MPI_Alltoallv` (rank `j`
//! receives every rank's `j`-th chunk and adds them in rank order) followed by
//! `MPI_Allgatherv` of the summed chunks, so every rank gets the same bits whatever algorithm
//! the MPI library picks; it moves as many bytes as a ring all-reduce. Each collective is preceded by a tiny all-gather of its length and name, so
//! ranks that disagree get an [`stategrad_autograd::Error::Collective`] instead of
//! corrupted data or a hang.
use std::sync::{Mutex, MutexGuard};

use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::{Count, Threading};
use stategrad_autograd::{Error, Result};

use crate::ProcessGroup;

/// This process's rank of `MPI_COMM_WORLD`. Create it once per process
/// ([`MpiGroup::init`] initialises MPI; dropping it finalises MPI).
///
/// ```no_run
/// use stategrad_dist::{MpiGroup, ProcessGroup};
/// let g = MpiGroup::init()?;                        // under `mpirun -np 2`
/// let mut x = vec![g.rank() as f64];
/// g.all_reduce_sum_f64("example", &mut x)?;         // 0 + 1 on every rank
/// assert_eq!(x, vec![1.0]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct MpiGroup {
    comm: Mutex<Comm>,
    rank: usize,
    size: usize,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialised with at least `MPI_THREAD_SERIALIZED` (checked in `init`), and
// every MPI call goes through the `comm` mutex, so calls are never concurrent, which is all
// that level requires; the communicator handle itself is a plain value valid on any thread.
unsafe impl Send for MpiGroup {}
unsafe impl Sync for MpiGroup {}

/// The communicator and the scratch buffers of the in-place sum, under one mutex.
struct Comm {
    world: SimpleCommunicator,
    scratch_f32: Vec<f32>,
    scratch_f64: Vec<f64>,
}

/// The element types the in-place sum handles, with their scratch buffer.
trait Elem:
    Equivalence
    + Copy
    + Default
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    fn scratch(c: &mut Comm) -> (&SimpleCommunicator, &mut Vec<Self>);
    fn count(n: usize) -> Self;
}

impl Elem for f32 {
    fn scratch(c: &mut Comm) -> (&SimpleCommunicator, &mut Vec<f32>) {
        (&c.world, &mut c.scratch_f32)
    }
    fn count(n: usize) -> f32 {
        n as f32
    }
}

impl Elem for f64 {
    fn scratch(c: &mut Comm) -> (&SimpleCommunicator, &mut Vec<f64>) {
        (&c.world, &mut c.scratch_f64)
    }
    fn count(n: usize) -> f64 {
        n as f64
    }
}

/// Bytes per broadcast call, below MPI's `int` count limit.
const CHUNK: usize = 1 << 30;

impl MpiGroup {
    /// Initialises MPI and joins `MPI_COMM_WORLD`. Fails when MPI was already initialised
    /// in this process or cannot serialise calls from several threads.
    pub fn init() -> Result<MpiGroup> {
        let err = |msg: &str| Error::Collective { op: "MpiGroup::init", rank: 0, key: None, msg: msg.into() };
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| err("MPI is already initialised in this process"))?;
        if matches!(level, Threading::Single | Threading::Funneled) {
            return Err(err("the MPI library cannot serialise calls from several threads"));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let comm = Comm { world, scratch_f32: Vec::new(), scratch_f64: Vec::new() };
        Ok(MpiGroup { comm: Mutex::new(comm), rank, size, _universe: universe })
    }

    fn comm(&self) -> MutexGuard<'_, Comm> {
        self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every rank's `(len, op)`: the check made before a collective of fixed length.
    fn agree(&self, w: &SimpleCommunicator, op: &'static str, len: usize, same_len: bool) -> Result<Vec<u64>> {
        let mine = [len as u64, fnv(op)];
        let mut all = vec![0u64; 2 * self.size];
        w.all_gather_into(&mine[..], &mut all[..]);
        for r in 0..self.size {
            if all[2 * r + 1] != mine[1] {
                return Err(self.error(op, None, format!("rank {r} called a different collective")));
            }
            if same_len && all[2 * r] != mine[0] {
                return Err(self.error(op, None, format!("rank {r} passed {} elements, this rank {len}", all[2 * r])));
            }
        }
        Ok((0..self.size).map(|r| all[2 * r]).collect())
    }

    /// Rank-ordered sum of `send` into `recv`. Two ranks: one `MPI_Allreduce`, since each
    /// element is then one addition `x_0 + x_1`, which IEEE arithmetic makes commutative, so
    /// every rank gets the bits of the rank-ordered sum. More ranks: `MPI_Alltoallv` (rank `j`
    /// receives every rank's `j`-th chunk and adds them in rank order), then `MPI_Allgatherv`.
    fn reduce_into<T>(&self, op: &'static str, send: &[T], recv: &mut [T]) -> Result<()>
    where
        T: Equivalence + Copy + Default + std::ops::Add<Output = T>,
    {
        crate::group::check_into(self, op, send.len(), recv.len())?;
        let g = self.comm();
        let w = &g.world;
        self.agree(w, op, send.len(), true)?;
        let n = self.size;
        let len = send.len();
        if len > Count::MAX as usize {
            return Err(self.error(op, None, format!("{len} elements exceed MPI's count limit")));
        }
        if n <= 2 {
            if n == 1 {
                recv.copy_from_slice(send);
            } else {
                w.all_reduce_into(send, recv, mpi::collective::SystemOperation::sum());
            }
            return Ok(());
        }
        let offs: Vec<usize> = (0..=n).map(|j| len * j / n).collect();
        let counts: Vec<Count> = (0..n).map(|j| (offs[j + 1] - offs[j]) as Count).collect();
        let displs: Vec<Count> = offs[..n].iter().map(|&o| o as Count).collect();
        let m = counts[self.rank] as usize;
        let mut parts = vec![T::default(); n * m];
        {
            let from = Partition::new(send, &counts[..], &displs[..]);
            let rc: Vec<Count> = vec![m as Count; n];
            let rd: Vec<Count> = (0..n).map(|i| (i * m) as Count).collect();
            let mut into = PartitionMut::new(&mut parts[..], &rc[..], &rd[..]);
            w.all_to_all_varcount_into(&from, &mut into);
        }
        let (mine, rest) = parts.split_at_mut(m);
        for r in 0..n - 1 {
            mine.iter_mut().zip(&rest[r * m..(r + 1) * m]).for_each(|(a, &b)| *a = *a + b);
        }
        let mut into = PartitionMut::new(recv, &counts[..], &displs[..]);
        w.all_gather_varcount_into(&mine[..], &mut into);
        Ok(())
    }
}

impl MpiGroup {
    /// Rank-ordered sum of `data` in place. Two ranks: each swaps the half it does not own
    /// for its peer's copy of the half it owns (`MPI_Sendrecv` into a scratch buffer kept
    /// between calls), adds them (`x_0 + x_1`: IEEE addition commutes, so the owner's bits are
    /// the rank-ordered sum's), and the summed halves are swapped back into `data`. That moves
    /// the bytes of a ring all-reduce with no receive buffer to allocate and fill, which an
    /// `MPI_Allreduce` into a second buffer needs (rsmpi does not expose `MPI_IN_PLACE`). One
    /// rank: nothing to do; more: [`MpiGroup::reduce_into`] from a copy.
    ///
    /// With `mean`, the sum is divided by the world size: on two ranks inside the addition
    /// (`(x_0 + x_1) / 2`, no extra pass), otherwise after it.
    fn reduce_in_place<T: Elem>(&self, op: &'static str, data: &mut [T], mean: bool) -> Result<()> {
        if self.size > 2 {
            let send = data.to_vec();
            self.reduce_into(op, &send, data)?;
            if mean {
                let n = T::count(self.size);
                data.iter_mut().for_each(|x| *x = *x / n);
            }
            return Ok(());
        }
        let mut g = self.comm();
        let (w, scratch) = T::scratch(&mut g);
        self.agree(w, op, data.len(), true)?;
        if self.size == 1 {
            return Ok(());
        }
        if data.len() > Count::MAX as usize {
            return Err(self.error(op, None, format!("{} elements exceed MPI's count limit", data.len())));
        }
        let peer = w.process_at_rank(1 - self.rank as i32);
        let (lo, hi) = data.split_at_mut(data.len() / 2);
        let (mine, theirs) = if self.rank == 0 { (lo, hi) } else { (hi, lo) };
        scratch.resize(mine.len(), T::default()); // writes only what it grows by
        mpi::point_to_point::send_receive_into(&*theirs, &peer, &mut scratch[..], &peer);
        if mean {
            // halving is exact: the bits of the sum divided by 2
            let half = T::count(1) / T::count(2);
            mine.iter_mut().zip(scratch.iter()).for_each(|(a, &b)| *a = (*a + b) * half);
        } else {
            mine.iter_mut().zip(scratch.iter()).for_each(|(a, &b)| *a = *a + b);
        }
        mpi::point_to_point::send_receive_into(&*mine, &peer, &mut *theirs, &peer);
        Ok(())
    }
}

/// A stable 64-bit hash of a collective's name (FNV-1a).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

impl ProcessGroup for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn transport(&self) -> &'static str {
        "mpi"
    }

    fn all_gather_bytes(&self, op: &'static str, data: &[u8]) -> Result<Vec<Vec<u8>>> {
        let g = self.comm();
        let w = &g.world;
        let lens = self.agree(w, op, data.len(), false)?;
        let total: u64 = lens.iter().sum();
        if total > Count::MAX as u64 {
            return Err(self.error(op, None, format!("{total} bytes exceed MPI's count limit")));
        }
        let counts: Vec<Count> = lens.iter().map(|&l| l as Count).collect();
        let displs: Vec<Count> = counts.iter().scan(0, |acc, &c| Some(std::mem::replace(acc, *acc + c))).collect();
        let mut buf = vec![0u8; total as usize];
        {
            let mut into = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            w.all_gather_varcount_into(data, &mut into);
        }
        Ok((0..self.size).map(|r| buf[displs[r] as usize..(displs[r] + counts[r]) as usize].to_vec()).collect())
    }

    fn broadcast_bytes(&self, op: &'static str, data: &mut Vec<u8>, root: usize) -> Result<()> {
        if root >= self.size {
            return Err(self.error(op, None, format!("root {root} outside a group of {}", self.size)));
        }
        let g = self.comm();
        let w = &g.world;
        let roots = self.agree(w, op, root, true)?;
        debug_assert!(roots.iter().all(|&r| r == root as u64));
        let mut len = [data.len() as u64];
        w.process_at_rank(root as i32).broadcast_into(&mut len[..]);
        data.resize(len[0] as usize, 0);
        for chunk in data.chunks_mut(CHUNK) {
            w.process_at_rank(root as i32).broadcast_into(chunk);
        }
        Ok(())
    }

    fn all_reduce_sum_f32(&self, op: &'static str, data: &mut [f32]) -> Result<()> {
        self.reduce_in_place(op, data, false)
    }

    fn all_reduce_sum_f64(&self, op: &'static str, data: &mut [f64]) -> Result<()> {
        self.reduce_in_place(op, data, false)
    }

    fn all_reduce_mean_f32(&self, op: &'static str, data: &mut [f32]) -> Result<()> {
        self.reduce_in_place(op, data, true)
    }

    fn all_reduce_mean_f64(&self, op: &'static str, data: &mut [f64]) -> Result<()> {
        self.reduce_in_place(op, data, true)
    }

    fn all_reduce_sum_into_f32(&self, op: &'static str, send: &[f32], recv: &mut [f32]) -> Result<()> {
        self.reduce_into(op, send, recv)
    }

    fn all_reduce_sum_into_f64(&self, op: &'static str, send: &[f64], recv: &mut [f64]) -> Result<()> {
        self.reduce_into(op, send, recv)
    }

    fn barrier(&self, op: &'static str) -> Result<()> {
        let g = self.comm();
        self.agree(&g.world, op, 0, true)?;
        g.world.barrier();
        Ok(())
    }
}

impl MpiGroup {
    /// A plain `MPI_Allreduce` (sum) of `send` into `recv`, with no ordering guarantee and no
    /// checks: the baseline the benches compare the wrapper's gradient all-reduce against.
    pub fn raw_all_reduce_sum_f32(&self, send: &[f32], recv: &mut [f32]) {
        self.comm().world.all_reduce_into(send, recv, mpi::collective::SystemOperation::sum());
    }
}
