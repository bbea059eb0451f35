//! `cat(tensors, dim)` and `stack(tensors, dim)`; each input's gradient is its slice of the
//! output gradient.
use stategrad_backends::Storage;

use crate::tape::{record_rule, Backward};
use crate::{is_grad_enabled, Dim, Error, Result, Tensor};

impl Tensor {
    /// Concatenation along `dim`; all tensors agree on every other dimension, dtype and device.
    pub fn cat(tensors: &[&Tensor], dim: impl Dim) -> Result<Tensor> {
        let first = tensors.first().ok_or_else(|| Error::argument("cat", "expected at least one tensor, got none"))?;
        let d = dim.to_index("cat", first.rank())?;
        for t in &tensors[1..] {
            crate::ops::check_same("cat", first, t)?;
            let agree = t.rank() == first.rank()
                && t.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == d || a == b);
            if !agree {
                return Err(Error::shape(
                    "cat",
                    &tensors.iter().map(|t| t.shape()).collect::<Vec<_>>(),
                    format!("shapes must agree except along dimension {d}"),
                ));
            }
        }
        let mut shape = first.shape().to_vec();
        shape[d] = tensors.iter().try_fold(0usize, |acc, t| acc.checked_add(t.shape()[d])).unwrap_or(usize::MAX);
        stategrad_backends::checked_numel("cat", &shape)?;
        let parts: Vec<_> = tensors.iter().map(|t| (t.storage(), t.layout())).collect();
        let out = Tensor::fresh(Storage::cat(&parts, d)?, &shape);
        if !is_grad_enabled() || !tensors.iter().any(|t| t.is_tracked()) {
            return Ok(out);
        }
        let sizes = tensors.iter().map(|t| t.shape()[d]).collect();
        Ok(record_rule(tensors, out, Cat { dim: d, sizes }, "Cat"))
    }

    /// Stacks tensors of one shape along a new dimension `dim`.
    /// `dim` is in `0..=rank` (negative counts from the end of the output).
    pub fn stack(tensors: &[&Tensor], dim: impl Dim) -> Result<Tensor> {
        let first =
            tensors.first().ok_or_else(|| Error::argument("stack", "expected at least one tensor, got none"))?;
        let d = dim.to_insert_index("stack", first.rank())?;
        let unsqueezed = tensors.iter().map(|t| t.unsqueeze(d)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&unsqueezed.iter().collect::<Vec<_>>(), d)
    }
}

struct Cat {
    dim: usize,
    sizes: Vec<usize>,
}

impl Backward for Cat {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut start = 0;
        self.sizes
            .iter()
            .map(|&n| {
                let g = grad.narrow(self.dim, start, n)?;
                start += n;
                Ok(Some(g))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Tensor;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let b = t64(&[5.0, 6.0], &[2, 1]);
        assert_close(&Tensor::cat(&[&a, &b], 1).unwrap(), &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0], 0.0);
        assert_close(&Tensor::cat(&[&a.t().unwrap(), &a], 0).unwrap(), &[1.0, 3.0, 2.0, 4.0, 1.0, 2.0, 3.0, 4.0], 0.0);
        let s = Tensor::stack(&[&a, &a], 0).unwrap();
        assert_eq!(s.shape(), &[2, 2, 2]);
        assert_eq!(Tensor::stack(&[&a, &a], -1).unwrap().shape(), &[2, 2, 2]);
        let e = Tensor::cat(&[&a, &b], 0).unwrap_err().to_string();
        assert!(e.contains("cat") && e.contains("[2, 2]") && e.contains("[2, 1]"), "{e}");
    }
    #[test]
    fn gradient() {
        let a = rand64(&[3, 2], -1.0, 1.0, 1).requires_grad(true).unwrap();
        let b = rand64(&[4, 3], -1.0, 1.0, 2).t().unwrap().requires_grad(true).unwrap(); // non-contiguous
        check_fn(|x| Tensor::cat(&[&x[0], &x[1]], 1), &[a.clone(), b.clone()]);
        let c = rand64(&[1, 2], -1.0, 1.0, 3).expand(&[3, 2]).unwrap().requires_grad(true).unwrap(); // stride 0
        check_fn(|x| Tensor::stack(&[&x[0], &x[1]], -1), &[a, c]);
    }
}
