//! `matmul`: `[.., m, k] x [.., k, n]`, batch dims broadcast (1-D operands promoted as in
//! `torch.matmul`). d/da = g b^T, d/db = a^T g; broadcast batch dims are summed by the tape.
use stategrad_backends::broadcast_shapes;

use crate::ops::check_same;
use crate::tape::{record, Backward};
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Matrix product with NumPy-style batch broadcasting. Transposed operands are not copied.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        check_same("matmul", self, rhs)?;
        match (self.rank(), rhs.rank()) {
            (0, _) | (_, 0) => {
                return Err(Error::shape(
                    "matmul",
                    &[self.shape(), rhs.shape()],
                    "both operands need at least 1 dimension",
                ))
            }
            (1, _) => return self.unsqueeze(0)?.matmul(rhs)?.squeeze(-2),
            (_, 1) => return self.matmul(&rhs.unsqueeze(-1)?)?.squeeze(-1),
            _ => {}
        }
        let (ra, rb) = (self.rank(), rhs.rank());
        let (m, k, k2, n) = (self.shape()[ra - 2], self.shape()[ra - 1], rhs.shape()[rb - 2], rhs.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                &[self.shape(), rhs.shape()],
                format!("inner dimensions {k} and {k2} differ"),
            ));
        }
        let batch = broadcast_shapes("matmul", &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])?;
        let with = |tail: [usize; 2]| batch.iter().copied().chain(tail).collect::<Vec<_>>();
        stategrad_backends::checked_numel("matmul", &with([m, n]))?;
        let la = self.layout().broadcast_as(&with([m, k]))?;
        let lb = rhs.layout().broadcast_as(&with([k, n]))?;
        let out = Tensor::fresh(self.storage().matmul(&la, rhs.storage(), &lb)?, &with([m, n]));
        Ok(record(&[self, rhs], out, |_| MatMul {
            a: rhs.is_tracked().then(|| self.clone()),
            b: self.is_tracked().then(|| rhs.clone()),
        }))
    }
}

struct MatMul {
    a: Option<Tensor>, // saved only when b needs a gradient
    b: Option<Tensor>, // saved only when a needs a gradient
}

impl Backward for MatMul {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let ga = self.b.as_ref().map(|b| grad.matmul(&b.t()?)).transpose()?;
        let gb = self.a.as_ref().map(|a| a.t()?.matmul(grad)).transpose()?;
        Ok(vec![ga, gb])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = t64(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
        assert_close(&a.matmul(&b).unwrap(), &[4.0, 5.0, 10.0, 11.0], 0.0);
        assert_close(&a.matmul(&a.t().unwrap()).unwrap(), &[14.0, 32.0, 32.0, 77.0], 0.0);
        let v = t64(&[1.0, 1.0, 1.0], &[3]);
        assert_close(&a.matmul(&v).unwrap(), &[6.0, 15.0], 0.0);
        let batched = a.unsqueeze(0).unwrap().expand(&[4, 2, 3]).unwrap().matmul(&b).unwrap();
        assert_eq!(batched.shape(), &[4, 2, 2]);
        let e = a.matmul(&a).unwrap_err().to_string();
        assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
    }
    #[test]
    fn gradient() {
        check_matmul(|a, b| a.matmul(b));
    }
    #[test]
    fn gradgradient() {
        check_matmul_gradgrad(|a, b| a.matmul(b));
    }
}
