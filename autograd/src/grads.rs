//! `Grads`: the gradients a backward pass produced, keyed by leaf id.
use std::collections::HashMap;

use crate::{Tensor, TensorId};

/// Gradients of one backward pass, keyed by the [`TensorId`] of each tracked leaf
/// (a parameter keeps one id for its whole life, so its gradient is found by it).
#[derive(Clone, Default, Debug)]
pub struct Grads {
    map: HashMap<TensorId, Tensor>,
}

impl Grads {
    /// The gradient of `leaf`, if the loss depends on it.
    pub fn get(&self, leaf: &Tensor) -> Option<&Tensor> {
        leaf.id().and_then(|id| self.map.get(&id))
    }

    /// The gradient of the leaf with this id.
    pub fn get_id(&self, id: TensorId) -> Option<&Tensor> {
        self.map.get(&id)
    }

    /// Removes and returns the gradient of the leaf with this id.
    pub fn remove(&mut self, id: TensorId) -> Option<Tensor> {
        self.map.remove(&id)
    }

    /// Sets the gradient of a leaf (e.g. after clipping).
    pub fn insert(&mut self, id: TensorId, grad: Tensor) {
        self.map.insert(id, grad);
    }

    /// Number of leaves with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no leaf received a gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Iterates over `(leaf id, gradient)`.
    pub fn iter(&self) -> impl Iterator<Item = (TensorId, &Tensor)> {
        self.map.iter().map(|(&k, v)| (k, v))
    }

    /// Adds `grad` to the gradient of `id` (accumulation across backward passes).
    pub fn accumulate(&mut self, id: TensorId, grad: Tensor) -> crate::Result<()> {
        match self.map.remove(&id) {
            Some(existing) => {
                self.map.insert(id, existing.add(&grad)?);
            }
            None => {
                self.map.insert(id, grad);
            }
        }
        Ok(())
    }
}
