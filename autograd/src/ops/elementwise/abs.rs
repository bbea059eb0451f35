//! `|x|`; d/dx = sign(x) (0 at 0, as PyTorch).
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise absolute value.
    pub fn abs(&self) -> Result<Tensor> {
        let out = self.unary_kernel(UnaryOp::Abs)?;
        Ok(record(&[self], out, |_| Abs { x: self.detach() }))
    }
}

struct Abs {
    x: Tensor, // untracked: sign is piecewise constant
}

impl Backward for Abs {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.x.unary_kernel(UnaryOp::Sign)?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[1.0, -2.0], &[2]).abs().unwrap(), &[1.0, 2.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_unary_away_from(|x| x.abs(), &[0.0]);
    }
}
