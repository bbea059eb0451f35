//! Losses: `cross_entropy` (with label smoothing), `nll`, `mse`; mean reduction, as
//! PyTorch's defaults.
use stategrad_autograd::{DType, Error, Result, Tensor};

fn check_targets(op: &'static str, x: &Tensor, target: &Tensor) -> Result<()> {
    if target.dtype() != DType::I64 {
        return Err(Error::DType { op, expected: "int64 class targets", got: target.dtype() });
    }
    if x.rank() != 2 || target.shape() != [x.shape()[0]] {
        return Err(Error::shape(
            op,
            &[x.shape(), target.shape()],
            "expected input [batch, classes] and target [batch]",
        ));
    }
    Ok(())
}

/// Negative log-likelihood: `-mean_i log_probs[i, target[i]]` (`target`: int64 `[batch]`).
pub fn nll(log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_targets("nll", log_probs, target)?;
    log_probs.gather(1, &target.unsqueeze(1)?)?.mean_all()?.neg()
}

/// Cross-entropy of `logits [batch, classes]` against int64 class `target [batch]`, with
/// label smoothing `eps` as in PyTorch: `(1 - eps) * nll + eps * mean_c(-log_softmax)`.
///
/// ```
/// use stategrad_nn::functional::cross_entropy;
/// use stategrad_autograd::{Tensor, Device};
/// let logits = Tensor::from_slice(&[0.0f64, 0.0], &[1, 2], Device::Cpu)?;
/// let target = Tensor::from_slice(&[1i64], &[1], Device::Cpu)?;
/// assert!((cross_entropy(&logits, &target, 0.0)?.item()? - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn cross_entropy(logits: &Tensor, target: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    check_targets("cross_entropy", logits, target)?;
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::argument("cross_entropy", format!("label smoothing {label_smoothing} outside [0, 1]")));
    }
    let log_probs = logits.log_softmax(-1)?;
    let loss = nll(&log_probs, target)?;
    if label_smoothing == 0.0 {
        return Ok(loss);
    }
    let smooth = log_probs.mean(-1, false)?.mean_all()?.neg()?;
    loss.mul_scalar(1.0 - label_smoothing)?.add(&smooth.mul_scalar(label_smoothing)?)
}

/// Mean squared error `mean((x - y)^2)`.
pub fn mse(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    if x.shape() != y.shape() {
        return Err(Error::shape("mse", &[x.shape(), y.shape()], "input and target shapes differ"));
    }
    x.sub(y)?.square()?.mean_all()
}
