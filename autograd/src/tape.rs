//! The tape: nodes recorded by ops on tracked inputs, and the backward pass over them.
//!
//! A node is owned (through `Arc`) by the tensor it produced and by the nodes of later ops
//! that consumed it, so a graph lives exactly as long as some tensor can still reach it.
//! Nodes carry a global, increasing sequence number; backward pops pending nodes from a
//! max-heap in reverse tape order, without recursion. Dropping a long chain is iterative
//! too (see `Drop for Node`). Gradients of broadcast inputs are reduced to the input's shape
//! here, once, never inside a rule.
//!
//! Gradient hooks ([`Tensor::register_hook`]): an intermediate tensor's hooks sit on its
//! node and run on its summed gradient before its rule; a leaf's sit in a table keyed by
//! its [`TensorId`] (so a parameter's hooks follow its stable id) and run once per pass on
//! its summed gradient before it is returned. A hook may replace the gradient.
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use smallvec::SmallVec;
use stategrad_backends::{Dims, Error, Result};

use crate::grad_mode::{is_anomaly_enabled, is_grad_enabled, GradModeGuard};
use crate::tensor::Track;
use crate::{Grads, Tensor, TensorId};

/// A backward rule: given the gradient of the op's output, the gradients of its inputs
/// (one entry per input, in order; `None` where there is none). Rules are written with
/// `Tensor` ops, so under `create_graph` the backward pass is itself recorded.
pub trait Backward: Send + Sync {
    /// Input gradients from the output gradient, each of the output's (broadcast) shape or
    /// of the input's shape; the tape reduces broadcast dimensions.
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

static SEQ: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Number of recorded nodes currently alive in the process (a debug counter for tests:
/// a forward pass whose outputs dropped leaves it where it was).
pub fn live_nodes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

pub(crate) enum Target {
    Untracked,
    Leaf(TensorId),
    Node(NodeRef),
}

pub(crate) struct Edge {
    target: Target,
    shape: Dims,
}

/// The type-erased slot holding a node's rule (and its saved tensors) until backward
/// takes it. Implemented by `Mutex<Option<B>>` for every rule `B`.
pub(crate) trait RuleSlot: Send + Sync {
    /// Runs the rule; unless `retain`, frees it (and the tensors it saved) afterwards.
    /// `None` when an earlier backward already freed it.
    fn run(&self, grad: &Tensor, retain: bool) -> Option<Result<Vec<Option<Tensor>>>>;
    /// Frees the rule now.
    fn clear(&mut self);
}

impl<B: Backward> RuleSlot for Mutex<Option<B>> {
    fn run(&self, grad: &Tensor, retain: bool) -> Option<Result<Vec<Option<Tensor>>>> {
        // a poisoned lock means a rule panicked earlier: report it as freed
        let mut slot = self.lock().ok()?;
        let out = slot.as_ref()?.backward(grad);
        if !retain {
            slot.take();
        }
        Some(out)
    }

    fn clear(&mut self) {
        if let Ok(slot) = self.get_mut() {
            slot.take();
        }
    }
}

/// A gradient hook: sees a gradient during backward and may return a replacement.
pub(crate) type GradHook = Arc<dyn Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync>;

/// Hooks in registration order, each with the id its handle removes it by.
type HookList = Vec<(u64, GradHook)>;

static HOOK_ID: AtomicU64 = AtomicU64::new(1);

/// One recorded op. The rule is stored inline (the struct's last, unsized field), so a
/// recorded op costs one allocation for the node.
pub(crate) struct Node<R: ?Sized + RuleSlot = dyn RuleSlot> {
    seq: u64,
    name: &'static str,
    edges: SmallVec<[Edge; 2]>,
    /// Hooks on the gradient of the tensor this node produced ([`Tensor::register_hook`]).
    hooks: Mutex<HookList>,
    rule: R,
}

/// A shared handle to a recorded node.
pub(crate) type NodeRef = Arc<Node>;

impl<R: ?Sized + RuleSlot> Node<R> {
    pub(crate) fn name(&self) -> &'static str {
        self.name.rsplit("::").next().unwrap_or(self.name)
    }
}

impl<R: ?Sized + RuleSlot> Drop for Node<R> {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        // Free saved tensors first (their nodes are also held by our edges, so this does not
        // recurse), then unlink the chain iteratively: a 100,000-op graph must not overflow.
        self.rule.clear();
        let mut stack: Vec<NodeRef> = Vec::new();
        let push_edges = |edges: &mut SmallVec<[Edge; 2]>, stack: &mut Vec<NodeRef>| {
            for e in edges.drain(..) {
                if let Target::Node(n) = e.target {
                    stack.push(n);
                }
            }
        };
        push_edges(&mut self.edges, &mut stack);
        while let Some(mut n) = stack.pop() {
            if let Some(node) = Arc::get_mut(&mut n) {
                // we hold the last reference: empty it here, so its own drop does not recurse
                node.rule.clear();
                push_edges(&mut node.edges, &mut stack);
            }
        }
    }
}

/// Records `out` as the result of an op on `inputs` when grad mode is on and an input is
/// tracked; otherwise returns `out` as is (no node, and `make` is never called, so nothing
/// is saved). `make` builds the backward rule, saving what it needs.
pub(crate) fn record<B: Backward + 'static>(
    inputs: &[&Tensor],
    out: Tensor,
    make: impl FnOnce(&Tensor) -> B,
) -> Tensor {
    if !is_grad_enabled() || !inputs.iter().any(|t| t.is_tracked()) {
        return out;
    }
    let rule = make(&out);
    record_rule(inputs, out, rule, std::any::type_name::<B>())
}

/// Records `rule` for `out` unconditionally (the caller checked that recording applies).
pub(crate) fn record_rule<B: Backward + 'static>(
    inputs: &[&Tensor],
    out: Tensor,
    rule: B,
    name: &'static str,
) -> Tensor {
    let edges = inputs
        .iter()
        .map(|t| Edge {
            target: match &t.0.track {
                Track::None => Target::Untracked,
                Track::Leaf(id) => Target::Leaf(*id),
                Track::Node(n) => Target::Node(n.clone()),
            },
            shape: SmallVec::from_slice(t.shape()),
        })
        .collect();
    LIVE.fetch_add(1, Ordering::Relaxed);
    let node: NodeRef = Arc::new(Node {
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
        name,
        edges,
        hooks: Mutex::new(Vec::new()),
        rule: Mutex::new(Some(rule)),
    });
    let track = Track::Node(node);
    let mut out = out;
    match Arc::get_mut(&mut out.0) {
        // the usual case: `out` was just made by the op, so mark it in place (no allocation)
        Some(inner) => {
            inner.track = track;
            out
        }
        None => out.with_track(track),
    }
}

/// Options of a backward pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackwardOptions {
    /// Keep saved tensors so the graph can be backpropagated again.
    pub retain_graph: bool,
    /// Record the backward pass itself (for higher derivatives); implies `retain_graph`.
    pub create_graph: bool,
}

struct Pending(NodeRef);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.0.seq == other.0.seq
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.seq.cmp(&other.0.seq)
    }
}

/// Sums `grad` down to `shape` (undoing NumPy broadcasting).
pub(crate) fn unbroadcast(grad: Tensor, shape: &[usize]) -> Result<Tensor> {
    if grad.shape() == shape {
        return Ok(grad);
    }
    let lead = grad
        .rank()
        .checked_sub(shape.len())
        .ok_or_else(|| Error::shape("backward", &[grad.shape(), shape], "gradient has lower rank than its input"))?;
    let mut axes: Vec<usize> = (0..lead).collect();
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && grad.shape()[lead + i] != 1 {
            axes.push(lead + i);
        }
    }
    let summed = if axes.is_empty() { grad } else { grad.sum(axes, true)? };
    summed.reshape(shape)
}

fn add_into(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(prev) => prev.add(&g)?,
        None => g,
    });
    Ok(())
}

fn check_finite(node: &Node, i: usize, g: &Tensor) -> Result<()> {
    if !g.dtype().is_float() {
        return Ok(());
    }
    if let Some(bad) = g.to_f64_vec()?.into_iter().find(|v| !v.is_finite()) {
        return Err(Error::Anomaly { op: node.name(), what: format!("{bad} in the gradient of input {i}") });
    }
    Ok(())
}

/// The engine behind `backward`, `backward_with` and [`grad`]: propagates `roots` (each
/// a tracked tensor and the gradient of its output), accumulating leaf gradients, and the
/// gradients of the non-leaf tensors in `capture` (by node sequence number).
pub(crate) fn run_backward(
    roots: &[(&Tensor, Tensor)],
    opts: BackwardOptions,
    capture: &HashMap<u64, usize>,
    captured: &mut [Option<Tensor>],
) -> Result<Grads> {
    let retain = opts.retain_graph || opts.create_graph;
    let _mode = GradModeGuard::set(opts.create_graph);
    let mut grads = Grads::default();
    let mut pending: HashMap<u64, Option<Tensor>> = HashMap::new();
    let mut heap = BinaryHeap::new();
    for (root, g) in roots {
        if root.shape() != g.shape() {
            return Err(Error::shape("backward", &[root.shape(), g.shape()], "gradient shape differs from output"));
        }
        let g = if opts.create_graph { g.clone() } else { g.detach() };
        match &root.0.track {
            Track::None => {
                return Err(Error::NotDifferentiable {
                    op: "backward",
                    msg: "the tensor is not tracked: it does not descend from a tensor that requires grad \
                          (or was computed under no_grad, after detach, or through a non-differentiable op \
                          such as argmax or a comparison)"
                        .into(),
                })
            }
            Track::Leaf(id) => grads.accumulate(*id, g)?,
            Track::Node(n) => {
                let slot = pending.entry(n.seq).or_insert(None);
                if slot.is_none() {
                    heap.push(Pending(n.clone()));
                }
                add_into(slot, g)?;
            }
        }
    }
    while let Some(Pending(node)) = heap.pop() {
        let Some(Some(grad)) = pending.remove(&node.seq) else { continue };
        let hooks: HookList = node.hooks.lock().map(|h| h.clone()).unwrap_or_default();
        let grad = run_hooks(&hooks, grad, node.name())?;
        if let Some(&k) = capture.get(&node.seq) {
            add_into(&mut captured[k], grad.clone())?;
        }
        let input_grads = node.rule.run(&grad, retain).ok_or_else(|| Error::Autograd {
            op: "backward",
            msg: format!(
                "the graph through {} was already freed by an earlier backward; pass retain_graph to \
                 backpropagate twice",
                node.name()
            ),
        })??;
        if input_grads.len() != node.edges.len() {
            return Err(Error::Autograd {
                op: "backward",
                msg: format!(
                    "{} returned {} gradients for {} inputs",
                    node.name(),
                    input_grads.len(),
                    node.edges.len()
                ),
            });
        }
        for (i, (edge, g)) in node.edges.iter().zip(input_grads).enumerate() {
            let Some(g) = g else { continue };
            if matches!(edge.target, Target::Untracked) {
                continue;
            }
            let g = unbroadcast(g, &edge.shape)?;
            if is_anomaly_enabled() {
                check_finite(&node, i, &g)?;
            }
            match &edge.target {
                Target::Untracked => {}
                Target::Leaf(id) => grads.accumulate(*id, g)?,
                Target::Node(n) => {
                    let slot = pending.entry(n.seq).or_insert(None);
                    if slot.is_none() {
                        heap.push(Pending(n.clone()));
                    }
                    add_into(slot, g)?;
                }
            }
        }
    }
    if LEAF_HOOK_COUNT.load(Ordering::Relaxed) > 0 {
        let ids: Vec<TensorId> = grads.iter().map(|(id, _)| id).collect();
        for id in ids {
            let hooks: HookList = with_leaf_hooks(|m| m.get(&id).cloned().unwrap_or_default());
            if hooks.is_empty() {
                continue;
            }
            if let Some(g) = grads.remove(id) {
                grads.insert(id, run_hooks(&hooks, g, "leaf")?);
            }
        }
    }
    Ok(grads)
}

/// Runs `hooks` in order on `grad`, each seeing the previous one's replacement.
fn run_hooks(hooks: &[(u64, GradHook)], mut grad: Tensor, what: &str) -> Result<Tensor> {
    for (_, hook) in hooks {
        if let Some(new) = hook(&grad)? {
            if new.shape() != grad.shape() || new.dtype() != grad.dtype() || new.device() != grad.device() {
                return Err(Error::Autograd {
                    op: "backward",
                    msg: format!(
                        "a gradient hook on {what} returned a {:?} {} tensor on {} for a {:?} {} gradient on {}",
                        new.shape(),
                        new.dtype(),
                        new.device(),
                        grad.shape(),
                        grad.dtype(),
                        grad.device()
                    ),
                });
            }
            grad = new;
        }
    }
    Ok(grad)
}

static LEAF_HOOKS: Mutex<Option<HashMap<TensorId, HookList>>> = Mutex::new(None);
static LEAF_HOOK_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` on the leaf-hook table (a poisoned lock still yields it: a hook that panicked
/// elsewhere must not take every later backward down).
fn with_leaf_hooks<T>(f: impl FnOnce(&mut HashMap<TensorId, HookList>) -> T) -> T {
    let mut guard = LEAF_HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Removes a hook when [`HookHandle::remove`] is called. Dropping the handle keeps the hook
/// (as in PyTorch).
#[must_use = "dropping a HookHandle keeps the hook; call remove() to take it off"]
pub struct HookHandle {
    remove: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl HookHandle {
    /// A handle whose `remove` runs `remove` (for hooks kept elsewhere, e.g. on modules).
    pub fn new(remove: impl FnOnce() + Send + Sync + 'static) -> HookHandle {
        HookHandle { remove: Some(Box::new(remove)) }
    }

    /// Takes the hook off; later passes no longer call it.
    pub fn remove(mut self) {
        if let Some(f) = self.remove.take() {
            f()
        }
    }
}

impl std::fmt::Debug for HookHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookHandle")
    }
}

/// Registers `hook` on the gradient of the leaf with `id` (what [`Tensor::register_hook`]
/// does for a leaf, and how a parameter container hooks its stable id): each backward pass
/// calls it once with the leaf's summed gradient, and a returned tensor replaces it.
pub fn register_leaf_hook(
    id: TensorId,
    hook: impl Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
) -> HookHandle {
    let hook_id = HOOK_ID.fetch_add(1, Ordering::Relaxed);
    with_leaf_hooks(|m| m.entry(id).or_default().push((hook_id, Arc::new(hook))));
    LEAF_HOOK_COUNT.fetch_add(1, Ordering::Relaxed);
    HookHandle::new(move || {
        let removed = with_leaf_hooks(|m| {
            let Some(list) = m.get_mut(&id) else { return false };
            let before = list.len();
            list.retain(|(h, _)| *h != hook_id);
            let removed = list.len() < before;
            if list.is_empty() {
                m.remove(&id);
            }
            removed
        });
        if removed {
            LEAF_HOOK_COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    })
}

impl Tensor {
    /// Registers `hook` on this tensor's gradient: during every backward pass that reaches
    /// it, `hook(grad)` is called with the (summed) gradient with respect to this tensor,
    /// and a returned tensor (same shape, dtype, device) replaces it for everything
    /// upstream, as in PyTorch. Works on leaves (the gradient in [`Grads`] is the hooked
    /// one) and on intermediate tensors (what flows to their inputs is the hooked one).
    /// Hooks run in registration order. [`Error::NotDifferentiable`] on an untracked tensor.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let x = Tensor::from_slice(&[1.0f64, 2.0], &[2], Device::Cpu)?.requires_grad(true)?;
    /// let h = x.register_hook(|g| Ok(Some(g.mul_scalar(2.0)?)))?;
    /// let grads = x.mul(&x)?.sum_all()?.backward()?;
    /// assert_eq!(grads.get(&x).unwrap().to_vec::<f64>()?, vec![4.0, 8.0]);
    /// h.remove();
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn register_hook(
        &self,
        hook: impl Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
    ) -> Result<HookHandle> {
        match &self.0.track {
            Track::None => Err(Error::NotDifferentiable {
                op: "register_hook",
                msg: "the tensor is not tracked (it does not require grad), so no gradient reaches it".into(),
            }),
            Track::Leaf(id) => Ok(register_leaf_hook(*id, hook)),
            Track::Node(node) => {
                let hook_id = HOOK_ID.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut hooks) = node.hooks.lock() {
                    hooks.push((hook_id, Arc::new(hook)));
                }
                let weak: Weak<Node> = Arc::downgrade(node);
                Ok(HookHandle::new(move || {
                    if let Some(node) = weak.upgrade() {
                        if let Ok(mut hooks) = node.hooks.lock() {
                            hooks.retain(|(h, _)| *h != hook_id);
                        }
                    }
                }))
            }
        }
    }
}

impl Tensor {
    /// Backpropagates from this scalar (one-element) tensor; returns the gradient of every
    /// tracked leaf it depends on. Frees the graph's saved tensors.
    pub fn backward(&self) -> Result<Grads> {
        if self.numel() != 1 {
            return Err(Error::Autograd {
                op: "backward",
                msg: format!(
                    "backward() needs a one-element output, this one has shape {:?}; use backward_with(grad)",
                    self.shape()
                ),
            });
        }
        self.backward_opts(&self.ones_like()?, BackwardOptions::default())
    }

    /// Backpropagates `grad` (the gradient of this tensor, same shape).
    pub fn backward_with(&self, grad: &Tensor) -> Result<Grads> {
        self.backward_opts(grad, BackwardOptions::default())
    }

    /// Backpropagates `grad` with explicit [`BackwardOptions`].
    pub fn backward_opts(&self, grad: &Tensor, opts: BackwardOptions) -> Result<Grads> {
        run_backward(&[(self, grad.clone())], opts, &HashMap::new(), &mut [])
    }
}

/// Gradients of `outputs` (weighted by `grad_outputs`, ones when `None`) with respect to
/// `inputs`, which may be leaves or intermediate tensors; `None` for an input the outputs
/// do not depend on. With `create_graph` the result is itself tracked (double backward).
pub fn grad(
    outputs: &[&Tensor],
    grad_outputs: Option<&[&Tensor]>,
    inputs: &[&Tensor],
    create_graph: bool,
) -> Result<Vec<Option<Tensor>>> {
    let mut roots = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let g = match grad_outputs {
            Some(gs) => (*gs.get(i).ok_or_else(|| Error::Autograd {
                op: "grad",
                msg: format!("{} outputs but {} grad_outputs", outputs.len(), gs.len()),
            })?)
            .clone(),
            None => out.ones_like()?,
        };
        roots.push((*out, g));
    }
    let mut capture = HashMap::new();
    for (k, t) in inputs.iter().enumerate() {
        match &t.0.track {
            Track::Node(n) => {
                capture.insert(n.seq, k);
            }
            Track::Leaf(_) => {}
            Track::None => {
                return Err(Error::NotDifferentiable {
                    op: "grad",
                    msg: format!("input {k} is not tracked, so nothing can be differentiated with respect to it"),
                })
            }
        }
    }
    let mut captured = vec![None; inputs.len()];
    let opts = BackwardOptions { retain_graph: create_graph, create_graph };
    let grads = run_backward(&roots, opts, &capture, &mut captured)?;
    Ok(inputs
        .iter()
        .zip(captured)
        .map(|(t, c)| match t.id() {
            Some(id) => grads.get_id(id).cloned(),
            None => c,
        })
        .collect())
}
