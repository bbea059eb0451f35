//! `x^p` for a scalar exponent; d/dx = p x^(p-1). `square` is `powf(2)`.
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise `x^p`.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.check_float("powf")?;
        let out = self.unary_kernel(UnaryOp::Powf(p))?;
        Ok(record(&[self], out, |_| Powf { x: self.clone(), p }))
    }

    /// Element-wise `x * x`.
    pub fn square(&self) -> Result<Tensor> {
        self.mul(self)
    }
}

struct Powf {
    x: Tensor,
    p: f64,
}

impl Backward for Powf {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.x.powf(self.p - 1.0)?.mul_scalar(self.p)?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[2.0, 3.0], &[2]).powf(3.0).unwrap(), &[8.0, 27.0], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.powf(2.5), 0.5, 2.0);
        check_unary(|x| x.square(), -2.0, 2.0);
    }
}
