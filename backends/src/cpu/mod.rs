//! The CPU backend: rayon for parallelism (one pool), matrixmultiply for GEMM.
//!
//! Each kernel family lives in its own file; this file holds the trait impl (dispatch on
//! dtype) and the strided-walk helpers every kernel shares, so no kernel re-implements
//! striding. Work below [`PAR_THRESHOLD`] elements stays on the calling thread.
use rayon::prelude::*;

use crate::{
    rng, BinaryOp, Conv2dParams, CpuStorage, DType, Device, Distribution, Element, Error, Kernels, Layout, ReduceOp,
    Result, UnaryOp,
};

mod binary;
mod conv;
mod index;
mod matmul;
mod num;
mod reduce;
mod unary;

pub use matmul::{gemm, par_gemm, Mat, TASK_FLOPS};
pub use num::{Float, Num};
pub use unary::erf;

/// Element count above which element-wise kernels split work across rayon's pool.
pub const PAR_THRESHOLD: usize = 1 << 15;
/// Elements per rayon task for element-wise kernels.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

/// The CPU backend (stateless: storages are plain vectors).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// `f` over the elements of the view `l` of `x`, in row-major order, into a new vector.
pub(crate) fn map_strided<T: Copy + Send + Sync, U: Copy + Send + Sync + Default>(
    x: &[T],
    l: &Layout,
    f: impl Fn(T) -> U + Sync + Send,
) -> Vec<U> {
    let n = l.numel();
    if let Some(off) = l.contiguous_offset() {
        let x = &x[off..off + n];
        if n < PAR_THRESHOLD {
            return x.iter().map(|&v| f(v)).collect();
        }
        // An indexed collect writes straight into the new vector (no zero-fill first pass).
        return x.par_iter().with_min_len(PAR_CHUNK).map(|&v| f(v)).collect();
    }
    if n < PAR_THRESHOLD {
        return l.strided_index().map(|i| f(x[i])).collect();
    }
    let mut out = vec![U::default(); n];
    out.par_chunks_mut(PAR_CHUNK).enumerate().for_each(|(c, o)| {
        for (o, i) in o.iter_mut().zip(l.strided_index_from(c * PAR_CHUNK)) {
            *o = f(x[i]);
        }
    });
    out
}

/// `f(a, b)` over two views of one shape, in row-major order, into a new vector.
pub(crate) fn zip_strided<A: Copy + Send + Sync, B: Copy + Send + Sync, U: Copy + Send + Sync + Default>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    f: impl Fn(A, B) -> U + Sync + Send,
) -> Vec<U> {
    debug_assert_eq!(la.shape(), lb.shape());
    let n = la.numel();
    if let (Some(oa), Some(ob)) = (la.contiguous_offset(), lb.contiguous_offset()) {
        let (a, b) = (&a[oa..oa + n], &b[ob..ob + n]);
        if n < PAR_THRESHOLD {
            return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
        }
        return a.par_iter().zip(b).with_min_len(PAR_CHUNK).map(|(&x, &y)| f(x, y)).collect();
    }
    if n < PAR_THRESHOLD {
        return la.strided_index().zip(lb.strided_index()).map(|(i, j)| f(a[i], b[j])).collect();
    }
    let mut out = vec![U::default(); n];
    out.par_chunks_mut(PAR_CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * PAR_CHUNK;
        for ((o, i), j) in o.iter_mut().zip(la.strided_index_from(start)).zip(lb.strided_index_from(start)) {
            *o = f(a[i], b[j]);
        }
    });
    out
}

/// The view `l` of `x` as a contiguous vector (a plain copy when already contiguous).
pub(crate) fn contiguous<T: Copy + Send + Sync + Default>(x: &[T], l: &Layout) -> Vec<T> {
    map_strided(x, l, |v| v)
}

/// The view as a borrowed slice when contiguous, else a fresh contiguous copy.
pub(crate) fn contiguous_cow<'a, T: Copy + Send + Sync + Default>(x: &'a [T], l: &Layout) -> std::borrow::Cow<'a, [T]> {
    match l.contiguous_offset() {
        Some(off) => std::borrow::Cow::Borrowed(&x[off..off + l.numel()]),
        None => std::borrow::Cow::Owned(contiguous(x, l)),
    }
}

fn rand_vec<T: Element>(numel: usize, dist: Distribution, seed: u64) -> Vec<T> {
    let draw = |i: usize| match dist {
        Distribution::Uniform { lo, hi } => lo + (hi - lo) * rng::uniform_at(seed, i as u64),
        Distribution::Normal { mean, std } => mean + std * rng::normal_at(seed, i as u64),
    };
    if numel < PAR_THRESHOLD {
        return (0..numel).map(|i| T::from_f64(draw(i))).collect();
    }
    (0..numel).into_par_iter().map(|i| T::from_f64(draw(i))).collect()
}

fn cast_vec<T: Element, U: Element>(x: &[T], l: &Layout) -> Vec<U> {
    map_strided(x, l, |v| U::from_f64(v.to_f64()))
}

impl Kernels for CpuBackend {
    type Storage = CpuStorage;

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn from_host(&self, data: &CpuStorage) -> Result<CpuStorage> {
        Ok(data.clone())
    }

    fn to_host(&self, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
        self.copy_strided(x, l)
    }

    fn fill(&self, numel: usize, dtype: DType, value: f64) -> Result<CpuStorage> {
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; numel]),
            DType::F64 => CpuStorage::F64(vec![value; numel]),
            DType::I64 => CpuStorage::I64(vec![value as i64; numel]),
        })
    }

    fn rand(&self, numel: usize, dtype: DType, dist: Distribution, seed: u64) -> Result<CpuStorage> {
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(rand_vec(numel, dist, seed)),
            DType::F64 => CpuStorage::F64(rand_vec(numel, dist, seed)),
            DType::I64 => return Err(Error::DType { op: "rand", expected: "a float dtype", got: dtype }),
        })
    }

    fn copy_strided(&self, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
        Ok(match x {
            CpuStorage::F32(v) => CpuStorage::F32(contiguous(v, l)),
            CpuStorage::F64(v) => CpuStorage::F64(contiguous(v, l)),
            CpuStorage::I64(v) => CpuStorage::I64(contiguous(v, l)),
        })
    }

    fn cast(&self, x: &CpuStorage, l: &Layout, dtype: DType) -> Result<CpuStorage> {
        Ok(match (x, dtype) {
            (CpuStorage::F32(v), DType::F32) => CpuStorage::F32(contiguous(v, l)),
            (CpuStorage::F64(v), DType::F64) => CpuStorage::F64(contiguous(v, l)),
            (CpuStorage::I64(v), DType::I64) => CpuStorage::I64(contiguous(v, l)),
            (CpuStorage::F32(v), DType::F64) => CpuStorage::F64(cast_vec(v, l)),
            (CpuStorage::F32(v), DType::I64) => CpuStorage::I64(cast_vec(v, l)),
            (CpuStorage::F64(v), DType::F32) => CpuStorage::F32(cast_vec(v, l)),
            (CpuStorage::F64(v), DType::I64) => CpuStorage::I64(cast_vec(v, l)),
            (CpuStorage::I64(v), DType::F32) => CpuStorage::F32(cast_vec(v, l)),
            (CpuStorage::I64(v), DType::F64) => CpuStorage::F64(cast_vec(v, l)),
        })
    }

    fn unary(&self, op: UnaryOp, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
        unary::unary(op, x, l)
    }

    fn binary(&self, op: BinaryOp, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
        binary::binary(op, a, la, b, lb)
    }

    fn where_cond(
        &self,
        cond: &CpuStorage,
        lc: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<CpuStorage> {
        binary::where_cond(cond, lc, a, la, b, lb)
    }

    fn reduce(&self, op: ReduceOp, x: &CpuStorage, l: &Layout, axes: &[usize]) -> Result<CpuStorage> {
        reduce::reduce(op, x, l, axes)
    }

    fn softmax(&self, x: &CpuStorage, l: &Layout, axis: usize, log: bool) -> Result<CpuStorage> {
        reduce::softmax(x, l, axis, log)
    }

    fn matmul(&self, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
        matmul::matmul(a, la, b, lb)
    }

    fn conv2d(&self, x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout, p: &Conv2dParams) -> Result<CpuStorage> {
        conv::conv2d(x, lx, w, lw, p)
    }

    fn conv2d_grad_input(
        &self,
        grad: &CpuStorage,
        lg: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        p: &Conv2dParams,
        input_hw: (usize, usize),
    ) -> Result<CpuStorage> {
        conv::conv2d_grad_input(grad, lg, w, lw, p, input_hw)
    }

    fn conv2d_grad_weight(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        grad: &CpuStorage,
        lg: &Layout,
        p: &Conv2dParams,
        kernel_hw: (usize, usize),
    ) -> Result<CpuStorage> {
        conv::conv2d_grad_weight(x, lx, grad, lg, p, kernel_hw)
    }

    fn index_select(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        dim: usize,
        idx: &CpuStorage,
        li: &Layout,
    ) -> Result<CpuStorage> {
        index::index_select(x, lx, dim, idx, li)
    }

    fn gather(&self, x: &CpuStorage, lx: &Layout, dim: usize, idx: &CpuStorage, li: &Layout) -> Result<CpuStorage> {
        index::gather(x, lx, dim, idx, li)
    }

    fn scatter_add(
        &self,
        dst: &CpuStorage,
        ld: &Layout,
        dim: usize,
        idx: &CpuStorage,
        li: &Layout,
        src: &CpuStorage,
        ls: &Layout,
    ) -> Result<CpuStorage> {
        index::scatter_add(dst, ld, dim, idx, li, src, ls)
    }

    fn cat(&self, parts: &[(&CpuStorage, &Layout)], dim: usize) -> Result<CpuStorage> {
        index::cat(parts, dim)
    }
}
