//! `Conv2d`: PyTorch's `nn.Conv2d` (names `weight` [out, in/groups, kh, kw], `bias` [out]).
use stategrad_autograd::{Conv2dParams, Error, Result, Tensor, TensorOptions};

use super::init::{bias_default, fan_in, kaiming_uniform_default};
use crate::{Forward, Module, Param};

/// A 2-D convolution over `[batch, channels, height, width]` inputs.
///
/// ```
/// use stategrad_nn::{Conv2d, Forward};
/// use stategrad_autograd::{Conv2dParams, Tensor, DType, Device};
/// let conv = Conv2d::new(1, 4, (3, 3), Conv2dParams { padding: (1, 1), ..Default::default() })?;
/// let y = conv.forward(&Tensor::ones(&[2, 1, 8, 8], DType::F32, Device::Cpu)?)?;
/// assert_eq!(y.shape(), &[2, 4, 8, 8]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kh, kw]`, kaiming-uniform initialised.
    pub weight: Param,
    /// `[out_channels]`; `None` without bias.
    pub bias: Option<Param>,
    /// Stride, padding, dilation, groups (not state).
    pub params: Conv2dParams,
}

impl Conv2d {
    /// A convolution with bias and PyTorch's default initialisation (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
    ) -> Result<Conv2d> {
        Self::with_bias(in_channels, out_channels, kernel, params, true)
    }

    /// [`Conv2d::new`] with its tensors in `opts`'s dtype and on its device (PyTorch's
    /// `device=`, `dtype=` arguments).
    pub fn new_in(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        opts: TensorOptions,
    ) -> Result<Conv2d> {
        opts.scope(|| Self::new(in_channels, out_channels, kernel, params))
    }

    /// A convolution with or without bias.
    pub fn with_bias(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        bias: bool,
    ) -> Result<Conv2d> {
        let groups = params.groups;
        if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
            return Err(Error::argument(
                "Conv2d::new",
                format!("{groups} groups do not divide {in_channels} input and {out_channels} output channels"),
            ));
        }
        let shape = [out_channels, in_channels / groups, kernel.0, kernel.1];
        let weight = Param::new(kaiming_uniform_default(&shape)?);
        let bias = if bias { Some(Param::new(bias_default(out_channels, fan_in(&shape))?)) } else { None };
        Ok(Conv2d { weight, bias, params })
    }
}

impl Forward for Conv2d {
    /// `[n, c_in, h, w] -> [n, c_out, h', w']`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::tensor).transpose()?;
        x.conv2d(&self.weight.tensor()?, bias.as_ref(), self.params)
    }
}
