//! Index ops (interim: the CPU-kernel work replaces this file).
use crate::{CpuStorage, Error, Layout, Result};

pub fn index_select(_x: &CpuStorage, _lx: &Layout, _dim: usize, _i: &CpuStorage, _li: &Layout) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "index_select", msg: "not yet implemented".into() })
}
pub fn gather(_x: &CpuStorage, _lx: &Layout, _dim: usize, _i: &CpuStorage, _li: &Layout) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "gather", msg: "not yet implemented".into() })
}
#[allow(clippy::too_many_arguments)]
pub fn scatter_add(
    _d: &CpuStorage,
    _ld: &Layout,
    _dim: usize,
    _i: &CpuStorage,
    _li: &Layout,
    _s: &CpuStorage,
    _ls: &Layout,
) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "scatter_add", msg: "not yet implemented".into() })
}
pub fn cat(_parts: &[(&CpuStorage, &Layout)], _dim: usize) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "cat", msg: "not yet implemented".into() })
}
