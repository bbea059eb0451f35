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
//! Images are processed in chunks of about [`COL_TARGET`] columns (the weight is packed once
//! per chunk, not once per image; a column split gives each thread a wide block), the batch
//! cut into equal chunks. A chunk's `K` rows are taken in blocks of whole input channels so
//! that the `col`/`dcol` buffer stays under [`COL_CAP`] elements: the forward GEMM
//! accumulates over the blocks, the weight gradient writes a column block of `dW` per block,
//! and col2im of a block touches only its own channels' planes. One buffer is allocated per
//! call and reused for every block. im2col gathers each row through a tap table ([`Taps`];
//! past its size, each row's valid span is computed once) in parallel over rows; col2im runs
//! in parallel over input planes; the GEMMs split across rayon tasks ([`super::par_gemm`]). Every output
//! element is written by one task and sums run in a fixed order (blocks and chunks in
//! turn), so results do not depend on the thread count.

use super::contiguous_cow;
use super::matmul::{par_gemm, par_gemm_strided, Mat};
use super::num::Float;
use super::vmath::vectorized;
use crate::{Conv2dParams, CpuStorage, DType, Error, Layout, Result};

/// Target number of `col` columns (`imgs * P`) per GEMM: enough that the weight, packed once
/// per chunk, costs little beside the product, and that a column split gives each of a few
/// threads a wide block.
const COL_TARGET: usize = 2048;
/// Maximum elements of the `col` buffer (16 MB of f32), unless one kernel row of a chunk
/// (`kh kw` rows) needs more: a chunk's `K` rows are taken in blocks of whole input
/// channels that fit.
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
    /// Images per chunk: about [`COL_TARGET`] columns, at most [`COL_CAP`] elements in one
    /// channel's rows, the batch cut into equal chunks.
    fn chunk(&self) -> usize {
        let taps = (self.kh * self.kw * self.pix()).max(1);
        let most = COL_TARGET.div_ceil(self.pix().max(1)).min(COL_CAP / taps).clamp(1, self.n.max(1));
        self.n.max(1).div_ceil(self.n.max(1).div_ceil(most))
    }
    /// Input channels per `col` block for chunks of `imgs` images.
    fn channels(&self, imgs: usize) -> usize {
        (COL_CAP / (self.kh * self.kw * imgs * self.pix()).max(1)).clamp(1, self.cg().max(1))
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

/// The outputs `lo..hi` of one axis whose input `o * stride + off - pad` lies in `0..len`.
fn span(outs: usize, len: usize, stride: usize, off: usize, pad: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(off).div_ceil(stride);
    let hi = if len + pad > off { ((len + pad - off - 1) / stride + 1).min(outs) } else { 0 };
    (lo.min(hi), hi)
}

/// Offsets no tap reads: a tap landing in the padding (reads 0, adds nothing).
const PAD: u32 = u32::MAX;
/// Largest tap table ([`Taps`]) built, in entries (16 MiB); beyond it the row-wise loops run.
const TABLE_MAX: usize = 1 << 22;

/// Where each kernel tap of each output pixel reads the input plane: `at[t * P + p]` is the
/// offset `y * w + x` in the plane of tap `t = (i, j)` at output pixel `p = (oy, ox)`, or
/// [`PAD`]; `by_pixel[p * taps + t]` is the same table transposed. With it, im2col and col2im
/// are one flat gather or scatter per row, however small the output (PrimaryCaps' rows are 6
/// pixels at stride 2, where walking row segments cost more than the copies).
struct Taps {
    at: Vec<u32>,
    by_pixel: Vec<u32>,
}

impl Taps {
    /// `None` when the table would pass [`TABLE_MAX`] or a plane has `u32::MAX` pixels or more.
    fn new(g: &Geo) -> Result<Option<Taps>> {
        let (taps, pix) = (g.kh * g.kw, g.pix());
        if taps.saturating_mul(pix) > TABLE_MAX || g.h.saturating_mul(g.w) >= PAD as usize {
            return Ok(None);
        }
        let (sh, sw, ph, pw, dh, dw) =
            (g.p.stride.0, g.p.stride.1, g.p.padding.0, g.p.padding.1, g.p.dilation.0, g.p.dilation.1);
        let mut at = super::try_vec::<u32>(taps * pix)?;
        for t in 0..taps {
            let (i, j) = (t / g.kw, t % g.kw);
            for p in 0..pix {
                let (y, x) = ((p / g.ow * sh + i * dh).wrapping_sub(ph), (p % g.ow * sw + j * dw).wrapping_sub(pw));
                // a coordinate in the padding wrapped past the plane's size
                at.push(if y < g.h && x < g.w { (y * g.w + x) as u32 } else { PAD });
            }
        }
        let mut by_pixel = super::try_vec::<u32>(taps * pix)?;
        by_pixel.extend((0..taps * pix).map(|e| at[e % taps * pix + e / taps]));
        Ok(Some(Taps { at, by_pixel }))
    }

    /// The table inverted for a transposed block `dcolT [imgs P, rows]`: input pixel `q` of a
    /// plane receives `dcolT[base + e]` for each `e` in `idx[start[q]..start[q + 1]]` (`e = p
    /// rows + t`, taps in order), `base` being the plane's first element (`img P rows + (c -
    /// c0) taps`). `None` when an entry would not fit a `u32`.
    fn inverse(&self, g: &Geo, rows: usize) -> Result<Option<Inverse>> {
        let (pix, hw) = (g.pix(), g.h * g.w);
        if pix.saturating_mul(rows) >= PAD as usize {
            return Ok(None);
        }
        let mut start = super::try_vec::<u32>(hw + 1)?;
        start.resize(hw + 1, 0);
        for &o in self.at.iter().filter(|&&o| o != PAD) {
            start[o as usize + 1] += 1;
        }
        for q in 0..hw {
            start[q + 1] += start[q];
        }
        let mut next = start.clone();
        let mut idx = super::try_vec::<u32>(start[hw] as usize)?;
        idx.resize(start[hw] as usize, 0);
        for (e, &o) in self.at.iter().enumerate() {
            if o != PAD {
                let slot = &mut next[o as usize];
                idx[*slot as usize] = ((e % pix) * rows + e / pix) as u32;
                *slot += 1;
            }
        }
        Ok(Some(Inverse { start, idx }))
    }
}

/// [`Taps::inverse`]: each input pixel's entries of a transposed `dcolT` block.
struct Inverse {
    start: Vec<u32>,
    idx: Vec<u32>,
}

/// `out[e] = plane[at[e]]`, 0 where `at[e]` is [`PAD`] (or past the plane): branch-free (a
/// clamped read and a select), so that under [`vectorized`] it compiles to SIMD gathers.
#[inline(always)]
fn gather<T: Float>(out: &mut [T], plane: &[T], at: &[u32]) {
    let Some(last) = plane.len().checked_sub(1) else {
        out.fill(T::ZERO);
        return;
    };
    for (d, &o) in out.iter_mut().zip(at) {
        let o = o as usize;
        let v = plane[o.min(last)];
        *d = if o <= last { v } else { T::ZERO };
    }
}

/// `col [(c1 - c0) kh kw, imgs * P]`: the rows of absolute input channels `c0..c1` for `imgs`
/// images of `x [imgs, c, h, w]`, in parallel over rows. With a tap table each row is a flat
/// gather; without one each output row's valid span is computed once, so a row is a copy
/// (stride 1) or a strided gather (stride > 1) between two zero fills.
fn im2col<T: Float>(g: &Geo, x: &[T], imgs: usize, (c0, c1): (usize, usize), col: &mut [T], tab: Option<&Taps>) {
    let (pix, cols, taps, hw) = (g.pix(), imgs * g.pix(), g.kh * g.kw, g.h * g.w);
    let (sh, sw, ph, pw, dh, dw) =
        (g.p.stride.0, g.p.stride.1, g.p.padding.0, g.p.padding.1, g.p.dilation.0, g.p.dilation.1);
    let fill = |r: usize, row: &mut [T]| {
        let (c, t) = (c0 + r / taps, r % taps);
        if let Some(tab) = tab {
            let at = &tab.at[t * pix..][..pix];
            vectorized(
                #[inline(always)]
                || {
                    for (img, out) in row.chunks_exact_mut(pix).enumerate() {
                        gather(out, &x[(img * g.c + c) * hw..][..hw], at);
                    }
                },
            );
            return;
        }
        let (i, j) = (t / g.kw, t % g.kw);
        let (xlo, xhi) = span(g.ow, g.w, sw, j * dw, pw);
        let (ylo, yhi) = span(g.oh, g.h, sh, i * dh, ph);
        let ix0 = (xlo * sw + j * dw).wrapping_sub(pw);
        for img in 0..imgs {
            let plane = &x[(img * g.c + c) * hw..][..hw];
            let out = &mut row[img * pix..][..pix];
            out[..ylo * g.ow].fill(T::ZERO);
            out[yhi * g.ow..].fill(T::ZERO);
            for y in ylo..yhi {
                let dst = &mut out[y * g.ow..][..g.ow];
                let src = &plane[(y * sh + i * dh - ph) * g.w..][..g.w];
                dst[..xlo].fill(T::ZERO);
                dst[xhi..].fill(T::ZERO);
                let dst = &mut dst[xlo..xhi];
                if dst.is_empty() {
                    continue;
                }
                // the last input read is `ix0 + (len - 1) sw`, inside the row by `span`
                let src = &src[ix0..=ix0 + (dst.len() - 1) * sw];
                match sw {
                    1 => dst.copy_from_slice(src),
                    _ => dst.iter_mut().zip(src.iter().step_by(sw)).for_each(|(d, s)| *d = *s),
                }
            }
        }
    };
    super::rows(&mut col[..(c1 - c0) * taps * cols], cols, fill);
}

/// `colT [imgs * P, (c1 - c0) kh kw]`, the transpose of [`im2col`]'s block, in parallel over
/// its rows (one per output pixel): each row gathers every tap of each channel from that
/// channel's plane. The weight gradient reads it as a row-major right operand, which the
/// GEMM packs with contiguous loads (the transposed view of `col` is packed by gathers).
fn im2col_t<T: Float>(g: &Geo, x: &[T], imgs: usize, (c0, c1): (usize, usize), colt: &mut [T], tab: &Taps) {
    let (pix, taps, hw) = (g.pix(), g.kh * g.kw, g.h * g.w);
    let rows = (c1 - c0) * taps;
    let fill = |q: usize, row: &mut [T]| {
        let (img, p) = (q / pix, q % pix);
        let at = &tab.by_pixel[p * taps..][..taps];
        vectorized(
            #[inline(always)]
            || {
                for (c, out) in (c0..c1).zip(row.chunks_exact_mut(taps)) {
                    gather(out, &x[(img * g.c + c) * hw..][..hw], at);
                }
            },
        );
    };
    super::rows(&mut colt[..imgs * pix * rows], rows, fill);
}

/// Adds the gradient of an [`im2col`] block of channels `c0..c1` onto `dx [imgs, c, h, w]`
/// (the adjoint of im2col), in parallel over the input planes. With the inverted tap table
/// (`inv`) the block is the transposed `dcolT [imgs P, rows]` (an image's rows lie together,
/// so its planes read one compact slab) and each pixel gathers its taps' values and is
/// written once: `dx` need not be zeroed (each plane belongs to one channel block of one
/// chunk). Without it the block is `dcol [rows, imgs P]`, and each plane adds its taps' row
/// segments in order onto zeros.
fn col2im<T: Float>(g: &Geo, dcol: &[T], imgs: usize, (c0, c1): (usize, usize), dx: &mut [T], inv: Option<&Inverse>) {
    let (pix, cols, hw, taps) = (g.pix(), imgs * g.pix(), g.h * g.w, g.kh * g.kw);
    let rows = (c1 - c0) * taps;
    let (sh, sw, ph, pw, dh, dw) =
        (g.p.stride.0, g.p.stride.1, g.p.padding.0, g.p.padding.1, g.p.dilation.0, g.p.dilation.1);
    let add = |q: usize, plane: &mut [T]| {
        let (img, c) = (q / g.c, q % g.c);
        if c < c0 || c >= c1 {
            return;
        }
        if let Some(inv) = inv {
            let block = &dcol[img * pix * rows + (c - c0) * taps..];
            for (q, d) in plane.iter_mut().enumerate() {
                let taps = &inv.idx[inv.start[q] as usize..inv.start[q + 1] as usize];
                *d = taps.iter().fold(T::ZERO, |s, &e| T::add(s, block[e as usize]));
            }
            return;
        }
        for i in 0..g.kh {
            let (ylo, yhi) = span(g.oh, g.h, sh, i * dh, ph);
            for j in 0..g.kw {
                let (xlo, xhi) = span(g.ow, g.w, sw, j * dw, pw);
                let ix0 = (xlo * sw + j * dw).wrapping_sub(pw);
                let r = ((c - c0) * g.kh + i) * g.kw + j;
                let src = &dcol[r * cols + img * pix..][..pix];
                for y in ylo..yhi {
                    let dst = &mut plane[(y * sh + i * dh - ph) * g.w..][..g.w];
                    let src = &src[y * g.ow..][xlo..xhi];
                    if src.is_empty() {
                        continue;
                    }
                    let dst = &mut dst[ix0..=ix0 + (src.len() - 1) * sw];
                    match sw {
                        1 => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = T::add(*d, v)),
                        _ => dst.iter_mut().step_by(sw).zip(src).for_each(|(d, &v)| *d = T::add(*d, v)),
                    }
                }
            }
        }
    };
    super::rows(&mut dx[..imgs * g.c * hw], hw, add);
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

/// The blocks `(c0, c1)` of absolute input channels of group `gi`, `per` channels each.
fn blocks(g: &Geo, gi: usize, per: usize) -> impl Iterator<Item = (usize, usize)> {
    let (start, end) = (gi * g.cg(), (gi + 1) * g.cg());
    (start..end).step_by(per.max(1)).map(move |c0| (c0, (c0 + per).min(end)))
}

/// The output of a kernel: scratch when `written` (every element is written before it is
/// read), zeros otherwise (empty sums: no input channels, no images).
fn output<T: Float>(n: usize, written: bool) -> Result<Vec<T>> {
    if written {
        T::scratch(n)
    } else {
        T::filled(n, T::ZERO)
    }
}

fn forward<T: Float>(g: &Geo, x: &[T], wt: &[T]) -> Result<Vec<T>> {
    let (k, pix, cog, taps) = (g.k(), g.pix(), g.cog(), g.kh * g.kw);
    // every output element is written by a channel block's GEMM or by `regroup`
    let mut out = output(g.n * g.co * pix, g.cg() > 0)?;
    let chunk = g.chunk();
    let per = g.channels(chunk);
    let tab = Taps::new(g)?;
    let mut col = T::scratch(per * taps * chunk * pix)?;
    let mut tmp = T::scratch(cog * chunk * pix)?;
    for n0 in (0..g.n).step_by(chunk) {
        let imgs = chunk.min(g.n - n0);
        let cols = imgs * pix;
        let xs = &x[n0 * g.c * g.h * g.w..];
        let os = &mut out[n0 * g.co * pix..][..imgs * g.co * pix];
        for gi in 0..g.groups {
            // out_g = sum over channel blocks of W_g[:, block] col[block, :]
            let acc = if imgs == 1 { &mut os[gi * cog * pix..][..cog * pix] } else { &mut tmp[..cog * cols] };
            for (bi, (c0, c1)) in blocks(g, gi, per).enumerate() {
                let rows = (c1 - c0) * taps;
                im2col(g, xs, imgs, (c0, c1), &mut col, tab.as_ref());
                let wg = Mat { data: &wt[gi * cog * k + (c0 - gi * g.cg()) * taps..], rs: k, cs: 1 };
                par_gemm(cog, rows, cols, wg, Mat::row_major(&col[..rows * cols], cols), acc, bi > 0)?;
            }
            if imgs > 1 {
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
    let (k, pix, cog, taps) = (g.k(), g.pix(), g.cog(), g.kh * g.kw);
    let chunk = g.chunk();
    let per = g.channels(chunk);
    // the inverted tables for blocks of `per` channels and for a group's last, shorter block
    let (inv_full, inv_last) = match Taps::new(g)? {
        Some(tab) => {
            (tab.inverse(g, per * taps)?, if g.cg() % per != 0 { tab.inverse(g, g.cg() % per * taps)? } else { None })
        }
        None => (None, None),
    };
    let tabled = inv_full.is_some() && (g.cg() % per == 0 || inv_last.is_some());
    // with the inverted tables every plane is written once; the row-wise adds need zeros
    let mut dx = output(g.n * g.c * g.h * g.w, tabled)?;
    let mut dcol = T::scratch(per * taps * chunk * pix)?;
    let mut gbuf = T::scratch(cog * chunk * pix)?;
    let mut gchunk = T::scratch(chunk * g.co * pix)?;
    for n0 in (0..g.n).step_by(chunk) {
        let imgs = chunk.min(g.n - n0);
        let cols = imgs * pix;
        gchunk[..imgs * g.co * pix].copy_from_slice(&grad[n0 * g.co * pix..][..imgs * g.co * pix]);
        for gi in 0..g.groups {
            regroup(g, &mut gchunk, &mut gbuf, imgs, gi, true);
            for (c0, c1) in blocks(g, gi, per) {
                let rows = (c1 - c0) * taps;
                let wg = Mat { data: &wt[gi * cog * k + (c0 - gi * g.cg()) * taps..], rs: k, cs: 1 };
                let gm = Mat::row_major(&gbuf[..cog * cols], cols);
                let dx_chunk = &mut dx[n0 * g.c * g.h * g.w..];
                if tabled {
                    // dcolT[:, block] = grad_g^T W_g[:, block], then back onto channels c0..c1
                    par_gemm(cols, cog, rows, gm.t(), wg, &mut dcol[..cols * rows], false)?;
                    let inv = if c1 - c0 == per { inv_full.as_ref() } else { inv_last.as_ref() };
                    col2im(g, &dcol[..cols * rows], imgs, (c0, c1), dx_chunk, inv);
                } else {
                    // dcol[block, :] = W_g[:, block]^T grad_g
                    par_gemm(rows, cog, cols, wg.t(), gm, &mut dcol[..rows * cols], false)?;
                    col2im(g, &dcol[..rows * cols], imgs, (c0, c1), dx_chunk, None);
                }
            }
        }
    }
    T::give(dcol);
    T::give(gbuf);
    T::give(gchunk);
    Ok(dx)
}

fn grad_weight<T: Float>(g: &Geo, x: &[T], grad: &[T]) -> Result<Vec<T>> {
    let (k, pix, cog, taps) = (g.k(), g.pix(), g.cog(), g.kh * g.kw);
    // the first chunk writes every block of dW, later chunks add to it
    let mut dw = output(g.co * k, g.n > 0)?;
    let chunk = g.chunk();
    let per = g.channels(chunk);
    let tab = Taps::new(g)?;
    let mut col = T::scratch(per * taps * chunk * pix)?;
    let mut gbuf = T::scratch(cog * chunk * pix)?;
    let mut gchunk = T::scratch(chunk * g.co * pix)?;
    for n0 in (0..g.n).step_by(chunk) {
        let imgs = chunk.min(g.n - n0);
        let cols = imgs * pix;
        let xs = &x[n0 * g.c * g.h * g.w..];
        gchunk[..imgs * g.co * pix].copy_from_slice(&grad[n0 * g.co * pix..][..imgs * g.co * pix]);
        for gi in 0..g.groups {
            regroup(g, &mut gchunk, &mut gbuf, imgs, gi, true);
            for (c0, c1) in blocks(g, gi, per) {
                // dW_g[:, block] (+)= grad_g col[block, :]^T: a column block of dW (row stride k)
                let rows = (c1 - c0) * taps;
                let colt = match &tab {
                    Some(tab) => {
                        im2col_t(g, xs, imgs, (c0, c1), &mut col, tab);
                        Mat::row_major(&col[..rows * cols], rows)
                    }
                    None => {
                        im2col(g, xs, imgs, (c0, c1), &mut col, None);
                        Mat::row_major(&col[..rows * cols], cols).t()
                    }
                };
                let gm = Mat::row_major(&gbuf[..cog * cols], cols);
                let dwb = &mut dw[gi * cog * k + (c0 - gi * g.cg()) * taps..];
                par_gemm_strided(cog, cols, rows, gm, colt, dwb, k, n0 > 0)?;
            }
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
