//! Reductions (sum, max, min, argmax, argmin) over a set of axes, and softmax along one.
//!
//! Every reduction is brought to the shape `[outer, red, inner]` of a contiguous buffer:
//! the reduced axes form one run `red` (when they are not adjacent, the input is first
//! copied with the kept axes moved to the front, so `inner = 1`). Output element
//! `(o, i)` folds `x[o, 0.., i]`.
//!
//! Numerics and determinism: an f32 sum accumulates in f64. A reduction over a contiguous
//! run is cut into fixed blocks of [`BLOCK`] elements, each folded into 16 lanes, and the
//! block results are merged left to right. The cut depends only on the shape, never on the
//! number of rayon threads, so results are bit-identical for any thread count.
//! Max and min propagate NaN; argmax/argmin count NaN as the extreme and return the first
//! index on ties. Softmax subtracts the row maximum before `exp`:
//! `softmax(x)_j = e^(x_j - m) / sum_k e^(x_k - m)`, `log_softmax = x_j - m - ln(sum)`.
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::num::{Float, Num};
use super::{contiguous, contiguous_cow, vectorized, PAR_CHUNK, PAR_THRESHOLD};
use crate::{CpuStorage, DType, Error, Layout, ReduceOp, Result};

/// Elements per block of a reduction over a contiguous run (fixed: determinism).
const BLOCK: usize = 1 << 14;
/// Output columns per task when reducing over a non-innermost run.
const COLS: usize = 1 << 10;

/// A fold: how elements combine into an accumulator, and how two accumulators merge.
trait Fold<T>: Sync {
    type Acc: Copy + Send + Sync;
    type Out: Copy + Send + Sync + Default;
    fn init(&self) -> Self::Acc;
    /// Folds element `x`, found at position `r` along the reduced run.
    fn step(&self, acc: Self::Acc, x: T, r: usize) -> Self::Acc;
    /// Merges the accumulator of an earlier stretch (`a`) with a later one (`b`).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn finish(&self, acc: Self::Acc) -> Self::Out;
}

struct SumFold;
impl<T: Num> Fold<T> for SumFold {
    type Acc = T::Sum;
    type Out = T;
    #[inline(always)]
    fn init(&self) -> T::Sum {
        T::Sum::default()
    }
    #[inline(always)]
    fn step(&self, acc: T::Sum, x: T, _: usize) -> T::Sum {
        T::sum_add(acc, x.to_sum())
    }
    #[inline(always)]
    fn merge(&self, a: T::Sum, b: T::Sum) -> T::Sum {
        T::sum_add(a, b)
    }
    #[inline(always)]
    fn finish(&self, acc: T::Sum) -> T {
        T::from_sum(acc)
    }
}

/// True when `b` should replace `a` as the running max (`MAX`) or min; NaN wins over numbers.
#[inline(always)]
fn better<T: Num, const MAX: bool>(b: T, a: T) -> bool {
    if a.is_nan() {
        return false;
    }
    b.is_nan() || if MAX { b > a } else { b < a }
}

struct ExtremeFold<const MAX: bool>;
impl<T: Num, const MAX: bool> Fold<T> for ExtremeFold<MAX> {
    type Acc = T;
    type Out = T;
    #[inline(always)]
    fn init(&self) -> T {
        if MAX {
            T::LOWEST
        } else {
            T::HIGHEST
        }
    }
    #[inline(always)]
    fn step(&self, acc: T, x: T, _: usize) -> T {
        if better::<T, MAX>(x, acc) {
            x
        } else {
            acc
        }
    }
    #[inline(always)]
    fn merge(&self, a: T, b: T) -> T {
        self.step(a, b, 0)
    }
    #[inline(always)]
    fn finish(&self, acc: T) -> T {
        acc
    }
}

struct ArgFold<const MAX: bool>;
impl<T: Num, const MAX: bool> Fold<T> for ArgFold<MAX> {
    // (value, index); index usize::MAX = nothing seen yet.
    type Acc = (T, usize);
    type Out = i64;
    #[inline(always)]
    fn init(&self) -> (T, usize) {
        (if MAX { T::LOWEST } else { T::HIGHEST }, usize::MAX)
    }
    #[inline(always)]
    fn step(&self, acc: (T, usize), x: T, r: usize) -> (T, usize) {
        self.merge(acc, (x, r))
    }
    #[inline(always)]
    fn merge(&self, a: (T, usize), b: (T, usize)) -> (T, usize) {
        let tie = (a.0 == b.0 || (a.0.is_nan() && b.0.is_nan())) && b.1 < a.1;
        if a.1 == usize::MAX || better::<T, MAX>(b.0, a.0) || tie {
            b
        } else {
            a
        }
    }
    #[inline(always)]
    fn finish(&self, acc: (T, usize)) -> i64 {
        acc.1 as i64
    }
}

/// Independent accumulators per block: enough that the fold is throughput-bound, not bound
/// by the latency of one add chain (16 f64 lanes are two AVX-512 or four AVX2 registers).
const LANES: usize = 16;

/// Folds one block of a contiguous run (`r0` = position of `xs[0]` along the run) in
/// [`LANES`] independent lanes, so the loop vectorises, then merges the lanes pairwise in
/// a fixed order.
#[inline(always)]
fn fold_block<T: Num, F: Fold<T>>(f: &F, xs: &[T], r0: usize) -> F::Acc {
    let mut lanes = [f.init(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    let mut r = r0;
    for c in &mut chunks {
        for j in 0..LANES {
            lanes[j] = f.step(lanes[j], c[j], r + j);
        }
        r += LANES;
    }
    for (j, &x) in chunks.remainder().iter().enumerate() {
        lanes[j] = f.step(lanes[j], x, r + j);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            lanes[j] = f.merge(lanes[2 * j], lanes[2 * j + 1]);
        }
    }
    lanes[0]
}

/// Folds a contiguous run: fixed blocks, merged left to right; the blocks in parallel when
/// `par` (same blocks, same merge order, so the same bits).
fn fold_run<T: Num, F: Fold<T>>(f: &F, xs: &[T], par: bool) -> F::Acc {
    let block = |(b, c): (usize, &[T])| {
        vectorized(
            #[inline(always)]
            || fold_block(f, c, b * BLOCK),
        )
    };
    if par && xs.len() > BLOCK {
        let parts: Vec<F::Acc> = xs.par_chunks(BLOCK).enumerate().map(block).collect();
        parts.into_iter().fold(f.init(), |a, b| f.merge(a, b))
    } else {
        xs.chunks(BLOCK).enumerate().map(block).fold(f.init(), |a, b| f.merge(a, b))
    }
}

/// `out[o, i] = fold_r x[o, r, i]` over a contiguous `[outer, red, inner]` buffer.
fn fold3<T: Num, F: Fold<T>>(f: &F, x: &[T], outer: usize, red: usize, inner: usize) -> Result<Vec<F::Out>> {
    // outer * inner fits: it is the element count of the (checked) output shape.
    let mut out = super::try_filled(outer * inner, F::Out::default())?;
    if out.is_empty() {
        return Ok(out);
    }
    let par = x.len() >= PAR_THRESHOLD;
    if inner == 1 {
        let row = |(o, y): (usize, &mut F::Out)| *y = f.finish(fold_run(f, &x[o * red..(o + 1) * red], false));
        if !par {
            vectorized(
                #[inline(always)]
                || out.iter_mut().enumerate().for_each(row),
            );
        } else if outer >= 16 {
            let min_len = (PAR_CHUNK / red.max(1)).max(1);
            out.par_iter_mut().enumerate().with_min_len(min_len).for_each(row);
        } else {
            for (o, y) in out.iter_mut().enumerate() {
                *y = f.finish(fold_run(f, &x[o * red..(o + 1) * red], true));
            }
        }
        return Ok(out);
    }
    // inner > 1: accumulate whole rows (vectorises over i), a stretch of COLS columns per task.
    let cols = |o: usize, c: usize, y: &mut [F::Out]| {
        vectorized(
            #[inline(always)]
            || {
                let i0 = c * COLS;
                let mut acc = vec![f.init(); y.len()];
                for r in 0..red {
                    let row = &x[(o * red + r) * inner + i0..][..y.len()];
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a = f.step(*a, v, r);
                    }
                }
                for (y, a) in y.iter_mut().zip(acc) {
                    *y = f.finish(a);
                }
            },
        )
    };
    if par {
        out.par_chunks_mut(inner).enumerate().for_each(|(o, yo)| {
            yo.par_chunks_mut(COLS).enumerate().for_each(|(c, y)| cols(o, c, y));
        });
    } else {
        for (o, yo) in out.chunks_mut(inner).enumerate() {
            for (c, y) in yo.chunks_mut(COLS).enumerate() {
                cols(o, c, y);
            }
        }
    }
    Ok(out)
}

fn op_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
        ReduceOp::ArgMax => "argmax",
        ReduceOp::ArgMin => "argmin",
    }
}

/// The view as a contiguous `[outer, red, inner]` buffer for a reduction over `axes`.
fn as_3d<'a, T: Num>(x: &'a [T], l: &Layout, axes: &[usize]) -> Result<(std::borrow::Cow<'a, [T]>, [usize; 3])> {
    let shape = l.shape();
    // Size-1 axes reduce to themselves; dropping them can make the run adjacent.
    let axes: Vec<usize> = axes.iter().copied().filter(|&a| shape[a] != 1).collect();
    let prod = |r: std::ops::Range<usize>| shape[r].iter().product::<usize>();
    Ok(match (axes.first(), axes.last()) {
        (None, _) | (_, None) => (contiguous_cow(x, l)?, [l.numel(), 1, 1]),
        (Some(&a0), Some(&a1)) if a1 - a0 + 1 == axes.len() => {
            (contiguous_cow(x, l)?, [prod(0..a0), prod(a0..a1 + 1), prod(a1 + 1..shape.len())])
        }
        _ => {
            let mut perm: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
            let outer = perm.iter().map(|&d| shape[d]).product();
            perm.extend_from_slice(&axes);
            let red = axes.iter().map(|&d| shape[d]).product();
            // `perm` is a permutation by construction.
            let pl = l.permute(&perm).unwrap_or_else(|_| l.clone());
            (std::borrow::Cow::Owned(contiguous(x, &pl)?), [outer, red, 1])
        }
    })
}

fn reduce_typed<T: Num>(op: ReduceOp, x: &[T], l: &Layout, axes: &[usize]) -> Result<CpuStorage> {
    let (buf, [outer, red, inner]) = as_3d(x, l, axes)?;
    if red == 0 && outer * inner > 0 && op != ReduceOp::Sum {
        return Err(Error::shape(op_name(op), &[l.shape()], format!("reduction over an empty dimension {axes:?}")));
    }
    let x = &buf[..];
    Ok(match op {
        ReduceOp::Sum => T::into_storage(fold3(&SumFold, x, outer, red, inner)?),
        ReduceOp::Max => T::into_storage(fold3(&ExtremeFold::<true>, x, outer, red, inner)?),
        ReduceOp::Min => T::into_storage(fold3(&ExtremeFold::<false>, x, outer, red, inner)?),
        ReduceOp::ArgMax => CpuStorage::I64(fold3(&ArgFold::<true>, x, outer, red, inner)?.into()),
        ReduceOp::ArgMin => CpuStorage::I64(fold3(&ArgFold::<false>, x, outer, red, inner)?.into()),
    })
}

/// Reduces the view `l` over `axes` (sorted, distinct). The output is contiguous with the
/// reduced axes kept as size 1; ArgMax/ArgMin take exactly one axis and return i64.
pub fn reduce(op: ReduceOp, x: &CpuStorage, l: &Layout, axes: &[usize]) -> Result<CpuStorage> {
    let name = op_name(op);
    if let Some(&a) = axes.iter().find(|&&a| a >= l.rank()) {
        return Err(Error::Dim { op: name, dim: a as i64, rank: l.rank() });
    }
    if axes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::shape(name, &[l.shape()], format!("axes {axes:?} are not sorted and distinct")));
    }
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) && axes.len() != 1 {
        return Err(Error::shape(name, &[l.shape()], format!("takes exactly one axis, got {axes:?}")));
    }
    match x {
        CpuStorage::F32(v) => reduce_typed(op, v, l, axes),
        CpuStorage::F64(v) => reduce_typed(op, v, l, axes),
        CpuStorage::I64(v) => reduce_typed(op, v, l, axes),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => Err(super::half_in_kernel(name)),
    }
}

/// The f64 sum of `xs` in [`LANES`] lanes (a plain `+=` loop does not vectorise: IEEE
/// addition is not reassociated).
#[inline(always)]
fn lane_sum<T: Float>(xs: &[T]) -> f64 {
    let mut s = [0.0f64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            s[j] += c[j].to_sum();
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        s[j] += v.to_sum();
    }
    s.iter().sum()
}

/// Softmax (or log-softmax) of one contiguous row `x` into `y`: the max (in lanes), then
/// `e^(x - m)` into `y` (a plain map the compiler vectorises), its f64 sum, and one last
/// pass over `y` (scaling, or `x - m - ln(sum)`), the row being in L1 throughout.
#[inline(always)]
fn softmax_row<T: Float>(x: &[T], y: &mut [MaybeUninit<T>], log: bool) {
    // NaN needs no test here: it reaches the sum, and so every output of its row.
    let mut m = [T::LOWEST; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            m[j] = if c[j] > m[j] { c[j] } else { m[j] };
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        m[j] = if v > m[j] { v } else { m[j] };
    }
    let m = m.iter().fold(T::LOWEST, |a, &b| if b > a { b } else { a });
    for (y, &v) in y.iter_mut().zip(x) {
        y.write((v - m).exp());
    }
    // SAFETY: the loop above wrote every element of `y` (a zip of equal lengths), and
    // `MaybeUninit<T>` has the layout of `T`.
    let y = unsafe { &mut *(y as *mut [MaybeUninit<T>] as *mut [T]) };
    let s = lane_sum(y);
    if log {
        let ls = T::from_sum(s.ln());
        for (y, &v) in y.iter_mut().zip(x) {
            *y = v - m - ls;
        }
    } else {
        let r = T::from_sum(1.0 / s);
        for y in y.iter_mut() {
            *y = *y * r;
        }
    }
}

/// Softmax (or log-softmax) of one `[n, inner]` block with `inner > 1`: column-wise max
/// and sums (vectorised across the columns), then one pass writing each output.
fn softmax_block<T: Float>(x: &[T], y: &mut [MaybeUninit<T>], inner: usize, log: bool) {
    let mut m = vec![T::LOWEST; inner];
    for row in x.chunks_exact(inner) {
        for (m, &v) in m.iter_mut().zip(row) {
            if better::<T, true>(v, *m) {
                *m = v;
            }
        }
    }
    let mut s = vec![0.0f64; inner];
    for xr in x.chunks_exact(inner) {
        for ((&v, &m), s) in xr.iter().zip(&m).zip(s.iter_mut()) {
            *s += (v - m).exp().to_sum();
        }
    }
    // per column: ln(sum) for log-softmax, 1 / sum for softmax
    let k: Vec<T> = s.iter().map(|&s| T::from_sum(if log { s.ln() } else { 1.0 / s })).collect();
    for (yr, xr) in y.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
        for (((y, &v), &m), &k) in yr.iter_mut().zip(xr).zip(&m).zip(&k) {
            y.write(if log { v - m - k } else { (v - m).exp() * k });
        }
    }
}

fn softmax_typed<T: Float>(x: &[T], l: &Layout, axis: usize, log: bool) -> Result<Vec<T>> {
    let x = contiguous_cow(x, l)?;
    let shape = l.shape();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let block = n * inner;
    if block == 0 {
        return T::filled(x.len(), T::ZERO);
    }
    // SAFETY: chunks are whole blocks (`build` aligns them to `block`), and both block
    // kernels write every element of the block they are given.
    unsafe {
        super::build(x.len(), block, |start, o| {
            let xs = &x[start..start + o.len()];
            vectorized(
                #[inline(always)]
                || {
                    for (yb, xb) in o.chunks_mut(block).zip(xs.chunks(block)) {
                        if inner == 1 {
                            softmax_row(xb, yb, log);
                        } else {
                            softmax_block(xb, yb, inner, log);
                        }
                    }
                },
            )
        })
    }
}

/// Numerically stable softmax (or log-softmax) along `axis` of the view `l`; contiguous output.
pub fn softmax(x: &CpuStorage, l: &Layout, axis: usize, log: bool) -> Result<CpuStorage> {
    let op = if log { "log_softmax" } else { "softmax" };
    if axis >= l.rank() {
        return Err(Error::Dim { op, dim: axis as i64, rank: l.rank() });
    }
    Ok(match x {
        CpuStorage::F32(v) => CpuStorage::F32(softmax_typed(v, l, axis, log)?.into()),
        CpuStorage::F64(v) => CpuStorage::F64(softmax_typed(v, l, axis, log)?.into()),
        CpuStorage::I64(_) => return Err(Error::DType { op, expected: "a float dtype", got: DType::I64 }),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => return Err(super::half_in_kernel(op)),
    })
}
