//! `Device`: where a tensor's storage lives, chosen at run time.
use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Where a tensor's storage lives. Moving a model between devices is a run-time act, so
/// the device is a value, not a type parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum Device {
    /// Host memory; kernels on rayon + matrixmultiply.
    #[default]
    Cpu,
    /// A cubecl wgpu adapter (Vulkan, Metal, DX12; Mesa lavapipe without a GPU), by index.
    Wgpu(usize),
    /// A cubecl CUDA device, by ordinal.
    Cuda(usize),
    /// No memory at all: tensors of a model built in deferred mode (shape and dtype only),
    /// until a checkpoint materialises them (see `meta::deferred`).
    Meta,
}

impl Device {
    /// True for [`Device::Cpu`].
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Wgpu(i) => write!(f, "wgpu:{i}"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Meta => write!(f, "meta"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    /// Parses `cpu`, `meta`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => {
                let i = i.parse::<usize>().map_err(|_| Error::Parse {
                    what: "device",
                    input: s.to_string(),
                    expected: "cpu, meta, wgpu, wgpu:N, cuda or cuda:N",
                })?;
                (k, i)
            }
            None => (s, 0),
        };
        match kind {
            "cpu" if !s.contains(':') => Ok(Device::Cpu),
            "meta" if !s.contains(':') => Ok(Device::Meta),
            "wgpu" => Ok(Device::Wgpu(index)),
            "cuda" => Ok(Device::Cuda(index)),
            _ => Err(Error::Parse {
                what: "device",
                input: s.to_string(),
                expected: "cpu, meta, wgpu, wgpu:N, cuda or cuda:N",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for d in [Device::Cpu, Device::Meta, Device::Wgpu(0), Device::Wgpu(2), Device::Cuda(1)] {
            assert_eq!(d.to_string().parse::<Device>().unwrap(), d);
        }
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert!("tpu".parse::<Device>().is_err());
        assert!("cuda:x".parse::<Device>().is_err());
        assert!("cpu:1".parse::<Device>().is_err());
    }
}
