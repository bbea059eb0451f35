//! `1 / x`; d/dx = -1 / x^2.
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise reciprocal.
    pub fn recip(&self) -> Result<Tensor> {
        self.check_float("recip")?;
        let out = self.unary_kernel(UnaryOp::Recip)?;
        Ok(record(&[self], out, |_| Recip { x: self.clone() }))
    }
}

struct Recip {
    x: Tensor,
}

impl Backward for Recip {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.div(&self.x.mul(&self.x)?)?.neg()?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[2.0, -4.0], &[2]).recip().unwrap(), &[0.5, -0.25], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.recip(), 0.5, 2.0);
    }
}
