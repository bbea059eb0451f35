//! Linear algebra and convolution.

mod conv2d;
mod einsum;
mod matmul;
