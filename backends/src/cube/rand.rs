//! Counter-based random numbers on the device, with `crate::rng`'s formula: element `i` is
//! SplitMix64's finaliser of `mix(seed ^ stream * C) + i * golden`, so a draw is the same
//! on every device and thread count.
//!
//! The seed-only part `mix(seed ^ stream * C)` and the mixer's multipliers are computed on
//! the host and passed as u64 scalars; the kernel does the per-element 64-bit integer work.
//! Uniforms are exact (bit-identical to the CPU) when the device has f64; normals use the
//! device's ln/cos (f64 polyfills on wgpu), equal to the CPU within ~1e-15 in f64. Devices
//! without u64 or f64 in shaders draw in f32 (values close to, not equal to, the CPU's).
use cubecl::prelude::*;

use super::elementwise::{cos_f, ln_f};
use super::{with_float, CubeStorage, GpuBackend};
use crate::{DType, Distribution, Error, Result};

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
const STREAM: u64 = 0xd1b5_4a32_d192_ed03;
const M1: u64 = 0xbf58_476d_1ce4_e5b9;
const M2: u64 = 0x94d0_49bb_1331_11eb;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(M1);
    z = (z ^ (z >> 27)).wrapping_mul(M2);
    z ^ (z >> 31)
}

#[cube]
fn mix_d(z0: u64, m1: u64, m2: u64) -> u64 {
    let mut z = z0;
    z = (z ^ (z >> 30)) * m1;
    z = (z ^ (z >> 27)) * m2;
    z ^ (z >> 31)
}

/// The 53-bit integer of a draw, as a float (exact in f64).
#[cube]
fn top53<W: Float>(bits: u64) -> W {
    let b = bits >> 11;
    // Two exact halves: u64 -> float conversion is not available everywhere.
    let hi = u32::cast_from(b >> 32);
    let lo = u32::cast_from(b - ((b >> 32) << 32));
    W::cast_from(hi) * W::new(4_294_967_296.0) + W::cast_from(lo)
}

/// `out[i] = a + b * u(i)` (uniform) or `a + b * z(i)` (normal), computed in `W`, stored as `F`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rand_kernel<W: Float + CubeElement, F: Float>(
    out: &mut Array<F>,
    n: usize,
    base0: u64,
    base1: u64,
    golden: u64,
    m1: u64,
    m2: u64,
    a: W,
    b: W,
    #[comptime] normal: bool,
    #[comptime] poly: bool,
) {
    if ABSOLUTE_POS < n {
        let i = u64::cast_from(ABSOLUTE_POS);
        let scale = W::new(1.0) / W::new(9_007_199_254_740_992.0); // 2^-53
        let u = top53::<W>(mix_d(base0 + i * golden, m1, m2)) * scale;
        let mut v = u;
        if comptime![normal] {
            let u1 = (top53::<W>(mix_d(base1 + i * golden, m1, m2)) + W::new(1.0))
                / (W::new(9_007_199_254_740_992.0) + W::new(1.0));
            let tau = W::new(6.283_185_5) + W::new(-1.748_455_5e-7);
            v = W::sqrt(W::new(-2.0) * ln_f::<W>(u1, poly)) * cos_f::<W>(tau * u, poly);
        }
        out[ABSOLUTE_POS] = F::cast_from(a + b * v);
    }
}

impl<R: Runtime> GpuBackend<R> {
    pub(super) fn rand_impl(&self, n: usize, dtype: DType, dist: Distribution, seed: u64) -> Result<CubeStorage> {
        self.check("rand", dtype)?;
        if !self.u64 {
            return Err(Error::Unsupported {
                op: "rand",
                msg: format!("{} has no 64-bit integers in shaders", self.device),
            });
        }
        let out = self.alloc(n, dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let (base0, base1) = (mix(seed), mix(seed ^ STREAM));
        let (a, b, normal) = match dist {
            Distribution::Uniform { lo, hi } => (lo, hi - lo, false),
            Distribution::Normal { mean, std } => (mean, std, true),
        };
        let (count, dim) = self.grid(n);
        let o = self.array(&out);
        if self.f64 {
            let poly = self.poly(DType::F64);
            with_float!("rand", dtype, F => rand_kernel::launch::<f64, F, R>(
                &self.client, count, dim, o, n, base0, base1, GOLDEN, M1, M2, a, b, normal, poly
            ));
        } else {
            with_float!("rand", dtype, F => rand_kernel::launch::<f32, F, R>(
                &self.client, count, dim, o, n, base0, base1, GOLDEN, M1, M2, a as f32, b as f32, normal, false
            ));
        }
        Ok(out)
    }
}
