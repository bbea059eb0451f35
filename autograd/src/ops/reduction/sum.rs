//! `sum(dims, keepdim)` and `sum_all()`; the gradient is the output gradient broadcast back
//! over the summed dimensions.
use stategrad_backends::ReduceOp;

use crate::tape::{record, Backward};
use crate::{Dims, Result, Tensor};

/// The shape after reducing `axes` of `shape`, with or without the kept size-1 dims.
pub(crate) fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdim) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

impl Tensor {
    /// The untracked result of a reduction kernel over `axes` (sorted), shaped per `keepdim`.
    pub(crate) fn reduce_kernel(&self, op: ReduceOp, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let out =
            Tensor::fresh(self.storage().reduce(op, self.layout(), axes)?, &reduced_shape(self.shape(), axes, true));
        if keepdim {
            Ok(out)
        } else {
            out.reshape(&reduced_shape(self.shape(), axes, false))
        }
    }

    /// Sum over `dims` (negative dims count from the end); `keepdim` keeps them with size 1.
    pub fn sum(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let axes = dims.to_indexes("sum", self.rank())?;
        let out = self.reduce_kernel(ReduceOp::Sum, &axes, keepdim)?;
        Ok(record(&[self], out, |_| Sum {
            input_shape: self.shape().to_vec(),
            kept_shape: reduced_shape(self.shape(), &axes, true),
        }))
    }

    /// Sum of every element, as a 0-dimensional tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum((0..self.rank()).collect::<Vec<usize>>(), false)
    }
}

struct Sum {
    input_shape: Vec<usize>,
    kept_shape: Vec<usize>, // the output's shape with the summed dims kept as size 1
}

impl Backward for Sum {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.reshape(&self.kept_shape)?.expand(&self.input_shape)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        assert_close(&a.sum(0, false).unwrap(), &[5.0, 7.0, 9.0], 0.0);
        assert_eq!(a.sum(-1, true).unwrap().shape(), &[2, 1]);
        assert_close(&a.sum(-1, true).unwrap(), &[6.0, 15.0], 0.0);
        assert_close(&a.sum_all().unwrap(), &[21.0], 0.0);
        assert_eq!(a.sum_all().unwrap().shape(), &[] as &[usize]);
        assert_close(&a.t().unwrap().sum(1, false).unwrap(), &[5.0, 7.0, 9.0], 0.0);
    }
    #[test]
    fn gradient() {
        check_reduction(|x| x.sum(1, false));
        check_reduction(|x| x.sum([0, 2], true));
        check_reduction(|x| x.sum_all());
    }
}
