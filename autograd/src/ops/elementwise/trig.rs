//! `sin(x)`, `cos(x)`; d/dx sin = cos, d/dx cos = -sin.
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise sine.
    pub fn sin(&self) -> Result<Tensor> {
        self.check_float("sin")?;
        let out = self.unary_kernel(UnaryOp::Sin)?;
        Ok(record(&[self], out, |_| Sin { x: self.clone() }))
    }

    /// Element-wise cosine.
    pub fn cos(&self) -> Result<Tensor> {
        self.check_float("cos")?;
        let out = self.unary_kernel(UnaryOp::Cos)?;
        Ok(record(&[self], out, |_| Cos { x: self.clone() }))
    }
}

struct Sin {
    x: Tensor,
}

impl Backward for Sin {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.x.cos()?)?)])
    }
}

struct Cos {
    x: Tensor,
}

impl Backward for Cos {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.x.sin()?)?.neg()?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[0.0, 1.0], &[2]).sin().unwrap(), &[0.0, 1f64.sin()], 1e-12);
        assert_close(&t64(&[0.0, 1.0], &[2]).cos().unwrap(), &[1.0, 1f64.cos()], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.sin(), -3.0, 3.0);
        check_unary(|x| x.cos(), -3.0, 3.0);
    }
}
