//! Index ops: index_select, gather, scatter_add, cat.
//!
//! Each op sees its tensors as contiguous `[outer, size, inner]` buffers around the indexed
//! dimension `dim` (`outer` = product of the dims before, `inner` = after):
//! - `index_select`: `out[o, j, i] = x[o, idx[j], i]`
//! - `gather`:       `out[o, j, i] = x[o, idx[o, j, i], i]`
//! - `scatter_add`:  `out = dst; out[o, idx[o, j, i], i] += src[o, j, i]`
//! - `cat`:          part `p` fills `out[o, start_p .. start_p + size_p, i]`
//!
//! Every index is checked before anything is written: a negative or too-large one is
//! [`Error::Index`], never a panic. Work is split over `outer` above the parallel threshold
//! (each `o` owns its own output rows, so scatter_add needs no atomics).
use std::borrow::Cow;

use super::num::Num;
use super::{contiguous_cow, rows};
use crate::{CpuStorage, DType, Error, Layout, Result};

/// `(outer, inner)` around `dim` of `shape`.
fn split(shape: &[usize], dim: usize) -> (usize, usize) {
    (shape[..dim].iter().product(), shape[dim + 1..].iter().product())
}

fn check_dim(op: &'static str, l: &Layout, dim: usize) -> Result<()> {
    if dim >= l.rank() {
        return Err(Error::Dim { op, dim: dim as i64, rank: l.rank() });
    }
    Ok(())
}

/// The indices of the view `li`, contiguous, each checked against `0..size`.
fn indices<'a>(op: &'static str, idx: &'a CpuStorage, li: &Layout, dim: usize, size: usize) -> Result<Cow<'a, [i64]>> {
    let CpuStorage::I64(v) = idx else {
        return Err(Error::DType { op, expected: "int64 indices", got: idx.dtype() });
    };
    let v = contiguous_cow(v, li)?;
    if let Some(&bad) = v.iter().find(|&&i| i < 0 || i as u64 >= size as u64) {
        return Err(Error::Index { op, index: bad, dim, size });
    }
    Ok(v)
}

/// True when the shapes agree on every dim but `dim` (and have one rank).
fn agree_except(a: &[usize], b: &[usize], dim: usize) -> bool {
    a.len() == b.len() && a.iter().zip(b).enumerate().all(|(d, (x, y))| d == dim || x == y)
}

fn index_select_typed<T: Num>(x: &[T], lx: &Layout, dim: usize, idx: &[i64]) -> Result<Vec<T>> {
    let x = contiguous_cow(x, lx)?;
    let (outer, inner) = split(lx.shape(), dim);
    let size = lx.shape()[dim];
    // every row is copied in full
    let mut out = T::scratch(outer * idx.len() * inner)?;
    rows(&mut out, idx.len() * inner, |o, y| {
        for (y, &j) in y.chunks_exact_mut(inner).zip(idx) {
            let s = (o * size + j as usize) * inner;
            y.copy_from_slice(&x[s..s + inner]);
        }
    });
    Ok(out)
}

/// `out[.., i, ..] = x[.., idx[i], ..]` along `dim`; `idx` is a 1-D i64 view.
pub fn index_select(x: &CpuStorage, lx: &Layout, dim: usize, idx: &CpuStorage, li: &Layout) -> Result<CpuStorage> {
    const OP: &str = "index_select";
    check_dim(OP, lx, dim)?;
    if li.rank() != 1 {
        return Err(Error::shape(OP, &[lx.shape(), li.shape()], "indices must be 1-D"));
    }
    let idx = indices(OP, idx, li, dim, lx.shape()[dim])?;
    Ok(match x {
        CpuStorage::F32(v) => CpuStorage::F32(index_select_typed(v, lx, dim, &idx)?.into()),
        CpuStorage::F64(v) => CpuStorage::F64(index_select_typed(v, lx, dim, &idx)?.into()),
        CpuStorage::I64(v) => CpuStorage::I64(index_select_typed(v, lx, dim, &idx)?.into()),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => return Err(super::half_in_kernel(OP)),
    })
}

fn gather_typed<T: Num>(x: &[T], lx: &Layout, dim: usize, idx: &[i64], li: &Layout) -> Result<Vec<T>> {
    let x = contiguous_cow(x, lx)?;
    let (_, inner) = split(lx.shape(), dim);
    let (size, m) = (lx.shape()[dim], li.shape()[dim]);
    // every element is gathered
    let mut out = T::scratch(idx.len())?;
    rows(&mut out, m * inner, |o, y| {
        let ids = &idx[o * m * inner..][..m * inner];
        for (k, (y, &j)) in y.iter_mut().zip(ids).enumerate() {
            *y = x[(o * size + j as usize) * inner + k % inner.max(1)];
        }
    });
    Ok(out)
}

/// `out[p] = x[p with p[dim] = idx[p]]`; `idx` has the output's shape, equal to `x`'s but
/// along `dim`.
pub fn gather(x: &CpuStorage, lx: &Layout, dim: usize, idx: &CpuStorage, li: &Layout) -> Result<CpuStorage> {
    const OP: &str = "gather";
    check_dim(OP, lx, dim)?;
    if !agree_except(lx.shape(), li.shape(), dim) {
        return Err(Error::shape(
            OP,
            &[lx.shape(), li.shape()],
            format!("index must match the input except along {dim}"),
        ));
    }
    let idx = indices(OP, idx, li, dim, lx.shape()[dim])?;
    Ok(match x {
        CpuStorage::F32(v) => CpuStorage::F32(gather_typed(v, lx, dim, &idx, li)?.into()),
        CpuStorage::F64(v) => CpuStorage::F64(gather_typed(v, lx, dim, &idx, li)?.into()),
        CpuStorage::I64(v) => CpuStorage::I64(gather_typed(v, lx, dim, &idx, li)?.into()),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => return Err(super::half_in_kernel(OP)),
    })
}

fn scatter_add_typed<T: Num>(
    dst: &[T],
    ld: &Layout,
    dim: usize,
    idx: &[i64],
    li: &Layout,
    src: &[T],
    ls: &Layout,
) -> Result<Vec<T>> {
    let mut out = contiguous_cow(dst, ld)?.into_owned();
    let src = contiguous_cow(src, ls)?;
    let (_, inner) = split(ld.shape(), dim);
    let (size, m) = (ld.shape()[dim], li.shape()[dim]);
    rows(&mut out, size * inner, |o, y| {
        let ids = &idx[o * m * inner..][..m * inner];
        let s = &src[o * m * inner..][..m * inner];
        for (k, (&j, &v)) in ids.iter().zip(s).enumerate() {
            let t = j as usize * inner + k % inner.max(1);
            y[t] = T::add(y[t], v);
        }
    });
    Ok(out)
}

/// A copy of `dst` with `out[p with p[dim] = idx[p]] += src[p]` for every position `p` of
/// `src`; `idx` has `src`'s shape, which equals `dst`'s but along `dim`.
#[allow(clippy::too_many_arguments)]
pub fn scatter_add(
    dst: &CpuStorage,
    ld: &Layout,
    dim: usize,
    idx: &CpuStorage,
    li: &Layout,
    src: &CpuStorage,
    ls: &Layout,
) -> Result<CpuStorage> {
    const OP: &str = "scatter_add";
    check_dim(OP, ld, dim)?;
    if li.shape() != ls.shape() || !agree_except(ld.shape(), ls.shape(), dim) {
        return Err(Error::shape(
            OP,
            &[ld.shape(), li.shape(), ls.shape()],
            format!("index must have src's shape, and src match dst except along {dim}"),
        ));
    }
    let idx = indices(OP, idx, li, dim, ld.shape()[dim])?;
    Ok(match (dst, src) {
        (CpuStorage::F32(d), CpuStorage::F32(s)) => {
            CpuStorage::F32(scatter_add_typed(d, ld, dim, &idx, li, s, ls)?.into())
        }
        (CpuStorage::F64(d), CpuStorage::F64(s)) => {
            CpuStorage::F64(scatter_add_typed(d, ld, dim, &idx, li, s, ls)?.into())
        }
        (CpuStorage::I64(d), CpuStorage::I64(s)) => {
            CpuStorage::I64(scatter_add_typed(d, ld, dim, &idx, li, s, ls)?.into())
        }
        _ => return Err(Error::DTypeMismatch { op: OP, lhs: dst.dtype(), rhs: src.dtype() }),
    })
}

fn cat_typed<T: Num>(parts: &[(&[T], &Layout)], dim: usize, out_shape: &[usize]) -> Result<Vec<T>> {
    let (outer, inner) = split(out_shape, dim);
    let total = out_shape[dim];
    // the parts' blocks tile every output row
    let mut out = T::scratch(outer * total * inner)?;
    let mut start = 0;
    for &(x, l) in parts {
        let block = l.shape()[dim] * inner;
        let x = contiguous_cow(x, l)?;
        if block > 0 {
            for (o, xb) in x.chunks_exact(block).enumerate() {
                out[(o * total + start) * inner..][..block].copy_from_slice(xb);
            }
        }
        start += l.shape()[dim];
    }
    Ok(out)
}

fn typed_parts<'a, T: Num>(parts: &[(&'a CpuStorage, &'a Layout)]) -> Option<Vec<(&'a [T], &'a Layout)>> {
    parts.iter().map(|&(s, l)| Some((s.as_slice::<T>()?, l))).collect()
}

/// Concatenation along `dim` of views that agree on every other dim (and on dtype).
pub fn cat(parts: &[(&CpuStorage, &Layout)], dim: usize) -> Result<CpuStorage> {
    const OP: &str = "cat";
    let Some(&(first, l0)) = parts.first() else {
        return Err(Error::shape(OP, &[], "no tensors to concatenate"));
    };
    check_dim(OP, l0, dim)?;
    if let Some(&(s, _)) = parts.iter().find(|(s, _)| s.dtype() != first.dtype()) {
        return Err(Error::DTypeMismatch { op: OP, lhs: first.dtype(), rhs: s.dtype() });
    }
    if parts.iter().any(|(_, l)| !agree_except(l0.shape(), l.shape(), dim)) {
        let shapes: Vec<&[usize]> = parts.iter().map(|(_, l)| l.shape()).collect();
        return Err(Error::shape(OP, &shapes, format!("shapes must agree except along dimension {dim}")));
    }
    let mut out_shape = l0.shape().to_vec();
    out_shape[dim] = parts.iter().map(|(_, l)| l.shape()[dim]).sum();
    // The dtypes were checked equal above, so the typed view of every part exists.
    let mismatch = || Error::DType { op: OP, expected: "one dtype for all parts", got: first.dtype() };
    Ok(match first.dtype() {
        DType::F32 => {
            CpuStorage::F32(cat_typed(&typed_parts::<f32>(parts).ok_or_else(mismatch)?, dim, &out_shape)?.into())
        }
        DType::F64 => {
            CpuStorage::F64(cat_typed(&typed_parts::<f64>(parts).ok_or_else(mismatch)?, dim, &out_shape)?.into())
        }
        DType::I64 => {
            CpuStorage::I64(cat_typed(&typed_parts::<i64>(parts).ok_or_else(mismatch)?, dim, &out_shape)?.into())
        }
        DType::F16 | DType::BF16 => return Err(super::half_in_kernel(OP)),
    })
}
