//! `Dropout`: in training, zeroes each element with probability `p` and scales the rest by
//! `1 / (1 - p)`; the identity in evaluation. The mask is drawn from autograd's global
//! seeded generator (`manual_seed`).
use stategrad_autograd::{Error, Result, Tensor};

use crate::{Forward, Module, Training};

/// Inverted dropout.
///
/// ```
/// use stategrad_nn::{Dropout, Forward, Module};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let drop = Dropout::new(0.5)?;
/// let x = Tensor::ones(&[1000], DType::F32, Device::Cpu)?;
/// let kept = drop.forward(&x)?.to_vec::<f32>()?;
/// assert!(kept.iter().all(|&v| v == 0.0 || v == 2.0));
/// drop.eval();
/// assert_eq!(drop.forward(&x)?.to_vec::<f32>()?, vec![1.0; 1000]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct Dropout {
    /// Drop probability.
    pub p: f64,
    /// Train/eval flag.
    pub training: Training,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1]`.
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::argument("Dropout::new", format!("probability {p} outside [0, 1]")));
        }
        Ok(Dropout { p, training: Training::new() })
    }
}

impl Forward for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training.get() || self.p == 0.0 {
            return Ok(x.clone());
        }
        if self.p == 1.0 {
            return x.mul_scalar(0.0);
        }
        let u = x.detach().rand_like(0.0, 1.0)?;
        let mask = u.ge(&u.full_like(self.p)?)?.mul_scalar(1.0 / (1.0 - self.p))?;
        x.mul(&mask)
    }
}
