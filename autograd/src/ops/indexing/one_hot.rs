//! `one_hot(num_classes)`: i64 labels to a 0/1 tensor with a new last dimension (not
//! differentiable). On the CPU the labels are checked, then compared with `0..num_classes`;
//! on a GPU it is a scatter_add of ones into zeros, so the labels are range-checked on the
//! device and nothing is read back (a bad label is the deferred `Error::Index` of
//! scatter_add, at the next read-back).
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Labels (i64, any shape) to `[.., num_classes]` of 0/1 in `dtype`. A label outside
    /// `0..num_classes` is an error.
    pub fn one_hot(&self, num_classes: usize, dtype: DType) -> Result<Tensor> {
        if self.dtype() != DType::I64 {
            return Err(Error::DType { op: "one_hot", expected: "int64 labels", got: self.dtype() });
        }
        stategrad_backends::checked_numel("one_hot", &[self.numel(), num_classes])?;
        if !self.device().is_cpu() && num_classes > 0 {
            let mut shape = self.shape().to_vec();
            shape.push(num_classes);
            let idx = self.unsqueeze(-1)?;
            let zeros = Tensor::zeros(&shape, dtype, self.device())?;
            return zeros.scatter_add(-1, &idx, &Tensor::ones(idx.shape(), dtype, self.device())?);
        }
        if let Some(&bad) = self.to_vec::<i64>()?.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
            return Err(Error::Index { op: "one_hot", index: bad, dim: self.rank(), size: num_classes });
        }
        let classes = Tensor::arange(0, num_classes as i64, DType::I64, self.device())?;
        self.unsqueeze(-1)?.eq(&classes)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::{DType, Device, Tensor};
    #[test]
    fn forward() {
        let l = Tensor::from_slice(&[2i64, 0], &[2], Device::Cpu).unwrap();
        assert_close(&l.one_hot(3, DType::F64).unwrap(), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0], 0.0);
        assert!(l.one_hot(2, DType::F32).is_err());
    }
}
