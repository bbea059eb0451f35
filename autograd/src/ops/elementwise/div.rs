//! `a / b` with broadcasting; d/da = 1/b, d/db = -a/b^2.
use stategrad_backends::BinaryOp;

use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// Element-wise quotient, NumPy broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = self.binary_kernel("div", BinaryOp::Div, rhs)?;
        Ok(record(&[self, rhs], out, |_| Div { a: self.clone(), b: rhs.clone() }))
    }
}

struct Div {
    a: Tensor,
    b: Tensor,
}

impl Backward for Div {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let ga = grad.div(&self.b)?;
        let gb = if self.b.is_tracked() { Some(ga.mul(&self.a)?.div(&self.b)?.neg()?) } else { None };
        Ok(vec![Some(ga), gb])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[1.0, 3.0], &[2]).div(&t64(&[2.0], &[1])).unwrap(), &[0.5, 1.5], 0.0);
    }
    #[test]
    fn gradient() {
        check_binary(|a, b| a.div(b), (-2.0, 2.0), (0.5, 2.0));
    }
    #[test]
    fn gradgradient() {
        check_binary_gradgrad(|a, b| a.div(b), (-2.0, 2.0), (0.5, 2.0));
    }
}
