//! Element-wise unary kernels (f32, f64; a few on i64).
use super::map_strided;
use crate::{CpuStorage, DType, Error, Layout, Result, UnaryOp};

/// The error function, correctly rounded to within about 1 ulp in f64 (FreeBSD's msun
/// algorithm, through the `libm` crate): PyTorch's float64 `erf` and exact GELU need it.
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

fn float_fn(op: UnaryOp) -> fn(f64, f64, f64) -> f64 {
    // (x, p0, p1) with the op's scalar parameters
    match op {
        UnaryOp::Neg => |x, _, _| -x,
        UnaryOp::Abs => |x, _, _| x.abs(),
        UnaryOp::Exp => |x, _, _| x.exp(),
        UnaryOp::Log => |x, _, _| x.ln(),
        UnaryOp::Sqrt => |x, _, _| x.sqrt(),
        UnaryOp::Rsqrt => |x, _, _| 1.0 / x.sqrt(),
        UnaryOp::Recip => |x, _, _| 1.0 / x,
        UnaryOp::Tanh => |x, _, _| x.tanh(),
        UnaryOp::Sigmoid => |x, _, _| 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Relu => |x, _, _| if x > 0.0 { x } else { 0.0 },
        UnaryOp::Gelu => |x, _, _| 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2)),
        UnaryOp::GeluGrad => {
            |x, _, _| 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
        }
        UnaryOp::Erf => |x, _, _| erf(x),
        UnaryOp::Sin => |x, _, _| x.sin(),
        UnaryOp::Cos => |x, _, _| x.cos(),
        UnaryOp::Sign => |x, _, _| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        },
        UnaryOp::Step => |x, _, _| if x > 0.0 { 1.0 } else { 0.0 },
        UnaryOp::Powf(_) => |x, p, _| x.powf(p),
        UnaryOp::Clamp(_, _) => |x, lo, hi| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        },
        UnaryOp::InRange(_, _) => |x, lo, hi| if x >= lo && x <= hi { 1.0 } else { 0.0 },
        UnaryOp::Affine(_, _) => |x, m, a| x * m + a,
    }
}

fn params(op: UnaryOp) -> (f64, f64) {
    match op {
        UnaryOp::Powf(p) => (p, 0.0),
        UnaryOp::Clamp(a, b) | UnaryOp::InRange(a, b) | UnaryOp::Affine(a, b) => (a, b),
        _ => (0.0, 0.0),
    }
}

/// `op(x)` over the view `l`.
pub fn unary(op: UnaryOp, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    let (p0, p1) = params(op);
    // f32 kernels that matter for speed get their own f32 arithmetic; the rest go through f64.
    Ok(match x {
        CpuStorage::F32(v) => CpuStorage::F32(
            match op {
                UnaryOp::Neg => map_strided(v, l, |x| -x),
                UnaryOp::Exp => map_strided(v, l, f32::exp),
                UnaryOp::Relu => map_strided(v, l, |x| if x > 0.0 { x } else { 0.0 }),
                UnaryOp::Step => map_strided(v, l, |x| if x > 0.0 { 1.0 } else { 0.0 }),
                UnaryOp::Sqrt => map_strided(v, l, f32::sqrt),
                UnaryOp::Affine(m, a) => {
                    let (m, a) = (m as f32, a as f32);
                    map_strided(v, l, move |x| x * m + a)
                }
                _ => {
                    let f = float_fn(op);
                    map_strided(v, l, move |x| f(x as f64, p0, p1) as f32)
                }
            }?
            .into(),
        ),
        CpuStorage::F64(v) => {
            let f = float_fn(op);
            CpuStorage::F64(map_strided(v, l, move |x| f(x, p0, p1))?.into())
        }
        CpuStorage::I64(v) => CpuStorage::I64(
            match op {
                UnaryOp::Neg => map_strided(v, l, |x: i64| x.wrapping_neg()),
                UnaryOp::Abs => map_strided(v, l, |x: i64| x.wrapping_abs()),
                UnaryOp::Sign => map_strided(v, l, |x: i64| x.signum()),
                UnaryOp::Affine(m, a) if m.fract() == 0.0 && a.fract() == 0.0 => {
                    let (m, a) = (m as i64, a as i64);
                    map_strided(v, l, move |x: i64| x.wrapping_mul(m).wrapping_add(a))
                }
                _ => return Err(Error::DType { op: "unary", expected: "a float dtype for this op", got: DType::I64 }),
            }?
            .into(),
        ),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => return Err(super::half_in_kernel("unary")),
    })
}
