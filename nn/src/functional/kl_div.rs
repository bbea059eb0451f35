//! `kl_div(input, target)`: PyTorch's `F.kl_div`, `input` holding log-probabilities:
//! `target (log target - input)` (0 where `target = 0`), or with `log_target`
//! `exp(target) (target - input)`. `BatchMean` divides the sum by the batch size (dim 0),
//! the true KL divergence; `Mean` divides by the element count (PyTorch's default).
use stategrad_autograd::Result;

use super::{check_same_shape, Reduction};
use stategrad_autograd::Tensor;

/// KL divergence of `target` from `exp(input)` (PyTorch's `F.kl_div(input, target,
/// reduction, log_target)`).
pub fn kl_div(input: &Tensor, target: &Tensor, reduction: Reduction, log_target: bool) -> Result<Tensor> {
    check_same_shape("kl_div", input, target)?;
    let loss = if log_target {
        target.exp()?.mul(&target.sub(input)?)?
    } else {
        // xlogy: where target = 0 the term is 0 (log of 1 there, so no NaN in any gradient)
        let positive = target.gt(&target.full_on(&[], 0.0)?)?;
        let safe = positive.where_cond(target, &target.ones_like()?)?;
        target.mul(&safe.log()?.sub(input)?)?.mul(&positive)?
    };
    match reduction {
        Reduction::BatchMean => {
            let batch = if input.rank() == 0 { 1 } else { input.shape()[0] };
            loss.sum_all()?.div_scalar(batch.max(1) as f64)
        }
        r => r.apply("kl_div", &loss),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::test_support::{close_within, t64};
    use stategrad_autograd::{gradcheck, gradgradcheck, Error};

    #[track_caller]
    fn close(t: &Tensor, want: &[f64]) {
        close_within(t, want, 1e-15)
    }
    const Q: [f64; 4] = [0.25, 0.75, 0.5, 0.5]; // exp(input), two rows
    const P: [f64; 4] = [0.5, 0.5, 0.0, 1.0]; // target

    #[test]
    fn forward() {
        let input = t64(&Q.map(f64::ln), &[2, 2]);
        let target = t64(&P, &[2, 2]);
        let per: Vec<f64> = (0..4).map(|k| if P[k] > 0.0 { P[k] * (P[k] / Q[k]).ln() } else { 0.0 }).collect();
        close(&kl_div(&input, &target, Reduction::None, false).unwrap(), &per);
        close(&kl_div(&input, &target, Reduction::BatchMean, false).unwrap(), &[per.iter().sum::<f64>() / 2.0]);
        close(&kl_div(&input, &target, Reduction::Mean, false).unwrap(), &[per.iter().sum::<f64>() / 4.0]);
        // log targets: the same divergence where the target is positive
        let lt = t64(&[0.5f64.ln(), 0.5f64.ln(), 0.2f64.ln(), 0.8f64.ln()], &[2, 2]);
        let p2 = [0.5, 0.5, 0.2, 0.8];
        let want: f64 = (0..4).map(|k| p2[k] * (p2[k] / Q[k]).ln()).sum();
        close(&kl_div(&input, &lt, Reduction::Sum, true).unwrap(), &[want]);
        assert!(matches!(kl_div(&input, &t64(&P[..2], &[2]), Reduction::Sum, false), Err(Error::Shape { .. })));
    }

    #[test]
    fn gradients() {
        let target = t64(&P, &[2, 2]);
        let x = t64(&Q.map(f64::ln), &[2, 2]).requires_grad(true).unwrap();
        let xt = t64(&Q.map(f64::ln), &[2, 2]).t().unwrap().requires_grad(true).unwrap();
        let xb = t64(&Q[..2].iter().map(|q| q.ln()).collect::<Vec<_>>(), &[1, 2]).expand(&[2, 2]).unwrap();
        for x in [x, xt, xb.requires_grad(true).unwrap()] {
            gradcheck(|x| kl_div(&x[0], &target, Reduction::BatchMean, false), std::slice::from_ref(&x)).unwrap();
            gradgradcheck(|x| kl_div(&x[0], &target, Reduction::Sum, true), &[x]).unwrap();
        }
        // with respect to the target, through a zero target: finite
        let t = target.requires_grad(true).unwrap();
        let input = t64(&Q.map(f64::ln), &[2, 2]);
        let g = kl_div(&input, &t, Reduction::Sum, false).unwrap().backward().unwrap();
        assert!(g.get(&t).unwrap().to_f64_vec().unwrap().iter().all(|v| v.is_finite()));
    }
}
