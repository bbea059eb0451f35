//! stategrad's nn: the explicit state graph.
//!
//! Every tensor a model touches is one of five kinds (see the project's DESIGN.md):
//! a [`Param`] (trained, saved, moved), a persistent [`Buffer`] (saved, moved, never
//! trained), a non-persistent buffer (moved only), a plain `Tensor` field (none of these),
//! or a no-grad tensor. A [`Module`] names its state once, in [`Module::visit`] (written by
//! `#[derive(Module)]` or by hand, or built at run time with [`ModuleDict`]); listing,
//! `state_dict`, loading, moving, train/eval and the [`StateGraph`] are all provided on
//! top of that one walk.
//!
//! ```
//! use stategrad_nn::{Buffer, Module, Param};
//! use stategrad_autograd::{Tensor, DType, Device};
//! #[derive(Module)]
//! struct Model {
//!     my_param: Param,
//!     my_buffer: Buffer,
//!     my_tensor: Tensor,
//! }
//! let cpu = Device::Cpu;
//! let m = Model {
//!     my_param: Param::new(Tensor::ones(&[2], DType::F32, cpu)?),
//!     my_buffer: Buffer::new(Tensor::zeros(&[2], DType::F32, cpu)?),
//!     my_tensor: Tensor::zeros(&[2], DType::F32, cpu)?,
//! };
//! m.to_dtype(DType::F64)?;
//! assert_eq!(m.my_buffer.dtype(), DType::F64);   // moved
//! assert_eq!(m.my_tensor.dtype(), DType::F32);   // not state: not moved
//! # Ok::<(), stategrad_autograd::Error>(())
//! ```
#![warn(missing_docs)]

// The derive writes `::stategrad_nn::...` paths; this lets the crate's own layers use it.
extern crate self as stategrad_nn;

mod access;
mod buffer;
pub mod capsule;
pub mod checkpoint;
mod clip;
mod ema;
pub mod functional;
mod functional_call;
mod hooks;
pub mod layers;
mod load;
mod module;
pub mod optim;
mod param;
mod registry;
mod ser;
mod state_dict;
mod state_graph;
mod sync;
mod visit;

pub use buffer::Buffer;
pub use checkpoint::{load_safetensors, save_safetensors};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use ema::{Ema, EmaConfig, FloatBuffers, Warmup};
pub use functional_call::{functional_call, FunctionalOutput};
pub use hooks::{ForwardHooks, Hooked};
pub use layers::*;
pub use load::{LoadOptions, PostLoadHook, PostSaveHook, PreLoadHook, PreSaveHook, SaveOptions, ShapeMismatch};
pub use module::{derive_support, Forward, Module, Training, Visitor, VisitorMut};
pub use param::Param;
/// petgraph, whose graph type [`StateGraph::graph`] returns.
pub use petgraph;
pub use registry::ModuleDict;
pub use state_dict::StateDict;
pub use state_graph::{StateGraph, StateNode};
pub use stategrad_autograd::meta::deferred;
pub use stategrad_autograd::{Cast, LoadReport, Migrated, Mismatch, Renamed, UnmatchedKey};
pub use stategrad_autograd::{SerData, SerTensor};
/// `#[derive(Module)]`: writes [`Module::visit`] from a struct's fields, each visited through
/// its type's [`VisitState`]; a field whose type implements none is a compile error naming
/// the field (derive `Module` on that type, or mark the field `#[module(skip)]`).
pub use stategrad_derive::Module;
pub use visit::VisitState;
