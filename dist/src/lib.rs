//! stategrad's data parallelism over the explicit state graph.
//!
//! - [`ProcessGroup`]: rank, world size and the collectives (all-reduce sum/mean,
//!   broadcast, all-gather with uneven sizes, barrier) over host slices and tensors on any
//!   device. [`InProcessGroup`]: ranks as threads of one process (one replica per device);
//!   `MpiGroup` (feature `mpi`): ranks as MPI processes, launched with `mpirun -np N`.
//! - [`DataParallel`]: wraps any [`stategrad_nn::Module`]; checks every rank holds the same
//!   state, starts every rank from rank 0's parameters and buffers, averages gradients
//!   (rank-ordered, bucketed, frozen ones never sent), and syncs each buffer by its
//!   [`SyncPolicy`]. Its `state_dict` has exactly the model's names.
//! - [`SyncBatchNorm`]: batch statistics over all ranks, on every backend;
//!   [`convert_sync_batch_norm`] swaps a model's BatchNorm layers for it, keeping names and state.
//!
//! The layering: this crate sits above `nn` (it wraps modules) and talks to backends only
//! through tensors copied to and from the host, so kernels know nothing of ranks.
#![warn(missing_docs)]

mod group;
mod local;
#[cfg(feature = "mpi")]
mod mpi_group;
mod parallel;
mod sync_bn;

pub use group::ProcessGroup;
pub use local::{run_replicas, InProcessGroup, DEFAULT_TIMEOUT};
#[cfg(feature = "mpi")]
pub use mpi_group::MpiGroup;
pub use parallel::{DataParallel, SyncConfig, SyncPolicy, Traffic, DEFAULT_BUCKET_BYTES};
pub use sync_bn::{convert_sync_batch_norm, SyncBatchNorm};
