//! The CapsNet losses: the margin loss on capsule lengths (eq. 4 of the paper) and the
//! reconstruction loss (sum of squared pixel errors, averaged over the batch).
//!
//! `L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2`, summed over the
//! classes `k` and averaged over the batch, with `T_k = 1` for the true class.
use stategrad_autograd::{Error, Result, Tensor};

/// The margin loss's constants (the paper's values by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarginLoss {
    /// Target length for the true class (`m+`, 0.9).
    pub m_plus: f64,
    /// Ceiling for the other classes (`m-`, 0.1).
    pub m_minus: f64,
    /// Down-weighting of the absent classes (`lambda`, 0.5).
    pub lambda: f64,
}

impl Default for MarginLoss {
    fn default() -> Self {
        MarginLoss { m_plus: 0.9, m_minus: 0.1, lambda: 0.5 }
    }
}

/// [`MarginLoss`] with the paper's constants, of capsule `lengths [b, classes]` against the
/// one-hot `targets [b, classes]` (same dtype); a scalar.
pub fn margin_loss(lengths: &Tensor, targets: &Tensor) -> Result<Tensor> {
    MarginLoss::default().loss(lengths, targets)
}

impl MarginLoss {
    /// The loss of `lengths [b, classes]` against one-hot `targets [b, classes]`; a scalar.
    pub fn loss(&self, lengths: &Tensor, targets: &Tensor) -> Result<Tensor> {
        if lengths.rank() != 2 || lengths.shape() != targets.shape() {
            return Err(Error::shape(
                "margin_loss",
                &[lengths.shape(), targets.shape()],
                "expected lengths and one-hot targets, both [batch, classes]",
            ));
        }
        let present = lengths.neg()?.add_scalar(self.m_plus)?.relu()?.square()?;
        let absent = lengths.sub_scalar(self.m_minus)?.relu()?.square()?;
        let absent_w = targets.affine(-self.lambda, self.lambda)?; // lambda (1 - T)
        let per_class = targets.mul(&present)?.add(&absent_w.mul(&absent)?)?;
        per_class.sum(1, false)?.mean_all()
    }
}

/// `sum over pixels of (recon - target)^2`, averaged over the batch (the paper's sum of
/// squared errors; scale it by 0.0005 so it does not dominate the margin loss).
pub fn reconstruction_loss(recon: &Tensor, target: &Tensor) -> Result<Tensor> {
    if recon.shape() != target.shape() || recon.rank() < 1 {
        return Err(Error::shape("reconstruction_loss", &[recon.shape(), target.shape()], "shapes must match"));
    }
    let b = recon.shape()[0].max(1) as f64;
    recon.sub(target)?.square()?.sum_all()?.div_scalar(b)
}
