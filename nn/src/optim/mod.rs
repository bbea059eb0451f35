//! Optimizers over `Module::parameters()`: [`Sgd`] (momentum, Nesterov, weight decay),
//! [`Adam`] and [`AdamW`], with parameter groups (each with its own learning rate and
//! weight decay) and a serde-serializable [`OptimizerState`] for resuming a run exactly.
//!
//! There is no `zero_grad`: `loss.backward()` returns fresh [`Grads`] each time, and
//! `step(&grads)` reads them. A parameter that is frozen (`requires_grad(false)`) or has
//! no gradient in `grads` is skipped entirely — weight decay included — and buffers are
//! never given to an optimizer.
//!
//! Updates are **fused and in place** by default: one backend kernel per parameter
//! ([`Tensor::optim_step_`], one launch on a GPU) reads the gradient and rewrites the
//! parameter and its state buffers where they lie, with copy-on-write when anything else
//! still shares one of them (a view, a tensor saved on the tape, a held `param_slots`
//! snapshot), so no other handle ever sees a value change. `fused(false)` on an optimizer
//! selects the tensor-op composition instead (each step a few fresh tensors through
//! `Param::set`): the reference the fused kernels are tested against, and the path for
//! half-precision parameters, which the kernels do not take.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stategrad_autograd::{
    no_grad, DType, Device, Error, Grads, LoadReport, Mismatch, OptimStep, Result, Tensor, UnmatchedKey,
};

use crate::{Module, Param};
use stategrad_autograd::SerTensor;

mod adam;
mod sgd;

pub use adam::{Adam, AdamConfig, AdamW};
pub use sgd::{Sgd, SgdConfig};

/// An optimizer: updates its parameters from one backward pass's gradients.
pub trait Optimizer {
    /// One update from `grads` (frozen parameters and parameters without a gradient are skipped).
    fn step(&mut self, grads: &Grads) -> Result<()>;
    /// The groups (parameters, learning rate, weight decay).
    fn param_groups(&self) -> &[ParamGroup];
    /// Sets the learning rate of every group (schedules).
    fn set_lr(&mut self, lr: f64);
    /// Everything needed to resume: hyper-parameters per group and per-parameter state.
    fn state_dict(&self) -> Result<OptimizerState>;
    /// Restores [`Optimizer::state_dict`]'s output; the groups must hold parameters of the
    /// same shapes, in the same order.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;

    /// The live per-parameter state, by group and position (tensors shared, not copied).
    fn param_slots(&self) -> Result<Vec<Vec<ParamSlots>>> {
        self.state_dict()?
            .groups
            .iter()
            .map(|g| {
                g.params
                    .iter()
                    .map(|p| {
                        let tensors = p
                            .tensors
                            .iter()
                            .map(|(k, t)| Ok((k.clone(), t.to_tensor(Device::Cpu)?)))
                            .collect::<Result<_>>()?;
                        Ok(ParamSlots { step: p.step, tensors })
                    })
                    .collect()
            })
            .collect()
    }

    /// [`Optimizer::state_dict`] with every parameter's state keyed by its name in `model`
    /// (its first dotted name), so it loads into a model whose parameters were reordered,
    /// added or removed ([`Optimizer::load_state_dict_named`]). A parameter of the
    /// optimizer that `model` does not hold is an [`Error::State`].
    fn state_dict_named(&self, model: &dyn Module) -> Result<OptimizerState> {
        let mut state = self.state_dict()?;
        let names = model.named_parameters();
        for (gi, (group, gs)) in self.param_groups().iter().zip(&mut state.groups).enumerate() {
            for (pi, (p, ps)) in group.params.iter().zip(&mut gs.params).enumerate() {
                let name = names.iter().find(|(_, q)| q.ptr_eq(p)).map(|(n, _)| n.clone());
                ps.name = Some(name.ok_or_else(|| Error::State {
                    op: "Optimizer::state_dict_named",
                    msg: format!("parameter {pi} of group {gi} is not a parameter of the model"),
                })?);
            }
        }
        Ok(state)
    }

    /// Loads a [`Optimizer::state_dict_named`] state by parameter name: each of this
    /// optimizer's parameters (named by `model`) takes the state saved under its name,
    /// wherever it sat; group hyper-parameters are taken by group index. The report lists
    /// the names loaded, missing (fresh state), unexpected and mis-shaped. Strict: any of
    /// those fails with [`Error::Load`] and nothing changes.
    fn load_state_dict_named(
        &mut self,
        state: &OptimizerState,
        model: &dyn Module,
        strict: bool,
    ) -> Result<LoadReport> {
        const OP: &str = "Optimizer::load_state_dict_named";
        let mut saved: BTreeMap<&str, &ParamState> = BTreeMap::new();
        for ps in state.groups.iter().flat_map(|g| &g.params) {
            let name = ps.name.as_deref().ok_or_else(|| Error::State {
                op: OP,
                msg: "the state has unnamed parameters (saved with state_dict, not state_dict_named)".into(),
            })?;
            saved.insert(name, ps);
        }
        let names = model.named_parameters();
        let mut report = LoadReport::default();
        let mut current = self.state_dict()?;
        let mut used = Vec::new();
        for (gi, (group, gs)) in self.param_groups().iter().zip(&mut current.groups).enumerate() {
            if let Some(saved_group) = state.groups.get(gi) {
                (gs.lr, gs.weight_decay) = (saved_group.lr, saved_group.weight_decay);
            }
            for (p, slot) in group.params.iter().zip(&mut gs.params) {
                let Some((name, _)) = names.iter().find(|(_, q)| q.ptr_eq(p)) else {
                    return Err(Error::State { op: OP, msg: format!("a parameter of group {gi} is not in the model") });
                };
                let Some(ps) = saved.get(name.as_str()) else {
                    report.missing.push(UnmatchedKey { key: name.clone(), suggestion: None });
                    *slot = ParamState { name: Some(name.clone()), ..ParamState::default() };
                    continue;
                };
                used.push(name.as_str());
                if let Some((_, t)) = ps.tensors.iter().find(|(_, t)| t.shape != p.shape() || t.dtype != p.dtype()) {
                    report.shape_mismatches.push(Mismatch {
                        key: name.clone(),
                        expected_shape: p.shape(),
                        found_shape: t.shape.clone(),
                        expected_dtype: p.dtype(),
                        found_dtype: t.dtype,
                    });
                    *slot = ParamState { name: Some(name.clone()), ..ParamState::default() };
                    continue;
                }
                *slot = (*ps).clone();
                report.loaded.push(name.clone());
            }
        }
        for name in saved.keys().filter(|n| !used.contains(n)) {
            let suggestion = crate::state_dict::suggest(name, report.missing.iter().map(|m| m.key.as_str()));
            report.unexpected.push(UnmatchedKey { key: name.to_string(), suggestion });
        }
        if strict && !report.is_clean() {
            report.loaded.clear();
            return Err(Error::Load { op: OP, report: Box::new(report) });
        }
        if state.kind != current.kind {
            return Err(Error::State {
                op: OP,
                msg: format!("state of a {} optimizer, this is {}", state.kind, current.kind),
            });
        }
        self.load_state_dict(&current)?;
        Ok(report)
    }
}

/// One parameter's live optimizer state (see [`Optimizer::param_slots`]).
#[derive(Clone, Debug, Default)]
pub struct ParamSlots {
    /// Steps taken for this parameter.
    pub step: u64,
    /// Named state tensors, shared with the optimizer.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Parameters sharing a learning rate and weight decay. Built with [`ParamGroup::new`];
/// unset values take the optimizer's defaults.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// The parameters, in order.
    pub params: Vec<Param>,
    /// Learning rate (`None` before the optimizer fills in its default).
    pub lr: Option<f64>,
    /// Weight decay (`None` before the optimizer fills in its default).
    pub weight_decay: Option<f64>,
}

impl ParamGroup {
    /// A group with the optimizer's default learning rate and weight decay.
    pub fn new(params: Vec<Param>) -> Self {
        ParamGroup { params, lr: None, weight_decay: None }
    }

    /// This group's learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }

    /// This group's weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }

    /// The group's learning rate (resolved).
    pub fn learning_rate(&self) -> f64 {
        self.lr.unwrap_or(0.0)
    }
}

/// An optimizer's state in serde form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// `sgd`, `adam` or `adamw`.
    pub kind: String,
    /// One entry per group, in order.
    pub groups: Vec<GroupState>,
}

/// One group's hyper-parameters and per-parameter state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Per parameter, in the group's order.
    pub params: Vec<ParamState>,
}

/// One parameter's optimizer state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamState {
    /// The parameter's name in its model, when saved by [`Optimizer::state_dict_named`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Steps taken for this parameter.
    pub step: u64,
    /// Named state tensors (`momentum_buffer`, `exp_avg`, `exp_avg_sq`).
    pub tensors: BTreeMap<String, SerTensor>,
}

/// Per-parameter state while running.
#[derive(Clone, Default)]
pub(crate) struct Slots {
    pub step: u64,
    pub tensors: BTreeMap<String, Tensor>,
}

/// The machinery every optimizer shares: resolved groups, per-parameter slots, the step
/// loop and (de)serialization. Each optimizer supplies only its update rule.
pub(crate) struct Core {
    kind: &'static str,
    groups: Vec<ParamGroup>,
    slots: Vec<Vec<Slots>>,
    /// Fused in-place kernels (default) or the tensor-op reference.
    pub fused: bool,
}

/// What an update rule sees for one parameter.
pub(crate) struct Ctx<'a> {
    pub lr: f64,
    pub weight_decay: f64,
    pub slots: &'a mut Slots,
    /// Take the fused kernel (on for f32 / f64 parameters unless `fused(false)`).
    pub fused: bool,
}

impl Core {
    pub(crate) fn new(kind: &'static str, groups: Vec<ParamGroup>, lr: f64, weight_decay: f64) -> Result<Core> {
        let groups: Vec<ParamGroup> = groups
            .into_iter()
            .map(|g| ParamGroup {
                lr: Some(g.lr.unwrap_or(lr)),
                weight_decay: Some(g.weight_decay.unwrap_or(weight_decay)),
                ..g
            })
            .collect();
        let all: Vec<&Param> = groups.iter().flat_map(|g| &g.params).collect();
        for (i, p) in all.iter().enumerate() {
            if all[..i].iter().any(|q| q.ptr_eq(p)) {
                return Err(Error::argument(kind, format!("parameter {i} appears twice in the groups")));
            }
        }
        let slots = groups.iter().map(|g| vec![Slots::default(); g.params.len()]).collect();
        Ok(Core { kind, groups, slots, fused: true })
    }

    /// Runs `rule(param, grad, ctx)`, which updates the parameter, for every trainable
    /// parameter with a gradient.
    pub(crate) fn step(
        &mut self,
        grads: &Grads,
        mut rule: impl FnMut(&Param, &Tensor, Ctx<'_>) -> Result<()>,
    ) -> Result<()> {
        let _guard = no_grad();
        for (group, slots) in self.groups.iter().zip(&mut self.slots) {
            let (lr, weight_decay) = (group.learning_rate(), group.weight_decay.unwrap_or(0.0));
            for (param, slots) in group.params.iter().zip(slots.iter_mut()) {
                if !param.needs_grad() {
                    continue;
                }
                let Some(grad) = param.grad(grads) else { continue };
                slots.step += 1;
                let fused = self.fused && matches!(param.dtype(), DType::F32 | DType::F64);
                rule(param, &grad.detach(), Ctx { lr, weight_decay, slots, fused })?;
            }
        }
        Ok(())
    }

    pub(crate) fn param_slots(&self) -> Vec<Vec<ParamSlots>> {
        self.slots
            .iter()
            .map(|g| g.iter().map(|s| ParamSlots { step: s.step, tensors: s.tensors.clone() }).collect())
            .collect()
    }

    pub(crate) fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    pub(crate) fn set_lr(&mut self, lr: f64) {
        self.groups.iter_mut().for_each(|g| g.lr = Some(lr));
    }

    pub(crate) fn state_dict(&self) -> Result<OptimizerState> {
        let groups = self
            .groups
            .iter()
            .zip(&self.slots)
            .map(|(g, slots)| {
                let params = slots
                    .iter()
                    .map(|s| {
                        let tensors = s
                            .tensors
                            .iter()
                            .map(|(k, t)| Ok((k.clone(), SerTensor::from_tensor(t)?)))
                            .collect::<Result<_>>()?;
                        Ok(ParamState { name: None, step: s.step, tensors })
                    })
                    .collect::<Result<_>>()?;
                Ok(GroupState { lr: g.learning_rate(), weight_decay: g.weight_decay.unwrap_or(0.0), params })
            })
            .collect::<Result<_>>()?;
        Ok(OptimizerState { kind: self.kind.to_string(), groups })
    }

    /// Validates everything, then replaces hyper-parameters and slots.
    pub(crate) fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        let err = |msg: String| Error::State { op: "Optimizer::load_state_dict", msg };
        if state.kind != self.kind {
            return Err(err(format!("state of a {} optimizer, this is {}", state.kind, self.kind)));
        }
        if state.groups.len() != self.groups.len() {
            return Err(err(format!("{} groups in the state, {} here", state.groups.len(), self.groups.len())));
        }
        let mut slots = Vec::new();
        for (gi, (g, gs)) in self.groups.iter().zip(&state.groups).enumerate() {
            if gs.params.len() != g.params.len() {
                return Err(err(format!(
                    "group {gi}: {} parameters in the state, {} here",
                    gs.params.len(),
                    g.params.len()
                )));
            }
            let mut group_slots = Vec::new();
            for (pi, (p, ps)) in g.params.iter().zip(&gs.params).enumerate() {
                let device: Device = p.device();
                let mut tensors = BTreeMap::new();
                for (k, st) in &ps.tensors {
                    let t = st.to_tensor(device)?;
                    if t.shape() != p.shape().as_slice() || t.dtype() != p.dtype() {
                        return Err(err(format!(
                            "group {gi} parameter {pi}: {k} is {:?} {}, the parameter {:?} {}",
                            t.shape(),
                            t.dtype(),
                            p.shape(),
                            p.dtype()
                        )));
                    }
                    tensors.insert(k.clone(), t);
                }
                group_slots.push(Slots { step: ps.step, tensors });
            }
            slots.push(group_slots);
        }
        for (g, gs) in self.groups.iter_mut().zip(&state.groups) {
            g.lr = Some(gs.lr);
            g.weight_decay = Some(gs.weight_decay);
        }
        self.slots = slots;
        Ok(())
    }
}

/// The fused path of a rule: `names` are the state tensors `step` reads and writes (each
/// created as zeros when absent, and `step(created)` told so), updated in place with the
/// parameter by one kernel. On an error, state that did not exist before is not kept.
pub(crate) fn fused_update(
    param: &Param,
    grad: &Tensor,
    slots: &mut Slots,
    names: &[&str],
    step: impl FnOnce(bool) -> OptimStep,
) -> Result<()> {
    param.update_in_place(|data| {
        let mut created = false;
        let mut state = Vec::with_capacity(names.len());
        for name in names {
            state.push(match slots.tensors.remove(*name) {
                Some(t) => (true, t),
                None => {
                    created = true;
                    (false, data.zeros_like()?)
                }
            });
        }
        let mut refs: Vec<&mut Tensor> = state.iter_mut().map(|(_, t)| t).collect();
        let result = data.optim_step_(grad, &mut refs, &step(created));
        for (name, (existed, t)) in names.iter().zip(state) {
            if existed || result.is_ok() {
                slots.tensors.insert(name.to_string(), t);
            }
        }
        result
    })
}

/// Implements [`Optimizer`] for a type with a `core: Core` field and an `update` rule.
macro_rules! optimizer_via_core {
    ($ty:ty) => {
        impl $crate::optim::Optimizer for $ty {
            fn step(&mut self, grads: &stategrad_autograd::Grads) -> stategrad_autograd::Result<()> {
                let cfg = self.cfg.clone();
                self.core.step(grads, |p, g, ctx| Self::update(&cfg, p, g, ctx))
            }
            fn param_groups(&self) -> &[$crate::optim::ParamGroup] {
                self.core.groups()
            }
            fn set_lr(&mut self, lr: f64) {
                self.core.set_lr(lr)
            }
            fn state_dict(&self) -> stategrad_autograd::Result<$crate::optim::OptimizerState> {
                self.core.state_dict()
            }
            fn load_state_dict(&mut self, state: &$crate::optim::OptimizerState) -> stategrad_autograd::Result<()> {
                self.core.load_state_dict(state)
            }
            fn param_slots(&self) -> stategrad_autograd::Result<Vec<Vec<$crate::optim::ParamSlots>>> {
                Ok(self.core.param_slots())
            }
        }
    };
}
pub(crate) use optimizer_via_core;

/// `fused(bool)` for a type with a `core: Core` field.
macro_rules! fused_switch {
    ($ty:ty) => {
        impl $ty {
            /// `true` (the default): each step is one fused in-place kernel per parameter;
            /// `false`: the tensor-op composition (the reference; same values, more memory
            /// traffic and fresh tensors every step). Half-precision parameters always take
            /// the tensor ops.
            pub fn fused(mut self, fused: bool) -> Self {
                self.core.fused = fused;
                self
            }
        }
    };
}
pub(crate) use fused_switch;
