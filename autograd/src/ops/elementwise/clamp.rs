//! `clamp(x, lo, hi)`; d/dx = 1 inside `[lo, hi]`, 0 outside (PyTorch's convention at the
//! bounds: the gradient passes).
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise `min(max(x, lo), hi)`; use `f64::NEG_INFINITY` / `f64::INFINITY` for one side.
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        let out = self.unary_kernel(UnaryOp::Clamp(lo, hi))?;
        Ok(record(&[self], out, |_| Clamp { x: self.detach(), lo, hi }))
    }
}

struct Clamp {
    x: Tensor, // untracked: the mask is piecewise constant
    lo: f64,
    hi: f64,
}

impl Backward for Clamp {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.mul(&self.x.unary_kernel(UnaryOp::InRange(self.lo, self.hi))?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[-2.0, 0.5, 3.0], &[3]).clamp(-1.0, 1.0).unwrap(), &[-1.0, 0.5, 1.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_unary_away_from(|x| x.clamp(-0.5, 0.5), &[-0.5, 0.5]);
    }
}
