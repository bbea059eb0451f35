//! The kernel trait every backend implements, and the op families as enums.
//!
//! A new kernel is one enum variant here and one arm per backend. Shape rules live in
//! `autograd` (one place per op); kernels receive operands that already satisfy them:
//! `binary`/`where_cond` operands are broadcast to one shape, `matmul` operands have equal
//! (possibly stride-0) batch dims. Data-dependent checks (index ranges) are the kernels'.
use crate::{CpuStorage, DType, Device, Layout, Result};

/// Element-wise unary ops. Float dtypes only, except `Neg`, `Abs`, `Sign`, `Affine` on i64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// `sqrt(x)`
    Sqrt,
    /// `1 / sqrt(x)`
    Rsqrt,
    /// `1 / x`
    Recip,
    /// `tanh(x)`
    Tanh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `max(x, 0)`
    Relu,
    /// exact GELU, `x * Phi(x)` (erf form, PyTorch's default)
    Gelu,
    /// d/dx of exact GELU: `Phi(x) + x * phi(x)`
    GeluGrad,
    /// `erf(x)`
    Erf,
    /// `sin(x)`
    Sin,
    /// `cos(x)`
    Cos,
    /// -1, 0 or 1
    Sign,
    /// 1 where `x > 0`, else 0 (the relu mask)
    Step,
    /// `x^p`
    Powf(f64),
    /// `min(max(x, lo), hi)`
    Clamp(f64, f64),
    /// 1 where `lo <= x <= hi`, else 0 (the clamp mask)
    InRange(f64, f64),
    /// `x * mul + add` (scalar arithmetic)
    Affine(f64, f64),
}

/// Element-wise binary ops on operands of one shape and dtype. Comparisons return the
/// operands' dtype holding 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `a ^ b` (floats)
    Pow,
    /// `max(a, b)`
    Maximum,
    /// `min(a, b)`
    Minimum,
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
    /// `a > b`
    Gt,
    /// `a >= b`
    Ge,
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
}

impl BinaryOp {
    /// True for the comparisons (never differentiable).
    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le)
    }
}

/// Reductions over a set of axes. The output keeps the reduced axes with size 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Maximum (NaN propagates).
    Max,
    /// Minimum (NaN propagates).
    Min,
    /// Index of the first maximum along one axis (i64 output).
    ArgMax,
    /// Index of the first minimum along one axis (i64 output).
    ArgMin,
}

/// A random distribution for [`Kernels::rand`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Uniform on `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Normal with mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
}

/// Hyper-parameters of a 2-D convolution, per spatial axis (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Step between applications of the kernel.
    pub stride: (usize, usize),
    /// Zero padding on each side.
    pub padding: (usize, usize),
    /// Spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels split into this many independent convs.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

impl Conv2dParams {
    /// Output spatial size for an input of `(h, w)` and a kernel of `(kh, kw)`, or `None`
    /// when the (padded) input is smaller than the dilated kernel.
    pub fn output_hw(&self, (h, w): (usize, usize), (kh, kw): (usize, usize)) -> Option<(usize, usize)> {
        let axis = |n: usize, k: usize, s: usize, p: usize, d: usize| {
            // Checked: padding, dilation and kernel sizes come from the user.
            let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
            let padded = p.checked_mul(2)?.checked_add(n)?;
            (padded >= span && s > 0).then(|| (padded - span) / s + 1)
        };
        Some((
            axis(h, kh, self.stride.0, self.padding.0, self.dilation.0)?,
            axis(w, kw, self.stride.1, self.padding.1, self.dilation.1)?,
        ))
    }
}

/// One fused optimizer update for [`Kernels::optim_step`], with this step's scalars
/// already resolved (bias corrections included), so a kernel does only per-element
/// arithmetic, in the parameter's dtype, in the order `nn`'s tensor-op reference composes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimStep {
    /// SGD (`torch.optim.SGD`): `d = g + weight_decay p` (when the decay is not 0); with
    /// momentum, `b = d` when `init` else `b = momentum b + (1 - dampening) d`, and then
    /// `d = d + momentum b` (Nesterov) or `d = b`; finally `p = p - lr d`. State: `[b]` with
    /// momentum, none without.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// L2 penalty added to the gradient (0: none).
        weight_decay: f64,
        /// Momentum factor (0: plain SGD, no state).
        momentum: f64,
        /// Dampening of the momentum's new term.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// The buffer is new: it is set to `d` (its previous contents are not read).
        init: bool,
    },
    /// Adam / AdamW (`torch.optim.Adam(W)`): with the decay not 0, `p = p (1 - lr wd)`
    /// (`decoupled`, AdamW) or `g = g + wd p` (Adam); `m = b1 m + (1 - b1) g`,
    /// `v = b2 v + (1 - b2) g^2`, `p = p - step_size m / (sqrt(v) inv_bias2_sqrt + eps)`.
    /// State: `[m, v]` (`exp_avg`, `exp_avg_sq`).
    Adam {
        /// Learning rate (for the decoupled decay).
        lr: f64,
        /// `beta1`.
        beta1: f64,
        /// `beta2`.
        beta2: f64,
        /// Added to the denominator.
        eps: f64,
        /// Weight decay (0: none).
        weight_decay: f64,
        /// AdamW's decay of the weight itself instead of Adam's L2 term.
        decoupled: bool,
        /// `lr / (1 - beta1^t)`.
        step_size: f64,
        /// `1 / sqrt(1 - beta2^t)`.
        inv_bias2_sqrt: f64,
    },
}

impl OptimStep {
    /// How many state buffers the update reads and writes.
    pub fn state_len(&self) -> usize {
        match self {
            OptimStep::Sgd { momentum, .. } => usize::from(*momentum != 0.0),
            OptimStep::Adam { .. } => 2,
        }
    }
}

/// The kernels a backend provides: about twenty methods, op families as enums. Anything
/// else is composed from these in `autograd`.
///
/// Outputs are always fresh contiguous storages (the one exception, [`Kernels::optim_step`],
/// updates storages its caller holds uniquely); inputs come with their [`Layout`] and may
/// be strided (transposed, sliced, broadcast). Storage on a GPU is read back only through
/// [`Kernels::to_host`], which may wait for queued work.
pub trait Kernels {
    /// This backend's storage type.
    type Storage;

    /// The device the kernels run on.
    fn device(&self) -> Device;

    /// Copies host data onto the device.
    #[allow(clippy::wrong_self_convention)] // a backend method, not a constructor
    fn from_host(&self, data: &CpuStorage) -> Result<Self::Storage>;
    /// Copies the elements of the view `l` back to the host, contiguous. On a device that
    /// runs kernels asynchronously this waits for them and returns the deferred error of
    /// any that failed since the last read ([`crate::Error::Index`] from an index op).
    fn to_host(&self, x: &Self::Storage, l: &Layout) -> Result<CpuStorage>;
    /// Waits for queued work and returns its deferred error, as [`Kernels::to_host`] does,
    /// without reading data. Backends that run synchronously have nothing to wait for.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// `numel` elements all equal to `value`.
    fn fill(&self, numel: usize, dtype: DType, value: f64) -> Result<Self::Storage>;
    /// `numel` random elements; element `i` depends only on `(seed, i)`, so results do not
    /// depend on the number of threads, nor on the device.
    fn rand(&self, numel: usize, dtype: DType, dist: Distribution, seed: u64) -> Result<Self::Storage>;

    /// The view `l` copied to a contiguous storage.
    fn copy_strided(&self, x: &Self::Storage, l: &Layout) -> Result<Self::Storage>;
    /// The view `l` converted to `dtype` (floats to i64 truncate toward zero).
    fn cast(&self, x: &Self::Storage, l: &Layout, dtype: DType) -> Result<Self::Storage>;

    /// Element-wise `op(x)`.
    fn unary(&self, op: UnaryOp, x: &Self::Storage, l: &Layout) -> Result<Self::Storage>;
    /// Element-wise `op(a, b)`; `la` and `lb` have the same shape.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Self::Storage,
        la: &Layout,
        b: &Self::Storage,
        lb: &Layout,
    ) -> Result<Self::Storage>;
    /// `cond != 0 ? a : b`, all three of one shape; `a` and `b` of one dtype.
    fn where_cond(
        &self,
        cond: &Self::Storage,
        lc: &Layout,
        a: &Self::Storage,
        la: &Layout,
        b: &Self::Storage,
        lb: &Layout,
    ) -> Result<Self::Storage>;

    /// Reduces over `axes` (sorted, distinct); the output keeps them with size 1. ArgMax and
    /// ArgMin take exactly one axis and return i64.
    fn reduce(&self, op: ReduceOp, x: &Self::Storage, l: &Layout, axes: &[usize]) -> Result<Self::Storage>;
    /// Numerically stable softmax (or log-softmax) along `axis`.
    fn softmax(&self, x: &Self::Storage, l: &Layout, axis: usize, log: bool) -> Result<Self::Storage>;

    /// `[..., m, k] x [..., k, n] -> [..., m, n]`; the batch dims of `la` and `lb` are equal
    /// (broadcast already, stride 0 allowed). Any strides: a transposed operand is not copied.
    fn matmul(&self, a: &Self::Storage, la: &Layout, b: &Self::Storage, lb: &Layout) -> Result<Self::Storage>;

    /// `x [n, c_in, h, w]` conv `w [c_out, c_in / groups, kh, kw]` -> `[n, c_out, oh, ow]`.
    fn conv2d(
        &self,
        x: &Self::Storage,
        lx: &Layout,
        w: &Self::Storage,
        lw: &Layout,
        p: &Conv2dParams,
    ) -> Result<Self::Storage>;
    /// Gradient of conv2d w.r.t. its input (col2im), for an input of spatial size `input_hw`.
    fn conv2d_grad_input(
        &self,
        grad: &Self::Storage,
        lg: &Layout,
        w: &Self::Storage,
        lw: &Layout,
        p: &Conv2dParams,
        input_hw: (usize, usize),
    ) -> Result<Self::Storage>;
    /// Gradient of conv2d w.r.t. its weight, for a kernel of size `kernel_hw`.
    fn conv2d_grad_weight(
        &self,
        x: &Self::Storage,
        lx: &Layout,
        grad: &Self::Storage,
        lg: &Layout,
        p: &Conv2dParams,
        kernel_hw: (usize, usize),
    ) -> Result<Self::Storage>;

    /// `out[.., i, ..] = x[.., idx[i], ..]` along `dim`; `idx` is 1-D i64.
    fn index_select(
        &self,
        x: &Self::Storage,
        lx: &Layout,
        dim: usize,
        idx: &Self::Storage,
        li: &Layout,
    ) -> Result<Self::Storage>;
    /// `out[p] = x[p with p[dim] = idx[p]]`; `idx` (i64) has the output's shape, which
    /// matches `x` except along `dim`.
    fn gather(
        &self,
        x: &Self::Storage,
        lx: &Layout,
        dim: usize,
        idx: &Self::Storage,
        li: &Layout,
    ) -> Result<Self::Storage>;
    /// A copy of `dst` with `out[p with p[dim] = idx[p]] += src[p]` for every position `p`
    /// of `src`; `idx` (i64) has `src`'s shape.
    #[allow(clippy::too_many_arguments)]
    fn scatter_add(
        &self,
        dst: &Self::Storage,
        ld: &Layout,
        dim: usize,
        idx: &Self::Storage,
        li: &Layout,
        src: &Self::Storage,
        ls: &Layout,
    ) -> Result<Self::Storage>;
    /// Concatenation along `dim` of views that agree on every other dim.
    fn cat(&self, parts: &[(&Self::Storage, &Layout)], dim: usize) -> Result<Self::Storage>;

    /// One fused optimizer update **in place** (the one kernel that writes into its
    /// operands): `param` and the [`OptimStep::state_len`] buffers of `state` are whole
    /// contiguous float storages of one length and dtype, overwritten where they lie;
    /// `grad` (same dtype) is read through `lg`, of `param`'s element count. The caller
    /// guarantees nothing else shares the written storages (see `Tensor::optim_step_`).
    fn optim_step(
        &self,
        step: &OptimStep,
        param: &mut Self::Storage,
        grad: &Self::Storage,
        lg: &Layout,
        state: &mut [&mut Self::Storage],
    ) -> Result<()>;
}
