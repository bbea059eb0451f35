//! Index ops of the CPU backend (index_select, gather, scatter_add, cat) against naive
//! multi-index references, on strided views, f32/f64/i64, and every error path.
mod common;

use common::Rng;
use common::*;
use proptest::prelude::*;
use stategrad_backends::{cpu::CpuBackend, CpuStorage, DType, Error, Kernels, Layout};

fn idx_storage(rng: &mut Rng, n: usize, size: usize) -> CpuStorage {
    CpuStorage::I64((0..n).map(|_| rng.below(size.max(1)) as i64).collect::<Vec<_>>().into())
}

fn check_index_ops(seed: u64, shape: &[usize], dim: usize, view: View, f32: bool) {
    let mut rng = Rng(seed);
    let (data, l) = make_view(&mut rng, shape, view);
    let x = storage(&data, f32);
    let data = x.to_f64_vec();
    let size = shape[dim];
    let what = format!("{shape:?} dim {dim} {view:?} f32={f32}");
    if size == 0 {
        return;
    }
    // index_select, with a strided (reversed through narrow of a bigger buffer) index view.
    let m = rng.below(5);
    let ibuf = idx_storage(&mut rng, m + 2, size);
    let li = Layout::contiguous(&[m + 2]).narrow(0, 1, m).unwrap();
    let ivals = ibuf.to_f64_vec();
    let got = CpuBackend.index_select(&x, &l, dim, &ibuf, &li).unwrap();
    let mut oshape = shape.to_vec();
    oshape[dim] = m;
    let want: Vec<f64> = indices(&oshape)
        .into_iter()
        .map(|mut p| {
            p[dim] = ivals[1 + p[dim]] as usize;
            data[at(&l, &p)]
        })
        .collect();
    assert_close(&got, &want, 0.0, &format!("index_select {what}"));

    // gather with an index of the output's shape.
    let gi = idx_storage(&mut rng, oshape.iter().product(), size);
    let lg = Layout::contiguous(&oshape);
    let gv = gi.to_f64_vec();
    let got = CpuBackend.gather(&x, &l, dim, &gi, &lg).unwrap();
    let want: Vec<f64> = indices(&oshape)
        .into_iter()
        .enumerate()
        .map(|(k, mut p)| {
            p[dim] = gv[k] as usize;
            data[at(&l, &p)]
        })
        .collect();
    assert_close(&got, &want, 0.0, &format!("gather {what}"));

    // scatter_add of a src of the index's shape into x (a copy).
    let src = storage(&rng.vec(oshape.iter().product()), f32);
    let sv = src.to_f64_vec();
    let got = CpuBackend.scatter_add(&x, &l, dim, &gi, &lg, &src, &lg).unwrap();
    let mut want: Vec<f64> = indices(shape).iter().map(|p| data[at(&l, p)]).collect();
    let dl = Layout::contiguous(shape);
    for (k, mut p) in indices(&oshape).into_iter().enumerate() {
        p[dim] = gv[k] as usize;
        want[at(&dl, &p)] += sv[k];
    }
    assert_close(&got, &want, tol(f32), &format!("scatter_add {what}"));

    // cat of x (strided), a contiguous part and an empty part.
    let mut s2 = shape.to_vec();
    s2[dim] = 2;
    let mut s0 = shape.to_vec();
    s0[dim] = 0;
    let y = storage(&rng.vec(s2.iter().product()), f32);
    let yv = y.to_f64_vec();
    let ly = Layout::contiguous(&s2);
    let z = storage(&[], f32);
    let lz = Layout::contiguous(&s0);
    let got = CpuBackend.cat(&[(&x, &l), (&z, &lz), (&y, &ly)], dim).unwrap();
    let mut cshape = shape.to_vec();
    cshape[dim] += 2;
    let want: Vec<f64> = indices(&cshape)
        .into_iter()
        .map(|mut p| {
            if p[dim] < size {
                data[at(&l, &p)]
            } else {
                p[dim] -= size;
                yv[at(&ly, &p)]
            }
        })
        .collect();
    assert_close(&got, &want, 0.0, &format!("cat {what}"));
}

#[test]
fn index_ops_match_naive() {
    let cases: &[(&[usize], usize)] =
        &[(&[5], 0), (&[3, 4], 0), (&[3, 4], 1), (&[2, 3, 4], 1), (&[2, 0, 3], 2), (&[1, 1], 1), (&[4, 1, 3], 0)];
    for (seed, &(shape, dim)) in cases.iter().enumerate() {
        for view in VIEWS {
            for f32 in [true, false] {
                check_index_ops(seed as u64, shape, dim, view, f32);
            }
        }
    }
    // Large enough to take the parallel paths.
    check_index_ops(11, &[64, 40, 30], 1, View::Contiguous, true);
    check_index_ops(12, &[64, 40, 30], 2, View::Transposed, false);
}

#[test]
fn integer_index_ops() {
    let x = CpuStorage::I64(vec![10, 20, 30, 40, 50, 60].into());
    let l = Layout::contiguous(&[2, 3]);
    let i = CpuStorage::I64(vec![2, 0].into());
    let got = CpuBackend.index_select(&x, &l, 1, &i, &Layout::contiguous(&[2])).unwrap();
    assert_eq!(got, CpuStorage::I64(vec![30, 10, 60, 40].into()));
    let src = CpuStorage::I64(vec![1, 1, 1, 1].into());
    let li = Layout::contiguous(&[2, 2]);
    let i = CpuStorage::I64(vec![1, 1, 0, 2].into());
    let got = CpuBackend.scatter_add(&x, &l, 1, &i, &li, &src, &li).unwrap();
    assert_eq!(got, CpuStorage::I64(vec![10, 22, 30, 41, 50, 61].into()), "repeated indices accumulate");
}

#[test]
fn index_errors_name_the_op_and_index() {
    let x = CpuStorage::F32(vec![0.0; 6].into());
    let l = Layout::contiguous(&[2, 3]);
    let l1 = Layout::contiguous(&[1]);
    for bad in [3i64, -1] {
        let i = CpuStorage::I64(vec![bad].into());
        let e = CpuBackend.index_select(&x, &l, 1, &i, &l1).unwrap_err();
        assert!(matches!(e, Error::Index { op: "index_select", index, dim: 1, size: 3 } if index == bad), "{e}");
        assert_eq!(e.to_string(), format!("index_select: index {bad} out of range for dimension 1 of size 3"));
    }
    let i = CpuStorage::I64(vec![0, 2].into());
    let li = Layout::contiguous(&[2, 1]);
    let e = CpuBackend.gather(&x, &l, 0, &i, &li).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "gather", .. }), "{e}"); // [2,1] vs [2,3] along dim 1
    let li = Layout::contiguous(&[1, 3]);
    let i = CpuStorage::I64(vec![0, 2, 1].into());
    let e = CpuBackend.gather(&x, &l, 0, &i, &li).unwrap_err();
    assert!(matches!(e, Error::Index { op: "gather", index: 2, dim: 0, size: 2 }), "{e}");
    assert!(e.to_string().starts_with("gather:"), "{e}");
    let src = CpuStorage::F32(vec![1.0; 3].into());
    let e = CpuBackend.scatter_add(&x, &l, 0, &i, &li, &src, &li).unwrap_err();
    assert!(matches!(e, Error::Index { op: "scatter_add", index: 2, dim: 0, size: 2 }), "{e}");
    let src64 = CpuStorage::F64(vec![1.0; 3].into());
    let ok = CpuStorage::I64(vec![0, 1, 1].into());
    let e = CpuBackend.scatter_add(&x, &l, 0, &ok, &li, &src64, &li).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "scatter_add", lhs: DType::F32, rhs: DType::F64 }), "{e}");
    let fi = CpuStorage::F32(vec![0.0].into());
    let e = CpuBackend.index_select(&x, &l, 0, &fi, &l1).unwrap_err();
    assert!(matches!(e, Error::DType { op: "index_select", got: DType::F32, .. }), "{e}");
    let e = CpuBackend.index_select(&x, &l, 2, &ok, &l1).unwrap_err();
    assert!(matches!(e, Error::Dim { op: "index_select", dim: 2, rank: 2 }), "{e}");
    let y = CpuStorage::F32(vec![0.0; 4].into());
    let e = CpuBackend.cat(&[(&x, &l), (&y, &Layout::contiguous(&[2, 2]))], 0).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "cat", .. }) && e.to_string().starts_with("cat:"), "{e}");
    let e = CpuBackend.cat(&[(&x, &l), (&src64, &Layout::contiguous(&[1, 3]))], 0).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "cat", .. }), "{e}");
    assert!(matches!(CpuBackend.cat(&[], 0), Err(Error::Shape { op: "cat", .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn index_ops_on_random_shapes(seed in 0u64..1000, rank in 1usize..4, dim in 0usize..3, v in 0usize..4, f32: bool) {
        let mut rng = Rng(seed);
        let shape = rng.shape(rank, 4);
        check_index_ops(seed, &shape, dim % rank, VIEWS[v], f32);
    }
}
