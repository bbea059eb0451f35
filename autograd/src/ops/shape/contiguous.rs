//! `contiguous()`: a dense row-major copy when the view is strided (else the same tensor).
use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// This tensor with row-major dense storage (a copy only when needed).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let out = Tensor::fresh(self.storage().copy_strided(self.layout())?, self.shape());
        Ok(record(&[self], out, |_| Contiguous))
    }
}

struct Contiguous;

impl Backward for Contiguous {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone())])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).t().unwrap();
        let c = a.contiguous().unwrap();
        assert!(c.is_contiguous() && !c.same_storage(&a));
        assert_close(&c, &[1.0, 3.0, 2.0, 4.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_view(|x| x.transpose(0, 2)?.contiguous());
    }
}
