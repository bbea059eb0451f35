//! `transpose`, `t` and `permute`: views with reordered strides; the gradient is permuted back.
use crate::tape::{record, Backward};
use crate::{Dim, Error, Result, Tensor};

impl Tensor {
    /// Reorders dimensions: output dim `i` is input dim `dims[i]` (a view; negative dims
    /// count from the end, so `permute(&[0, -1, 1])` moves the last dim to position 1).
    pub fn permute<D: Dim>(&self, dims: &[D]) -> Result<Tensor> {
        let dims = dims.iter().map(|d| d.to_index("permute", self.rank())).collect::<Result<Vec<_>>>()?;
        let out = self.with_layout(self.layout().permute(&dims)?);
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(record(&[self], out, |_| Permute { inverse }))
    }

    /// Swaps two dimensions (a view).
    pub fn transpose(&self, d0: impl Dim, d1: impl Dim) -> Result<Tensor> {
        let (a, b) = (d0.to_index("transpose", self.rank())?, d1.to_index("transpose", self.rank())?);
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of a 2-D tensor (the last two dims of a batch).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::shape("t", &[self.shape()], "needs at least 2 dimensions"));
        }
        self.transpose(-2, -1)
    }
}

struct Permute {
    inverse: Vec<usize>,
}

impl Backward for Permute {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.permute(&self.inverse)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let t = a.t().unwrap();
        assert!(t.same_storage(&a) && !t.is_contiguous());
        assert_close(&t, &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
        let p = a.reshape(&[1, 2, 3]).unwrap().permute(&[2, 0, 1]).unwrap();
        assert_eq!(p.shape(), &[3, 1, 2]);
        assert!(a.permute(&[0, 0]).is_err());
        let n = a.reshape(&[1, 2, 3]).unwrap().permute(&[0, -1, 1]).unwrap();
        assert_eq!(n.shape(), &[1, 3, 2]);
        assert_close(&n, &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0);
        assert!(matches!(a.permute(&[0, -3]), Err(crate::Error::Dim { op: "permute", dim: -3, rank: 2 })));
    }
    #[test]
    fn gradient() {
        check_view(|x| x.permute(&[2, 0, 1]));
        check_view(|x| x.transpose(0, -1));
    }
}
