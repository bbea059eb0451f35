//! GPU benches (feature `wgpu` or `cuda`): matmul f32 at n = 1024 and 4096 (GFLOP/s),
//! element-wise add and a full sum on 16M f32 (GB/s), host <-> device transfers (GB/s).
//!
//! A plain harness, not criterion: each figure is the best of a few timed runs after a
//! warm-up, each run ending in a read-back (`to_host` of one element, or the transfer
//! itself), so queued GPU work is counted. `STATEGRAD_BENCH_QUICK=1` (CI, lavapipe) shrinks
//! sizes and repetitions so the bench only proves it runs; `STATEGRAD_BENCH_DEVICE` picks
//! the device (default: the first GPU found). Figures are meaningful on a real GPU only.
use std::time::{Duration, Instant};

use stategrad::backends::{BinaryOp, CpuStorage, DType, Device, Distribution, Layout, ReduceOp, Storage};

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

fn main() {
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

    let sizes: &[usize] = if quick { &[128, 256] } else { &[1024, 4096] };
    for &n in sizes {
        let (a, b) = (rand(n * n, 1), rand(n * n, 2));
        let l = Layout::contiguous(&[n, n]);
        let t = best(reps, || sync(&a.matmul(&l, &b, &l).expect("matmul")));
        let gflops = 2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9;
        println!("{:<32} {:>12.3?} {:>9.1} GFLOP/s", format!("matmul/{device}/f32/{n}"), t, gflops);
    }

    let n = if quick { 1 << 20 } else { 1 << 24 };
    let (a, b) = (rand(n, 3), rand(n, 4));
    let l = Layout::contiguous(&[n]);
    let t = best(reps, || sync(&a.binary(BinaryOp::Add, &l, &b, &l).expect("add")));
    let gbs = 3.0 * 4.0 * n as f64 / t.as_secs_f64() / 1e9;
    println!("{:<32} {:>12.3?} {:>12.1} GB/s", format!("add/{device}/f32/{n}"), t, gbs);
    let t = best(reps, || sync(&a.reduce(ReduceOp::Sum, &l, &[0]).expect("sum")));
    let gbs = 4.0 * n as f64 / t.as_secs_f64() / 1e9;
    println!("{:<32} {:>12.3?} {:>12.1} GB/s", format!("sum/{device}/f32/{n}"), t, gbs);

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
