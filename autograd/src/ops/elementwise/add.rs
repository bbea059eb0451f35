//! `a + b` and `a - b` with broadcasting; d/da = 1, d/db = +-1 (the tape un-broadcasts).
use stategrad_backends::BinaryOp;

use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// Element-wise sum, NumPy broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = self.binary_kernel("add", BinaryOp::Add, rhs)?;
        Ok(record(&[self, rhs], out, |_| Add { sign: 1.0 }))
    }

    /// Element-wise difference, NumPy broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = self.binary_kernel("sub", BinaryOp::Sub, rhs)?;
        Ok(record(&[self, rhs], out, |_| Add { sign: -1.0 }))
    }
}

struct Add {
    sign: f64,
}

impl Backward for Add {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let rhs = if self.sign > 0.0 { grad.clone() } else { grad.neg()? };
        Ok(vec![Some(grad.clone()), Some(rhs)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = t64(&[10.0, 20.0, 30.0], &[3]);
        assert_close(&a.add(&b).unwrap(), &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0], 0.0);
        assert_close(&a.sub(&b).unwrap(), &[-9.0, -18.0, -27.0, -6.0, -15.0, -24.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_binary(|a, b| a.add(b), (-2.0, 2.0), (-2.0, 2.0));
        check_binary(|a, b| a.sub(b), (-2.0, 2.0), (-2.0, 2.0));
    }
    #[test]
    fn shape_errors_name_the_op() {
        let e = t64(&[1.0, 2.0], &[2]).add(&t64(&[1.0, 2.0, 3.0], &[3])).unwrap_err().to_string();
        assert!(e.contains("add") && e.contains("[2]") && e.contains("[3]"), "{e}");
        let e = t64(&[1.0], &[1]).add(&t32(&[1.0], &[1])).unwrap_err().to_string();
        assert!(e.contains("add") && e.contains("float64") && e.contains("float32"), "{e}");
    }
}
