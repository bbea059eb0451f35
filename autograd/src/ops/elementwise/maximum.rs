//! `maximum(a, b)`, `minimum(a, b)` with broadcasting. The gradient goes to the larger
//! (smaller) operand; at ties it is split equally, as PyTorch does.
use stategrad_backends::BinaryOp;

use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// Element-wise maximum, NumPy broadcasting.
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = self.binary_kernel("maximum", BinaryOp::Maximum, rhs)?;
        Ok(record(&[self, rhs], out, |_| Extremum { a: self.detach(), b: rhs.detach(), wins: BinaryOp::Gt }))
    }

    /// Element-wise minimum, NumPy broadcasting.
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = self.binary_kernel("minimum", BinaryOp::Minimum, rhs)?;
        Ok(record(&[self, rhs], out, |_| Extremum { a: self.detach(), b: rhs.detach(), wins: BinaryOp::Lt }))
    }
}

struct Extremum {
    a: Tensor, // untracked: the masks are piecewise constant
    b: Tensor,
    wins: BinaryOp,
}

impl Backward for Extremum {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let wins = self.a.binary_kernel("maximum", self.wins, &self.b)?;
        let ties = self.a.binary_kernel("maximum", BinaryOp::Eq, &self.b)?.mul_scalar(0.5)?;
        let mask_a = wins.add(&ties)?;
        let ga = grad.mul(&mask_a)?;
        let gb = grad.sub(&ga)?;
        Ok(vec![Some(ga), Some(gb)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 5.0, 3.0], &[3]);
        let b = t64(&[2.0, 4.0, 3.0], &[3]);
        assert_close(&a.maximum(&b).unwrap(), &[2.0, 5.0, 3.0], 0.0);
        assert_close(&a.minimum(&b).unwrap(), &[1.0, 4.0, 3.0], 0.0);
    }
    #[test]
    fn ties_split_the_gradient() {
        let a = t64(&[3.0], &[1]).requires_grad(true).unwrap();
        let b = t64(&[3.0], &[1]).requires_grad(true).unwrap();
        let g = a.maximum(&b).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(g.get(&a).unwrap(), &[0.5], 0.0);
        assert_close(g.get(&b).unwrap(), &[0.5], 0.0);
    }
    #[test]
    fn gradient() {
        // disjoint ranges keep the inputs away from ties
        check_binary(|a, b| a.maximum(b), (-2.0, -0.5), (0.5, 2.0));
        check_binary(|a, b| a.maximum(b), (0.5, 2.0), (-2.0, -0.5));
        check_binary(|a, b| a.minimum(b), (-2.0, -0.5), (0.5, 2.0));
    }
}
