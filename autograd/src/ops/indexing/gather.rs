//! `gather(dim, idx)`: `out[p] = x[p with p[dim] = idx[p]]`; the gradient is scatter-added.
use crate::tape::{record, Backward};
use crate::{DType, Dim, Error, Result, Tensor};

/// Checks an index tensor against `x` for gather / scatter_add: i64, same rank, same device,
/// and no larger than `x` outside `dim`. Index values are the kernels' to check: the CPU's
/// as they read (an immediate `Error::Index`), a GPU's on the device, without a host
/// round-trip (the `Error::Index` comes from the next read-back or `Storage::synchronize`).
pub(crate) fn check_index(op: &'static str, x: &Tensor, d: usize, idx: &Tensor) -> Result<()> {
    if idx.dtype() != DType::I64 {
        return Err(Error::DType { op, expected: "an int64 index", got: idx.dtype() });
    }
    if idx.device() != x.device() {
        return Err(Error::Device { op, a: x.device(), b: idx.device() });
    }
    if idx.rank() != x.rank() || idx.shape().iter().zip(x.shape()).enumerate().any(|(i, (a, b))| i != d && a > b) {
        return Err(Error::shape(
            op,
            &[x.shape(), idx.shape()],
            format!("index must have rank {} and fit outside dim {d}", x.rank()),
        ));
    }
    Ok(())
}

impl Tensor {
    /// Picks along `dim` by an i64 index of the output's shape (PyTorch's `gather`).
    pub fn gather(&self, dim: impl Dim, idx: &Tensor) -> Result<Tensor> {
        let d = dim.to_index("gather", self.rank())?;
        check_index("gather", self, d, idx)?;
        let out = Tensor::fresh(self.storage().gather(self.layout(), d, idx.storage(), idx.layout())?, idx.shape());
        Ok(record(&[self], out, |_| Gather { dim: d, idx: idx.clone(), input_shape: self.shape().to_vec() }))
    }
}

struct Gather {
    dim: usize,
    idx: Tensor,
    input_shape: Vec<usize>,
}

impl Backward for Gather {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.full_on(&self.input_shape, 0.0)?.scatter_add(self.dim, &self.idx, grad)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::{Device, Tensor};
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let i = Tensor::from_slice(&[2i64, 2, 0, 1], &[2, 2], Device::Cpu).unwrap();
        assert_close(&a.gather(1, &i).unwrap(), &[3.0, 3.0, 4.0, 5.0], 0.0);
        let bad = Tensor::from_slice(&[3i64, 0], &[2, 1], Device::Cpu).unwrap();
        let e = a.gather(1, &bad).unwrap_err().to_string();
        assert!(e.contains("gather") && e.contains('3'), "{e}");
    }
    #[test]
    fn gradient() {
        let i = Tensor::from_slice(&[0i64, 2, 2, 1, 0, 0, 1, 1, 2, 0, 1, 2], &[4, 3, 1], Device::Cpu).unwrap();
        check_view(move |x| x.gather(2, &i));
    }
}
