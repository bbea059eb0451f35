//! Reductions and softmax of the CPU backend against naive nested-loop references, on
//! random shapes (size-0 and size-1 dims included) and strided views, f32 and f64; plus
//! their error paths and independence from the rayon thread count.
mod common;

use common::Rng;
use common::*;
use proptest::prelude::*;
use stategrad_backends::{cpu::CpuBackend, CpuStorage, DType, Error, Kernels, Layout, ReduceOp};

/// The naive reduction: for each output index, fold every element whose kept coordinates match.
fn naive_reduce(op: ReduceOp, data: &[f64], l: &Layout, axes: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> =
        l.shape().iter().enumerate().map(|(d, &s)| if axes.contains(&d) { 1 } else { s }).collect();
    let red_shape: Vec<usize> = axes.iter().map(|&a| l.shape()[a]).collect();
    indices(&out_shape)
        .into_iter()
        .map(|o| {
            let mut acc: Option<(f64, usize)> = None;
            for (k, r) in indices(&red_shape).into_iter().enumerate() {
                let mut idx = o.clone();
                for (&a, &ri) in axes.iter().zip(&r) {
                    idx[a] = ri;
                }
                let v = data[at(l, &idx)];
                acc = Some(match (acc, op) {
                    (None, _) => (v, k),
                    (Some((s, _)), ReduceOp::Sum) => (s + v, k),
                    (Some((s, i)), ReduceOp::Max | ReduceOp::ArgMax) => {
                        if v > s {
                            (v, k)
                        } else {
                            (s, i)
                        }
                    }
                    (Some((s, i)), _) => {
                        if v < s {
                            (v, k)
                        } else {
                            (s, i)
                        }
                    }
                });
            }
            match (op, acc) {
                (ReduceOp::Sum, None) => 0.0,
                (ReduceOp::ArgMax | ReduceOp::ArgMin, Some((_, i))) => i as f64,
                (_, Some((s, _))) => s,
                (_, None) => unreachable!("empty max is an error"),
            }
        })
        .collect()
}

fn check_reduce(seed: u64, shape: &[usize], axes: &[usize], view: View, f32: bool) {
    let mut rng = Rng(seed);
    let (data, l) = make_view(&mut rng, shape, view);
    let x = storage(&data, f32);
    let data = x.to_f64_vec();
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::ArgMax, ReduceOp::ArgMin] {
        let arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);
        if arg && axes.len() != 1 {
            continue;
        }
        let empty_red = axes.iter().any(|&a| shape[a] == 0);
        let numel_out: usize = shape.iter().enumerate().map(|(d, &s)| if axes.contains(&d) { 1 } else { s }).product();
        let got = CpuBackend.reduce(op, &x, &l, axes);
        if op != ReduceOp::Sum && empty_red && numel_out > 0 {
            assert!(matches!(got, Err(Error::Shape { .. })), "{op:?} over empty dims must fail");
            continue;
        }
        let got = got.unwrap();
        assert_eq!(
            got.dtype(),
            if arg {
                DType::I64
            } else if f32 {
                DType::F32
            } else {
                DType::F64
            }
        );
        let want = naive_reduce(op, &data, &l, axes);
        let what = format!("{op:?} {shape:?} axes {axes:?} {view:?} f32={f32}");
        assert_close(&got, &want, if arg { 0.0 } else { tol(f32) * 10.0 }, &what);
    }
}

fn check_softmax(seed: u64, shape: &[usize], axis: usize, view: View, f32: bool) {
    let mut rng = Rng(seed);
    let (data, l) = make_view(&mut rng, shape, view);
    let data: Vec<f64> = data.iter().map(|v| v * 20.0).collect(); // large values: stability matters
    let x = storage(&data, f32);
    let data = x.to_f64_vec();
    for log in [false, true] {
        let got = CpuBackend.softmax(&x, &l, axis, log).unwrap();
        let want: Vec<f64> = indices(shape)
            .iter()
            .map(|idx| {
                let mut j = idx.clone();
                let row: Vec<f64> = (0..shape[axis])
                    .map(|k| {
                        j[axis] = k;
                        data[at(&l, &j)]
                    })
                    .collect();
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                let v = data[at(&l, idx)];
                if log {
                    v - m - s.ln()
                } else {
                    (v - m).exp() / s
                }
            })
            .collect();
        assert_close(&got, &want, tol(f32) * 10.0, &format!("softmax log={log} {shape:?} axis {axis} {view:?}"));
    }
}

#[test]
fn reductions_match_naive_on_fixed_cases() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[], &[]),
        (&[5], &[0]),
        (&[3, 4], &[0]),
        (&[3, 4], &[1]),
        (&[3, 4], &[0, 1]),
        (&[2, 3, 4], &[0, 2]),
        (&[2, 3, 4], &[1]),
        (&[2, 1, 4], &[0, 1]),
        (&[2, 0, 4], &[1]),
        (&[2, 0, 4], &[0]),
        (&[0, 3], &[1]),
        (&[1, 1], &[0, 1]),
        (&[4, 5, 1, 3], &[1, 3]),
        (&[4, 5, 2, 3], &[0, 1, 3]),
        (&[3, 4], &[]),
    ];
    for (seed, (shape, axes)) in cases.iter().enumerate() {
        for view in VIEWS {
            for f32 in [true, false] {
                check_reduce(seed as u64, shape, axes, view, f32);
            }
        }
    }
}

#[test]
fn large_reductions_cross_block_and_parallel_thresholds() {
    // Sizes past the block and parallel thresholds: [outer, red, inner] with each regime.
    for (shape, axes) in [
        (vec![3, 70_000], vec![1]),
        (vec![70_000, 3], vec![0]),
        (vec![40, 2_000], vec![1]),
        (vec![2_000, 40], vec![0]),
        (vec![20, 50, 60], vec![0, 2]),
    ] {
        check_reduce(7, &shape, &axes, View::Contiguous, true);
        check_reduce(8, &shape, &axes, View::Transposed, false);
    }
}

#[test]
fn integer_reductions_and_nan() {
    let x = CpuStorage::I64(vec![3, -1, 7, 7, 0, 2].into());
    let l = Layout::contiguous(&[2, 3]);
    let sum = CpuBackend.reduce(ReduceOp::Sum, &x, &l, &[1]).unwrap();
    assert_eq!(sum, CpuStorage::I64(vec![9, 9].into()));
    let max = CpuBackend.reduce(ReduceOp::Max, &x, &l, &[0]).unwrap();
    assert_eq!(max, CpuStorage::I64(vec![7, 0, 7].into()));
    let am = CpuBackend.reduce(ReduceOp::ArgMax, &x, &l, &[1]).unwrap();
    assert_eq!(am, CpuStorage::I64(vec![2, 0].into()), "first index on ties");
    let x = CpuStorage::F64(vec![1.0, f64::NAN, 3.0, f64::NAN].into());
    let l = Layout::contiguous(&[4]);
    let max = CpuBackend.reduce(ReduceOp::Max, &x, &l, &[0]).unwrap().to_f64_vec();
    assert!(max[0].is_nan(), "max propagates NaN");
    let am = CpuBackend.reduce(ReduceOp::ArgMax, &x, &l, &[0]).unwrap();
    assert_eq!(am, CpuStorage::I64(vec![1].into()), "NaN is the max; first one wins");
}

#[test]
fn reduce_errors_name_the_op() {
    let x = CpuStorage::F32(vec![0.0; 6].into());
    let l = Layout::contiguous(&[2, 3]);
    let e = CpuBackend.reduce(ReduceOp::Sum, &x, &l, &[2]).unwrap_err();
    assert!(matches!(e, Error::Dim { op: "sum", dim: 2, rank: 2 }), "{e}");
    assert!(e.to_string().starts_with("sum:"), "{e}");
    let e = CpuBackend.reduce(ReduceOp::Max, &x, &l, &[1, 0]).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "max", .. }), "{e}");
    let e = CpuBackend.reduce(ReduceOp::ArgMax, &x, &l, &[0, 1]).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "argmax", .. }) && e.to_string().contains("argmax"), "{e}");
    let empty = Layout::contiguous(&[2, 0]);
    let e = CpuBackend.reduce(ReduceOp::Min, &CpuStorage::F32(vec![].into()), &empty, &[1]).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "min", .. }), "{e}");
    let e = CpuBackend.softmax(&CpuStorage::I64(vec![1; 6].into()), &l, 1, false).unwrap_err();
    assert!(matches!(e, Error::DType { op: "softmax", got: DType::I64, .. }), "{e}");
    assert!(e.to_string().starts_with("softmax:"), "{e}");
    let e = CpuBackend.softmax(&x, &l, 2, true).unwrap_err();
    assert!(matches!(e, Error::Dim { op: "log_softmax", dim: 2, rank: 2 }), "{e}");
}

#[test]
fn softmax_matches_naive() {
    for (seed, (shape, axis)) in
        [(vec![3, 5], 1), (vec![3, 5], 0), (vec![2, 3, 4], 1), (vec![1, 1], 0), (vec![0, 4], 1), (vec![4, 0], 1)]
            .into_iter()
            .enumerate()
    {
        for view in VIEWS {
            for f32 in [true, false] {
                check_softmax(seed as u64, &shape, axis, view, f32);
            }
        }
    }
    check_softmax(9, &[300, 200], 1, View::Contiguous, true);
    check_softmax(9, &[300, 200], 0, View::Transposed, false);
}

/// Sums over 16M f64 elements with 1 and 2 rayon threads. Tolerance: none: the block
/// decomposition is fixed by the shape, so the two results are bit-identical.
#[test]
fn sum_does_not_depend_on_thread_count() {
    let n = 1 << 24;
    let x =
        CpuBackend.rand(n, DType::F64, stategrad_backends::Distribution::Uniform { lo: -1.0, hi: 1.0 }, 42).unwrap();
    let run = |threads: usize, l: &Layout, axes: &[usize]| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| CpuBackend.reduce(ReduceOp::Sum, &x, l, axes).unwrap())
    };
    let full = Layout::contiguous(&[n]);
    assert_eq!(run(1, &full, &[0]), run(2, &full, &[0]));
    let rows = Layout::contiguous(&[8, n / 8]);
    assert_eq!(run(1, &rows, &[1]), run(2, &rows, &[1]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn reductions_on_random_shapes(seed in 0u64..1000, rank in 1usize..5, mask in 0u32..16, v in 0usize..4, f32: bool) {
        let mut rng = Rng(seed);
        let shape = rng.shape(rank, 4);
        let axes: Vec<usize> = (0..rank).filter(|d| mask & (1 << d) != 0).collect();
        check_reduce(seed, &shape, &axes, VIEWS[v], f32);
        if let Some(&axis) = axes.first() {
            check_softmax(seed, &shape, axis, VIEWS[v], f32);
        }
    }
}
