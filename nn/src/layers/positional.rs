//! `SinusoidalPositionalEncoding`: a fixed table, `pe[p, 2i] = sin(p / 10000^(2i/d))`,
//! `pe[p, 2i+1] = cos(p / 10000^(2i/d))` (Vaswani et al. 2017), held as a persistent
//! buffer `pe` (saved with the model by choice; it could be recomputed).
use stategrad_autograd::{default_device, default_dtype, Device, Error, Result, Tensor};

use crate::{Buffer, Forward, Module};

/// Adds positional encodings to `[batch, seq, dim]` inputs.
///
/// ```
/// use stategrad_nn::{Forward, Module, SinusoidalPositionalEncoding};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let pe = SinusoidalPositionalEncoding::new(16, 8)?;
/// assert!(pe.parameters().is_empty());
/// assert_eq!(pe.state_dict().keys().collect::<Vec<_>>(), ["pe"]);
/// let y = pe.forward(&Tensor::zeros(&[2, 5, 8], DType::F32, Device::Cpu)?)?;
/// assert_eq!(y.shape(), &[2, 5, 8]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct SinusoidalPositionalEncoding {
    /// The table `[max_len, dim]` (a persistent buffer).
    pub pe: Buffer,
}

impl SinusoidalPositionalEncoding {
    /// A table for up to `max_len` positions of even size `dim` (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(max_len: usize, dim: usize) -> Result<Self> {
        Ok(SinusoidalPositionalEncoding { pe: Buffer::new(Self::table(max_len, dim)?) })
    }

    /// The table itself, `[max_len, dim]`, computed in f64, in the default dtype on the
    /// default device.
    pub fn table(max_len: usize, dim: usize) -> Result<Tensor> {
        if dim % 2 != 0 {
            return Err(Error::argument("SinusoidalPositionalEncoding", format!("dim {dim} must be even")));
        }
        let mut v = vec![0f64; max_len * dim];
        for p in 0..max_len {
            for i in 0..dim / 2 {
                let angle = p as f64 / 10000f64.powf((2 * i) as f64 / dim as f64);
                v[p * dim + 2 * i] = angle.sin();
                v[p * dim + 2 * i + 1] = angle.cos();
            }
        }
        Tensor::from_vec(v, &[max_len, dim], Device::Cpu)?.to_dtype(default_dtype())?.to_device(default_device())
    }
}

impl Forward for SinusoidalPositionalEncoding {
    /// `x [batch, seq, dim] + pe[:seq]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pe = self.pe.tensor();
        let (max_len, dim) = (pe.shape()[0], pe.shape()[1]);
        if x.rank() != 3 || x.shape()[2] != dim || x.shape()[1] > max_len {
            return Err(Error::shape(
                "SinusoidalPositionalEncoding",
                &[x.shape(), pe.shape()],
                format!("expected [batch, seq <= {max_len}, {dim}]"),
            ));
        }
        x.add(&pe.narrow(0, 0, x.shape()[1])?)
    }
}
