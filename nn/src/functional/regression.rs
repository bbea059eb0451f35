//! Regression losses: `mse` = mean `(x - y)^2`; `l1` = mean `|x - y|`; `smooth_l1(beta)` =
//! `0.5 d^2 / beta` where `|d| < beta`, else `|d| - beta / 2`; `huber(delta)` =
//! `0.5 d^2` where `|d| < delta`, else `delta (|d| - delta / 2)` (= `delta * smooth_l1`).
use stategrad_autograd::{Error, Result, Tensor};

use super::{check_same_shape, Reduction};

/// Mean squared error `mean((x - y)^2)` (PyTorch's `F.mse_loss` with its default reduction).
pub fn mse(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    mse_with(x, y, Reduction::Mean)
}

/// Squared error `(x - y)^2` under `reduction` (PyTorch's `F.mse_loss(x, y, reduction=)`).
pub fn mse_with(x: &Tensor, y: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("mse", x, y)?;
    reduction.apply("mse", &x.sub(y)?.square()?)
}

/// Absolute error `|x - y|` under `reduction` (PyTorch's `F.l1_loss`).
pub fn l1(x: &Tensor, y: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("l1", x, y)?;
    reduction.apply("l1", &x.sub(y)?.abs()?)
}

/// `0.5 d^2 / beta` where `|d| < beta`, else `|d| - 0.5 beta` (`d = x - y`), PyTorch's
/// `F.smooth_l1_loss(x, y, reduction, beta)`; `beta = 0` is the L1 loss.
pub fn smooth_l1(x: &Tensor, y: &Tensor, reduction: Reduction, beta: f64) -> Result<Tensor> {
    check_same_shape("smooth_l1", x, y)?;
    if beta.is_nan() || beta < 0.0 {
        return Err(Error::argument("smooth_l1", format!("beta must be non-negative, got {beta}")));
    }
    reduction.apply("smooth_l1", &quadratic_then_linear(&x.sub(y)?, beta, 1.0 / beta.max(f64::MIN_POSITIVE), 1.0)?)
}

/// `0.5 d^2` where `|d| < delta`, else `delta (|d| - 0.5 delta)`, PyTorch's
/// `F.huber_loss(x, y, reduction, delta)`; `delta` must be positive.
pub fn huber(x: &Tensor, y: &Tensor, reduction: Reduction, delta: f64) -> Result<Tensor> {
    check_same_shape("huber", x, y)?;
    if delta.is_nan() || delta <= 0.0 {
        return Err(Error::argument("huber", format!("delta must be positive, got {delta}")));
    }
    reduction.apply("huber", &quadratic_then_linear(&x.sub(y)?, delta, 1.0, delta)?)
}

/// `0.5 q d^2` where `|d| < t`, else `s (|d| - t / 2)`.
fn quadratic_then_linear(d: &Tensor, t: f64, q: f64, s: f64) -> Result<Tensor> {
    let a = d.abs()?;
    let linear = a.affine(s, -0.5 * s * t)?;
    if t == 0.0 {
        return Ok(linear);
    }
    let inside = a.lt(&a.full_on(&[], t)?)?;
    inside.where_cond(&d.square()?.mul_scalar(0.5 * q)?, &linear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::test_support::{close_within, t64};
    use stategrad_autograd::{gradcheck, gradgradcheck};

    #[track_caller]
    fn close(t: &Tensor, want: &[f64]) {
        close_within(t, want, 1e-15)
    }
    const D: [f64; 4] = [0.25, -0.5, 2.0, -3.0]; // x - y

    #[test]
    fn forward() {
        let (x, y) = (t64(&D, &[2, 2]), t64(&[0.0; 4], &[2, 2]));
        close(&mse(&x, &y).unwrap(), &[(0.0625 + 0.25 + 4.0 + 9.0) / 4.0]);
        close(&mse_with(&x, &y, Reduction::Sum).unwrap(), &[13.3125]);
        close(&l1(&x, &y, Reduction::None).unwrap(), &[0.25, 0.5, 2.0, 3.0]);
        // beta = 1: 0.5 d^2 inside, |d| - 0.5 outside
        close(&smooth_l1(&x, &y, Reduction::None, 1.0).unwrap(), &[0.03125, 0.125, 1.5, 2.5]);
        // beta = 0.4: 0.5 d^2 / 0.4 = 0.078125 for 0.25; |d| - 0.2 for the rest
        close(&smooth_l1(&x, &y, Reduction::None, 0.4).unwrap(), &[0.078125, 0.3, 1.8, 2.8]);
        close(&smooth_l1(&x, &y, Reduction::Mean, 0.0).unwrap(), &[5.75 / 4.0]);
        // delta = 2.5: 0.5 d^2 for |d| < 2.5, else 2.5 (3 - 1.25)
        close(&huber(&x, &y, Reduction::None, 2.5).unwrap(), &[0.03125, 0.125, 2.0, 4.375]);
        close(&huber(&x, &y, Reduction::Sum, 1.0).unwrap(), &[0.03125 + 0.125 + 1.5 + 2.5]);
        assert!(matches!(huber(&x, &y, Reduction::Mean, 0.0), Err(Error::Argument { op: "huber", .. })));
        assert!(matches!(smooth_l1(&x, &y, Reduction::Mean, -1.0), Err(Error::Argument { .. })));
        assert!(matches!(mse(&x, &t64(&[0.0; 2], &[2])), Err(Error::Shape { op: "mse", .. })));
        assert!(matches!(mse_with(&x, &y, Reduction::BatchMean), Err(Error::Argument { .. })));
    }

    #[test]
    fn gradients() {
        // differences away from the kinks at |d| = beta and d = 0
        let y = t64(&[0.0; 4], &[2, 2]);
        let x = t64(&D, &[2, 2]).requires_grad(true).unwrap();
        let xt = t64(&D, &[2, 2]).t().unwrap().requires_grad(true).unwrap();
        let xb = t64(&D[2..], &[1, 2]).expand(&[2, 2]).unwrap().requires_grad(true).unwrap();
        for x in [x, xt, xb] {
            gradcheck(|x| smooth_l1(&x[0], &y, Reduction::Mean, 1.0), std::slice::from_ref(&x)).unwrap();
            gradcheck(|x| huber(&x[0], &y, Reduction::Sum, 1.0), std::slice::from_ref(&x)).unwrap();
            gradcheck(|x| l1(&x[0], &y, Reduction::Mean), std::slice::from_ref(&x)).unwrap();
            gradgradcheck(|x| mse_with(&x[0], &y, Reduction::Sum), std::slice::from_ref(&x)).unwrap();
            gradgradcheck(|x| huber(&x[0], &y, Reduction::Mean, 1.0), &[x]).unwrap();
        }
    }
}
