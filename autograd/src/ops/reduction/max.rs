//! `max`/`min` over dimensions (values; ties share the gradient equally, like
//! `torch.amax`), and `argmax`/`argmin` (i64 indices of the first extremum; never tracked).
use stategrad_backends::{BinaryOp, ReduceOp};

use super::sum::reduced_shape;
use crate::tape::{record, Backward};
use crate::{Dim, Dims, Result, Tensor};

impl Tensor {
    fn extremum(&self, op: &'static str, kop: ReduceOp, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let axes = dims.to_indexes(op, self.rank())?;
        let kept = self.reduce_kernel(kop, &axes, true)?;
        let out = if keepdim { kept.clone() } else { kept.reshape(&reduced_shape(self.shape(), &axes, false))? };
        Ok(record(&[self], out, |_| Extremum { x: self.detach(), kept, axes }))
    }

    /// Maximum over `dims`. With ties the gradient is shared equally among the maxima.
    pub fn max(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.extremum("max", ReduceOp::Max, dims, keepdim)
    }

    /// Minimum over `dims`. With ties the gradient is shared equally among the minima.
    pub fn min(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.extremum("min", ReduceOp::Min, dims, keepdim)
    }

    /// Maximum of every element (0-dimensional).
    pub fn max_all(&self) -> Result<Tensor> {
        self.max((0..self.rank()).collect::<Vec<usize>>(), false)
    }

    /// Index (i64) of the first maximum along `dim`. Not differentiable.
    pub fn argmax(&self, dim: impl Dim, keepdim: bool) -> Result<Tensor> {
        let d = dim.to_index("argmax", self.rank())?;
        self.reduce_kernel(ReduceOp::ArgMax, &[d], keepdim)
    }

    /// Index (i64) of the first minimum along `dim`. Not differentiable.
    pub fn argmin(&self, dim: impl Dim, keepdim: bool) -> Result<Tensor> {
        let d = dim.to_index("argmin", self.rank())?;
        self.reduce_kernel(ReduceOp::ArgMin, &[d], keepdim)
    }
}

struct Extremum {
    x: Tensor,    // untracked: the mask of extrema is piecewise constant
    kept: Tensor, // the untracked output with the reduced dims kept as size 1
    axes: Vec<usize>,
}

impl Backward for Extremum {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mask = self.x.binary_kernel("max", BinaryOp::Eq, &self.kept)?;
        let count = mask.sum(self.axes.clone(), true)?;
        Ok(vec![Some(grad.reshape(self.kept.shape())?.mul(&mask.div(&count)?)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::DType;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 7.0, 3.0, 4.0, 5.0, 7.0], &[2, 3]);
        assert_close(&a.max(1, false).unwrap(), &[7.0, 7.0], 0.0);
        assert_close(&a.min(0, false).unwrap(), &[1.0, 5.0, 3.0], 0.0);
        assert_close(&a.max_all().unwrap(), &[7.0], 0.0);
        let am = a.argmax(1, false).unwrap();
        assert_eq!(am.dtype(), DType::I64);
        assert_eq!(am.to_vec::<i64>().unwrap(), vec![1, 2]);
        assert_eq!(a.argmin(-1, true).unwrap().shape(), &[2, 1]);
        assert_eq!(a.argmax(0, false).unwrap().to_vec::<i64>().unwrap(), vec![1, 0, 1]);
    }
    #[test]
    fn ties_share_the_gradient() {
        let a = t64(&[2.0, 2.0, 1.0], &[3]).requires_grad(true).unwrap();
        let g = a.max(0, false).unwrap().backward().unwrap();
        assert_close(g.get(&a).unwrap(), &[0.5, 0.5, 0.0], 0.0);
    }
    #[test]
    fn argmax_is_not_differentiable() {
        let a = t64(&[2.0, 3.0], &[2]).requires_grad(true).unwrap();
        assert!(!a.argmax(0, false).unwrap().is_tracked());
    }
    #[test]
    fn gradient() {
        // random inputs have no ties
        check_reduction(|x| x.max(1, false));
        check_reduction(|x| x.min([0, 2], true));
    }
}
