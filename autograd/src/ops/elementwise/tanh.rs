//! `tanh(x)`; d/dx = 1 - tanh(x)^2.
use crate::ops::saved_or;
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        self.check_float("tanh")?;
        let out = self.unary_kernel(UnaryOp::Tanh)?;
        Ok(record(&[self], out, |out| Tanh { x: self.clone(), out: out.detach() }))
    }
}

struct Tanh {
    x: Tensor,
    out: Tensor,
}

impl Backward for Tanh {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let out = saved_or(&self.out, || self.x.tanh())?;
        let d = out.mul(&out)?.affine(-1.0, 1.0)?;
        Ok(vec![Some(grad.mul(&d)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[0.0, 1.0], &[2]).tanh().unwrap(), &[0.0, 1f64.tanh()], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.tanh(), -2.0, 2.0);
    }
}
