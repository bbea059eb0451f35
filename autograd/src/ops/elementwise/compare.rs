//! Comparisons `eq ne gt ge lt le` with broadcasting, and against a scalar (`eq_scalar`,
//! ..., PyTorch's `x == 0`). Never differentiable: the result (0 or 1, in the operands'
//! dtype) is always untracked.
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

    fn compare_scalar(&self, op: &'static str, kop: BinaryOp, value: f64) -> Result<Tensor> {
        self.binary_kernel(op, kop, &self.full_on(&[], value)?)
    }
    /// `x == value` as 0/1 (untracked): PyTorch's `x == 0`.
    pub fn eq_scalar(&self, value: f64) -> Result<Tensor> {
        self.compare_scalar("eq", BinaryOp::Eq, value)
    }
    /// `x != value` as 0/1 (untracked).
    pub fn ne_scalar(&self, value: f64) -> Result<Tensor> {
        self.compare_scalar("ne", BinaryOp::Ne, value)
    }
    /// `x > value` as 0/1 (untracked).
    pub fn gt_scalar(&self, value: f64) -> Result<Tensor> {
        self.compare_scalar("gt", BinaryOp::Gt, value)
    }
    /// `x >= value` as 0/1 (untracked).
    pub fn ge_scalar(&self, value: f64) -> Result<Tensor> {
        self.compare_scalar("ge", BinaryOp::Ge, value)
    }
    /// `x < value` as 0/1 (untracked).
    pub fn lt_scalar(&self, value: f64) -> Result<Tensor> {
        self.compare_scalar("lt", BinaryOp::Lt, value)
    }
    /// `x <= value` as 0/1 (untracked).
    pub fn le_scalar(&self, value: f64) -> Result<Tensor> {
        self.compare_scalar("le", BinaryOp::Le, value)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn against_a_scalar() {
        let a = t64(&[1.0, 2.0, 3.0], &[3]).requires_grad(true).unwrap();
        assert_close(&a.eq_scalar(2.0).unwrap(), &[0.0, 1.0, 0.0], 0.0);
        assert_close(&a.ne_scalar(2.0).unwrap(), &[1.0, 0.0, 1.0], 0.0);
        assert_close(&a.gt_scalar(2.0).unwrap(), &[0.0, 0.0, 1.0], 0.0);
        assert_close(&a.ge_scalar(2.0).unwrap(), &[0.0, 1.0, 1.0], 0.0);
        assert_close(&a.lt_scalar(2.0).unwrap(), &[1.0, 0.0, 0.0], 0.0);
        assert_close(&a.le_scalar(2.0).unwrap(), &[1.0, 1.0, 0.0], 0.0);
        assert!(!a.lt_scalar(2.0).unwrap().is_tracked());
        let i = crate::Tensor::from_slice(&[0i64, 3], &[2], crate::Device::Cpu).unwrap();
        assert_eq!(i.eq_scalar(0.0).unwrap().to_vec::<i64>().unwrap(), vec![1, 0]);
    }
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
