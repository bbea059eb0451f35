//! matmul of the CPU backend beside raw single-threaded matrixmultiply sgemm on the same
//! buffers, in the same run. Groups are `matmul/<dtype>/<shape>`, one function per
//! backend; throughput in flops (criterion prints them as elem/s).
//! Target (issue 2): stategrad on 2 threads >= 1.6x raw sgemm at n >= 512, >= 0.95x at small n.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stategrad::backends::{cpu::CpuBackend, CpuStorage, DType, Distribution, Kernels, Layout, Storage};

fn rand(n: usize, seed: u64) -> CpuStorage {
    CpuBackend.rand(n, DType::F32, Distribution::Uniform { lo: -1.0, hi: 1.0 }, seed).expect("rand")
}

fn bench_shape(c: &mut Criterion, name: &str, batch: usize, n: usize) {
    let (a, b) = (rand(batch * n * n, 1), rand(batch * n * n, 2));
    let shape: Vec<usize> = if batch == 1 { vec![n, n] } else { vec![batch, n, n] };
    let l = Layout::contiguous(&shape);
    let flops = 2 * batch * n * n * n;
    let mut g = c.benchmark_group(format!("matmul/f32/{name}"));
    g.throughput(Throughput::Elements(flops as u64));
    // through `Storage`, the path `Tensor` takes (its drop recycles the output buffer)
    let (sa, sb) = (Storage::Cpu(a.clone()), Storage::Cpu(b.clone()));
    g.bench_function(BenchmarkId::from_parameter("stategrad"), |bch| {
        bch.iter(|| sa.matmul(&l, &sb, &l).expect("matmul"))
    });
    let (av, bv) = (a.as_slice::<f32>().expect("f32"), b.as_slice::<f32>().expect("f32"));
    let mut out = vec![0.0f32; batch * n * n];
    g.bench_function(BenchmarkId::from_parameter("raw-sgemm-1thread"), |bch| {
        bch.iter(|| {
            for i in 0..batch {
                let o = i * n * n;
                // SAFETY: each matrix is n x n row-major inside its buffer.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        av[o..].as_ptr(),
                        n as isize,
                        1,
                        bv[o..].as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out[o..].as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }
        })
    });
    g.finish();
}

fn matmul(c: &mut Criterion) {
    for n in [128, 512, 1024] {
        bench_shape(c, &format!("{n}x{n}x{n}"), 1, n);
    }
    bench_shape(c, "32x128x128x128", 32, 128);
}

criterion_group!(benches, matmul);
criterion_main!(benches);
