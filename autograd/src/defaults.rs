//! The default dtype and device: what a constructor uses when given `None` (PyTorch's
//! `torch.set_default_dtype` / `torch.set_default_device`, and the `with torch.device(..):`
//! context). A process-wide setting, overridden on the current thread inside a scope.
//!
//! ```
//! use stategrad_autograd::{default_dtype, set_default_dtype, DType, Device, Tensor, TensorOptions};
//! assert_eq!(Tensor::zeros(&[2], None, None)?.dtype(), default_dtype());
//! let t = TensorOptions::new().dtype(DType::F64).scope(|| Tensor::ones(&[2], None, None))?;
//! assert_eq!((t.dtype(), t.device()), (DType::F64, Device::Cpu));
//! # Ok::<(), stategrad_autograd::Error>(())
//! ```
use std::cell::RefCell;
use std::sync::RwLock;

use stategrad_backends::{DType, Device, Error, Result};

static GLOBAL: RwLock<(DType, Device)> = RwLock::new((DType::F32, Device::Cpu));

thread_local! {
    // the scoped overrides in force on this thread, innermost last
    static SCOPES: RefCell<Vec<TensorOptions>> = const { RefCell::new(Vec::new()) };
}

/// The dtype constructors use when given none: the innermost [`TensorOptions::scope`]'s on
/// this thread, else the process-wide one ([`set_default_dtype`]; initially f32).
pub fn default_dtype() -> DType {
    SCOPES
        .with(|s| s.borrow().iter().rev().find_map(|o| o.dtype))
        .unwrap_or_else(|| GLOBAL.read().unwrap_or_else(|e| e.into_inner()).0)
}

/// The device constructors use when given none: the innermost [`TensorOptions::scope`]'s
/// on this thread, else the process-wide one ([`set_default_device`]; initially the CPU).
pub fn default_device() -> Device {
    SCOPES
        .with(|s| s.borrow().iter().rev().find_map(|o| o.device))
        .unwrap_or_else(|| GLOBAL.read().unwrap_or_else(|e| e.into_inner()).1)
}

fn check_float(op: &'static str, dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(Error::DType { op, expected: "a float dtype", got: dtype });
    }
    Ok(())
}

/// Sets the process-wide default dtype (PyTorch's `torch.set_default_dtype`); a float dtype.
pub fn set_default_dtype(dtype: DType) -> Result<()> {
    check_float("set_default_dtype", dtype)?;
    GLOBAL.write().unwrap_or_else(|e| e.into_inner()).0 = dtype;
    Ok(())
}

/// Sets the process-wide default device (PyTorch's `torch.set_default_device`).
pub fn set_default_device(device: Device) {
    GLOBAL.write().unwrap_or_else(|e| e.into_inner()).1 = device;
}

/// A dtype and a device, each optional (PyTorch's `dtype=` and `device=` factory
/// arguments): [`TensorOptions::scope`] builds tensors, layers or whole models with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TensorOptions {
    /// The dtype, or `None` to keep the current default.
    pub dtype: Option<DType>,
    /// The device, or `None` to keep the current default.
    pub device: Option<Device>,
}

impl TensorOptions {
    /// Neither dtype nor device set.
    pub fn new() -> Self {
        TensorOptions::default()
    }

    /// With this dtype.
    pub fn dtype(self, dtype: impl Into<Option<DType>>) -> Self {
        TensorOptions { dtype: dtype.into(), ..self }
    }

    /// With this device.
    pub fn device(self, device: impl Into<Option<Device>>) -> Self {
        TensorOptions { device: device.into(), ..self }
    }

    /// Runs `f` with these options as the defaults on this thread (like PyTorch's
    /// `with torch.device(d):`), so that every constructor and layer inside builds on that
    /// device, in that dtype. Scopes nest; the previous defaults return when `f` does (also
    /// on error or panic). A non-float dtype is an error.
    ///
    /// ```
    /// use stategrad_autograd::{DType, Device, Tensor, TensorOptions};
    /// let f64_cpu = TensorOptions::new().dtype(DType::F64).device(Device::Cpu);
    /// let x = f64_cpu.scope(|| Tensor::randn(&[3], 0.0, 1.0, None, None))?;
    /// assert_eq!(x.dtype(), DType::F64);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn scope<T>(self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some(d) = self.dtype {
            check_float("TensorOptions::scope", d)?;
        }
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                SCOPES.with(|s| s.borrow_mut().pop());
            }
        }
        SCOPES.with(|s| s.borrow_mut().push(self));
        let _pop = Pop;
        f()
    }
}

/// `dtype`, or the default dtype.
pub(crate) fn dtype_or_default(dtype: impl Into<Option<DType>>) -> DType {
    dtype.into().unwrap_or_else(default_dtype)
}

/// `device`, or the default device.
pub(crate) fn device_or_default(device: impl Into<Option<Device>>) -> Device {
    device.into().unwrap_or_else(default_device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn scopes_nest_and_restore() {
        let (d0, v0) = (default_dtype(), default_device());
        let inner = TensorOptions::new().dtype(DType::F64);
        let (a, b, c) = TensorOptions::new()
            .device(Device::Cpu)
            .dtype(DType::F32)
            .scope(|| {
                let a = Tensor::zeros(&[1], None, None)?.dtype();
                let b = inner.scope(|| Ok(Tensor::ones(&[1], None, None)?.dtype()))?;
                Ok((a, b, default_dtype()))
            })
            .unwrap();
        assert_eq!((a, b, c), (DType::F32, DType::F64, DType::F32));
        assert_eq!((default_dtype(), default_device()), (d0, v0));
        // an error inside still restores
        let r: Result<()> = inner.scope(|| Err(Error::argument("t", "x")));
        assert!(r.is_err());
        assert_eq!(default_dtype(), d0);
        assert!(matches!(TensorOptions::new().dtype(DType::I64).scope(|| Ok(())), Err(Error::DType { .. })));
        // an explicit dtype wins over the scope
        let e = inner.scope(|| Tensor::zeros(&[1], DType::F32, None)).unwrap();
        assert_eq!(e.dtype(), DType::F32);
    }
}
