//! Exact GELU, `x * Phi(x)` with `Phi` the normal CDF (PyTorch's default, erf form);
//! d/dx = Phi(x) + x phi(x); d2/dx2 = phi(x) (2 - x^2). And the tanh approximation
//! (`approximate='tanh'`), `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`, a
//! composite whose gradients come by composition.
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

    /// Element-wise GELU in its tanh approximation, PyTorch's
    /// `gelu(x, approximate='tanh')`: `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`.
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.check_float("gelu_tanh")?;
        const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
        let inner = self.square()?.affine(0.044715 * SQRT_2_OVER_PI, SQRT_2_OVER_PI)?.mul(self)?;
        inner.tanh()?.add_scalar(1.0)?.mul(self)?.mul_scalar(0.5)
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
    #[allow(clippy::excessive_precision)] // reference values as computed
    fn forward() {
        // x Phi(x) and its derivative, mpmath at 40 digits; f64 to 1e-15 (erf is exact)
        let x = t64(&[-1.0, 0.0, 1.5, 3.0], &[4]).requires_grad(true).unwrap();
        let y = x.gelu().unwrap();
        assert_close(&y, &[-0.15865525393145705, 0.0, 1.3997891980967129, 2.9959503059051097], 1e-15);
        let g = y.sum_all().unwrap().backward().unwrap();
        assert_close(g.get(&x).unwrap(), &[-0.08331547058768630, 0.5, 1.1274691922299795, 1.0119456472041839], 1e-15);
    }
    #[test]
    #[allow(clippy::excessive_precision)] // reference values as computed
    fn tanh_approximation() {
        // x / 2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), mpmath at 40 digits
        let x = t64(&[-1.0, 0.0, 1.5, 3.0], &[4]);
        assert_close(
            &x.gelu_tanh().unwrap(),
            &[-0.15880800939172330, 0.0, 1.3995715769802329, 2.9963626079182270],
            1e-15,
        );
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.gelu(), -3.0, 3.0);
        check_unary(|x| x.gelu_tanh(), -3.0, 3.0);
    }
}
