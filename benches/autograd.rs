//! Autograd overhead: a 1,000-op chain on a 1-element tensor (untracked, tracked forward,
//! forward + backward) beside a plain Rust loop, and an MLP 784-256-256-10 training step
//! (forward, cross-entropy, backward, hand-written SGD) beside the same GEMMs run raw
//! through matrixmultiply in the same process.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stategrad::autograd::{no_grad, DType, Device, Tensor};

const CHAIN: usize = 1000;

fn chain(y0: &Tensor) -> Tensor {
    let mut y = y0.clone();
    for _ in 0..CHAIN / 2 {
        y = y.mul_scalar(1.0001).unwrap().add_scalar(0.0001).unwrap();
    }
    y
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("overhead/cpu/1elem");
    g.throughput(Throughput::Elements(CHAIN as u64));
    let x = Tensor::ones(&[1], DType::F32, Device::Cpu).unwrap();
    let leaf = x.requires_grad(true).unwrap();
    g.bench_function("baseline_plain_loop", |b| {
        b.iter(|| {
            let mut y = black_box(1.0f32);
            for _ in 0..CHAIN / 2 {
                y = black_box(y * 1.0001) + 0.0001;
            }
            y
        })
    });
    g.bench_function("untracked", |b| b.iter(|| chain(black_box(&x))));
    g.bench_function("tracked_forward", |b| b.iter(|| chain(black_box(&leaf))));
    g.bench_function("tracked_forward_backward", |b| {
        b.iter(|| chain(black_box(&leaf)).sum_all().unwrap().backward().unwrap())
    });
    g.finish();
}

struct Mlp {
    w: Vec<Tensor>,
    b: Vec<Tensor>,
}

impl Mlp {
    fn new() -> Self {
        let dims = [784, 256, 256, 10];
        let w = dims
            .windows(2)
            .map(|d| Tensor::randn(&[d[0], d[1]], 0.0, (2.0 / d[0] as f64).sqrt(), DType::F32, Device::Cpu).unwrap())
            .collect();
        let b = dims[1..].iter().map(|&n| Tensor::zeros(&[n], DType::F32, Device::Cpu).unwrap()).collect();
        Mlp { w, b }
    }

    fn step(&mut self, x: &Tensor, target: &Tensor) -> f64 {
        let w: Vec<Tensor> = self.w.iter().map(|t| t.requires_grad(true).unwrap()).collect();
        let b: Vec<Tensor> = self.b.iter().map(|t| t.requires_grad(true).unwrap()).collect();
        let mut h = x.clone();
        for i in 0..3 {
            h = h.matmul(&w[i]).unwrap().add(&b[i]).unwrap();
            if i < 2 {
                h = h.relu().unwrap();
            }
        }
        let loss = h.log_softmax(1).unwrap().gather(1, target).unwrap().mean_all().unwrap().neg().unwrap();
        let grads = loss.backward().unwrap();
        let _g = no_grad();
        for i in 0..3 {
            self.w[i] = self.w[i].sub(&grads.get(&w[i]).unwrap().mul_scalar(0.01).unwrap()).unwrap();
            self.b[i] = self.b[i].sub(&grads.get(&b[i]).unwrap().mul_scalar(0.01).unwrap()).unwrap();
        }
        loss.item().unwrap()
    }
}

/// The nine GEMMs of one MLP step (3 forward, 6 backward), raw single-threaded sgemm.
fn raw_gemms(batch: usize, bufs: &mut [Vec<f32>; 3]) {
    let dims = [784usize, 256, 256, 10];
    let [a, b, c] = bufs;
    let gemm = |m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]| unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    };
    for l in 0..3 {
        let (k, n) = (dims[l], dims[l + 1]);
        gemm(batch, k, n, a, b, c); // forward x W
        gemm(batch, n, k, c, b, a); // grad x: G W^T (shapes only; same cost)
        gemm(k, batch, n, a, c, b); // grad W: X^T G
    }
}

fn mlp(c: &mut Criterion) {
    let mut g = c.benchmark_group("mlp_step/cpu");
    g.sample_size(20);
    for batch in [64usize, 512] {
        g.throughput(Throughput::Elements(batch as u64));
        let x = Tensor::randn(&[batch, 784], 0.0, 1.0, DType::F32, Device::Cpu).unwrap();
        let t: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
        let target = Tensor::from_vec(t, &[batch, 1], Device::Cpu).unwrap();
        let mut model = Mlp::new();
        g.bench_with_input(BenchmarkId::new("stategrad", batch), &batch, |b, _| b.iter(|| model.step(&x, &target)));
        let mut bufs =
            [vec![0.5f32; batch.max(784) * 784], vec![0.5f32; 784 * 784], vec![0.5f32; batch.max(784) * 784]];
        g.bench_with_input(BenchmarkId::new("baseline_raw_sgemm_1thread", batch), &batch, |b, &n| {
            b.iter(|| raw_gemms(n, &mut bufs))
        });
    }
    g.finish();
}

criterion_group!(benches, overhead, mlp);
criterion_main!(benches);
