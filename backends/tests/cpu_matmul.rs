//! Matmul and gemm of the CPU backend against a naive triple loop: 2-D and batched,
//! transposed and narrowed operands, stride-0 broadcast batches, size-0/1 dims, f32/f64,
//! sizes past the parallel split, and the error paths.
mod common;

use common::Rng;
use common::*;
use proptest::prelude::*;
use stategrad_backends::cpu::{gemm, par_gemm, CpuBackend, Mat};
use stategrad_backends::{CpuStorage, DType, Error, Kernels, Layout};

/// A `[batch.., rows, cols]` operand as `view`: Transposed stores the matrix column-major,
/// Narrowed leaves gaps between rows, Broadcast has a stride-0 leading batch dim.
fn operand(rng: &mut Rng, batch: &[usize], rows: usize, cols: usize, view: View) -> (Vec<f64>, Layout) {
    let mut shape = batch.to_vec();
    shape.extend([rows, cols]);
    let view = if batch.is_empty() && matches!(view, View::Broadcast) { View::Contiguous } else { view };
    make_view(rng, &shape, view)
}

fn naive_matmul(a: &[f64], la: &Layout, b: &[f64], lb: &Layout) -> Vec<f64> {
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    let mut out = vec![];
    for bi in indices(&la.shape()[..r - 2]) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let ia: Vec<usize> = bi.iter().copied().chain([i, p]).collect();
                    let ib: Vec<usize> = bi.iter().copied().chain([p, j]).collect();
                    s += a[at(la, &ia)] * b[at(lb, &ib)];
                }
                out.push(s);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check(seed: u64, batch: &[usize], m: usize, k: usize, n: usize, va: View, vb: View, f32: bool) {
    let mut rng = Rng(seed);
    let (a, la) = operand(&mut rng, batch, m, k, va);
    let (b, lb) = operand(&mut rng, batch, k, n, vb);
    let (sa, sb) = (storage(&a, f32), storage(&b, f32));
    let got = CpuBackend.matmul(&sa, &la, &sb, &lb).unwrap();
    let want = naive_matmul(&sa.to_f64_vec(), &la, &sb.to_f64_vec(), &lb);
    let t = if f32 { 1e-5 * (k as f64).sqrt().max(1.0) } else { 1e-12 * (k as f64).max(1.0) };
    assert_close(&got, &want, t, &format!("matmul {batch:?} {m}x{k}x{n} {va:?} {vb:?} f32={f32}"));
}

#[test]
fn matmul_matches_naive_on_views() {
    let dims = [(3, 4, 5), (1, 1, 1), (0, 3, 2), (2, 0, 3), (4, 3, 0), (7, 1, 6)];
    for (seed, &(m, k, n)) in dims.iter().enumerate() {
        for batch in [&[][..], &[2], &[2, 3]] {
            for va in VIEWS {
                for vb in VIEWS {
                    check(seed as u64, batch, m, k, n, va, vb, seed % 2 == 0);
                }
            }
        }
    }
}

#[test]
fn large_matmuls_split_across_tasks() {
    // Past TASK_FLOPS: one matrix split by rows, and a batch split across tasks.
    check(1, &[], 200, 150, 170, View::Transposed, View::Contiguous, true);
    check(2, &[], 130, 90, 300, View::Contiguous, View::Transposed, false);
    check(3, &[12], 40, 70, 50, View::Broadcast, View::Narrowed, true);
    check(4, &[3], 150, 100, 120, View::Contiguous, View::Broadcast, true);
}

#[test]
fn par_gemm_splits_rows_or_columns_like_one_gemm() {
    // Tall C splits by rows, wide C by columns; on 1, 2 and 3 threads (uneven blocks) every
    // element comes out bit-identical to one single-threaded gemm, accumulating onto C.
    for (m, k, n) in [(300, 70, 60), (60, 70, 300), (2, 5000, 1000), (1000, 5000, 2)] {
        let mut rng = Rng(m as u64 + n as u64);
        let a: Vec<f32> = (0..m * k).map(|_| rng.f64() as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.f64() as f32).collect();
        let c0: Vec<f32> = (0..m * n).map(|_| rng.f64() as f32).collect();
        // A read transposed through its strides (stored [k, m]).
        let (ma, mb) = (Mat::row_major(&a, m).t(), Mat::row_major(&b, n));
        let mut want = c0.clone();
        gemm(m, k, n, ma, mb, &mut want, true).unwrap();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut got = c0.clone();
            pool.install(|| par_gemm(m, k, n, ma, mb, &mut got, true)).unwrap();
            assert!(got == want, "{m}x{k}x{n} on {threads} threads differs from one gemm");
        }
        let mut short = vec![0f32; m * n - 1];
        let e = par_gemm(m, k, n, ma, mb, &mut short, false).unwrap_err();
        assert!(matches!(e, Error::Shape { op: "gemm", .. }), "{e}");
    }
}

#[test]
fn gemm_accumulates_and_checks_bounds() {
    // c = a b + c, with a read transposed through its strides.
    let a = [1.0f64, 2.0, 3.0, 4.0]; // stored [k=2, m=2]; a = [[1, 3], [2, 4]]
    let b = [5.0f64, 6.0, 7.0, 8.0];
    let mut c = [1.0f64; 4];
    gemm(2, 2, 2, Mat::row_major(&a, 2).t(), Mat::row_major(&b, 2), &mut c, true).unwrap();
    assert_eq!(c, [1.0 + 5.0 + 21.0, 1.0 + 6.0 + 24.0, 1.0 + 10.0 + 28.0, 1.0 + 12.0 + 32.0]);
    let e = gemm(3, 2, 2, Mat::row_major(&a, 2), Mat::row_major(&b, 2), &mut c, false).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "gemm", .. }), "{e}");
}

#[test]
fn vector_products_skip_the_gemm_provider_and_agree() {
    // m == 1 (one axpy per contiguous row of b, or a strided dot per column of b) and
    // n == 1 (an 8-lane dot per contiguous row of a, k past and not a multiple of 8, or a
    // strided dot), batched like CapsNet's routing, on every view, f32 and f64.
    for (seed, &(m, k, n)) in
        [(1, 1152, 16), (1, 19, 40), (37, 16, 1), (9, 27, 1), (1, 5, 1), (1, 0, 3), (4, 0, 1)].iter().enumerate()
    {
        for batch in [&[][..], &[3, 2]] {
            for va in VIEWS {
                for vb in VIEWS {
                    check(100 + seed as u64, batch, m, k, n, va, vb, seed % 2 == 1);
                }
            }
        }
    }
    // through gemm / par_gemm directly, accumulating onto c, with c's rows strided
    let a: Vec<f64> = (0..30).map(|v| v as f64 * 0.5).collect();
    let b: Vec<f64> = (0..30).map(|v| 1.0 - v as f64 * 0.25).collect();
    let mut c = vec![2.0; 3];
    gemm(1, 10, 3, Mat::row_major(&a[..10], 10), Mat::row_major(&b, 3), &mut c, true).unwrap();
    for (j, &cj) in c.iter().enumerate() {
        let want = 2.0 + (0..10).map(|p| a[p] * b[p * 3 + j]).sum::<f64>();
        assert!((cj - want).abs() < 1e-12, "m == 1 column {j}: {cj} vs {want}");
    }
    let mut c = vec![2.0; 3];
    par_gemm(3, 10, 1, Mat::row_major(&a, 10), Mat::row_major(&b[..10], 1), &mut c, true).unwrap();
    for (i, &ci) in c.iter().enumerate() {
        let want = 2.0 + (0..10).map(|p| a[i * 10 + p] * b[p]).sum::<f64>();
        assert!((ci - want).abs() < 1e-12, "n == 1 row {i}: {ci} vs {want}");
    }
}

#[test]
fn matmul_errors_name_the_op() {
    let l = Layout::contiguous(&[2, 2]);
    let i = CpuStorage::I64(vec![1; 4].into());
    let e = CpuBackend.matmul(&i, &l, &i, &l).unwrap_err();
    assert!(matches!(e, Error::DType { op: "matmul", got: DType::I64, .. }), "{e}");
    assert!(e.to_string().starts_with("matmul:"), "{e}");
    let f = CpuStorage::F32(vec![1.0; 4].into());
    let d = CpuStorage::F64(vec![1.0; 4].into());
    let e = CpuBackend.matmul(&f, &l, &d, &l).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "matmul", lhs: DType::F32, rhs: DType::F64 }), "{e}");
    let e = CpuBackend.matmul(&f, &l, &f, &Layout::contiguous(&[4, 1])).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "matmul", .. }), "{e}");
    let e = CpuBackend.matmul(&f, &Layout::contiguous(&[4]), &f, &Layout::contiguous(&[4])).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "matmul", .. }), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn matmul_on_random_shapes(seed in 0u64..1000, m in 0usize..9, k in 0usize..9, n in 0usize..9,
                               nb in 0usize..3, va in 0usize..4, vb in 0usize..4, f32: bool) {
        let batch: Vec<usize> = (0..nb).map(|i| (seed as usize + i) % 3 + 1).collect();
        check(seed, &batch, m, k, n, VIEWS[va], VIEWS[vb], f32);
    }
}
