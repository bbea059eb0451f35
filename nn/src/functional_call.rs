//! `functional_call`: run a module with some of its parameters and buffers replaced by given
//! tensors, for the duration of one call, without writing to the module.
//!
//! The substitution is a per-thread scope: while it is open, [`Param::tensor`] and
//! [`Buffer::tensor`] of the substituted handles return the given tensors, and
//! [`Buffer::set`] on any buffer of the module is collected instead of written (BatchNorm's
//! running statistics in training). The module, and every handle to its state held
//! elsewhere, are untouched; another thread calling the same module sees its own scope (or
//! none). Override tensors are used as given, so a tracked override receives gradients, and
//! a graph built with `create_graph` (a MAML inner step) is differentiated through.
//!
//! PyTorch's `torch.func.functional_call` writes buffer updates into the module
//! (pytorch#77133); here they come back in [`FunctionalOutput::buffers`] and the caller
//! decides ([`FunctionalOutput::apply_buffers`]).
//!
//! [`Param::tensor`]: crate::Param::tensor
use std::cell::RefCell;
use std::collections::HashMap;

use stategrad_autograd::{Error, Result, Tensor};

use crate::access::did_you_mean;
use crate::param::check_same_kind;
use crate::state_graph::StateNode;
use crate::{Buffer, Module, StateDict};

struct Scope {
    /// Handle key -> the tensor it reads as (overrides, then the buffers' values at entry).
    values: HashMap<usize, Tensor>,
    /// Buffer keys written during the call.
    written: Vec<usize>,
}

thread_local! {
    static SCOPES: RefCell<Vec<Scope>> = const { RefCell::new(Vec::new()) };
}

/// The tensor the handle with `key` reads as in this thread's innermost scope that holds it.
pub(crate) fn override_of(key: usize) -> Option<Tensor> {
    SCOPES.with(|s| {
        let scopes = s.borrow();
        scopes.iter().rev().find_map(|scope| scope.values.get(&key).cloned())
    })
}

/// Records a write to the buffer with `key` in the innermost scope that holds it.
pub(crate) fn record_write(key: usize, t: Tensor) {
    SCOPES.with(|s| {
        let mut scopes = s.borrow_mut();
        if let Some(scope) = scopes.iter_mut().rev().find(|scope| scope.values.contains_key(&key)) {
            scope.values.insert(key, t);
            if !scope.written.contains(&key) {
                scope.written.push(key);
            }
        }
    })
}

/// Pops the scope it pushed, also when the call panics.
struct ScopeGuard;

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPES.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// What [`functional_call`] returns: `f`'s result and the buffer writes the call made.
#[derive(Debug)]
pub struct FunctionalOutput<R> {
    /// What the closure returned.
    pub output: R,
    /// The new value of every buffer of the module written during the call (BatchNorm
    /// running statistics, `num_batches_tracked`), by the buffer's first dotted name, in
    /// the module's buffer order. Not applied to the module.
    pub buffers: StateDict,
}

impl<R> FunctionalOutput<R> {
    /// Writes the returned buffer values into `module`'s buffers (what a stateful call
    /// would have done).
    pub fn apply_buffers(&self, module: &(impl Module + ?Sized)) -> Result<()> {
        let staged: Vec<(Buffer, &Tensor)> =
            self.buffers.iter().map(|(name, t)| Ok((module.get_buffer(name)?, t))).collect::<Result<_>>()?;
        for (b, t) in staged {
            b.set(t.clone())?;
        }
        Ok(())
    }
}

/// Runs `f(module)` with the parameters and buffers named in `overrides` (dotted names, as in
/// `state_dict`; aliases of tied weights too) replaced by the given tensors, for this call
/// only and on this thread only. Each override must have the shape, dtype and device of what
/// it replaces; an unknown name fails with "did you mean". Buffer writes made during the call
/// come back in [`FunctionalOutput::buffers`] and are not applied.
///
/// The substitution belongs to the calling thread: work that `f` hands to other threads
/// (a rayon pool running sub-modules) sees the module's own tensors there.
///
/// ```
/// use stategrad_nn::{functional_call, Forward, Linear, Module};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let a = Linear::new(2, 1)?;
/// let w = Tensor::from_slice(&[1.0f32, 2.0], &[1, 2], Device::Cpu)?.requires_grad(true)?;
/// let x = Tensor::ones(&[1, 2], DType::F32, Device::Cpu)?;
/// let out = functional_call(&a, [("weight", w.clone())], |m| m.forward(&x))?;
/// let grads = out.output.sum_all()?.backward()?;
/// assert_eq!(grads.get(&w).unwrap().to_vec::<f32>()?, vec![1.0, 1.0]); // reached the override
/// assert!(a.weight.grad(&grads).is_none()); // the module's own weight was not used
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn functional_call<M, R, K>(
    module: &M,
    overrides: impl IntoIterator<Item = (K, Tensor)>,
    f: impl FnOnce(&M) -> Result<R>,
) -> Result<FunctionalOutput<R>>
where
    M: Module + ?Sized,
    K: AsRef<str>,
{
    const OP: &str = "functional_call";
    let g = module.state_graph();
    let graph = g.graph();
    let mut values = HashMap::new();
    // Every buffer of the module reads as its current value and collects writes.
    let buffers = g.named_buffers();
    for (_, b) in &buffers {
        values.insert(b.key(), b.tensor());
    }
    for (name, t) in overrides {
        let name = name.as_ref();
        let Some((_, idx)) = g.names().iter().find(|(n, _)| n == name) else {
            let names = g.names().iter().map(|(n, _)| n.as_str());
            return Err(Error::argument(
                OP,
                format!("no parameter or buffer `{name}` in {}{}", module.type_name(), did_you_mean(name, names)),
            ));
        };
        let (key, current) = match &graph[*idx] {
            StateNode::Param { param, .. } => (param.key(), param.data()),
            StateNode::Buffer { buffer, .. } => (buffer.key(), buffer.tensor()),
            StateNode::Module { .. } => return Err(Error::argument(OP, format!("`{name}` is a module"))),
        };
        check_same_kind(OP, &current, &t).map_err(|e| match e {
            Error::State { msg, .. } => Error::argument(OP, format!("override `{name}`: {msg}")),
            e => e,
        })?;
        values.insert(key, t);
    }
    SCOPES.with(|s| s.borrow_mut().push(Scope { values, written: Vec::new() }));
    let guard = ScopeGuard;
    let output = f(module);
    let written = SCOPES.with(|s| {
        let scopes = s.borrow();
        let scope = scopes.last();
        scope
            .map(|scope| scope.written.iter().filter_map(|k| Some((*k, scope.values.get(k)?.clone()))).collect())
            .unwrap_or_else(HashMap::new)
    });
    drop(guard);
    let output = output?;
    let mut out = StateDict::new();
    for (name, b) in &buffers {
        if let Some(t) = written.get(&b.key()) {
            out.insert(name.clone(), t.clone());
        }
    }
    Ok(FunctionalOutput { output, buffers: out })
}
