//! Containers: `Sequential` (boxed layers applied in order) and `ModuleList` (a typed list);
//! entries are named by index (`0.weight`, `layers.1.bias`), as in PyTorch. Also the
//! parameter-free activation layers `Relu`, `Gelu` and `Flatten` for use in `Sequential`.
use std::any::Any;
use std::fmt;
use std::ops::Deref;

use stategrad_autograd::{Result, Tensor};

use crate::{Forward, Module, Visitor, VisitorMut};

/// A module that is also a one-tensor layer (what [`Sequential`] holds).
pub trait Layer: Module + Forward + Send + Sync {
    /// This layer as a module.
    fn as_module(&self) -> &dyn Module;
}

impl<T: Module + Forward + Send + Sync> Layer for T {
    fn as_module(&self) -> &dyn Module {
        self
    }
}

/// A field that holds any layer and can be replaced in place by one of another type: the
/// slot [`Module::replace_modules`] writes into (every `BatchNorm2d` held in a slot becomes a
/// `FrozenBatchNorm2d`, a `SyncBatchNorm`, ...). A statically typed field (`bn: BatchNorm2d`)
/// cannot hold another type; declare it `LayerSlot` where replacement is wanted.
/// [`Sequential`] holds its layers in slots.
///
/// The slot is transparent: it adds no name to the state, its type name and typed access
/// are those of the layer it holds.
///
/// ```
/// use stategrad_nn::{BatchNorm2d, LayerSlot, Module};
/// let slot = LayerSlot::new(BatchNorm2d::new(3)?);
/// assert!(slot.get::<BatchNorm2d>().is_some());
/// assert_eq!(slot.type_name(), "BatchNorm");
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct LayerSlot(Box<dyn Layer>);

impl LayerSlot {
    /// A slot holding `layer`.
    pub fn new(layer: impl Layer + 'static) -> Self {
        LayerSlot(Box::new(layer))
    }

    /// The layer, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().and_then(|a| a.downcast_ref())
    }

    /// The layer, mutably, if it is a `T`.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.0.as_any_mut().and_then(|a| a.downcast_mut())
    }

    /// Puts `layer` in the slot and returns the layer it held.
    pub fn replace(&mut self, layer: Box<dyn Layer>) -> Box<dyn Layer> {
        std::mem::replace(&mut self.0, layer)
    }
}

impl From<Box<dyn Layer>> for LayerSlot {
    fn from(layer: Box<dyn Layer>) -> Self {
        LayerSlot(layer)
    }
}

impl Deref for LayerSlot {
    type Target = dyn Layer + 'static;
    fn deref(&self) -> &(dyn Layer + 'static) {
        &*self.0
    }
}

impl fmt::Debug for LayerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayerSlot({})", self.0.type_name())
    }
}

impl Module for LayerSlot {
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
    fn as_layer_slot(&mut self) -> Option<&mut LayerSlot> {
        Some(self)
    }
    fn type_name(&self) -> &'static str {
        self.0.type_name()
    }
}

impl Forward for LayerSlot {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
}

/// Layers applied one after another.
///
/// ```
/// use stategrad_nn::{Forward, Linear, Module, Relu, Sequential};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let net = Sequential::new().push(Linear::new(4, 8)?).push(Relu).push(Linear::new(8, 2)?);
/// let keys: Vec<_> = net.state_dict().keys().map(String::from).collect();
/// assert_eq!(keys, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// assert_eq!(net.forward(&Tensor::ones(&[3, 4], DType::F32, Device::Cpu)?)?.shape(), &[3, 2]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<LayerSlot>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style).
    pub fn push(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(LayerSlot::new(layer));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn visit(&self, v: &mut dyn Visitor) {
        for (i, layer) in self.layers.iter().enumerate() {
            v.module(&i.to_string(), layer);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            v.module(&i.to_string(), layer);
        }
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

impl Forward for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.iter().try_fold(x.clone(), |x, layer| layer.forward(&x))
    }
}

/// A list of modules of one type, named by index (a `Vec<M>` field of a derived module
/// gives the same names).
#[derive(Clone, Debug, Default)]
pub struct ModuleList<M> {
    items: Vec<M>,
}

impl<M: Module + 'static> ModuleList<M> {
    /// An empty list.
    pub fn new() -> Self {
        ModuleList { items: Vec::new() }
    }

    /// Appends a module.
    pub fn push(&mut self, m: M) {
        self.items.push(m)
    }
}

impl<M: Module + 'static> FromIterator<M> for ModuleList<M> {
    fn from_iter<I: IntoIterator<Item = M>>(iter: I) -> Self {
        ModuleList { items: iter.into_iter().collect() }
    }
}

impl<M> Deref for ModuleList<M> {
    type Target = [M];
    fn deref(&self) -> &[M] {
        &self.items
    }
}

impl<M: Module + 'static> Module for ModuleList<M> {
    fn visit(&self, v: &mut dyn Visitor) {
        for (i, m) in self.items.iter().enumerate() {
            v.module(&i.to_string(), m);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        for (i, m) in self.items.iter_mut().enumerate() {
            v.module(&i.to_string(), m);
        }
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

/// `relu(x)` as a layer (no state).
#[derive(Module, Clone, Copy, Debug, Default)]
pub struct Relu;

impl Forward for Relu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()
    }
}

/// Exact (erf) `gelu(x)` as a layer (no state).
#[derive(Module, Clone, Copy, Debug, Default)]
pub struct Gelu;

impl Forward for Gelu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.gelu()
    }
}

/// Flattens every dimension after the first (no state).
#[derive(Module, Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Forward for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.flatten(1, -1)
    }
}
