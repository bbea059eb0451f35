//! conv2d and its two backward kernels against naive seven-deep loops, over stride,
//! padding, dilation, groups, size-1 dims, strided inputs, f32/f64; the backward kernels
//! are also checked as adjoints of the forward (<conv(x, w), g> = <x, gx> = <w, gw>).
mod common;

use common::Rng;
use common::*;
use proptest::prelude::*;
use stategrad_backends::{cpu::CpuBackend, Conv2dParams, CpuStorage, DType, Error, Kernels, Layout};

struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    p: Conv2dParams,
}

/// Calls `f(img, co, y, x, ci, i, j, iy, ix)` for every in-bounds tap of the convolution.
fn taps(cs: &Case, oh: usize, ow: usize, mut f: impl FnMut([usize; 9])) {
    let (cg, cog) = (cs.c / cs.p.groups, cs.co / cs.p.groups);
    for img in 0..cs.n {
        for co in 0..cs.co {
            let grp = co / cog;
            for y in 0..oh {
                for x in 0..ow {
                    for cl in 0..cg {
                        for i in 0..cs.kh {
                            for j in 0..cs.kw {
                                let iy = (y * cs.p.stride.0 + i * cs.p.dilation.0) as isize - cs.p.padding.0 as isize;
                                let ix = (x * cs.p.stride.1 + j * cs.p.dilation.1) as isize - cs.p.padding.1 as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < cs.h && (ix as usize) < cs.w {
                                    f([img, co, y, x, grp * cg + cl, i, j, iy as usize, ix as usize]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check(seed: u64, cs: &Case, view: View, f32: bool) {
    let mut rng = Rng(seed);
    let (xd, lx) = make_view(&mut rng, &[cs.n, cs.c, cs.h, cs.w], view);
    let cg = cs.c / cs.p.groups;
    let (wd, lw) = make_view(&mut rng, &[cs.co, cg, cs.kh, cs.kw], View::Contiguous);
    let (xs, ws) = (storage(&xd, f32), storage(&wd, f32));
    let (xv, wv) = (xs.to_f64_vec(), ws.to_f64_vec());
    let (oh, ow) = cs.p.output_hw((cs.h, cs.w), (cs.kh, cs.kw)).unwrap();
    let lo = Layout::contiguous(&[cs.n, cs.co, oh, ow]);
    let gd = rng.vec(lo.numel());
    let gs = storage(&gd, f32);
    let gv = gs.to_f64_vec();
    let (lgx, lgw) = (Layout::contiguous(&[cs.n, cs.c, cs.h, cs.w]), Layout::contiguous(lw.shape()));
    let (mut out, mut gx, mut gw) = (vec![0.0; lo.numel()], vec![0.0; lgx.numel()], vec![0.0; lgw.numel()]);
    taps(cs, oh, ow, |[img, co, y, x, ci, i, j, iy, ix]| {
        let xi = at(&lx, &[img, ci, iy, ix]);
        let wi = at(&lw, &[co, ci % cg, i, j]);
        let oi = at(&lo, &[img, co, y, x]);
        out[oi] += xv[xi] * wv[wi];
        gx[at(&lgx, &[img, ci, iy, ix])] += wv[wi] * gv[oi];
        gw[wi] += xv[xi] * gv[oi];
    });
    let what =
        format!("n{} c{} {}x{} co{} k{}x{} {:?} {view:?} f32={f32}", cs.n, cs.c, cs.h, cs.w, cs.co, cs.kh, cs.kw, cs.p);
    let t = tol(f32) * 10.0;
    assert_close(&CpuBackend.conv2d(&xs, &lx, &ws, &lw, &cs.p).unwrap(), &out, t, &format!("conv2d {what}"));
    let got = CpuBackend.conv2d_grad_input(&gs, &lo, &ws, &lw, &cs.p, (cs.h, cs.w)).unwrap();
    assert_close(&got, &gx, t, &format!("grad_input {what}"));
    let got = CpuBackend.conv2d_grad_weight(&xs, &lx, &gs, &lo, &cs.p, (cs.kh, cs.kw)).unwrap();
    assert_close(&got, &gw, t, &format!("grad_weight {what}"));
}

fn p(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: (stride, stride), padding: (padding, padding + 1), dilation: (dilation, dilation), groups }
}

#[test]
fn conv_matches_naive() {
    let cases = [
        Case { n: 2, c: 3, h: 7, w: 6, co: 4, kh: 3, kw: 2, p: p(1, 0, 1, 1) },
        Case { n: 1, c: 4, h: 9, w: 9, co: 6, kh: 3, kw: 3, p: p(2, 1, 1, 2) },
        Case { n: 3, c: 2, h: 8, w: 7, co: 2, kh: 2, kw: 3, p: p(1, 2, 2, 1) },
        Case { n: 2, c: 4, h: 5, w: 5, co: 4, kh: 1, kw: 1, p: p(3, 0, 1, 4) },
        Case { n: 1, c: 1, h: 1, w: 1, co: 1, kh: 1, kw: 1, p: p(1, 0, 1, 1) },
        Case { n: 0, c: 2, h: 4, w: 4, co: 3, kh: 2, kw: 2, p: p(1, 0, 1, 1) },
        Case { n: 2, c: 2, h: 4, w: 4, co: 3, kh: 5, kw: 5, p: p(1, 1, 1, 1) }, // padded input just fits
    ];
    for (seed, cs) in cases.iter().enumerate() {
        for view in VIEWS {
            check(seed as u64, cs, view, seed % 2 == 0);
        }
    }
}

#[test]
fn conv_capsnet_like_shapes_chunk_and_split() {
    // Several images per im2col chunk (small output) and a GEMM past the parallel split.
    check(1, &Case { n: 5, c: 16, h: 12, w: 12, co: 32, kh: 5, kw: 5, p: p(2, 0, 1, 1) }, View::Contiguous, true);
    check(2, &Case { n: 2, c: 1, h: 28, w: 28, co: 64, kh: 9, kw: 9, p: p(1, 0, 1, 1) }, View::Transposed, false);
}

#[test]
fn conv_blocks_channels_and_chunks_images() {
    // 110 input channels per group: one chunk's im2col rows exceed the col buffer's cap,
    // so K is taken in two channel blocks (102 + 8; forward accumulates over them).
    let big = Case { n: 3, c: 220, h: 18, w: 18, co: 4, kh: 9, kw: 9, p: p(1, 1, 1, 2) };
    check(3, &big, View::Contiguous, true);
    // 7 images of 400 output pixels: two chunks (4 + 3) of about 2048 columns.
    check(4, &Case { n: 7, c: 2, h: 24, w: 24, co: 3, kh: 5, kw: 5, p: p(1, 0, 1, 1) }, View::Transposed, true);
}

#[test]
fn conv_on_planes_too_large_for_a_tap_table_takes_the_row_wise_loops() {
    // kh kw oh ow past 2^22 table entries: im2col/col2im walk row segments and the weight
    // gradient reads the transposed im2col block (padded, stride 1 and stride 2).
    check(5, &Case { n: 1, c: 2, h: 700, w: 702, co: 2, kh: 3, kw: 3, p: p(1, 1, 1, 1) }, View::Contiguous, true);
    check(6, &Case { n: 1, c: 1, h: 830, w: 820, co: 1, kh: 5, kw: 5, p: p(2, 2, 1, 1) }, View::Transposed, false);
}

#[test]
fn conv_errors_name_the_op() {
    let x = CpuStorage::F32(vec![0.0; 2 * 3 * 4 * 4].into());
    let lx = Layout::contiguous(&[2, 3, 4, 4]);
    let w = CpuStorage::F32(vec![0.0; 4 * 3 * 2 * 2].into());
    let lw = Layout::contiguous(&[4, 3, 2, 2]);
    let ok = Conv2dParams::default();
    let e = CpuBackend.conv2d(&x, &lx, &w, &lw, &Conv2dParams { groups: 2, ..ok }).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d", .. }) && e.to_string().starts_with("conv2d:"), "{e}");
    let e = CpuBackend.conv2d(&x, &Layout::contiguous(&[6, 4, 4]), &w, &lw, &ok).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d", .. }), "{e}");
    let e = CpuBackend.conv2d(&x, &lx, &w, &Layout::contiguous(&[4, 3, 5, 5]), &ok).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d", .. }), "{e}"); // kernel larger than input
    let e = CpuBackend.conv2d(&x, &lx, &w, &lw, &Conv2dParams { stride: (0, 1), ..ok }).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d", .. }), "{e}");
    let wd = CpuStorage::F64(vec![0.0; 48].into());
    let e = CpuBackend.conv2d(&x, &lx, &wd, &lw, &ok).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "conv2d", lhs: DType::F32, rhs: DType::F64 }), "{e}");
    let xi = CpuStorage::I64(vec![0; 96].into());
    let wi = CpuStorage::I64(vec![0; 48].into());
    let e = CpuBackend.conv2d(&xi, &lx, &wi, &lw, &ok).unwrap_err();
    assert!(matches!(e, Error::DType { op: "conv2d", got: DType::I64, .. }), "{e}");
    let g = CpuStorage::F32(vec![0.0; 2 * 4 * 3 * 3].into());
    let lg = Layout::contiguous(&[2, 4, 3, 3]);
    let e = CpuBackend.conv2d_grad_input(&g, &lg, &w, &lw, &ok, (5, 5)).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d_grad_input", .. }), "{e}"); // 5x5 gives 4x4, not 3x3
    let e = CpuBackend.conv2d_grad_weight(&x, &lx, &g, &lg, &ok, (3, 3)).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d_grad_weight", .. }), "{e}");
    let e = CpuBackend.conv2d_grad_weight(&x, &lx, &g, &Layout::contiguous(&[1, 4, 3, 3]), &ok, (2, 2)).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d_grad_weight", .. }), "{e}");
    assert!(CpuBackend.conv2d_grad_weight(&x, &lx, &g, &lg, &ok, (2, 2)).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn conv_on_random_shapes(seed in 0u64..1000, n in 0usize..3, cg in 1usize..3, cog in 1usize..3, groups in 1usize..3,
                             h in 1usize..7, w in 1usize..7, kh in 1usize..4, kw in 1usize..4,
                             stride in 1usize..3, padding in 0usize..2, dilation in 1usize..3, v in 0usize..4, f32: bool) {
        let pr = p(stride, padding, dilation, groups);
        let cs = Case { n, c: cg * groups, h, w, co: cog * groups, kh, kw, p: pr };
        prop_assume!(pr.output_hw((h, w), (kh, kw)).is_some());
        check(seed, &cs, VIEWS[v], f32);
    }
}
