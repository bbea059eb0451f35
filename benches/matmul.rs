//! matmul of the CPU backend beside raw matrixmultiply sgemm on the same buffers, in the same
//! run: single-threaded, and split into one row block per rayon thread (the plain parallel
//! loop; at small n it shows where a split starts to pay, which sets `TASK_FLOPS`). Groups are
//! `matmul/<dtype>/<shape>`, one function per backend; throughput in flops (criterion prints
//! them as elem/s).
//! Targets (issue 10): on 2 threads >= 1.9x the single-thread raw kernel at n >= 512.
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
    let threads = rayon::current_num_threads();
    g.bench_function(BenchmarkId::from_parameter("raw-sgemm-rayon-rows"), |bch| {
        bch.iter(|| {
            use rayon::prelude::*;
            let rows = n.div_ceil(threads);
            out.par_chunks_mut(n * n).enumerate().for_each(|(i, out)| {
                out.par_chunks_mut(rows * n).enumerate().for_each(|(t, c)| {
                    let o = i * n * n + t * rows * n;
                    // SAFETY: rows t*rows.. of matrix i, each row-major inside its buffer.
                    unsafe {
                        matrixmultiply::sgemm(
                            c.len() / n,
                            n,
                            n,
                            1.0,
                            av[o..].as_ptr(),
                            n as isize,
                            1,
                            bv[i * n * n..].as_ptr(),
                            n as isize,
                            1,
                            0.0,
                            c.as_mut_ptr(),
                            n as isize,
                            1,
                        )
                    }
                })
            })
        })
    });
    g.finish();
}

fn matmul(c: &mut Criterion) {
    for n in [64, 96, 128, 192, 256, 512, 1024] {
        bench_shape(c, &format!("{n}x{n}x{n}"), 1, n);
    }
    bench_shape(c, "32x128x128x128", 32, 128);
}

criterion_group!(benches, matmul);
criterion_main!(benches);
