//! `Param`: a shared handle to a trained tensor. Cloning the handle shares the state (that
//! is how weights are tied); the handle keeps one [`TensorId`] for its whole life, so its
//! gradient is found under the same id after every backward pass.
use std::fmt;
use std::sync::{Arc, RwLock};

use stategrad_autograd::{is_grad_enabled, DType, Device, Error, Grads, HookHandle, Result, Tensor, TensorId};

use crate::sync::{read, write};

struct ParamState {
    data: Tensor,
    requires_grad: bool,
    /// How many [`crate::Module::freeze`] calls hold this parameter.
    frozen: u32,
}

impl ParamState {
    fn trainable(&self) -> bool {
        self.requires_grad && self.frozen == 0
    }
}

struct ParamCell {
    id: TensorId,
    state: RwLock<ParamState>,
}

/// A parameter: trained by the tape and the optimizers (unless frozen), saved in the
/// `state_dict`, moved by `to_device` / `to_dtype`.
///
/// ```
/// use stategrad_nn::Param;
/// use stategrad_autograd::{Tensor, Device};
/// let w = Param::new(Tensor::from_slice(&[1.0f32, 2.0], &[2], Device::Cpu)?);
/// let loss = w.tensor()?.mul(&w.tensor()?)?.sum_all()?;
/// let grads = loss.backward()?;
/// assert_eq!(w.grad(&grads).unwrap().to_vec::<f32>()?, vec![2.0, 4.0]);
/// let tied = w.clone(); // the same parameter
/// w.requires_grad(false);
/// assert!(!tied.needs_grad());
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Clone)]
pub struct Param(Arc<ParamCell>);

impl Param {
    /// A parameter holding `t` (detached). Float tensors require grad; integer ones cannot.
    pub fn new(t: Tensor) -> Param {
        let requires_grad = t.dtype().is_float();
        Param(Arc::new(ParamCell {
            id: TensorId::new(),
            state: RwLock::new(ParamState { data: t.detach(), requires_grad, frozen: 0 }),
        }))
    }

    /// The stable id that keys this parameter's gradient in [`Grads`].
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// The tensor to compute with: a tracked leaf (with this parameter's id) while the
    /// parameter requires grad and grad mode is on, else the untracked data. Inside
    /// [`crate::functional_call`] on this thread, the tensor substituted for it, as given.
    pub fn tensor(&self) -> Result<Tensor> {
        if let Some(t) = crate::functional_call::override_of(self.key()) {
            return Ok(t);
        }
        let s = read(&self.0.state);
        if s.trainable() && is_grad_enabled() {
            s.data.leaf_with_id(self.0.id)
        } else {
            Ok(s.data.clone())
        }
    }

    /// The untracked data, whatever the grad mode.
    pub fn data(&self) -> Tensor {
        read(&self.0.state).data.clone()
    }

    /// This parameter's gradient in `grads`, if the loss depended on it.
    pub fn grad(&self, grads: &Grads) -> Option<Tensor> {
        grads.get_id(self.0.id).cloned()
    }

    /// Replaces the data (an optimizer step, a load). The new tensor must have the same
    /// shape, dtype and device ([`Error::State`] otherwise); it is stored detached.
    pub fn set(&self, t: Tensor) -> Result<()> {
        let mut s = write(&self.0.state);
        check_same_kind("Param::set", &s.data, &t)?;
        s.data = t.detach();
        Ok(())
    }

    /// Runs `f` on the data itself, under the write lock: an in-place optimizer update
    /// ([`Tensor::optim_step_`]), which writes where the data lies only while nothing else
    /// shares its storage (copy-on-write otherwise), and keeps shape, dtype and device.
    pub(crate) fn update_in_place(&self, f: impl FnOnce(&mut Tensor) -> Result<()>) -> Result<()> {
        f(&mut write(&self.0.state).data)
    }

    /// Replaces the data with a tensor of any dtype or device (moves); same shape.
    pub(crate) fn put(&self, t: Tensor) {
        write(&self.0.state).data = t.detach();
    }

    /// Freezes (`false`) or unfreezes (`true`) the parameter. A frozen parameter hands out
    /// untracked tensors, gets no gradient, and is never changed by an optimizer. Integer
    /// parameters stay frozen.
    pub fn requires_grad(&self, requires: bool) -> &Self {
        let mut s = write(&self.0.state);
        s.requires_grad = requires && s.data.dtype().is_float();
        drop(s);
        self
    }

    /// True unless the parameter is frozen (by [`Param::requires_grad`] or by a
    /// [`crate::Module::freeze`]).
    pub fn needs_grad(&self) -> bool {
        read(&self.0.state).trainable()
    }

    /// True while a [`crate::Module::freeze`] holds this parameter.
    pub fn is_frozen(&self) -> bool {
        read(&self.0.state).frozen > 0
    }

    pub(crate) fn freeze_count(&self) -> u32 {
        read(&self.0.state).frozen
    }

    pub(crate) fn add_freeze(&self, delta: i32) {
        let mut s = write(&self.0.state);
        s.frozen = s.frozen.saturating_add_signed(delta);
    }

    /// Registers `hook` on this parameter's gradient: every backward pass that reaches the
    /// parameter calls it with the (summed) gradient, and a returned tensor replaces it in
    /// the [`Grads`]. Removable by the handle; see [`Tensor::register_hook`].
    pub fn register_hook(
        &self,
        hook: impl Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
    ) -> HookHandle {
        stategrad_autograd::register_leaf_hook(self.0.id, hook)
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        read(&self.0.state).data.shape().to_vec()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        read(&self.0.state).data.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        read(&self.0.state).data.dtype()
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        read(&self.0.state).data.device()
    }

    /// True when both handles are the same parameter (tied).
    pub fn ptr_eq(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// An address identifying the shared cell (for de-duplication).
    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = read(&self.0.state);
        write!(f, "Param({:?}, {}, {}", s.data.shape(), s.data.dtype(), s.data.device())?;
        if !s.trainable() {
            write!(f, ", frozen")?;
        }
        write!(f, ")")
    }
}

/// Checks that `new` may replace `old`: same shape, dtype and device.
pub(crate) fn check_same_kind(op: &'static str, old: &Tensor, new: &Tensor) -> Result<()> {
    if old.shape() != new.shape() || old.dtype() != new.dtype() || old.device() != new.device() {
        return Err(Error::State {
            op,
            msg: format!(
                "expected a {:?} {} tensor on {}, got {:?} {} on {}",
                old.shape(),
                old.dtype(),
                old.device(),
                new.shape(),
                new.dtype(),
                new.device()
            ),
        });
    }
    Ok(())
}
