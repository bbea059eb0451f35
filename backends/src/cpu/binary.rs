//! Element-wise binary kernels and `where`, on operands already broadcast to one shape.
use super::num::Float;
use super::zip_strided;
use crate::{BinaryOp, CpuStorage, Error, Layout, Result};

/// `op(a, b)` for floats. Each arm passes its own closure, so `zip_strided` is
/// monomorphised per op and the contiguous loops inline and vectorise (a `fn` pointer
/// chosen at run time would cost an indirect call per element).
fn float_binary<T: Float + std::ops::Add<Output = T>>(
    op: BinaryOp,
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
) -> Result<Vec<T>> {
    match op {
        BinaryOp::Add => zip_strided(a, la, b, lb, |a, b| a + b),
        BinaryOp::Sub => zip_strided(a, la, b, lb, |a, b| a - b),
        BinaryOp::Mul => zip_strided(a, la, b, lb, |a, b| a * b),
        BinaryOp::Div => zip_strided(a, la, b, lb, |a, b| a / b),
        BinaryOp::Pow => zip_strided(a, la, b, lb, |a: T, b| a.powf(b)),
        BinaryOp::Maximum => zip_strided(a, la, b, lb, |a: T, b: T| if a.is_nan() || a > b { a } else { b }),
        BinaryOp::Minimum => zip_strided(a, la, b, lb, |a: T, b: T| if a.is_nan() || a < b { a } else { b }),
        BinaryOp::Eq => zip_strided(a, la, b, lb, |a, b| T::from_bool(a == b)),
        BinaryOp::Ne => zip_strided(a, la, b, lb, |a, b| T::from_bool(a != b)),
        BinaryOp::Gt => zip_strided(a, la, b, lb, |a, b| T::from_bool(a > b)),
        BinaryOp::Ge => zip_strided(a, la, b, lb, |a, b| T::from_bool(a >= b)),
        BinaryOp::Lt => zip_strided(a, la, b, lb, |a, b| T::from_bool(a < b)),
        BinaryOp::Le => zip_strided(a, la, b, lb, |a, b| T::from_bool(a <= b)),
    }
}

fn int_op(op: BinaryOp) -> Option<fn(i64, i64) -> i64> {
    Some(match op {
        BinaryOp::Add => |a: i64, b: i64| a.wrapping_add(b),
        BinaryOp::Sub => |a: i64, b: i64| a.wrapping_sub(b),
        BinaryOp::Mul => |a: i64, b: i64| a.wrapping_mul(b),
        BinaryOp::Maximum => |a: i64, b| a.max(b),
        BinaryOp::Minimum => |a: i64, b| a.min(b),
        BinaryOp::Eq => |a, b| (a == b) as i64,
        BinaryOp::Ne => |a, b| (a != b) as i64,
        BinaryOp::Gt => |a, b| (a > b) as i64,
        BinaryOp::Ge => |a, b| (a >= b) as i64,
        BinaryOp::Lt => |a, b| (a < b) as i64,
        BinaryOp::Le => |a, b| (a <= b) as i64,
        BinaryOp::Div | BinaryOp::Pow => return None,
    })
}

/// `op(a, b)` over two views of one shape.
pub fn binary(op: BinaryOp, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(float_binary(op, a, la, b, lb)?.into()),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(float_binary(op, a, la, b, lb)?.into()),
        (CpuStorage::I64(a), CpuStorage::I64(b)) => match int_op(op) {
            Some(f) => CpuStorage::I64(zip_strided(a, la, b, lb, f)?.into()),
            None => {
                return Err(Error::DType {
                    op: "binary",
                    expected: "a float dtype for div and pow",
                    got: crate::DType::I64,
                })
            }
        },
        _ => return Err(Error::DTypeMismatch { op: "binary", lhs: a.dtype(), rhs: b.dtype() }),
    })
}

/// `cond != 0 ? a : b` over three views of one shape.
pub fn where_cond(
    cond: &CpuStorage,
    lc: &Layout,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> Result<CpuStorage> {
    let mask: Vec<bool> = match cond {
        CpuStorage::F32(c) => super::map_strided(c, lc, |v| v != 0.0),
        CpuStorage::F64(c) => super::map_strided(c, lc, |v| v != 0.0),
        CpuStorage::I64(c) => super::map_strided(c, lc, |v| v != 0),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => return Err(super::half_in_kernel("where")),
    }?;
    fn pick<T: crate::cpu::Pooled + Sync + Default>(
        m: &[bool],
        a: &[T],
        la: &Layout,
        b: &[T],
        lb: &Layout,
    ) -> Result<Vec<T>> {
        let (a, b) = (super::contiguous_cow(a, la)?, super::contiguous_cow(b, lb)?);
        // SAFETY: every element of each chunk is written.
        unsafe {
            super::build(m.len(), 1, |start, o| {
                for (i, o) in (start..).zip(o.iter_mut()) {
                    o.write(if m[i] { a[i] } else { b[i] });
                }
            })
        }
    }
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(pick(&mask, a, la, b, lb)?.into()),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(pick(&mask, a, la, b, lb)?.into()),
        (CpuStorage::I64(a), CpuStorage::I64(b)) => CpuStorage::I64(pick(&mask, a, la, b, lb)?.into()),
        _ => return Err(Error::DTypeMismatch { op: "where", lhs: a.dtype(), rhs: b.dtype() }),
    })
}
