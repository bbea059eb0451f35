//! `norm(p, dims, keepdim)`: the vector p-norm over dims (PyTorch's `torch.linalg.vector_norm`
//! / `x.norm(p, dim)`): `(sum |x|^p)^(1/p)` for finite `p > 0`, `sqrt(sum x^2)` for 2,
//! `sum |x|` for 1, `max |x|` for infinity. A composite: gradients by composition.
use crate::{Dims, Error, Result, Tensor};

impl Tensor {
    /// The p-norm over `dims`: `p` finite and positive, or `f64::INFINITY` (max of `|x|`).
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[3.0f64, -4.0], &[2], Device::Cpu)?;
    /// assert_eq!(x.norm(2.0, -1, false)?.item()?, 5.0);
    /// assert_eq!(x.norm(1.0, 0, false)?.item()?, 7.0);
    /// assert_eq!(x.norm(f64::INFINITY, 0, false)?.item()?, 4.0);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn norm(&self, p: f64, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.check_float("norm")?;
        let axes = dims.to_indexes("norm", self.rank())?;
        if p == f64::INFINITY {
            return self.abs()?.max(axes, keepdim);
        }
        if !(p > 0.0 && p.is_finite()) {
            return Err(Error::argument("norm", format!("p must be positive (or infinity), got {p}")));
        }
        if p == 2.0 {
            return self.square()?.sum(axes, keepdim)?.sqrt();
        }
        if p == 1.0 {
            return self.abs()?.sum(axes, keepdim);
        }
        self.abs()?.powf(p)?.sum(axes, keepdim)?.powf(1.0 / p)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Error;

    #[test]
    fn forward() {
        let a = t64(&[3.0, -4.0, 0.0, 1.0, 2.0, -2.0], &[2, 3]);
        assert_close(&a.norm(2.0, 1, false).unwrap(), &[5.0, 3.0], 1e-15);
        assert_close(&a.norm(1.0, -1, true).unwrap(), &[7.0, 5.0], 1e-15);
        assert_close(&a.norm(f64::INFINITY, 0, false).unwrap(), &[3.0, 4.0, 2.0], 0.0);
        assert_close(&a.norm(3.0, 1, false).unwrap(), &[91f64.cbrt(), 17f64.cbrt()], 1e-15);
        assert_close(&a.norm(2.0, [0, 1], false).unwrap(), &[34f64.sqrt()], 1e-15);
        assert!(matches!(a.norm(0.0, 1, false), Err(Error::Argument { op: "norm", .. })));
        assert!(matches!(a.norm(-1.0, 1, false), Err(Error::Argument { op: "norm", .. })));
    }

    #[test]
    fn gradient() {
        // away from 0, where |x| has its kink
        check_unary_away_from(|x| x.norm(2.0, 1, false), &[0.0]);
        check_unary_away_from(|x| x.norm(1.0, -1, true), &[0.0]);
        check_unary_away_from(|x| x.norm(3.0, [0, 1], false), &[0.0]);
        check_unary_away_from(|x| x.norm(f64::INFINITY, 1, false), &[0.0]); // no ties along dim 1
        check_reduction_gradgrad(|x| x.norm(2.0, -1, false));
    }
}
