//! Losses, as PyTorch's `torch.nn.functional` has them: the same names, options and
//! defaults (`reduction='mean'`, `ignore_index=-100`, ...). One loss (or mirror pair) per
//! file; each is a composite of autograd ops, so its gradients come by composition.
use stategrad_autograd::{Error, Result, Tensor};

mod bce;
mod cross_entropy;
mod kl_div;
mod regression;

pub use bce::{binary_cross_entropy, binary_cross_entropy_with_logits, BceOptions};
pub use cross_entropy::{cross_entropy, nll, CrossEntropyOptions, NllOptions};
pub use kl_div::kl_div;
pub use regression::{huber, l1, mse, mse_with, smooth_l1};

/// How a loss combines its per-element values (PyTorch's `reduction=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (PyTorch's default; for weighted class losses, divided by the total weight).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: one value per element (or per sample).
    None,
    /// `kl_div` only: the sum divided by the batch size (the mathematically correct KL).
    BatchMean,
}

impl Reduction {
    /// Applies the reduction to per-element losses (`BatchMean` is kl_div's own).
    pub(crate) fn apply(self, op: &'static str, loss: &Tensor) -> Result<Tensor> {
        match self {
            Reduction::Mean => loss.mean_all(),
            Reduction::Sum => loss.sum_all(),
            Reduction::None => Ok(loss.clone()),
            Reduction::BatchMean => Err(Error::argument(op, "reduction BatchMean is for kl_div only")),
        }
    }
}

pub(crate) fn check_same_shape(op: &'static str, x: &Tensor, y: &Tensor) -> Result<()> {
    if x.shape() != y.shape() {
        return Err(Error::shape(op, &[x.shape(), y.shape()], "input and target shapes differ"));
    }
    Ok(())
}

/// Helpers the loss tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use stategrad_autograd::{Device, Tensor};

    /// An f64 CPU tensor.
    pub fn t64(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, Device::Cpu).unwrap()
    }

    /// `t` equals `want` element by element within `tol * (1 + |want|)`.
    #[track_caller]
    pub fn close_within(t: &Tensor, want: &[f64], tol: f64) {
        let g = t.to_f64_vec().unwrap();
        assert_eq!(g.len(), want.len(), "{g:?} vs {want:?}");
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{g:?} vs {want:?}");
        }
    }
}
