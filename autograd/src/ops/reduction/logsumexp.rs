//! `logsumexp(dims, keepdim)`: `log(sum(exp(x)))` over dims, computed stably as
//! `m + log(sum(exp(x - m)))` with `m` the (detached) maximum; a composite, so its
//! gradient, softmax over the dims, comes by composition.
use crate::{Dims, Result, Tensor};

impl Tensor {
    /// `log(sum(exp(x)))` over `dims` (PyTorch's `logsumexp`), without overflow. Rows of
    /// `-inf` give `-inf`, an `inf` gives `inf`.
    pub fn logsumexp(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        self.check_float("logsumexp")?;
        let axes = dims.to_indexes("logsumexp", self.rank())?;
        let m = self.detach().max(axes.clone(), true)?;
        // an infinite maximum is not subtracted (it would make inf - inf = NaN)
        let finite = m.abs()?.lt(&m.full_on(&[], f64::INFINITY)?)?;
        let m = finite.where_cond(&m, &m.full_on(&[], 0.0)?)?;
        let out = self.sub(&m)?.exp()?.sum(axes.clone(), true)?.log()?.add(&m)?;
        if keepdim {
            Ok(out)
        } else {
            out.reshape(&super::sum::reduced_shape(self.shape(), &axes, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    #[test]
    fn forward() {
        let a = t64(&[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0], &[2, 3]);
        let z: f64 = [1f64, 2.0, 3.0].iter().map(|x| x.exp()).sum();
        assert_close(&a.logsumexp(1, false).unwrap(), &[z.ln(), 1000.0 + 3f64.ln()], 1e-15);
        assert_close(&a.logsumexp(-1, true).unwrap(), &[z.ln(), 1000.0 + 3f64.ln()], 1e-15);
        assert_eq!(a.logsumexp(-1, true).unwrap().shape(), &[2, 1]);
        let b = t64(&[0.5, -1.0, 2.0, 0.25], &[2, 2]);
        let all: f64 = [0.5f64, -1.0, 2.0, 0.25].iter().map(|x| x.exp()).sum::<f64>().ln();
        assert_close(&b.logsumexp([0, 1], false).unwrap(), &[all], 1e-15);
        let inf = t64(&[f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY, 0.0], &[2, 2]);
        assert_eq!(inf.logsumexp(1, false).unwrap().to_vec::<f64>().unwrap(), vec![f64::NEG_INFINITY, f64::INFINITY]);
    }

    #[test]
    fn gradient() {
        check_reduction(|x| x.logsumexp(0, false));
        check_reduction(|x| x.logsumexp([-1, 1], true));
        check_reduction_gradgrad(|x| x.logsumexp(2, false));
        check_unary(|x| x.logsumexp(-1, true), -2.0, 2.0); // transposed, sliced, broadcast; gradgrad
    }
}
