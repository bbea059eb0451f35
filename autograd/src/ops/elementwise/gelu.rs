//! Exact GELU, `x * Phi(x)` with `Phi` the normal CDF (PyTorch's default, erf form);
//! d/dx = Phi(x) + x phi(x); d2/dx2 = phi(x) (2 - x^2).
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Tensor {
    /// Element-wise exact (erf) GELU.
    pub fn gelu(&self) -> Result<Tensor> {
        self.check_float("gelu")?;
        let out = self.unary_kernel(UnaryOp::Gelu)?;
        Ok(record(&[self], out, |_| Gelu { x: self.clone() }))
    }

    /// GELU's derivative, `Phi(x) + x phi(x)`, itself differentiable.
    fn gelu_grad(&self) -> Result<Tensor> {
        let out = self.unary_kernel(UnaryOp::GeluGrad)?;
        Ok(record(&[self], out, |_| GeluGrad { x: self.clone() }))
    }
}

struct Gelu {
    x: Tensor,
}

impl Backward for Gelu {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.x.gelu_grad()?)?)])
    }
}

struct GeluGrad {
    x: Tensor,
}

impl Backward for GeluGrad {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x2 = self.x.mul(&self.x)?;
        let phi = x2.mul_scalar(-0.5)?.exp()?.mul_scalar(FRAC_1_SQRT_2PI)?;
        Ok(vec![Some(grad.mul(&phi.mul(&x2.affine(-1.0, 2.0)?)?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        // torch.nn.functional.gelu(torch.tensor([-1., 0., 1.5], dtype=torch.float64))
        assert_close(
            &t64(&[-1.0, 0.0, 1.5], &[3]).gelu().unwrap(),
            &[-0.15865525393145707, 0.0, 1.3997891980967128],
            1e-7,
        );
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.gelu(), -3.0, 3.0);
    }
}
