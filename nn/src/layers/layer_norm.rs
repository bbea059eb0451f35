//! `LayerNorm`: `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimensions
//! (biased variance), PyTorch's `nn.LayerNorm` (`weight` ones, `bias` zeros).
use stategrad_autograd::{Error, Result, Tensor, TensorOptions};

use crate::{Forward, Module, Param};

/// Layer normalisation over the trailing `normalized_shape` dimensions.
///
/// ```
/// use stategrad_nn::{Forward, LayerNorm};
/// use stategrad_autograd::{Tensor, Device};
/// let ln = LayerNorm::new(&[2])?;
/// let y = ln.forward(&Tensor::from_slice(&[1.0f32, 3.0], &[1, 2], Device::Cpu)?)?;
/// let v = y.to_vec::<f32>()?;
/// assert!((v[0] + 1.0).abs() < 1e-4 && (v[1] - 1.0).abs() < 1e-4);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct LayerNorm {
    /// Scale (ones), shape `normalized_shape`.
    pub weight: Param,
    /// Shift (zeros), shape `normalized_shape`.
    pub bias: Param,
    /// Added to the variance (1e-5).
    pub eps: f64,
}

impl LayerNorm {
    /// [`LayerNorm::new`] in `opts`'s dtype and on its device.
    pub fn new_in(normalized_shape: &[usize], opts: TensorOptions) -> Result<LayerNorm> {
        opts.scope(|| LayerNorm::new(normalized_shape))
    }

    /// Normalises over the trailing dimensions `normalized_shape`, eps 1e-5 (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(normalized_shape: &[usize]) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: Param::new(Tensor::ones(normalized_shape, None, None)?),
            bias: Param::new(Tensor::zeros(normalized_shape, None, None)?),
            eps: 1e-5,
        })
    }
}

impl Forward for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shape = self.weight.shape();
        let k = shape.len();
        if x.rank() < k || x.shape()[x.rank() - k..] != shape[..] {
            return Err(Error::shape("LayerNorm", &[x.shape(), &shape], "trailing dimensions must match"));
        }
        let dims: Vec<usize> = (x.rank() - k..x.rank()).collect();
        let mean = x.mean(dims.clone(), true)?;
        let var = x.var(dims, 0, true)?;
        x.sub(&mean)?.mul(&var.add_scalar(self.eps)?.rsqrt()?)?.mul(&self.weight.tensor()?)?.add(&self.bias.tensor()?)
    }
}
