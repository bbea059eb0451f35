//! `erf(x)`; d/dx = 2 / sqrt(pi) * e^(-x^2).
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise error function.
    pub fn erf(&self) -> Result<Tensor> {
        self.check_float("erf")?;
        let out = self.unary_kernel(UnaryOp::Erf)?;
        Ok(record(&[self], out, |_| Erf { x: self.clone() }))
    }
}

struct Erf {
    x: Tensor,
}

impl Backward for Erf {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let d = self.x.mul(&self.x)?.neg()?.exp()?.mul_scalar(std::f64::consts::FRAC_2_SQRT_PI)?;
        Ok(vec![Some(grad.mul(&d)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(
            &t64(&[0.0, 1.0, -0.5], &[3]).erf().unwrap(),
            &[0.0, 0.8427007929497149, -0.5204998778130465], // mpmath, rounded to f64
            1e-15,
        );
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.erf(), -2.0, 2.0);
    }
}
