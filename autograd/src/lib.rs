//! stategrad's autograd: the tracked [`Tensor`], the tape, every op's backward rule, and
//! [`gradcheck`].
//!
//! The tape records an op only when grad mode is on and at least one input is tracked
//! (descends from a leaf that requires grad). Everything else — buffers, plain tensors,
//! computations under [`no_grad`] — runs the kernel and returns an untracked tensor: no
//! node, no saved tensors, no cost. The recorded graph is owned by the tensors that can
//! reach it and is freed with them.
//!
//! ```
//! use stategrad_autograd::{Tensor, Device};
//! let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu)?.requires_grad(true)?;
//! let y = x.mul(&x)?.sum_all()?;          // y = sum x^2
//! let grads = y.backward()?;
//! assert_eq!(grads.get(&x).unwrap().to_vec::<f64>()?, vec![2.0, 4.0, 6.0]);
//! # Ok::<(), stategrad_autograd::Error>(())
//! ```
#![warn(missing_docs)]

mod custom;
mod defaults;
mod dims;
mod grad_mode;
mod gradcheck;
mod grads;
pub mod ops;
mod serde;
mod tape;
mod tensor;
#[doc(hidden)]
pub mod testing;

pub use custom::{apply_custom, CustomOp};
pub use defaults::{default_device, default_dtype, set_default_device, set_default_dtype, TensorOptions};
pub use dims::{Dim, Dims, Size};
pub use grad_mode::{
    enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad, set_anomaly_enabled, with_no_grad, GradModeGuard,
};
pub use gradcheck::{gradcheck, gradcheck_with, gradgradcheck, gradgradcheck_with, GradcheckOptions, GradcheckReport};
pub use grads::Grads;
pub use ops::{s, Indexer, TensorIndex, ELLIPSIS, NEW_AXIS};
pub use serde::{SerData, SerTensor};
pub use stategrad_backends::{
    half, meta, BinaryOp, Cast, Conv2dParams, CpuStorage, DType, Device, Element, Error, GradcheckFailure, HostBuf,
    HostElement, Layout, LoadReport, MetaStorage, Migrated, Mismatch, OptimStep, ReduceOp, Renamed, Result,
    SharedBytes, Storage, UnaryOp, UnmatchedKey,
};
pub use tape::{grad, live_nodes, register_leaf_hook, Backward, BackwardOptions, HookHandle};
pub use tensor::{manual_seed, next_seed, Tensor, TensorId};
