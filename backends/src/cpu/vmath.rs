//! f32 transcendental functions in a form the compiler vectorises, and the run-time SIMD
//! dispatch the element-wise kernels run their loops under.
//!
//! `std`'s `f32::exp`, `ln`, `tanh` call the platform libm once per element, so no loop
//! around them vectorises (softmax was 8x slower than PyTorch for that alone). The
//! functions here are branch-free: a clamp, exponent arithmetic on the bits, a polynomial,
//! selects for the special values. Inlined into a plain slice loop they become SIMD code,
//! and [`vectorized`] compiles that loop for the widest instruction set the CPU has
//! (AVX-512, AVX2 + FMA, else the SSE2 baseline), chosen at run time by `pulp`.
//!
//! Errors against an f64 reference rounded to f32, measured by the tests below over every
//! f32 in the stated ranges (every 101st bit pattern):
//! - `exp`: at most 1 ulp on `[-87, 88]` (Cephes' `expf`: `x = k ln2 + r`, degree-6
//!   polynomial of `e^r`); subnormal results rounded once; `exp(-inf) = 0`, overflow `inf`.
//! - `ln`: at most 1 ulp over all positive floats, subnormals included (Cephes' `logf`).
//! - `tanh`: at most 2 ulp (Cephes' `tanhf`: odd polynomial below 0.625, `1 - 2/(e^2x+1)`
//!   above). `sigmoid = 1 / (1 + e^-x)`: at most 2 ulp.
//! - `erf`: Taylor series below 0.5 (at most 2 ulp), above it `1 - erfc` with the Numerical
//!   Recipes erfc fit (relative error 1.2e-7, the cubecl kernels' f32 erf), so at most
//!   1.2e-7 absolute. GELU and its derivative use `Phi(x) = erfc(-x/sqrt2)/2` directly, so
//!   GELU keeps its relative accuracy for negative `x` where `1 + erf` would cancel.
//!
//! f64 kernels keep `std` and libm (gradient checks run in f64; accuracy first there).
// Polynomial coefficients are written as their fits printed them (more digits than f32
// holds); the compiler rounds each to the nearest f32, which is what was fitted for.
#![allow(clippy::excessive_precision)]

/// Runs `f` compiled for the widest SIMD level this CPU supports, so that plain loops
/// inside it (with these functions inlined) vectorise at that width.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    static ARCH: std::sync::OnceLock<pulp::Arch> = std::sync::OnceLock::new();
    ARCH.get_or_init(pulp::Arch::new).dispatch(f)
}

/// `x` where `c`, else `y`: written as a plain `if` so it lowers to a blend.
#[inline(always)]
fn sel(c: bool, x: f32, y: f32) -> f32 {
    if c {
        x
    } else {
        y
    }
}

/// `2^k` for `k` in the normal exponent range `[-126, 127]`.
#[inline(always)]
fn pow2i(k: i32) -> f32 {
    f32::from_bits(((k + 127) << 23) as u32)
}

/// `e^x`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits
                                     // NaN fails both comparisons and propagates.
    let x = sel(x > 89.0, 89.0, sel(x < -104.0, -104.0, x));
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND; // round(x log2 e)
    let k = t.to_bits() as i32 - ROUND.to_bits() as i32; // the same integer
                                                         // ln 2 in two parts (Cephes C1 has 9 bits, so n * C1 is exact)
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.500_000_01;
    let e = p * (r * r) + r + 1.0;
    // 2^k as two factors that stay normal for k in [-150, 129]: subnormal results are
    // rounded once, and k = 128 overflows to inf as it should.
    let k1 = k >> 1;
    e * pow2i(k1) * pow2i(k - k1)
}

/// Natural logarithm: NaN below 0, `-inf` at 0.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let sub = x < f32::MIN_POSITIVE;
    let xs = sel(sub, x * 8_388_608.0, x); // subnormals scaled by 2^23 into the normal range
    let bits = xs.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126 - if sub { 23 } else { 0 };
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // x = m 2^e, m in [0.5, 1)
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (e - low as i32) as f32;
    let f = sel(low, m + m, m) - 1.0; // m in [sqrt(1/2), sqrt(2)) - 1
    let z = f * f;
    let p = (((((((7.037_683_6e-2 * f - 0.115_146_1) * f + 0.116_769_99) * f - 0.124_201_41) * f + 0.142_493_23) * f
        - 0.166_680_57)
        * f
        + 0.200_007_15)
        * f
        - 0.249_999_94)
        * f
        + 0.333_333_3;
    let y = f * z * p + e * -2.121_944_4e-4 - 0.5 * z;
    let r = f + y + e * 0.693_359_4;
    let r = sel(x == f32::INFINITY, x, r);
    let r = sel(x == 0.0, f32::NEG_INFINITY, r);
    sel(x < 0.0, f32::NAN, sel(x.is_nan(), x, r))
}

/// `tanh(x)`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 0.133_314_42) * z - 0.333_332_82) * z * x
            + x;
    // e^(2|x|) overflows to inf past 44, giving exactly 1
    let large = (1.0 - 2.0 / (exp(a + a) + 1.0)).copysign(x);
    sel(a < 0.625, small, large)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `erf(z)` for `0 <= z < 0.5`: its Taylor series to `z^13` (truncation below 1e-9
/// relative), as `z + z P(z^2)` so the leading term is exact.
#[inline(always)]
fn erf_small(z: f32) -> f32 {
    const K: f64 = std::f64::consts::FRAC_2_SQRT_PI;
    const C: [f32; 7] = [
        (K - 1.0) as f32,
        (-K / 3.0) as f32,
        (K / 10.0) as f32,
        (-K / 42.0) as f32,
        (K / 216.0) as f32,
        (-K / 1320.0) as f32,
        (K / 9360.0) as f32,
    ];
    let z2 = z * z;
    let p = (((((C[6] * z2 + C[5]) * z2 + C[4]) * z2 + C[3]) * z2 + C[2]) * z2 + C[1]) * z2 + C[0];
    z + z * p
}

/// `erfc(z)` for `z >= 0`: Numerical Recipes' Chebyshev fit, relative error below 1.2e-7.
#[inline(always)]
fn erfc_fit(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = ((((((((0.170_872_77 * t - 0.822_152_2) * t + 1.488_515_9) * t - 1.135_204) * t + 0.278_868_08) * t
        - 0.186_288_06)
        * t
        + 0.096_784_18)
        * t
        + 0.374_091_96)
        * t
        + 1.000_023_7)
        * t
        - 1.265_512_2;
    t * exp(p - z * z)
}

/// The error function.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs();
    // NaN takes the second branch, where it propagates
    sel(z < 0.5, erf_small(z), 1.0 - erfc_fit(z)).copysign(x)
}

/// The standard normal CDF `Phi(x) = erfc(-x / sqrt 2) / 2`.
#[inline(always)]
fn phi(x: f32) -> f32 {
    let u = x * std::f32::consts::FRAC_1_SQRT_2;
    let z = u.abs();
    let tail = 0.5 * erfc_fit(z);
    let far = sel(u < 0.0, tail, 1.0 - tail);
    sel(z < 0.5, 0.5 + 0.5 * erf_small(z).copysign(u), far)
}

/// Exact (erf) GELU, `x Phi(x)`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * phi(x)
}

/// d/dx GELU: `Phi(x) + x phi(x)`, `phi` the normal density.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    phi(x) + x * FRAC_1_SQRT_2PI * exp(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps between `got` and the f64 reference rounded to f32.
    fn ulps(got: f32, want: f64) -> u32 {
        let want = want as f32;
        if got == want || (got.is_nan() && want.is_nan()) {
            return 0;
        }
        if got.is_nan() || want.is_nan() || got.is_infinite() || want.is_infinite() {
            return u32::MAX;
        }
        // ordered integer images of the floats: adjacent floats differ by 1
        let key = |v: f32| {
            let b = v.to_bits() as i32;
            if b < 0 {
                i32::MIN - b
            } else {
                b
            }
        };
        (key(got) as i64 - key(want) as i64).unsigned_abs() as u32
    }

    /// Every 101st f32 in `[lo, hi]` (both signs handled), through `f` and its reference.
    const STEP: u32 = 101;

    fn worst(lo: f32, hi: f32, f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64) -> (u32, f32) {
        let mut worst = (0, 0.0);
        let mut x = lo;
        while x <= hi {
            let u = ulps(f(x), reference(x as f64));
            if u > worst.0 {
                worst = (u, x);
            }
            let b = x.to_bits();
            x = if x < 0.0 {
                if b <= 0x8000_0000 + STEP {
                    0.0
                } else {
                    f32::from_bits(b - STEP)
                }
            } else {
                f32::from_bits(b + STEP)
            };
        }
        worst
    }

    #[test]
    fn exp_is_within_one_ulp() {
        let (u, x) = worst(-87.0, 88.0, exp, f64::exp);
        assert!(u <= 1, "exp: {u} ulp at {x}");
        // subnormal results, rounded once
        let (u, x) = worst(-103.0, -87.0, exp, f64::exp);
        assert!(u <= 1, "exp (subnormal results): {u} ulp at {x}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn ln_is_within_one_ulp() {
        let (u, x) = worst(f32::from_bits(1), f32::MAX, ln, f64::ln);
        assert!(u <= 1, "ln: {u} ulp at {x}");
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan() && ln(f32::NEG_INFINITY).is_nan());
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn tanh_and_sigmoid_are_within_two_ulp() {
        let (u, x) = worst(-20.0, 20.0, tanh, f64::tanh);
        assert!(u <= 2, "tanh: {u} ulp at {x}");
        let (u, x) = worst(-80.0, 80.0, sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
        assert!(u <= 2, "sigmoid: {u} ulp at {x}");
        assert_eq!((tanh(100.0), tanh(-100.0), tanh(f32::INFINITY)), (1.0, -1.0, 1.0));
        assert_eq!((sigmoid(f32::NEG_INFINITY), sigmoid(f32::INFINITY)), (0.0, 1.0));
        assert!(tanh(f32::NAN).is_nan() && sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn erf_and_gelu_accuracy() {
        let (u, x) = worst(-0.4999, 0.4999, erf, libm::erf);
        assert!(u <= 2, "erf below 0.5: {u} ulp at {x}");
        let mut x = -6.0f32;
        let (mut worst_erf, mut worst_gelu, mut worst_grad) = (0.0f64, 0.0f64, 0.0f64);
        while x <= 6.0 {
            let xd = x as f64;
            let phi = 0.5 * (1.0 + libm::erf(xd * std::f64::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst_erf = worst_erf.max((erf(x) as f64 - libm::erf(xd)).abs());
            // relative to |x| Phi(x) + 1e-30: GELU keeps relative accuracy for negative x
            let g = xd * phi;
            worst_gelu = worst_gelu.max((gelu(x) as f64 - g).abs() / (g.abs() + 1e-30));
            worst_grad = worst_grad.max((gelu_grad(x) as f64 - (phi + xd * pdf)).abs());
            x += 1.0 / 1024.0;
        }
        assert!(worst_erf <= 1.3e-7, "erf: {worst_erf:e} absolute");
        assert!(worst_gelu <= 1e-5, "gelu: {worst_gelu:e} relative");
        assert!(worst_grad <= 3e-7, "gelu_grad: {worst_grad:e} absolute");
        assert_eq!((erf(10.0), erf(-10.0), erf(0.0)), (1.0, -1.0, 0.0));
        assert!(erf(f32::NAN).is_nan() && gelu(f32::NAN).is_nan());
    }

    #[test]
    fn dispatched_loops_compute_the_same_values() {
        // The same function inside and outside the dispatch: SIMD must not change results.
        let xs: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.037).collect();
        let plain: Vec<f32> = xs.iter().map(|&x| exp(x) + tanh(x) + erf(x) + ln(x.abs())).collect();
        let simd: Vec<f32> = vectorized(
            #[inline(always)]
            || xs.iter().map(|&x| exp(x) + tanh(x) + erf(x) + ln(x.abs())).collect(),
        );
        assert_eq!(
            plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            simd.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
