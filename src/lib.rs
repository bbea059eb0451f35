//! stategrad: an autograd engine with an explicit state graph.
//!
//! Re-exports the member crates: [`backends`] (devices, dtypes, kernels), [`autograd`]
//! (the tracked `Tensor`, the tape, gradcheck) and [`nn`] (parameters, buffers, modules).
#![warn(missing_docs)]

pub use stategrad_autograd as autograd;
pub use stategrad_backends as backends;
pub use stategrad_nn as nn;
