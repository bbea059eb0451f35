//! `relu(x) = max(x, 0)`; d/dx = 1 where x > 0, else 0 (0 at the kink, as PyTorch).
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise rectifier.
    pub fn relu(&self) -> Result<Tensor> {
        self.check_float("relu")?;
        let out = self.unary_kernel(UnaryOp::Relu)?;
        Ok(record(&[self], out, |_| Relu { mask: self.detach() }))
    }
}

struct Relu {
    mask: Tensor, // the input, untracked: its step is piecewise constant
}

impl Backward for Relu {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.mask.unary_kernel(UnaryOp::Step)?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[-1.0, 0.0, 2.0], &[3]).relu().unwrap(), &[0.0, 0.0, 2.0], 0.0);
    }
    #[test]
    fn gradient() {
        // inputs kept away from the kink at 0
        check_unary_away_from(|x| x.relu(), &[0.0]);
    }
}
