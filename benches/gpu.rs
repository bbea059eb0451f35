//! GPU benches (feature `wgpu` or `cuda`): matmul f32 at n = 1024, 4096 and 8192
//! (GFLOP/s); `a * b + c` (two kernels, 16 bytes per element moved) and a full sum at 2^28
//! f32 (GB/s), beside a plain device copy of the same size as the same-run bandwidth
//! baseline; softmax over the rows of 65536 x 1024; the CapsNet train step (forward,
//! backward, Adam) and inference at batch 64 (images/s); host <-> device transfers (GB/s).
//! The workloads are those of `benches/torch/bench_gpu.py` (PyTorch-CUDA, CUDA events).
//!
//! A plain harness, not criterion: each figure is the best of a few timed runs after a
//! warm-up, each run ending in a read-back (`to_host` of one element, or the transfer
//! itself), so queued GPU work is counted. `STATEGRAD_BENCH_QUICK=1` (CI, lavapipe) shrinks
//! sizes and repetitions so the bench only proves it runs; `STATEGRAD_BENCH_DEVICE` picks
//! the device (default: the first GPU found). Figures are meaningful on a real GPU only.
/// Built without a GPU runtime there is nothing to measure (`cuda` alone is enough).
fn main() {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    gpu::main();
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    eprintln!("gpu bench skipped: built without the `wgpu` and `cuda` features");
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu {
    use std::time::{Duration, Instant};

    use stategrad::autograd::{manual_seed, Tensor};
    use stategrad::backends::{BinaryOp, CpuStorage, DType, Device, Distribution, Layout, ReduceOp, Storage};
    use stategrad::nn::capsule::{CapsNet, CapsNetConfig};
    use stategrad::nn::optim::{Adam, AdamConfig, Optimizer};
    use stategrad::nn::Module;

    fn best(reps: usize, mut f: impl FnMut()) -> Duration {
        f(); // warm-up: kernel compilation, autotuning, allocation
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    }

    /// Waits for `s`'s producer by reading one element back.
    fn sync(s: &Storage) {
        s.to_host(&Layout::contiguous(&[1])).expect("read back");
    }

    pub fn main() {
        let quick = std::env::var("STATEGRAD_BENCH_QUICK").as_deref() == Ok("1");
        let device = match std::env::var("STATEGRAD_BENCH_DEVICE") {
            Ok(s) => s.parse::<Device>().expect("STATEGRAD_BENCH_DEVICE"),
            Err(_) => match stategrad::backends::cube::devices().first() {
                Some(&d) => d,
                None => {
                    eprintln!("gpu bench skipped: no GPU device");
                    return;
                }
            },
        };
        let reps = if quick { 1 } else { 5 };
        println!("device {device}{}", if quick { " (quick)" } else { "" });
        println!("{:<32} {:>12} {:>14}", "bench", "time", "throughput");
        let rand = |n: usize, seed| {
            Storage::rand(device, n, DType::F32, Distribution::Uniform { lo: -1.0, hi: 1.0 }, seed).expect("rand")
        };

        let sizes: &[usize] = if quick { &[128, 256] } else { &[1024, 4096, 8192] };
        for &n in sizes {
            let (a, b) = (rand(n * n, 1), rand(n * n, 2));
            let l = Layout::contiguous(&[n, n]);
            let t = best(reps, || sync(&a.matmul(&l, &b, &l).expect("matmul")));
            let gflops = 2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9;
            println!("{:<32} {:>12.3?} {:>9.1} GFLOP/s", format!("matmul/{device}/f32/{n}"), t, gflops);
        }

        let n = if quick { 1 << 20 } else { 1 << 28 };
        let l = Layout::contiguous(&[n]);
        let gbs = |bytes: f64, t: Duration| bytes / t.as_secs_f64() / 1e9;
        {
            let a = rand(n, 3);
            let t = best(reps, || sync(&a.copy_strided(&l).expect("copy")));
            println!(
                "{:<32} {:>12.3?} {:>12.1} GB/s",
                format!("copy/{device}/f32/{n} (baseline)"),
                t,
                gbs(8.0 * n as f64, t)
            );
        }
        {
            let (a, b, c) = (rand(n, 3), rand(n, 4), rand(n, 5));
            let t = best(reps, || {
                let ab = a.binary(BinaryOp::Mul, &l, &b, &l).expect("mul");
                sync(&ab.binary(BinaryOp::Add, &l, &c, &l).expect("add"))
            });
            // 16 bytes per element: the three inputs and the output (as PyTorch's figure counts).
            println!("{:<32} {:>12.3?} {:>12.1} GB/s", format!("a*b+c/{device}/f32/{n}"), t, gbs(16.0 * n as f64, t));
            let t = best(reps, || sync(&a.reduce(ReduceOp::Sum, &l, &[0]).expect("sum")));
            println!("{:<32} {:>12.3?} {:>12.1} GB/s", format!("sum/{device}/f32/{n}"), t, gbs(4.0 * n as f64, t));
        }

        let (rows, cols) = if quick { (256, 1024) } else { (65536, 1024) };
        {
            let x = rand(rows * cols, 6);
            let ls = Layout::contiguous(&[rows, cols]);
            let t = best(reps, || sync(&x.softmax(&ls, 1, false).expect("softmax")));
            let label = format!("softmax/{device}/f32/{rows}x{cols}");
            println!("{label:<32} {:>12.3?} {:>12.1} GB/s", t, gbs(8.0 * (rows * cols) as f64, t));
        }

        capsnet(device, quick, reps);

        let l = Layout::contiguous(&[n]);
        let host = CpuStorage::F32((0..n).map(|i| i as f32).collect());
        let mut on_device = None;
        let t = best(reps, || {
            let s = Storage::from_host(host.clone(), device).expect("upload");
            sync(&s);
            on_device = Some(s);
        });
        println!(
            "{:<32} {:>12.3?} {:>12.2} GB/s",
            format!("to_device/{device}/f32/{n}"),
            t,
            4.0 * n as f64 / t.as_secs_f64() / 1e9
        );
        let s = on_device.expect("uploaded");
        let t = best(reps, || {
            s.to_host(&l).expect("download");
        });
        println!(
            "{:<32} {:>12.3?} {:>12.2} GB/s",
            format!("to_host/{device}/f32/{n}"),
            t,
            4.0 * n as f64 / t.as_secs_f64() / 1e9
        );
    }

    /// The CapsNet train step (forward, losses, backward, Adam; the loss read back) and
    /// inference (predicted classes read back) at batch 64, paper-size model (quick: the small
    /// model at batch 4).
    fn capsnet(device: Device, quick: bool, reps: usize) {
        let (config, b, name) =
            if quick { (CapsNetConfig::small(), 4, "small") } else { (CapsNetConfig::paper(), 64, "paper") };
        manual_seed(0);
        let model = CapsNet::new(config).expect("model");
        model.to_device(device).expect("to device");
        let mut opt = Adam::new(model.parameters(), AdamConfig::new(1e-3)).expect("adam");
        let x = Tensor::rand(&[b, 1, 28, 28], 0.0, 1.0, DType::F32, device).expect("x");
        let y = Tensor::from_vec((0..b as i64).map(|i| i % 10).collect::<Vec<_>>(), &[b], Device::Cpu)
            .and_then(|y| y.to_device(device))
            .expect("y");
        let t = best(reps, || {
            let (losses, _) = model.losses(&x, &y).expect("losses");
            opt.step(&losses.total.backward().expect("backward")).expect("adam");
            losses.total.item().expect("loss");
        });
        let label = format!("capsnet_train/{device}/{name}/{b}");
        println!("{label:<32} {:>12.3?} {:>9.1} images/s", t, b as f64 / t.as_secs_f64());
        let t = best(reps, || {
            model.predict(&x).expect("predict");
        });
        let label = format!("capsnet_infer/{device}/{name}/{b}");
        println!("{label:<32} {:>12.3?} {:>9.1} images/s", t, b as f64 / t.as_secs_f64());
    }
}
