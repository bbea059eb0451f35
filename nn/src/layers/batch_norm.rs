//! `BatchNorm1d`, `BatchNorm2d` (one type, `BatchNorm<D>`) and `FrozenBatchNorm2d`.
//!
//! Training: `y = (x - mean_B) / sqrt(var_B + eps) * weight + bias` with the batch mean and
//! the *biased* batch variance over every dimension but channels (dim 1); the running
//! statistics move by `r <- (1 - momentum) r + momentum * s`, with the *unbiased* variance,
//! under `no_grad` (they are buffers: never tracked), and `num_batches_tracked` (int64,
//! shape `[]`) counts the updates. Evaluation uses the running statistics. As PyTorch.
use stategrad_autograd::{no_grad, DType, Error, Result, Tensor, TensorOptions};

use crate::{Buffer, Forward, Migrated, Module, Param, StateDict, Training, Visitor};

/// Batch normalisation over channels (dim 1): `BatchNorm<1>` takes `[n, c]` or
/// `[n, c, l]`, `BatchNorm<2>` takes `[n, c, h, w]`. Use the aliases [`BatchNorm1d`] and
/// [`BatchNorm2d`].
///
/// ```
/// use stategrad_nn::{BatchNorm2d, Forward, Module};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let bn = BatchNorm2d::new(3)?;
/// let x = Tensor::randn(&[4, 3, 5, 5], 2.0, 1.0, DType::F32, Device::Cpu)?;
/// let _ = bn.forward(&x)?;                        // batch stats; running stats move
/// assert_eq!(bn.num_batches_tracked.tensor().to_vec::<i64>()?, vec![1]);
/// bn.eval();
/// let _ = bn.forward(&x)?;                        // running stats; nothing moves
/// assert_eq!(bn.num_batches_tracked.tensor().to_vec::<i64>()?, vec![1]);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Module, Clone, Debug)]
pub struct BatchNorm<const D: usize> {
    /// Scale `[c]` (ones); `None` when not affine.
    pub weight: Option<Param>,
    /// Shift `[c]` (zeros); `None` when not affine.
    pub bias: Option<Param>,
    /// Running mean `[c]` (zeros).
    pub running_mean: Buffer,
    /// Running (unbiased) variance `[c]` (ones).
    pub running_var: Buffer,
    /// Number of training forwards, int64 `[]`.
    pub num_batches_tracked: Buffer,
    /// Train/eval flag.
    pub training: Training,
    /// Running-statistics momentum (0.1).
    pub momentum: f64,
    /// Added to the variance (1e-5).
    pub eps: f64,
}

/// Batch normalisation of `[n, c]` or `[n, c, l]` inputs (PyTorch's `BatchNorm1d`).
pub type BatchNorm1d = BatchNorm<1>;
/// Batch normalisation of `[n, c, h, w]` inputs (PyTorch's `BatchNorm2d`).
pub type BatchNorm2d = BatchNorm<2>;

impl<const D: usize> BatchNorm<D> {
    /// `c` channels, affine, eps 1e-5, momentum 0.1 (default dtype and device).
    pub fn new(channels: usize) -> Result<Self> {
        Self::with_options(channels, 1e-5, 0.1, true)
    }

    /// [`BatchNorm::new`] with its parameters and statistics in `opts`'s dtype and on its
    /// device (PyTorch's `device=`, `dtype=` arguments).
    pub fn new_in(channels: usize, opts: TensorOptions) -> Result<Self> {
        opts.scope(|| Self::new(channels))
    }

    /// With explicit eps, momentum and affine parameters.
    pub fn with_options(channels: usize, eps: f64, momentum: f64, affine: bool) -> Result<Self> {
        let param = |v: f64| -> Result<Option<Param>> {
            Ok(if affine { Some(Param::new(Tensor::full(&[channels], v, None, None)?)) } else { None })
        };
        Ok(BatchNorm {
            weight: param(1.0)?,
            bias: param(0.0)?,
            running_mean: Buffer::new(Tensor::zeros(&[channels], None, None)?),
            running_var: Buffer::new(Tensor::ones(&[channels], None, None)?),
            num_batches_tracked: Buffer::new(Tensor::zeros(&[], DType::I64, None)?),
            training: Training::new(),
            momentum,
            eps,
        })
    }

    fn check_input(&self, x: &Tensor) -> Result<usize> {
        let c = self.running_mean.shape()[0];
        let ranks: &[usize] = if D == 1 { &[2, 3] } else { &[D + 2] };
        if !ranks.contains(&x.rank()) || x.shape()[1] != c {
            let name = if D == 1 { "BatchNorm1d" } else { "BatchNorm2d" };
            return Err(Error::shape(
                name,
                &[x.shape()],
                format!("expected rank {ranks:?} with {c} channels in dim 1"),
            ));
        }
        Ok(c)
    }

    /// Moves the running statistics towards the batch's (biased `var` over `n` values per channel).
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let _guard = no_grad();
        let m = self.momentum;
        let c = [self.running_mean.shape()[0]];
        let unbiased = var.detach().reshape(&c)?.mul_scalar(n as f64 / (n - 1) as f64)?;
        let mix = |b: &Buffer, s: &Tensor| b.set(b.tensor().mul_scalar(1.0 - m)?.add(&s.mul_scalar(m)?)?);
        mix(&self.running_mean, &mean.detach().reshape(&c)?)?;
        mix(&self.running_var, &unbiased)?;
        let t = &self.num_batches_tracked;
        t.set(Tensor::full(&[], t.tensor().item()? + 1.0, DType::I64, t.device())?)
    }
}

impl<const D: usize> Forward for BatchNorm<D> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.check_input(x)?;
        let channel_shape: Vec<usize> = (0..x.rank()).map(|d| if d == 1 { c } else { 1 }).collect();
        let (mean, var) = if self.training.get() {
            let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
            let n = x.numel() / c;
            if n < 2 {
                return Err(Error::shape("BatchNorm", &[x.shape()], "training needs more than 1 value per channel"));
            }
            let mean = x.mean(dims.clone(), true)?;
            let var = x.var(dims, 0, true)?;
            self.update_running(&mean, &var, n)?;
            (mean, var)
        } else {
            (self.running_mean.tensor().reshape(&channel_shape)?, self.running_var.tensor().reshape(&channel_shape)?)
        };
        let affine = |p: &Option<Param>| p.as_ref().map(|p| p.tensor()?.reshape(&channel_shape)).transpose();
        normalize(x, &mean, &var, affine(&self.weight)?.as_ref(), affine(&self.bias)?.as_ref(), self.eps)
    }
}

/// `(x - mean) / sqrt(var + eps) * weight + bias`, every statistic broadcast over channels:
/// the one formula behind BatchNorm and FrozenBatchNorm2d.
fn normalize(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let mut y = x.sub(mean)?.mul(&var.add_scalar(eps)?.rsqrt()?)?;
    if let Some(w) = weight {
        y = y.mul(w)?;
    }
    if let Some(b) = bias {
        y = y.add(b)?;
    }
    Ok(y)
}

/// BatchNorm2d with everything fixed: `weight`, `bias`, `running_mean` and `running_var`
/// are all (persistent) buffers, so nothing is trained and train/eval make no difference
/// (torchvision's `FrozenBatchNorm2d`, eps 1e-5).
///
/// A `BatchNorm2d` state loads into it (torchvision's FrozenBatchNorm2d does the same): its
/// migration ([`Module::upgrade_state`]) drops `num_batches_tracked`, which a frozen layer
/// has no use for, and the load report lists that key under `migrated`.
///
/// ```
/// use stategrad_nn::{BatchNorm2d, FrozenBatchNorm2d, Module};
/// let fbn = FrozenBatchNorm2d::new(4)?;
/// assert!(fbn.parameters().is_empty());
/// assert_eq!(fbn.state_dict().len(), 4);
/// let report = fbn.load_state_dict(&BatchNorm2d::new(4)?.state_dict(), true)?;
/// assert_eq!(report.migrated[0].key, "num_batches_tracked");
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FrozenBatchNorm2d {
    /// Scale `[c]` (a buffer).
    pub weight: Buffer,
    /// Shift `[c]` (a buffer).
    pub bias: Buffer,
    /// Mean `[c]`.
    pub running_mean: Buffer,
    /// Variance `[c]`.
    pub running_var: Buffer,
    /// Added to the variance.
    pub eps: f64,
}

impl FrozenBatchNorm2d {
    /// Identity statistics for `c` channels (default dtype and device).
    pub fn new(channels: usize) -> Result<Self> {
        let full = |v: f64| Tensor::full(&[channels], v, None, None).map(Buffer::new);
        Ok(FrozenBatchNorm2d {
            weight: full(1.0)?,
            bias: full(0.0)?,
            running_mean: full(0.0)?,
            running_var: full(1.0)?,
            eps: 1e-5,
        })
    }

    /// The frozen copy of a trained `BatchNorm2d`: its weight and bias (ones and zeros when
    /// not affine), running statistics and eps, as buffers, on its device and dtype. In
    /// evaluation both give bit-identical outputs (one formula). The data is shared, not
    /// copied (tensors are immutable; later updates of `bn` do not reach the copy).
    ///
    /// ```
    /// use stategrad_nn::{BatchNorm2d, FrozenBatchNorm2d, Module};
    /// let bn = BatchNorm2d::new(3)?;
    /// let frozen = FrozenBatchNorm2d::from_batch_norm(&bn)?;
    /// assert!(frozen.parameters().is_empty());
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn from_batch_norm(bn: &BatchNorm2d) -> Result<Self> {
        let mean = bn.running_mean.tensor();
        let affine = |p: &Option<Param>, v: f64| match p {
            Some(p) => Ok(p.data()),
            None => mean.full_like(v),
        };
        Ok(FrozenBatchNorm2d {
            weight: Buffer::new(affine(&bn.weight, 1.0)?),
            bias: Buffer::new(affine(&bn.bias, 0.0)?),
            running_mean: Buffer::new(mean.clone()),
            running_var: Buffer::new(bn.running_var.tensor()),
            eps: bn.eps,
        })
    }
}

impl Module for FrozenBatchNorm2d {
    // Typed access (`for_each_module`, `replace_modules`) finds this hand-written module too.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.buffer("weight", &self.weight);
        v.buffer("bias", &self.bias);
        v.buffer("running_mean", &self.running_mean);
        v.buffer("running_var", &self.running_var);
    }

    /// Drops `{prefix}num_batches_tracked` (a BatchNorm state's batch count), as torchvision.
    fn upgrade_state(&self, prefix: &str, state: &mut StateDict, _from: Option<u32>) -> Result<Vec<Migrated>> {
        let key = format!("{prefix}num_batches_tracked");
        Ok(match state.remove(&key) {
            Some(_) => vec![Migrated { key, action: "dropped: a FrozenBatchNorm2d keeps no batch count".into() }],
            None => Vec::new(),
        })
    }
}

impl Forward for FrozenBatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.running_mean.shape()[0];
        if x.rank() != 4 || x.shape()[1] != c {
            return Err(Error::shape("FrozenBatchNorm2d", &[x.shape()], format!("expected [n, {c}, h, w]")));
        }
        let s = |b: &Buffer| b.tensor().reshape(&[1, c, 1, 1]);
        normalize(
            x,
            &s(&self.running_mean)?,
            &s(&self.running_var)?,
            Some(&s(&self.weight)?),
            Some(&s(&self.bias)?),
            self.eps,
        )
    }
}
