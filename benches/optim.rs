//! The optimizer step over CapsNet's parameters (the paper's model, 8.2M f32 parameters in
//! its real tensor shapes), with fixed random gradients: the fused in-place kernel
//! (`optim_step`, the default) and the tensor-op path it replaced (`fused(false)`, which is
//! commit b523396's algorithm), beside same-run baselines over buffers of the same sizes: a
//! hand-fused plain loop (one thread) and the same loop split over rayon.
//!
//! Adam (the main job's optimizer) and SGD with momentum. A summary of best-of-N times and
//! ratios is printed at the end. `cargo bench --bench optim`
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;
use stategrad::autograd::{manual_seed, DType, Device, Grads, Tensor};
use stategrad::nn::capsule::{CapsNet, CapsNetConfig};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use stategrad::nn::{Module, Param};

const CHUNK: usize = 1 << 14;

fn capsnet_params() -> Vec<Param> {
    manual_seed(0);
    CapsNet::new(CapsNetConfig::paper()).expect("model").parameters()
}

fn grads(params: &[Param]) -> Grads {
    let mut g = Grads::default();
    for p in params {
        g.insert(p.id(), Tensor::rand(&p.shape(), -1e-2, 1e-2, DType::F32, Device::Cpu).expect("grad"));
    }
    g
}

/// Plain buffers of the parameters' sizes: (param, grad, m, v) per tensor.
type Bufs = Vec<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)>;

fn buffers(params: &[Param]) -> Bufs {
    params
        .iter()
        .map(|p| {
            let n = p.numel();
            let g = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 2e-4).collect();
            (p.data().to_vec::<f32>().unwrap(), g, vec![0.0; n], vec![0.0; n])
        })
        .collect()
}

/// The textbook fused Adam loop (what PyTorch's fused kernel does per element).
#[inline(always)]
fn adam_loop(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], t: i32) {
    let (b1, b2, lr, eps) = (0.9f32, 0.999f32, 1e-3f32, 1e-8f32);
    let step = lr / (1.0 - b1.powi(t));
    let c2 = 1.0 / (1.0 - b2.powi(t)).sqrt();
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = *m * b1 + g * (1.0 - b1);
        *v = *v * b2 + g * g * (1.0 - b2);
        *p -= *m / (v.sqrt() * c2 + eps) * step;
    }
}

#[inline(always)]
fn sgd_loop(p: &mut [f32], g: &[f32], b: &mut [f32]) {
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        *b = *b * 0.9 + g;
        *p -= *b * 1e-2;
    }
}

fn plain_adam(bufs: &mut Bufs, t: i32) {
    for (p, g, m, v) in bufs.iter_mut() {
        adam_loop(p, g, m, v, t);
    }
}

fn rayon_adam(bufs: &mut Bufs, t: i32) {
    for (p, g, m, v) in bufs.iter_mut() {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adam_loop(p, g, m, v, t));
    }
}

fn plain_sgd(bufs: &mut Bufs) {
    for (p, g, m, _) in bufs.iter_mut() {
        sgd_loop(p, g, m);
    }
}

fn rayon_sgd(bufs: &mut Bufs) {
    for (p, g, m, _) in bufs.iter_mut() {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| sgd_loop(p, g, b));
    }
}

fn adam(params: &[Param], fused: bool) -> Adam {
    Adam::new(params.to_vec(), AdamConfig::new(1e-3)).expect("adam").fused(fused)
}

fn sgd(params: &[Param], fused: bool) -> Sgd {
    Sgd::new(params.to_vec(), SgdConfig { momentum: 0.9, ..SgdConfig::new(1e-2) }).expect("sgd").fused(fused)
}

fn bench(c: &mut Criterion) {
    let params = capsnet_params();
    let n: usize = params.iter().map(|p| p.numel()).sum();
    let g = grads(&params);
    let mut bufs = buffers(&params);
    let shape = format!("capsnet-{:.1}M", n as f64 / 1e6);

    let mut group = c.benchmark_group("optim");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(n as u64));
    for fused in [true, false] {
        let mut opt = adam(&params, fused);
        opt.step(&g).unwrap(); // the state exists before timing
        let name = if fused { "fused" } else { "tensor-ops" };
        group.bench_function(format!("adam/cpu-{name}/{shape}"), |b| b.iter(|| opt.step(&g).unwrap()));
        let mut opt = sgd(&params, fused);
        opt.step(&g).unwrap();
        group.bench_function(format!("sgd-momentum/cpu-{name}/{shape}"), |b| b.iter(|| opt.step(&g).unwrap()));
    }
    let mut t = 0;
    group.bench_function(format!("adam/plain-loop/{shape}"), |b| {
        b.iter(|| {
            t += 1;
            plain_adam(&mut bufs, t)
        })
    });
    group.bench_function(format!("adam/rayon-loop/{shape}"), |b| {
        b.iter(|| {
            t += 1;
            rayon_adam(&mut bufs, t)
        })
    });
    group.bench_function(format!("sgd-momentum/plain-loop/{shape}"), |b| b.iter(|| plain_sgd(&mut bufs)));
    group.bench_function(format!("sgd-momentum/rayon-loop/{shape}"), |b| b.iter(|| rayon_sgd(&mut bufs)));
    group.finish();

    // Best-of-N in one window, interleaved, so the ratios compare like with like.
    let reps = if std::env::var("STATEGRAD_BENCH_QUICK").is_ok() { 3 } else { 15 };
    let best = |f: &mut dyn FnMut()| {
        (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed()
            })
            .min()
            .unwrap()
    };
    let (mut fa, mut ra, mut fs, mut rs) =
        (adam(&params, true), adam(&params, false), sgd(&params, true), sgd(&params, false));
    for o in [&mut fa as &mut dyn Optimizer, &mut ra, &mut fs, &mut rs] {
        o.step(&g).unwrap();
    }
    let rows = [
        ("adam fused", best(&mut || fa.step(&g).unwrap())),
        ("adam tensor-ops", best(&mut || ra.step(&g).unwrap())),
        ("adam plain loop", best(&mut || plain_adam(&mut bufs, 3))),
        ("adam rayon loop", best(&mut || rayon_adam(&mut bufs, 3))),
        ("sgd fused", best(&mut || fs.step(&g).unwrap())),
        ("sgd tensor-ops", best(&mut || rs.step(&g).unwrap())),
        ("sgd plain loop", best(&mut || plain_sgd(&mut bufs))),
        ("sgd rayon loop", best(&mut || rayon_sgd(&mut bufs))),
    ];
    println!("\noptimizer step over {n} parameters ({} tensors), best of {reps}:", params.len());
    for chunk in rows.chunks(4) {
        let (fused, plain) = (chunk[0].1.as_secs_f64(), chunk[2].1.as_secs_f64());
        for (name, d) in chunk {
            let s = d.as_secs_f64();
            println!("  {name:<16} {:>8.2} ms  {:.2}x plain loop  {:.2}x fused", s * 1e3, s / plain, s / fused);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
