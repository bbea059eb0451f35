//! Test helpers shared by the op tests and the integration tests (not part of the API).
//!
//! The `check_*` helpers run [`crate::gradcheck`] on the shapes every op must handle:
//! contiguous, broadcast (stride-0 leaves and broadcasting operands) and non-contiguous
//! (transposed, permuted, sliced) inputs.
#![allow(missing_docs)]
use stategrad_backends::{Conv2dParams, Distribution};

use crate::{gradcheck, gradgradcheck, DType, Device, Result, Tensor};

pub fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, Device::Cpu).unwrap()
}

pub fn t32(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, Device::Cpu).unwrap()
}

/// Seeded uniform f64 values on `[lo, hi)`.
pub fn rand64(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand_seeded(shape, Distribution::Uniform { lo, hi }, DType::F64, Device::Cpu, seed).unwrap()
}

/// Uniform values on `[-2, 2)` at least 0.1 away from each of `kinks`.
pub fn rand64_away_from(shape: &[usize], kinks: &[f64], seed: u64) -> Tensor {
    let v: Vec<f64> = rand64(shape, -2.0, 2.0, seed)
        .to_vec::<f64>()
        .unwrap()
        .into_iter()
        .map(|x| match kinks.iter().find(|&&k| (x - k).abs() < 0.1) {
            Some(&k) => k + if x >= k { 0.1 } else { -0.1 } + (x - k),
            None => x,
        })
        .collect();
    t64(&v, shape)
}

#[track_caller]
pub fn assert_close(t: &Tensor, expected: &[f64], tol: f64) {
    let got = t.to_f64_vec().unwrap();
    assert_eq!(got.len(), expected.len(), "length: got {got:?}, expected {expected:?}");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= tol * (1.0 + e.abs()), "element {i}: got {g}, expected {e} (tol {tol}); all: {got:?}");
    }
}

fn leaf(t: Tensor) -> Tensor {
    t.requires_grad(true).unwrap()
}

#[track_caller]
pub fn check_fn(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    if let Err(e) = gradcheck(f, inputs) {
        panic!("{e}");
    }
}

#[track_caller]
pub fn check_fn_gradgrad(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    if let Err(e) = gradgradcheck(f, inputs) {
        panic!("{e}");
    }
}

/// The unary-op inputs: contiguous, transposed, sliced, and a broadcast (stride-0) leaf.
fn unary_inputs(values: impl Fn(&[usize], u64) -> Tensor) -> Vec<Tensor> {
    vec![
        leaf(values(&[3, 4], 1)),
        leaf(values(&[4, 3], 2).t().unwrap()),
        leaf(values(&[3, 6], 3).narrow(1, 1, 4).unwrap()),
        leaf(values(&[1, 4], 4).expand(&[3, 4]).unwrap()),
    ]
}

#[track_caller]
pub fn check_unary(f: impl Fn(&Tensor) -> Result<Tensor>, lo: f64, hi: f64) {
    for x in unary_inputs(|s, seed| rand64(s, lo, hi, seed)) {
        check_fn(|x| f(&x[0]), &[x]);
    }
    let x = leaf(rand64(&[2, 3], lo, hi, 9));
    check_fn_gradgrad(|x| f(&x[0]), &[x]);
}

#[track_caller]
pub fn check_unary_away_from(f: impl Fn(&Tensor) -> Result<Tensor>, kinks: &[f64]) {
    for x in unary_inputs(|s, seed| rand64_away_from(s, kinks, seed)) {
        check_fn(|x| f(&x[0]), &[x]);
    }
}

fn binary_cases(ra: (f64, f64), rb: (f64, f64)) -> Vec<(Tensor, Tensor)> {
    let a = |s: &[usize], seed| rand64(s, ra.0, ra.1, seed);
    let b = |s: &[usize], seed| rand64(s, rb.0, rb.1, seed);
    vec![
        (leaf(a(&[4, 3], 1)), leaf(b(&[4, 3], 2))),
        (leaf(a(&[4, 3], 3)), leaf(b(&[3], 4))),
        (leaf(a(&[4, 1], 5)), leaf(b(&[1, 3], 6))),
        (leaf(a(&[3, 4], 7).t().unwrap()), leaf(b(&[1, 3], 8).expand(&[4, 3]).unwrap())),
        (leaf(a(&[4, 5], 9).narrow(1, 2, 3).unwrap()), b(&[4, 3], 10)), // b untracked
    ]
}

#[track_caller]
pub fn check_binary(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>, ra: (f64, f64), rb: (f64, f64)) {
    for (a, b) in binary_cases(ra, rb) {
        check_fn(|x| f(&x[0], &x[1]), &[a, b]);
    }
}

#[track_caller]
pub fn check_binary_gradgrad(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>, ra: (f64, f64), rb: (f64, f64)) {
    for (a, b) in binary_cases(ra, rb).into_iter().take(2) {
        check_fn_gradgrad(|x| f(&x[0], &x[1]), &[a, b]);
    }
}

fn reduction_inputs() -> Vec<Tensor> {
    vec![leaf(rand64(&[3, 4, 5], -2.0, 2.0, 21)), leaf(rand64(&[5, 3, 4], -2.0, 2.0, 22).permute(&[1, 2, 0]).unwrap())]
}

#[track_caller]
pub fn check_reduction(f: impl Fn(&Tensor) -> Result<Tensor>) {
    for x in reduction_inputs() {
        check_fn(|x| f(&x[0]), &[x]);
    }
}

#[track_caller]
pub fn check_reduction_gradgrad(f: impl Fn(&Tensor) -> Result<Tensor>) {
    let x = leaf(rand64(&[2, 3, 4], -2.0, 2.0, 23));
    check_fn_gradgrad(|x| f(&x[0]), &[x]);
}

/// View and index ops on a `[4, 3, 3]` input, contiguous and permuted.
#[track_caller]
pub fn check_view(f: impl Fn(&Tensor) -> Result<Tensor>) {
    let inputs =
        [leaf(rand64(&[4, 3, 3], -1.0, 1.0, 31)), leaf(rand64(&[3, 3, 4], -1.0, 1.0, 32).permute(&[2, 0, 1]).unwrap())];
    for x in inputs {
        check_fn(|x| f(&x[0]), &[x]);
    }
}

fn matmul_cases() -> Vec<(Tensor, Tensor)> {
    vec![
        (leaf(rand64(&[3, 4], -1.0, 1.0, 41)), leaf(rand64(&[4, 2], -1.0, 1.0, 42))),
        (leaf(rand64(&[4, 3], -1.0, 1.0, 43).t().unwrap()), leaf(rand64(&[2, 4], -1.0, 1.0, 44).t().unwrap())),
        (leaf(rand64(&[2, 3, 4], -1.0, 1.0, 45)), leaf(rand64(&[4, 5], -1.0, 1.0, 46))),
        (leaf(rand64(&[2, 1, 3, 4], -1.0, 1.0, 47)), leaf(rand64(&[3, 4, 2], -1.0, 1.0, 48))),
        (leaf(rand64(&[4], -1.0, 1.0, 49)), leaf(rand64(&[2, 4, 3], -1.0, 1.0, 50))),
    ]
}

#[track_caller]
pub fn check_matmul(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) {
    for (a, b) in matmul_cases() {
        check_fn(|x| f(&x[0], &x[1]), &[a, b]);
    }
}

#[track_caller]
pub fn check_matmul_gradgrad(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) {
    for (a, b) in matmul_cases().into_iter().take(3) {
        check_fn_gradgrad(|x| f(&x[0], &x[1]), &[a, b]);
    }
}

/// Convolution hyper-parameters every conv test covers.
pub fn conv_cases() -> Vec<Conv2dParams> {
    vec![
        Conv2dParams::default(),
        Conv2dParams { stride: (2, 1), padding: (1, 0), ..Default::default() },
        Conv2dParams { dilation: (2, 1), padding: (0, 1), ..Default::default() },
        Conv2dParams { groups: 2, stride: (1, 2), ..Default::default() },
    ]
}

/// gradcheck (or gradgradcheck) of conv2d with bias; the input is a permuted view.
#[track_caller]
pub fn check_conv(p: Conv2dParams, second_order: bool) {
    let x = leaf(rand64(&[2, 6, 5, 4], -1.0, 1.0, 61).permute(&[0, 3, 1, 2]).unwrap()); // [2, 4, 6, 5]
    let w = leaf(rand64(&[4, 4 / p.groups, 3, 2], -1.0, 1.0, 62));
    let b = leaf(rand64(&[4], -1.0, 1.0, 63));
    let f = move |x: &[Tensor]| x[0].conv2d(&x[1], Some(&x[2]), p);
    if second_order {
        check_fn_gradgrad(f, &[x, w, b]);
    } else {
        check_fn(f, &[x, w, b]);
    }
}
