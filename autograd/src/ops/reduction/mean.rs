//! `mean`, `var` and `std` over dimensions: composites of sum (no rule of their own).
//! `var = sum((x - mean)^2) / (n - correction)`; `std = sqrt(var)`.
use crate::{Dims, Error, Result, Tensor};

impl Tensor {
    /// Mean over `dims`.
    pub fn mean(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let axes = dims.to_indexes("mean", self.rank())?;
        let n: usize = axes.iter().map(|&a| self.shape()[a]).product();
        self.sum(axes, keepdim)?.div_scalar(n as f64)
    }

    /// Mean of every element, as a 0-dimensional tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean((0..self.rank()).collect::<Vec<usize>>(), false)
    }

    /// Variance over `dims`, dividing by `n - correction` (PyTorch's `var(dim, correction=,
    /// keepdim=)`): `correction = 1` is Bessel's unbiased estimate (PyTorch's default),
    /// `0` the population variance (`unbiased=False`). `n - correction <= 0` is an error.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0], &[5], Device::Cpu)?;
    /// assert_eq!(x.var(0, 1, false)?.item()?, 2.5); // torch.var(x) (correction=1)
    /// assert_eq!(x.std(-1, 0, false)?.item()?, 2f64.sqrt()); // torch.std(x, correction=0)
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn var(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Result<Tensor> {
        self.var_named("var", dims, correction, keepdim)
    }

    /// Standard deviation over `dims`: `sqrt(var(dims, correction, keepdim))`.
    pub fn std(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Result<Tensor> {
        self.var_named("std", dims, correction, keepdim)?.sqrt()
    }

    fn var_named(&self, op: &'static str, dims: impl Dims, correction: usize, keepdim: bool) -> Result<Tensor> {
        let axes = dims.to_indexes(op, self.rank())?;
        let n: usize = axes.iter().map(|&a| self.shape()[a]).product();
        let denom = n.checked_sub(correction).filter(|&d| d > 0).ok_or_else(|| {
            Error::shape(
                op,
                &[self.shape()],
                format!("cannot take a variance over {n} elements with correction {correction}"),
            )
        })?;
        let centred = self.sub(&self.mean(axes.clone(), true)?)?;
        centred.square()?.sum(axes, keepdim)?.div_scalar(denom as f64)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 9.0], &[2, 3]);
        assert_close(&a.mean(1, false).unwrap(), &[2.0, 6.0], 1e-12);
        assert_close(&a.var(1, 1, false).unwrap(), &[1.0, 7.0], 1e-15);
        assert_close(&a.var(-1, 0, false).unwrap(), &[2.0 / 3.0, 14.0 / 3.0], 1e-15);
        assert_close(&a.var(1, 2, true).unwrap(), &[2.0, 14.0], 1e-15);
        assert_close(&a.std(1, 1, false).unwrap(), &[1.0, 7f64.sqrt()], 1e-15);
        // over both dims: mean 4, squares 9 4 1 0 1 25 = 40
        assert_close(&a.var([0, 1], 1, false).unwrap(), &[8.0], 1e-15);
        assert_close(&a.std([-2, -1], 0, false).unwrap(), &[(40.0f64 / 6.0).sqrt()], 1e-15);
        assert!(t64(&[1.0], &[1]).var(0, 1, false).is_err());
        assert!(matches!(a.std(1, 3, false), Err(crate::Error::Shape { op: "std", .. })));
    }
    #[test]
    fn gradient() {
        check_reduction(|x| x.mean([0, 1], false));
        check_reduction(|x| x.var(2, 1, true));
        check_reduction(|x| x.std([0, -1], 0, false));
        check_reduction_gradgrad(|x| x.std(1, 1, false));
        check_unary(|x| x.var(1, 1, true), -2.0, 2.0); // transposed, sliced, broadcast; gradgrad
        check_unary(|x| x.std(-1, 0, false), -2.0, 2.0);
    }
}
