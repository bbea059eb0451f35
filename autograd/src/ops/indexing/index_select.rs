//! `index_select(dim, idx)`: rows picked by a 1-D i64 index (repeats allowed); the gradient
//! is scatter-added back (repeated indices accumulate).
use crate::tape::{record, Backward};
use crate::{DType, Dim, Error, Result, Tensor};

impl Tensor {
    /// `out[.., i, ..] = self[.., idx[i], ..]` along `dim`; `idx` is a 1-D i64 tensor.
    pub fn index_select(&self, dim: impl Dim, idx: &Tensor) -> Result<Tensor> {
        let d = dim.to_index("index_select", self.rank())?;
        if idx.dtype() != DType::I64 || idx.rank() != 1 {
            return Err(Error::shape(
                "index_select",
                &[self.shape(), idx.shape()],
                "the index must be a 1-D int64 tensor",
            ));
        }
        if idx.device() != self.device() {
            return Err(Error::Device { op: "index_select", a: self.device(), b: idx.device() });
        }
        // Index values are checked by the kernel (deferred on a GPU, see gather::check_index).
        let mut shape = self.shape().to_vec();
        shape[d] = idx.numel();
        stategrad_backends::checked_numel("index_select", &shape)?;
        let out = Tensor::fresh(self.storage().index_select(self.layout(), d, idx.storage(), idx.layout())?, &shape);
        Ok(record(&[self], out, |_| IndexSelect { dim: d, idx: idx.clone(), input_shape: self.shape().to_vec() }))
    }
}

struct IndexSelect {
    dim: usize,
    idx: Tensor,
    input_shape: Vec<usize>,
}

impl Backward for IndexSelect {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // idx as [1, .., k, .., 1] broadcast to grad's shape: a scatter index, no copy
        let mut view = vec![1; grad.rank()];
        view[self.dim] = self.idx.numel();
        let idx = self.idx.reshape(&view)?.expand(grad.shape())?;
        let zeros = grad.full_on(&self.input_shape, 0.0)?;
        Ok(vec![Some(zeros.scatter_add(self.dim, &idx, grad)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::{Device, Tensor};
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        let i = Tensor::from_slice(&[2i64, 0, 2], &[3], Device::Cpu).unwrap();
        assert_close(&a.index_select(0, &i).unwrap(), &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0], 0.0);
        let bad = Tensor::from_slice(&[3i64], &[1], Device::Cpu).unwrap();
        assert!(a.index_select(0, &bad).is_err());
        assert!(a.index_select(0, &t64(&[0.0], &[1])).is_err());
    }
    #[test]
    fn gradient() {
        let i = Tensor::from_slice(&[2i64, 0, 2, 1], &[4], Device::Cpu).unwrap();
        check_view(move |x| x.index_select(1, &i));
    }
}
