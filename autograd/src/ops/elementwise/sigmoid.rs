//! `sigmoid(x) = 1 / (1 + e^-x)`; d/dx = s (1 - s).
use crate::ops::saved_or;
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise logistic sigmoid.
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.check_float("sigmoid")?;
        let out = self.unary_kernel(UnaryOp::Sigmoid)?;
        Ok(record(&[self], out, |out| Sigmoid { x: self.clone(), out: out.detach() }))
    }
}

struct Sigmoid {
    x: Tensor,
    out: Tensor,
}

impl Backward for Sigmoid {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let s = saved_or(&self.out, || self.x.sigmoid())?;
        Ok(vec![Some(grad.mul(&s.mul(&s.affine(-1.0, 1.0)?)?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[0.0, 2.0], &[2]).sigmoid().unwrap(), &[0.5, 1.0 / (1.0 + (-2f64).exp())], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.sigmoid(), -3.0, 3.0);
    }
}
