//! `exp(x)`; d/dx exp(x) = exp(x), so backward reuses the output.
use crate::ops::saved_or;
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise `e^x`.
    pub fn exp(&self) -> Result<Tensor> {
        self.check_float("exp")?;
        let out = self.unary_kernel(UnaryOp::Exp)?;
        Ok(record(&[self], out, |out| Exp { x: self.clone(), out: out.detach() }))
    }
}

struct Exp {
    x: Tensor,
    out: Tensor,
}

impl Backward for Exp {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let out = saved_or(&self.out, || self.x.exp())?;
        Ok(vec![Some(grad.mul(&out)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[0.0, 1.0], &[2]).exp().unwrap(), &[1.0, std::f64::consts::E], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.exp(), -2.0, 2.0);
    }
}
