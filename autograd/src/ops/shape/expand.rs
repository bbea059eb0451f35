//! `expand` / `broadcast_to`: a stride-0 view; the tape sums the gradient back.
use crate::tape::{record, Backward};
use crate::{Result, Tensor};

impl Tensor {
    /// This tensor broadcast to `shape` (NumPy rules), without copying.
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let out = self.with_layout(self.layout().broadcast_as(shape)?);
        Ok(record(&[self], out, |_| Expand))
    }

    /// Alias of [`Tensor::expand`].
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        self.expand(shape)
    }
}

struct Expand;

impl Backward for Expand {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone())]) // un-broadcast by the tape
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0], &[2, 1]);
        let e = a.expand(&[3, 2, 2]).unwrap();
        assert!(e.same_storage(&a));
        assert_close(&e, &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0], 0.0);
        assert!(a.expand(&[3, 3]).is_err());
    }
    #[test]
    fn gradient() {
        check_view(|x| x.narrow(1, 0, 1)?.expand(&[4, 5, 3]));
        check_view(|x| x.unsqueeze(0)?.expand(&[2, 4, 3, 3]));
    }
}
