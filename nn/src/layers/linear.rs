//! `Linear`: `y = x W^T + b`, PyTorch's `nn.Linear` (names `weight` [out, in], `bias` [out]).
use stategrad_autograd::{Error, Result, Tensor, TensorOptions};

use super::init::{bias_default, kaiming_uniform_default};
use crate::{Forward, Module, Param};

/// A fully connected layer over the last dimension.
///
/// ```
/// use stategrad_nn::{Forward, Linear, Module};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let fc = Linear::new(4, 3)?;
/// let y = fc.forward(&Tensor::ones(&[2, 4], DType::F32, Device::Cpu)?)?;
/// assert_eq!(y.shape(), &[2, 3]);
/// assert_eq!(fc.num_parameters(), 4 * 3 + 3);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct Linear {
    /// `[out_features, in_features]`, kaiming-uniform initialised.
    pub weight: Param,
    /// `[out_features]`, uniform on `±1/sqrt(in_features)`; `None` without bias.
    pub bias: Option<Param>,
}

impl Linear {
    /// [`Linear::new`] with its tensors in `opts`'s dtype and on its device (PyTorch's
    /// `nn.Linear(i, o, device=d, dtype=t)`), whatever the defaults are.
    pub fn new_in(in_features: usize, out_features: usize, opts: TensorOptions) -> Result<Linear> {
        opts.scope(|| Linear::new(in_features, out_features))
    }

    /// A layer with bias and PyTorch's default initialisation (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(in_features: usize, out_features: usize) -> Result<Linear> {
        Self::with_bias(in_features, out_features, true)
    }

    /// A layer with or without bias.
    pub fn with_bias(in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        let weight = Param::new(kaiming_uniform_default(&[out_features, in_features])?);
        let bias = if bias { Some(Param::new(bias_default(out_features, in_features)?)) } else { None };
        Ok(Linear { weight, bias })
    }

    /// A layer over given tensors (`weight` [out, in], `bias` [out]).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        if weight.rank() != 2 || bias.as_ref().is_some_and(|b| b.shape() != [weight.shape()[0]]) {
            let shapes: Vec<&[usize]> =
                std::iter::once(weight.shape()).chain(bias.as_ref().map(|b| b.shape())).collect();
            return Err(Error::shape("Linear", &shapes, "expected weight [out, in] and bias [out]"));
        }
        Ok(Linear { weight: Param::new(weight), bias: bias.map(Param::new) })
    }
}

impl Forward for Linear {
    /// `x [.., in] -> [.., out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.tensor()?.t()?)?;
        match &self.bias {
            Some(b) => y.add(&b.tensor()?),
            None => Ok(y),
        }
    }
}
