//! Scalar arithmetic `x * mul + add` (and its shorthands); d/dx = mul.
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise `x * mul + add`, one kernel pass.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        let out = self.unary_kernel(UnaryOp::Affine(mul, add))?;
        Ok(record(&[self], out, |_| Affine { mul }))
    }

    /// `x + s`.
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }

    /// `x - s`.
    pub fn sub_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, -s)
    }

    /// `x * s`.
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }

    /// `x / s`.
    pub fn div_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0 / s, 0.0)
    }
}

struct Affine {
    mul: f64,
}

impl Backward for Affine {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul_scalar(self.mul)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[1.0, -2.0], &[2]).affine(3.0, 0.5).unwrap(), &[3.5, -5.5], 0.0);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.affine(-1.5, 2.0), -2.0, 2.0);
    }
}
