//! Module forward hooks: [`ForwardHooks`] (forward pre-hooks and forward hooks, removable by
//! handle, run in registration order) and [`Hooked`], a layer wrapped with its hooks.
//!
//! Hooks are plain data, never state: a `ForwardHooks` field visits nothing (not in
//! `parameters`, not in `state_dict`, not moved by `to_device`), and [`Hooked`] is
//! transparent (no name of its own; typed access sees the layer it wraps). Gradient hooks
//! are on tensors and parameters (`Tensor::register_hook`, [`crate::Param::register_hook`]).
use std::any::Any;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use stategrad_autograd::{HookHandle, Result, Tensor};

use crate::sync::{read, write};
use crate::{Forward, LayerSlot, Module, VisitState, Visitor, VisitorMut};

type PreHook = Arc<dyn Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync>;
type PostHook = Arc<dyn Fn(&Tensor, &Tensor) -> Result<Option<Tensor>> + Send + Sync>;

#[derive(Default)]
struct Lists {
    pre: Vec<(u64, PreHook)>,
    post: Vec<(u64, PostHook)>,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A module's forward hooks. Cloning shares the lists.
///
/// ```
/// use stategrad_nn::{Forward, Hooked, Linear};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let fc = Hooked::new(Linear::new(2, 3)?);
/// let h = fc.hooks.register_forward_hook(|_input, output| Ok(Some(output.relu()?)));
/// let y = fc.forward(&Tensor::randn(&[4, 2], 0.0, 1.0, DType::F32, Device::Cpu)?)?;
/// assert!(y.to_vec::<f32>()?.iter().all(|&v| v >= 0.0));
/// h.remove();
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ForwardHooks(Arc<RwLock<Lists>>);

impl ForwardHooks {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `hook(input)`, called before the forward pass; a returned tensor replaces
    /// the input (for the forward pass and for later hooks).
    pub fn register_forward_pre_hook(
        &self,
        hook: impl Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
    ) -> HookHandle {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        write(&self.0).pre.push((id, Arc::new(hook)));
        self.handle(id)
    }

    /// Registers `hook(input, output)`, called after the forward pass; a returned tensor
    /// replaces the output (for the caller and for later hooks).
    pub fn register_forward_hook(
        &self,
        hook: impl Fn(&Tensor, &Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
    ) -> HookHandle {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        write(&self.0).post.push((id, Arc::new(hook)));
        self.handle(id)
    }

    fn handle(&self, id: u64) -> HookHandle {
        let lists: Weak<RwLock<Lists>> = Arc::downgrade(&self.0);
        HookHandle::new(move || {
            if let Some(lists) = lists.upgrade() {
                let mut l = write(&lists);
                l.pre.retain(|(h, _)| *h != id);
                l.post.retain(|(h, _)| *h != id);
            }
        })
    }

    /// Number of registered hooks (pre and post).
    pub fn len(&self) -> usize {
        let l = read(&self.0);
        l.pre.len() + l.post.len()
    }

    /// True when no hook is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `forward` on `x` between the hooks: pre-hooks in registration order, then the
    /// forward pass, then forward hooks in registration order.
    pub fn run(&self, x: &Tensor, forward: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        // Snapshot the lists, so a hook may register or remove hooks without a deadlock.
        let (pre, post) = {
            let l = read(&self.0);
            (l.pre.clone(), l.post.clone())
        };
        let mut x = x.clone();
        for (_, hook) in &pre {
            if let Some(new) = hook(&x)? {
                x = new;
            }
        }
        let mut y = forward(&x)?;
        for (_, hook) in &post {
            if let Some(new) = hook(&x, &y)? {
                y = new;
            }
        }
        Ok(y)
    }
}

impl fmt::Debug for ForwardHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = read(&self.0);
        write!(f, "ForwardHooks({} pre, {} post)", l.pre.len(), l.post.len())
    }
}

/// Hooks are not state: a `ForwardHooks` field visits nothing.
impl VisitState for ForwardHooks {
    const PLAIN: bool = true;
    fn visit_state(&self, _name: &str, _v: &mut dyn Visitor) {}
    fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
}

/// A layer with forward hooks. Transparent: the same state names as the layer alone (no
/// prefix), the layer's type name, and typed access (`get_submodule::<Linear>`,
/// `for_each_module_mut::<Linear>`) reaches the wrapped layer. `Deref`s to it.
#[derive(Clone, Debug)]
pub struct Hooked<L> {
    /// The wrapped layer.
    pub inner: L,
    /// Its hooks.
    pub hooks: ForwardHooks,
}

impl<L> Hooked<L> {
    /// `inner` with no hooks yet.
    pub fn new(inner: L) -> Self {
        Hooked { inner, hooks: ForwardHooks::new() }
    }
}

impl<L> Deref for Hooked<L> {
    type Target = L;
    fn deref(&self) -> &L {
        &self.inner
    }
}

impl<L> DerefMut for Hooked<L> {
    fn deref_mut(&mut self) -> &mut L {
        &mut self.inner
    }
}

impl<L: Module> Module for Hooked<L> {
    fn visit(&self, v: &mut dyn Visitor) {
        self.inner.visit(v)
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        self.inner.visit_mut(v)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        self.inner.as_any()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        self.inner.as_any_mut()
    }
    fn as_layer_slot(&mut self) -> Option<&mut LayerSlot> {
        self.inner.as_layer_slot()
    }
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
}

impl<L: Forward> Forward for Hooked<L> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.hooks.run(x, |x| self.inner.forward(x))
    }
}
