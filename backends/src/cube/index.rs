//! Index ops (index_select, gather, scatter_add) and cat.
//!
//! Inputs are read through their strides. scatter_add is deterministic: one thread per
//! destination element sums, in index order, the sources that land on it (no float atomics,
//! which WGSL lacks). Index ranges are checked inside the kernels, with no host round-trip:
//! an out-of-range index reads 0 (or is skipped) and is reported to the device's error flag
//! (`flag.rs`), so the next read-back returns `Error::Index` naming the op.
use cubecl::prelude::*;

use super::flag::{report, GATHER, INDEX_SELECT, SCATTER_ADD};
use super::{with_dtype, CubeStorage, GpuBackend};
use crate::{DType, Error, Layout, Result};

/// Index value `v` as a position along a dim of `size`, or `size` (out of range).
#[cube]
fn checked<I: Int>(v: I, size: usize) -> usize {
    let ok = v >= I::new(0) && usize::cast_from(v) < size;
    select(ok, usize::cast_from(v), size)
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn index_select_kernel<E: Numeric, I: Int>(
    x: &Tensor<E>,
    x_off: usize,
    idx: &Tensor<I>,
    i_off: usize,
    out: &mut Array<E>,
    flag: &mut Array<Atomic<u32>>,
    n: usize,
    dim: usize,
) {
    if ABSOLUTE_POS < n {
        let rank = x.rank();
        let mut rem = ABSOLUTE_POS;
        let mut o = x_off;
        let mut valid = true;
        for q in 0..rank {
            let d = rank - 1 - q;
            if d == dim {
                let len = idx.shape(0);
                let v = idx[i_off + (rem % len) * idx.stride(0)];
                let at = checked::<I>(v, x.shape(d));
                if at >= x.shape(d) {
                    report::<I>(flag, INDEX_SELECT, v, d, x.shape(d));
                }
                valid = valid && at < x.shape(d);
                o += select(at < x.shape(d), at, 0) * x.stride(d);
                rem /= len;
            } else {
                let s = x.shape(d);
                o += (rem % s) * x.stride(d);
                rem /= s;
            }
        }
        out[ABSOLUTE_POS] = select(valid, x[o], E::from_int(0));
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gather_kernel<E: Numeric, I: Int>(
    x: &Tensor<E>,
    x_off: usize,
    idx: &Tensor<I>,
    i_off: usize,
    out: &mut Array<E>,
    flag: &mut Array<Atomic<u32>>,
    n: usize,
    dim: usize,
) {
    if ABSOLUTE_POS < n {
        let rank = idx.rank();
        let mut rem = ABSOLUTE_POS;
        let mut o = x_off;
        let mut io = i_off;
        for q in 0..rank {
            let d = rank - 1 - q;
            let s = idx.shape(d);
            let c = rem % s;
            io += c * idx.stride(d);
            if d != dim {
                o += c * x.stride(d);
            }
            rem /= s;
        }
        let v = idx[io];
        let at = checked::<I>(v, x.shape(dim));
        let valid = at < x.shape(dim);
        if !valid {
            report::<I>(flag, GATHER, v, dim, x.shape(dim));
        }
        o += select(valid, at, 0) * x.stride(dim);
        out[ABSOLUTE_POS] = select(valid, x[o], E::from_int(0));
    }
}

/// `out[q] = dst[q] + sum of src[p]` over `p` with `p[!dim] = q[!dim]`, `idx[p] = q[dim]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn scatter_add_kernel<E: Numeric, I: Int>(
    dst: &Tensor<E>,
    d_off: usize,
    idx: &Tensor<I>,
    i_off: usize,
    src: &Tensor<E>,
    s_off: usize,
    out: &mut Array<E>,
    flag: &mut Array<Atomic<u32>>,
    n: usize,
    dim: usize,
) {
    if ABSOLUTE_POS < n {
        let rank = dst.rank();
        let mut rem = ABSOLUTE_POS;
        let mut doff = d_off;
        let mut soff = s_off;
        let mut ioff = i_off;
        let mut target = 0usize.runtime();
        let mut inside = true;
        for q in 0..rank {
            let d = rank - 1 - q;
            let s = dst.shape(d);
            let c = rem % s;
            doff += c * dst.stride(d);
            if d == dim {
                target = c;
            } else {
                inside = inside && c < idx.shape(d);
                soff += c * src.stride(d);
                ioff += c * idx.stride(d);
            }
            rem /= s;
        }
        let mut acc = dst[doff];
        if inside {
            for t in 0..idx.shape(dim) {
                let v = idx[ioff + t * idx.stride(dim)];
                let at = checked::<I>(v, dst.shape(dim));
                // Each bad index is seen by every thread of its row; the first reports it.
                if at >= dst.shape(dim) && target == 0 {
                    report::<I>(flag, SCATTER_ADD, v, dim, dst.shape(dim));
                }
                if at == target {
                    acc += src[soff + t * src.stride(dim)];
                }
            }
        }
        out[ABSOLUTE_POS] = acc;
    }
}

impl<R: Runtime> GpuBackend<R> {
    fn check_index(&self, op: &'static str, idx: &CubeStorage) -> Result<()> {
        self.same_device(op, idx)?;
        if idx.dtype != DType::I64 {
            return Err(Error::DType { op, expected: "int64 indices", got: idx.dtype });
        }
        Ok(())
    }

    pub(super) fn index_select_impl(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        dim: usize,
        idx: &CubeStorage,
        li: &Layout,
    ) -> Result<CubeStorage> {
        self.same_device("index_select", x)?;
        self.check_index("index_select", idx)?;
        if dim >= lx.rank() {
            return Err(Error::Dim { op: "index_select", dim: dim as i64, rank: lx.rank() });
        }
        if li.rank() != 1 {
            return Err(Error::shape("index_select", &[lx.shape(), li.shape()], "indices must be 1-D"));
        }
        let mut shape = lx.shape().to_vec();
        shape[dim] = li.shape()[0];
        let n: usize = shape.iter().product();
        let out = self.alloc(n, x.dtype)?;
        if n > 0 {
            let (xa, x_off) = self.view(x, lx);
            let (ia, i_off) = self.view(idx, li);
            let (count, cdim) = self.grid(n);
            with_dtype!(x.dtype, E => index_select_kernel::launch::<E, i64, R>(
                &self.client, count, cdim, xa, x_off, ia, i_off, self.array(&out), self.flag_arg(), n, dim
            ));
        }
        Ok(out)
    }

    pub(super) fn gather_impl(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        dim: usize,
        idx: &CubeStorage,
        li: &Layout,
    ) -> Result<CubeStorage> {
        self.same_device("gather", x)?;
        self.check_index("gather", idx)?;
        let fits = li.rank() == lx.rank() && (0..lx.rank()).all(|d| d == dim || li.shape()[d] <= lx.shape()[d]);
        if dim >= lx.rank() || !fits {
            return Err(Error::shape("gather", &[lx.shape(), li.shape()], format!("bad index shape for dim {dim}")));
        }
        let n = li.numel();
        let out = self.alloc(n, x.dtype)?;
        if n > 0 {
            let (xa, x_off) = self.view(x, lx);
            let (ia, i_off) = self.view(idx, li);
            let (count, cdim) = self.grid(n);
            with_dtype!(x.dtype, E => gather_kernel::launch::<E, i64, R>(
                &self.client, count, cdim, xa, x_off, ia, i_off, self.array(&out), self.flag_arg(), n, dim
            ));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn scatter_add_impl(
        &self,
        dst: &CubeStorage,
        ld: &Layout,
        dim: usize,
        idx: &CubeStorage,
        li: &Layout,
        src: &CubeStorage,
        ls: &Layout,
    ) -> Result<CubeStorage> {
        self.same_device("scatter_add", dst)?;
        self.same_device("scatter_add", src)?;
        self.check_index("scatter_add", idx)?;
        if dst.dtype != src.dtype {
            return Err(Error::DTypeMismatch { op: "scatter_add", lhs: dst.dtype, rhs: src.dtype });
        }
        let fits = li.shape() == ls.shape()
            && li.rank() == ld.rank()
            && (0..ld.rank()).all(|d| d == dim || li.shape()[d] <= ld.shape()[d]);
        if dim >= ld.rank() || !fits {
            return Err(Error::shape("scatter_add", &[ld.shape(), li.shape(), ls.shape()], "bad index/source shape"));
        }
        let n = ld.numel();
        let out = self.alloc(n, dst.dtype)?;
        if n > 0 {
            let (da, d_off) = self.view(dst, ld);
            let (ia, i_off) = self.view(idx, li);
            let (sa, s_off) = self.view(src, ls);
            let (count, cdim) = self.grid(n);
            with_dtype!(dst.dtype, E => scatter_add_kernel::launch::<E, i64, R>(
                &self.client, count, cdim, da, d_off, ia, i_off, sa, s_off, self.array(&out), self.flag_arg(), n, dim
            ));
        }
        Ok(out)
    }

    pub(super) fn cat_impl(&self, parts: &[(&CubeStorage, &Layout)], dim: usize) -> Result<CubeStorage> {
        let Some(&(first, l0)) = parts.first() else {
            return Err(Error::shape("cat", &[], "nothing to concatenate"));
        };
        if dim >= l0.rank() {
            return Err(Error::Dim { op: "cat", dim: dim as i64, rank: l0.rank() });
        }
        let mut shape = l0.shape().to_vec();
        shape[dim] = 0;
        for &(s, l) in parts {
            self.same_device("cat", s)?;
            if s.dtype != first.dtype {
                return Err(Error::DTypeMismatch { op: "cat", lhs: first.dtype, rhs: s.dtype });
            }
            let agree = l.rank() == l0.rank() && (0..l.rank()).all(|d| d == dim || l.shape()[d] == l0.shape()[d]);
            if !agree {
                return Err(Error::shape("cat", &[l0.shape(), l.shape()], format!("shapes differ outside dim {dim}")));
            }
            shape[dim] += l.shape()[dim];
        }
        let out = self.alloc(shape.iter().product(), first.dtype)?;
        let lo = Layout::contiguous(&shape);
        let mut start = 0;
        for &(s, l) in parts {
            let len = l.shape()[dim];
            self.copy_into(s, l, &out, &lo.narrow(dim, start, len)?)?;
            start += len;
        }
        Ok(out)
    }
}
