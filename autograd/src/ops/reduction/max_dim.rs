//! `max_dim(dim, keepdim)` / `min_dim`: PyTorch's `x.max(dim)` returning `(values,
//! indices)`. The indices are the kernel's argmax/argmin (first extremum); the values are
//! `x` gathered at them, so the gradient goes to that one position (like PyTorch's), by
//! gather's rule.
use stategrad_backends::ReduceOp;

use crate::{Dim, Result, Tensor};

impl Tensor {
    fn extremum_dim(&self, op: &'static str, kop: ReduceOp, dim: impl Dim, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let d = dim.to_index(op, self.rank())?;
        self.check_float(op)?;
        let idx = self.reduce_kernel(kop, &[d], true)?;
        let values = self.gather(d, &idx)?;
        if keepdim {
            Ok((values, idx))
        } else {
            Ok((values.squeeze(d)?, idx.squeeze(d)?))
        }
    }

    /// `(values, indices)` of the maximum along `dim` (PyTorch's `x.max(dim, keepdim)`);
    /// indices are i64, the first maximum on ties, and the gradient flows to that element.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[1.0f64, 5.0, 2.0, 7.0, 0.0, 3.0], &[2, 3], Device::Cpu)?;
    /// let (v, i) = x.max_dim(-1, false)?;
    /// assert_eq!((v.to_vec::<f64>()?, i.to_vec::<i64>()?), (vec![5.0, 7.0], vec![1, 0]));
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn max_dim(&self, dim: impl Dim, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.extremum_dim("max_dim", ReduceOp::ArgMax, dim, keepdim)
    }

    /// `(values, indices)` of the minimum along `dim` (PyTorch's `x.min(dim, keepdim)`).
    pub fn min_dim(&self, dim: impl Dim, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.extremum_dim("min_dim", ReduceOp::ArgMin, dim, keepdim)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Error;

    #[test]
    fn forward() {
        let a = t64(&[1.0, 7.0, 3.0, 4.0, 5.0, 7.0], &[2, 3]);
        let (v, i) = a.max_dim(1, false).unwrap();
        assert_close(&v, &[7.0, 7.0], 0.0);
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![1, 2]);
        let (v, i) = a.min_dim(0, true).unwrap();
        assert_eq!(v.shape(), &[1, 3]);
        assert_close(&v, &[1.0, 5.0, 3.0], 0.0);
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![0, 1, 0]);
        let (v, _) = a.t().unwrap().max_dim(-1, false).unwrap();
        assert_close(&v, &[4.0, 7.0, 7.0], 0.0);
        assert!(matches!(a.max_dim(2, false), Err(Error::Dim { op: "max_dim", dim: 2, rank: 2 })));
    }

    #[test]
    fn gradient_goes_to_the_first_maximum() {
        let a = t64(&[2.0, 2.0, 1.0], &[3]).requires_grad(true).unwrap();
        let g = a.max_dim(0, false).unwrap().0.backward().unwrap();
        assert_close(g.get(&a).unwrap(), &[1.0, 0.0, 0.0], 0.0);
    }

    #[test]
    fn gradient() {
        // random inputs have no ties
        check_reduction(|x| Ok(x.max_dim(1, false)?.0));
        check_reduction(|x| Ok(x.min_dim(-1, true)?.0));
        check_reduction_gradgrad(|x| x.max_dim(0, false)?.0.square());
    }
}
