//! `masked_fill(mask, value)`: `value` where `mask != 0`, else `x` (PyTorch's
//! `x.masked_fill(mask, value)`), with broadcasting; `x`'s gradient is zero where filled
//! (where_cond's rule). And `tril(k)` / `triu(k)`: the lower / upper triangle of the last
//! two dims (PyTorch's `torch.tril`), the rest zero; the gradient is masked the same way.
use crate::{DType, Result, Tensor};

impl Tensor {
    /// `value` where `mask` (any dtype, nonzero = fill, broadcast against `x`), else `x`.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu)?;
    /// let y = x.masked_fill(&x.gt_scalar(1.5)?, f64::NEG_INFINITY)?;
    /// assert_eq!(y.to_vec::<f64>()?, vec![1.0, f64::NEG_INFINITY, f64::NEG_INFINITY]);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        mask.where_cond(&self.full_on(&[], value)?, self)
    }

    /// 1 where `col - row <= k` (`lower`) or `>= k` (upper) over the last two dims.
    fn triangle_mask(&self, op: &'static str, k: i64, lower: bool) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(crate::Error::shape(op, &[self.shape()], "needs at least 2 dimensions"));
        }
        let (r, c) = (self.shape()[self.rank() - 2], self.shape()[self.rank() - 1]);
        let rows = Tensor::arange(0, r as i64, DType::I64, self.device())?.unsqueeze(1)?;
        let cols = Tensor::arange(0, c as i64, DType::I64, self.device())?.unsqueeze(0)?;
        let diff = cols.sub(&rows)?; // col - row, [r, c]
        let bound = Tensor::from_vec(vec![k], &[], self.device())?;
        let keep = if lower { diff.le(&bound)? } else { diff.ge(&bound)? };
        keep.to_dtype(self.dtype())
    }

    /// The lower triangle (`col - row <= k`) of the last two dims, zeros above
    /// (PyTorch's `torch.tril(x, diagonal=k)`).
    pub fn tril(&self, k: i64) -> Result<Tensor> {
        let keep = self.triangle_mask("tril", k, true)?;
        self.masked_fill(&keep.eq_scalar(0.0)?, 0.0)
    }

    /// The upper triangle (`col - row >= k`) of the last two dims, zeros below
    /// (PyTorch's `torch.triu(x, diagonal=k)`).
    pub fn triu(&self, k: i64) -> Result<Tensor> {
        let keep = self.triangle_mask("triu", k, false)?;
        self.masked_fill(&keep.eq_scalar(0.0)?, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Tensor;

    #[test]
    fn forward() {
        let x = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let m = t64(&[1.0, 0.0, 0.0], &[3]); // broadcast over rows
        assert_close(&x.masked_fill(&m, -1.0).unwrap(), &[-1.0, 2.0, 3.0, -1.0, 5.0, 6.0], 0.0);
        let ones = Tensor::ones(&[3, 3], crate::DType::F64, None).unwrap();
        assert_close(&ones.tril(0).unwrap(), &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], 0.0);
        assert_close(&ones.tril(-1).unwrap(), &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0], 0.0);
        assert_close(&ones.triu(1).unwrap(), &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], 0.0);
        assert_close(&x.triu(0).unwrap(), &[1.0, 2.0, 3.0, 0.0, 5.0, 6.0], 0.0);
        assert_close(&x.t().unwrap().tril(0).unwrap(), &[1.0, 0.0, 2.0, 5.0, 3.0, 6.0], 0.0);
        assert!(t64(&[1.0], &[1]).tril(0).is_err());
    }

    #[test]
    fn gradient() {
        check_unary(|x| x.narrow(1, 0, 3)?.tril(0), -1.0, 1.0);
        check_unary(|x| x.triu(1), -1.0, 1.0);
        // the mask is piecewise constant in x (no value lies within eps of 0.5)
        check_unary(|x| x.masked_fill(&x.gt_scalar(0.5)?, 2.0), -1.0, 1.0);
        let mask = t64(&[0.0, 1.0, 0.0, 1.0], &[4]); // broadcast over rows
        check_fn(|x| x[0].masked_fill(&mask, -3.0), &[rand64(&[3, 4], -1.0, 1.0, 5).requires_grad(true).unwrap()]);
    }
}
