//! Optimizer trajectories for the fused-vs-reference comparisons: every option combination
//! of Sgd, Adam and AdamW, trained for several steps on one device and dtype, fused or
//! through the tensor-op reference (`fused(false)`). Shared by tests/optim.rs (CPU) and
//! tests/backend_parity.rs (every GPU found).
#![allow(dead_code)]
use stategrad::backends::Distribution;
use stategrad::nn::optim::{Adam, AdamConfig, AdamW, Optimizer, ParamGroup, Sgd, SgdConfig};
use stategrad::nn::Param;
use stategrad::prelude::*;

fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64, dtype: DType, device: Device) -> Result<Tensor> {
    Tensor::rand_seeded(shape, Distribution::Uniform { lo, hi }, dtype, device, seed)
}

/// Steps per trajectory (the first step creates the state, later ones read it).
pub const STEPS: u64 = 5;

/// Builds an optimizer over the given parameters, fused or not.
type Build = Box<dyn Fn(Vec<Param>, bool) -> Result<Box<dyn Optimizer>>>;

/// A named optimizer configuration, built for given parameters, fused or not.
pub struct Config {
    pub name: String,
    build: Build,
}

/// Every option combination the optimizers support.
pub fn configs() -> Vec<Config> {
    let mut out = Vec::new();
    for momentum in [0.0, 0.9] {
        for dampening in [0.0, 0.25] {
            for nesterov in [false, true] {
                for weight_decay in [0.0, 0.05] {
                    let cfg = SgdConfig { lr: 0.1, momentum, dampening, nesterov, weight_decay };
                    out.push(Config {
                        name: format!("{cfg:?}"),
                        build: Box::new(move |p, fused| Ok(Box::new(Sgd::new(p, cfg.clone())?.fused(fused)))),
                    });
                }
            }
        }
    }
    for weight_decay in [0.0, 0.1] {
        for eps in [1e-8, 1e-3] {
            let cfg = AdamConfig { lr: 0.01, betas: (0.8, 0.99), eps, weight_decay };
            let c = cfg.clone();
            out.push(Config {
                name: format!("Adam {cfg:?}"),
                build: Box::new(move |p, fused| Ok(Box::new(Adam::new(p, c.clone())?.fused(fused)))),
            });
            out.push(Config {
                name: format!("AdamW {cfg:?}"),
                build: Box::new(move |p, fused| Ok(Box::new(AdamW::new(p, cfg.clone())?.fused(fused)))),
            });
        }
    }
    // groups with their own learning rate and weight decay
    out.push(Config {
        name: "AdamW, two groups".into(),
        build: Box::new(|p, fused| {
            let groups =
                vec![ParamGroup::new(p[..1].to_vec()), ParamGroup::new(p[1..].to_vec()).lr(0.5).weight_decay(0.2)];
            Ok(Box::new(AdamW::with_groups(groups, AdamConfig::new(0.02))?.fused(fused)))
        }),
    });
    out
}

/// Two parameters on `device`: a small matrix and a vector longer than the CPU's parallel
/// threshold (so its rayon split and ragged last chunk run), seeded.
pub fn params(device: Device, dtype: DType) -> Result<Vec<Param>> {
    Ok(vec![
        Param::new(uniform(&[37, 5], -1.0, 1.0, 11, dtype, device)?),
        Param::new(uniform(&[40_003], -1.0, 1.0, 12, dtype, device)?),
    ])
}

/// Trains `config` for [`STEPS`] steps on `loss = sum(c_t p + p^2 / 4)` (a gradient that
/// depends on the parameter, with a different `c_t` each step), then returns every
/// parameter's values and every state tensor, named, as f64, plus the state's step counts.
pub fn trajectory(config: &Config, device: Device, dtype: DType, fused: bool) -> Result<Vec<(String, Vec<f64>)>> {
    let ps = params(device, dtype)?;
    let mut opt = (config.build)(ps.clone(), fused)?;
    for t in 0..STEPS {
        let mut loss = Tensor::zeros(&[], dtype, device)?;
        for (i, p) in ps.iter().enumerate() {
            let c = uniform(&p.shape(), -2.0, 2.0, 100 + 10 * t + i as u64, dtype, device)?;
            let w = p.tensor()?;
            loss = loss.add(&w.mul(&c)?.add(&w.square()?.mul_scalar(0.25)?)?.sum_all()?)?;
        }
        opt.step(&loss.backward()?)?;
    }
    let mut out = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        out.push((format!("param {i}"), p.data().to_f64_vec()?));
    }
    for (g, group) in opt.param_slots()?.iter().enumerate() {
        for (i, slots) in group.iter().enumerate() {
            out.push((format!("group {g} param {i} step"), vec![slots.step as f64]));
            for (name, t) in &slots.tensors {
                out.push((format!("group {g} param {i} {name}"), t.to_f64_vec()?));
            }
        }
    }
    Ok(out)
}

/// Fails naming the first element of `got` further than `tol * (1 + |want|)` from `want`.
pub fn assert_close(what: &str, got: &[(String, Vec<f64>)], want: &[(String, Vec<f64>)], tol: f64) {
    let names = |v: &[(String, Vec<f64>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the same parameters and state tensors");
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{what}: {name}: length");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {name}[{i}]: {a} vs {b} (tolerance {tol:e})");
        }
    }
}
