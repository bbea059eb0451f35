//! `slice(dim, start, end, step)`: Python's `x[start:end:step]` along one dimension, as a
//! strided view (no copy). Negative `start`/`end` count from the end and both are clamped
//! to the dimension, as in Python. The gradient is the output gradient scattered into
//! zeros: interleaved with `step - 1` zero slabs, then padded before and after. The same
//! scatter gives `slice_scatter` (PyTorch's `torch.slice_scatter`, the functional form of
//! `x[:, 0::2] = src`).
use stategrad_backends::Layout;

use crate::tape::{record, Backward};
use crate::{Dim, Error, Result, Tensor};

/// `start..end` (Python semantics: negative counts from the end, clamped to `0..=size`)
/// stepped by `step`, as `(first index, number of elements)`.
pub(crate) fn slice_bounds(size: usize, start: i64, end: i64, step: usize) -> (usize, usize) {
    let clamp = |i: i64| {
        let i = if i < 0 { i.saturating_add(size as i64) } else { i };
        i.clamp(0, size as i64) as usize
    };
    let (s, e) = (clamp(start), clamp(end));
    (s, if e > s { (e - s).div_ceil(step) } else { 0 })
}

impl Tensor {
    /// Python's `x[start:end:step]` along `dim`, without copying: a view whose stride along
    /// `dim` is `step` times the input's. Negative `start`/`end` count from the end and both
    /// are clamped to the dimension (`i64::MAX` as `end` means "to the end"); `step` must be
    /// positive (as in PyTorch).
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0], &[6], Device::Cpu)?;
    /// assert_eq!(x.slice(0, 0, i64::MAX, 2)?.to_vec::<f64>()?, vec![0.0, 2.0, 4.0]); // x[0::2]
    /// assert_eq!(x.slice(-1, -3, -1, 1)?.to_vec::<f64>()?, vec![3.0, 4.0]); // x[-3:-1]
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn slice(&self, dim: impl Dim, start: i64, end: i64, step: usize) -> Result<Tensor> {
        let d = dim.to_index("slice", self.rank())?;
        if step == 0 {
            return Err(Error::argument("slice", "step must be positive, got 0"));
        }
        let size = self.shape()[d];
        let (first, len) = slice_bounds(size, start, end, step);
        let l = self.layout();
        let mut shape = l.shape().to_vec();
        let mut strides = l.strides().to_vec();
        shape[d] = len;
        // an empty view reads nothing: keep its offset inside any storage (as narrow does)
        let offset = if shape.contains(&0) { 0 } else { l.offset() + first * strides[d] };
        if len > 1 {
            // inside the input's extent, so this fits; Layout::new checks anyway
            strides[d] = strides[d].saturating_mul(step);
        }
        let out = self.with_layout(Layout::new(&shape, &strides, offset)?);
        Ok(record(&[self], out, |_| Slice { dim: d, first, step, size }))
    }
}

/// `src` placed at positions `first, first + step, ...` of a zero tensor whose `dim` has
/// `size` elements: the adjoint of the slice view, written with differentiable ops.
fn scatter_into_zeros(src: &Tensor, d: usize, first: usize, step: usize, size: usize) -> Result<Tensor> {
    let len = src.shape()[d];
    let zeros = |n: usize, like: &Tensor, dim: usize| {
        let mut shape = like.shape().to_vec();
        shape[dim] = n;
        like.full_on(&shape, 0.0)
    };
    if len == 0 {
        return zeros(size, src, d);
    }
    // [.., len, ..] -> [.., len, step, ..] (the values then step - 1 zeros) -> [.., len * step, ..]
    let spread = if step == 1 {
        src.clone()
    } else {
        let g = src.unsqueeze(d + 1)?;
        let gap = zeros(step - 1, &g, d + 1)?;
        let mut shape = src.shape().to_vec();
        shape[d] = len * step;
        Tensor::cat(&[&g, &gap], d + 1)?.reshape(&shape)?
    };
    let covered = (len * step).min(size - first);
    let spread = spread.narrow(d, 0, covered)?;
    let mut parts = Vec::with_capacity(3);
    if first > 0 {
        parts.push(zeros(first, src, d)?);
    }
    parts.push(spread);
    if first + covered < size {
        parts.push(zeros(size - first - covered, src, d)?);
    }
    Tensor::cat(&parts.iter().collect::<Vec<_>>(), d)
}

impl Tensor {
    /// A copy of `self` with `self.slice(dim, start, end, step)` replaced by `src` (PyTorch's
    /// `torch.slice_scatter`: the functional `x[..., start:end:step] = src`). `src` has the
    /// slice's shape; gradients flow to both `self` (outside the slice) and `src`.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::zeros(&[5], stategrad_autograd::DType::F64, Device::Cpu)?;
    /// let src = Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu)?;
    /// assert_eq!(x.slice_scatter(&src, 0, 0, i64::MAX, 2)?.to_vec::<f64>()?, vec![1.0, 0.0, 2.0, 0.0, 3.0]);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn slice_scatter(&self, src: &Tensor, dim: impl Dim, start: i64, end: i64, step: usize) -> Result<Tensor> {
        let d = dim.to_index("slice_scatter", self.rank())?;
        let view = self.detach().slice(d, start, end, step)?;
        if src.shape() != view.shape() {
            return Err(Error::shape(
                "slice_scatter",
                &[self.shape(), src.shape()],
                format!("src must have the slice's shape {:?}", view.shape()),
            ));
        }
        crate::ops::check_same("slice_scatter", self, src)?;
        let (first, _) = slice_bounds(self.shape()[d], start, end, step);
        let placed = scatter_into_zeros(src, d, first, step, self.shape()[d])?;
        let mask = scatter_into_zeros(&view.ones_like()?, d, first, step, self.shape()[d])?;
        self.masked_fill(&mask, 0.0)?.add(&placed)
    }
}

struct Slice {
    dim: usize,
    first: usize,
    step: usize,
    size: usize,
}

impl Backward for Slice {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(scatter_into_zeros(grad, self.dim, self.first, self.step, self.size)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::slice_bounds;
    use crate::testing::*;
    use crate::Error;

    #[test]
    fn bounds_follow_python() {
        // len(range(10)[s]) for the slices below, as Python computes it
        assert_eq!(slice_bounds(10, 0, i64::MAX, 2), (0, 5)); // [0::2]
        assert_eq!(slice_bounds(10, 1, i64::MAX, 2), (1, 5)); // [1::2]
        assert_eq!(slice_bounds(10, -3, i64::MAX, 1), (7, 3)); // [-3:]
        assert_eq!(slice_bounds(10, 2, -2, 3), (2, 2)); // [2:-2:3] = 2, 5
        assert_eq!(slice_bounds(10, 5, 3, 1), (5, 0)); // empty
        assert_eq!(slice_bounds(10, -20, 20, 4), (0, 3)); // clamped: 0, 4, 8
    }

    #[test]
    fn forward() {
        let a = t64(&(0..12).map(f64::from).collect::<Vec<_>>(), &[3, 4]);
        let s = a.slice(-1, 0, i64::MAX, 2).unwrap();
        assert!(s.same_storage(&a), "a strided view, not a copy");
        assert_eq!(s.shape(), &[3, 2]);
        assert_close(&s, &[0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 0.0);
        assert_close(&a.slice(1, 1, i64::MAX, 2).unwrap(), &[1.0, 3.0, 5.0, 7.0, 9.0, 11.0], 0.0);
        assert_close(&a.slice(0, -2, 3, 1).unwrap(), &[4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0], 0.0);
        assert_close(&a.slice(0, 0, 3, 2).unwrap().slice(1, -1, -5, 1).unwrap(), &[], 0.0);
        // a slice of a transposed view
        assert_close(&a.t().unwrap().slice(0, 1, 4, 2).unwrap(), &[1.0, 5.0, 9.0, 3.0, 7.0, 11.0], 0.0);
        // an empty tensor sliced along another dim stays usable (its offset stays in storage)
        let e = crate::Tensor::zeros(&[0, 3], crate::DType::F32, None).unwrap().slice(1, 1, 3, 1).unwrap();
        assert_eq!(e.add(&e).unwrap().shape(), &[0, 2]);
        assert!(matches!(a.slice(0, 0, 2, 0), Err(Error::Argument { op: "slice", .. })));
        assert!(matches!(a.slice(2, 0, 2, 1), Err(Error::Dim { op: "slice", dim: 2, rank: 2 })));
    }

    #[test]
    fn gradient_scatters_into_zeros() {
        let a = t64(&[1.0; 7], &[7]).requires_grad(true).unwrap();
        let w = t64(&[10.0, 20.0, 30.0], &[3]);
        let g = a.slice(0, 1, i64::MAX, 2).unwrap().mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(g.get(&a).unwrap(), &[0.0, 10.0, 0.0, 20.0, 0.0, 30.0, 0.0], 0.0);
    }

    #[test]
    fn gradient() {
        check_view(|x| x.slice(0, 0, i64::MAX, 2));
        check_view(|x| x.slice(-1, -2, i64::MAX, 1));
        check_view(|x| x.slice(1, 0, 3, 2)?.slice(0, 1, -1, 3));
        check_view(|x| x.slice(0, 3, 1, 1)); // empty
        let b = rand64(&[1, 6], -1.0, 1.0, 7).expand(&[3, 6]).unwrap().requires_grad(true).unwrap(); // broadcast
        check_fn(|x| x[0].slice(1, 1, 6, 2), &[b]);
    }

    #[test]
    fn slice_scatter() {
        let x = t64(&(0..12).map(f64::from).collect::<Vec<_>>(), &[3, 4]);
        let src = t64(&[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0], &[3, 2]);
        // x[:, 1::2] = src
        let y = x.slice_scatter(&src, -1, 1, i64::MAX, 2).unwrap();
        assert_close(&y, &[0.0, -1.0, 2.0, -2.0, 4.0, -3.0, 6.0, -4.0, 8.0, -5.0, 10.0, -6.0], 0.0);
        // x[-2:] = ...
        let row = t64(&[9.0; 8], &[2, 4]);
        let z = x.slice_scatter(&row, 0, -2, i64::MAX, 1).unwrap();
        assert_close(&z.narrow(0, 0, 1).unwrap(), &[0.0, 1.0, 2.0, 3.0], 0.0);
        assert_close(&z.narrow(0, 1, 2).unwrap(), &[9.0; 8], 0.0);
        assert!(matches!(x.slice_scatter(&row, 1, 0, 2, 1), Err(Error::Shape { op: "slice_scatter", .. })));
        let a = rand64(&[3, 4], -1.0, 1.0, 3).requires_grad(true).unwrap();
        let at = rand64(&[4, 3], -1.0, 1.0, 4).t().unwrap().requires_grad(true).unwrap();
        let b = rand64(&[3, 2], -1.0, 1.0, 5).requires_grad(true).unwrap();
        for a in [a, at] {
            check_fn(|x| x[0].slice_scatter(&x[1], 1, 0, i64::MAX, 2), &[a.clone(), b.clone()]);
            check_fn_gradgrad(|x| x[0].slice_scatter(&x[1].square()?, 1, 1, 4, 2)?.square(), &[a, b.clone()]);
        }
    }

    #[test]
    fn gradgradient() {
        let x = rand64(&[4, 5], -1.0, 1.0, 8).requires_grad(true).unwrap();
        check_fn_gradgrad(|x| x[0].slice(1, 1, i64::MAX, 2)?.square(), &[x]);
    }
}
