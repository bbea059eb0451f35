//! `gradcheck` / `gradgradcheck`: analytical gradients against central differences in f64,
//! with torch.autograd.gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3).
//!
//! The Jacobian is checked through random projections (`v^T J` for a few random `v`, as
//! torch's `fast_mode`): analytically by one backward pass per projection, numerically by
//! `(v . f(x + eps e_j) - v . f(x - eps e_j)) / 2 eps` for every input element `j`. A wrong
//! rule shows up in every projection with probability 1.
use stategrad_backends::{DType, Distribution, Error, GradcheckFailure, Result};

use crate::{grad, Tensor};

/// Tolerances and step of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Central-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (to the numerical value).
    pub rtol: f64,
    /// Number of random output projections.
    pub projections: usize,
    /// Seed of the projections.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-3, projections: 2, seed: 0x6772_6164 }
    }
}

/// What a passing check measured.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// Input elements checked (over all tracked inputs).
    pub elements: usize,
    /// Largest |analytical - numerical| seen.
    pub max_abs_error: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks the gradients of `f` at `inputs` (f64; the tracked ones are checked). Returns an
/// [`Error::Gradcheck`] naming the worst element (input, index, analytical, numerical).
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) -> Result<GradcheckReport> {
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// [`gradcheck`] with explicit options.
pub fn gradcheck_with(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    if let Some(bad) = inputs.iter().find(|t| t.is_tracked() && t.dtype() != DType::F64) {
        return Err(Error::DType { op: "gradcheck", expected: "float64 inputs", got: bad.dtype() });
    }
    let checked: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].is_tracked()).collect();
    if checked.is_empty() {
        return Err(Error::argument("gradcheck", "no input requires grad"));
    }
    let tracked: Vec<&Tensor> = checked.iter().map(|&i| &inputs[i]).collect();
    let uniform = Distribution::Uniform { lo: -1.0, hi: 1.0 };
    // analytical: v^T J for each projection (one forward + one backward each)
    let mut v_host = Vec::with_capacity(opts.projections.max(1));
    let mut analytical = Vec::with_capacity(opts.projections.max(1)); // [projection][checked input]
    for k in 0..opts.projections.max(1) {
        let out = f(inputs)?;
        if out.dtype() != DType::F64 {
            return Err(Error::DType { op: "gradcheck", expected: "a float64 output", got: out.dtype() });
        }
        let v = Tensor::rand_seeded(out.shape(), uniform, DType::F64, out.device(), opts.seed.wrapping_add(k as u64))?;
        let gs =
            if out.is_tracked() { grad(&[&out], Some(&[&v]), &tracked, false)? } else { vec![None; tracked.len()] };
        analytical.push(
            gs.into_iter()
                .zip(&tracked)
                .map(|(g, t)| match g {
                    Some(g) => g.to_vec::<f64>(),
                    None => Ok(vec![0.0; t.numel()]),
                })
                .collect::<Result<Vec<_>>>()?,
        );
        v_host.push(v.to_vec::<f64>()?);
    }
    numerical_compare(&f, inputs, &checked, &v_host, &analytical, opts)
}

fn numerical_compare(
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    checked: &[usize],
    v_host: &[Vec<f64>],
    analytical: &[Vec<Vec<f64>>],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    // Perturbed inputs keep their tracked status, so that a function which differentiates
    // inside (gradgradcheck) still can; first-order checks pay a little recording for it.
    let mut plain: Vec<Tensor> = inputs.to_vec();
    let mut worst: Option<(f64, GradcheckFailure)> = None;
    let mut max_abs_error = 0.0f64;
    let mut elements = 0;
    for (c, &i) in checked.iter().enumerate() {
        let base = inputs[i].to_vec::<f64>()?;
        let shape = inputs[i].shape().to_vec();
        let device = inputs[i].device();
        for j in 0..base.len() {
            elements += 1;
            let mut eval = |delta: f64| -> Result<Vec<f64>> {
                let mut data = base.clone();
                data[j] += delta;
                plain[i] = Tensor::from_vec(data, &shape, device)?.requires_grad(true)?;
                f(&plain)?.to_vec::<f64>()
            };
            let (plus, minus) = (eval(opts.eps)?, eval(-opts.eps)?);
            for (k, v) in v_host.iter().enumerate() {
                let numerical = (dot(v, &plus) - dot(v, &minus)) / (2.0 * opts.eps);
                let analytic = analytical[k][c][j];
                let err = (analytic - numerical).abs();
                max_abs_error = max_abs_error.max(err);
                let excess = err - (opts.atol + opts.rtol * numerical.abs());
                if excess > 0.0 && worst.as_ref().is_none_or(|(w, _)| excess > *w) {
                    let failure = GradcheckFailure {
                        input: i,
                        element: j,
                        shape: shape.clone(),
                        projection: k,
                        analytical: analytic,
                        numerical,
                        atol: opts.atol,
                        rtol: opts.rtol,
                    };
                    worst = Some((excess, failure));
                }
            }
        }
        plain[i] = inputs[i].clone();
    }
    match worst {
        Some((_, failure)) => Err(Error::Gradcheck(Box::new(failure))),
        None => Ok(GradcheckReport { elements, max_abs_error }),
    }
}

/// Checks second derivatives: gradcheck of `x -> sum_i <d(v . f)/dx_i, u_i>` with random
/// `v`, `u`, where the inner gradient is taken with `create_graph`.
pub fn gradgradcheck(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) -> Result<GradcheckReport> {
    gradgradcheck_with(f, inputs, GradcheckOptions::default())
}

/// [`gradgradcheck`] with explicit options.
pub fn gradgradcheck_with(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    let Some(first) = inputs.first() else {
        return Err(Error::argument("gradgradcheck", "no inputs"));
    };
    let uniform = Distribution::Uniform { lo: -1.0, hi: 1.0 };
    let out_shape = f(inputs)?.shape().to_vec();
    let v = Tensor::rand_seeded(&out_shape, uniform, DType::F64, first.device(), opts.seed ^ 0x7676)?;
    let us: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| Tensor::rand_seeded(t.shape(), uniform, DType::F64, t.device(), opts.seed ^ (0x7575 + i as u64)))
        .collect::<Result<_>>()?;
    let second = |xs: &[Tensor]| -> Result<Tensor> {
        let tracked: Vec<&Tensor> = xs.iter().filter(|t| t.is_tracked()).collect();
        let tracked_u: Vec<&Tensor> = xs.iter().zip(&us).filter(|(t, _)| t.is_tracked()).map(|(_, u)| u).collect();
        let y = f(xs)?;
        let gs = grad(&[&y], Some(&[&v]), &tracked, true)?;
        let mut total = Tensor::zeros(&[], DType::F64, v.device())?;
        for (g, u) in gs.into_iter().zip(tracked_u) {
            if let Some(g) = g {
                total = total.add(&g.mul(u)?.sum_all()?)?;
            }
        }
        Ok(total)
    };
    gradcheck_with(second, inputs, opts)
}
