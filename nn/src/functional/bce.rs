//! `binary_cross_entropy(p, y)` = `-w (y log p + (1 - y) log(1 - p))`, logs clamped at -100
//! as in PyTorch; `binary_cross_entropy_with_logits(x, y)` =
//! `-w (pos_weight y log sigmoid(x) + (1 - y) log sigmoid(-x))`, with both log-sigmoids
//! taken from one stable log_softmax over `[0, x]` (smooth everywhere, exact at x = 0).
use stategrad_autograd::{Error, Result, Tensor};

use super::{check_same_shape, Reduction};

/// Options of the binary cross-entropies (PyTorch's keyword arguments).
#[derive(Clone, Debug, Default)]
pub struct BceOptions {
    /// How the per-element losses combine (default: mean).
    pub reduction: Reduction,
    /// A weight broadcast against the loss, or `None`.
    pub weight: Option<Tensor>,
    /// `_with_logits` only: a weight of the positive term, broadcast along the last (class)
    /// dim, or `None`.
    pub pos_weight: Option<Tensor>,
}

fn finish(op: &'static str, loss: Tensor, o: &BceOptions) -> Result<Tensor> {
    let loss = match &o.weight {
        Some(w) => loss.mul(w)?,
        None => loss,
    };
    o.reduction.apply(op, &loss)
}

/// Binary cross-entropy of probabilities `p` against targets `y` of the same shape
/// (PyTorch's `F.binary_cross_entropy`; `pos_weight` is not an option there).
pub fn binary_cross_entropy(p: &Tensor, y: &Tensor, options: &BceOptions) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy";
    check_same_shape(OP, p, y)?;
    if options.pos_weight.is_some() {
        return Err(Error::argument(OP, "pos_weight is an option of binary_cross_entropy_with_logits only"));
    }
    let log_p = p.log()?.clamp(-100.0, f64::INFINITY)?;
    let log_1mp = p.affine(-1.0, 1.0)?.log()?.clamp(-100.0, f64::INFINITY)?;
    let loss = y.mul(&log_p)?.add(&y.affine(-1.0, 1.0)?.mul(&log_1mp)?)?.neg()?;
    finish(OP, loss, options)
}

/// Binary cross-entropy of logits `x` against targets `y` of the same shape (PyTorch's
/// `F.binary_cross_entropy_with_logits`, with `weight` and `pos_weight`).
///
/// ```
/// use stategrad_nn::functional::{binary_cross_entropy_with_logits, BceOptions};
/// use stategrad_autograd::{Tensor, Device};
/// let x = Tensor::from_slice(&[0.0f64], &[1], Device::Cpu)?;
/// let y = Tensor::from_slice(&[1.0f64], &[1], Device::Cpu)?;
/// let loss = binary_cross_entropy_with_logits(&x, &y, &BceOptions::default())?;
/// assert!((loss.item()? - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits(x: &Tensor, y: &Tensor, options: &BceOptions) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy_with_logits";
    check_same_shape(OP, x, y)?;
    // log_softmax([0, x]) = [log sigmoid(-x), log sigmoid(x)]
    let pair = Tensor::stack(&[&x.zeros_like()?, x], -1)?.log_softmax(-1)?;
    let (log_1mp, log_p) = (pair.select(-1, 0)?, pair.select(-1, 1)?);
    let positive = match &options.pos_weight {
        Some(pw) => y.mul(pw)?.mul(&log_p)?,
        None => y.mul(&log_p)?,
    };
    let loss = positive.add(&y.affine(-1.0, 1.0)?.mul(&log_1mp)?)?.neg()?;
    finish(OP, loss, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::test_support::{close_within, t64};
    use stategrad_autograd::{gradcheck, gradgradcheck};

    #[track_caller]
    fn close(t: &Tensor, want: &[f64]) {
        close_within(t, want, 1e-14)
    }
    const X: [f64; 6] = [0.0, 1.5, -2.0, 0.3, 40.0, -0.7];
    const Y: [f64; 6] = [1.0, 0.0, 1.0, 0.25, 0.0, 1.0];
    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn with_logits_matches_the_formula() {
        let (x, y) = (t64(&X, &[2, 3]), t64(&Y, &[2, 3]));
        let pw = [2.0, 1.0, 0.5];
        let w = [1.0, 3.0];
        // -w (pw y log s(x) + (1 - y) log(1 - s(x))); 1 - s(x) = s(-x), exact for x = 40
        let per: Vec<f64> =
            (0..6).map(|k| -w[k / 3] * (pw[k % 3] * Y[k] * sig(X[k]).ln() + (1.0 - Y[k]) * sig(-X[k]).ln())).collect();
        let o =
            BceOptions { reduction: Reduction::None, weight: Some(t64(&w, &[2, 1])), pos_weight: Some(t64(&pw, &[3])) };
        close(&binary_cross_entropy_with_logits(&x, &y, &o).unwrap(), &per);
        let sum = BceOptions { reduction: Reduction::Sum, ..o.clone() };
        close(&binary_cross_entropy_with_logits(&x, &y, &sum).unwrap(), &[per.iter().sum()]);
        let plain: f64 = (0..6).map(|k| -(Y[k] * sig(X[k]).ln() + (1.0 - Y[k]) * sig(-X[k]).ln())).sum::<f64>() / 6.0;
        close(&binary_cross_entropy_with_logits(&x, &y, &BceOptions::default()).unwrap(), &[plain]);
    }

    #[test]
    fn on_probabilities() {
        let p: Vec<f64> = [0.0, 1.5, -2.0, 0.3, 4.0, -0.7].iter().map(|&x| sig(x)).collect();
        let (pt, y) = (t64(&p, &[6]), t64(&Y, &[6]));
        let want: f64 = (0..6).map(|k| -(Y[k] * p[k].ln() + (1.0 - Y[k]) * (1.0 - p[k]).ln())).sum::<f64>() / 6.0;
        close(&binary_cross_entropy(&pt, &y, &BceOptions::default()).unwrap(), &[want]);
        // log(0) is clamped to -100, as in PyTorch
        let edge = binary_cross_entropy(&t64(&[0.0, 1.0], &[2]), &t64(&[1.0, 1.0], &[2]), &Default::default());
        close(&edge.unwrap(), &[50.0]);
        let o = BceOptions { pos_weight: Some(t64(&[1.0], &[1])), ..Default::default() };
        assert!(matches!(binary_cross_entropy(&pt, &y, &o), Err(Error::Argument { .. })));
        assert!(matches!(
            binary_cross_entropy(&pt, &t64(&Y[..3], &[3]), &Default::default()),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    fn gradients() {
        let y = t64(&Y, &[2, 3]);
        let o = BceOptions { weight: None, pos_weight: Some(t64(&[2.0, 1.0, 0.5], &[3])), ..Default::default() };
        let x = t64(&X, &[2, 3]).requires_grad(true).unwrap(); // includes x = 0
        let xt = t64(&X, &[3, 2]).t().unwrap().requires_grad(true).unwrap();
        let xb = t64(&X[..3], &[1, 3]).expand(&[2, 3]).unwrap().requires_grad(true).unwrap();
        for x in [x, xt, xb] {
            gradcheck(|x| binary_cross_entropy_with_logits(&x[0], &y, &o), std::slice::from_ref(&x)).unwrap();
            gradgradcheck(|x| binary_cross_entropy_with_logits(&x[0], &y, &o), &[x]).unwrap();
        }
        // d/dx at x = 0, y = 1: sigmoid(0) - 1 = -1/2 (a stable form has no kink there)
        let z = t64(&[0.0], &[1]).requires_grad(true).unwrap();
        let g =
            binary_cross_entropy_with_logits(&z, &t64(&[1.0], &[1]), &Default::default()).unwrap().backward().unwrap();
        close(g.get(&z).unwrap(), &[-0.5]);
        let p = t64(&[0.2, 0.7, 0.5, 0.9, 0.1, 0.4], &[2, 3]).requires_grad(true).unwrap();
        gradcheck(|p| binary_cross_entropy(&p[0], &y, &Default::default()), std::slice::from_ref(&p)).unwrap();
        gradgradcheck(|p| binary_cross_entropy(&p[0], &y, &Default::default()), &[p]).unwrap();
    }
}
