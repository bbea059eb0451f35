//! `squeeze(dim)` / `unsqueeze(dim)`: views adding or removing a size-1 dimension.
use super::reshape::Reshape;
use crate::tape::record;
use crate::{Dim, Result, Tensor};

impl Tensor {
    /// Removes dimension `dim`, which must have size 1 (negative counts from the end).
    pub fn squeeze(&self, dim: impl Dim) -> Result<Tensor> {
        let d = dim.to_index("squeeze", self.rank())?;
        let out = self.with_layout(self.layout().squeeze(d)?);
        Ok(record(&[self], out, |_| Reshape { input_shape: self.shape().to_vec() }))
    }

    /// Inserts a size-1 dimension at `dim` (`0..=rank`; negative counts from the end of the
    /// output, so -1 appends).
    pub fn unsqueeze(&self, dim: impl Dim) -> Result<Tensor> {
        let d = dim.to_insert_index("unsqueeze", self.rank())?;
        let out = self.with_layout(self.layout().unsqueeze(d)?);
        Ok(record(&[self], out, |_| Reshape { input_shape: self.shape().to_vec() }))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0], &[3]);
        assert_eq!(a.unsqueeze(0).unwrap().shape(), &[1, 3]);
        assert_eq!(a.unsqueeze(-1).unwrap().shape(), &[3, 1]);
        assert_eq!(a.unsqueeze(1).unwrap().squeeze(1).unwrap().shape(), &[3]);
        assert!(a.squeeze(0).is_err());
        assert!(a.unsqueeze(3).is_err());
        assert!(matches!(a.unsqueeze(-3), Err(crate::Error::Dim { op: "unsqueeze", dim: -3, rank: 1 })));
    }
    #[test]
    fn gradient() {
        check_view(|x| x.unsqueeze(1)?.transpose(0, 1)?.squeeze(0));
    }
}
