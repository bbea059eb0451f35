//! Reductions over any axes, and softmax / log-softmax along one.
//!
//! Every reduction is brought to rows: the view is permuted so that the kept axes come first
//! and the reduced ones last (copied to a contiguous buffer only when that view is not
//! already contiguous), giving `[rows, len]`. One cube of [`RBLOCK`] threads folds a row:
//! each thread strides over it, then a tree in shared memory combines the threads. Rows
//! much longer than a cube's share are first split into parts (two passes).
//!
//! Max and min propagate NaN; argmax/argmin count NaN as the extreme and return the first
//! index on ties (as the CPU does). Accumulators start from the row's first element (an
//! element of the row cannot change a max or a min), so no identity value is needed.
//! f32 sums accumulate in f32 (the CPU uses f64): expect rounding differences ~ len * eps.
use cubecl::prelude::*;

use super::elementwise::{exp_f, ln_f};
use super::{with_dtype, with_float, CubeStorage, GpuBackend};
use crate::{DType, Error, Layout, ReduceOp, Result};

/// Threads per cube in the row kernels (a power of two).
const RBLOCK: u32 = 256;
/// Rows longer than this, with few rows, are split into parts folded in a second pass.
const SPLIT_LEN: usize = 1 << 16;

const SUM: u32 = 0;
const MAX: u32 = 1;
const MIN: u32 = 2;

/// Combines two partial results; NaN wins for max and min.
#[cube]
fn combine<N: Numeric>(a: N, b: N, #[comptime] op: u32) -> N {
    let mut r = a + b;
    if comptime![op == MAX] {
        r = select(a != a, a, select(b != b || b > a, b, a));
    } else if comptime![op == MIN] {
        r = select(a != a, a, select(b != b || b < a, b, a));
    }
    r
}

/// Cube linear index (cube counts are 2-D when there are more than 65535 rows).
#[cube]
fn row_index() -> usize {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize
}

/// `out[g]` = fold of `x[x_off + o * len + part * chunk ..][..chunk]` (clipped to the row)
/// where `o = g / parts`, `part = g % parts`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn reduce_rows<N: Numeric>(
    x: &Array<N>,
    x_off: usize,
    out: &mut Array<N>,
    rows: usize,
    len: usize,
    chunk: usize,
    parts: usize,
    #[comptime] op: u32,
) {
    let g = row_index();
    let tid = UNIT_POS as usize;
    let mut smem = SharedMemory::<N>::new(RBLOCK as usize);
    let o = g / parts;
    let part = g % parts;
    let start = x_off + o * len + part * chunk;
    let end = x_off + o * len + select(part * chunk + chunk < len, part * chunk + chunk, len);
    let mut acc = N::from_int(0);
    if g < rows * parts {
        if comptime![op != SUM] {
            acc = x[start];
        }
        let mut i = start + tid;
        while i < end {
            acc = combine::<N>(acc, x[i], op);
            i += RBLOCK as usize;
        }
    }
    smem[tid] = acc;
    sync_cube();
    let mut stride = (RBLOCK as usize / 2).runtime();
    while stride > 0 {
        if tid < stride {
            smem[tid] = combine::<N>(smem[tid], smem[tid + stride], op);
        }
        sync_cube();
        stride /= 2;
    }
    if tid == 0 && g < rows * parts {
        out[g] = smem[0];
    }
}

/// True when `(b, j)` should replace `(a, i)` as the running argmax (`max`) or argmin.
#[cube]
fn arg_better<F: Numeric>(a: F, i: u32, b: F, j: u32, #[comptime] max: bool) -> bool {
    let a_nan = a != a;
    let b_nan = b != b;
    let mut better = b < a;
    if comptime![max] {
        better = b > a;
    }
    let tie = (a == b || (a_nan && b_nan)) && j < i;
    select(a_nan, b_nan && j < i, b_nan || better || tie)
}

#[cube(launch)]
fn arg_rows<N: Numeric, I: Int>(
    x: &Array<N>,
    x_off: usize,
    out: &mut Array<I>,
    rows: usize,
    len: usize,
    #[comptime] max: bool,
) {
    let g = row_index();
    let tid = UNIT_POS as usize;
    let mut vals = SharedMemory::<N>::new(RBLOCK as usize);
    let mut idxs = SharedMemory::<u32>::new(RBLOCK as usize);
    let start = x_off + g * len;
    let mut best = N::from_int(0);
    let mut at = 0u32.runtime();
    if g < rows {
        best = x[start];
        let mut i = tid;
        while i < len {
            let v = x[start + i];
            if arg_better::<N>(best, at, v, i as u32, max) {
                best = v;
                at = i as u32;
            }
            i += RBLOCK as usize;
        }
    }
    vals[tid] = best;
    idxs[tid] = at;
    sync_cube();
    let mut stride = (RBLOCK as usize / 2).runtime();
    while stride > 0 {
        if tid < stride && arg_better::<N>(vals[tid], idxs[tid], vals[tid + stride], idxs[tid + stride], max) {
            vals[tid] = vals[tid + stride];
            idxs[tid] = idxs[tid + stride];
        }
        sync_cube();
        stride /= 2;
    }
    if tid == 0 && g < rows {
        out[g] = I::cast_from(idxs[0]);
    }
}

/// Softmax of each contiguous row: max, then sum of `exp(x - max)`, then the outputs.
#[cube(launch)]
fn softmax_rows<F: Float>(
    x: &Array<F>,
    x_off: usize,
    out: &mut Array<F>,
    rows: usize,
    len: usize,
    #[comptime] log: bool,
    #[comptime] poly: bool,
) {
    let g = row_index();
    let tid = UNIT_POS as usize;
    let mut smem = SharedMemory::<F>::new(RBLOCK as usize);
    let start = x_off + g * len;
    let mut m = F::new(0.0);
    if g < rows {
        m = x[start];
        let mut i = tid;
        while i < len {
            m = combine::<F>(m, x[start + i], MAX);
            i += RBLOCK as usize;
        }
    }
    smem[tid] = m;
    sync_cube();
    let mut stride = (RBLOCK as usize / 2).runtime();
    while stride > 0 {
        if tid < stride {
            smem[tid] = combine::<F>(smem[tid], smem[tid + stride], MAX);
        }
        sync_cube();
        stride /= 2;
    }
    let row_max = smem[0];
    sync_cube();
    let mut s = F::new(0.0);
    if g < rows {
        let mut i = tid;
        while i < len {
            s += exp_f::<F>(x[start + i] - row_max, poly);
            i += RBLOCK as usize;
        }
    }
    smem[tid] = s;
    sync_cube();
    let mut stride2 = (RBLOCK as usize / 2).runtime();
    while stride2 > 0 {
        if tid < stride2 {
            smem[tid] = smem[tid] + smem[tid + stride2];
        }
        sync_cube();
        stride2 /= 2;
    }
    let total = smem[0];
    if g < rows {
        let o = g * len;
        let mut i = tid;
        if comptime![log] {
            let ln_total = ln_f::<F>(total, poly);
            while i < len {
                out[o + i] = x[start + i] - row_max - ln_total;
                i += RBLOCK as usize;
            }
        } else {
            let inv = F::new(1.0) / total;
            while i < len {
                out[o + i] = exp_f::<F>(x[start + i] - row_max, poly) * inv;
                i += RBLOCK as usize;
            }
        }
    }
}

impl<R: Runtime> GpuBackend<R> {
    /// One cube per row; 2-D cube counts past 65535 rows.
    fn row_grid(&self, rows: usize) -> (CubeCount, CubeDim) {
        let rows = rows.max(1) as u32;
        let x = rows.min(65_535);
        (CubeCount::Static(x, rows.div_ceil(x), 1), CubeDim::new_1d(RBLOCK))
    }

    /// The view `l` permuted so that `last` axes come after the others, as a contiguous
    /// `[rows, len]` buffer and its offset.
    fn rows_of(&self, x: &CubeStorage, l: &Layout, last: &[usize]) -> Result<(CubeStorage, usize, usize, usize)> {
        let mut perm: Vec<usize> = (0..l.rank()).filter(|a| !last.contains(a)).collect();
        perm.extend_from_slice(last);
        let v = l.permute(&perm)?;
        let len: usize = last.iter().map(|&a| l.shape()[a]).product();
        let rows = if len == 0 { 0 } else { l.numel() / len };
        match v.contiguous_offset() {
            Some(off) => Ok((x.clone(), off, rows, len)),
            None => Ok((self.copy_strided_impl(x, &v)?, 0, rows, len)),
        }
    }

    pub(super) fn reduce_impl(&self, op: ReduceOp, x: &CubeStorage, l: &Layout, axes: &[usize]) -> Result<CubeStorage> {
        self.same_device("reduce", x)?;
        let name = match op {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::ArgMax => "argmax",
            ReduceOp::ArgMin => "argmin",
        };
        if let Some(&a) = axes.iter().find(|&&a| a >= l.rank()) {
            return Err(Error::Dim { op: name, dim: a as i64, rank: l.rank() });
        }
        if axes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::shape(name, &[l.shape()], format!("axes {axes:?} must be sorted and distinct")));
        }
        let arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);
        if arg && axes.len() != 1 {
            return Err(Error::shape(name, &[l.shape()], format!("takes exactly one axis, got {axes:?}")));
        }
        let (c, off, rows, len) = self.rows_of(x, l, axes)?;
        if len == 0 && rows > 0 && op != ReduceOp::Sum {
            return Err(Error::shape(name, &[l.shape()], "reduction over an empty axis has no identity"));
        }
        let out_dtype = if arg { DType::I64 } else { x.dtype };
        self.check(name, out_dtype)?;
        if rows == 0 || len == 0 {
            // Empty input (no rows) or an empty sum (zeros).
            return self.fill_impl(rows, out_dtype, 0.0);
        }
        let out = self.alloc(rows, out_dtype)?;
        if arg {
            let (count, dim) = self.row_grid(rows);
            let max = op == ReduceOp::ArgMax;
            with_dtype!(x.dtype, N => arg_rows::launch::<N, i64, R>(
                &self.client, count, dim, self.array(&c), off, self.array(&out), rows, len, max
            ));
            return Ok(out);
        }
        let code = match op {
            ReduceOp::Sum => SUM,
            ReduceOp::Max => MAX,
            _ => MIN,
        };
        // Few long rows: fold parts of SPLIT_LEN first, then the parts.
        let parts = if rows < 64 && len > SPLIT_LEN { len.div_ceil(SPLIT_LEN) } else { 1 };
        let chunk = len.div_ceil(parts);
        let first = if parts > 1 { self.alloc(rows * parts, x.dtype)? } else { out.clone() };
        let (count, dim) = self.row_grid(rows * parts);
        with_dtype!(x.dtype, N => reduce_rows::launch::<N, R>(
            &self.client, count, dim, self.array(&c), off, self.array(&first), rows, len, chunk, parts, code
        ));
        if parts > 1 {
            let (count, dim) = self.row_grid(rows);
            with_dtype!(x.dtype, N => reduce_rows::launch::<N, R>(
                &self.client, count, dim, self.array(&first), 0, self.array(&out), rows, parts, parts, 1, code
            ));
        }
        Ok(out)
    }

    pub(super) fn softmax_impl(&self, x: &CubeStorage, l: &Layout, axis: usize, log: bool) -> Result<CubeStorage> {
        self.same_device("softmax", x)?;
        if axis >= l.rank() {
            return Err(Error::Dim { op: "softmax", dim: axis as i64, rank: l.rank() });
        }
        let (c, off, rows, len) = self.rows_of(x, l, &[axis])?;
        let out = self.alloc(l.numel(), x.dtype)?;
        if rows == 0 || len == 0 {
            return Ok(out);
        }
        let (count, dim) = self.row_grid(rows);
        let poly = self.poly(x.dtype);
        with_float!("softmax", x.dtype, F => softmax_rows::launch::<F, R>(
            &self.client, count, dim, self.array(&c), off, self.array(&out), rows, len, log, poly
        ));
        if axis == l.rank() - 1 {
            return Ok(out);
        }
        // `out` holds the rows in permuted order (axis last): move the axis back.
        let mut shape: Vec<usize> = (0..l.rank()).filter(|&a| a != axis).map(|a| l.shape()[a]).collect();
        shape.push(l.shape()[axis]);
        let mut inv: Vec<usize> = (0..l.rank() - 1).collect();
        inv.insert(axis, l.rank() - 1);
        let v = Layout::contiguous(&shape).permute(&inv)?;
        self.copy_strided_impl(&out, &v)
    }
}
