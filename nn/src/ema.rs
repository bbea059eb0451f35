//! `Ema`: an exponential moving average of a model, kept as *buffers* of its own module.
//!
//! Each parameter and buffer of the model has a shadow buffer under the same dotted name
//! (persistent exactly when the model's entry is saved), so the EMA is saved, loaded and
//! moved like any module and never trained. `update` runs under `no_grad` and writes the
//! shadows in place:
//!
//! - parameters: `s <- d s + (1 - d) p`;
//! - float buffers: averaged the same way, or copied ([`FloatBuffers`]);
//! - integer buffers (`num_batches_tracked`): copied;
//!
//! with `d` the decay, optionally warmed up as TensorFlow's `ExponentialMovingAverage` with
//! `num_updates` (and timm) do: `d_n = min(decay, (1 + n) / (10 + n))` for the `n`-th update
//! (`n` from 0), so early, poorly trained weights are forgotten quickly.
use std::collections::HashMap;

use stategrad_autograd::{no_grad, Error, Result, Tensor};

use crate::{Buffer, Module, StateNode, Visitor, VisitorMut};

/// What the EMA does with the model's floating-point buffers (integer ones are copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FloatBuffers {
    /// Averaged like parameters (BatchNorm statistics smoothed too).
    Average,
    /// Copied from the model at each update (timm's default).
    #[default]
    Copy,
}

/// Warm-up of the decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Warmup {
    /// The decay as given, from the first update.
    #[default]
    None,
    /// `min(decay, (1 + n) / (10 + n))` for the `n`-th update, `n` from 0.
    NumUpdates,
}

/// Settings of an [`Ema`].
#[derive(Clone, Copy, Debug)]
pub struct EmaConfig {
    /// The decay `d` in `[0, 1]` (0.999, 0.9999, ...).
    pub decay: f64,
    /// Float buffers averaged or copied.
    pub float_buffers: FloatBuffers,
    /// Warm-up of the decay.
    pub warmup: Warmup,
}

impl EmaConfig {
    /// `decay`, float buffers copied, no warm-up.
    pub fn new(decay: f64) -> Self {
        EmaConfig { decay, float_buffers: FloatBuffers::Copy, warmup: Warmup::None }
    }

    /// Sets the float-buffer policy.
    pub fn float_buffers(mut self, policy: FloatBuffers) -> Self {
        self.float_buffers = policy;
        self
    }

    /// Sets the warm-up.
    pub fn warmup(mut self, warmup: Warmup) -> Self {
        self.warmup = warmup;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Param,
    Buffer,
}

/// One module of the shadow tree: its own shadows, then its children (the model's order).
#[derive(Default)]
struct Node {
    own: Vec<(String, Buffer)>,
    children: Vec<(String, Node)>,
}

impl Node {
    fn insert(&mut self, path: &str, b: Buffer) {
        match path.split_once('.') {
            None => self.own.push((path.to_string(), b)),
            Some((head, rest)) => {
                let i = match self.children.iter().position(|(n, _)| n == head) {
                    Some(i) => i,
                    None => {
                        self.children.push((head.to_string(), Node::default()));
                        self.children.len() - 1
                    }
                };
                self.children[i].1.insert(rest, b)
            }
        }
    }

    fn visit(&self, v: &mut dyn Visitor) {
        for (name, b) in &self.own {
            v.buffer(name, b);
        }
        for (name, child) in &self.children {
            v.module(name, &ShadowModule(child));
        }
    }
}

struct ShadowModule<'a>(&'a Node);

impl Module for ShadowModule<'_> {
    fn visit(&self, v: &mut dyn Visitor) {
        self.0.visit(v)
    }
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
    fn type_name(&self) -> &'static str {
        "EmaShadow"
    }
}

/// An exponential moving average of a model's parameters and buffers, itself a module
/// whose state is only buffers, under the model's names.
///
/// ```
/// use stategrad_nn::{Ema, EmaConfig, Linear, Module};
/// let model = Linear::new(4, 2)?;
/// let mut ema = Ema::new(&model, EmaConfig::new(0.999))?;
/// // ... after each optimizer step:
/// ema.update(&model)?;
/// assert!(ema.parameters().is_empty());
/// assert_eq!(ema.state_dict().len(), model.state_dict().len());
/// ema.copy_to(&model)?; // evaluate with the averaged weights
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct Ema {
    root: Node,
    /// Model name -> (kind, shadow), in the model's order.
    shadows: Vec<(String, Kind, Buffer)>,
    config: EmaConfig,
    updates: u64,
}

impl Ema {
    /// A shadow copy of every parameter and buffer of `model` (shared data: tensors are
    /// immutable), with `config`. The decay must lie in `[0, 1]`.
    pub fn new(model: &(impl Module + ?Sized), config: EmaConfig) -> Result<Ema> {
        if !(0.0..=1.0).contains(&config.decay) {
            return Err(Error::argument("Ema::new", format!("decay {} outside [0, 1]", config.decay)));
        }
        let mut root = Node::default();
        let mut shadows = Vec::new();
        // In the state graph's order (depth first, each module's parameters before its
        // buffers), so the shadow tree lists modules, and `state_dict` keys, as the model does.
        let g = model.state_graph();
        for node in g.graph().node_weights() {
            let (name, kind, b) = match node {
                StateNode::Param { path, param } => (path, Kind::Param, Buffer::new(param.data())),
                StateNode::Buffer { path, buffer } if buffer.is_persistent() => {
                    (path, Kind::Buffer, Buffer::new(buffer.tensor()))
                }
                StateNode::Buffer { path, buffer } => (path, Kind::Buffer, Buffer::non_persistent(buffer.tensor())),
                StateNode::Module { .. } => continue,
            };
            root.insert(name, b.clone());
            shadows.push((name.clone(), kind, b));
        }
        Ok(Ema { root, shadows, config, updates: 0 })
    }

    /// The settings.
    pub fn config(&self) -> EmaConfig {
        self.config
    }

    /// Number of updates so far (drives the warm-up).
    pub fn num_updates(&self) -> u64 {
        self.updates
    }

    /// Sets the update count (when resuming, with the warm-up).
    pub fn set_num_updates(&mut self, n: u64) {
        self.updates = n;
    }

    /// The decay the next update uses.
    pub fn current_decay(&self) -> f64 {
        match self.config.warmup {
            Warmup::None => self.config.decay,
            Warmup::NumUpdates => {
                let n = self.updates as f64;
                self.config.decay.min((1.0 + n) / (10.0 + n))
            }
        }
    }

    /// The shadow of the model's entry `name`.
    pub fn shadow(&self, name: &str) -> Option<&Buffer> {
        self.shadows.iter().find(|(n, _, _)| n == name).map(|(_, _, b)| b)
    }

    fn entries_of(&self, op: &'static str, model: &(impl Module + ?Sized)) -> Result<Vec<(Tensor, Kind, Buffer)>> {
        let mut by_name: HashMap<String, Tensor> =
            model.named_parameters().into_iter().map(|(n, p)| (n, p.data())).collect();
        by_name.extend(model.named_buffers().into_iter().map(|(n, b)| (n, b.tensor())));
        if by_name.len() != self.shadows.len() {
            return Err(Error::State {
                op,
                msg: format!(
                    "the model has {} parameters and buffers, the EMA {} (not the model it was made from)",
                    by_name.len(),
                    self.shadows.len()
                ),
            });
        }
        self.shadows
            .iter()
            .map(|(name, kind, b)| {
                let t = by_name.remove(name).ok_or_else(|| Error::State {
                    op,
                    msg: format!("the model has no parameter or buffer `{name}` (the EMA has)"),
                })?;
                if t.shape() != b.shape().as_slice() || t.dtype() != b.dtype() || t.device() != b.device() {
                    return Err(Error::State {
                        op,
                        msg: format!(
                            "`{name}`: the model holds a {:?} {} tensor on {}, the EMA a {:?} {} on {}",
                            t.shape(),
                            t.dtype(),
                            t.device(),
                            b.shape(),
                            b.dtype(),
                            b.device()
                        ),
                    });
                }
                Ok((t, *kind, b.clone()))
            })
            .collect()
    }

    /// Moves every shadow towards `model` (see the module docs), under `no_grad`, in place.
    /// Checks first that `model` has the same names, shapes, dtypes and devices; nothing is
    /// written otherwise.
    pub fn update(&mut self, model: &(impl Module + ?Sized)) -> Result<()> {
        let entries = self.entries_of("Ema::update", model)?;
        let _guard = no_grad();
        let d = self.current_decay();
        let mut staged = Vec::with_capacity(entries.len());
        for (t, kind, b) in entries {
            let average =
                t.dtype().is_float() && (kind == Kind::Param || self.config.float_buffers == FloatBuffers::Average);
            let new = if average { b.tensor().mul_scalar(d)?.add(&t.mul_scalar(1.0 - d)?)? } else { t };
            staged.push((b, new));
        }
        for (b, new) in staged {
            b.set(new)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// Writes the shadows into `model`'s parameters and buffers (evaluate with the average).
    pub fn copy_to(&self, model: &(impl Module + ?Sized)) -> Result<()> {
        let _ = self.entries_of("Ema::copy_to", model)?;
        let params: HashMap<String, crate::Param> = model.named_parameters().into_iter().collect();
        let buffers: HashMap<String, Buffer> = model.named_buffers().into_iter().collect();
        for (name, kind, shadow) in &self.shadows {
            match kind {
                Kind::Param => params.get(name).map(|p| p.set(shadow.tensor())),
                Kind::Buffer => buffers.get(name).map(|b| b.set(shadow.tensor())),
            }
            .transpose()?;
        }
        Ok(())
    }
}

impl Module for Ema {
    fn visit(&self, v: &mut dyn Visitor) {
        self.root.visit(v)
    }
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
}
