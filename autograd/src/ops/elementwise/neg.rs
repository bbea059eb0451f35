//! `-x`; d/dx = -1.
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise negation.
    pub fn neg(&self) -> Result<Tensor> {
        let out = self.unary_kernel(UnaryOp::Neg)?;
        Ok(record(&[self], out, |_| Neg))
    }
}

struct Neg;

impl Backward for Neg {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.neg()?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[1.0, -2.0], &[2]).neg().unwrap(), &[-1.0, 2.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.neg(), -2.0, 2.0);
    }
}
