//! Layers, one per file, with PyTorch's names and default initialisation.
mod conv2d;
pub mod init;
mod linear;

pub use conv2d::Conv2d;
pub use linear::Linear;
