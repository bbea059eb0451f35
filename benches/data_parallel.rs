//! Data-parallel scaling with in-process replicas, one thread per rank: a training step of
//! the same global batch on 1 rank vs 2 ranks (each rank half the batch, gradients averaged
//! through the wrapper), for an MLP 784-256-256-10 at batch 512 and the paper-size CapsNet at
//! batch 64. Each rank runs in its own 1-thread rayon pool, so "1 rank" is one core and
//! "2 ranks" two; the ratio of the two times is the scaling (2.0 at best). Beside them,
//! `2_threads_no_sync`: two threads each stepping a plain model on half the batch with no
//! wrapper and no communication, the ceiling the machine allows at that moment (on a shared
//! machine it is well below 2).
//!
//! `cargo bench --bench data_parallel`. The MPI all-reduce bench is benches/mpi_allreduce.rs.
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stategrad::dist::{DataParallel, InProcessGroup, ProcessGroup, SyncConfig};
use stategrad::nn::capsule::{CapsNet, CapsNetConfig};
use stategrad::nn::functional::{cross_entropy, CrossEntropyOptions};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer};
use stategrad::nn::{Forward, Linear, Module};
use stategrad::prelude::*;

#[derive(Clone, Copy)]
enum Job {
    Mlp,
    CapsNet,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Mlp => "mlp_784_256_256_10",
            Job::CapsNet => "capsnet_paper",
        }
    }
    fn batch(self) -> usize {
        match self {
            Job::Mlp => 512,
            Job::CapsNet => 64,
        }
    }
}

/// 784-256-256-10 with ReLUs (as benches/autograd.rs's MLP).
#[derive(Module, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc3.forward(&self.fc2.forward(&self.fc1.forward(x)?.relu()?)?.relu()?)
    }
}

/// One rank's training state: a model (wrapped when `group` is given), its optimizer and its
/// share of the global batch.
struct Rank {
    step: Box<dyn FnMut() -> Result<()>>,
}

fn make_rank(job: Job, group: Option<InProcessGroup>, n: usize) -> Result<Rank> {
    manual_seed(0);
    let share = job.batch() / n;
    let group: Option<Arc<dyn ProcessGroup>> = group.map(|g| Arc::new(g) as _);
    match job {
        Job::Mlp => {
            let model = Mlp { fc1: Linear::new(784, 256)?, fc2: Linear::new(256, 256)?, fc3: Linear::new(256, 10)? };
            let x = Tensor::rand(&[share, 784], 0.0, 1.0, DType::F32, Device::Cpu)?;
            let y = Tensor::from_vec((0..share as i64).map(|i| i % 10).collect::<Vec<_>>(), &[share], Device::Cpu)?;
            let dp = group.map(|g| DataParallel::new(model.clone(), g, SyncConfig::default())).transpose()?;
            let mut opt = Adam::new(model.parameters(), AdamConfig::new(1e-3))?;
            Ok(Rank {
                step: Box::new(move || {
                    let loss = cross_entropy(&model.forward(&x)?, &y, &CrossEntropyOptions::default())?;
                    let grads = match &dp {
                        Some(dp) => dp.backward(&loss)?,
                        None => loss.backward()?,
                    };
                    opt.step(&grads)
                }),
            })
        }
        Job::CapsNet => {
            let model = CapsNet::new(CapsNetConfig::paper())?;
            let x = Tensor::rand(&[share, 1, 28, 28], 0.0, 1.0, DType::F32, Device::Cpu)?;
            let y = Tensor::from_vec((0..share as i64).map(|i| i % 10).collect::<Vec<_>>(), &[share], Device::Cpu)?;
            let dp = group.map(|g| DataParallel::new(model.clone(), g, SyncConfig::default())).transpose()?;
            let mut opt = Adam::new(model.parameters(), AdamConfig::new(1e-3))?;
            Ok(Rank {
                step: Box::new(move || {
                    let (losses, _) = model.losses(&x, &y)?;
                    let grads = match &dp {
                        Some(dp) => dp.backward(&losses.total)?,
                        None => losses.total.backward()?,
                    };
                    opt.step(&grads)
                }),
            })
        }
    }
}

/// `n` worker threads, each with its own 1-thread rayon pool and its rank's state; `run(k)`
/// makes every rank take `k` steps and returns the wall time of the slowest.
struct Workers {
    jobs: Vec<Sender<u64>>,
    done: Receiver<Duration>,
}

impl Workers {
    /// `n` ranks; `sync == false`: `n` independent threads on `1/n` of the batch each, with no
    /// wrapper and no communication (the machine's own parallel ceiling, measured in the same run).
    fn new(job: Job, n: usize, sync: bool) -> Workers {
        let mut groups: Vec<Option<InProcessGroup>> = if n == 1 || !sync {
            (0..n).map(|_| None).collect()
        } else {
            InProcessGroup::new(n).expect("group").into_iter().map(Some).collect()
        };
        let (done_tx, done) = channel();
        let mut jobs = Vec::new();
        let (ready_tx, ready) = channel();
        for g in groups.drain(..) {
            let (tx, rx) = channel::<u64>();
            jobs.push(tx);
            let (done_tx, ready_tx) = (done_tx.clone(), ready_tx.clone());
            std::thread::spawn(move || {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
                pool.install(|| {
                    let mut rank = make_rank(job, g, n).expect("rank");
                    ready_tx.send(()).ok();
                    for k in rx {
                        let t = Instant::now();
                        for _ in 0..k {
                            (rank.step)().expect("step");
                        }
                        done_tx.send(t.elapsed()).ok();
                    }
                })
            });
        }
        (0..n).for_each(|_| ready.recv().expect("a rank failed to start"));
        Workers { jobs, done }
    }

    fn run(&self, k: u64) -> Duration {
        self.jobs.iter().for_each(|j| j.send(k).expect("send"));
        (0..self.jobs.len()).map(|_| self.done.recv().expect("done")).max().unwrap_or_default()
    }
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_parallel");
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    for job in [Job::Mlp, Job::CapsNet] {
        g.throughput(Throughput::Elements(job.batch() as u64));
        for (ranks, sync, label) in [(1, true, "1_rank"), (2, true, "2_ranks"), (2, false, "2_threads_no_sync")] {
            let w = Workers::new(job, ranks, sync);
            g.bench_function(BenchmarkId::new(format!("{}/cpu/{label}", job.name()), job.batch()), |b| {
                b.iter_custom(|iters| w.run(iters))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, scaling);
criterion_main!(benches);
