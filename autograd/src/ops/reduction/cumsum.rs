//! `cumsum(dim)` and `cumprod(dim)`: inclusive scans, composed as a Hillis–Steele scan of
//! `ceil(log2 n)` steps, each the tensor combined with itself shifted by `2^k` (padded
//! with 0 for sums, 1 for products). Built from narrow, cat, add and mul only, so the
//! gradients (first and second order) come by composition, and cumprod's is exact even
//! where an element is 0 (no division).
use crate::{Dim, Result, Tensor};

impl Tensor {
    fn scan(&self, op: &'static str, dim: impl Dim, product: bool) -> Result<Tensor> {
        self.check_float(op)?;
        if self.rank() == 0 {
            return Ok(self.clone());
        }
        let d = dim.to_index(op, self.rank())?;
        let n = self.shape()[d];
        let mut y = self.clone();
        let mut k = 1;
        while k < n {
            let mut pad_shape = self.shape().to_vec();
            pad_shape[d] = k;
            let pad = self.full_on(&pad_shape, if product { 1.0 } else { 0.0 })?;
            let shifted = Tensor::cat(&[&pad, &y.narrow(d, 0, n - k)?], d)?;
            y = if product { y.mul(&shifted)? } else { y.add(&shifted)? };
            k *= 2;
        }
        Ok(y)
    }

    /// Cumulative sum along `dim`: `out[i] = x[0] + ... + x[i]` (PyTorch's `cumsum`).
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0], &[4], Device::Cpu)?;
    /// assert_eq!(x.cumsum(0)?.to_vec::<f64>()?, vec![1.0, 3.0, 6.0, 10.0]);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn cumsum(&self, dim: impl Dim) -> Result<Tensor> {
        self.scan("cumsum", dim, false)
    }

    /// Cumulative product along `dim`: `out[i] = x[0] * ... * x[i]` (PyTorch's `cumprod`).
    pub fn cumprod(&self, dim: impl Dim) -> Result<Tensor> {
        self.scan("cumprod", dim, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    #[test]
    fn forward() {
        let v: Vec<f64> = (1..=15).map(f64::from).collect();
        let a = t64(&v, &[3, 5]);
        let sums: Vec<f64> = v
            .chunks(5)
            .flat_map(|r| {
                r.iter().scan(0.0, |s, x| {
                    Some({
                        *s += x;
                        *s
                    })
                })
            })
            .collect();
        assert_close(&a.cumsum(-1).unwrap(), &sums, 1e-15);
        let prods: Vec<f64> = v
            .chunks(5)
            .flat_map(|r| {
                r.iter().scan(1.0, |s, x| {
                    Some({
                        *s *= x;
                        *s
                    })
                })
            })
            .collect();
        assert_close(&a.cumprod(1).unwrap(), &prods, 1e-15);
        // along dim 0 of the transpose = along dim 1
        assert_close(&a.t().unwrap().cumsum(0).unwrap().t().unwrap(), &sums, 1e-15);
        assert_close(&t64(&[2.0, 0.0, 3.0], &[3]).cumprod(0).unwrap(), &[2.0, 0.0, 0.0], 0.0);
    }

    #[test]
    fn cumprod_gradient_through_a_zero() {
        // d/dx_j sum_i prod_{k<=i} x_k at x = (2, 0, 3): (0 + 0 + 0, 1 + 2*... ) by hand:
        // out = (x0, x0 x1, x0 x1 x2); d/dx0 = 1 + x1 + x1 x2 = 1; d/dx1 = x0 + x0 x2 = 8;
        // d/dx2 = x0 x1 = 0
        let x = t64(&[2.0, 0.0, 3.0], &[3]).requires_grad(true).unwrap();
        let g = x.cumprod(0).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(g.get(&x).unwrap(), &[1.0, 8.0, 0.0], 0.0);
    }

    #[test]
    fn gradient() {
        check_reduction(|x| x.cumsum(1));
        check_reduction(|x| x.cumprod(-1));
        check_unary(|x| x.cumprod(0), 0.5, 1.5); // contiguous, transposed, sliced, broadcast
        check_unary(|x| x.cumsum(-1), -1.0, 1.0);
        check_reduction_gradgrad(|x| x.cumprod(2));
        check_reduction_gradgrad(|x| x.cumsum(0)?.square());
    }
}
