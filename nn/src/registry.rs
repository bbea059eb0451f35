//! `ModuleDict`: state registered by name at run time (`register_parameter`,
//! `register_buffer`, `register_module`), for names built in loops. It visits its entries
//! in the order they were registered — the same calls a derived `visit` makes, so both
//! ways give the same state graph, names and `state_dict`.
use stategrad_autograd::{Error, Result, Tensor};

use std::any::Any;

use crate::module::{Module, Training, Visitor, VisitorMut};
use crate::{Buffer, Param};

enum Entry {
    Param(Param),
    Buffer(Buffer),
    Module(Box<dyn Module + Send + Sync>),
}

/// A module whose state is registered by name at run time.
///
/// ```
/// use stategrad_nn::{Module, ModuleDict, Param, Linear};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let mut m = ModuleDict::new();
/// for i in 0..2 {
///     m.register_parameter(&format!("w{i}"), Param::new(Tensor::zeros(&[2], DType::F32, Device::Cpu)?))?;
/// }
/// m.register_buffer("scratch", Tensor::zeros(&[4], DType::F32, Device::Cpu)?, false)?;
/// m.register_module("fc", Linear::new(2, 2)?)?;
/// assert!(m.register_parameter("w0", Param::new(Tensor::zeros(&[1], DType::F32, Device::Cpu)?)).is_err());
/// let keys: Vec<String> = m.state_dict().keys().map(String::from).collect();
/// assert_eq!(keys, ["w0", "w1", "fc.weight", "fc.bias"]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Default)]
pub struct ModuleDict {
    entries: Vec<(String, Entry)>,
    training: Option<Training>,
}

impl ModuleDict {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_name(&self, op: &'static str, name: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::State { op, msg });
        if name.is_empty() {
            return bad("a name cannot be empty".into());
        }
        if name.contains('.') {
            return bad(format!("name {name:?} contains '.' (dots separate path segments)"));
        }
        if self.entries.iter().any(|(n, _)| n == name) {
            return bad(format!("name {name:?} is already registered"));
        }
        Ok(())
    }

    /// Registers a parameter (a clone of a handle ties it).
    pub fn register_parameter(&mut self, name: &str, param: Param) -> Result<()> {
        self.check_name("register_parameter", name)?;
        self.entries.push((name.to_string(), Entry::Param(param)));
        Ok(())
    }

    /// Registers `t` as a buffer (persistent: saved in the `state_dict`) and returns its handle.
    pub fn register_buffer(&mut self, name: &str, t: Tensor, persistent: bool) -> Result<Buffer> {
        let b = if persistent { Buffer::new(t) } else { Buffer::non_persistent(t) };
        self.register_buffer_handle(name, b.clone())?;
        Ok(b)
    }

    /// Registers an existing buffer handle (shared with its other owners).
    pub fn register_buffer_handle(&mut self, name: &str, buffer: Buffer) -> Result<()> {
        self.check_name("register_buffer", name)?;
        self.entries.push((name.to_string(), Entry::Buffer(buffer)));
        Ok(())
    }

    /// Registers a child module.
    pub fn register_module(&mut self, name: &str, module: impl Module + Send + Sync + 'static) -> Result<()> {
        self.check_name("register_module", name)?;
        self.entries.push((name.to_string(), Entry::Module(Box::new(module))));
        Ok(())
    }

    /// Gives this registry its own train/eval flag (visited like a layer's).
    pub fn set_training_flag(&mut self, flag: Training) {
        self.training = Some(flag);
    }

    /// The parameter registered as `name`.
    pub fn get_parameter(&self, name: &str) -> Option<&Param> {
        self.entries.iter().find_map(|(n, e)| match e {
            Entry::Param(p) if n == name => Some(p),
            _ => None,
        })
    }

    /// The buffer registered as `name`.
    pub fn get_buffer(&self, name: &str) -> Option<&Buffer> {
        self.entries.iter().find_map(|(n, e)| match e {
            Entry::Buffer(b) if n == name => Some(b),
            _ => None,
        })
    }

    /// The module registered as `name`.
    pub fn get_module(&self, name: &str) -> Option<&(dyn Module + Send + Sync)> {
        self.entries.iter().find_map(|(n, e)| match e {
            Entry::Module(m) if n == name => Some(m.as_ref()),
            _ => None,
        })
    }

    /// Number of registered entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Module for ModuleDict {
    fn visit(&self, v: &mut dyn Visitor) {
        if let Some(flag) = &self.training {
            v.training(flag);
        }
        for (name, entry) in &self.entries {
            match entry {
                Entry::Param(p) => v.param(name, p),
                Entry::Buffer(b) => v.buffer(name, b),
                Entry::Module(m) => v.module(name, m.as_ref()),
            }
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        for (name, entry) in &mut self.entries {
            if let Entry::Module(m) = entry {
                v.module(name, m.as_mut());
            }
        }
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}
