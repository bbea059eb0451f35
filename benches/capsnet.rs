//! CapsNet at the paper's size: one training step (forward, backward, Adam) at batch 16 and
//! 64 and inference at batch 64, for both routing modes, with throughput in images/s.
//!
//! Beside them, the parts of a training step, each timed with its own backward pass: the
//! convolutions (Conv1 + PrimaryCaps), the DigitCaps prediction matmul plus the decoder's
//! matmuls, and the routing loop; and, as a same-run baseline, raw matrixmultiply sgemm on
//! the FLOPs of the PrimaryCaps convolution (the ceiling for the convolution kernels).
//! At the end the shares of conv / matmul / routing in a step are printed.
//!
//! `conv/cpu/<layer>/b32`: the backend's three convolution kernels (forward, grad input, grad
//! weight) of Conv1 and PrimaryCaps at the main job's batch, beside raw matrixmultiply sgemm
//! on the same three GEMM shapes, single-threaded and split across the rayon threads (rows or
//! columns, whichever packs less: the ceiling a convolution can reach on this pool).
//!
//! `cargo bench --bench capsnet`
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stategrad::autograd::{manual_seed, no_grad, DType, Device, Result, Tensor};
use stategrad::backends::{cpu::CpuBackend, Conv2dParams, CpuStorage, DType as BDType, Distribution, Kernels, Layout};
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

/// The three GEMMs of a convolution's forward and backward, as `(m, k, n, a^T?)`: forward
/// `W [co, K] col [K, N]`, grad input `W^T [K, co] g [co, N]`, grad weight `g [co, N] col^T`.
fn conv_gemms(co: usize, k: usize, cols: usize) -> [(usize, usize, usize, bool, bool); 3] {
    [(co, k, cols, false, false), (k, co, cols, true, false), (co, cols, k, false, true)]
}

/// Raw sgemm of `[m, k] x [k, n]` (each operand row-major or read transposed), split into
/// `tasks` blocks of rows (tall C) or columns (wide C).
#[allow(clippy::too_many_arguments)]
fn raw_sgemm(m: usize, k: usize, n: usize, ta: bool, tb: bool, a: &[f32], b: &[f32], c: &mut [f32], tasks: usize) {
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
    let rows = m >= n;
    let len = if rows { m } else { n };
    let step = len.div_ceil(tasks).div_ceil(16) * 16;
    let cp = c.as_mut_ptr() as usize;
    rayon::scope(|s| {
        for s0 in (0..len).step_by(step) {
            let s1 = (s0 + step).min(len);
            s.spawn(move |_| {
                let (mm, nn, ao, bo, co) =
                    if rows { (s1 - s0, n, s0 * rsa, 0, s0 * n) } else { (m, s1 - s0, 0, s0 * csb, s0) };
                // SAFETY: each task writes its own rows/columns of c; operands are in bounds.
                unsafe {
                    matrixmultiply::sgemm(
                        mm,
                        k,
                        nn,
                        1.0,
                        a.as_ptr().add(ao),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr().add(bo),
                        rsb as isize,
                        csb as isize,
                        0.0,
                        (cp as *mut f32).add(co),
                        n as isize,
                        1,
                    )
                }
            });
        }
    });
}

fn conv_kernels(c: &mut Criterion) {
    let b = 32;
    // (name, c_in, hw, c_out, kernel, stride)
    for (name, ci, hw, co, kk, st) in [("conv1", 1, 28, 256, 9, 1), ("primary", 256, 20, 256, 9, 2)] {
        let p = Conv2dParams { stride: (st, st), padding: (0, 0), dilation: (1, 1), groups: 1 };
        let (oh, ow) = p.output_hw((hw, hw), (kk, kk)).expect("fits");
        let (kdim, cols) = (ci * kk * kk, b * oh * ow);
        let rand = |n: usize, seed: u64| {
            CpuBackend.rand(n, BDType::F32, Distribution::Uniform { lo: -1.0, hi: 1.0 }, seed).expect("rand")
        };
        let (x, w, gr) = (rand(b * ci * hw * hw, 1), rand(co * kdim, 2), rand(b * co * oh * ow, 3));
        let (lx, lw, lg) = (
            Layout::contiguous(&[b, ci, hw, hw]),
            Layout::contiguous(&[co, ci, kk, kk]),
            Layout::contiguous(&[b, co, oh, ow]),
        );
        let mut g = c.benchmark_group(format!("conv/cpu/{name}/b{b}"));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        g.throughput(Throughput::Elements((3 * 2 * co * kdim * cols) as u64));
        g.bench_function("stategrad-fwd-bwd", |bench| {
            bench.iter(|| {
                let out: CpuStorage = CpuBackend.conv2d(&x, &lx, &w, &lw, &p).expect("conv");
                let gx = CpuBackend.conv2d_grad_input(&gr, &lg, &w, &lw, &p, (hw, hw)).expect("gx");
                let gw = CpuBackend.conv2d_grad_weight(&x, &lx, &gr, &lg, &p, (kk, kk)).expect("gw");
                (out, gx, gw)
            })
        });
        // every operand and output of the three GEMMs fits buffers of the largest of the sizes
        let big = (kdim * cols).max(co * kdim).max(co * cols);
        let (opa, opb, mut out) = (vec![0.5f32; big], vec![0.25f32; big], vec![0f32; big]);
        for (label, tasks) in [("raw-sgemm-1thread", 1), ("raw-sgemm-rayon", rayon::current_num_threads())] {
            g.bench_function(label, |bench| {
                bench.iter(|| {
                    for (m, k, n, ta, tb) in conv_gemms(co, kdim, cols) {
                        raw_sgemm(m, k, n, ta, tb, &opa, &opb, &mut out, tasks);
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, conv_kernels, train_and_infer, shares);
criterion_main!(benches);
