//! PyTorch's default initialisations, seeded from autograd's global generator
//! (`manual_seed` / `next_seed`), in the default dtype on the default device (so a layer
//! built inside `TensorOptions::scope` is built there).
use stategrad_autograd::{Result, Tensor};

/// Uniform on `(-bound, bound)`, in the default dtype, on the default device.
pub fn uniform(shape: &[usize], bound: f64) -> Result<Tensor> {
    Tensor::rand(shape, -bound, bound, None, None)
}

/// `kaiming_uniform_(w, a=sqrt(5))`, PyTorch's default for Linear and Conv2d weights:
/// gain `sqrt(2 / (1 + a^2))`, bound `gain * sqrt(3 / fan_in)`, which is `1 / sqrt(fan_in)`.
/// `fan_in` is the product of every dimension but the first.
pub fn kaiming_uniform_default(shape: &[usize]) -> Result<Tensor> {
    let a2 = 5.0f64;
    let gain = (2.0 / (1.0 + a2)).sqrt();
    uniform(shape, gain * (3.0 / fan_in(shape) as f64).sqrt())
}

/// The bias default: uniform on `±1 / sqrt(fan_in)` of the weight.
pub fn bias_default(len: usize, fan_in: usize) -> Result<Tensor> {
    uniform(&[len], if fan_in > 0 { 1.0 / (fan_in as f64).sqrt() } else { 0.0 })
}

/// Inputs per output unit: every dimension of a weight but the first (at least 1).
pub fn fan_in(shape: &[usize]) -> usize {
    shape.iter().skip(1).product::<usize>().max(1)
}
