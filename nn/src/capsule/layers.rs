//! [`PrimaryCapsules`] (a convolution whose channels are grouped into capsules, squashed) and
//! [`DigitCapsules`] (one transformation matrix per input/output capsule pair, then dynamic
//! routing).
//!
//! DigitCapsules computes every prediction `u_hat_j|i = W_ij u_i` with ONE batched matmul:
//! for each input capsule `i`, `u[:, i, :] [b, in_dim] x W_i^T [in_dim, out_caps * out_dim]`,
//! batched over `i`; the result `[i, b, j * d]` is then copied once into `[b, j, i, d]`
//! order for routing.
use stategrad_autograd::{Conv2dParams, Error, Result, Tensor};

use super::routing::{dynamic_routing, squash, Routed, RoutingMode, SQUASH_EPS};
use crate::{Conv2d, Forward, Module, Param};

/// Convolutional capsules: a convolution with `types * dim` output channels whose outputs,
/// at every position, form `types` capsules of `dim` components, squashed.
///
/// `[b, c, h, w] -> [b, types * h' * w', dim]`; capsule `(t, y, x)` has index
/// `(t * h' + y) * w' + x`.
#[derive(Module, Clone, Debug)]
pub struct PrimaryCapsules {
    /// The convolution (`types * dim` output channels).
    pub conv: Conv2d,
    /// Components per capsule (not state).
    pub dim: usize,
}

impl PrimaryCapsules {
    /// `types` capsule types of `dim` components from a `kernel x kernel` convolution with
    /// `stride` over `in_channels` channels (the paper: 32 types, 8-D, 9x9, stride 2).
    pub fn new(in_channels: usize, types: usize, dim: usize, kernel: usize, stride: usize) -> Result<Self> {
        let params = Conv2dParams { stride: (stride, stride), ..Default::default() };
        Ok(PrimaryCapsules { conv: Conv2d::new(in_channels, types * dim, (kernel, kernel), params)?, dim })
    }
}

impl Forward for PrimaryCapsules {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?; // [b, types * dim, h, w]
        let (b, ch, h, w) = (y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]);
        let types = ch / self.dim;
        let u = y.reshape(&[b, types, self.dim, h * w])?.transpose(2, 3)?.reshape(&[b, types * h * w, self.dim])?;
        squash(&u, -1, SQUASH_EPS)
    }
}

/// Fully connected capsules with dynamic routing: `[b, in_caps, in_dim] -> [b, out_caps,
/// out_dim]`, with one matrix `W_ij [out_dim, in_dim]` per capsule pair.
///
/// The routing logits and coefficients are per-example state computed in each forward pass:
/// `weight` is this layer's only state.
#[derive(Module, Clone, Debug)]
pub struct DigitCapsules {
    /// `W [in_caps, out_caps, out_dim, in_dim]`.
    pub weight: Param,
    /// Routing iterations (the paper: 3). Not state.
    pub iters: usize,
    /// Whether the routing coefficients are on the tape. Not state.
    #[module(skip)]
    pub mode: RoutingMode,
}

impl DigitCapsules {
    /// A layer with `W` drawn from `N(0, w_std^2)` (default dtype and device: see
    /// `TensorOptions::scope`).
    pub fn new(
        in_caps: usize,
        in_dim: usize,
        out_caps: usize,
        out_dim: usize,
        iters: usize,
        mode: RoutingMode,
        w_std: f64,
    ) -> Result<Self> {
        let w = Tensor::randn(&[in_caps, out_caps, out_dim, in_dim], 0.0, w_std, None, None)?;
        Self::from_weight(w, iters, mode)
    }

    /// A layer over a given `W [in_caps, out_caps, out_dim, in_dim]`.
    pub fn from_weight(w: Tensor, iters: usize, mode: RoutingMode) -> Result<Self> {
        if w.rank() != 4 || iters == 0 {
            return Err(Error::shape(
                "DigitCapsules",
                &[w.shape()],
                format!("expected W [in_caps, out_caps, out_dim, in_dim] and iters >= 1 (got {iters})"),
            ));
        }
        Ok(DigitCapsules { weight: Param::new(w), iters, mode })
    }

    /// The predictions `u_hat [b, out_caps, in_caps, out_dim]` of the input
    /// capsules `u [b, in_caps, in_dim]`: [`capsule_predictions`] with this layer's `W`.
    pub fn predictions(&self, u: &Tensor) -> Result<Tensor> {
        capsule_predictions(u, &self.weight.tensor()?)
    }

    /// Output capsules and the final coupling coefficients for input capsules `u`.
    pub fn route(&self, u: &Tensor) -> Result<Routed> {
        dynamic_routing(&self.predictions(u)?, self.iters, self.mode)
    }
}

impl Forward for DigitCapsules {
    /// `[b, in_caps, in_dim] -> [b, out_caps, out_dim]`.
    fn forward(&self, u: &Tensor) -> Result<Tensor> {
        Ok(self.route(u)?.v)
    }
}

/// `u_hat[b, j, i, :] = W[i, j] u[b, i, :]` for `u [b, in_caps, in_dim]` and
/// `W [in_caps, out_caps, out_dim, in_dim]`, by one matmul batched over the input capsules;
/// returns `[b, out_caps, in_caps, out_dim]`, contiguous.
pub fn capsule_predictions(u: &Tensor, w: &Tensor) -> Result<Tensor> {
    let bad = |msg: String| Error::shape("DigitCapsules", &[u.shape(), w.shape()], msg);
    let [i, j, d, k]: [usize; 4] = w.shape().try_into().map_err(|_| bad("W must be 4-D".into()))?;
    if u.rank() != 3 || u.shape()[1] != i || u.shape()[2] != k {
        return Err(bad(format!("expected input capsules [batch, {i}, {k}]")));
    }
    let b = u.shape()[0];
    let lhs = u.transpose(0, 1)?; // [i, b, k]
    let rhs = w.reshape(&[i, j * d, k])?.transpose(1, 2)?; // [i, k, j d]
                                                           // One copy into [b, j, i, d] order: the routing matmuls then read each (b, j) block of
                                                           // i x d predictions contiguously (as a strided view, rows sat b * j * d elements apart:
                                                           // one TLB miss per 64-byte row, and routing grew faster than the batch).
    lhs.matmul(&rhs)?.reshape(&[i, b, j, d])?.permute(&[1, 2, 0, 3])?.contiguous()
}
