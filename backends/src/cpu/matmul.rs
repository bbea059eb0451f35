//! Matmul (interim: the CPU-kernel work replaces this file).
use crate::{CpuStorage, Error, Layout, Result};

/// The one GEMM entry point (interim).
pub fn gemm() {}

pub fn matmul(_a: &CpuStorage, _la: &Layout, _b: &CpuStorage, _lb: &Layout) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "matmul", msg: "not yet implemented".into() })
}
