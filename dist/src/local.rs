//! [`InProcessGroup`]: N ranks as N threads of one process (one replica each, each on its
//! own device if wanted), exchanging through shared memory. Each collective is one
//! rendezvous: every rank deposits its contribution, the last to arrive publishes them all,
//! and each rank reads what it needs. Waiting is bounded: a rank that leaves the group (its
//! handle dropped: an error or a panic in its thread) or never arrives within the timeout
//! fails the collective on every other rank instead of hanging it.
use std::any::Any;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stategrad_autograd::{Error, Result};

use crate::ProcessGroup;

type Item = Arc<dyn Any + Send + Sync>;

struct Round {
    /// Completed rendezvous so far.
    generation: u64,
    /// Contributions to the current rendezvous, by rank.
    slots: Vec<Option<(&'static str, Item)>>,
    arrived: usize,
    /// The last completed rendezvous's contributions (or why they do not fit together).
    done: Arc<std::result::Result<Vec<Item>, String>>,
    /// Set when the group can no longer complete a collective.
    broken: Option<String>,
}

struct Shared {
    size: usize,
    timeout: Duration,
    round: Mutex<Round>,
    wake: Condvar,
}

/// One rank of an in-process group. Made by [`InProcessGroup::new`] (one handle per rank,
/// each moved to its thread) or by [`run_replicas`].
///
/// ```
/// use stategrad_dist::{run_replicas, ProcessGroup};
/// let sums = run_replicas(3, |g| {
///     let mut x = vec![g.rank() as f64, 1.0];
///     g.all_reduce_sum_f64("example", &mut x)?;
///     Ok(x)
/// });
/// for s in sums {
///     assert_eq!(s?, vec![3.0, 3.0]);
/// }
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct InProcessGroup {
    rank: usize,
    shared: Arc<Shared>,
}

/// How long a rank waits for the others in one collective before failing it (10 minutes:
/// longer than any step, short enough that a lost rank ends the run).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl InProcessGroup {
    /// `size` handles, rank 0 first, with the [`DEFAULT_TIMEOUT`].
    pub fn new(size: usize) -> Result<Vec<InProcessGroup>> {
        Self::with_timeout(size, DEFAULT_TIMEOUT)
    }

    /// `size` handles whose collectives fail after waiting `timeout` for the other ranks.
    pub fn with_timeout(size: usize, timeout: Duration) -> Result<Vec<InProcessGroup>> {
        if size == 0 {
            return Err(Error::argument("InProcessGroup::new", "a group needs at least one rank"));
        }
        let shared = Arc::new(Shared {
            size,
            timeout,
            round: Mutex::new(Round {
                generation: 0,
                slots: (0..size).map(|_| None).collect(),
                arrived: 0,
                done: Arc::new(Ok(Vec::new())),
                broken: None,
            }),
            wake: Condvar::new(),
        });
        Ok((0..size).map(|rank| InProcessGroup { rank, shared: shared.clone() }).collect())
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A panic while holding the lock cannot leave a round half-published (publishing is
        // one assignment), so a poisoned lock is still consistent.
        self.shared.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rendezvous: every rank's `value`, by rank (shared, not copied).
    fn exchange<T: Any + Send + Sync>(&self, op: &'static str, value: T) -> Result<Vec<Arc<T>>> {
        let n = self.shared.size;
        let mut r = self.lock();
        if let Some(why) = &r.broken {
            return Err(self.error(op, None, why.clone()));
        }
        let generation = r.generation;
        r.slots[self.rank] = Some((op, Arc::new(value)));
        r.arrived += 1;
        if r.arrived == n {
            let slots: Vec<(&'static str, Item)> = r.slots.iter_mut().filter_map(Option::take).collect();
            r.arrived = 0;
            r.generation += 1;
            r.done = Arc::new(match slots.iter().enumerate().find(|(_, (o, _))| *o != slots[0].0) {
                Some((i, (other, _))) => {
                    let why = format!(
                        "ranks disagree on the collective: rank 0 called {}, rank {i} called {other}",
                        slots[0].0
                    );
                    r.broken = Some(why.clone());
                    Err(why)
                }
                None => Ok(slots.into_iter().map(|(_, v)| v).collect()),
            });
            self.shared.wake.notify_all();
        } else {
            let deadline = Instant::now() + self.shared.timeout;
            while r.generation == generation && r.broken.is_none() {
                let now = Instant::now();
                if now >= deadline {
                    let missing: Vec<usize> = (0..n).filter(|&i| r.slots[i].is_none()).collect();
                    let why = format!("timed out after {:?} waiting for ranks {missing:?}", self.shared.timeout);
                    r.broken = Some(why);
                    self.shared.wake.notify_all();
                    break;
                }
                r = self.shared.wake.wait_timeout(r, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            if r.generation == generation {
                let why = r.broken.clone().unwrap_or_default();
                return Err(self.error(op, None, why));
            }
        }
        let done = r.done.clone();
        drop(r);
        let done = done.as_ref().as_ref().map_err(|why| self.error(op, None, why.clone()))?;
        done.iter()
            .map(|v| {
                v.clone()
                    .downcast::<T>()
                    .map_err(|_| self.error(op, None, "ranks passed different kinds of data".into()))
            })
            .collect()
    }

    fn reduce<T: Copy + std::ops::Add<Output = T> + Send + Sync + 'static>(
        &self,
        op: &'static str,
        data: &mut [T],
    ) -> Result<()> {
        let all = self.exchange(op, data.to_vec())?;
        if let Some(i) = all.iter().position(|v| v.len() != data.len()) {
            return Err(self.error(
                op,
                None,
                format!("rank {i} passed {} elements, rank {} passed {}", all[i].len(), self.rank, data.len()),
            ));
        }
        data.copy_from_slice(&all[0]);
        for v in &all[1..] {
            data.iter_mut().zip(v.iter()).for_each(|(d, &x)| *d = *d + x);
        }
        Ok(())
    }
}

impl Drop for InProcessGroup {
    fn drop(&mut self) {
        let mut r = self.lock();
        if r.broken.is_none() {
            r.broken = Some(format!("rank {} left the group", self.rank));
        }
        self.shared.wake.notify_all();
    }
}

impl ProcessGroup for InProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.size
    }

    fn transport(&self) -> &'static str {
        "in-process"
    }

    fn all_gather_bytes(&self, op: &'static str, data: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self.exchange(op, data.to_vec())?.iter().map(|v| v.to_vec()).collect())
    }

    fn broadcast_bytes(&self, op: &'static str, data: &mut Vec<u8>, root: usize) -> Result<()> {
        if root >= self.shared.size {
            return Err(self.error(op, None, format!("root {root} outside a group of {}", self.shared.size)));
        }
        let mine = if self.rank == root { std::mem::take(data) } else { Vec::new() };
        let all = self.exchange(op, (root, mine))?;
        if let Some(i) = all.iter().position(|v| v.0 != root) {
            return Err(self.error(
                op,
                None,
                format!("rank {i} broadcast from root {}, rank {} from {root}", all[i].0, self.rank),
            ));
        }
        *data = all[root].1.clone();
        Ok(())
    }

    fn all_reduce_sum_f32(&self, op: &'static str, data: &mut [f32]) -> Result<()> {
        self.reduce(op, data)
    }

    fn all_reduce_sum_f64(&self, op: &'static str, data: &mut [f64]) -> Result<()> {
        self.reduce(op, data)
    }

    fn barrier(&self, op: &'static str) -> Result<()> {
        self.exchange(op, ()).map(|_| ())
    }
}

/// Runs `f` on `n` threads, one per rank of a fresh [`InProcessGroup`], and returns each
/// rank's result, by rank. A rank whose `f` panics gives an [`Error::Collective`] (and the
/// others' pending collectives fail rather than wait for it).
pub fn run_replicas<T: Send>(n: usize, f: impl Fn(InProcessGroup) -> Result<T> + Sync) -> Vec<Result<T>> {
    let groups = match InProcessGroup::new(n) {
        Ok(g) => g,
        Err(e) => return vec![Err(e)],
    };
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = groups.into_iter().map(|g| s.spawn(move || f(g))).collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(rank, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Collective {
                        op: "run_replicas",
                        rank,
                        key: None,
                        msg: "the replica's thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}
