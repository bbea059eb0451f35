//! The CPU backend: rayon for parallelism (one pool), matrixmultiply for GEMM.
//!
//! Each kernel family lives in its own file; this file holds the trait impl (dispatch on
//! dtype) and the strided-walk helpers every kernel shares, so no kernel re-implements
//! striding. Work below [`PAR_THRESHOLD`] elements stays on the calling thread.
use rayon::prelude::*;

use crate::{
    rng, BinaryOp, Conv2dParams, CpuStorage, DType, Device, Distribution, Element, Error, Kernels, Layout, OptimStep,
    ReduceOp, Result, UnaryOp,
};

pub mod admit;
mod binary;
mod conv;
mod index;
mod matmul;
mod num;
mod optim;
mod pool;
mod reduce;
mod unary;
mod vmath;

pub use admit::{available_bytes, host_memory_limit, set_host_memory_limit};
pub use matmul::{gemm, par_gemm, Mat, TASK_FLOPS};
pub use num::{Float, Num};
pub use pool::{clear_pool, pool_bytes, set_pool_limit, Pooled};
pub use unary::erf;
use vmath::vectorized;

/// Element count above which element-wise kernels split work across rayon's pool.
pub const PAR_THRESHOLD: usize = 1 << 15;
/// Elements per rayon task for element-wise kernels.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

/// The CPU backend (stateless: storages are plain vectors).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// A new vector of `n` elements, each chunk of [`PAR_CHUNK`] written by `fill(start, chunk)`
/// (in parallel above [`PAR_THRESHOLD`]). Chunk boundaries are multiples of `align`, so a
/// kernel can walk whole rows. No zero-fill pass: every element is written once.
///
/// # Safety
/// `fill(start, chunk)` must initialise every element of `chunk` (the vector's length is
/// set to `n` afterwards, so an element left unwritten would be read as garbage).
pub(crate) unsafe fn build<U: Pooled + Sync>(
    n: usize,
    align: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<U>]) + Sync + Send,
) -> Result<Vec<U>> {
    let mut out: Vec<U> = U::take(n)?;
    let spare = &mut out.spare_capacity_mut()[..n];
    if n < PAR_THRESHOLD {
        fill(0, spare);
    } else {
        let chunk = PAR_CHUNK.div_ceil(align.max(1)) * align.max(1);
        spare.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| fill(c * chunk, o));
    }
    // SAFETY: the caller's contract: `fill` wrote every element of `spare`.
    unsafe { out.set_len(n) };
    Ok(out)
}

/// An empty vector with room for `n` elements. An allocation the system refuses or cannot
/// back (see [`admit`]) is [`Error::OutOfMemory`], never an abort.
pub fn try_vec<T>(n: usize) -> Result<Vec<T>> {
    let bytes = n as u128 * size_of::<T>() as u128;
    admit_host("alloc", bytes)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory { op: "alloc", bytes, device: Device::Cpu })?;
    Ok(v)
}

/// Whether `bytes` of host memory may be taken now (see [`admit`]): for work whose memory
/// is many small allocations rather than one buffer (the views of a `split`, say), which
/// the kernel would otherwise overcommit until the process is killed.
/// [`Error::OutOfMemory`] naming `op` when not.
pub fn admit_host(op: &'static str, bytes: u128) -> Result<()> {
    if usize::try_from(bytes).is_ok_and(admit::admit) {
        Ok(())
    } else {
        Err(Error::OutOfMemory { op, bytes, device: Device::Cpu })
    }
}

/// `n` copies of `value` in a fresh vector, or [`Error::OutOfMemory`] (for buffers of types
/// the pool does not hold, such as reduction accumulators).
pub(crate) fn try_filled<T: Clone>(n: usize, value: T) -> Result<Vec<T>> {
    let mut v = try_vec(n)?;
    v.resize(n, value);
    Ok(v)
}

/// The last dimension of a view (its length and stride) and the storage offset of each of
/// its rows from row `first` on: strided kernels loop over rows, with a tight inner loop.
struct Rows {
    len: usize,
    stride: usize,
    outer: Layout,
}

impl Rows {
    fn new(l: &Layout) -> Rows {
        let r = l.rank();
        if r == 0 {
            return Rows { len: 1, stride: 1, outer: Layout::from_parts(&[], &[], l.offset()) };
        }
        Rows {
            len: l.shape()[r - 1],
            stride: l.strides()[r - 1],
            outer: Layout::from_parts(&l.shape()[..r - 1], &l.strides()[..r - 1], l.offset()),
        }
    }

    fn starts(&self, first_row: usize) -> crate::StridedIndex<'_> {
        self.outer.strided_index_from(first_row)
    }
}

/// Runs `f(o, out_row)` for each of the `outer` output rows of `row` elements, in parallel
/// when the output is large.
pub(crate) fn rows<T: Send>(out: &mut [T], row: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if row == 0 {
        return;
    }
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(row).enumerate().for_each(|(o, y)| f(o, y));
    } else {
        out.chunks_mut(row).enumerate().for_each(|(o, y)| f(o, y));
    }
}

/// Rows per tile of [`Tiled`].
const TILE: usize = 32;

/// The walk of a view whose consecutive rows lie far apart in its storage, such as the
/// copy of a permuted `[i, b, j, d]` into `[b, j, i, d]` (CapsNet's predictions, and their
/// gradient the other way): in output order every row would start on a new page. It goes
/// tile by tile instead: [`TILE`] rows of the innermost outer dim `p` for each index of the
/// outer dim `q` with the smallest stride, so the reads are `TILE` sequential streams and
/// the writes runs of `TILE` rows. Dims as `(len, stride, output stride)`.
struct Tiled {
    len: usize,
    rs: usize,
    p: (usize, usize),
    q: (usize, usize, usize),
    /// The other outer dims, in output order.
    others: Vec<(usize, usize, usize)>,
    /// Whether the output's outermost dim is another dim than `q` (the first of `others`).
    split: bool,
    offset: usize,
}

impl Tiled {
    /// Smallest stride of the innermost outer dim, in elements, worth tiling for (4 KiB of f32).
    const FAR: usize = 1024;

    fn plan(l: &Layout) -> Option<Tiled> {
        let r = l.rank();
        if r < 3 || l.numel() < PAR_CHUNK {
            return None;
        }
        let (shape, strides, ostrides) = (l.shape(), l.strides(), crate::layout::contiguous_strides(l.shape()));
        let pi = r - 2;
        if shape[pi] < 2 || strides[pi] < Self::FAR {
            return None;
        }
        let qi = (0..pi).filter(|&d| shape[d] > 1).min_by_key(|&d| strides[d])?;
        if strides[qi] >= strides[pi] {
            return None;
        }
        let others: Vec<_> = (0..pi).filter(|&d| d != qi).map(|d| (shape[d], strides[d], ostrides[d])).collect();
        Some(Tiled {
            len: shape[r - 1],
            rs: strides[r - 1],
            p: (shape[pi], strides[pi]),
            q: (shape[qi], strides[qi], ostrides[qi]),
            split: qi != 0,
            others,
            offset: l.offset(),
        })
    }

    fn run<T: Copy + Send + Sync, U: Pooled + Sync>(
        &self,
        x: &[T],
        n: usize,
        f: &(impl Fn(T) -> U + Sync + Send),
    ) -> Result<Vec<U>> {
        let mut out: Vec<U> = U::take(n)?;
        let spare = &mut out.spare_capacity_mut()[..n];
        let ((np, sp), (nq, sq, oq), len, rs) = (self.p, self.q, self.len, self.rs);
        // The parallel split: along the output's outermost dim, which is either another dim
        // (`split`: one chunk per index) or `q` itself (blocks of `TILE` indices of `q`).
        let (rest, chunk_len, chunk_src) = match self.others.split_first() {
            Some((&(_, s0, o0), rest)) if self.split => (rest, o0, s0),
            _ if !self.split => (&self.others[..], TILE * oq, TILE * sq),
            _ => (&self.others[..], n, 0),
        };
        let total: usize = rest.iter().map(|d| d.0).product();
        let body = |c: usize, chunk: &mut [std::mem::MaybeUninit<U>]| {
            // the `q` indices this chunk holds (all of them, or one block when `q` is split)
            let nq_here = if self.split { nq } else { (nq - c * TILE).min(TILE) };
            vectorized(
                #[inline(always)]
                || {
                    for k in 0..total {
                        // the index of `rest` (an odometer, last dim fastest)
                        let (mut rem, mut src, mut dst) = (k, self.offset + c * chunk_src, 0);
                        for &(dn, ds, dout) in rest.iter().rev() {
                            src += rem % dn * ds;
                            dst += rem % dn * dout;
                            rem /= dn;
                        }
                        for p0 in (0..np).step_by(TILE) {
                            for iq in 0..nq_here {
                                for ip in p0..(p0 + TILE).min(np) {
                                    let s = src + iq * sq + ip * sp;
                                    let row = &mut chunk[dst + iq * oq + ip * len..][..len];
                                    if rs == 1 {
                                        for (o, &v) in row.iter_mut().zip(&x[s..s + len]) {
                                            o.write(f(v));
                                        }
                                    } else {
                                        for (j, o) in row.iter_mut().enumerate() {
                                            o.write(f(x[s + j * rs]));
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            )
        };
        if chunk_len < n && n >= PAR_THRESHOLD {
            spare.par_chunks_mut(chunk_len).enumerate().for_each(|(c, o)| body(c, o));
        } else {
            spare.chunks_mut(chunk_len.max(1)).enumerate().for_each(|(c, o)| body(c, o));
        }
        // SAFETY: each chunk (one index of the split dim, a block of `q`, or the whole output)
        // is written row by row for every index of `rest`, its `q` and `p`: every row once.
        unsafe { out.set_len(n) };
        Ok(out)
    }
}

/// `f` over the elements of the view `l` of `x`, in row-major order, into a new vector.
pub(crate) fn map_strided<T: Copy + Send + Sync, U: Pooled + Sync>(
    x: &[T],
    l: &Layout,
    f: impl Fn(T) -> U + Sync + Send,
) -> Result<Vec<U>> {
    let n = l.numel();
    if let Some(off) = l.contiguous_offset() {
        let x = &x[off..off + n];
        // SAFETY: each chunk `o` is written element by element (zip over `o` and an input
        // slice of the same length).
        return unsafe {
            build(n, 1, |start, o| {
                let end = start + o.len();
                vectorized(
                    #[inline(always)]
                    || {
                        for (o, &v) in o.iter_mut().zip(&x[start..end]) {
                            o.write(f(v));
                        }
                    },
                )
            })
        };
    }
    if let Some(t) = Tiled::plan(l) {
        return t.run(x, n, &f);
    }
    let rows = Rows::new(l);
    let len = rows.len.max(1);
    // SAFETY: chunks are whole rows (aligned to `len`); every arm writes its whole row.
    unsafe {
        build(n, len, |start, o| {
            vectorized(
                #[inline(always)]
                || {
                    for (row, base) in o.chunks_mut(len).zip(rows.starts(start / len)) {
                        match rows.stride {
                            0 => row.fill(std::mem::MaybeUninit::new(f(x[base]))),
                            1 => {
                                let m = row.len();
                                for (o, &v) in row.iter_mut().zip(&x[base..base + m]) {
                                    o.write(f(v));
                                }
                            }
                            s => {
                                for (j, o) in row.iter_mut().enumerate() {
                                    o.write(f(x[base + j * s]));
                                }
                            }
                        }
                    }
                },
            )
        })
    }
}

/// `f(a, b)` over two views of one shape, in row-major order, into a new vector.
pub(crate) fn zip_strided<A: Copy + Send + Sync, B: Copy + Send + Sync, U: Pooled + Sync>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    f: impl Fn(A, B) -> U + Sync + Send,
) -> Result<Vec<U>> {
    debug_assert_eq!(la.shape(), lb.shape());
    let n = la.numel();
    if let (Some(oa), Some(ob)) = (la.contiguous_offset(), lb.contiguous_offset()) {
        let (a, b) = (&a[oa..oa + n], &b[ob..ob + n]);
        // SAFETY: each chunk is written element by element (zip with equal-length inputs).
        return unsafe {
            build(n, 1, |start, o| {
                let end = start + o.len();
                vectorized(
                    #[inline(always)]
                    || {
                        for ((o, &x), &y) in o.iter_mut().zip(&a[start..end]).zip(&b[start..end]) {
                            o.write(f(x, y));
                        }
                    },
                )
            })
        };
    }
    let (ra, rb) = (Rows::new(la), Rows::new(lb));
    let len = ra.len.max(1);
    // SAFETY: chunks are whole rows; every arm writes its whole row.
    unsafe {
        build(n, len, |start, o| {
            let bases = ra.starts(start / len).zip(rb.starts(start / len));
            vectorized(
                #[inline(always)]
                || {
                    for (row, (ba, bb)) in o.chunks_mut(len).zip(bases) {
                        let m = row.len();
                        // the common shapes of broadcasting get loops the compiler can vectorise
                        match (ra.stride, rb.stride) {
                            (1, 1) => {
                                for ((o, &x), &y) in row.iter_mut().zip(&a[ba..ba + m]).zip(&b[bb..bb + m]) {
                                    o.write(f(x, y));
                                }
                            }
                            (1, 0) => {
                                let y = b[bb];
                                for (o, &x) in row.iter_mut().zip(&a[ba..ba + m]) {
                                    o.write(f(x, y));
                                }
                            }
                            (0, 1) => {
                                let x = a[ba];
                                for (o, &y) in row.iter_mut().zip(&b[bb..bb + m]) {
                                    o.write(f(x, y));
                                }
                            }
                            (sa, sb) => {
                                for (j, o) in row.iter_mut().enumerate() {
                                    o.write(f(a[ba + j * sa], b[bb + j * sb]));
                                }
                            }
                        }
                    }
                },
            )
        })
    }
}

/// The view `l` of `x` as a contiguous vector (a plain copy when already contiguous).
pub(crate) fn contiguous<T: Pooled + Sync>(x: &[T], l: &Layout) -> Result<Vec<T>> {
    map_strided(x, l, |v| v)
}

/// The view as a borrowed slice when contiguous, else a fresh contiguous copy.
pub(crate) fn contiguous_cow<'a, T: Pooled + Sync>(x: &'a [T], l: &Layout) -> Result<std::borrow::Cow<'a, [T]>> {
    Ok(match l.contiguous_offset() {
        Some(off) => std::borrow::Cow::Borrowed(&x[off..off + l.numel()]),
        None => std::borrow::Cow::Owned(contiguous(x, l)?),
    })
}

fn rand_vec<T: Element + Pooled>(numel: usize, dist: Distribution, seed: u64) -> Result<Vec<T>> {
    let draw = |i: usize| match dist {
        Distribution::Uniform { lo, hi } => lo + (hi - lo) * rng::uniform_at(seed, i as u64),
        Distribution::Normal { mean, std } => mean + std * rng::normal_at(seed, i as u64),
    };
    // SAFETY: every element of each chunk is written.
    unsafe {
        build(numel, 1, |start, o| {
            for (j, o) in o.iter_mut().enumerate() {
                o.write(T::from_f64(draw(start + j)));
            }
        })
    }
}

/// The error of a kernel reached by a half-precision operand: the backend widens those to
/// f32 before any kernel runs (see [`Widened`]), so this names a bug, never user input.
pub(crate) fn half_in_kernel(op: &'static str) -> Error {
    Error::Unsupported { op, msg: "half-precision operands are computed through f32".into() }
}

/// Half-precision compute goes through f32: operands of dtype f16 / bf16 are widened
/// (contiguous f32 copies) before a kernel runs, and float results narrowed back.
struct Widened {
    half: Option<DType>,
}

impl Widened {
    /// The half dtype shared by `dtypes` (all equal and half), else `None`: mixed dtypes
    /// reach the kernels unchanged and fail there as mismatches.
    fn of(dtypes: &[DType]) -> Widened {
        let first = dtypes.first().copied().filter(|d| d.is_half());
        Widened { half: first.filter(|d| dtypes.iter().all(|x| x == d)) }
    }

    /// `x` as f32 with its (now contiguous) layout, when widening; else unchanged.
    fn arg<'a>(&self, x: &'a CpuStorage, l: &'a Layout) -> Result<(std::borrow::Cow<'a, CpuStorage>, Layout)> {
        Ok(match self.half {
            Some(_) => (std::borrow::Cow::Owned(CpuBackend.cast(x, l, DType::F32)?), Layout::contiguous(l.shape())),
            None => (std::borrow::Cow::Borrowed(x), l.clone()),
        })
    }

    /// A float result narrowed back to the half dtype (integer results, argmax, unchanged).
    fn out(&self, y: CpuStorage) -> Result<CpuStorage> {
        match (self.half, &y) {
            (Some(h), CpuStorage::F32(_)) => CpuBackend.cast(&y, &Layout::contiguous(&[y.len()]), h),
            _ => Ok(y),
        }
    }
}

fn cast_vec<T: Element, U: Element + Pooled>(x: &[T], l: &Layout) -> Result<Vec<U>> {
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
        self.copy_strided(x, l).map_err(|e| e.in_op("to_host"))
    }

    fn fill(&self, numel: usize, dtype: DType, value: f64) -> Result<CpuStorage> {
        (|| -> Result<CpuStorage> {
            Ok(match dtype {
                DType::F32 => CpuStorage::F32(f32::filled(numel, value as f32)?.into()),
                DType::F64 => CpuStorage::F64(f64::filled(numel, value)?.into()),
                DType::I64 => CpuStorage::I64(i64::filled(numel, value as i64)?.into()),
                DType::F16 => CpuStorage::F16(half::f16::filled(numel, half::f16::from_f64(value))?.into()),
                DType::BF16 => CpuStorage::BF16(half::bf16::filled(numel, half::bf16::from_f64(value))?.into()),
            })
        })()
        .map_err(|e| e.in_op("fill"))
    }

    fn rand(&self, numel: usize, dtype: DType, dist: Distribution, seed: u64) -> Result<CpuStorage> {
        (|| -> Result<CpuStorage> {
            Ok(match dtype {
                DType::F32 => CpuStorage::F32(rand_vec(numel, dist, seed)?.into()),
                DType::F64 => CpuStorage::F64(rand_vec(numel, dist, seed)?.into()),
                DType::F16 => CpuStorage::F16(rand_vec(numel, dist, seed)?.into()),
                DType::BF16 => CpuStorage::BF16(rand_vec(numel, dist, seed)?.into()),
                DType::I64 => return Err(Error::DType { op: "rand", expected: "a float dtype", got: dtype }),
            })
        })()
        .map_err(|e| e.in_op("rand"))
    }

    fn copy_strided(&self, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
        (|| -> Result<CpuStorage> {
            Ok(match x {
                CpuStorage::F32(v) => CpuStorage::F32(contiguous(v, l)?.into()),
                CpuStorage::F64(v) => CpuStorage::F64(contiguous(v, l)?.into()),
                CpuStorage::I64(v) => CpuStorage::I64(contiguous(v, l)?.into()),
                CpuStorage::F16(v) => CpuStorage::F16(contiguous(v, l)?.into()),
                CpuStorage::BF16(v) => CpuStorage::BF16(contiguous(v, l)?.into()),
            })
        })()
        .map_err(|e| e.in_op("copy_strided"))
    }

    fn cast(&self, x: &CpuStorage, l: &Layout, dtype: DType) -> Result<CpuStorage> {
        (|| -> Result<CpuStorage> {
            fn to<T: Element>(v: &[T], l: &Layout, dtype: DType) -> Result<CpuStorage> {
                Ok(match dtype {
                    DType::F32 => CpuStorage::F32(cast_vec(v, l)?.into()),
                    DType::F64 => CpuStorage::F64(cast_vec(v, l)?.into()),
                    DType::I64 => CpuStorage::I64(cast_vec(v, l)?.into()),
                    DType::F16 => CpuStorage::F16(cast_vec(v, l)?.into()),
                    DType::BF16 => CpuStorage::BF16(cast_vec(v, l)?.into()),
                })
            }
            if x.dtype() == dtype {
                return self.copy_strided(x, l);
            }
            // f16/bf16 -> f32/f64 is exact through f64, and f32 -> f16/bf16 rounds once
            // (f32 -> f64 is exact): the same values as torch's `.to(dtype)`.
            match x {
                CpuStorage::F32(v) => to(v, l, dtype),
                CpuStorage::F64(v) => to(v, l, dtype),
                CpuStorage::I64(v) => to(v, l, dtype),
                CpuStorage::F16(v) => to(v, l, dtype),
                CpuStorage::BF16(v) => to(v, l, dtype),
            }
        })()
        .map_err(|e| e.in_op("cast"))
    }

    fn unary(&self, op: UnaryOp, x: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
        let wide = Widened::of(&[x.dtype()]);
        if wide.half.is_some() {
            let (x, l) = wide.arg(x, l)?;
            return wide.out(self.unary(op, &x, &l)?);
        }
        unary::unary(op, x, l).map_err(|e| e.in_op("unary"))
    }

    fn binary(&self, op: BinaryOp, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
        let wide = Widened::of(&[a.dtype(), b.dtype()]);
        if wide.half.is_some() {
            let ((a, la), (b, lb)) = (wide.arg(a, la)?, wide.arg(b, lb)?);
            return wide.out(self.binary(op, &a, &la, &b, &lb)?);
        }
        binary::binary(op, a, la, b, lb).map_err(|e| e.in_op("binary"))
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
        let wide = Widened::of(&[a.dtype(), b.dtype()]);
        if wide.half.is_some() {
            let ((a, la), (b, lb)) = (wide.arg(a, la)?, wide.arg(b, lb)?);
            return wide.out(self.where_cond(cond, lc, &a, &la, &b, &lb)?);
        }
        binary::where_cond(cond, lc, a, la, b, lb).map_err(|e| e.in_op("where_cond"))
    }

    fn reduce(&self, op: ReduceOp, x: &CpuStorage, l: &Layout, axes: &[usize]) -> Result<CpuStorage> {
        let wide = Widened::of(&[x.dtype()]);
        if wide.half.is_some() {
            let (x, l) = wide.arg(x, l)?;
            return wide.out(self.reduce(op, &x, &l, axes)?);
        }
        reduce::reduce(op, x, l, axes).map_err(|e| e.in_op("reduce"))
    }

    fn softmax(&self, x: &CpuStorage, l: &Layout, axis: usize, log: bool) -> Result<CpuStorage> {
        let wide = Widened::of(&[x.dtype()]);
        if wide.half.is_some() {
            let (x, l) = wide.arg(x, l)?;
            return wide.out(self.softmax(&x, &l, axis, log)?);
        }
        reduce::softmax(x, l, axis, log).map_err(|e| e.in_op("softmax"))
    }

    fn matmul(&self, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
        let wide = Widened::of(&[a.dtype(), b.dtype()]);
        if wide.half.is_some() {
            let ((a, la), (b, lb)) = (wide.arg(a, la)?, wide.arg(b, lb)?);
            return wide.out(self.matmul(&a, &la, &b, &lb)?);
        }
        matmul::matmul(a, la, b, lb).map_err(|e| e.in_op("matmul"))
    }

    fn conv2d(&self, x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout, p: &Conv2dParams) -> Result<CpuStorage> {
        let wide = Widened::of(&[x.dtype(), w.dtype()]);
        if wide.half.is_some() {
            let ((x, lx), (wt, lw)) = (wide.arg(x, lx)?, wide.arg(w, lw)?);
            return wide.out(self.conv2d(&x, &lx, &wt, &lw, p)?);
        }
        conv::conv2d(x, lx, w, lw, p).map_err(|e| e.in_op("conv2d"))
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
        let wide = Widened::of(&[grad.dtype(), w.dtype()]);
        if wide.half.is_some() {
            let ((g, lg), (wt, lw)) = (wide.arg(grad, lg)?, wide.arg(w, lw)?);
            return wide.out(self.conv2d_grad_input(&g, &lg, &wt, &lw, p, input_hw)?);
        }
        conv::conv2d_grad_input(grad, lg, w, lw, p, input_hw).map_err(|e| e.in_op("conv2d_grad_input"))
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
        let wide = Widened::of(&[x.dtype(), grad.dtype()]);
        if wide.half.is_some() {
            let ((x, lx), (g, lg)) = (wide.arg(x, lx)?, wide.arg(grad, lg)?);
            return wide.out(self.conv2d_grad_weight(&x, &lx, &g, &lg, p, kernel_hw)?);
        }
        conv::conv2d_grad_weight(x, lx, grad, lg, p, kernel_hw).map_err(|e| e.in_op("conv2d_grad_weight"))
    }

    fn index_select(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        dim: usize,
        idx: &CpuStorage,
        li: &Layout,
    ) -> Result<CpuStorage> {
        let wide = Widened::of(&[x.dtype()]);
        if wide.half.is_some() {
            let (x, lx) = wide.arg(x, lx)?;
            return wide.out(self.index_select(&x, &lx, dim, idx, li)?);
        }
        index::index_select(x, lx, dim, idx, li).map_err(|e| e.in_op("index_select"))
    }

    fn gather(&self, x: &CpuStorage, lx: &Layout, dim: usize, idx: &CpuStorage, li: &Layout) -> Result<CpuStorage> {
        let wide = Widened::of(&[x.dtype()]);
        if wide.half.is_some() {
            let (x, lx) = wide.arg(x, lx)?;
            return wide.out(self.gather(&x, &lx, dim, idx, li)?);
        }
        index::gather(x, lx, dim, idx, li).map_err(|e| e.in_op("gather"))
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
        let wide = Widened::of(&[dst.dtype(), src.dtype()]);
        if wide.half.is_some() {
            let ((d, ld), (sr, ls)) = (wide.arg(dst, ld)?, wide.arg(src, ls)?);
            return wide.out(self.scatter_add(&d, &ld, dim, idx, li, &sr, &ls)?);
        }
        index::scatter_add(dst, ld, dim, idx, li, src, ls).map_err(|e| e.in_op("scatter_add"))
    }

    fn cat(&self, parts: &[(&CpuStorage, &Layout)], dim: usize) -> Result<CpuStorage> {
        let w = Widened::of(&parts.iter().map(|(s, _)| s.dtype()).collect::<Vec<_>>());
        if w.half.is_some() {
            let wide = parts.iter().map(|(s, l)| w.arg(s, l)).collect::<Result<Vec<_>>>()?;
            let refs: Vec<(&CpuStorage, &Layout)> = wide.iter().map(|(s, l)| (&**s, l)).collect();
            return w.out(self.cat(&refs, dim)?);
        }
        index::cat(parts, dim).map_err(|e| e.in_op("cat"))
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        param: &mut CpuStorage,
        grad: &CpuStorage,
        lg: &Layout,
        state: &mut [&mut CpuStorage],
    ) -> Result<()> {
        optim::optim_step(step, param, grad, lg, state)
    }
}
