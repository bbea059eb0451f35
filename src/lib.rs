//! stategrad: an autograd engine with an explicit state graph.
//!
//! Re-exports the member crates: [`backends`] (devices, dtypes, kernels), [`autograd`]
//! (the tracked `Tensor`, the tape, gradcheck), [`nn`] (parameters, buffers, modules) and
//! [`dist`] (process groups, data-parallel training, SyncBatchNorm).
//! `use stategrad::prelude::*;` brings the everyday names.
#![warn(missing_docs)]

pub use stategrad_autograd as autograd;
pub use stategrad_backends as backends;
pub use stategrad_dist as dist;
pub use stategrad_nn as nn;

/// The everyday names: tensors, devices, dtypes, errors, grad mode.
pub mod prelude {
    pub use stategrad_autograd::{
        default_device, default_dtype, enable_grad, gradcheck, manual_seed, no_grad, s, set_default_device,
        set_default_dtype, with_no_grad, Conv2dParams, DType, Device, Error, Grads, Result, Tensor, TensorOptions,
        ELLIPSIS, NEW_AXIS,
    };
}
