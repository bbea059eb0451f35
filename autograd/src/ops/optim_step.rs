//! `optim_step_`: one fused optimizer update ([`OptimStep`]: SGD, Adam, AdamW) of a
//! parameter tensor and its state tensors, **in place**, by one backend kernel. The one
//! op that writes into existing storage; not differentiable (untracked tensors only).
//!
//! The rule that keeps it invisible to everyone else is copy-on-write, per tensor: the
//! storage is written where it lies only when this handle is its sole owner (the tensor's
//! `Arc` and the storage's `Arc` both unique), it is exactly this tensor's contiguous
//! elements, and it is not a read-only mapping of a file. Otherwise this handle first
//! gets a private contiguous copy and the update goes there. So a view, a clone, a tensor
//! saved on the tape, a gradient or a `param_slots` snapshot sharing the storage keeps
//! the values it had; a training loop that holds nothing across the step updates without
//! allocating.
use std::sync::Arc;

use stategrad_backends::{Error, OptimStep, Result, Storage};

use crate::Tensor;

const OP: &str = "optim_step";

impl Tensor {
    /// One fused optimizer update of this tensor (a parameter's data) from `grad`, with
    /// its state tensors (`step.state_len()` of them: the momentum buffer for SGD with
    /// momentum, `exp_avg` and `exp_avg_sq` for Adam/AdamW), all updated in place; see the
    /// module docs for when a shared storage is copied first. All tensors must be
    /// untracked floats of one shape, dtype and device. What `nn`'s optimizers call.
    ///
    /// ```
    /// use stategrad_autograd::{Device, OptimStep, Tensor};
    /// let mut w = Tensor::from_slice(&[1.0f32, -2.0], &[2], Device::Cpu)?;
    /// let g = Tensor::from_slice(&[0.5f32, 0.5], &[2], Device::Cpu)?;
    /// let sgd = OptimStep::Sgd { lr: 0.1, weight_decay: 0.0, momentum: 0.0, dampening: 0.0, nesterov: false, init: false };
    /// w.optim_step_(&g, &mut [], &sgd)?;
    /// assert_eq!(w.to_vec::<f32>()?, vec![0.95, -2.05]);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn optim_step_(&mut self, grad: &Tensor, state: &mut [&mut Tensor], step: &OptimStep) -> Result<()> {
        if state.len() != step.state_len() {
            return Err(Error::argument(
                OP,
                format!("{:?} takes {} state tensors, got {}", step, step.state_len(), state.len()),
            ));
        }
        self.check_float(OP)?;
        let others = std::iter::once(grad).chain(state.iter().map(|t| &**t));
        for t in std::iter::once(&*self).chain(others.clone()) {
            if t.is_tracked() {
                return Err(Error::Autograd {
                    op: OP,
                    msg: "an in-place update of a tracked tensor (run it under no_grad, on detached data)".into(),
                });
            }
        }
        for t in others {
            if t.shape() != self.shape() {
                return Err(Error::shape(
                    OP,
                    &[self.shape(), t.shape()],
                    "gradient and state must have the parameter's shape",
                ));
            }
            if t.dtype() != self.dtype() {
                return Err(Error::DTypeMismatch { op: OP, lhs: self.dtype(), rhs: t.dtype() });
            }
            if t.device() != self.device() {
                return Err(Error::Device { op: OP, a: self.device(), b: t.device() });
            }
        }
        for t in state.iter_mut() {
            t.make_unique(OP)?;
        }
        let mut buffers: Vec<&mut Storage> = state.iter_mut().map(|t| t.unique_storage()).collect();
        self.make_unique(OP)?;
        self.unique_storage().optim_step(step, grad.storage(), grad.layout(), &mut buffers)
    }

    /// Copy-on-write: unless this handle solely owns a storage holding exactly its
    /// contiguous elements, writable, it is replaced by a private contiguous copy.
    pub(crate) fn make_unique(&mut self, op: &'static str) -> Result<()> {
        let whole = self.layout().contiguous_offset() == Some(0) && self.numel() == self.storage().len();
        let unique = Arc::get_mut(&mut self.0).is_some_and(|inner| Arc::get_mut(&mut inner.storage).is_some());
        if !(whole && unique) || self.storage().is_borrowed() {
            *self = Tensor::fresh(self.storage().copy_strided(self.layout()).map_err(|e| e.in_op(op))?, self.shape());
        }
        Ok(())
    }

    /// The storage of a tensor [`Tensor::make_unique`] just made unique.
    pub(crate) fn unique_storage(&mut self) -> &mut Storage {
        let inner = Arc::get_mut(&mut self.0).expect("make_unique left the tensor unshared");
        Arc::get_mut(&mut inner.storage).expect("make_unique left the storage unshared")
    }
}

#[cfg(test)]
mod tests {
    use stategrad_backends::Device;

    use super::*;

    fn sgd(momentum: f64, init: bool) -> OptimStep {
        OptimStep::Sgd { lr: 0.5, weight_decay: 0.0, momentum, dampening: 0.0, nesterov: false, init }
    }

    fn data_ptr(t: &Tensor) -> *const f64 {
        match t.storage() {
            Storage::Cpu(s) => s.as_slice::<f64>().unwrap().as_ptr(),
            _ => unreachable!("CPU tensors here"),
        }
    }

    #[test]
    fn a_sole_owner_is_updated_where_it_lies() {
        let mut w = Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu).unwrap();
        let mut b = w.zeros_like().unwrap();
        let g = Tensor::from_slice(&[2.0f64, 2.0, 2.0], &[3], Device::Cpu).unwrap();
        let (pw, pb) = (data_ptr(&w), data_ptr(&b));
        w.optim_step_(&g, &mut [&mut b], &sgd(0.9, true)).unwrap();
        assert_eq!((data_ptr(&w), data_ptr(&b)), (pw, pb), "no new allocation");
        assert_eq!(w.to_vec::<f64>().unwrap(), vec![0.0, 1.0, 2.0]);
        assert_eq!(b.to_vec::<f64>().unwrap(), vec![2.0, 2.0, 2.0]);
    }

    #[test]
    fn shared_storages_are_copied_first_and_the_other_handles_keep_their_values() {
        let mut w = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0], &[4], Device::Cpu).unwrap();
        let g = Tensor::ones(&[4], stategrad_backends::DType::F64, Device::Cpu).unwrap();
        let clone = w.clone();
        let view = w.narrow(0, 1, 2).unwrap(); // shares the storage Arc, not the handle
        let saved = w.requires_grad(true).unwrap().mul_scalar(3.0).unwrap(); // a graph over w
        w.optim_step_(&g, &mut [], &sgd(0.0, false)).unwrap();
        assert_eq!(w.to_vec::<f64>().unwrap(), vec![0.5, 1.5, 2.5, 3.5]);
        assert_eq!(clone.to_vec::<f64>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(view.to_vec::<f64>().unwrap(), vec![2.0, 3.0]);
        assert!(!w.same_storage(&clone) && !w.same_storage(&view));
        drop(saved);
        // A non-contiguous tensor gets a contiguous private copy, updated in its order.
        let mut t = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu).unwrap().t().unwrap();
        let g = Tensor::from_slice(&[0.0f64, 2.0, 4.0, 6.0], &[2, 2], Device::Cpu).unwrap();
        t.optim_step_(&g, &mut [], &sgd(0.0, false)).unwrap();
        assert!(t.is_contiguous());
        assert_eq!(t.to_vec::<f64>().unwrap(), vec![1.0, 2.0, 0.0, 1.0]);
    }

    #[test]
    fn bad_arguments_are_typed_errors_and_change_nothing() {
        let mut w = Tensor::from_slice(&[1.0f32, 2.0], &[2], Device::Cpu).unwrap();
        let g = Tensor::from_slice(&[1.0f32, 2.0, 3.0], &[3], Device::Cpu).unwrap();
        let e = w.optim_step_(&g, &mut [], &sgd(0.0, false)).unwrap_err();
        assert!(matches!(e, Error::Shape { op: OP, .. }), "{e}");
        let g64 = Tensor::from_slice(&[1.0f64, 2.0], &[2], Device::Cpu).unwrap();
        let e = w.optim_step_(&g64, &mut [], &sgd(0.0, false)).unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { op: OP, .. }), "{e}");
        let e = w.optim_step_(&g64.to_dtype(stategrad_backends::DType::F32).unwrap(), &mut [], &sgd(0.9, false));
        assert!(matches!(e, Err(Error::Argument { op: OP, .. })), "{e:?}");
        let mut tracked = w.requires_grad(true).unwrap();
        let e = tracked.optim_step_(&w.clone(), &mut [], &sgd(0.0, false)).unwrap_err();
        assert!(matches!(e, Error::Autograd { op: OP, .. }), "{e}");
        let mut i = Tensor::from_slice(&[1i64, 2], &[2], Device::Cpu).unwrap();
        let e = i.optim_step_(&i.clone(), &mut [], &sgd(0.0, false)).unwrap_err();
        assert!(matches!(e, Error::DType { .. }), "{e}");
        assert_eq!(w.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    }
}
