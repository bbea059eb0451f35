//! `squash` and dynamic routing by agreement (Sabour, Frosst & Hinton 2017, Procedure 1),
//! in two modes that differ in exactly one place: whether the routing coefficients are on
//! the tape.
//!
//! With predictions `u_hat[b, j, i, :]` (what input capsule `i` predicts for output capsule
//! `j`) and per-example logits `l[b, j, i]`, starting at 0:
//!
//! ```text
//! repeat iters - 1 times:   c = softmax_j(l);  v = squash(sum_i c u_hat);  l += u_hat . v
//! finally:                  c = softmax_j(l);  v = squash(sum_i c u_hat)
//! ```
//!
//! - [`RoutingMode::Differentiable`] (the paper): every step above is recorded, so the
//!   gradient reaches `u_hat` (and through it W and the conv layers) both through the final
//!   weighted sum and through the coefficients `c`.
//! - [`RoutingMode::Detached`]: `c` is computed under [`no_grad`] on `u_hat.detach()`; only
//!   the final `s = sum_i c u_hat` uses the tracked `u_hat`. The forward values are the same
//!   bit for bit; the gradient treats `c` as a constant (what most reimplementations do, and
//!   cheaper: nothing of the routing loop is saved or backpropagated).
//!
//! The logits are per-example state created inside each forward pass: not parameters, not
//! buffers, never in a `state_dict`. Both weighted sums and agreements are batched matmuls
//! over `(b, j)`, so one routing iteration is two matmuls, a softmax and a squash, whatever
//! the number of capsules.
use stategrad_autograd::{no_grad, Dim, Error, Result, Tensor};

/// Whether the routing coefficients are differentiated through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RoutingMode {
    /// The paper's routing: the coefficients are on the tape.
    Differentiable,
    /// Coefficients computed under `no_grad`; only the final weighted sum is on the tape.
    #[default]
    Detached,
}

impl std::str::FromStr for RoutingMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "differentiable" => Ok(RoutingMode::Differentiable),
            "detached" => Ok(RoutingMode::Detached),
            _ => Err(Error::Parse { what: "routing mode", input: s.into(), expected: "differentiable or detached" }),
        }
    }
}

impl std::fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingMode::Differentiable => "differentiable",
            RoutingMode::Detached => "detached",
        })
    }
}

/// The epsilon the capsule layers and routing pass to [`squash`]: it keeps the gradient of
/// `|s|` finite at `s = 0` and moves lengths by at most `sqrt(1e-9)` relative.
pub const SQUASH_EPS: f64 = 1e-9;

/// `squash(s) = |s|^2 / (1 + |s|^2) * s / |s|` along `dim`, with `|s|` taken as
/// `sqrt(|s|^2 + eps)`: short vectors shrink to almost zero, long ones to just below unit
/// length; the direction is kept. `eps = 0` is the paper's (and most reference code's)
/// formula exactly, whose gradient is NaN at `s = 0`; the layers use [`SQUASH_EPS`].
///
/// ```
/// # use stategrad_autograd::{Tensor, Device};
/// let s = Tensor::from_slice(&[3.0f64, 4.0], &[1, 2], Device::Cpu)?;
/// let v = stategrad_nn::capsule::squash(&s, -1, 0.0)?.to_vec::<f64>()?; // |s| = 5: length 25/26
/// assert!((v[0] - 0.6 * 25.0 / 26.0).abs() < 1e-15 && (v[1] - 0.8 * 25.0 / 26.0).abs() < 1e-15);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn squash(s: &Tensor, dim: impl Dim, eps: f64) -> Result<Tensor> {
    if eps.is_nan() || eps < 0.0 {
        return Err(stategrad_autograd::Error::argument("squash", format!("eps must be non-negative, got {eps}")));
    }
    let sq = s.square()?.sum(dim.to_index("squash", s.rank())?, true)?;
    // s |s| / (1 + |s|^2), the same value written with one division
    let scale = sq.add_scalar(eps)?.sqrt()?.div(&sq.add_scalar(1.0)?)?;
    s.mul(&scale)
}

/// The result of routing: output capsules and the coefficients that made them.
#[derive(Clone, Debug)]
pub struct Routed {
    /// Output capsules `[b, j, d]`.
    pub v: Tensor,
    /// Final coupling coefficients `[b, j, i]`; they sum to 1 over `j` (the output capsules).
    pub c: Tensor,
}

/// The coupling coefficients after `iters - 1` agreement updates, as `[b, j, 1, i]`.
/// Recorded on the tape exactly when `u_hat` is tracked and grad mode is on.
fn coefficients(u_hat: &Tensor, iters: usize) -> Result<Tensor> {
    let s = u_hat.shape();
    let mut logits = u_hat.full_on(&[s[0], s[1], 1, s[2]], 0.0)?;
    for _ in 1..iters {
        let c = logits.softmax(1)?;
        let v = squash(&c.matmul(u_hat)?, -1, SQUASH_EPS)?; // [b, j, 1, d]
        let agreement = u_hat.matmul(&v.transpose(-1, -2)?)?; // [b, j, i, 1]
        logits = logits.add(&agreement.transpose(-1, -2)?)?;
    }
    logits.softmax(1)
}

/// Routes predictions `u_hat [b, j, i, d]` (any strides) to `j` output capsules with
/// `iters >= 1` iterations.
pub fn dynamic_routing(u_hat: &Tensor, iters: usize, mode: RoutingMode) -> Result<Routed> {
    if u_hat.rank() != 4 || iters == 0 {
        return Err(Error::shape(
            "dynamic_routing",
            &[u_hat.shape()],
            format!("expected u_hat [batch, out caps, in caps, dim] and iters >= 1 (got {iters})"),
        ));
    }
    let c = match mode {
        RoutingMode::Differentiable => coefficients(u_hat, iters)?,
        RoutingMode::Detached => {
            let _guard = no_grad();
            coefficients(&u_hat.detach(), iters)?
        }
    };
    let v = squash(&c.matmul(u_hat)?, -1, SQUASH_EPS)?.squeeze(2)?; // s = sum_i c_ij u_hat_j|i
    Ok(Routed { v, c: c.squeeze(2)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stategrad_autograd::{gradcheck, gradgradcheck, Device, Error};

    #[test]
    fn squash_with_and_without_eps() {
        // rows (3, 4) and (0.1, 0.2): |s|^2 / (1 + |s|^2) * s / |s|
        let s = Tensor::from_slice(&[3.0f64, 4.0, 0.1, 0.2], &[2, 2], Device::Cpu).unwrap();
        let want = |a: f64, b: f64, eps: f64| {
            let sq = a * a + b * b;
            let k = (sq + eps).sqrt() / (1.0 + sq);
            [a * k, b * k]
        };
        for eps in [0.0, SQUASH_EPS, 0.01] {
            let got = squash(&s, -1, eps).unwrap().to_vec::<f64>().unwrap();
            let w: Vec<f64> = [want(3.0, 4.0, eps), want(0.1, 0.2, eps)].concat();
            for (g, w) in got.iter().zip(&w) {
                assert!((g - w).abs() <= 1e-15 * (1.0 + w.abs()), "eps {eps}: {got:?} vs {w:?}");
            }
        }
        // eps moves a short vector's length measurably, so the parameter matters
        let (a, b) = (squash(&s, 1, 0.0).unwrap(), squash(&s, 1, 0.01).unwrap());
        assert!((a.to_vec::<f64>().unwrap()[2] - b.to_vec::<f64>().unwrap()[2]).abs() > 1e-3);
        assert!(matches!(squash(&s, 1, -1.0), Err(Error::Argument { op: "squash", .. })));
        let x = s.t().unwrap().requires_grad(true).unwrap();
        gradcheck(|x| squash(&x[0], 0, 0.0), std::slice::from_ref(&x)).unwrap();
        gradgradcheck(|x| squash(&x[0], -1, SQUASH_EPS), &[x]).unwrap();
    }
}
