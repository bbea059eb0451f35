//! `to_dtype`: a cast; between float dtypes the gradient is cast back, to or from i64 the
//! result is untracked (not differentiable).
use crate::tape::{record, Backward};
use crate::{DType, Result, Tensor};

impl Tensor {
    /// This tensor converted to `dtype` (floats to i64 truncate toward zero).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = Tensor::fresh(self.storage().cast(self.layout(), dtype)?, self.shape());
        if !dtype.is_float() {
            return Ok(out);
        }
        Ok(record(&[self], out, |_| ToDType { dtype: self.dtype() }))
    }
}

struct ToDType {
    dtype: DType,
}

impl Backward for ToDType {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.to_dtype(self.dtype)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::DType;
    #[test]
    fn forward() {
        let a = t64(&[1.5, -2.7], &[2]);
        assert_eq!(a.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap(), vec![1, -2]);
        assert_eq!(a.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(), vec![1.5, -2.7]);
    }
    #[test]
    fn gradient_flows_through_float_casts() {
        let a = t64(&[1.5, -2.0], &[2]).requires_grad(true).unwrap();
        let g = a.to_dtype(DType::F32).unwrap().mul_scalar(3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let ga = g.get(&a).unwrap();
        assert_eq!(ga.dtype(), DType::F64);
        assert_close(ga, &[3.0, 3.0], 0.0);
        assert!(!a.to_dtype(DType::I64).unwrap().is_tracked());
    }
}
