//! `sort(dim, descending)`, `argsort` and `topk(k, dim, largest, sorted)`. The order is
//! data-dependent and has no gradient: the indices are computed on the host (one read-back
//! of the values; NaN sorts as the largest value, as in PyTorch; ties keep their order) and
//! moved to the tensor's device, and the values are `x` gathered at them, so the gradient
//! is scattered back by gather's rule.
use crate::{DType, Dim, Error, Result, Tensor};

impl Tensor {
    /// i64 indices that sort `x` along dimension `d` (already an index).
    fn sort_indices(&self, d: usize, descending: bool) -> Result<Tensor> {
        let last = self.rank() - 1;
        let moved = self.detach().transpose(d, last)?; // rows along the last dim
        let n = moved.shape().get(last).copied().unwrap_or(1);
        let values = moved.to_f64_vec()?;
        // NaN is the largest value (PyTorch's order)
        let cmp = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()));
        let mut idx: Vec<i64> = Vec::with_capacity(values.len());
        for row in values.chunks(n.max(1)) {
            let mut order: Vec<usize> = (0..row.len()).collect();
            // a stable sort: ties keep their order in both directions
            order.sort_by(|&i, &j| if descending { cmp(row[j], row[i]) } else { cmp(row[i], row[j]) });
            idx.extend(order.into_iter().map(|i| i as i64));
        }
        let idx = Tensor::from_vec(idx, moved.shape(), self.device())?;
        idx.transpose(d, last)
    }

    /// `(values, indices)` sorted along `dim` (PyTorch's `x.sort(dim, descending)`); the
    /// sort is stable, NaN counts as the largest value, and indices are i64.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[3.0f64, 1.0, 2.0], &[3], Device::Cpu)?;
    /// let (v, i) = x.sort(-1, true)?;
    /// assert_eq!((v.to_vec::<f64>()?, i.to_vec::<i64>()?), (vec![3.0, 2.0, 1.0], vec![0, 2, 1]));
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn sort(&self, dim: impl Dim, descending: bool) -> Result<(Tensor, Tensor)> {
        if self.rank() == 0 {
            return Ok((self.clone(), Tensor::zeros(&[], DType::I64, self.device())?));
        }
        let d = dim.to_index("sort", self.rank())?;
        let idx = self.sort_indices(d, descending)?;
        Ok((self.gather(d, &idx)?, idx))
    }

    /// The i64 indices that sort `x` along `dim` (PyTorch's `argsort`). Not differentiable.
    pub fn argsort(&self, dim: impl Dim, descending: bool) -> Result<Tensor> {
        if self.rank() == 0 {
            return Tensor::zeros(&[], DType::I64, self.device());
        }
        let d = dim.to_index("argsort", self.rank())?;
        self.sort_indices(d, descending)
    }

    /// `(values, indices)` of the `k` largest (or, with `largest = false`, smallest)
    /// elements along `dim` (PyTorch's `topk`). They come sorted whatever `sorted` says
    /// (PyTorch leaves the order unspecified when it is false).
    pub fn topk(&self, k: usize, dim: impl Dim, largest: bool, sorted: bool) -> Result<(Tensor, Tensor)> {
        let _ = sorted; // always sorted: an order is as good as any
        let d = dim.to_index("topk", self.rank())?;
        let size = self.shape()[d];
        if k > size {
            return Err(Error::argument("topk", format!("k = {k} is larger than dimension {d} of size {size}")));
        }
        let idx = self.sort_indices(d, largest)?.narrow(d, 0, k)?.contiguous()?;
        Ok((self.gather(d, &idx)?, idx))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Error;

    #[test]
    fn forward() {
        let a = t64(&[3.0, 1.0, 2.0, 0.5, 9.0, -1.0], &[2, 3]);
        let (v, i) = a.sort(-1, false).unwrap();
        assert_close(&v, &[1.0, 2.0, 3.0, -1.0, 0.5, 9.0], 0.0);
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![1, 2, 0, 2, 0, 1]);
        let (v, i) = a.sort(0, true).unwrap();
        assert_close(&v, &[3.0, 9.0, 2.0, 0.5, 1.0, -1.0], 0.0);
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![0, 1, 0, 1, 0, 1]);
        assert_eq!(a.t().unwrap().argsort(1, true).unwrap().to_vec::<i64>().unwrap(), vec![0, 1, 1, 0, 0, 1]);
        let (v, i) = a.topk(2, 1, true, true).unwrap();
        assert_close(&v, &[3.0, 2.0, 9.0, 0.5], 0.0);
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![0, 2, 1, 0]);
        let (v, _) = a.topk(1, -1, false, true).unwrap();
        assert_close(&v, &[1.0, -1.0], 0.0);
        assert!(matches!(a.topk(4, 1, true, true), Err(Error::Argument { op: "topk", .. })));
        // NaN sorts last ascending; ties keep their order
        let n = t64(&[f64::NAN, 1.0, 1.0, 0.0], &[4]);
        assert_eq!(n.argsort(0, false).unwrap().to_vec::<i64>().unwrap(), vec![3, 1, 2, 0]);
    }

    #[test]
    fn gradient() {
        check_reduction(|x| Ok(x.sort(1, false)?.0));
        check_reduction(|x| Ok(x.sort(-1, true)?.0));
        check_reduction(|x| Ok(x.topk(2, 0, true, true)?.0));
        check_reduction_gradgrad(|x| x.topk(3, 2, false, true)?.0.square());
    }
}
