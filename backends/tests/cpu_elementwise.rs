//! Element-wise kernels of the CPU backend (unary, binary, where, cast, copy, fill, rand)
//! against naive references, on random shapes (size-0 and size-1 dims included) and strided
//! views (transposed, narrowed, broadcast), f32 and f64, below and above the parallel
//! threshold; and the i64 paths and errors.
mod common;

use common::*;
use proptest::prelude::*;
use stategrad_backends::{
    cpu::{erf, CpuBackend, PAR_THRESHOLD},
    BinaryOp, CpuStorage, DType, Distribution, Error, Kernels, Layout, UnaryOp,
};

type Unary = (UnaryOp, fn(f64) -> f64);
type Binary = (BinaryOp, fn(f64, f64) -> f64);

const UNARY: [Unary; 17] = [
    (UnaryOp::Neg, |x| -x),
    (UnaryOp::Abs, f64::abs),
    (UnaryOp::Exp, f64::exp),
    (UnaryOp::Log, |x| x.abs().ln()),
    (UnaryOp::Sqrt, |x| x.abs().sqrt()),
    (UnaryOp::Rsqrt, |x| 1.0 / x.abs().sqrt()),
    (UnaryOp::Recip, |x| 1.0 / x),
    (UnaryOp::Tanh, f64::tanh),
    (UnaryOp::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
    (UnaryOp::Relu, |x| x.max(0.0)),
    (UnaryOp::Sin, f64::sin),
    (UnaryOp::Cos, f64::cos),
    (UnaryOp::Sign, |x| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    }),
    (UnaryOp::Step, |x| if x > 0.0 { 1.0 } else { 0.0 }),
    (UnaryOp::Powf(3.0), |x| x.powi(3)),
    (UnaryOp::Clamp(-0.3, 0.4), |x| x.clamp(-0.3, 0.4)),
    (UnaryOp::Affine(-2.5, 0.25), |x| -2.5 * x + 0.25),
];

fn needs_positive(op: UnaryOp) -> bool {
    matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt)
}

fn check_unary(shape: &[usize], view: View, f32: bool, seed: u64) {
    let mut rng = Rng(seed);
    let (data, l) = make_view(&mut rng, shape, view);
    for (op, reference) in UNARY {
        let data: Vec<f64> =
            if needs_positive(op) { data.iter().map(|x| x.abs() + 0.1).collect() } else { data.clone() };
        let want: Vec<f64> = indices(shape).iter().map(|i| reference(data[at(&l, i)])).collect();
        let got = CpuBackend.unary(op, &storage(&data, f32), &l).unwrap();
        assert_eq!(got.dtype(), if f32 { DType::F32 } else { DType::F64 });
        assert_close(&got, &want, tol(f32) * 10.0, &format!("{op:?} {shape:?} {view:?} f32={f32}"));
    }
}

const BINARY: [Binary; 11] = [
    (BinaryOp::Add, |a, b| a + b),
    (BinaryOp::Sub, |a, b| a - b),
    (BinaryOp::Mul, |a, b| a * b),
    (BinaryOp::Div, |a, b| a / b),
    (BinaryOp::Maximum, f64::max),
    (BinaryOp::Minimum, f64::min),
    (BinaryOp::Eq, |a, b| (a == b) as u8 as f64),
    (BinaryOp::Gt, |a, b| (a > b) as u8 as f64),
    (BinaryOp::Ge, |a, b| (a >= b) as u8 as f64),
    (BinaryOp::Lt, |a, b| (a < b) as u8 as f64),
    (BinaryOp::Le, |a, b| (a <= b) as u8 as f64),
];

fn check_binary(shape: &[usize], va: View, vb: View, f32: bool, seed: u64) {
    let mut rng = Rng(seed);
    let (da, la) = make_view(&mut rng, shape, va);
    let (mut db, lb) = make_view(&mut rng, shape, vb);
    // a few exact ties so the comparisons see equal operands
    for (i, idx) in indices(shape).iter().enumerate().step_by(3) {
        if i % 2 == 0 && va as u8 == vb as u8 {
            db[at(&lb, idx)] = da[at(&la, idx)];
        }
    }
    let (sa, sb) = (storage(&da, f32), storage(&db, f32));
    // compare against the values as stored (f32-rounded when f32)
    let (ra, rb) = (sa.to_f64_vec(), sb.to_f64_vec());
    for (op, reference) in BINARY {
        let want: Vec<f64> = indices(shape).iter().map(|i| reference(ra[at(&la, i)], rb[at(&lb, i)])).collect();
        let got = CpuBackend.binary(op, &sa, &la, &sb, &lb).unwrap();
        assert_close(&got, &want, tol(f32), &format!("{op:?} {shape:?} {va:?}/{vb:?} f32={f32}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn unary_matches_naive(shape in prop::collection::vec(0usize..6, 0..4), view in 0usize..4, f32 in any::<bool>(), seed in any::<u64>()) {
        check_unary(&shape, VIEWS[view], f32, seed);
    }

    #[test]
    fn binary_matches_naive(shape in prop::collection::vec(0usize..6, 0..4), va in 0usize..4, vb in 0usize..4, f32 in any::<bool>(), seed in any::<u64>()) {
        check_binary(&shape, VIEWS[va], VIEWS[vb], f32, seed);
    }
}

#[test]
fn large_views_take_the_parallel_path_and_agree() {
    // above PAR_THRESHOLD, rows split across rayon tasks
    let shape = [3, PAR_THRESHOLD / 64 + 7, 67];
    for (k, view) in VIEWS.into_iter().enumerate() {
        check_unary(&shape, view, k % 2 == 0, 100 + k as u64);
        check_binary(&shape, view, VIEWS[(k + 1) % 4], k % 2 == 1, 200 + k as u64);
    }
}

#[test]
#[allow(clippy::excessive_precision)] // reference values as computed, to 25 digits
fn gelu_and_erf_match_their_definitions() {
    // erf against 25-digit reference values (mpmath at 40 digits), to 1e-15 relative: every
    // interval of the algorithm (tiny, |x| < 0.84375, < 1.25, < 1/0.35, < 6, >= 6)
    let reference = [
        (0.0, 0.0),
        (1e-10, 1.128379167095512573892398e-10),
        (0.1, 0.1124629160182848922032751),
        (0.5, 0.5204998778130465376827467),
        (-0.5, -0.5204998778130465376827467),
        (0.84375, 0.7672256612323416334589782),
        (1.0, 0.8427007929497148693412206),
        (1.25, 0.9229001282564582301365235),
        (2.0, 0.9953222650189527341620693),
        (-2.5, -0.9995930479825550410604358),
        (3.0, 0.9999779095030014145586272),
        (4.5, 0.9999999998033839558457113),
        (6.0, 0.9999999999999999784802633),
    ];
    for (x, e) in reference {
        assert!((erf(x) - e).abs() <= 1e-15 * e.abs(), "erf({x}) = {:e} vs {e:e}", erf(x));
    }
    // gelu(x) = x Phi(x); its derivative by central differences
    let xs: Vec<f64> = (-30..=30).map(|i| i as f64 / 10.0).collect();
    let l = Layout::contiguous(&[xs.len()]);
    let gelu = CpuBackend.unary(UnaryOp::Gelu, &CpuStorage::F64(xs.clone().into()), &l).unwrap().to_f64_vec();
    let grad = CpuBackend.unary(UnaryOp::GeluGrad, &CpuStorage::F64(xs.clone().into()), &l).unwrap().to_f64_vec();
    for (i, &x) in xs.iter().enumerate() {
        assert!((gelu[i] - 0.5 * x * (1.0 + erf(x / 2f64.sqrt()))).abs() < 1e-12);
        let h = 1e-5;
        let g = |x: f64| 0.5 * x * (1.0 + erf(x / 2f64.sqrt()));
        assert!((grad[i] - (g(x + h) - g(x - h)) / (2.0 * h)).abs() < 1e-5, "gelu' at {x}");
    }
}

#[test]
fn where_cast_copy_fill() {
    let mut rng = Rng(7);
    let shape = [4, 5];
    let (c, lc) = make_view(&mut rng, &shape, View::Transposed);
    let (a, la) = make_view(&mut rng, &shape, View::Broadcast);
    let (b, lb) = make_view(&mut rng, &shape, View::Narrowed);
    let cond = CpuStorage::I64(c.iter().map(|&v| (v > 0.0) as i64).collect());
    let got = CpuBackend.where_cond(&cond, &lc, &storage(&a, false), &la, &storage(&b, false), &lb).unwrap();
    let want: Vec<f64> =
        indices(&shape).iter().map(|i| if c[at(&lc, i)] > 0.0 { a[at(&la, i)] } else { b[at(&lb, i)] }).collect();
    assert_close(&got, &want, 0.0, "where");

    let copied = CpuBackend.copy_strided(&storage(&b, true), &lb).unwrap();
    let want: Vec<f64> = indices(&shape).iter().map(|i| b[at(&lb, i)] as f32 as f64).collect();
    assert_close(&copied, &want, 0.0, "copy_strided");

    let x = CpuStorage::F64(vec![1.7, -1.7, 2.5, -0.2].into());
    let l = Layout::contiguous(&[4]);
    assert_eq!(CpuBackend.cast(&x, &l, DType::I64).unwrap(), CpuStorage::I64(vec![1, -1, 2, 0].into()));
    assert_eq!(CpuBackend.cast(&x, &l, DType::F32).unwrap(), CpuStorage::F32(vec![1.7, -1.7, 2.5, -0.2].into()));
    let i = CpuStorage::I64(vec![3, -4].into());
    assert_eq!(
        CpuBackend.cast(&i, &Layout::contiguous(&[2]), DType::F64).unwrap(),
        CpuStorage::F64(vec![3.0, -4.0].into())
    );
    assert_eq!(CpuBackend.fill(3, DType::I64, 2.0).unwrap(), CpuStorage::I64(vec![2, 2, 2].into()));
}

#[test]
fn permuted_copies_whose_rows_lie_far_apart_are_walked_in_tiles_and_agree() {
    // Views whose innermost outer dim strides past a page take the tiled walk: split along
    // the output's outermost dim ([i, b, j, d] -> [b, j, i, d], CapsNet's predictions), along
    // blocks of the smallest-stride dim when it is outermost (the gradient's way back, 37
    // indices: a short last block), strided rows (a full reversal), an offset window, f32/f64.
    let mut rng = Rng(7);
    let cases: [(&[usize], &[usize]); 4] = [
        (&[70, 8, 10, 16], &[1, 2, 0, 3]),
        (&[8, 5, 37, 32], &[2, 0, 1, 3]),
        (&[9, 8, 1030, 3], &[3, 2, 1, 0]),
        (&[3, 40, 2048], &[1, 0, 2]),
    ];
    for (k, (shape, perm)) in cases.into_iter().enumerate() {
        let base = Layout::contiguous(shape);
        let data = rng.vec(base.numel() + 5);
        // a window at offset 5 of the buffer, then permuted
        let l = Layout::new(shape, base.strides(), 5).unwrap().permute(perm).unwrap();
        for f32 in [true, false] {
            let x = storage(&data, f32);
            let stored = x.to_f64_vec();
            let want: Vec<f64> = l.strided_index().map(|i| stored[i]).collect();
            let got = CpuBackend.copy_strided(&x, &l).unwrap();
            assert_close(&got, &want, 0.0, &format!("copy case {k} f32={f32}"));
            let neg: Vec<f64> = want.iter().map(|v| -v).collect();
            assert_close(&CpuBackend.unary(UnaryOp::Neg, &x, &l).unwrap(), &neg, 0.0, &format!("neg case {k}"));
        }
    }
}

#[test]
fn integer_paths_and_dtype_errors() {
    let l = Layout::contiguous(&[3]);
    let a = CpuStorage::I64(vec![1, -5, 7].into());
    let b = CpuStorage::I64(vec![2, -5, 3].into());
    assert_eq!(CpuBackend.binary(BinaryOp::Add, &a, &l, &b, &l).unwrap(), CpuStorage::I64(vec![3, -10, 10].into()));
    assert_eq!(CpuBackend.binary(BinaryOp::Eq, &a, &l, &b, &l).unwrap(), CpuStorage::I64(vec![0, 1, 0].into()));
    assert_eq!(CpuBackend.unary(UnaryOp::Abs, &a, &l).unwrap(), CpuStorage::I64(vec![1, 5, 7].into()));
    assert!(matches!(CpuBackend.unary(UnaryOp::Exp, &a, &l), Err(Error::DType { .. })));
    assert!(matches!(CpuBackend.binary(BinaryOp::Div, &a, &l, &b, &l), Err(Error::DType { .. })));
    let f = CpuStorage::F32(vec![1.0; 3].into());
    let e = CpuBackend.binary(BinaryOp::Add, &a, &l, &f, &l).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { .. }) && e.to_string().contains("int64"), "{e}");
    assert!(matches!(
        CpuBackend.rand(3, DType::I64, Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1),
        Err(Error::DType { .. })
    ));
}

#[test]
fn rand_is_reproducible_and_thread_count_independent() {
    let dist = Distribution::Normal { mean: 1.0, std: 2.0 };
    let n = PAR_THRESHOLD * 3 + 5;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let a = one.install(|| CpuBackend.rand(n, DType::F64, dist, 42).unwrap());
    let b = CpuBackend.rand(n, DType::F64, dist, 42).unwrap();
    assert_eq!(a, b);
    assert_ne!(b, CpuBackend.rand(n, DType::F64, dist, 43).unwrap());
    let v = b.to_f64_vec();
    let mean = v.iter().sum::<f64>() / n as f64;
    assert!((mean - 1.0).abs() < 0.05, "{mean}");
}
