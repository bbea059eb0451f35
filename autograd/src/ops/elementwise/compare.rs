//! Comparisons `eq ne gt ge lt le` with broadcasting. Never differentiable: the result
//! (0 or 1, in the operands' dtype) is always untracked.
use stategrad_backends::BinaryOp;

use crate::{Result, Tensor};

impl Tensor {
    /// `a == b` as 0/1 (untracked).
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_kernel("eq", BinaryOp::Eq, rhs)
    }
    /// `a != b` as 0/1 (untracked).
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_kernel("ne", BinaryOp::Ne, rhs)
    }
    /// `a > b` as 0/1 (untracked).
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_kernel("gt", BinaryOp::Gt, rhs)
    }
    /// `a >= b` as 0/1 (untracked).
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_kernel("ge", BinaryOp::Ge, rhs)
    }
    /// `a < b` as 0/1 (untracked).
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_kernel("lt", BinaryOp::Lt, rhs)
    }
    /// `a <= b` as 0/1 (untracked).
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_kernel("le", BinaryOp::Le, rhs)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward_and_never_tracked() {
        let a = t64(&[1.0, 2.0, 3.0], &[3]).requires_grad(true).unwrap();
        let b = t64(&[2.0], &[1]);
        for (r, want) in [
            (a.eq(&b), [0.0, 1.0, 0.0]),
            (a.ne(&b), [1.0, 0.0, 1.0]),
            (a.gt(&b), [0.0, 0.0, 1.0]),
            (a.ge(&b), [0.0, 1.0, 1.0]),
            (a.lt(&b), [1.0, 0.0, 0.0]),
            (a.le(&b), [1.0, 1.0, 0.0]),
        ] {
            let r = r.unwrap();
            assert!(!r.is_tracked());
            assert_close(&r, &want, 0.0);
        }
        let err = a.gt(&b).unwrap().sum_all().unwrap().backward().unwrap_err();
        assert!(err.to_string().contains("not tracked"), "{err}");
    }
}
