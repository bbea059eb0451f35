//! `reshape` (a view when the data is contiguous, else one copy) and `flatten`; the
//! gradient is reshaped back.
use crate::dims::resolve_shape;
use crate::tape::{record, Backward};
use crate::{Dim, Error, Result, Size, Tensor};

impl Tensor {
    /// The same elements with `shape` (same element count); one size may be `-1`, inferred
    /// from the others (`x.reshape(&[b, -1])`, PyTorch's `x.view(b, -1)`).
    pub fn reshape<S: Size>(&self, shape: &[S]) -> Result<Tensor> {
        let shape = &resolve_shape("reshape", shape, self.shape())?[..];
        if stategrad_backends::checked_numel("reshape", shape)? != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.shape(), shape],
                format!("{} elements cannot be viewed as {shape:?}", self.numel()),
            ));
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let out = match self.layout().reshape(shape) {
            Some(l) => self.with_layout(l),
            // A fresh contiguous copy takes the new shape directly (no second look-up).
            None => Tensor::fresh(self.storage().copy_strided(self.layout())?, shape),
        };
        Ok(record(&[self], out, |_| Reshape { input_shape: self.shape().to_vec() }))
    }

    /// Merges dimensions `start..=end` into one.
    pub fn flatten(&self, start: impl Dim, end: impl Dim) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let (s, e) = (start.to_index("flatten", self.rank())?, end.to_index("flatten", self.rank())?);
        if s > e {
            return Err(Error::shape("flatten", &[self.shape()], format!("start dim {s} is after end dim {e}")));
        }
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&shape)
    }
}

/// Reshapes the gradient back to the input's shape (also the rule of squeeze/unsqueeze).
pub(crate) struct Reshape {
    pub(crate) input_shape: Vec<usize>,
}

impl Backward for Reshape {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.reshape(&self.input_shape)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let r = a.reshape(&[3, 2]).unwrap();
        assert!(r.same_storage(&a), "contiguous reshape is a view");
        let t = a.t().unwrap().reshape(&[6]).unwrap();
        assert_close(&t, &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
        assert_eq!(a.reshape(&[1, 2, 3]).unwrap().flatten(0, 1).unwrap().shape(), &[2, 3]);
        assert_eq!(a.reshape(&[-1, 2]).unwrap().shape(), &[3, 2]);
        assert_eq!(a.t().unwrap().reshape(&[-1]).unwrap().shape(), &[6]);
        assert!(a.reshape(&[-1, 4]).is_err());
        let e = a.reshape(&[4]).unwrap_err().to_string();
        assert!(e.contains("reshape") && e.contains("[2, 3]") && e.contains("[4]"), "{e}");
    }
    #[test]
    fn gradient() {
        check_view(|x| x.reshape(&[6, 6]));
        check_view(|x| x.flatten(1, 2));
    }
}
