//! conv2d (interim: the CPU-kernel work replaces this file).
use crate::{Conv2dParams, CpuStorage, Error, Layout, Result};

pub fn conv2d(_x: &CpuStorage, _lx: &Layout, _w: &CpuStorage, _lw: &Layout, _p: &Conv2dParams) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "conv2d", msg: "not yet implemented".into() })
}
pub fn conv2d_grad_input(
    _g: &CpuStorage,
    _lg: &Layout,
    _w: &CpuStorage,
    _lw: &Layout,
    _p: &Conv2dParams,
    _hw: (usize, usize),
) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "conv2d", msg: "not yet implemented".into() })
}
pub fn conv2d_grad_weight(
    _x: &CpuStorage,
    _lx: &Layout,
    _g: &CpuStorage,
    _lg: &Layout,
    _p: &Conv2dParams,
    _hw: (usize, usize),
) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "conv2d", msg: "not yet implemented".into() })
}
