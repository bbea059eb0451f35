//! The fused optimizer update ([`OptimStep`]) on the device: one `#[cube]` kernel launch
//! per parameter, one thread per element, writing the parameter and its state buffers in
//! place. The arithmetic is the CPU kernel's and the tensor-op reference's, op by op; the
//! options are `#[comptime]`, so each combination compiles to its own branch-free kernel.
// `let mut y = ..; if comptime { y = .. }` is how a #[cube] fn picks an expression at
// expansion time; rustc sees the first value as dead.
#![allow(unused_assignments)]
use cubecl::prelude::*;

use super::{with_float, CubeStorage, GpuBackend};
use crate::{Error, Layout, OptimStep, Result};

const OP: &str = "optim_step";

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sgd_kernel<F: Float + CubeElement>(p: &mut Array<F>, g: &Array<F>, lr: F, wd: F, n: usize, #[comptime] decay: bool) {
    if ABSOLUTE_POS < n {
        let i = ABSOLUTE_POS;
        let mut d = g[i];
        if decay {
            d = d + p[i] * wd;
        }
        p[i] = p[i] - d * lr;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sgd_momentum_kernel<F: Float + CubeElement>(
    p: &mut Array<F>,
    g: &Array<F>,
    b: &mut Array<F>,
    lr: F,
    wd: F,
    momentum: F,
    keep: F,
    n: usize,
    #[comptime] decay: bool,
    #[comptime] init: bool,
    #[comptime] nesterov: bool,
) {
    if ABSOLUTE_POS < n {
        let i = ABSOLUTE_POS;
        let x = p[i];
        let mut d = g[i];
        if decay {
            d = d + x * wd;
        }
        let mut buf = d;
        if !init {
            buf = b[i] * momentum + d * keep;
        }
        b[i] = buf;
        let mut dir = buf;
        if nesterov {
            dir = d + buf * momentum;
        }
        p[i] = x - dir * lr;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_kernel<F: Float + CubeElement>(
    p: &mut Array<F>,
    g: &Array<F>,
    m: &mut Array<F>,
    v: &mut Array<F>,
    b1: F,
    keep1: F,
    b2: F,
    keep2: F,
    eps: F,
    wd: F,
    step_size: F,
    inv_bias2_sqrt: F,
    n: usize,
    #[comptime] decay: bool,
    #[comptime] decoupled: bool,
) {
    if ABSOLUTE_POS < n {
        let i = ABSOLUTE_POS;
        let mut x = p[i];
        let mut gi = g[i];
        if decay {
            if decoupled {
                // `wd` holds `1 - lr wd` here
                x = x * wd;
            } else {
                gi = gi + x * wd;
            }
        }
        let mm = m[i] * b1 + gi * keep1;
        let vv = v[i] * b2 + gi * gi * keep2;
        m[i] = mm;
        v[i] = vv;
        p[i] = x - mm / (F::sqrt(vv) * inv_bias2_sqrt + eps) * step_size;
    }
}

impl<R: Runtime> GpuBackend<R> {
    pub(super) fn optim_step_impl(
        &self,
        step: &OptimStep,
        p: &mut CubeStorage,
        g: &CubeStorage,
        lg: &Layout,
        state: &mut [&mut CubeStorage],
    ) -> Result<()> {
        self.same_device(OP, p)?;
        self.same_device(OP, g)?;
        for s in state.iter() {
            self.same_device(OP, s)?;
        }
        if let Some(other) = std::iter::once(g).chain(state.iter().map(|s| &**s)).find(|s| s.dtype != p.dtype) {
            return Err(Error::DTypeMismatch { op: OP, lhs: p.dtype, rhs: other.dtype });
        }
        let n = p.len;
        if lg.numel() != n || state.len() != step.state_len() || state.iter().any(|s| s.len != n) {
            let mut shapes = vec![vec![n], lg.shape().to_vec()];
            shapes.extend(state.iter().map(|s| vec![s.len]));
            let msg = format!(
                "the parameter, its gradient and {} state buffers must have one element count (got {} buffers)",
                step.state_len(),
                state.len()
            );
            return Err(Error::Shape { op: OP, shapes, msg });
        }
        self.check(OP, p.dtype)?;
        if n == 0 {
            return Ok(());
        }
        let g = self.contiguous(g, lg)?;
        let (count, dim) = self.grid(n);
        let (pa, ga) = (self.array(p), self.array(&g));
        match *step {
            OptimStep::Sgd { lr, weight_decay, momentum, dampening, nesterov, init } => {
                let decay = weight_decay != 0.0;
                match state {
                    [] => with_float!(OP, p.dtype, F => sgd_kernel::launch::<F, R>(
                        &self.client, count, dim, pa, ga, lr as F, weight_decay as F, n, decay
                    )),
                    [b, ..] => with_float!(OP, p.dtype, F => sgd_momentum_kernel::launch::<F, R>(
                        &self.client, count, dim, pa, ga, self.array(b), lr as F, weight_decay as F,
                        momentum as F, (1.0 - dampening) as F, n, decay, init, nesterov
                    )),
                }
            }
            OptimStep::Adam { lr, beta1, beta2, eps, weight_decay, decoupled, step_size, inv_bias2_sqrt } => {
                let [m, v] = state else { unreachable!("state_len checked above") };
                let decay = weight_decay != 0.0;
                let wd = if decoupled { 1.0 - lr * weight_decay } else { weight_decay };
                with_float!(OP, p.dtype, F => adam_kernel::launch::<F, R>(
                    &self.client, count, dim, pa, ga, self.array(m), self.array(v),
                    beta1 as F, (1.0 - beta1) as F, beta2 as F, (1.0 - beta2) as F, eps as F, wd as F,
                    step_size as F, inv_bias2_sqrt as F, n, decay, decoupled
                ))
            }
        }
        Ok(())
    }
}
