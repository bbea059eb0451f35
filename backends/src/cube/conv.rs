//! conv2d by im2col + batched matmul, and its two backward kernels.
//!
//! With `K = c_in / groups * kh * kw` and `L = oh * ow`, `im2col` lays the input out as
//! `cols [n, groups, K, L]` (zero padding included); then
//! - forward: `w [groups, c_out/g, K]` (broadcast over n) x `cols` -> `[n, c_out, oh, ow]`;
//! - grad input: `w^T x grad [n, g, c_out/g, L]` -> `dcols`, folded back by `col2im`
//!   (one thread per input element summing the taps that read it: deterministic, no atomics);
//! - grad weight: `grad x cols^T` -> `[n, g, c_out/g, K]`, summed over n.
use cubecl::prelude::*;

use super::{with_float, CubeStorage, GpuBackend};
use crate::{Conv2dParams, Error, Layout, ReduceOp, Result};

/// Geometry of one convolution, in the kernels' argument order.
#[derive(Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    g: usize,
}

impl Geom {
    fn k(&self) -> usize {
        self.c / self.g * self.kh * self.kw
    }
    fn l(&self) -> usize {
        self.oh * self.ow
    }
}

/// `cols[ni, gi, r, q]` with `r = (cl * kh + i) * kw + j`, `q = oy * ow + ox`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn im2col<F: Float>(
    x: &Tensor<F>,
    x_off: usize,
    cols: &mut Array<F>,
    total: usize,
    geom: Sequence<usize>,
    conv: Sequence<usize>,
) {
    if ABSOLUTE_POS < total {
        let (c, h, w) = (*geom.index(1usize), *geom.index(2usize), *geom.index(3usize));
        let (kh, kw, oh, ow, g) =
            (*geom.index(5usize), *geom.index(6usize), *geom.index(7usize), *geom.index(8usize), *geom.index(9usize));
        let (sh, sw, ph, pw, dh, dw) = (
            *conv.index(0usize),
            *conv.index(1usize),
            *conv.index(2usize),
            *conv.index(3usize),
            *conv.index(4usize),
            *conv.index(5usize),
        );
        let cg = c / g;
        let l = oh * ow;
        let kk = cg * kh * kw;
        let q = ABSOLUTE_POS % l;
        let r = (ABSOLUTE_POS / l) % kk;
        let gi = (ABSOLUTE_POS / (l * kk)) % g;
        let ni = ABSOLUTE_POS / (l * kk * g);
        let (oy, ox) = (q / ow, q % ow);
        let j = r % kw;
        let i = (r / kw) % kh;
        let cl = r / (kw * kh);
        let yy = oy * sh + i * dh;
        let xx = ox * sw + j * dw;
        let mut v = F::new(0.0);
        if yy >= ph && yy < h + ph && xx >= pw && xx < w + pw {
            let ch = gi * cg + cl;
            let o = x_off + ni * x.stride(0) + ch * x.stride(1) + (yy - ph) * x.stride(2) + (xx - pw) * x.stride(3);
            v = x[o];
        }
        cols[ABSOLUTE_POS] = v;
    }
}

/// `dx[ni, ch, y, x]` = sum of `dcols` over the taps `(i, j)` that read input `(y, x)`.
#[cube(launch)]
fn col2im<F: Float>(dcols: &Array<F>, dx: &mut Array<F>, total: usize, geom: Sequence<usize>, conv: Sequence<usize>) {
    if ABSOLUTE_POS < total {
        let (c, h, w) = (*geom.index(1usize), *geom.index(2usize), *geom.index(3usize));
        let (kh, kw, oh, ow, g) =
            (*geom.index(5usize), *geom.index(6usize), *geom.index(7usize), *geom.index(8usize), *geom.index(9usize));
        let (sh, sw, ph, pw, dh, dw) = (
            *conv.index(0usize),
            *conv.index(1usize),
            *conv.index(2usize),
            *conv.index(3usize),
            *conv.index(4usize),
            *conv.index(5usize),
        );
        let cg = c / g;
        let l = oh * ow;
        let kk = cg * kh * kw;
        let xx = ABSOLUTE_POS % w;
        let yy = (ABSOLUTE_POS / w) % h;
        let ch = (ABSOLUTE_POS / (w * h)) % c;
        let ni = ABSOLUTE_POS / (w * h * c);
        let gi = ch / cg;
        let cl = ch % cg;
        let base = (ni * g + gi) * kk * l;
        let mut acc = F::new(0.0);
        for i in 0..kh {
            let ynum = yy + ph;
            if ynum >= i * dh && (ynum - i * dh) % sh == 0 && (ynum - i * dh) / sh < oh {
                let oy = (ynum - i * dh) / sh;
                for j in 0..kw {
                    let xnum = xx + pw;
                    if xnum >= j * dw && (xnum - j * dw) % sw == 0 && (xnum - j * dw) / sw < ow {
                        let ox = (xnum - j * dw) / sw;
                        let r = (cl * kh + i) * kw + j;
                        acc += dcols[base + r * l + oy * ow + ox];
                    }
                }
            }
        }
        dx[ABSOLUTE_POS] = acc;
    }
}

impl<R: Runtime> GpuBackend<R> {
    fn geom(op: &'static str, lx: &[usize], lw: &[usize], p: &Conv2dParams) -> Result<Geom> {
        let bad = |msg: &str| Error::shape(op, &[lx, lw], msg);
        if lx.len() != 4 || lw.len() != 4 {
            return Err(bad("expected x [n, c, h, w] and w [c_out, c_in / groups, kh, kw]"));
        }
        let g = p.groups;
        if g == 0 || lx[1] % g != 0 || lw[0] % g != 0 || lw[1] * g != lx[1] {
            return Err(bad("channels do not match the groups"));
        }
        let (oh, ow) =
            p.output_hw((lx[2], lx[3]), (lw[2], lw[3])).ok_or_else(|| bad("kernel larger than the input"))?;
        Ok(Geom { n: lx[0], c: lx[1], h: lx[2], w: lx[3], cout: lw[0], kh: lw[2], kw: lw[3], oh, ow, g })
    }

    fn seqs(gm: &Geom, p: &Conv2dParams) -> (SequenceArg<R, usize>, SequenceArg<R, usize>) {
        let mut geom = SequenceArg::new();
        for v in [gm.n, gm.c, gm.h, gm.w, gm.cout, gm.kh, gm.kw, gm.oh, gm.ow, gm.g] {
            geom.push(v);
        }
        let mut conv = SequenceArg::new();
        for v in [p.stride.0, p.stride.1, p.padding.0, p.padding.1, p.dilation.0, p.dilation.1] {
            conv.push(v);
        }
        (geom, conv)
    }

    /// `cols [n, g, K, L]` of the input view.
    fn im2col(&self, x: &CubeStorage, lx: &Layout, gm: &Geom, p: &Conv2dParams) -> Result<CubeStorage> {
        let total = gm.n * gm.g * gm.k() * gm.l();
        let cols = self.alloc(total, x.dtype)?;
        if total > 0 {
            let (xa, x_off) = self.view(x, lx);
            let (geom, conv) = Self::seqs(gm, p);
            let (count, dim) = self.grid(total);
            with_float!("conv2d", x.dtype, F => im2col::launch::<F, R>(
                &self.client, count, dim, xa, x_off, self.array(&cols), total, geom, conv
            ));
        }
        Ok(cols)
    }

    /// The weight as `[n, g, c_out/g, K]` (stride 0 over n), transposed to `[.., K, c_out/g]`
    /// when `t`.
    fn weight_view(&self, w: &CubeStorage, lw: &Layout, gm: &Geom, t: bool) -> Result<(CubeStorage, Layout)> {
        let wc = self.contiguous(w, lw)?;
        let l = Layout::contiguous(&[1, gm.g, gm.cout / gm.g, gm.k()]).broadcast_as(&[
            gm.n,
            gm.g,
            gm.cout / gm.g,
            gm.k(),
        ])?;
        Ok((wc, if t { l.transpose(2, 3)? } else { l }))
    }

    pub(super) fn conv2d_impl(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        w: &CubeStorage,
        lw: &Layout,
        p: &Conv2dParams,
    ) -> Result<CubeStorage> {
        self.same_device("conv2d", x)?;
        self.same_device("conv2d", w)?;
        let gm = Self::geom("conv2d", lx.shape(), lw.shape(), p)?;
        let cols = self.im2col(x, lx, &gm, p)?;
        let (wc, wl) = self.weight_view(w, lw, &gm, false)?;
        let cl = Layout::contiguous(&[gm.n, gm.g, gm.k(), gm.l()]);
        self.matmul_impl(&wc, &wl, &cols, &cl)
    }

    pub(super) fn conv2d_grad_input_impl(
        &self,
        grad: &CubeStorage,
        lg: &Layout,
        w: &CubeStorage,
        lw: &Layout,
        p: &Conv2dParams,
        (h, wd): (usize, usize),
    ) -> Result<CubeStorage> {
        self.same_device("conv2d_grad_input", grad)?;
        self.same_device("conv2d_grad_input", w)?;
        let n = lg.shape().first().copied().unwrap_or(0);
        let xs = [n, lw.shape().get(1).copied().unwrap_or(0) * p.groups, h, wd];
        let gm = Self::geom("conv2d_grad_input", &xs, lw.shape(), p)?;
        if lg.shape() != [gm.n, gm.cout, gm.oh, gm.ow] {
            return Err(Error::shape(
                "conv2d_grad_input",
                &[lg.shape(), lw.shape()],
                "grad has not the output's shape",
            ));
        }
        let gc = self.contiguous(grad, lg)?;
        let gl = Layout::contiguous(&[gm.n, gm.g, gm.cout / gm.g, gm.l()]);
        let (wc, wl) = self.weight_view(w, lw, &gm, true)?;
        let dcols = self.matmul_impl(&wc, &wl, &gc, &gl)?;
        let total = gm.n * gm.c * gm.h * gm.w;
        let dx = self.alloc(total, grad.dtype)?;
        if total > 0 {
            let (geom, conv) = Self::seqs(&gm, p);
            let (count, dim) = self.grid(total);
            with_float!("conv2d_grad_input", grad.dtype, F => col2im::launch::<F, R>(
                &self.client, count, dim, self.array(&dcols), self.array(&dx), total, geom, conv
            ));
        }
        Ok(dx)
    }

    pub(super) fn conv2d_grad_weight_impl(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        grad: &CubeStorage,
        lg: &Layout,
        p: &Conv2dParams,
        (kh, kw): (usize, usize),
    ) -> Result<CubeStorage> {
        self.same_device("conv2d_grad_weight", x)?;
        self.same_device("conv2d_grad_weight", grad)?;
        let cout = lg.shape().get(1).copied().unwrap_or(0);
        let ws = [cout, lx.shape().get(1).copied().unwrap_or(0) / p.groups.max(1), kh, kw];
        let gm = Self::geom("conv2d_grad_weight", lx.shape(), &ws, p)?;
        if lg.shape() != [gm.n, gm.cout, gm.oh, gm.ow] {
            return Err(Error::shape(
                "conv2d_grad_weight",
                &[lx.shape(), lg.shape()],
                "grad has not the output's shape",
            ));
        }
        let cols = self.im2col(x, lx, &gm, p)?;
        let colt = Layout::contiguous(&[gm.n, gm.g, gm.k(), gm.l()]).transpose(2, 3)?;
        let gc = self.contiguous(grad, lg)?;
        let gl = Layout::contiguous(&[gm.n, gm.g, gm.cout / gm.g, gm.l()]);
        let per_sample = self.matmul_impl(&gc, &gl, &cols, &colt)?;
        let shape = [gm.n, gm.g * (gm.cout / gm.g) * gm.k()];
        self.reduce_impl(ReduceOp::Sum, &per_sample, &Layout::contiguous(&shape), &[0])
    }
}
