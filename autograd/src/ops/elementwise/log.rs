//! `log(x)` (natural); d/dx = 1 / x.
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.check_float("log")?;
        let out = self.unary_kernel(UnaryOp::Log)?;
        Ok(record(&[self], out, |_| Log { x: self.clone() }))
    }
}

struct Log {
    x: Tensor,
}

impl Backward for Log {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.div(&self.x)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[1.0, std::f64::consts::E], &[2]).log().unwrap(), &[0.0, 1.0], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.log(), 0.5, 3.0);
    }
}
