//! Element-wise, transcendental, reduction, softmax and conv2d kernels (and a sweep of
//! sizes around the parallel threshold) of the CPU backend, each beside
//! same-run baselines: a plain single-threaded Rust loop and a rayon loop over the same
//! buffers. Groups are `op/<dtype>/<shape>`, one function per backend or baseline;
//! throughput in bytes moved (criterion prints GiB/s), or in flops for conv2d.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use stategrad::backends::{
    cpu::CpuBackend, BinaryOp, Conv2dParams, CpuStorage, DType, Distribution, Kernels, Layout, ReduceOp, Storage,
    UnaryOp,
};

fn rand(n: usize, seed: u64) -> CpuStorage {
    CpuBackend.rand(n, DType::F32, Distribution::Uniform { lo: -1.0, hi: 1.0 }, seed).expect("rand")
}

/// The `Storage` the tensor API uses (its drop recycles large buffers), over host data.
fn st(s: &CpuStorage) -> Storage {
    Storage::Cpu(s.clone())
}

fn f32s(s: &CpuStorage) -> &[f32] {
    s.as_slice::<f32>().expect("f32 storage")
}

fn elementwise(c: &mut Criterion) {
    for (name, n) in [("1M", 1usize << 20), ("16M", 1 << 24)] {
        let (a, b, d) = (rand(n, 1), rand(n, 2), rand(n, 3));
        let l = Layout::contiguous(&[n]);
        let (av, bv, dv) = (f32s(&a), f32s(&b), f32s(&d));

        let mut g = c.benchmark_group(format!("mul_add/f32/{name}"));
        g.throughput(Throughput::Bytes(16 * n as u64)); // a, b, c read, out written
        let (sa, sb, sd) = (st(&a), st(&b), st(&d));
        g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
            bch.iter(|| {
                let ab = sa.binary(BinaryOp::Mul, &l, &sb, &l).expect("mul");
                ab.binary(BinaryOp::Add, &l, &sd, &l).expect("add")
            })
        });
        // Baselines fuse a*b+c into one pass (what a hand-written loop does); stategrad runs
        // the two kernels the trait offers (mul, then add), moving 24 bytes/element, not 16.
        g.bench_function(BenchmarkId::from_parameter("plain-loop"), |bch| {
            bch.iter(|| av.iter().zip(bv).zip(dv).map(|((x, y), z)| x * y + z).collect::<Vec<f32>>())
        });
        g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
            bch.iter(|| av.par_iter().zip(bv).zip(dv).map(|((x, y), z)| x * y + z).collect::<Vec<f32>>())
        });
        g.finish();

        let mut g = c.benchmark_group(format!("exp/f32/{name}"));
        g.throughput(Throughput::Bytes(8 * n as u64));
        g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
            let sa = st(&a);
            bch.iter(|| sa.unary(UnaryOp::Exp, &l).expect("exp"))
        });
        g.bench_function(BenchmarkId::from_parameter("plain-loop"), |bch| {
            bch.iter(|| av.iter().map(|x| x.exp()).collect::<Vec<f32>>())
        });
        g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
            bch.iter(|| av.par_iter().map(|x| x.exp()).collect::<Vec<f32>>())
        });
        g.finish();
    }
}

fn reductions(c: &mut Criterion) {
    let n = 1usize << 24;
    let a = rand(n, 4);
    let l = Layout::contiguous(&[n]);
    let av = f32s(&a);
    let mut g = c.benchmark_group("sum/f32/16M");
    g.throughput(Throughput::Bytes(4 * n as u64));
    g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
        let sa = st(&a);
        bch.iter(|| sa.reduce(ReduceOp::Sum, &l, &[0]).expect("sum"))
    });
    g.bench_function(BenchmarkId::from_parameter("plain-loop-f32acc"), |bch| bch.iter(|| av.iter().sum::<f32>()));
    g.bench_function(BenchmarkId::from_parameter("rayon-loop-f64acc"), |bch| {
        bch.iter(|| av.par_iter().map(|&x| x as f64).sum::<f64>())
    });
    g.bench_function(BenchmarkId::from_parameter("rayon-loop-f32acc"), |bch| bch.iter(|| av.par_iter().sum::<f32>()));
    g.finish();

    let (rows, cols) = (4096, 1024);
    let x = rand(rows * cols, 5);
    let lx = Layout::contiguous(&[rows, cols]);
    let xv = f32s(&x);
    let mut g = c.benchmark_group("softmax/f32/4096x1024");
    g.throughput(Throughput::Bytes(8 * (rows * cols) as u64));
    g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
        let sx = st(&x);
        bch.iter(|| sx.softmax(&lx, 1, false).expect("softmax"))
    });
    g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
        bch.iter(|| {
            let mut out = vec![0.0f32; rows * cols];
            out.par_chunks_mut(cols).zip(xv.par_chunks(cols)).for_each(|(o, r)| {
                let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0.0f32;
                for (o, &v) in o.iter_mut().zip(r) {
                    *o = (v - m).exp();
                    s += *o;
                }
                o.iter_mut().for_each(|o| *o /= s);
            });
            out
        })
    });
    g.finish();

    let mut g = c.benchmark_group("log_softmax/f32/4096x1024");
    g.throughput(Throughput::Bytes(8 * (rows * cols) as u64));
    g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
        let sx = st(&x);
        bch.iter(|| sx.softmax(&lx, 1, true).expect("log_softmax"))
    });
    g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
        bch.iter(|| {
            let mut out = vec![0.0f32; rows * cols];
            out.par_chunks_mut(cols).zip(xv.par_chunks(cols)).for_each(|(o, r)| {
                let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let ls = r.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
                for (o, &v) in o.iter_mut().zip(r) {
                    *o = v - m - ls;
                }
            });
            out
        })
    });
    g.finish();
}

fn conv(c: &mut Criterion) {
    // The CapsNet layers at batch 16: conv1 1x28x28 -> 256x20x20 (9x9), primary caps
    // 256x20x20 -> 256x6x6 (9x9, stride 2); forward and both backward kernels.
    let layers = [("conv1-16x1x28x28-256k9", 1, 28, 1), ("primary-16x256x20x20-256k9s2", 256, 20, 2)];
    for (name, cin, hw, stride) in layers {
        let n = 16;
        let p = Conv2dParams { stride: (stride, stride), ..Default::default() };
        let (oh, ow) = p.output_hw((hw, hw), (9, 9)).expect("fits");
        let x = rand(n * cin * hw * hw, 6);
        let w = rand(256 * cin * 81, 7);
        let gr = rand(n * 256 * oh * ow, 8);
        let (lx, lw, lg) = (
            Layout::contiguous(&[n, cin, hw, hw]),
            Layout::contiguous(&[256, cin, 9, 9]),
            Layout::contiguous(&[n, 256, oh, ow]),
        );
        let flops = 2 * n * 256 * oh * ow * cin * 81;
        let mut g = c.benchmark_group(format!("conv2d/f32/{name}"));
        g.throughput(Throughput::Elements(flops as u64));
        g.sample_size(10);
        let (x, w, gr) = (st(&x), st(&w), st(&gr));
        g.bench_function(BenchmarkId::from_parameter("forward"), |bch| {
            bch.iter(|| x.conv2d(&lx, &w, &lw, &p).expect("conv2d"))
        });
        g.bench_function(BenchmarkId::from_parameter("grad_input"), |bch| {
            bch.iter(|| gr.conv2d_grad_input(&lg, &w, &lw, &p, (hw, hw)).expect("grad_input"))
        });
        g.bench_function(BenchmarkId::from_parameter("grad_weight"), |bch| {
            bch.iter(|| x.conv2d_grad_weight(&lx, &gr, &lg, &p, (9, 9)).expect("grad_weight"))
        });
        g.finish();
    }
}

/// tanh, sigmoid and GELU at 16M beside loops over `std`'s f32 functions (GELU's baseline
/// is the tanh form, `std` having no erf: one transcendental per element either way).
fn transcendental(c: &mut Criterion) {
    let n = 1usize << 24;
    let a = rand(n, 9);
    let l = Layout::contiguous(&[n]);
    let av = f32s(&a);
    let sa = st(&a);
    fn gelu_tanh(x: f32) -> f32 {
        0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh())
    }
    type Row = (&'static str, UnaryOp, fn(f32) -> f32);
    let rows: [Row; 3] = [
        ("tanh", UnaryOp::Tanh, f32::tanh),
        ("sigmoid", UnaryOp::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        ("gelu", UnaryOp::Gelu, gelu_tanh),
    ];
    for (name, op, f) in rows {
        let mut g = c.benchmark_group(format!("{name}/f32/16M"));
        g.throughput(Throughput::Bytes(8 * n as u64));
        g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| bch.iter(|| sa.unary(op, &l).expect(name)));
        g.bench_function(BenchmarkId::from_parameter("plain-loop"), |bch| {
            bch.iter(|| av.iter().map(|&x| f(x)).collect::<Vec<f32>>())
        });
        g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
            bch.iter(|| av.par_iter().map(|&x| f(x)).collect::<Vec<f32>>())
        });
        g.finish();
    }
}

/// Where a parallel split pays: `a + b` and `exp` at sizes around `PAR_THRESHOLD`, each
/// beside a plain loop and a rayon loop over the same buffers (the crossover of those two
/// is the threshold's measure; run with RAYON_NUM_THREADS=1 and 2).
fn threshold(c: &mut Criterion) {
    for k in [12usize, 14, 15, 16, 17, 18] {
        let n = 1usize << k;
        let (a, b) = (rand(n, 10), rand(n, 11));
        let l = Layout::contiguous(&[n]);
        let (av, bv) = (f32s(&a), f32s(&b));
        let (sa, sb) = (st(&a), st(&b));
        let mut g = c.benchmark_group(format!("threshold-add/f32/{}K", n >> 10));
        g.throughput(Throughput::Bytes(12 * n as u64));
        g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
            bch.iter(|| sa.binary(BinaryOp::Add, &l, &sb, &l).expect("add"))
        });
        g.bench_function(BenchmarkId::from_parameter("plain-loop"), |bch| {
            bch.iter(|| av.iter().zip(bv).map(|(x, y)| x + y).collect::<Vec<f32>>())
        });
        g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
            bch.iter(|| av.par_iter().zip(bv).map(|(x, y)| x + y).collect::<Vec<f32>>())
        });
        g.finish();
        let mut g = c.benchmark_group(format!("threshold-exp/f32/{}K", n >> 10));
        g.throughput(Throughput::Bytes(8 * n as u64));
        g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
            bch.iter(|| sa.unary(UnaryOp::Exp, &l).expect("exp"))
        });
        g.bench_function(BenchmarkId::from_parameter("plain-loop"), |bch| {
            bch.iter(|| av.iter().map(|x| x.exp()).collect::<Vec<f32>>())
        });
        g.bench_function(BenchmarkId::from_parameter("rayon-loop"), |bch| {
            bch.iter(|| av.par_iter().map(|x| x.exp()).collect::<Vec<f32>>())
        });
        g.finish();
    }
}

criterion_group!(benches, elementwise, reductions, transcendental, threshold, conv);
criterion_main!(benches);
