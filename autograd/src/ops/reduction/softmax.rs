//! `softmax` and `log_softmax` along a dimension (stable kernels: the max is subtracted).
//! softmax: dx = s * (g - sum(g * s)); log_softmax: dx = g - exp(out) * sum(g).
use crate::ops::saved_or;
use crate::tape::{record, Backward};
use crate::{Dim, Result, Tensor};

impl Tensor {
    fn softmax_kernel(&self, op: &'static str, dim: usize, log: bool) -> Result<Tensor> {
        self.check_float(op)?;
        Ok(Tensor::fresh(self.storage().softmax(self.layout(), dim, log)?, self.shape()))
    }

    /// Softmax along `dim`.
    pub fn softmax(&self, dim: impl Dim) -> Result<Tensor> {
        let dim = dim.to_index("softmax", self.rank())?;
        let out = self.softmax_kernel("softmax", dim, false)?;
        Ok(record(&[self], out, |out| Softmax { x: self.clone(), out: out.detach(), dim, log: false }))
    }

    /// Log-softmax along `dim`.
    pub fn log_softmax(&self, dim: impl Dim) -> Result<Tensor> {
        let dim = dim.to_index("log_softmax", self.rank())?;
        let out = self.softmax_kernel("log_softmax", dim, true)?;
        Ok(record(&[self], out, |out| Softmax { x: self.clone(), out: out.detach(), dim, log: true }))
    }
}

struct Softmax {
    x: Tensor,
    out: Tensor,
    dim: usize,
    log: bool,
}

impl Backward for Softmax {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if self.log {
            let out = saved_or(&self.out, || self.x.log_softmax(self.dim))?;
            let gx = grad.sub(&out.exp()?.mul(&grad.sum(self.dim, true)?)?)?;
            Ok(vec![Some(gx)])
        } else {
            let s = saved_or(&self.out, || self.x.softmax(self.dim))?;
            let gx = s.mul(&grad.sub(&grad.mul(&s)?.sum(self.dim, true)?)?)?;
            Ok(vec![Some(gx)])
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0], &[2, 3]);
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let z: f64 = e.iter().sum();
        let third = 1.0 / 3.0;
        assert_close(&a.softmax(1).unwrap(), &[e[0] / z, e[1] / z, e[2] / z, third, third, third], 1e-12);
        assert_close(
            &a.log_softmax(-1).unwrap(),
            &[(e[0] / z).ln(), (e[1] / z).ln(), (e[2] / z).ln(), third.ln(), third.ln(), third.ln()],
            1e-12,
        );
    }
    #[test]
    fn gradient() {
        check_reduction(|x| x.softmax(1));
        check_reduction(|x| x.log_softmax(-1));
    }
    #[test]
    fn gradgradient() {
        check_reduction_gradgrad(|x| x.softmax(2));
        check_reduction_gradgrad(|x| x.log_softmax(0));
    }
}
