//! `where(cond, a, b)`: `a` where `cond != 0`, else `b`, with broadcasting of all three;
//! d/da = cond, d/db = 1 - cond; `cond` gets no gradient.
use stategrad_backends::broadcast_shapes;

use crate::ops::check_same;
use crate::tape::{record, Backward};
use crate::{Error, Result, Tensor};

impl Tensor {
    /// `self` (the condition, any dtype, nonzero = true) selects `on_true` or `on_false`.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        check_same("where", on_true, on_false)?;
        if self.device() != on_true.device() {
            return Err(Error::Device { op: "where", a: self.device(), b: on_true.device() });
        }
        let shape =
            broadcast_shapes("where", &broadcast_shapes("where", self.shape(), on_true.shape())?, on_false.shape())?;
        let lc = self.layout().broadcast_as(&shape)?;
        let la = on_true.layout().broadcast_as(&shape)?;
        let lb = on_false.layout().broadcast_as(&shape)?;
        let out =
            Tensor::fresh(self.storage().where_cond(&lc, on_true.storage(), &la, on_false.storage(), &lb)?, &shape);
        Ok(record(&[on_true, on_false], out, |_| Where { cond: self.detach() }))
    }
}

struct Where {
    cond: Tensor,
}

impl Backward for Where {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let zero = Tensor::zeros(&[], grad.dtype(), grad.device())?;
        Ok(vec![Some(self.cond.where_cond(grad, &zero)?), Some(self.cond.where_cond(&zero, grad)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn forward() {
        let c = t64(&[1.0, 0.0, 1.0], &[3]);
        assert_close(&c.where_cond(&t64(&[1.0, 2.0, 3.0], &[3]), &t64(&[-1.0], &[1])).unwrap(), &[1.0, -1.0, 3.0], 0.0);
    }
    #[test]
    fn gradient() {
        let c = t64(&[1.0, 0.0, 1.0, 0.0], &[4, 1]);
        check_binary(move |a, b| c.where_cond(a, b), (-2.0, 2.0), (-2.0, 2.0));
    }
}
