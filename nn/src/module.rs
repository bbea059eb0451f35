//! The `Module` trait: one required method, [`Module::visit`], that names the module's
//! state to a [`Visitor`]; everything else (listing, `state_dict`, loading, moving,
//! train/eval, freezing, the state graph) is provided once, on top of it.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stategrad_autograd::{DType, Device, Result, Tensor};

use crate::state_dict::{load_into, StateDict};
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

/// A shared train/eval flag (train by default). Layers that behave differently in
/// training (BatchNorm, Dropout) hold one and visit it, so [`Module::train`] and
/// [`Module::eval`] reach them from any ancestor.
#[derive(Clone, Debug)]
pub struct Training(Arc<AtomicBool>);

impl Default for Training {
    fn default() -> Self {
        Training(Arc::new(AtomicBool::new(true)))
    }
}

impl Training {
    /// A flag in training mode.
    pub fn new() -> Self {
        Self::default()
    }

    /// True in training mode.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets training (`true`) or evaluation (`false`) mode.
    pub fn set(&self, training: bool) {
        self.0.store(training, Ordering::Relaxed)
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

    /// Parameters and persistent buffers by dotted name, in PyTorch's order (each module's
    /// parameters, then its buffers, then its children). Tensors are shared, not copied.
    fn state_dict(&self) -> StateDict {
        self.state_graph().state_dict()
    }

    /// Loads `sd` into this module's parameters and persistent buffers (moved to each
    /// handle's device). Strict: any missing or unexpected key, or any shape or dtype
    /// mismatch, fails with one [`stategrad_autograd::Error::Load`] carrying the report, and
    /// nothing is changed. Not strict: loads what matches and reports the rest.
    fn load_state_dict(&self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        load_into(&self.state_graph(), sd, strict)
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

    /// The mode of the first flag in the tree (`true` when no layer holds one).
    fn is_training(&self) -> bool {
        self.state_graph().training_flags().first().is_none_or(Training::get)
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

    /// Writes the `state_dict` to a safetensors file, atomically.
    fn save_safetensors(&self, path: &Path) -> Result<()> {
        crate::checkpoint::save_safetensors(&self.state_dict(), path)
    }

    /// Reads a safetensors file and loads it ([`Module::load_state_dict`]).
    fn load_safetensors(&self, path: &Path, strict: bool) -> Result<LoadReport> {
        self.load_state_dict(&crate::checkpoint::load_safetensors(path)?, strict)
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
    fn type_name(&self) -> &'static str {
        (**self).type_name()
    }
}

/// Support for the code `#[derive(Module)]` and [`crate::VisitState`] write (not for direct
/// use).
#[doc(hidden)]
pub mod derive_support {
    use super::{Module, Visitor};

    /// A module whose `visit` is a closure (list and map fields: entries by index or key).
    pub struct FnModule<F: Fn(&mut dyn Visitor)>(pub F);

    impl<F: Fn(&mut dyn Visitor)> Module for FnModule<F> {
        fn visit(&self, v: &mut dyn Visitor) {
            (self.0)(v)
        }
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
        fn type_name(&self) -> &'static str {
            self.0.type_name()
        }
    }
}
