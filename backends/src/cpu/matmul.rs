//! GEMM and matmul: `C[m, n] = A[m, k] B[k, n]` (`+ C` when accumulating).
//!
//! [`gemm`] is the one place that calls a GEMM provider (matrixmultiply's sgemm/dgemm, with
//! its AVX-512 kernels compiled in and picked at run time; single-threaded: its own
//! "threading" feature stays off so rayon's pool is the only one). It passes the operands'
//! real row and column strides, so a transposed operand costs no copy. [`par_gemm`] splits C
//! into one block of rows or of columns per rayon thread, each one single-threaded kernel
//! call, only when every task gets at least [`TASK_FLOPS`] of work. A task packs the whole
//! operand its block does not cut, so the split re-packs the smaller one: rows when C is
//! tall (B re-packed), columns when it is wide (A re-packed). `matmul` maps batched,
//! possibly broadcast (stride-0) operands onto these: the batch across tasks when there are
//! enough matrices, else each matrix split. Every output element is computed by one kernel
//! call over the whole of `k` whatever the thread count, so results are bit-identical.
use rayon::prelude::*;

use super::num::Float;
use crate::{CpuStorage, Error, Layout, Result};

/// Minimum flops (`2 m n k`) a rayon task must get before GEMM work is split.
pub const TASK_FLOPS: usize = 4 << 20;
/// Rows (or columns) of C per task are a multiple of this: the AVX-512 micro-kernel is
/// 16 x 16 (f32) and the AVX2 one 8 x 8, so no task boundary cuts a micro-tile.
const ALIGN: usize = 16;

/// A strided read-only matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    /// The elements, starting at `(0, 0)`.
    pub data: &'a [T],
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn row_major(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose (a view: strides swapped).
    pub fn t(self) -> Self {
        Mat { data: self.data, rs: self.cs, cs: self.rs }
    }

    /// True when every element of a `rows x cols` matrix lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        fits(self.data.len(), rows, cols, self.rs, self.cs)
    }
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(rs).zip((cols - 1).checked_mul(cs)).and_then(|(a, b)| a.checked_add(b));
    last.is_some_and(|last| last < len) && rs <= isize::MAX as usize && cs <= isize::MAX as usize
}

/// `c = a b` (or `c += a b` when `accumulate`) for `a: [m, k]`, `b: [k, n]` and a row-major
/// `c: [m, n]` slice, single-threaded. The one GEMM entry point: swap the provider here.
/// Returns [`Error::Shape`] (op `gemm`) when an operand's strides reach outside its slice.
pub fn gemm<T: Float>(m: usize, k: usize, n: usize, a: Mat<T>, b: Mat<T>, c: &mut [T], accumulate: bool) -> Result<()> {
    check(m, k, n, &a, &b, c)?;
    if m == 1 || n == 1 {
        gemv(m, k, n, a, b, c, n, accumulate);
        return Ok(());
    }
    // SAFETY: `check` proved both operands fit their slices and `c` holds `m * n` elements;
    // `c` is a unique borrow, so it aliases neither input.
    unsafe { gemm_raw(m, k, n, a, b, CPtr(c.as_mut_ptr()), n, accumulate) };
    Ok(())
}

/// `x . y` of two equal-length slices: eight running sums (a vector register under
/// [`vectorized`](super::vmath::vectorized)) added pairwise, then the remainder in order.
#[inline(always)]
fn dot<T: Float>(x: &[T], y: &[T]) -> T {
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    let mut acc = [T::ZERO; 8];
    for (xc, yc) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] = T::add(acc[l], xc[l] * yc[l]);
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    let s = T::add(T::add(T::add(a0, a4), T::add(a2, a6)), T::add(T::add(a1, a5), T::add(a3, a7)));
    xr.iter().zip(yr).fold(s, |s, (&a, &b)| T::add(s, a * b))
}

/// `c (+)= a b` when `a` is one row (`m == 1`) or `b` one column (`n == 1`), without the
/// GEMM provider: matrixmultiply packs both operands and computes whole 16 x 16 tiles, which
/// for a vector product copies the matrix operand once more (the routing products of a
/// capsule network read hundreds of such matrices, memory-bound) and discards 15/16 of the
/// arithmetic. Each output is one sum over `k` in order (`k = 0` gives 0), single-threaded,
/// so results do not depend on the thread count. Row `i` of `c` starts at `c[i * rsc]`;
/// the operands were checked to fit (`check`, `par_gemm_strided`).
#[allow(clippy::too_many_arguments)]
fn gemv<T: Float>(m: usize, k: usize, n: usize, a: Mat<T>, b: Mat<T>, c: &mut [T], rsc: usize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // an empty sum (the operands may hold no elements at all)
        if !accumulate {
            for i in 0..m {
                c[i * rsc..][..n].fill(T::ZERO);
            }
        }
        return;
    }
    super::vmath::vectorized(
        #[inline(always)]
        || {
            if m == 1 {
                let c = &mut c[..n];
                if !accumulate {
                    c.fill(T::ZERO);
                }
                if b.cs == 1 {
                    // one axpy per row of b, over contiguous rows
                    for p in 0..k {
                        let ap = a.data[p * a.cs];
                        for (cj, &bj) in c.iter_mut().zip(&b.data[p * b.rs..][..n]) {
                            *cj = T::add(*cj, ap * bj);
                        }
                    }
                } else {
                    for (j, cj) in c.iter_mut().enumerate() {
                        let col = &b.data[j * b.cs..];
                        *cj = (0..k).fold(*cj, |s, p| T::add(s, a.data[p * a.cs] * col[p * b.rs]));
                    }
                }
            } else {
                // n == 1: a dot product per row of a
                for i in 0..m {
                    let row = &a.data[i * a.rs..];
                    let ci = &mut c[i * rsc];
                    let start = if accumulate { *ci } else { T::ZERO };
                    *ci = if a.cs == 1 && b.rs == 1 {
                        T::add(start, dot(&row[..k], &b.data[..k]))
                    } else {
                        (0..k).fold(start, |s, p| T::add(s, row[p * a.cs] * b.data[p * b.rs]))
                    };
                }
            }
        },
    )
}

fn check<T>(m: usize, k: usize, n: usize, a: &Mat<T>, b: &Mat<T>, c: &[T]) -> Result<()> {
    if !a.fits(m, k) || !b.fits(k, n) || c.len() < m * n {
        return Err(Error::shape("gemm", &[&[m, k], &[k, n], &[m, n]], "operand strides reach outside their buffers"));
    }
    Ok(())
}

/// The output pointer of a GEMM, sent to the rayon tasks that each write a disjoint block.
#[derive(Clone, Copy)]
struct CPtr<T>(*mut T);
// SAFETY: tasks receiving a `CPtr` write pairwise disjoint elements (see `par_gemm`).
unsafe impl<T: Send> Send for CPtr<T> {}
unsafe impl<T: Send> Sync for CPtr<T> {}

impl<T> CPtr<T> {
    /// # Safety
    /// `off` stays inside the allocation `self` points into.
    unsafe fn add(self, off: usize) -> Self {
        // SAFETY: the caller's contract.
        CPtr(unsafe { self.0.add(off) })
    }
}

/// # Safety
/// `a`, `b` fit `m x k` and `k x n` (checked by `fits`); `c.0 + i * rsc + j` for `i < m`,
/// `j < n` is writable and read or written by no one else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: CPtr<T>,
    rsc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row `i` of the block is `n` writable elements (the contract above).
                unsafe { std::slice::from_raw_parts_mut(c.0.add(i * rsc), n) }.fill(T::ZERO);
            }
        }
        return;
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    // SAFETY: every (i, j) the kernel reads lies inside `a.data` and `b.data`, every element
    // it writes is in the block the contract grants; all strides fit in isize.
    unsafe {
        T::raw_gemm(
            m,
            k,
            n,
            T::ONE,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.0,
            rsc as isize,
            1,
        );
    }
}

/// Number of tasks for an `[m, k] x [k, n]` product split along `len` (m or n): 1 unless
/// every task gets [`TASK_FLOPS`], at most two per rayon thread, and a multiple of the
/// thread count once there are more tasks than threads (3 tasks on 2 threads would take
/// two rounds). Two per thread let a thread that runs alone take over the work of one that
/// shares its core (a busy neighbour), at the price of packing the uncut operand once
/// more per task (no slower on a quiet machine: CapsNet's convolutions, matmul n >= 256).
fn tasks(m: usize, k: usize, n: usize, len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_work = 2 * m * n * k / TASK_FLOPS;
    let t = by_work.min(len / ALIGN).min(2 * threads).max(1);
    if t > threads {
        t - t % threads
    } else {
        t
    }
}

/// Which dimension [`par_gemm`] splits. Each task packs all of the operand its part does not
/// cut: a row split packs B once per task, a column split packs A once per task (the kernel
/// itself packs A once per 1024 columns), so the split that re-packs the smaller operand wins.
fn split_rows(m: usize, n: usize) -> bool {
    m >= n
}

/// [`gemm`], split across rayon tasks when the product is large enough: along C's rows or
/// its columns, whichever repeats less packing ([`split_rows`]).
pub fn par_gemm<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    accumulate: bool,
) -> Result<()> {
    par_gemm_strided(m, k, n, a, b, c, n, accumulate)
}

/// [`par_gemm`] into a block of a wider row-major matrix: row `i` of C starts at `c[i * rsc]`
/// (`rsc >= n`); the elements between the block's rows are left alone.
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_gemm_strided<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    rsc: usize,
    accumulate: bool,
) -> Result<()> {
    let c_fits = rsc >= n
        && (m == 0 || n == 0 || (m - 1).checked_mul(rsc).and_then(|r| r.checked_add(n)).is_some_and(|l| l <= c.len()));
    if !a.fits(m, k) || !b.fits(k, n) || !c_fits {
        return Err(Error::shape("gemm", &[&[m, k], &[k, n], &[m, n]], "operand strides reach outside their buffers"));
    }
    if m == 1 || n == 1 {
        gemv(m, k, n, a, b, c, rsc, accumulate);
        return Ok(());
    }
    let rows = split_rows(m, n);
    let len = if rows { m } else { n };
    let t = tasks(m, k, n, len);
    let cp = CPtr(c.as_mut_ptr());
    if t <= 1 {
        // SAFETY: checked above: the operands fit, C's block lies inside the unique borrow `c`.
        unsafe { gemm_raw(m, k, n, a, b, cp, rsc, accumulate) };
        return Ok(());
    }
    let step = len.div_ceil(t).div_ceil(ALIGN) * ALIGN;
    (0..len.div_ceil(step)).into_par_iter().for_each(|i| {
        let (s0, s1) = (i * step, ((i + 1) * step).min(len));
        // SAFETY: task `i` writes rows (or columns) `s0..s1` of C's block only, so tasks are
        // disjoint; the shifted operand still fits (a sub-block of one checked above) and
        // `c`'s unique borrow outlives the parallel loop.
        unsafe {
            if rows {
                let a = Mat { data: a.data.get(s0 * a.rs..).unwrap_or(&[]), ..a };
                gemm_raw(s1 - s0, k, n, a, b, cp.add(s0 * rsc), rsc, accumulate)
            } else {
                let b = Mat { data: b.data.get(s0 * b.cs..).unwrap_or(&[]), ..b };
                gemm_raw(m, k, s1 - s0, a, b, cp.add(s0), rsc, accumulate)
            }
        }
    });
    Ok(())
}

fn mat<'a, T>(data: &'a [T], off: usize, s: &[usize]) -> Mat<'a, T> {
    Mat { data: data.get(off..).unwrap_or(&[]), rs: s[0], cs: s[1] }
}

/// Per-matrix storage offsets of the batch dims (all but the last two) of `l`.
fn batch_offsets(l: &Layout) -> Vec<usize> {
    let r = l.rank();
    Layout::from_parts(&l.shape()[..r - 2], &l.strides()[..r - 2], l.offset()).strided_index().collect()
}

fn matmul_typed<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<Vec<T>> {
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    // The output first: its size is checked and admitted, and an empty product (a huge
    // batch of 0 x n matrices, say) returns before any per-matrix offset is listed.
    let size = la.shape()[..r - 2].iter().chain([&m, &n]).try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let size = size.ok_or_else(|| Error::shape("matmul", &[la.shape(), lb.shape()], "the output's size overflows"))?;
    // every matrix of the batch is written by one GEMM (with beta 0; k = 0 writes zeros)
    let mut out = T::scratch(size)?;
    if out.is_empty() {
        return Ok(out);
    }
    let (oa, ob) = (batch_offsets(la), batch_offsets(lb));
    let sa = &la.strides()[r - 2..];
    let sb = &lb.strides()[r - 2..];
    let one = |i: usize, c: &mut [T], par: bool| {
        let (ma, mb) = (mat(a, oa[i], sa), mat(b, ob[i], sb));
        if par {
            par_gemm(m, k, n, ma, mb, c, false)
        } else {
            gemm(m, k, n, ma, mb, c, false)
        }
    };
    let each = 2 * m * n * k;
    let batch = oa.len();
    let threads = rayon::current_num_threads();
    if batch == 1 || (tasks(m, k, n, m.max(n)) >= threads && batch < 2 * threads) {
        // Few large matrices: split each by rows.
        return out.chunks_mut(m * n).enumerate().try_for_each(|(i, c)| one(i, c, true)).map(|_| out);
    }
    if each * batch < TASK_FLOPS {
        return out.chunks_mut(m * n).enumerate().try_for_each(|(i, c)| one(i, c, false)).map(|_| out);
    }
    let per_task = TASK_FLOPS.div_ceil(each.max(1)).max(1);
    out.par_chunks_mut(m * n).enumerate().with_min_len(per_task).try_for_each(|(i, c)| one(i, c, false))?;
    Ok(out)
}

/// `[..., m, k] x [..., k, n] -> [..., m, n]` (contiguous); batch dims equal, possibly
/// stride-0. f32 and f64; i64 is [`Error::DType`].
pub fn matmul(a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
    const OP: &str = "matmul";
    let r = la.rank();
    let ok = r >= 2
        && lb.rank() == r
        && la.shape()[..r - 2] == lb.shape()[..r - 2]
        && la.shape()[r - 1] == lb.shape()[r - 2];
    if !ok {
        return Err(Error::shape(
            OP,
            &[la.shape(), lb.shape()],
            "expected [..., m, k] x [..., k, n] with equal batch dims",
        ));
    }
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(matmul_typed(a, la, b, lb)?.into()),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(matmul_typed(a, la, b, lb)?.into()),
        (CpuStorage::I64(_), CpuStorage::I64(_)) => {
            return Err(Error::DType { op: OP, expected: "a float dtype (f32 or f64)", got: a.dtype() })
        }
        _ => return Err(Error::DTypeMismatch { op: OP, lhs: a.dtype(), rhs: b.dtype() }),
    })
}
