//! `a * b` with broadcasting; d/da = b, d/db = a.
use stategrad_backends::BinaryOp;

use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// Element-wise product, NumPy broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = self.binary_kernel("mul", BinaryOp::Mul, rhs)?;
        Ok(record(&[self, rhs], out, |_| Mul {
            a: rhs.is_tracked().then(|| self.clone()),
            b: self.is_tracked().then(|| rhs.clone()),
        }))
    }
}

struct Mul {
    a: Option<Tensor>, // saved only when b needs a gradient
    b: Option<Tensor>, // saved only when a needs a gradient
}

impl Backward for Mul {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![self.b.as_ref().map(|b| grad.mul(b)).transpose()?, self.a.as_ref().map(|a| grad.mul(a)).transpose()?])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let b = t64(&[10.0, 100.0], &[2, 1]);
        assert_close(&a.mul(&b).unwrap(), &[10.0, 20.0, 300.0, 400.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_binary(|a, b| a.mul(b), (-2.0, 2.0), (-2.0, 2.0));
    }
    #[test]
    fn gradgradient() {
        check_binary_gradgrad(|a, b| a.mul(b), (-2.0, 2.0), (-2.0, 2.0));
    }
}
