//! Gradient clipping over [`Grads`]: `clip_grad_norm` (the total norm of all gradients,
//! scaled down to `max_norm`, as `torch.nn.utils.clip_grad_norm_`) and `clip_grad_value`.
//! Frozen parameters are skipped: neither counted in the norm nor changed.
use stategrad_autograd::{no_grad, Error, Grads, Result, Tensor};

use crate::Param;

/// The distinct trainable parameters of `params` that have a gradient, with it.
fn trainable<'a>(grads: &Grads, params: &'a [Param]) -> Vec<(&'a Param, Tensor)> {
    let mut out: Vec<(&Param, Tensor)> = Vec::new();
    for p in params {
        if !p.needs_grad() || out.iter().any(|(q, _)| q.ptr_eq(p)) {
            continue;
        }
        if let Some(g) = p.grad(grads) {
            out.push((p, g.detach()));
        }
    }
    out
}

/// Scales the gradients of `params` in `grads` so that their total `norm_type`-norm (the
/// norm of the vector of all their elements; `f64::INFINITY` for the max norm) is at most
/// `max_norm`, and returns the total norm before clipping, as PyTorch does (scale
/// `max_norm / (total + 1e-6)`, only when below 1). Frozen parameters and parameters without
/// a gradient are skipped; a tied parameter counts once. A non-finite total norm is an
/// error and leaves the gradients unchanged.
///
/// ```
/// use stategrad_nn::{clip_grad_norm, Param};
/// use stategrad_autograd::{Tensor, Device};
/// let w = Param::new(Tensor::from_slice(&[3.0f64, 4.0], &[2], Device::Cpu)?);
/// let mut grads = w.tensor()?.mul(&w.tensor()?)?.sum_all()?.mul_scalar(0.5)?.backward()?; // grad = w
/// let total = clip_grad_norm(&mut grads, &[w.clone()], 1.0, 2.0)?;
/// assert_eq!(total, 5.0);
/// let g = w.grad(&grads).unwrap().to_vec::<f64>()?;
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn clip_grad_norm(grads: &mut Grads, params: &[Param], max_norm: f64, norm_type: f64) -> Result<f64> {
    const OP: &str = "clip_grad_norm";
    if norm_type.is_nan() || norm_type <= 0.0 {
        return Err(Error::argument(OP, format!("norm_type {norm_type} must be positive (or f64::INFINITY)")));
    }
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::argument(OP, format!("max_norm {max_norm} must be non-negative")));
    }
    let _guard = no_grad();
    let entries = trainable(grads, params);
    // Per-gradient norms on their devices, combined on the host in f64.
    let mut total = 0.0f64;
    for (_, g) in &entries {
        let a = g.abs()?;
        if norm_type.is_infinite() {
            if g.numel() > 0 {
                total = total.max(a.max_all()?.item()?);
            }
        } else if norm_type == 2.0 {
            total += g.mul(g)?.sum_all()?.item()?;
        } else {
            total += a.powf(norm_type)?.sum_all()?.item()?;
        }
    }
    if norm_type.is_finite() {
        total = if norm_type == 2.0 { total.sqrt() } else { total.powf(1.0 / norm_type) };
    }
    if !total.is_finite() {
        return Err(Error::State {
            op: OP,
            msg: format!("the total {norm_type}-norm of the gradients is {total}; gradients left unchanged"),
        });
    }
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for (p, g) in entries {
            grads.insert(p.id(), g.mul_scalar(coef)?);
        }
    }
    Ok(total)
}

/// Clamps every element of the gradients of `params` in `grads` to `[-clip, clip]`
/// (`torch.nn.utils.clip_grad_value_`). Frozen parameters are skipped.
pub fn clip_grad_value(grads: &mut Grads, params: &[Param], clip: f64) -> Result<()> {
    if clip.is_nan() || clip < 0.0 {
        return Err(Error::argument("clip_grad_value", format!("clip value {clip} must be non-negative")));
    }
    let _guard = no_grad();
    for (p, g) in trainable(grads, params) {
        grads.insert(p.id(), g.clamp(-clip, clip)?);
    }
    Ok(())
}
