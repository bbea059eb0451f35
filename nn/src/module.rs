//! The `Module` trait: one required method, [`Module::visit`], that names the module's
//! state to a [`Visitor`]; everything else (listing, `state_dict`, loading, moving,
//! train/eval, freezing, the state graph) is provided once, on top of it.
use std::any::Any;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use stategrad_autograd::{DType, Device, Migrated, Result, Tensor};

use crate::load::{LoadOptions, SaveOptions};
use crate::state_dict::StateDict;
use crate::state_graph::StateGraph;
use crate::LoadReport;
use crate::{Buffer, Param};

/// Receives a module's state, by name. [`Module::visit`] calls it once per parameter,
/// buffer, child module and training flag, in declaration order.
pub trait Visitor {
    /// A parameter named `name` (one attribute, no dots).
    fn param(&mut self, name: &str, param: &Param);
    /// A buffer named `name`.
    fn buffer(&mut self, name: &str, buffer: &Buffer);
    /// A child module named `name`.
    fn module(&mut self, name: &str, module: &dyn Module);
    /// The module's train/eval flag (layers whose forward depends on it hold one).
    fn training(&mut self, flag: &Training) {
        let _ = flag;
    }
}

/// Receives a module's child modules, mutably, by name: the walk behind typed access and
/// in-place replacement ([`Module::for_each_module_mut`], [`Module::replace_modules`]).
/// Parameters, buffers and flags are shared handles, reached through [`Visitor`]; only
/// modules need `&mut`.
pub trait VisitorMut {
    /// A child module named `name`.
    fn module(&mut self, name: &str, module: &mut dyn Module);
}

/// A shared train/eval flag (train by default). Layers that behave differently in
/// training (BatchNorm, Dropout) hold one and visit it, so [`Module::train`] and
/// [`Module::eval`] reach them from any ancestor.
///
/// The flag also counts freezes ([`Module::freeze`]): a frozen layer behaves as in
/// evaluation ([`Training::get`] is false: BatchNorm uses its running statistics, Dropout
/// is the identity) whatever its mode, and [`Training::mode`] keeps the train/eval mode to
/// come back to.
#[derive(Clone, Debug)]
pub struct Training(Arc<TrainingCell>);

#[derive(Debug)]
struct TrainingCell {
    mode: AtomicBool,
    frozen: AtomicU32,
}

impl Default for Training {
    fn default() -> Self {
        Training(Arc::new(TrainingCell { mode: AtomicBool::new(true), frozen: AtomicU32::new(0) }))
    }
}

impl Training {
    /// A flag in training mode.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the layer should behave as in training: training mode and not frozen.
    pub fn get(&self) -> bool {
        self.mode() && !self.is_frozen()
    }

    /// The train (`true`) / eval (`false`) mode last set, frozen or not.
    pub fn mode(&self) -> bool {
        self.0.mode.load(Ordering::Relaxed)
    }

    /// True while a [`Module::freeze`] holds this flag.
    pub fn is_frozen(&self) -> bool {
        self.0.frozen.load(Ordering::Relaxed) > 0
    }

    /// Sets training (`true`) or evaluation (`false`) mode (a frozen flag stays frozen).
    pub fn set(&self, training: bool) {
        self.0.mode.store(training, Ordering::Relaxed)
    }

    pub(crate) fn freeze_count(&self) -> u32 {
        self.0.frozen.load(Ordering::Relaxed)
    }

    /// Adds one freeze (`true`) or removes one (`false`, saturating at zero).
    pub(crate) fn add_freeze(&self, freeze: bool) {
        if freeze {
            self.0.frozen.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.0.frozen.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

/// A model or layer: a tree of named parameters, buffers and child modules.
///
/// Implement [`Module::visit`] (or `#[derive(Module)]`, which writes it); every other
/// method is provided. Names are dotted paths, the ones PyTorch gives the same model
/// (`encoder.layers.0.weight`). A handle reachable under several names (a tied weight)
/// is listed once, under its first name.
///
/// ```
/// use stategrad_nn::{Module, Param, Buffer, Linear};
/// use stategrad_autograd::{Tensor, DType, Device};
///
/// #[derive(Module)]
/// struct Net {
///     fc: Linear,
///     scale: Param,
///     stats: Buffer,
///     cache: Tensor, // a plain tensor: not state
/// }
/// let net = Net {
///     fc: Linear::new(3, 2)?,
///     scale: Param::new(Tensor::ones(&[2], DType::F32, Device::Cpu)?),
///     stats: Buffer::new(Tensor::zeros(&[2], DType::F32, Device::Cpu)?),
///     cache: Tensor::zeros(&[5], DType::F32, Device::Cpu)?,
/// };
/// let names: Vec<String> = net.state_dict().keys().map(String::from).collect();
/// assert_eq!(names, ["scale", "stats", "fc.weight", "fc.bias"]);
/// assert_eq!(net.num_parameters(), 3 * 2 + 2 + 2);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub trait Module {
    /// Names this module's state to `v`: `v.param("weight", &self.weight)`,
    /// `v.buffer("running_mean", &self.running_mean)`, `v.module("fc", &self.fc)`, ...
    fn visit(&self, v: &mut dyn Visitor);

    /// Names this module's child modules to `v`, mutably (`v.module("fc", &mut self.fc)`):
    /// the same children, names and order as [`Module::visit`]. `#[derive(Module)]` writes
    /// it. The default reaches no child; that is never a silent skip: typed mutable walks
    /// ([`Module::for_each_module_mut`], [`Module::replace_modules`]) compare what they
    /// reached with [`Module::visit`] and fail naming the modules they could not reach.
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        let _ = v;
    }

    /// This module as `Any`, for typed access (`downcast_ref::<BatchNorm2d>()`).
    /// `#[derive(Module)]` writes `Some(self)`; wrappers forward to what they wrap; `None`
    /// (the default) makes the module invisible to typed walks.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// This module as mutable `Any` (see [`Module::as_any`]).
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        None
    }

    /// The [`crate::LayerSlot`] this module is, if it is one: the only place a submodule can
    /// be replaced by one of another type ([`Module::replace_modules`]).
    fn as_layer_slot(&mut self) -> Option<&mut crate::LayerSlot> {
        None
    }

    /// The module's type name (graph labels).
    fn type_name(&self) -> &'static str {
        short_type_name(std::any::type_name::<Self>())
    }

    /// The state graph: modules, parameters and buffers, edges named by attribute.
    fn state_graph(&self) -> StateGraph {
        StateGraph::build(self.type_name(), &|v| self.visit(v))
    }

    /// Every distinct parameter with its (first) dotted name, in registration order.
    fn named_parameters(&self) -> Vec<(String, Param)> {
        self.state_graph().named_parameters()
    }

    /// Every distinct parameter, in registration order (what an optimizer takes).
    fn parameters(&self) -> Vec<Param> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Every distinct buffer (persistent or not) with its (first) dotted name.
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        self.state_graph().named_buffers()
    }

    /// Every distinct buffer, persistent or not.
    fn buffers(&self) -> Vec<Buffer> {
        self.named_buffers().into_iter().map(|(_, b)| b).collect()
    }

    /// The dotted path and type name of every module in the tree, this one first (path `""`).
    fn named_modules(&self) -> Vec<(String, &'static str)> {
        self.state_graph().named_modules()
    }

    /// The parameter reachable under the dotted `path` (a shared handle). A miss is an
    /// [`stategrad_autograd::Error::Argument`] naming the closest name ("did you mean").
    fn get_parameter(&self, path: &str) -> Result<Param> {
        crate::access::get_parameter(self, path)
    }

    /// The buffer reachable under the dotted `path` (a shared handle), with "did you mean".
    fn get_buffer(&self, path: &str) -> Result<Buffer> {
        crate::access::get_buffer(self, path)
    }

    /// A copy of the `T` at the dotted `path` (`""` is this module). Its parameters,
    /// buffers and train/eval flag are the tree's own handles (a clone shares them), so
    /// `model.get_submodule::<BatchNorm2d>("layer1.bn")?.eval()` reaches the model. Fails
    /// with "did you mean" on a miss, or naming both types on a type mismatch.
    fn get_submodule<T: Module + Clone + 'static>(&self, path: &str) -> Result<T>
    where
        Self: Sized,
    {
        crate::access::get_submodule(self, path)
    }

    /// `f(&module)` for the module at the dotted `path`, whatever its type.
    fn with_submodule<R>(&self, path: &str, f: impl FnOnce(&dyn Module) -> R) -> Result<R>
    where
        Self: Sized,
    {
        crate::access::with_submodule(self, path, f)
    }

    /// `f(&mut T)` for the `T` at the dotted `path` (edit plain fields such as a momentum).
    fn with_submodule_mut<T: 'static, R>(&mut self, path: &str, f: impl FnOnce(&mut T) -> R) -> Result<R>
    where
        Self: Sized,
    {
        crate::access::with_submodule_mut(self, path, f)
    }

    /// `f(path, module)` for every module of the tree, children before their parent and
    /// this module last (PyTorch's `apply`: re-initialise weights by type with
    /// [`Module::as_any`]). Parameters and buffers are handles, so `f` can set them.
    fn apply(&self, mut f: impl FnMut(&str, &dyn Module))
    where
        Self: Sized,
    {
        crate::access::walk_post(self, &mut f)
    }

    /// `f(path, &T)` for every `T` in the tree, parents first; returns how many.
    fn for_each_module<T: 'static>(&self, mut f: impl FnMut(&str, &T)) -> usize
    where
        Self: Sized,
    {
        let mut n = 0;
        crate::access::walk(self, &mut |path, m| {
            if let Some(t) = crate::access::downcast::<T>(m) {
                n += 1;
                f(path, t)
            }
        });
        n
    }

    /// `f(path, &mut T)` for every `T` in the tree, parents first (re-initialise, inspect,
    /// edit plain fields); returns how many. Fails before calling `f` when a `T` of the tree
    /// cannot be reached mutably (behind a shared `Arc`), and stops at `f`'s first error.
    fn for_each_module_mut<T: 'static>(&mut self, mut f: impl FnMut(&str, &mut T) -> Result<()>) -> Result<usize>
    where
        Self: Sized,
    {
        crate::access::for_each_module_mut(self, &mut f)
    }

    /// Replaces every `T` of the tree by `f(path, &T)` (every `BatchNorm2d` by a
    /// `FrozenBatchNorm2d` carrying its statistics, by a `SyncBatchNorm`, ...), in place;
    /// returns how many. A `T` can only be replaced where it sits in a [`crate::LayerSlot`]
    /// (a [`crate::Sequential`] entry, a `LayerSlot` field): a `T` in a field of its own type
    /// is an [`stategrad_autograd::Error::State`] naming its path. All or nothing: nothing
    /// is replaced unless every `T` can be and every `f` succeeds. A replaced module is not
    /// searched further.
    fn replace_modules<T: 'static>(
        &mut self,
        mut f: impl FnMut(&str, &T) -> Result<Box<dyn crate::Layer>>,
    ) -> Result<usize>
    where
        Self: Sized,
    {
        crate::access::replace_modules(self, &mut f)
    }

    /// Parameters and persistent buffers by dotted name, in PyTorch's order (each module's
    /// parameters, then its buffers, then its children). Tensors are shared, not copied.
    fn state_dict(&self) -> StateDict {
        self.state_graph().state_dict()
    }

    /// Loads `sd` into this module's parameters and persistent buffers (moved to each
    /// handle's device). Strict: any missing or unexpected key, or any shape or dtype
    /// mismatch, fails with one [`stategrad_autograd::Error::Load`] carrying the report, and
    /// nothing is changed. Not strict: loads what matches and reports the rest. Module
    /// migrations ([`Module::upgrade_state`]) run first. See [`Module::load_state_dict_with`].
    fn load_state_dict(&self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        self.load_state_dict_with(sd, &LoadOptions::default().strict(strict))
    }

    /// Loads `sd` following `opts` (prefixes, casts, shape policy, hooks, materialisation
    /// of a model built with [`crate::deferred`]); every action is in the report.
    fn load_state_dict_with(&self, sd: &StateDict, opts: &LoadOptions) -> Result<LoadReport> {
        with_root(self, |m| crate::load::load_module(m, sd, &Default::default(), opts, "load_state_dict"))
    }

    /// The version of this module's own state layout (default 1). A module that changes
    /// the names or shapes of its state bumps it and upgrades older states in
    /// [`Module::upgrade_state`]; saves record it in the file's metadata.
    fn state_version(&self) -> u32 {
        1
    }

    /// Rewrites the incoming `state` for this module, whose keys start with `prefix` (`""`
    /// for the root, else `"path."`), before it is loaded: renames from older versions,
    /// keys of foreign layouts to drop. `from_version` is the version the file recorded
    /// for this module (1 when a stategrad file recorded none), `None` for a file without
    /// version metadata (PyTorch's). Returns what it changed, for the load report.
    fn upgrade_state(&self, prefix: &str, state: &mut StateDict, from_version: Option<u32>) -> Result<Vec<Migrated>> {
        let _ = (prefix, state, from_version);
        Ok(Vec::new())
    }

    /// Computes this module's own non-persistent buffers on `device` (with
    /// [`Buffer::materialize`]) when it was built with [`crate::deferred`]: no checkpoint
    /// holds them, so the module that owns one says how to rebuild it (a positional-encoding
    /// table, a precomputed matrix). Called after a load materialised the model; a
    /// non-persistent buffer left unmaterialised is then an error naming it.
    fn reset_non_persistent_buffers(&self, device: Device) -> Result<()> {
        let _ = device;
        Ok(())
    }

    /// Moves every parameter and buffer (persistent or not) to `device`, in place: handles
    /// held elsewhere see the moved data; tied weights stay tied. Nothing moves unless all do.
    fn to_device(&self, device: Device) -> Result<()> {
        self.state_graph().map_state(|t| t.to_device(device))
    }

    /// Converts every floating-point parameter and buffer to `dtype`, in place (integer
    /// buffers such as `num_batches_tracked` are left alone, as in PyTorch).
    fn to_dtype(&self, dtype: DType) -> Result<()> {
        if !dtype.is_float() {
            return Err(stategrad_autograd::Error::DType {
                op: "Module::to_dtype",
                expected: "a float dtype",
                got: dtype,
            });
        }
        self.state_graph().map_state(|t| if t.dtype().is_float() { t.to_dtype(dtype) } else { Ok(t.clone()) })
    }

    /// Sets training (`true`) or evaluation (`false`) mode on every module in the tree.
    fn set_training(&self, training: bool) {
        self.state_graph().training_flags().iter().for_each(|f| f.set(training));
    }

    /// Training mode everywhere (batch statistics, active dropout).
    fn train(&self) {
        self.set_training(true)
    }

    /// Evaluation mode everywhere (running statistics, no dropout).
    fn eval(&self) {
        self.set_training(false)
    }

    /// The train/eval mode of the first flag in the tree (`true` when no layer holds one);
    /// a frozen layer keeps its mode ([`Training::mode`]).
    fn is_training(&self) -> bool {
        self.state_graph().training_flags().first().is_none_or(Training::mode)
    }

    /// Freezes the module: every parameter stops requiring grad *and* every stateful layer
    /// stops updating (BatchNorm uses its running statistics, Dropout is the identity),
    /// whatever the train/eval mode, which is kept. Freezes nest (a count per handle);
    /// [`Module::unfreeze`] undoes one. Unlike [`Module::requires_grad`], nothing is
    /// overwritten, so unfreezing restores exactly the previous flags and modes.
    fn freeze(&self) {
        let g = self.state_graph();
        for p in g.named_parameters() {
            p.1.add_freeze(1);
        }
        for f in g.training_flags() {
            f.add_freeze(true);
        }
    }

    /// Undoes one [`Module::freeze`]: each parameter requires grad again exactly when it did
    /// before, each layer is back in its own train/eval mode. [`stategrad_autograd::Error::State`]
    /// naming the first handle that is not frozen, and nothing changed, when the module
    /// was not frozen.
    fn unfreeze(&self) -> Result<()> {
        let g = self.state_graph();
        let params = g.named_parameters();
        if let Some((name, _)) = params.iter().find(|(_, p)| p.freeze_count() == 0) {
            return Err(stategrad_autograd::Error::State {
                op: "Module::unfreeze",
                msg: format!("parameter `{name}` is not frozen (freeze() first)"),
            });
        }
        if g.training_flags().iter().any(|f| f.freeze_count() == 0) {
            return Err(stategrad_autograd::Error::State {
                op: "Module::unfreeze",
                msg: "a train/eval flag in the module is not frozen (freeze() first)".into(),
            });
        }
        for (_, p) in params {
            p.add_freeze(-1);
        }
        for f in g.training_flags() {
            f.add_freeze(false);
        }
        Ok(())
    }

    /// Freezes (`false`) or unfreezes (`true`) every parameter.
    fn requires_grad(&self, requires: bool) {
        self.parameters().iter().for_each(|p| {
            p.requires_grad(requires);
        });
    }

    /// Number of scalar parameters (each distinct parameter counted once).
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Param::numel).sum()
    }

    /// The device of the first parameter or buffer, `None` for a module without state.
    fn device(&self) -> Option<Device> {
        let g = self.state_graph();
        g.named_parameters()
            .first()
            .map(|(_, p)| p.device())
            .or_else(|| g.named_buffers().first().map(|(_, b)| b.device()))
    }

    /// Writes the `state_dict` to a safetensors file (a `&str`, `String`, `Path`, ...),
    /// atomically, streaming each tensor; module state versions and tied weights (saved
    /// once) are recorded in the metadata. (Not on `dyn Module`; a `Box<dyn Module>` has it.)
    fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()>
    where
        Self: Sized,
    {
        self.save_safetensors_with(path, &SaveOptions::default())
    }

    /// [`Module::save_safetensors`] with extra metadata and save hooks.
    fn save_safetensors_with(&self, path: impl AsRef<Path>, opts: &SaveOptions) -> Result<()>
    where
        Self: Sized,
    {
        with_root(self, |m| crate::load::save_module(m, path.as_ref(), opts))
    }

    /// Reads a safetensors file (memory-mapped) and loads it ([`Module::load_state_dict`]).
    fn load_safetensors(&self, path: impl AsRef<Path>, strict: bool) -> Result<LoadReport>
    where
        Self: Sized,
    {
        self.load_safetensors_with(path, &LoadOptions::default().strict(strict))
    }

    /// Reads a safetensors file and loads it following `opts`, with the file's metadata
    /// (state versions, ties). Zero-copy on the CPU when the dtypes match (see
    /// [`crate::checkpoint`]); materialises a deferred model on `opts.device`.
    fn load_safetensors_with(&self, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<LoadReport>
    where
        Self: Sized,
    {
        let (sd, meta) = crate::checkpoint::read_safetensors(path.as_ref(), opts.mmap)?;
        with_root(self, |m| crate::load::load_module(m, &sd, &meta, opts, "load_safetensors"))
    }
}

/// `m` as a `&dyn Module` for the loaders, through one non-generic wrapper (a generic one
/// would instantiate the provided methods of wrappers of wrappers without end).
fn with_root<M: Module + ?Sized, R>(m: &M, f: impl FnOnce(&dyn Module) -> R) -> R {
    let root = Root {
        visit: &|v| m.visit(v),
        type_name: m.type_name(),
        version: m.state_version(),
        upgrade: &|p, s, from| m.upgrade_state(p, s, from),
        reset: &|d| m.reset_non_persistent_buffers(d),
    };
    f(&root)
}

type UpgradeFn<'a> = &'a dyn Fn(&str, &mut StateDict, Option<u32>) -> Result<Vec<Migrated>>;

struct Root<'a> {
    visit: &'a dyn Fn(&mut dyn Visitor),
    type_name: &'static str,
    version: u32,
    upgrade: UpgradeFn<'a>,
    reset: &'a dyn Fn(Device) -> Result<()>,
}

impl Module for Root<'_> {
    fn visit(&self, v: &mut dyn Visitor) {
        (self.visit)(v)
    }
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn state_version(&self) -> u32 {
        self.version
    }
    fn upgrade_state(&self, prefix: &str, state: &mut StateDict, from: Option<u32>) -> Result<Vec<Migrated>> {
        (self.upgrade)(prefix, state, from)
    }
    fn reset_non_persistent_buffers(&self, device: Device) -> Result<()> {
        (self.reset)(device)
    }
}

fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// What a forward pass is for most layers: one tensor in, one tensor out. Sequential
/// containers hold boxed `Forward + Module` layers.
pub trait Forward {
    /// Applies the layer.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// A boxed module is a module (`Box<dyn Layer>`, `Box<Linear>`, ...): it forwards to the box's
/// contents, so a `Box` field of a derived module is a child like the unboxed one.
impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, v: &mut dyn Visitor) {
        (**self).visit(v)
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        (**self).visit_mut(v)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        (**self).as_any()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        (**self).as_any_mut()
    }
    fn as_layer_slot(&mut self) -> Option<&mut crate::LayerSlot> {
        (**self).as_layer_slot()
    }
    fn type_name(&self) -> &'static str {
        (**self).type_name()
    }
    fn state_version(&self) -> u32 {
        (**self).state_version()
    }
    fn upgrade_state(&self, prefix: &str, state: &mut StateDict, from: Option<u32>) -> Result<Vec<Migrated>> {
        (**self).upgrade_state(prefix, state, from)
    }
    fn reset_non_persistent_buffers(&self, device: Device) -> Result<()> {
        (**self).reset_non_persistent_buffers(device)
    }
}

/// Support for the code `#[derive(Module)]` and [`crate::VisitState`] write (not for direct
/// use).
#[doc(hidden)]
pub mod derive_support {
    use std::any::Any;

    use super::{Module, Visitor, VisitorMut};

    /// What `#[derive(Module)]` calls for one field: both walks of its type, from one
    /// checking function per field (so a missing `VisitState` is reported once).
    pub struct FieldFns<T: ?Sized> {
        /// `VisitState::visit_state`.
        pub visit: fn(&T, &str, &mut dyn Visitor),
        /// `VisitState::visit_state_mut`.
        pub visit_mut: fn(&mut T, &str, &mut dyn VisitorMut),
    }

    impl<T: crate::VisitState + ?Sized> FieldFns<T> {
        /// The walks of `T`.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            FieldFns { visit: T::visit_state, visit_mut: T::visit_state_mut }
        }
    }
    use crate::StateDict;
    use stategrad_autograd::{Device, Migrated, Result};

    /// A module whose `visit` is a closure (list and map fields: entries by index or key).
    pub struct FnModule<F: Fn(&mut dyn Visitor)>(pub F);

    impl<F: Fn(&mut dyn Visitor)> Module for FnModule<F> {
        fn visit(&self, v: &mut dyn Visitor) {
            (self.0)(v)
        }
        fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
        fn type_name(&self) -> &'static str {
            "ModuleList"
        }
    }

    /// A `&T` (maybe unsized) seen as a `&dyn Module`.
    pub struct AsDynModule<'a, T: ?Sized>(pub &'a T);

    impl<T: Module + ?Sized> Module for AsDynModule<'_, T> {
        fn visit(&self, v: &mut dyn Visitor) {
            self.0.visit(v)
        }
        fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
        fn as_any(&self) -> Option<&dyn Any> {
            self.0.as_any()
        }
        fn type_name(&self) -> &'static str {
            self.0.type_name()
        }
        fn state_version(&self) -> u32 {
            self.0.state_version()
        }
        fn upgrade_state(&self, prefix: &str, state: &mut StateDict, from: Option<u32>) -> Result<Vec<Migrated>> {
            self.0.upgrade_state(prefix, state, from)
        }
        fn reset_non_persistent_buffers(&self, device: Device) -> Result<()> {
            self.0.reset_non_persistent_buffers(device)
        }
    }

    /// A `&mut T` (maybe unsized) seen as a `&mut dyn Module`.
    pub struct AsDynModuleMut<'a, T: ?Sized>(pub &'a mut T);

    impl<T: Module + ?Sized> Module for AsDynModuleMut<'_, T> {
        fn visit(&self, v: &mut dyn Visitor) {
            self.0.visit(v)
        }
        fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
            self.0.visit_mut(v)
        }
        fn as_any(&self) -> Option<&dyn Any> {
            self.0.as_any()
        }
        fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
            self.0.as_any_mut()
        }
        fn as_layer_slot(&mut self) -> Option<&mut crate::LayerSlot> {
            self.0.as_layer_slot()
        }
        fn type_name(&self) -> &'static str {
            self.0.type_name()
        }
    }

    /// The entries of a container (a list, a map, a tuple) as a child module: visits each
    /// entry by index or key, immutably and mutably.
    pub struct Entries<'a, C: ?Sized>(pub &'a mut C);

    /// A container whose entries are state (see [`Entries`]).
    pub trait VisitEntries {
        /// Visits each entry under its index or key.
        fn visit_entries(&self, v: &mut dyn Visitor);
        /// Visits each entry mutably, with the same names.
        fn visit_entries_mut(&mut self, v: &mut dyn VisitorMut);
    }

    impl<C: VisitEntries + ?Sized> Module for Entries<'_, C> {
        fn visit(&self, v: &mut dyn Visitor) {
            self.0.visit_entries(v)
        }
        fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
            self.0.visit_entries_mut(v)
        }
        fn type_name(&self) -> &'static str {
            "ModuleList"
        }
    }
}
