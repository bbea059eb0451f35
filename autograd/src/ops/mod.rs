//! The op catalogue: one file per op (or per pair of mirror ops), each holding the forward
//! (calling the backend), the backward rule, the shape rule and the op's tests. Ops are
//! grouped in folders by family; the `mod` lines of each folder's `mod.rs` are the op list.
use stategrad_backends::{broadcast_shapes, Dims, Error, Layout, Result, Storage, UnaryOp};

use crate::{is_grad_enabled, Tensor};

// op families, one folder each (each folder's mod.rs lists its ops, one file per op)
mod elementwise;
mod indexing;
pub use indexing::{s, Indexer, TensorIndex, ELLIPSIS, NEW_AXIS};
mod linalg;
// the one in-place op: fused optimizer updates
mod optim_step;
mod reduction;
mod shape;
// operators on references
mod operators;

impl Tensor {
    /// A fresh contiguous tensor from a kernel's output storage.
    pub(crate) fn fresh(storage: Storage, shape: &[usize]) -> Tensor {
        Tensor::from_storage_unchecked(storage, Layout::contiguous(shape))
    }

    /// The untracked result of a unary kernel.
    pub(crate) fn unary_kernel(&self, op: UnaryOp) -> Result<Tensor> {
        Ok(Tensor::fresh(self.storage().unary(op, self.layout())?, self.shape()))
    }

    pub(crate) fn check_float(&self, op: &'static str) -> Result<()> {
        if !self.dtype().is_float() {
            return Err(Error::DType { op, expected: "a float dtype", got: self.dtype() });
        }
        Ok(())
    }
}

/// Operands of one op must share device and dtype: never a silent copy or cast.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::Device { op, a: a.device(), b: b.device() });
    }
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    Ok(())
}

/// The broadcast shape of two operands and their layouts expanded to it.
pub(crate) fn broadcast_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Dims, Layout, Layout)> {
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let la = if a.shape() == shape.as_slice() { a.layout().clone() } else { a.layout().broadcast_as(&shape)? };
    let lb = if b.shape() == shape.as_slice() { b.layout().clone() } else { b.layout().broadcast_as(&shape)? };
    Ok((shape, la, lb))
}

/// In a backward rule: the saved (untracked) forward output when the backward pass is not
/// recorded, else the output recomputed from the tracked inputs, so that double backward
/// sees its dependence on them. (Saving the tracked output itself would make a cycle.)
pub(crate) fn saved_or(out: &Tensor, recompute: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
    if is_grad_enabled() {
        recompute()
    } else {
        Ok(out.clone())
    }
}

impl Tensor {
    /// The untracked result of a binary kernel, after the shape (broadcast), device and
    /// dtype rules.
    pub(crate) fn binary_kernel(
        &self,
        op: &'static str,
        kop: stategrad_backends::BinaryOp,
        rhs: &Tensor,
    ) -> Result<Tensor> {
        check_same(op, self, rhs)?;
        let (shape, la, lb) = broadcast_pair(op, self, rhs)?;
        Ok(Tensor::fresh(self.storage().binary(kop, &la, rhs.storage(), &lb)?, &shape))
    }
}
