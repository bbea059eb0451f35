//! Layers, one per file, with PyTorch's names and default initialisation, built in the
//! default dtype on the default device (f32 on the CPU unless set otherwise: build a model
//! where it will run with `TensorOptions::scope`, PyTorch's `device=` / `dtype=`; move one
//! with `Module::to_device` / `to_dtype`).
mod batch_norm;
mod containers;
mod conv2d;
mod dropout;
mod embedding;
pub mod init;
mod layer_norm;
mod linear;
mod positional;

pub use batch_norm::{BatchNorm, BatchNorm1d, BatchNorm2d, FrozenBatchNorm2d};
pub use containers::{Flatten, Gelu, Layer, LayerSlot, ModuleList, Relu, Sequential};
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use positional::SinusoidalPositionalEncoding;
