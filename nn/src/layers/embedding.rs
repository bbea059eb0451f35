//! `Embedding`: rows of `weight [num_embeddings, dim]` picked by int64 ids (index_select),
//! PyTorch's `nn.Embedding` (weight initialised N(0, 1)).
use stategrad_autograd::{DType, Error, Result, Tensor, TensorOptions};

use crate::{Forward, Module, Param};

/// A lookup table of embeddings.
///
/// ```
/// use stategrad_nn::{Embedding, Forward};
/// use stategrad_autograd::{Tensor, Device};
/// let emb = Embedding::new(10, 4)?;
/// let ids = Tensor::from_slice(&[1i64, 2, 2], &[1, 3], Device::Cpu)?;
/// assert_eq!(emb.forward(&ids)?.shape(), &[1, 3, 4]);
/// assert!(emb.forward(&Tensor::from_slice(&[10i64], &[1], Device::Cpu)?).is_err());
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct Embedding {
    /// `[num_embeddings, dim]`.
    pub weight: Param,
}

impl Embedding {
    /// [`Embedding::new`] in `opts`'s dtype and on its device.
    pub fn new_in(num_embeddings: usize, dim: usize, opts: TensorOptions) -> Result<Embedding> {
        opts.scope(|| Embedding::new(num_embeddings, dim))
    }

    /// `num_embeddings` vectors of size `dim`, N(0, 1) (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(num_embeddings: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding { weight: Param::new(Tensor::randn(&[num_embeddings, dim], 0.0, 1.0, None, None)?) })
    }
}

impl Forward for Embedding {
    /// `ids` (int64, any shape) -> `[ids.shape.., dim]`.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        if ids.dtype() != DType::I64 {
            return Err(Error::DType { op: "Embedding", expected: "int64 ids", got: ids.dtype() });
        }
        let w = self.weight.tensor()?;
        let rows = w.index_select(0, &ids.reshape(&[ids.numel()])?)?;
        let shape: Vec<usize> = ids.shape().iter().copied().chain([w.shape()[1]]).collect();
        rows.reshape(&shape)
    }
}
