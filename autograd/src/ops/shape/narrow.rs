//! `narrow(dim, start, len)` (a view), `select`, `chunk` and `split`; the gradient is
//! padded with zeros.
use crate::tape::{record, Backward};
use crate::{Dim, Error, Result, Tensor};

impl Tensor {
    /// Elements `start..start + len` along `dim`, without copying.
    pub fn narrow(&self, dim: impl Dim, start: usize, len: usize) -> Result<Tensor> {
        let d = dim.to_index("narrow", self.rank())?;
        let out = self.with_layout(self.layout().narrow(d, start, len)?);
        Ok(record(&[self], out, |_| Narrow { dim: d, start, size: self.shape()[d] }))
    }

    /// Index `i` of `dim`, which is removed (a view).
    pub fn select(&self, dim: impl Dim, i: usize) -> Result<Tensor> {
        let d = dim.to_index("select", self.rank())?;
        if i >= self.shape()[d] {
            return Err(Error::Index { op: "select", index: i as i64, dim: d, size: self.shape()[d] });
        }
        self.narrow(d, i, 1)?.squeeze(d)
    }

    /// Views of `size` elements along `dim` (the last one may be shorter): PyTorch's
    /// `x.split(size, dim)`.
    pub fn split(&self, size: usize, dim: impl Dim) -> Result<Vec<Tensor>> {
        let d = dim.to_index("split", self.rank())?;
        if size == 0 {
            return Err(Error::argument("split", "the split size must be at least 1, got 0"));
        }
        let n = self.shape()[d];
        self.pieces("split", n.div_ceil(size))?;
        (0..n).step_by(size).map(|s| self.narrow(d, s, size.min(n - s))).collect()
    }

    /// `n` views of (nearly) equal length along `dim` (the last one may be shorter).
    pub fn chunk(&self, n: usize, dim: impl Dim) -> Result<Vec<Tensor>> {
        let d = dim.to_index("chunk", self.rank())?;
        if n == 0 {
            return Err(Error::argument("chunk", "the number of chunks must be at least 1, got 0"));
        }
        let size = self.shape()[d];
        let step = size.div_ceil(n).max(1);
        self.pieces("chunk", size.div_ceil(step))?;
        (0..size).step_by(step).map(|s| self.narrow(d, s, step.min(size - s))).collect()
    }

    /// Admits the host memory of `count` views of `self` (handles, layouts, tape nodes)
    /// before making them: a split of a huge empty dimension into 2^39 pieces is
    /// `Error::OutOfMemory`, not a process the kernel kills.
    fn pieces(&self, op: &'static str, count: usize) -> Result<()> {
        let per_view = size_of::<Tensor>() + size_of::<crate::tensor::Inner>() + 2 * 8 * self.rank() + 128;
        stategrad_backends::cpu::admit_host(op, count as u128 * per_view as u128)
    }
}

struct Narrow {
    dim: usize,
    start: usize,
    size: usize,
}

impl Backward for Narrow {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let len = grad.shape()[self.dim];
        let mut parts = Vec::with_capacity(3);
        let pad = |n: usize| {
            let mut shape = grad.shape().to_vec();
            shape[self.dim] = n;
            grad.full_on(&shape, 0.0)
        };
        if self.start > 0 {
            parts.push(pad(self.start)?);
        }
        parts.push(grad.clone());
        if self.start + len < self.size {
            parts.push(pad(self.size - self.start - len)?);
        }
        Ok(vec![Some(Tensor::cat(&parts.iter().collect::<Vec<_>>(), self.dim)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let n = a.narrow(1, 1, 2).unwrap();
        assert!(n.same_storage(&a));
        assert_close(&n, &[2.0, 3.0, 5.0, 6.0], 0.0);
        assert_close(&a.select(0, 1).unwrap(), &[4.0, 5.0, 6.0], 0.0);
        assert_eq!(a.chunk(2, 1).unwrap().iter().map(|c| c.shape()[1]).collect::<Vec<_>>(), vec![2, 1]);
        let parts = a.split(2, -1).unwrap();
        assert_eq!(parts.len(), 2);
        assert_close(&parts[1], &[3.0, 6.0], 0.0);
        assert!(matches!(a.split(0, 1), Err(crate::Error::Argument { op: "split", .. })));
        assert!(a.narrow(1, 2, 2).is_err());
        assert!(a.select(0, 2).is_err());
    }
    #[test]
    fn gradient() {
        check_view(|x| x.narrow(1, 1, 2));
        check_view(|x| x.select(2, 1));
    }
}
