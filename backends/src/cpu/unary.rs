//! Element-wise unary kernels (f32, f64; a few on i64).
//!
//! Each op is its own closure, so `map_strided` is monomorphised per op and the loop inlines
//! the element function (f32's from [`super::vmath`], vectorised; f64's from `std`/libm):
//! no function pointer is called per element, and f32 never detours through f64.
use super::map_strided;
use super::num::Float;
use crate::{CpuStorage, DType, Error, Layout, Result, UnaryOp};

/// The error function, correctly rounded to within about 1 ulp in f64 (FreeBSD's msun
/// algorithm, through the `libm` crate): PyTorch's float64 `erf` and exact GELU need it.
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

fn float_unary<T: Float>(op: UnaryOp, v: &[T], l: &Layout) -> Result<Vec<T>> {
    let (zero, one) = (T::ZERO, T::ONE);
    match op {
        UnaryOp::Neg => map_strided(v, l, |x: T| -x),
        UnaryOp::Abs => map_strided(v, l, T::abs),
        UnaryOp::Exp => map_strided(v, l, T::exp),
        UnaryOp::Log => map_strided(v, l, T::ln),
        UnaryOp::Sqrt => map_strided(v, l, T::sqrt),
        UnaryOp::Rsqrt => map_strided(v, l, move |x: T| one / x.sqrt()),
        UnaryOp::Recip => map_strided(v, l, move |x: T| one / x),
        UnaryOp::Tanh => map_strided(v, l, T::tanh),
        UnaryOp::Sigmoid => map_strided(v, l, T::sigmoid),
        UnaryOp::Relu => map_strided(v, l, move |x: T| if x > zero { x } else { zero }),
        UnaryOp::Gelu => map_strided(v, l, T::gelu),
        UnaryOp::GeluGrad => map_strided(v, l, T::gelu_grad),
        UnaryOp::Erf => map_strided(v, l, T::erf),
        UnaryOp::Sin => map_strided(v, l, T::sin),
        UnaryOp::Cos => map_strided(v, l, T::cos),
        UnaryOp::Sign => map_strided(v, l, move |x: T| {
            if x > zero {
                one
            } else if x < zero {
                -one
            } else {
                zero
            }
        }),
        UnaryOp::Step => map_strided(v, l, move |x: T| if x > zero { one } else { zero }),
        UnaryOp::Powf(p) => {
            let p = T::from_f64(p);
            map_strided(v, l, move |x: T| x.powf(p))
        }
        // Bounds compare in f64, as given (an f32 bound would round toward or away from x).
        UnaryOp::Clamp(lo, hi) => {
            let (tlo, thi) = (T::from_f64(lo), T::from_f64(hi));
            map_strided(v, l, move |x: T| {
                let xd = x.to_f64();
                if xd < lo {
                    tlo
                } else if xd > hi {
                    thi
                } else {
                    x
                }
            })
        }
        UnaryOp::InRange(lo, hi) => map_strided(v, l, move |x: T| {
            let xd = x.to_f64();
            if xd >= lo && xd <= hi {
                one
            } else {
                zero
            }
        }),
        UnaryOp::Affine(m, a) => {
            let (m, a) = (T::from_f64(m), T::from_f64(a));
            map_strided(v, l, move |x: T| T::add(x * m, a))
        }
    }
}

/// `op(x)` over the view `l`.
pub fn unary(op: UnaryOp, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    Ok(match x {
        CpuStorage::F32(v) => CpuStorage::F32(float_unary(op, v, l)?.into()),
        CpuStorage::F64(v) => CpuStorage::F64(float_unary(op, v, l)?.into()),
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
