//! CapsNet at the paper's size: one training step (forward, backward, Adam) at batch 16 and
//! 64 and inference at batch 64, for both routing modes, with throughput in images/s.
//!
//! Beside them, the parts of a training step, each timed with its own backward pass: the
//! convolutions (Conv1 + PrimaryCaps), the DigitCaps prediction matmul plus the decoder's
//! matmuls, and the routing loop; and, as a same-run baseline, raw matrixmultiply sgemm on
//! the FLOPs of the PrimaryCaps convolution (the ceiling for the convolution kernels).
//! At the end the shares of conv / matmul / routing in a step are printed.
//!
//! `cargo bench --bench capsnet`
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stategrad::autograd::{manual_seed, no_grad, DType, Device, Result, Tensor};
use stategrad::nn::capsule::{dynamic_routing, CapsNet, CapsNetConfig, RoutingMode};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer};
use stategrad::nn::{Forward, Module};

const MODES: [RoutingMode; 2] = [RoutingMode::Detached, RoutingMode::Differentiable];

fn model(mode: RoutingMode) -> CapsNet {
    manual_seed(0);
    CapsNet::new(CapsNetConfig { routing: mode, ..CapsNetConfig::paper() }).expect("model")
}

fn inputs(b: usize) -> (Tensor, Tensor) {
    let x = Tensor::rand(&[b, 1, 28, 28], 0.0, 1.0, DType::F32, Device::Cpu).expect("x");
    let y = Tensor::from_vec((0..b as i64).map(|i| i % 10).collect::<Vec<_>>(), &[b], Device::Cpu).expect("y");
    (x, y)
}

fn step(m: &CapsNet, opt: &mut Adam, x: &Tensor, y: &Tensor) -> Result<()> {
    let (losses, _) = m.losses(x, y)?;
    opt.step(&losses.total.backward()?)
}

fn train_and_infer(c: &mut Criterion) {
    let mut g = c.benchmark_group("capsnet");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    for mode in MODES {
        let m = model(mode);
        let mut opt = Adam::new(m.parameters(), AdamConfig::new(1e-3)).expect("adam");
        for b in [16, 64] {
            let (x, y) = inputs(b);
            g.throughput(Throughput::Elements(b as u64));
            g.bench_function(BenchmarkId::new(format!("train_step/cpu/{mode}"), b), |bench| {
                bench.iter(|| step(&m, &mut opt, &x, &y).expect("step"))
            });
        }
        let (x, _) = inputs(64);
        g.throughput(Throughput::Elements(64));
        g.bench_function(BenchmarkId::new(format!("inference/cpu/{mode}"), 64), |bench| {
            bench.iter(|| m.predict(&x).expect("predict"))
        });
    }
    g.finish();
}

/// Wall time of `f` (best of `reps`).
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The parts of one training step at batch `b`, each with its backward pass.
fn parts(m: &CapsNet, b: usize) -> [(&'static str, Duration); 3] {
    let (x, y) = inputs(b);
    let reps = 3;
    let conv = best(reps, || {
        let u = m.primary.forward(&m.conv1.forward(&x).unwrap().relu().unwrap()).unwrap();
        u.sum_all().unwrap().backward().unwrap();
    });
    let u = {
        let _g = no_grad();
        m.primary.forward(&m.conv1.forward(&x).unwrap().relu().unwrap()).unwrap()
    };
    let u = u.requires_grad(true).unwrap();
    let u_hat = {
        let _g = no_grad();
        m.digit.predictions(&u).unwrap().contiguous().unwrap()
    };
    let u_hat = u_hat.requires_grad(true).unwrap();
    let mask = y.one_hot(10, DType::F32).unwrap().unsqueeze(-1).unwrap();
    let v = {
        let _g = no_grad();
        dynamic_routing(&u_hat, m.digit.iters, m.digit.mode).unwrap().v
    };
    let matmul = best(reps, || {
        let pred = m.digit.predictions(&u).unwrap().sum_all().unwrap();
        let recon = m.decoder.forward(&v.mul(&mask).unwrap().flatten(1, 2).unwrap()).unwrap();
        pred.add(&recon.sum_all().unwrap()).unwrap().backward().unwrap();
    });
    let routing = best(reps, || {
        let v = dynamic_routing(&u_hat, m.digit.iters, m.digit.mode).unwrap().v;
        v.square().unwrap().sum_all().unwrap().backward().unwrap();
    });
    [("conv", conv), ("matmul", matmul), ("routing", routing)]
}

fn shares(c: &mut Criterion) {
    let mut g = c.benchmark_group("capsnet_parts");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let b = 64;
    g.throughput(Throughput::Elements(b as u64));
    // Baseline: the PrimaryCaps convolution's forward + backward FLOPs as three raw sgemms
    // (the same [256 x 20736] x [20736 x 36 b] product as its im2col GEMM).
    let (m_, k_, n_) = (256usize, 256 * 81, 36 * b);
    let a = vec![0.5f32; m_ * k_];
    let bm = vec![0.25f32; k_ * n_];
    let mut out = vec![0f32; m_ * n_];
    g.bench_function(BenchmarkId::new("baseline/sgemm_primary_conv_fwd_bwd", b), |bench| {
        bench.iter(|| {
            for _ in 0..3 {
                // SAFETY: row-major buffers of exactly m*k, k*n and m*n elements.
                unsafe {
                    matrixmultiply::sgemm(
                        m_,
                        k_,
                        n_,
                        1.0,
                        a.as_ptr(),
                        k_ as isize,
                        1,
                        bm.as_ptr(),
                        n_ as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n_ as isize,
                        1,
                    )
                }
            }
        })
    });
    g.finish();
    for mode in MODES {
        let m = model(mode);
        let parts = parts(&m, b);
        let total: f64 = parts.iter().map(|(_, d)| d.as_secs_f64()).sum();
        let list: Vec<String> = parts
            .iter()
            .map(|(n, d)| format!("{n} {:.0} ms ({:.0}%)", d.as_secs_f64() * 1e3, 100.0 * d.as_secs_f64() / total))
            .collect();
        println!("capsnet parts, {mode} routing, batch {b}, forward + backward: {}", list.join(", "));
    }
}

criterion_group!(benches, train_and_infer, shares);
criterion_main!(benches);
