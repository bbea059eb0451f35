//! Batched matmul `[..., m, k] x [..., k, n] -> [..., m, n]`.
//!
//! f32 goes through cubek's matmul (`Strategy::Auto`, which picks a tiling for the device
//! and copes with transposed operands itself); operands with an offset or broadcast (stride-0)
//! batch dims are first copied contiguous, since cubek takes whole buffers. f64, and any
//! case cubek declines, run [`matmul_tiled`]: 16x16 shared-memory tiles, one cube per
//! output tile and batch element, reading both operands through their strides (stride-0
//! batch dims included), so nothing is copied.
use cubecl::prelude::*;
use cubek::matmul::definition::MatmulElems;
use cubek::matmul::launch::{launch_ref, Strategy};
use cubek::std::InputBinding;

use super::{with_float, CubeStorage, GpuBackend};
use crate::{DType, Error, Layout, Result};

const TILE: usize = 16;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn matmul_tiled<F: Float>(
    a: &Tensor<F>,
    a_off: usize,
    b: &Tensor<F>,
    b_off: usize,
    out: &mut Array<F>,
    m: usize,
    k: usize,
    n: usize,
) {
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let col = CUBE_POS_X as usize * TILE + tx;
    let row = CUBE_POS_Y as usize * TILE + ty;
    let batch = CUBE_POS_Z as usize;
    // Batch offsets: decompose the batch index over a's batch dims (b has the same ones).
    let rank = a.rank();
    let mut rem = batch;
    let mut ao = a_off;
    let mut bo = b_off;
    for q in 0..rank - 2 {
        let d = rank - 3 - q;
        let s = a.shape(d);
        let c = rem % s;
        ao += c * a.stride(d);
        bo += c * b.stride(d);
        rem /= s;
    }
    let (am, ak) = (a.stride(rank - 2), a.stride(rank - 1));
    let (bk, bn) = (b.stride(rank - 2), b.stride(rank - 1));
    let mut sa = SharedMemory::<F>::new(TILE * TILE);
    let mut sb = SharedMemory::<F>::new(TILE * TILE);
    let mut acc = F::new(0.0);
    let tiles = k.div_ceil(TILE);
    for t in 0..tiles {
        let ka = t * TILE + tx;
        let kb = t * TILE + ty;
        let mut va = F::new(0.0);
        if row < m && ka < k {
            va = a[ao + row * am + ka * ak];
        }
        let mut vb = F::new(0.0);
        if col < n && kb < k {
            vb = b[bo + kb * bk + col * bn];
        }
        sa[ty * TILE + tx] = va;
        sb[ty * TILE + tx] = vb;
        sync_cube();
        #[unroll]
        for q in 0..TILE {
            acc += sa[ty * TILE + q] * sb[q * TILE + tx];
        }
        sync_cube();
    }
    if row < m && col < n {
        out[batch * m * n + row * n + col] = acc;
    }
}

impl<R: Runtime> GpuBackend<R> {
    pub(super) fn matmul_impl(
        &self,
        a: &CubeStorage,
        la: &Layout,
        b: &CubeStorage,
        lb: &Layout,
    ) -> Result<CubeStorage> {
        self.same_device("matmul", a)?;
        self.same_device("matmul", b)?;
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: "matmul", lhs: a.dtype, rhs: b.dtype });
        }
        let r = la.rank();
        let bad = r < 2
            || lb.rank() != r
            || la.shape()[..r - 2] != lb.shape()[..r - 2]
            || la.shape()[r - 1] != lb.shape()[r - 2];
        if bad {
            return Err(Error::shape(
                "matmul",
                &[la.shape(), lb.shape()],
                "expected [..., m, k] x [..., k, n] with equal batch dims",
            ));
        }
        let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
        let batch: usize = la.shape()[..r - 2].iter().product();
        let mut oshape = la.shape().to_vec();
        oshape[r - 1] = n;
        if batch * m * n == 0 {
            return self.fill_impl(batch * m * n, a.dtype, 0.0);
        }
        if k == 0 {
            return self.fill_impl(batch * m * n, a.dtype, 0.0);
        }
        let out = self.alloc(batch * m * n, a.dtype)?;
        if a.dtype == DType::F32 && self.matmul_cubek(a, la, b, lb, &out, [batch, m, k, n]).is_ok() {
            return Ok(out);
        }
        if batch > 65_535 {
            return Err(Error::Unsupported { op: "matmul", msg: format!("{batch} batch elements (at most 65535)") });
        }
        let (aa, a_off) = self.view(a, la);
        let (ba, b_off) = self.view(b, lb);
        let count = CubeCount::Static(n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, batch as u32);
        let dim = CubeDim::new_2d(TILE as u32, TILE as u32);
        with_float!("matmul", a.dtype, F => matmul_tiled::launch::<F, R>(
            &self.client, count, dim, aa, a_off, ba, b_off, self.array(&out), m, k, n
        ));
        Ok(out)
    }

    /// cubek's matmul on `[batch, m, k] x [batch, k, n]`; `Err` when cubek declines.
    fn matmul_cubek(
        &self,
        a: &CubeStorage,
        la: &Layout,
        b: &CubeStorage,
        lb: &Layout,
        out: &CubeStorage,
        [batch, m, k, n]: [usize; 4],
    ) -> Result<()> {
        // Flatten the batch dims: possible without a copy when the view is a whole,
        // compact buffer up to a transpose of its last two dims.
        let flat = |x: &CubeStorage, l: &Layout, rows: usize, cols: usize| -> Result<(CubeStorage, Vec<usize>)> {
            let r = l.rank();
            let s = l.strides();
            let compact_batch = |inner: usize| {
                let mut acc = inner;
                (0..r - 2).rev().all(|d| {
                    let ok = l.shape()[d] == 1 || s[d] == acc;
                    acc *= l.shape()[d];
                    ok
                })
            };
            let whole = l.offset() == 0 && l.numel() == x.len;
            if whole && compact_batch(rows * cols) && (s[r - 1] == 1 || cols == 1) && (s[r - 2] == cols || rows == 1) {
                return Ok((x.clone(), vec![rows * cols, cols, 1]));
            }
            if whole && compact_batch(rows * cols) && (s[r - 2] == 1 || rows == 1) && (s[r - 1] == rows || cols == 1) {
                return Ok((x.clone(), vec![rows * cols, 1, rows]));
            }
            Ok((self.copy_strided_impl(x, l)?, vec![rows * cols, cols, 1]))
        };
        let (ac, sa) = flat(a, la, m, k)?;
        let (bc, sb) = flat(b, lb, k, n)?;
        let st = f32::as_type_native_unchecked().storage_type();
        // SAFETY: shapes and strides describe the buffers exactly (checked above).
        let (lhs, rhs, o) = unsafe {
            (
                TensorBinding::<R>::from_raw_parts(ac.handle.clone(), sa.into(), vec![batch, m, k].into()),
                TensorBinding::<R>::from_raw_parts(bc.handle.clone(), sb.into(), vec![batch, k, n].into()),
                TensorBinding::<R>::from_raw_parts(
                    out.handle.clone(),
                    vec![m * n, n, 1].into(),
                    vec![batch, m, n].into(),
                ),
            )
        };
        let mut elems = MatmulElems::from_single_dtype(f32::as_type_native_unchecked());
        launch_ref(
            &Strategy::Auto,
            &self.client,
            InputBinding::Normal(lhs, st),
            InputBinding::Normal(rhs, st),
            o,
            &mut elems,
        )
        .map_err(|e| Error::Unsupported { op: "matmul", msg: format!("cubek: {e:?}") })
    }
}
