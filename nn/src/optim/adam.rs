//! Adam and AdamW as in `torch.optim`: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`. Adam adds the
//! weight decay to the gradient (`g + wd p`); AdamW decays the weight directly
//! (`p <- p (1 - lr wd)`) before the update.
use stategrad_autograd::{OptimStep, Result, Tensor};

use super::{fused_switch, fused_update, optimizer_via_core, Core, Ctx, ParamGroup};
use crate::Param;

/// Adam / AdamW hyper-parameters.
#[derive(Clone, Debug)]
pub struct AdamConfig {
    /// Learning rate (PyTorch's default 1e-3).
    pub lr: f64,
    /// `(beta1, beta2)`, default `(0.9, 0.999)`.
    pub betas: (f64, f64),
    /// Added to the denominator, default 1e-8.
    pub eps: f64,
    /// Weight decay (Adam's default 0, AdamW's 1e-2).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 }
    }
}

impl AdamConfig {
    /// PyTorch's defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        AdamConfig { lr, ..Default::default() }
    }
}

#[derive(Clone)]
struct Rule {
    cfg: AdamConfig,
    decoupled: bool,
}

/// Adam (weight decay as an L2 term in the gradient).
///
/// ```
/// use stategrad_nn::{Linear, Module, optim::{Adam, AdamConfig, Optimizer}};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let fc = Linear::new(3, 1)?;
/// let mut opt = Adam::new(fc.parameters(), AdamConfig::new(1e-2))?;
/// let x = Tensor::ones(&[4, 3], DType::F32, Device::Cpu)?;
/// use stategrad_nn::Forward;
/// let grads = fc.forward(&x)?.square()?.mean_all()?.backward()?;
/// opt.step(&grads)?;
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct Adam {
    cfg: Rule,
    core: Core,
}

/// AdamW (decoupled weight decay, PyTorch's default 1e-2).
pub struct AdamW {
    cfg: Rule,
    core: Core,
}

impl Adam {
    /// One group of parameters.
    pub fn new(params: Vec<Param>, cfg: AdamConfig) -> Result<Adam> {
        Self::with_groups(vec![ParamGroup::new(params)], cfg)
    }

    /// Several groups; each takes `cfg`'s learning rate and weight decay unless it sets its own.
    pub fn with_groups(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Result<Adam> {
        Ok(Adam { core: Core::new("adam", groups, cfg.lr, cfg.weight_decay)?, cfg: Rule { cfg, decoupled: false } })
    }

    fn update(rule: &Rule, p: &Param, g: &Tensor, ctx: Ctx<'_>) -> Result<()> {
        adam_update(rule, p, g, ctx)
    }
}

impl AdamW {
    /// One group of parameters. Note `AdamConfig::default()` has weight decay 0; set
    /// `weight_decay: 1e-2` for PyTorch's AdamW default.
    pub fn new(params: Vec<Param>, cfg: AdamConfig) -> Result<AdamW> {
        Self::with_groups(vec![ParamGroup::new(params)], cfg)
    }

    /// Several groups; each takes `cfg`'s learning rate and weight decay unless it sets its own.
    pub fn with_groups(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Result<AdamW> {
        Ok(AdamW { core: Core::new("adamw", groups, cfg.lr, cfg.weight_decay)?, cfg: Rule { cfg, decoupled: true } })
    }

    fn update(rule: &Rule, p: &Param, g: &Tensor, ctx: Ctx<'_>) -> Result<()> {
        adam_update(rule, p, g, ctx)
    }
}

fn adam_update(rule: &Rule, param: &Param, g: &Tensor, ctx: Ctx<'_>) -> Result<()> {
    if !ctx.fused {
        return param.set(adam_reference(rule, &param.data(), g, ctx)?);
    }
    let (b1, b2) = rule.cfg.betas;
    let t = ctx.slots.step as i32;
    // the same f64 scalars as the reference's `div_scalar` and `mul_scalar`
    let (step_size, inv_bias2_sqrt) = (ctx.lr / (1.0 - b1.powi(t)), 1.0 / (1.0 - b2.powi(t)).sqrt());
    fused_update(param, g, ctx.slots, &["exp_avg", "exp_avg_sq"], |_| OptimStep::Adam {
        lr: ctx.lr,
        beta1: b1,
        beta2: b2,
        eps: rule.cfg.eps,
        weight_decay: ctx.weight_decay,
        decoupled: rule.decoupled,
        step_size,
        inv_bias2_sqrt,
    })
}

/// The tensor-op composition of the update (the fused kernel's reference).
fn adam_reference(rule: &Rule, p: &Tensor, g: &Tensor, ctx: Ctx<'_>) -> Result<Tensor> {
    let (b1, b2) = rule.cfg.betas;
    let (lr, wd) = (ctx.lr, ctx.weight_decay);
    let t = ctx.slots.step as i32;
    let mut p = p.clone();
    let mut g = g.clone();
    if wd != 0.0 {
        if rule.decoupled {
            p = p.mul_scalar(1.0 - lr * wd)?;
        } else {
            g = g.add(&p.mul_scalar(wd)?)?;
        }
    }
    let slot = |name: &str| ctx.slots.tensors.get(name).cloned().map_or_else(|| g.zeros_like(), Ok);
    let m = slot("exp_avg")?.mul_scalar(b1)?.add(&g.mul_scalar(1.0 - b1)?)?;
    let v = slot("exp_avg_sq")?.mul_scalar(b2)?.add(&g.square()?.mul_scalar(1.0 - b2)?)?;
    let bias1 = 1.0 - b1.powi(t);
    let bias2 = 1.0 - b2.powi(t);
    let denom = v.sqrt()?.div_scalar(bias2.sqrt())?.add_scalar(rule.cfg.eps)?;
    let new = p.sub(&m.div(&denom)?.mul_scalar(lr / bias1)?)?;
    ctx.slots.tensors.insert("exp_avg".into(), m);
    ctx.slots.tensors.insert("exp_avg_sq".into(), v);
    Ok(new)
}

optimizer_via_core!(Adam);
optimizer_via_core!(AdamW);
fused_switch!(Adam);
fused_switch!(AdamW);
