//! `SyncBatchNorm`: BatchNorm whose training statistics are those of the global batch, the
//! union of every rank's examples (per-rank batches may differ in size).
//!
//! Forward: each rank computes, per channel, its count `n_r`, sum `s_r` and sum of squares
//! `q_r`; one all-gather gives every rank all of them, summed in rank order:
//! `N = Σ n_r`, `mean = Σ s_r / N`, `var = Σ q_r / N - mean²` (biased; f64 on the host).
//! `y = x̂ w + b` with `x̂ = (x - mean) / sqrt(var + eps)`. Running statistics move as in
//! BatchNorm with the unbiased `var · N / (N - 1)`, identically on every rank.
//!
//! Backward, with `g = dL/dy` on this rank's examples and the loss the sum of the ranks'
//! losses: one all-reduce of `(Σ g, Σ g x̂)` per channel over all ranks gives
//! `dL/dx = w / sqrt(var + eps) · (g - Σg / N - x̂ · Σ(g x̂) / N)`; the local sums are this
//! rank's `dL/db` and `dL/dw` (the data-parallel wrapper then averages those over ranks).
//! The backward's all-reduce is a constant for the tape: double backward through it is not
//! supported.
use std::sync::Arc;

use stategrad_autograd::{apply_custom, no_grad, CustomOp, DType, Error, Result, Tensor};
use stategrad_nn::{BatchNorm, Buffer, Forward, Layer, Module, Param, Training};

use crate::ProcessGroup;

/// Batch normalisation over channels (dim 1) with statistics over every rank of a
/// [`ProcessGroup`]; inputs `[n, c]`, `[n, c, l]` or `[n, c, h, w]`. Same state (names,
/// kinds, defaults) as [`BatchNorm`], so a checkpoint of one loads into the other. Works on
/// every device: the per-channel statistics travel through the host.
///
/// ```
/// use stategrad_dist::{run_replicas, SyncBatchNorm};
/// use stategrad_nn::{BatchNorm1d, Forward, Module};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let outs = run_replicas(2, |g| {
///     let bn = SyncBatchNorm::from_batch_norm(&BatchNorm1d::new(1)?, std::sync::Arc::new(g));
///     let x = if bn.group().rank() == 0 { vec![0.0f64] } else { vec![2.0, 4.0] };
///     bn.to_dtype(DType::F64)?;
///     let n = x.len();
///     bn.forward(&Tensor::from_vec(x, &[n, 1], Device::Cpu)?)?;
///     Ok(bn.running_mean.tensor().to_vec::<f64>()?)
/// });
/// for r in outs {
///     assert!((r?[0] - 0.2).abs() < 1e-12); // 0.9 * 0 + 0.1 * mean(0, 2, 4)
/// }
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone)]
pub struct SyncBatchNorm {
    /// Scale `[c]`; `None` when not affine.
    pub weight: Option<Param>,
    /// Shift `[c]`; `None` when not affine.
    pub bias: Option<Param>,
    /// Running mean `[c]`.
    pub running_mean: Buffer,
    /// Running (unbiased) variance `[c]`.
    pub running_var: Buffer,
    /// Number of training forwards, int64 `[]`.
    pub num_batches_tracked: Buffer,
    /// Train/eval flag.
    pub training: Training,
    /// Running-statistics momentum.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
    #[module(skip)]
    group: Arc<dyn ProcessGroup>,
}

impl std::fmt::Debug for SyncBatchNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SyncBatchNorm({}, rank {} of {})",
            self.running_mean.shape()[0],
            self.group.rank(),
            self.group.world_size()
        )
    }
}

impl SyncBatchNorm {
    /// `c` channels, affine, eps 1e-5, momentum 0.1 (f32, CPU), over `group`.
    pub fn new(channels: usize, group: Arc<dyn ProcessGroup>) -> Result<Self> {
        Ok(Self::from_batch_norm(&BatchNorm::<2>::new(channels)?, group))
    }

    /// The same layer made synchronous: it shares `bn`'s parameters, buffers and train flag
    /// (handles, not copies), and its eps and momentum.
    pub fn from_batch_norm<const D: usize>(bn: &BatchNorm<D>, group: Arc<dyn ProcessGroup>) -> Self {
        SyncBatchNorm {
            weight: bn.weight.clone(),
            bias: bn.bias.clone(),
            running_mean: bn.running_mean.clone(),
            running_var: bn.running_var.clone(),
            num_batches_tracked: bn.num_batches_tracked.clone(),
            training: bn.training.clone(),
            momentum: bn.momentum,
            eps: bn.eps,
            group,
        }
    }

    /// The group the statistics are taken over.
    pub fn group(&self) -> &Arc<dyn ProcessGroup> {
        &self.group
    }
}

/// Replaces every `BatchNorm1d` and `BatchNorm2d` of `model` by a [`SyncBatchNorm`] over
/// `group` that shares its parameters, buffers and train flag: names, state and checkpoints
/// stay exactly as they were. Returns how many layers were converted. Layers must sit in a
/// [`stategrad_nn::LayerSlot`] (a `Sequential` entry or a `LayerSlot` field); a BatchNorm in
/// a field of its own type is an error naming its path (PyTorch's
/// `SyncBatchNorm.convert_sync_batchnorm`). Each of the two types is replaced all or nothing
/// (2d first, then 1d).
///
/// ```
/// use stategrad_dist::{convert_sync_batch_norm, InProcessGroup};
/// use stategrad_nn::{BatchNorm1d, Linear, Module, Sequential};
/// let g = InProcessGroup::new(1)?.pop().unwrap();
/// let mut model = Sequential::new().push(Linear::new(3, 4)?).push(BatchNorm1d::new(4)?);
/// let before: Vec<String> = model.state_dict().keys().map(String::from).collect();
/// assert_eq!(convert_sync_batch_norm(&mut model, std::sync::Arc::new(g))?, 1);
/// assert_eq!(model.named_modules()[2].1, "SyncBatchNorm");
/// let after: Vec<String> = model.state_dict().keys().map(String::from).collect();
/// assert_eq!(before, after);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn convert_sync_batch_norm<M: Module>(model: &mut M, group: Arc<dyn ProcessGroup>) -> Result<usize> {
    let g2 = group.clone();
    let two = model.replace_modules::<BatchNorm<2>>(move |_, bn| {
        Ok(Box::new(SyncBatchNorm::from_batch_norm(bn, g2.clone())) as Box<dyn Layer>)
    })?;
    let one = model.replace_modules::<BatchNorm<1>>(move |_, bn| {
        Ok(Box::new(SyncBatchNorm::from_batch_norm(bn, group.clone())) as Box<dyn Layer>)
    })?;
    Ok(one + two)
}

/// The forward's statistics, for its backward.
struct SyncBn {
    group: Arc<dyn ProcessGroup>,
    mean: Tensor,
    invstd: Tensor,
    count: f64,
    dims: Vec<usize>,
    affine: bool,
}

impl CustomOp for SyncBn {
    fn name(&self) -> &'static str {
        "SyncBatchNorm"
    }

    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        let xhat = x[0].sub(&self.mean)?.mul(&self.invstd)?;
        if self.affine {
            xhat.mul(&x[1])?.add(&x[2])
        } else {
            Ok(xhat)
        }
    }

    fn backward(&self, x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let xhat = x[0].sub(&self.mean)?.mul(&self.invstd)?;
        let sum_g = g.sum(self.dims.clone(), true)?;
        let sum_gx = g.mul(&xhat)?.sum(self.dims.clone(), true)?;
        let c = sum_g.numel();
        let mut both = sum_g.to_f64_vec()?;
        both.extend(sum_gx.to_f64_vec()?);
        self.group.all_reduce_sum_f64("SyncBatchNorm backward", &mut both)?;
        let dev = g.device();
        let stat = |v: &[f64]| Tensor::from_slice(v, sum_g.shape(), dev)?.to_dtype(g.dtype());
        let (all_g, all_gx) = (stat(&both[..c])?, stat(&both[c..])?);
        let w = if self.affine { self.invstd.mul(&x[1])? } else { self.invstd.clone() };
        let inner = g.sub(&all_g.div_scalar(self.count)?)?.sub(&xhat.mul(&all_gx.div_scalar(self.count)?)?)?;
        let grad_x = inner.mul(&w)?;
        if self.affine {
            let flat = |t: &Tensor| t.reshape(&[c]);
            Ok(vec![
                Some(grad_x),
                Some(flat(&sum_gx)?.reshape(x[1].shape())?),
                Some(flat(&sum_g)?.reshape(x[2].shape())?),
            ])
        } else {
            Ok(vec![Some(grad_x)])
        }
    }
}

impl Forward for SyncBatchNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.running_mean.shape()[0];
        if !(2..=5).contains(&x.rank()) || x.shape()[1] != c {
            return Err(Error::shape(
                "SyncBatchNorm",
                &[x.shape()],
                format!("expected rank 2 to 5 with {c} channels in dim 1"),
            ));
        }
        let channel_shape: Vec<usize> = (0..x.rank()).map(|d| if d == 1 { c } else { 1 }).collect();
        let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        let affine = |p: &Option<Param>| p.as_ref().map(|p| p.tensor()?.reshape(&channel_shape)).transpose();
        let (w, b) = (affine(&self.weight)?, affine(&self.bias)?);
        let dev = x.device();
        let (mean, var, count) = if self.training.get() {
            let (sum, sumsq) = {
                let _g = no_grad();
                let xd = x.detach();
                (xd.sum(dims.clone(), false)?.to_f64_vec()?, xd.square()?.sum(dims.clone(), false)?.to_f64_vec()?)
            };
            let mut mine = vec![(x.numel() / c.max(1)) as f64];
            mine.extend(sum);
            mine.extend(sumsq);
            let all = self.group.all_gather_f64("SyncBatchNorm forward", &mine)?;
            let mut tot = vec![0.0; 1 + 2 * c];
            for (r, v) in all.iter().enumerate() {
                if v.len() != tot.len() {
                    return Err(self.group.error(
                        "SyncBatchNorm forward",
                        None,
                        format!("rank {r} has {} channels, this rank {c}", (v.len().max(1) - 1) / 2),
                    ));
                }
                tot.iter_mut().zip(v).for_each(|(t, x)| *t += x);
            }
            let n = tot[0];
            if n < 2.0 {
                return Err(Error::shape(
                    "SyncBatchNorm",
                    &[x.shape()],
                    "training needs more than 1 value per channel over all ranks",
                ));
            }
            let mean: Vec<f64> = tot[1..=c].iter().map(|s| s / n).collect();
            let var: Vec<f64> = tot[c + 1..].iter().zip(&mean).map(|(q, m)| (q / n - m * m).max(0.0)).collect();
            self.update_running(&mean, &var, n)?;
            (mean, var, n)
        } else {
            (self.running_mean.tensor().to_f64_vec()?, self.running_var.tensor().to_f64_vec()?, 0.0)
        };
        let to_t = |v: Vec<f64>| Tensor::from_vec(v, &channel_shape, dev)?.to_dtype(x.dtype());
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let op = SyncBn {
            group: self.group.clone(),
            mean: to_t(mean)?,
            invstd: to_t(invstd)?,
            count,
            dims,
            affine: w.is_some() && b.is_some(),
        };
        if !self.training.get() {
            // Evaluation: fixed statistics, no exchange; plain ops record the ordinary gradient.
            let mut y = x.sub(&op.mean)?.mul(&op.invstd)?;
            if let Some(w) = &w {
                y = y.mul(w)?;
            }
            if let Some(b) = &b {
                y = y.add(b)?;
            }
            return Ok(y);
        }
        match (&w, &b) {
            (Some(w), Some(b)) => apply_custom(op, &[x, w, b]),
            _ => apply_custom(SyncBn { affine: false, ..op }, &[x]),
        }
    }
}

impl SyncBatchNorm {
    fn update_running(&self, mean: &[f64], var: &[f64], n: f64) -> Result<()> {
        let m = self.momentum;
        let mix = |b: &Buffer, s: &[f64]| -> Result<()> {
            let old = b.tensor();
            let new: Vec<f64> = old.to_f64_vec()?.iter().zip(s).map(|(r, s)| (1.0 - m) * r + m * s).collect();
            b.set(Tensor::from_vec(new, old.shape(), old.device())?.to_dtype(old.dtype())?)
        };
        mix(&self.running_mean, mean)?;
        let unbiased: Vec<f64> = var.iter().map(|v| v * n / (n - 1.0)).collect();
        mix(&self.running_var, &unbiased)?;
        let t = &self.num_batches_tracked;
        t.set(Tensor::full(&[], t.tensor().item()? + 1.0, DType::I64, t.device())?)
    }
}
