//! `sqrt(x)` and `rsqrt(x) = x^-1/2`; d/dx sqrt = 1 / (2 sqrt x), d/dx rsqrt = -rsqrt(x)^3 / 2.
use crate::ops::saved_or;
use crate::tape::{record, Backward};
use crate::{Result, Tensor, UnaryOp};

impl Tensor {
    /// Element-wise square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.check_float("sqrt")?;
        let out = self.unary_kernel(UnaryOp::Sqrt)?;
        Ok(record(&[self], out, |out| Sqrt { x: self.clone(), out: out.detach() }))
    }

    /// Element-wise `1 / sqrt(x)`.
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.check_float("rsqrt")?;
        let out = self.unary_kernel(UnaryOp::Rsqrt)?;
        Ok(record(&[self], out, |out| Rsqrt { x: self.clone(), out: out.detach() }))
    }
}

struct Sqrt {
    x: Tensor,
    out: Tensor,
}

impl Backward for Sqrt {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let out = saved_or(&self.out, || self.x.sqrt())?;
        Ok(vec![Some(grad.div(&out.mul_scalar(2.0)?)?)])
    }
}

struct Rsqrt {
    x: Tensor,
    out: Tensor,
}

impl Backward for Rsqrt {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let out = saved_or(&self.out, || self.x.rsqrt())?;
        Ok(vec![Some(grad.mul(&out.powf(3.0)?)?.mul_scalar(-0.5)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[4.0, 9.0], &[2]).sqrt().unwrap(), &[2.0, 3.0], 1e-12);
        assert_close(&t64(&[4.0, 16.0], &[2]).rsqrt().unwrap(), &[0.5, 0.25], 1e-12);
    }
    #[test]
    fn gradient() {
        check_unary(|x| x.sqrt(), 0.5, 3.0);
        check_unary(|x| x.rsqrt(), 0.5, 3.0);
    }
}
