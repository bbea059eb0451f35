//! `Buffer`: a shared handle to module state that is never trained (running statistics,
//! positional encodings, precomputed tables). Persistent buffers are saved in the
//! `state_dict`; non-persistent ones are not. Both are moved by `to_device` / `to_dtype`.
use std::fmt;
use std::sync::{Arc, RwLock};

use stategrad_autograd::{DType, Device, Result, Tensor};

use crate::param::check_same_kind;
use crate::sync::{read, write};

struct BufferCell {
    persistent: bool,
    data: RwLock<Tensor>,
}

/// A buffer: never tracked by the tape, never touched by an optimizer; saved in the
/// `state_dict` when persistent; always moved with the module.
///
/// ```
/// use stategrad_nn::Buffer;
/// use stategrad_autograd::{Tensor, DType, Device};
/// let stats = Buffer::new(Tensor::zeros(&[3], DType::F32, Device::Cpu)?);
/// stats.set(Tensor::ones(&[3], DType::F32, Device::Cpu)?)?;
/// assert!(!stats.tensor().is_tracked());
/// assert!(stats.is_persistent());
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Clone)]
pub struct Buffer(Arc<BufferCell>);

impl Buffer {
    /// A persistent buffer (in the `state_dict`) holding `t`, detached.
    pub fn new(t: Tensor) -> Buffer {
        Buffer(Arc::new(BufferCell { persistent: true, data: RwLock::new(t.detach()) }))
    }

    /// A non-persistent buffer: moved with the module, absent from the `state_dict`.
    pub fn non_persistent(t: Tensor) -> Buffer {
        Buffer(Arc::new(BufferCell { persistent: false, data: RwLock::new(t.detach()) }))
    }

    /// True when the buffer is saved in the `state_dict`.
    pub fn is_persistent(&self) -> bool {
        self.0.persistent
    }

    /// The data, always untracked. Inside [`crate::functional_call`] on this thread, the
    /// substituted tensor, or the last value written during the call.
    pub fn tensor(&self) -> Tensor {
        if let Some(t) = crate::functional_call::override_of(self.key()) {
            return t.detach();
        }
        read(&self.0.data).clone()
    }

    /// Replaces the data (running statistics, a load). The new tensor must have the same
    /// shape, dtype and device ([`stategrad_autograd::Error::State`] otherwise); it is
    /// stored detached. Inside [`crate::functional_call`] on this thread, a buffer of the
    /// called module is not written: the value is collected and returned by the call.
    pub fn set(&self, t: Tensor) -> Result<()> {
        if let Some(current) = crate::functional_call::override_of(self.key()) {
            check_same_kind("Buffer::set", &current, &t)?;
            crate::functional_call::record_write(self.key(), t.detach());
            return Ok(());
        }
        let mut d = write(&self.0.data);
        check_same_kind("Buffer::set", &d, &t)?;
        *d = t.detach();
        Ok(())
    }

    /// Gives an unmaterialised buffer (of a model built in deferred mode) its data: `t` must
    /// have the buffer's shape and dtype, on any device. What a module's
    /// `Module::reset_non_persistent_buffers` calls.
    pub fn materialize(&self, t: Tensor) -> Result<()> {
        let mut d = write(&self.0.data);
        if d.shape() != t.shape() || d.dtype() != t.dtype() {
            return Err(stategrad_autograd::Error::State {
                op: "Buffer::materialize",
                msg: format!("expected a {:?} {} tensor, got {:?} {}", d.shape(), d.dtype(), t.shape(), t.dtype()),
            });
        }
        *d = t.detach();
        Ok(())
    }

    /// Replaces the data with a tensor of any dtype or device (moves).
    pub(crate) fn put(&self, t: Tensor) {
        *write(&self.0.data) = t.detach();
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        read(&self.0.data).shape().to_vec()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        read(&self.0.data).dtype()
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        read(&self.0.data).device()
    }

    /// True when both handles are the same buffer.
    pub fn ptr_eq(&self, other: &Buffer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// An address identifying the shared cell (for de-duplication).
    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = read(&self.0.data);
        let kind = if self.0.persistent { "Buffer" } else { "Buffer(non-persistent)" };
        write!(f, "{kind}({:?}, {}, {})", t.shape(), t.dtype(), t.device())
    }
}
