//! stategrad's backends: where tensors live and how kernels run on them.
//!
//! This crate knows nothing of gradients. It defines the run-time [`Device`], the
//! [`DType`], the strided [`Layout`] (views without copies), the [`Storage`] enum over
//! backends, and the [`Kernels`] trait that every backend implements once. [`Storage`]
//! dispatches each kernel call to its backend in one place (`storage.rs`).
#![warn(missing_docs)]

pub mod cpu;
#[cfg(feature = "cube")]
pub mod cube;
mod device;
mod dtype;
mod error;
mod host;
mod kernel;
mod layout;
pub mod meta;
mod report;
mod rng;
mod storage;

pub use device::Device;
pub use dtype::{DType, Element, HostElement};
pub use error::{Error, Result};
/// The half-precision element types (`f16`, `bf16`) of [`DType::F16`] and [`DType::BF16`].
pub use half;
pub use host::{HostBuf, Pod, SharedBytes};
pub use kernel::{BinaryOp, Conv2dParams, Distribution, Kernels, OptimStep, ReduceOp, UnaryOp};
pub use layout::{broadcast_shapes, checked_numel, Dims, Layout, StridedIndex, MAX_NUMEL};
pub use report::{Cast, GradcheckFailure, LoadReport, Migrated, Mismatch, Renamed, UnmatchedKey};
pub use rng::{normal_at, uniform_at};
pub use storage::{CpuStorage, MetaStorage, Storage};
