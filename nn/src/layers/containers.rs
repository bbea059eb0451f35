//! Containers: `Sequential` (boxed layers applied in order) and `ModuleList` (a typed list);
//! entries are named by index (`0.weight`, `layers.1.bias`), as in PyTorch. Also the
//! parameter-free activation layers `Relu`, `Gelu` and `Flatten` for use in `Sequential`.
use std::ops::Deref;

use stategrad_autograd::{Result, Tensor};

use crate::{Forward, Module, Visitor};

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
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style).
    pub fn push(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
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
            v.module(&i.to_string(), layer.as_module());
        }
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

impl<M: Module> ModuleList<M> {
    /// An empty list.
    pub fn new() -> Self {
        ModuleList { items: Vec::new() }
    }

    /// Appends a module.
    pub fn push(&mut self, m: M) {
        self.items.push(m)
    }
}

impl<M: Module> FromIterator<M> for ModuleList<M> {
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

impl<M: Module> Module for ModuleList<M> {
    fn visit(&self, v: &mut dyn Visitor) {
        for (i, m) in self.items.iter().enumerate() {
            v.module(&i.to_string(), m);
        }
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
