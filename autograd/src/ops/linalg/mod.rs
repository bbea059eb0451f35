//! Linear algebra and convolution.

mod conv2d;
mod matmul;
