//! conv2d and its two backward kernels, by im2col + GEMM.
//!
//! Shapes: `x [n, c, h, w]`, `w [co, c/g, kh, kw]`, output/grad `[n, co, oh, ow]`, with
//! `oh = (h + 2 ph - dh (kh - 1) - 1) / sh + 1` (likewise `ow`). For a chunk of images and one
//! group, `col [K, imgs * P]` (`K = c/g * kh * kw`, `P = oh * ow`) holds
//! `col[(c, i, j), (img, y, x)] = x[img, c, y sh + i dh - ph, x sw + j dw - pw]` (0 in the
//! padding). Then, per group `g` (rows `W_g [co/g, K]` of the weight):
//! - forward:      `out_g = W_g col`
//! - grad input:   `dcol = W_g^T grad_g`, then col2im adds `dcol` back onto the input pixels
//! - grad weight:  `dW_g += grad_g col^T`, summed over the chunks in order.
//!
//! Images are processed in chunks sized so that `col` has a few hundred columns (the weight
//! is packed once per chunk, not once per image) and at most [`COL_CAP`] elements: one
//! `col`/`dcol` buffer is allocated per call and reused for every chunk. Inside a chunk,
//! im2col and col2im run in parallel over rows / planes and the GEMM splits its rows across
//! rayon tasks ([`super::par_gemm`]). Every output element is written by one task and the
//! weight gradient accumulates chunk by chunk in a fixed order, so results do not depend on
//! the thread count.
use rayon::prelude::*;

use super::matmul::{par_gemm, Mat};
use super::num::Float;
use super::{contiguous_cow, PAR_THRESHOLD};
use crate::{Conv2dParams, CpuStorage, DType, Error, Layout, Result};

/// Target number of `col` columns (`imgs * P`) per GEMM.
const COL_TARGET: usize = 512;
/// Maximum elements of the `col` buffer (16 MB of f32), unless a single image needs more.
const COL_CAP: usize = 4 << 20;

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    groups: usize,
    p: Conv2dParams,
}

impl Geo {
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn cog(&self) -> usize {
        self.co / self.groups
    }
    /// Rows of `col`: one per (input channel of a group, kernel tap).
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output pixels per image.
    fn pix(&self) -> usize {
        self.oh * self.ow
    }
    /// Images per chunk.
    fn chunk(&self) -> usize {
        let per_img = (self.k() * self.pix()).max(1);
        COL_TARGET.div_ceil(self.pix().max(1)).min(COL_CAP / per_img).clamp(1, self.n.max(1))
    }

    /// Checks the four shapes against each other and the params; `x`/`grad` spatial sizes.
    fn new(
        op: &'static str,
        x: [usize; 4],
        wshape: &[usize],
        p: &Conv2dParams,
        out_hw: Option<(usize, usize)>,
    ) -> Result<Geo> {
        let [n, c, h, w] = x;
        let bad = |msg: String| Error::shape(op, &[&x[..], wshape], msg);
        if wshape.len() != 4 {
            return Err(bad("expected a weight [c_out, c_in / groups, kh, kw]".into()));
        }
        let (co, kh, kw) = (wshape[0], wshape[2], wshape[3]);
        let groups = p.groups;
        if groups == 0 || c % groups != 0 || co % groups != 0 || wshape[1] * groups != c {
            return Err(bad(format!("channels {c} in / {co} out do not fit weight {wshape:?} with {groups} groups")));
        }
        if p.stride.0 == 0 || p.stride.1 == 0 || p.dilation.0 == 0 || p.dilation.1 == 0 {
            return Err(bad(format!("stride {:?} and dilation {:?} must be positive", p.stride, p.dilation)));
        }
        let Some((oh, ow)) = p.output_hw((h, w), (kh, kw)) else {
            return Err(bad(format!("input {h}x{w} (padding {:?}) smaller than the dilated kernel", p.padding)));
        };
        if let Some(got) = out_hw {
            if got != (oh, ow) {
                return Err(bad(format!("gradient is {got:?} but the conv's output is {:?}", (oh, ow))));
            }
        }
        Ok(Geo { n, c, h, w, co, kh, kw, oh, ow, groups, p: *p })
    }
}

fn four(op: &'static str, l: &Layout, what: &str) -> Result<[usize; 4]> {
    l.shape().try_into().map_err(|_| Error::shape(op, &[l.shape()], format!("expected a 4-D {what}")))
}

/// `col [K, imgs * P]` of group `gi` for `imgs` images of `x [imgs, c, h, w]`.
fn im2col<T: Float>(g: &Geo, x: &[T], imgs: usize, gi: usize, col: &mut [T]) {
    let (pix, cols) = (g.pix(), imgs * g.pix());
    let (sh, sw, ph, pw, dh, dw) =
        (g.p.stride.0, g.p.stride.1, g.p.padding.0, g.p.padding.1, g.p.dilation.0, g.p.dilation.1);
    let fill = |r: usize, row: &mut [T]| {
        let (cl, i, j) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let c = gi * g.cg() + cl;
        for img in 0..imgs {
            let plane = &x[(img * g.c + c) * g.h * g.w..][..g.h * g.w];
            for y in 0..g.oh {
                let dst = &mut row[img * pix + y * g.ow..][..g.ow];
                let iy = (y * sh + i * dh).wrapping_sub(ph);
                if iy >= g.h {
                    dst.fill(T::ZERO);
                    continue;
                }
                let src = &plane[iy * g.w..][..g.w];
                for (xo, d) in dst.iter_mut().enumerate() {
                    let ix = (xo * sw + j * dw).wrapping_sub(pw);
                    *d = if ix < g.w { src[ix] } else { T::ZERO };
                }
            }
        }
    };
    let col = &mut col[..g.k() * cols];
    if cols == 0 {
        return;
    }
    if col.len() >= PAR_THRESHOLD {
        col.par_chunks_mut(cols).enumerate().for_each(|(r, row)| fill(r, row));
    } else {
        col.chunks_mut(cols).enumerate().for_each(|(r, row)| fill(r, row));
    }
}

/// Adds `dcol [K, imgs * P]` of group `gi` onto `dx [imgs, c, h, w]` (the adjoint of im2col).
fn col2im<T: Float>(g: &Geo, dcol: &[T], imgs: usize, gi: usize, dx: &mut [T]) {
    let (pix, cols, hw) = (g.pix(), imgs * g.pix(), g.h * g.w);
    let (sh, sw, ph, pw, dh, dw) =
        (g.p.stride.0, g.p.stride.1, g.p.padding.0, g.p.padding.1, g.p.dilation.0, g.p.dilation.1);
    let add = |q: usize, plane: &mut [T]| {
        let (img, c) = (q / g.c, q % g.c);
        let Some(cl) = c.checked_sub(gi * g.cg()).filter(|&cl| cl < g.cg()) else { return };
        for i in 0..g.kh {
            for j in 0..g.kw {
                let r = (cl * g.kh + i) * g.kw + j;
                let src = &dcol[r * cols + img * pix..][..pix];
                for y in 0..g.oh {
                    let iy = (y * sh + i * dh).wrapping_sub(ph);
                    if iy >= g.h {
                        continue;
                    }
                    let dst = &mut plane[iy * g.w..][..g.w];
                    for (xo, &v) in src[y * g.ow..][..g.ow].iter().enumerate() {
                        let ix = (xo * sw + j * dw).wrapping_sub(pw);
                        if ix < g.w {
                            dst[ix] = T::add(dst[ix], v);
                        }
                    }
                }
            }
        }
    };
    let dx = &mut dx[..imgs * g.c * hw];
    if hw == 0 {
        return;
    }
    if dcol.len() >= PAR_THRESHOLD {
        dx.par_chunks_mut(hw).enumerate().for_each(|(q, plane)| add(q, plane));
    } else {
        dx.chunks_mut(hw).enumerate().for_each(|(q, plane)| add(q, plane));
    }
}

/// Copies rows `gi * cog ..` of `imgs` images of `t [imgs, co, P]` into `buf [cog, imgs * P]`
/// (`to_buf`), or back (`!to_buf`).
fn regroup<T: Float>(g: &Geo, t: &mut [T], buf: &mut [T], imgs: usize, gi: usize, to_buf: bool) {
    let (pix, cog) = (g.pix(), g.cog());
    for img in 0..imgs {
        for r in 0..cog {
            let a = &mut t[(img * g.co + gi * cog + r) * pix..][..pix];
            let b = &mut buf[(r * imgs + img) * pix..][..pix];
            if to_buf {
                b.copy_from_slice(a);
            } else {
                a.copy_from_slice(b);
            }
        }
    }
}

fn forward<T: Float>(g: &Geo, x: &[T], wt: &[T]) -> Result<Vec<T>> {
    let (k, pix, cog) = (g.k(), g.pix(), g.cog());
    let mut out = T::filled(g.n * g.co * pix, T::ZERO)?;
    let chunk = g.chunk();
    let mut col = T::filled(k * chunk * pix, T::ZERO)?;
    let mut tmp = T::filled(cog * chunk * pix, T::ZERO)?;
    for n0 in (0..g.n).step_by(chunk) {
        let imgs = chunk.min(g.n - n0);
        let cols = imgs * pix;
        let xs = &x[n0 * g.c * g.h * g.w..];
        let os = &mut out[n0 * g.co * pix..][..imgs * g.co * pix];
        for gi in 0..g.groups {
            im2col(g, xs, imgs, gi, &mut col);
            let wg = Mat::row_major(&wt[gi * cog * k..][..cog * k], k);
            let colm = Mat::row_major(&col[..k * cols], cols);
            if imgs == 1 {
                par_gemm(cog, k, cols, wg, colm, &mut os[gi * cog * pix..][..cog * pix], false)?;
            } else {
                par_gemm(cog, k, cols, wg, colm, &mut tmp[..cog * cols], false)?;
                regroup(g, os, &mut tmp, imgs, gi, false);
            }
        }
    }
    // scratch buffers go back to the pool for the next call
    T::give(col);
    T::give(tmp);
    Ok(out)
}

fn grad_input<T: Float>(g: &Geo, grad: &[T], wt: &[T]) -> Result<Vec<T>> {
    let (k, pix, cog) = (g.k(), g.pix(), g.cog());
    let mut dx = T::filled(g.n * g.c * g.h * g.w, T::ZERO)?;
    let chunk = g.chunk();
    let mut dcol = T::filled(k * chunk * pix, T::ZERO)?;
    let mut gbuf = T::filled(cog * chunk * pix, T::ZERO)?;
    let mut gchunk = T::filled(chunk * g.co * pix, T::ZERO)?;
    for n0 in (0..g.n).step_by(chunk) {
        let imgs = chunk.min(g.n - n0);
        let cols = imgs * pix;
        gchunk[..imgs * g.co * pix].copy_from_slice(&grad[n0 * g.co * pix..][..imgs * g.co * pix]);
        for gi in 0..g.groups {
            regroup(g, &mut gchunk, &mut gbuf, imgs, gi, true);
            let wg_t = Mat::row_major(&wt[gi * cog * k..][..cog * k], k).t();
            par_gemm(k, cog, cols, wg_t, Mat::row_major(&gbuf[..cog * cols], cols), &mut dcol[..k * cols], false)?;
            col2im(g, &dcol[..k * cols], imgs, gi, &mut dx[n0 * g.c * g.h * g.w..]);
        }
    }
    T::give(dcol);
    T::give(gbuf);
    T::give(gchunk);
    Ok(dx)
}

fn grad_weight<T: Float>(g: &Geo, x: &[T], grad: &[T]) -> Result<Vec<T>> {
    let (k, pix, cog) = (g.k(), g.pix(), g.cog());
    let mut dw = T::filled(g.co * k, T::ZERO)?;
    let chunk = g.chunk();
    let mut col = T::filled(k * chunk * pix, T::ZERO)?;
    let mut gbuf = T::filled(cog * chunk * pix, T::ZERO)?;
    let mut gchunk = T::filled(chunk * g.co * pix, T::ZERO)?;
    for n0 in (0..g.n).step_by(chunk) {
        let imgs = chunk.min(g.n - n0);
        let cols = imgs * pix;
        let xs = &x[n0 * g.c * g.h * g.w..];
        gchunk[..imgs * g.co * pix].copy_from_slice(&grad[n0 * g.co * pix..][..imgs * g.co * pix]);
        for gi in 0..g.groups {
            im2col(g, xs, imgs, gi, &mut col);
            regroup(g, &mut gchunk, &mut gbuf, imgs, gi, true);
            let colt = Mat::row_major(&col[..k * cols], cols).t();
            let gm = Mat::row_major(&gbuf[..cog * cols], cols);
            par_gemm(cog, cols, k, gm, colt, &mut dw[gi * cog * k..][..cog * k], true)?;
        }
    }
    T::give(col);
    T::give(gbuf);
    T::give(gchunk);
    Ok(dw)
}

/// Runs `f` on the two operands as one float type, or reports their dtypes.
macro_rules! float_pair {
    ($op:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (CpuStorage::F32($x), CpuStorage::F32($y)) => CpuStorage::F32($body.into()),
            (CpuStorage::F64($x), CpuStorage::F64($y)) => CpuStorage::F64($body.into()),
            (CpuStorage::I64(_), CpuStorage::I64(_)) => {
                return Err(Error::DType { op: $op, expected: "a float dtype (f32 or f64)", got: DType::I64 })
            }
            (a, b) => return Err(Error::DTypeMismatch { op: $op, lhs: a.dtype(), rhs: b.dtype() }),
        }
    };
}

/// `x [n, c_in, h, w]` conv `w [c_out, c_in / groups, kh, kw]` -> `[n, c_out, oh, ow]`.
pub fn conv2d(x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout, p: &Conv2dParams) -> Result<CpuStorage> {
    const OP: &str = "conv2d";
    let g = Geo::new(OP, four(OP, lx, "input [n, c, h, w]")?, lw.shape(), p, None)?;
    Ok(float_pair!(OP, x, w, |x, w| forward(&g, &contiguous_cow(x, lx)?, &contiguous_cow(w, lw)?)?))
}

/// Gradient of conv2d w.r.t. its input of spatial size `input_hw`: `grad [n, c_out, oh, ow]`,
/// `w [c_out, c_in / groups, kh, kw]` -> `[n, c_in, h, w]`.
pub fn conv2d_grad_input(
    grad: &CpuStorage,
    lg: &Layout,
    w: &CpuStorage,
    lw: &Layout,
    p: &Conv2dParams,
    input_hw: (usize, usize),
) -> Result<CpuStorage> {
    const OP: &str = "conv2d_grad_input";
    let [n, co, oh, ow] = four(OP, lg, "gradient [n, c_out, oh, ow]")?;
    let c = lw.shape().get(1).map_or(0, |cg| cg * p.groups);
    let g = Geo::new(OP, [n, c, input_hw.0, input_hw.1], lw.shape(), p, Some((oh, ow)))?;
    if g.co != co {
        return Err(Error::shape(OP, &[lg.shape(), lw.shape()], "gradient and weight disagree on c_out"));
    }
    Ok(float_pair!(OP, grad, w, |gr, w| grad_input(&g, &contiguous_cow(gr, lg)?, &contiguous_cow(w, lw)?)?))
}

/// Gradient of conv2d w.r.t. its weight of spatial size `kernel_hw`: `x [n, c_in, h, w]`,
/// `grad [n, c_out, oh, ow]` -> `[c_out, c_in / groups, kh, kw]`, summed over the batch.
pub fn conv2d_grad_weight(
    x: &CpuStorage,
    lx: &Layout,
    grad: &CpuStorage,
    lg: &Layout,
    p: &Conv2dParams,
    kernel_hw: (usize, usize),
) -> Result<CpuStorage> {
    const OP: &str = "conv2d_grad_weight";
    let xs = four(OP, lx, "input [n, c, h, w]")?;
    let [n, co, oh, ow] = four(OP, lg, "gradient [n, c_out, oh, ow]")?;
    let groups = p.groups.max(1);
    let wshape = [co, xs[1] / groups, kernel_hw.0, kernel_hw.1];
    let g = Geo::new(OP, xs, &wshape, p, Some((oh, ow)))?;
    if n != xs[0] {
        return Err(Error::shape(OP, &[lx.shape(), lg.shape()], "input and gradient disagree on the batch size"));
    }
    Ok(float_pair!(OP, x, grad, |x, gr| grad_weight(&g, &contiguous_cow(x, lx)?, &contiguous_cow(gr, lg)?)?))
}
