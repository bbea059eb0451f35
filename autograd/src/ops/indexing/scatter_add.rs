//! `scatter_add(dim, idx, src)`: a copy of `self` with `src` added at the indexed places.
//! d/dself = g; d/dsrc = g.gather(dim, idx).
use super::gather::check_index;
use crate::ops::check_same;
use crate::tape::{record, Backward};
use crate::{Dim, Error, Result, Tensor};

impl Tensor {
    /// `out = self; out[p with p[dim] = idx[p]] += src[p]` for every position `p` of `idx`
    /// (`src` has `idx`'s shape; repeated indices accumulate).
    pub fn scatter_add(&self, dim: impl Dim, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
        let d = dim.to_index("scatter_add", self.rank())?;
        check_same("scatter_add", self, src)?;
        check_index("scatter_add", self, d, idx)?;
        if src.shape() != idx.shape() {
            return Err(Error::shape("scatter_add", &[idx.shape(), src.shape()], "src must have the index's shape"));
        }
        let out = Tensor::fresh(
            self.storage().scatter_add(self.layout(), d, idx.storage(), idx.layout(), src.storage(), src.layout())?,
            self.shape(),
        );
        Ok(record(&[self, src], out, |_| ScatterAdd { dim: d, idx: idx.clone() }))
    }
}

struct ScatterAdd {
    dim: usize,
    idx: Tensor,
}

impl Backward for ScatterAdd {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone()), Some(grad.gather(self.dim, &self.idx)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::{Device, Tensor};
    #[test]
    fn forward() {
        let base = t64(&[0.0; 4], &[4]);
        let i = Tensor::from_slice(&[1i64, 3, 1], &[3], Device::Cpu).unwrap();
        let s = t64(&[1.0, 2.0, 3.0], &[3]);
        assert_close(&base.scatter_add(0, &i, &s).unwrap(), &[0.0, 4.0, 0.0, 2.0], 0.0);
        let bad = Tensor::from_slice(&[1i64, 4, 1], &[3], Device::Cpu).unwrap();
        assert!(base.scatter_add(0, &bad, &s).is_err());
    }
    #[test]
    fn gradient() {
        let i = Tensor::from_slice(&[0i64, 1, 1, 2, 0, 2], &[2, 3], Device::Cpu).unwrap();
        let src = rand64(&[2, 3], -1.0, 1.0, 11).requires_grad(true).unwrap();
        check_fn(
            move |x| x[0].scatter_add(0, &i, &x[1]),
            &[rand64(&[3, 3], -1.0, 1.0, 12).requires_grad(true).unwrap(), src],
        );
    }
}
