//! `SinusoidalPositionalEncoding`: a fixed table, `pe[p, 2i] = sin(p / 10000^(2i/d))`,
//! `pe[p, 2i+1] = cos(p / 10000^(2i/d))` (Vaswani et al. 2017), held as a persistent
//! buffer `pe` (saved with the model by choice), or as a non-persistent one
//! ([`SinusoidalPositionalEncoding::non_persistent`]): never saved, recomputed by the module
//! when a model built in deferred mode is materialised.
use stategrad_autograd::{default_device, default_dtype, Device, Error, Result, Tensor};

use crate::{Buffer, Forward, Module, Visitor};

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
#[derive(Clone, Debug)]
pub struct SinusoidalPositionalEncoding {
    /// The table `[max_len, dim]` (a persistent buffer, unless built `non_persistent`).
    pub pe: Buffer,
}

impl Module for SinusoidalPositionalEncoding {
    // Typed access (`for_each_module`, `replace_modules`) finds this hand-written module too.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.buffer("pe", &self.pe);
    }

    /// Recomputes the table (in its dtype, on `device`): what a deferred build of a
    /// non-persistent table needs, as no checkpoint holds it.
    fn reset_non_persistent_buffers(&self, device: Device) -> Result<()> {
        if self.pe.is_persistent() {
            return Ok(());
        }
        let shape = self.pe.shape();
        let table = stategrad_autograd::meta::eager(|| Self::table(shape[0], shape[1]))?;
        self.pe.materialize(table.to_dtype(self.pe.dtype())?.to_device(device)?)
    }
}

impl SinusoidalPositionalEncoding {
    /// A table for up to `max_len` positions of even size `dim` (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(max_len: usize, dim: usize) -> Result<Self> {
        Ok(SinusoidalPositionalEncoding { pe: Buffer::new(Self::table(max_len, dim)?) })
    }

    /// The same table as a non-persistent buffer: moved with the module, never saved, and
    /// recomputed when a model built in deferred mode is loaded.
    ///
    /// ```
    /// use stategrad_nn::{deferred, LoadOptions, Module, SinusoidalPositionalEncoding};
    /// let pe = deferred(|| SinusoidalPositionalEncoding::non_persistent(16, 8))?;
    /// assert!(pe.state_dict().is_empty());
    /// let report = pe.load_state_dict_with(&Default::default(), &LoadOptions::default())?;
    /// assert_eq!(report.recomputed, ["pe"]);
    /// assert_eq!(pe.pe.tensor().to_vec::<f32>()?, SinusoidalPositionalEncoding::table(16, 8)?.to_vec::<f32>()?);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn non_persistent(max_len: usize, dim: usize) -> Result<Self> {
        Ok(SinusoidalPositionalEncoding { pe: Buffer::non_persistent(Self::table(max_len, dim)?) })
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
