//! SGD as in `torch.optim.SGD`: with `d = g + wd * p`, momentum buffer
//! `b = d` (first step) else `b = momentum * b + (1 - dampening) * d`; the step direction is
//! `d + momentum * b` (Nesterov) or `b`; `p <- p - lr * direction`.
use stategrad_autograd::{OptimStep, Result, Tensor};

use super::{fused_switch, fused_update, optimizer_via_core, Core, Ctx, ParamGroup};
use crate::Param;

/// SGD hyper-parameters (PyTorch's defaults apart from `lr`, which has none there).
#[derive(Clone, Debug)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum's new term.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        SgdConfig { lr, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

/// Stochastic gradient descent.
///
/// ```
/// use stategrad_nn::{Param, optim::{Optimizer, Sgd, SgdConfig}};
/// use stategrad_autograd::{Tensor, Device};
/// let w = Param::new(Tensor::from_slice(&[1.0f64, -2.0], &[2], Device::Cpu)?);
/// let mut opt = Sgd::new(vec![w.clone()], SgdConfig::new(0.5))?;
/// let grads = w.tensor()?.square()?.sum_all()?.backward()?; // d/dw = 2w
/// opt.step(&grads)?;
/// assert_eq!(w.data().to_vec::<f64>()?, vec![0.0, 0.0]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct Sgd {
    cfg: SgdConfig,
    core: Core,
}

impl Sgd {
    /// One group of parameters.
    pub fn new(params: Vec<Param>, cfg: SgdConfig) -> Result<Sgd> {
        Self::with_groups(vec![ParamGroup::new(params)], cfg)
    }

    /// Several groups; each takes `cfg`'s learning rate and weight decay unless it sets its own.
    pub fn with_groups(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Sgd> {
        Ok(Sgd { core: Core::new("sgd", groups, cfg.lr, cfg.weight_decay)?, cfg })
    }

    fn update(cfg: &SgdConfig, param: &Param, g: &Tensor, ctx: Ctx<'_>) -> Result<()> {
        if !ctx.fused {
            return param.set(Self::reference(cfg, &param.data(), g, ctx)?);
        }
        let names: &[&str] = if cfg.momentum != 0.0 { &["momentum_buffer"] } else { &[] };
        fused_update(param, g, ctx.slots, names, |init| OptimStep::Sgd {
            lr: ctx.lr,
            weight_decay: ctx.weight_decay,
            momentum: cfg.momentum,
            dampening: cfg.dampening,
            nesterov: cfg.nesterov,
            init,
        })
    }

    /// The tensor-op composition of the update (the fused kernel's reference).
    fn reference(cfg: &SgdConfig, p: &Tensor, g: &Tensor, ctx: Ctx<'_>) -> Result<Tensor> {
        let mut d = g.clone();
        if ctx.weight_decay != 0.0 {
            d = d.add(&p.mul_scalar(ctx.weight_decay)?)?;
        }
        if cfg.momentum != 0.0 {
            let buf = match ctx.slots.tensors.get("momentum_buffer") {
                None => d.clone(),
                Some(b) => b.mul_scalar(cfg.momentum)?.add(&d.mul_scalar(1.0 - cfg.dampening)?)?,
            };
            ctx.slots.tensors.insert("momentum_buffer".into(), buf.clone());
            d = if cfg.nesterov { d.add(&buf.mul_scalar(cfg.momentum)?)? } else { buf };
        }
        p.sub(&d.mul_scalar(ctx.lr)?)
    }
}

optimizer_via_core!(Sgd);
fused_switch!(Sgd);
