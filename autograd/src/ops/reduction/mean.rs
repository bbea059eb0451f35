//! `mean` and `var` over dimensions: composites of sum (no rule of their own).
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

    /// Variance over `dims`; `unbiased` divides by `n - 1` (Bessel), else by `n`.
    pub fn var(&self, dims: impl Dims, unbiased: bool, keepdim: bool) -> Result<Tensor> {
        let axes = dims.to_indexes("var", self.rank())?;
        let n: usize = axes.iter().map(|&a| self.shape()[a]).product();
        let denom = if unbiased { n.checked_sub(1) } else { Some(n) }
            .filter(|&d| d > 0)
            .ok_or_else(|| Error::shape("var", &[self.shape()], format!("cannot take a variance over {n} elements")))?;
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
        assert_close(&a.var(1, true, false).unwrap(), &[1.0, 7.0], 1e-12);
        assert_close(&a.var(1, false, false).unwrap(), &[2.0 / 3.0, 14.0 / 3.0], 1e-12);
        assert!(t64(&[1.0], &[1]).var(0, true, false).is_err());
    }
    #[test]
    fn gradient() {
        check_reduction(|x| x.mean([0, 1], false));
        check_reduction(|x| x.var(2, true, true));
    }
}
