//! The CapsNet's 8.2M f32 gradients averaged through `DataParallel::reduce_gradients` (the
//! agreement on which gradients exist, flattening into buckets, the rank-ordered all-reduce,
//! the division and the new tensors) vs a raw `MPI_Allreduce` of one buffer of the same size,
//! in the same run; and the group's rank-ordered all-reduce of that buffer alone.
//!
//! ```text
//! cargo build --release --features mpi --bench mpi_allreduce
//! mpirun -np 2 --oversubscribe target/release/deps/mpi_allreduce-* --bench
//! ```
//! Rank 0 runs criterion and tells the other ranks, through a broadcast before each batch of
//! iterations, which case to run and how many times (criterion picks the counts adaptively,
//! so the ranks must be told).
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use stategrad::autograd::Grads;
use stategrad::dist::{DataParallel, MpiGroup, ProcessGroup, SyncConfig};
use stategrad::nn::capsule::{CapsNet, CapsNetConfig};
use stategrad::nn::Module;
use stategrad::prelude::*;

struct Setup {
    group: Arc<MpiGroup>,
    dp: DataParallel<CapsNet>,
    grads: Grads,
    send: Vec<f32>,
    recv: Vec<f32>,
}

const CASES: [&str; 4] =
    ["wrapper_reduce_gradients", "wrapper_gradients_still_held", "group_all_reduce", "raw_mpi_allreduce"];

impl Setup {
    /// Runs case `id` `k` times; returns the wall time.
    ///
    /// `wrapper_reduce_gradients` is the training loop's case: the gradients come from
    /// backward and are handed over, so they are averaged where they lie. Each iteration
    /// gets fresh gradients (a copy of the stored ones, made outside the timed part, by
    /// both ranks at the same point). `wrapper_gradients_still_held` hands over clones
    /// of gradients the caller keeps: each large one is first copied (copy-on-write).
    fn run(&mut self, id: usize, k: u64) -> Duration {
        if id == 0 {
            let mut total = Duration::ZERO;
            for _ in 0..k {
                let mut fresh = Grads::default();
                for (tid, g) in self.grads.iter() {
                    fresh.insert(tid, g.mul_scalar(1.0).expect("copy"));
                }
                let t = Instant::now();
                drop(self.dp.reduce_gradients(fresh).expect("reduce"));
                total += t.elapsed();
            }
            return total;
        }
        let t = Instant::now();
        for _ in 0..k {
            match id {
                1 => drop(self.dp.reduce_gradients(self.grads.clone()).expect("reduce")),
                2 => self.group.all_reduce_sum_into_f32("bench", &self.send, &mut self.recv).expect("all-reduce"),
                _ => self.group.raw_all_reduce_sum_f32(&self.send, &mut self.recv),
            }
        }
        t.elapsed()
    }

    fn command(&self, id: u64, k: u64) -> (usize, u64) {
        let mut b: Vec<u8> = [id.to_le_bytes(), k.to_le_bytes()].concat();
        self.group.broadcast_bytes("bench command", &mut b, 0).expect("broadcast");
        let word = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        (word(0) as usize, word(1))
    }
}

fn main() {
    let group = Arc::new(MpiGroup::init().expect("MPI"));
    manual_seed(0);
    let model = CapsNet::new(CapsNetConfig::paper()).expect("model");
    let n: usize = model.num_parameters();
    let mut grads = Grads::default();
    for p in model.parameters() {
        grads.insert(p.id(), p.data().randn_like(0.0, 1.0).expect("grad"));
    }
    let dp = DataParallel::new(model, group.clone(), SyncConfig::default()).expect("wrap");
    let send: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.01).collect();
    let mut s = Setup { group: group.clone(), dp, grads, recv: send.clone(), send };
    if group.rank() != 0 {
        loop {
            let (id, k) = s.command(0, 0);
            if id == 0 {
                return;
            }
            s.run(id - 1, k);
        }
    }
    println!("{} ranks over MPI, {n} f32 gradients ({:.1} MiB)", group.world_size(), n as f64 * 4.0 / (1 << 20) as f64);
    let mut c = Criterion::default().configure_from_args().sample_size(20).measurement_time(Duration::from_secs(8));
    {
        let mut g = c.benchmark_group("allreduce/mpi");
        g.throughput(Throughput::Bytes(4 * n as u64));
        for (id, name) in CASES.iter().enumerate() {
            g.bench_function(BenchmarkId::new(*name, n), |b| {
                b.iter_custom(|k| {
                    s.command(id as u64 + 1, k);
                    s.run(id, k)
                })
            });
        }
        g.finish();
    }
    s.command(0, 0);
    c.final_summary();
}
