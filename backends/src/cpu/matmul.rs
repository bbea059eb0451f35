//! GEMM and matmul: `C[m, n] = A[m, k] B[k, n]` (`+ C` when accumulating).
//!
//! [`gemm`] is the one place that calls a GEMM provider (matrixmultiply's sgemm/dgemm,
//! single-threaded: its own "threading" feature stays off so rayon's pool is the only one).
//! It passes the operands' real row and column strides, so a transposed operand costs no
//! copy. [`par_gemm`] splits C's rows into rayon tasks, each one single-threaded [`gemm`],
//! only when every task gets at least [`TASK_FLOPS`] of work. `matmul` maps batched,
//! possibly broadcast (stride-0) operands onto these: the batch across tasks when there are
//! enough matrices, else each matrix split by rows. Every output element is computed by one
//! gemm call whatever the thread count.
use rayon::prelude::*;

use super::num::Float;
use crate::{CpuStorage, Error, Layout, Result};

/// Minimum flops (`2 m n k`) a rayon task must get before GEMM work is split.
pub const TASK_FLOPS: usize = 4 << 20;
/// Rows of C per task are a multiple of this (matrixmultiply's f32 row block is 64; 16 keeps
/// small-m splits possible while staying a multiple of the micro-kernel's 8 rows).
const ROW_ALIGN: usize = 16;

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
    if !a.fits(m, k) || !b.fits(k, n) || c.len() < m * n {
        return Err(Error::shape("gemm", &[&[m, k], &[k, n], &[m, n]], "operand strides reach outside their buffers"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::ZERO);
        }
        return Ok(());
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    // SAFETY: `fits` checked that every (i, j) the kernel reads lies inside `a.data` and
    // `b.data`, `c` holds `m * n` elements written row-major (rsc = n, csc = 1), all strides
    // fit in isize, and `c` is a unique borrow so it aliases neither input.
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
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Ok(())
}

/// Number of row tasks for an `[m, k] x [k, n]` product: 1 unless every task gets
/// [`TASK_FLOPS`], at most one per rayon thread.
fn row_tasks(m: usize, k: usize, n: usize) -> usize {
    let flops = 2 * m * n * k;
    let by_work = flops / TASK_FLOPS;
    let by_rows = m / ROW_ALIGN;
    by_work.min(by_rows).min(rayon::current_num_threads()).max(1)
}

/// [`gemm`], with C's rows split across rayon tasks when the product is large enough.
pub fn par_gemm<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    accumulate: bool,
) -> Result<()> {
    let tasks = row_tasks(m, k, n);
    if tasks <= 1 || n == 0 {
        return gemm(m, k, n, a, b, c, accumulate);
    }
    if !a.fits(m, k) || c.len() < m * n {
        return Err(Error::shape("gemm", &[&[m, k], &[k, n], &[m, n]], "operand strides reach outside their buffers"));
    }
    let rows = m.div_ceil(tasks).div_ceil(ROW_ALIGN) * ROW_ALIGN;
    c[..m * n].par_chunks_mut(rows * n).enumerate().try_for_each(|(t, c)| {
        let r0 = t * rows;
        let a = Mat { data: a.data.get(r0 * a.rs..).unwrap_or(&[]), ..a };
        gemm(c.len() / n, k, n, a, b, c, accumulate)
    })
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
    let (oa, ob) = (batch_offsets(la), batch_offsets(lb));
    let mut out = T::filled(oa.len() * m * n, T::ZERO)?;
    if out.is_empty() {
        return Ok(out);
    }
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
    if batch == 1 || (row_tasks(m, k, n) >= threads && batch < 2 * threads) {
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
