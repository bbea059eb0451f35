//! `a^b` (tensor exponent) with broadcasting; d/da = b a^(b-1), d/db = a^b ln a.
use stategrad_backends::BinaryOp;

use crate::ops::saved_or;
use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// Element-wise power, NumPy broadcasting.
    pub fn pow(&self, rhs: &Tensor) -> Result<Tensor> {
        self.check_float("pow")?;
        let out = self.binary_kernel("pow", BinaryOp::Pow, rhs)?;
        Ok(record(&[self, rhs], out, |out| Pow { a: self.clone(), b: rhs.clone(), out: out.detach() }))
    }
}

struct Pow {
    a: Tensor,
    b: Tensor,
    out: Tensor,
}

impl Backward for Pow {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let ga = grad.mul(&self.b)?.mul(&self.a.pow(&self.b.add_scalar(-1.0)?)?)?;
        let gb = if self.b.is_tracked() {
            let out = saved_or(&self.out, || self.a.pow(&self.b))?;
            Some(grad.mul(&out)?.mul(&self.a.log()?)?)
        } else {
            None
        };
        Ok(vec![Some(ga), gb])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        assert_close(&t64(&[2.0, 3.0], &[2]).pow(&t64(&[3.0, 0.5], &[2])).unwrap(), &[8.0, 3f64.sqrt()], 1e-12);
    }
    #[test]
    fn gradient() {
        check_binary(|a, b| a.pow(b), (0.5, 2.0), (-1.5, 1.5));
    }
}
