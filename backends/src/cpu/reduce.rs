//! Reductions and softmax (interim: the CPU-kernel work replaces this file).
use crate::{CpuStorage, Error, Layout, ReduceOp, Result};

pub fn reduce(_op: ReduceOp, _x: &CpuStorage, _l: &Layout, _axes: &[usize]) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "reduce", msg: "not yet implemented".into() })
}

pub fn softmax(_x: &CpuStorage, _l: &Layout, _axis: usize, _log: bool) -> Result<CpuStorage> {
    Err(Error::Unsupported { op: "softmax", msg: "not yet implemented".into() })
}
