//! Element-wise kernels: the strided copy (the one place striding is implemented, as the
//! `#[cube]` helper [`offset_of`] every kernel shares), cast, fill, unary, binary, where.
//!
//! Inputs are strided views (`Tensor` arguments carry shape and strides; the view's offset
//! is a scalar, since buffer offsets must be aligned on wgpu); outputs are contiguous. Op
//! families are `#[comptime]` codes, so each op compiles to its own specialised kernel.
// `let mut y = ..; if comptime![..] { y = .. } else { y = .. }` is how a #[cube] fn picks
// an expression at expansion time; rustc sees the first value as dead.
#![allow(unused_assignments)]
use cubecl::prelude::*;

use super::{with_dtype, with_float, CubeStorage, GpuBackend};
use crate::{BinaryOp, DType, Error, Layout, Result, UnaryOp};

/// Storage offset of element `pos` (row-major over `t`'s shape) of the view `t` at `off`.
#[cube]
pub(super) fn offset_of<E: CubePrimitive>(t: &Tensor<E>, off: usize, pos: usize) -> usize {
    let mut rem = pos;
    let mut o = off;
    let rank = t.rank();
    for k in 0..rank {
        let d = rank - 1 - k;
        let s = t.shape(d);
        o += (rem % s) * t.stride(d);
        rem /= s;
    }
    o
}

#[cube(launch)]
fn copy_kernel<E: CubePrimitive>(x: &Tensor<E>, x_off: usize, out: &mut Tensor<E>, out_off: usize, n: usize) {
    if ABSOLUTE_POS < n {
        let src = offset_of::<E>(x, x_off, ABSOLUTE_POS);
        let dst = offset_of::<E>(out, out_off, ABSOLUTE_POS);
        out[dst] = x[src];
    }
}

#[cube(launch)]
fn cast_kernel<A: Numeric, B: Numeric>(x: &Tensor<A>, x_off: usize, out: &mut Array<B>, n: usize) {
    if ABSOLUTE_POS < n {
        out[ABSOLUTE_POS] = B::cast_from(x[offset_of::<A>(x, x_off, ABSOLUTE_POS)]);
    }
}

#[cube(launch)]
fn fill_kernel<E: Numeric + CubeElement>(out: &mut Array<E>, value: E, n: usize) {
    if ABSOLUTE_POS < n {
        out[ABSOLUTE_POS] = value;
    }
}

// Unary op codes (comptime).
const NEG: u32 = 0;
const ABS: u32 = 1;
const EXP: u32 = 2;
const LOG: u32 = 3;
const SQRT: u32 = 4;
const RSQRT: u32 = 5;
const RECIP: u32 = 6;
const TANH: u32 = 7;
const SIGMOID: u32 = 8;
const RELU: u32 = 9;
const GELU: u32 = 10;
const GELU_GRAD: u32 = 11;
const ERF: u32 = 12;
const SIN: u32 = 13;
const COS: u32 = 14;
const SIGN: u32 = 15;
const STEP: u32 = 16;
const POWF: u32 = 17;
const CLAMP: u32 = 18;
const IN_RANGE: u32 = 19;
const AFFINE: u32 = 20;

fn unary_code(op: UnaryOp) -> (u32, f64, f64) {
    match op {
        UnaryOp::Neg => (NEG, 0.0, 0.0),
        UnaryOp::Abs => (ABS, 0.0, 0.0),
        UnaryOp::Exp => (EXP, 0.0, 0.0),
        UnaryOp::Log => (LOG, 0.0, 0.0),
        UnaryOp::Sqrt => (SQRT, 0.0, 0.0),
        UnaryOp::Rsqrt => (RSQRT, 0.0, 0.0),
        UnaryOp::Recip => (RECIP, 0.0, 0.0),
        UnaryOp::Tanh => (TANH, 0.0, 0.0),
        UnaryOp::Sigmoid => (SIGMOID, 0.0, 0.0),
        UnaryOp::Relu => (RELU, 0.0, 0.0),
        UnaryOp::Gelu => (GELU, 0.0, 0.0),
        UnaryOp::GeluGrad => (GELU_GRAD, 0.0, 0.0),
        UnaryOp::Erf => (ERF, 0.0, 0.0),
        UnaryOp::Sin => (SIN, 0.0, 0.0),
        UnaryOp::Cos => (COS, 0.0, 0.0),
        UnaryOp::Sign => (SIGN, 0.0, 0.0),
        UnaryOp::Step => (STEP, 0.0, 0.0),
        UnaryOp::Powf(p) => (POWF, p, 0.0),
        UnaryOp::Clamp(lo, hi) => (CLAMP, lo, hi),
        UnaryOp::InRange(lo, hi) => (IN_RANGE, lo, hi),
        UnaryOp::Affine(m, a) => (AFFINE, m, a),
    }
}

/// Numerical Recipes' erfc Chebyshev fit, |error| < 1.2e-7: the f32 kernels' erf.
/// Coefficients are written as f32 pairs `hi + lo` so that f64 kernels get them to ~1e-15.
#[cube]
pub(super) fn erf_nr<F: Float>(x: F, #[comptime] poly: bool) -> F {
    let z = F::abs(x);
    let t = F::new(1.0) / (F::new(1.0) + F::new(0.5) * z);
    let mut p = F::new(0.170_872_76) + F::new(7.200_737e-9);
    p = F::new(-0.822_152_26) + F::new(2.696_563_7e-8) + t * p;
    p = F::new(1.488_515_9) + F::new(1.611_816_5e-8) + t * p;
    p = F::new(-1.135_204) + F::new(-2.244_232_2e-8) + t * p;
    p = F::new(0.278_868_08) + F::new(-9.185_486e-9) + t * p;
    p = F::new(-0.186_288_06) + F::new(-1.242_218e-9) + t * p;
    p = F::new(0.096_784_18) + F::new(-1.892_871_9e-9) + t * p;
    p = F::new(0.374_091_95) + F::new(6.960_830_6e-9) + t * p;
    p = F::new(1.000_023_7) + F::new(-4.264_862_2e-8) + t * p;
    let e = F::new(1.265_512_2) + F::new(1.987_915e-9);
    let r = t * exp_f::<F>(-z * z - e + t * p, poly);
    select(x >= F::new(0.0), F::new(1.0) - r, r - F::new(1.0))
}

/// erf to about 1e-15 relative, for f64 kernels (`crate::cpu::erf` is libm's, exact to an
/// ulp; erf_nr's 1.2e-7 would show in f64 GELU). For |x| < 2.5 the all-positive series
/// `erf(x) = 2/sqrt(pi) e^(-x^2) sum_n x (2x^2)^n / (1 3 5 ... (2n + 1))` (48 terms, no
/// cancellation); above, `1 - erfc(x)` with erfc's continued fraction
/// `e^(-x^2) / (sqrt(pi) (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))))` (48 levels);
/// 1 beyond 6. Both branches run on clamped inputs, so the unselected one cannot overflow.
#[cube]
fn erf_exact<F: Float>(x: F, #[comptime] poly: bool) -> F {
    let cut = F::new(2.5);
    let z = F::abs(x);
    let zs = select(z < cut, z, cut);
    let zc = select(z < cut, cut, z);
    let zs2 = zs * zs;
    let mut t = zs;
    let mut sum = zs;
    let mut n = 1u32.runtime();
    while n < 48 {
        t = t * F::new(2.0) * zs2 / F::cast_from(2u32 * n + 1);
        sum += t;
        n += 1;
    }
    let two_over_sqrt_pi = F::new(1.128_379_2) + F::new(-5.863_538_3e-8);
    let series = two_over_sqrt_pi * exp_f::<F>(-zs2, poly) * sum;
    let mut f = zc;
    let mut k = 48u32.runtime();
    while k > 0 {
        f = zc + F::cast_from(k) * F::new(0.5) / f;
        k -= 1;
    }
    let inv_sqrt_pi = F::new(0.564_189_6) + F::new(-2.931_769_1e-8);
    let tail = F::new(1.0) - exp_f::<F>(-zc * zc, poly) * inv_sqrt_pi / f;
    let mut y = select(z < cut, series, tail);
    y = select(z > F::new(6.0), F::new(1.0), y);
    y = select(x < F::new(0.0), -y, y);
    select(x != x, x, y)
}

/// erf for a kernel: [`erf_exact`] in f64, [`erf_nr`] (within f32 precision) in f32.
#[cube]
fn erf_f<F: Float>(x: F, #[comptime] exact: bool, #[comptime] poly: bool) -> F {
    let mut y = F::new(0.0);
    if comptime![exact] {
        y = erf_exact::<F>(x, poly);
    } else {
        y = erf_nr::<F>(x, poly);
    }
    y
}

/// `e^x`. With `poly` (f64 on wgpu: Vulkan's and WGSL's exp are 32-bit only) it is computed
/// with f64 arithmetic alone: `x = k ln2 + r` (ln2 in three f32-exact parts, so `k * part` is
/// exact), a degree-14 Taylor series of `e^r` for |r| <= ln2 / 2, and `2^k` by squaring.
#[cube]
pub(super) fn exp_f<F: Float>(x: F, #[comptime] poly: bool) -> F {
    let mut y = F::new(0.0);
    if comptime![poly] {
        y = exp_poly::<F>(x);
    } else {
        y = F::exp(x);
    }
    y
}

#[cube]
fn exp_poly<F: Float>(x: F) -> F {
    let k = F::floor(x * (F::new(1.442_695) + F::new(1.925_963e-8)) + F::new(0.5));
    let r = x - k * F::new(0.693_147_2) - k * F::new(-1.904_654_2e-9) - k * F::new(-1.110_223e-16);
    let mut p = F::new(1.0);
    let mut i = 0u32.runtime();
    while i < 14 {
        p = F::new(1.0) + r * p / F::cast_from(14u32 - i);
        i += 1;
    }
    let neg = k < F::new(0.0);
    let mut e = u32::cast_from(F::abs(k));
    let mut base = F::new(2.0);
    let mut scale = F::new(1.0);
    while e > 0 {
        if e % 2 == 1 {
            scale *= base;
        }
        base *= base;
        e /= 2;
    }
    let mut y = select(neg, p / scale, p * scale);
    y = select(x > F::new(709.78), F::new(1.0) / F::new(0.0), y);
    y = select(x < F::new(-745.0), F::new(0.0), y);
    select(x != x, x, y)
}

/// Natural log. With `poly`: an f32 `ln` refined by two Newton steps on `e^y = x`
/// (`y <- y - 1 + x e^-y`), accurate to f64 precision for x in f32's normal range.
#[cube]
pub(super) fn ln_f<F: Float>(x: F, #[comptime] poly: bool) -> F {
    let mut y = F::new(0.0);
    if comptime![poly] {
        y = ln_poly::<F>(x);
    } else {
        y = F::ln(x);
    }
    y
}

#[cube]
fn ln_poly<F: Float>(x: F) -> F {
    let xf = f32::cast_from(x);
    let mut y = F::cast_from(Log::ln(xf));
    let finite = y == y && F::abs(y) < F::new(1.0e30);
    let mut i = 0u32.runtime();
    while i < 2 {
        let step = y - F::new(1.0) + x * exp_poly::<F>(-y);
        y = select(finite, step, y);
        i += 1;
    }
    y
}

/// `sin(x)` (`cos` with `cos = true`). With `poly`: `x = k pi/2 + r` (pi/2 in three f32
/// parts), Taylor series of sin and cos on |r| <= pi/4, quadrant from `k mod 4`.
#[cube]
fn sin_cos_f<F: Float>(x: F, #[comptime] cos: bool, #[comptime] poly: bool) -> F {
    let mut y = F::new(0.0);
    if comptime![poly] {
        y = sin_cos_poly::<F>(x, cos);
    } else if comptime![cos] {
        y = F::cos(x);
    } else {
        y = F::sin(x);
    }
    y
}

#[cube]
fn sin_cos_poly<F: Float>(x: F, #[comptime] cos: bool) -> F {
    let k = F::floor(x * (F::new(0.636_619_8) + F::new(-1.691_203e-8)) + F::new(0.5));
    let r = x - k * F::new(1.570_796_4) - k * F::new(-4.371_139e-8) - k * F::new(-1.776_356_8e-15);
    let r2 = r * r;
    let mut s = F::new(1.0);
    let mut c = F::new(1.0);
    let mut i = 0u32.runtime();
    while i < 10 {
        let n = F::cast_from(20u32 - 2 * i);
        s = F::new(1.0) - r2 * s / (n * (n + F::new(1.0)));
        c = F::new(1.0) - r2 * c / (n * (n - F::new(1.0)));
        i += 1;
    }
    s *= r;
    let mut q = k - F::new(4.0) * F::floor(k / F::new(4.0));
    if comptime![cos] {
        q += F::new(1.0);
    }
    q = q - F::new(4.0) * F::floor(q / F::new(4.0));
    select(q == F::new(0.0), s, select(q == F::new(1.0), c, select(q == F::new(2.0), -s, -c)))
}

/// `cos(x)` (see [`sin_cos_f`]).
#[cube]
pub(super) fn cos_f<F: Float>(x: F, #[comptime] poly: bool) -> F {
    sin_cos_f::<F>(x, true, poly)
}

/// `x^p` as `powf` does: with `poly`, `e^(p ln|x|)` with the sign of an odd integral power.
#[cube]
fn pow_f<F: Float>(x: F, p: F, #[comptime] poly: bool) -> F {
    let mut y = F::new(0.0);
    if comptime![poly] {
        y = pow_poly::<F>(x, p);
    } else {
        y = F::powf(x, p);
    }
    y
}

#[cube]
fn pow_poly<F: Float>(x: F, p: F) -> F {
    let zero = F::new(0.0);
    let integral = F::floor(p) == p;
    let odd = integral && F::floor(p / F::new(2.0)) * F::new(2.0) != p;
    let m = exp_poly::<F>(p * ln_poly::<F>(F::abs(x)));
    let mut y = select(x < zero, select(integral, select(odd, -m, m), zero / zero), m);
    y = select(x == zero, select(p > zero, zero, select(p == zero, F::new(1.0), F::new(1.0) / zero)), y);
    select(p == zero, F::new(1.0), y)
}

/// `tanh(x)`; with `poly`, `sign(x) (1 - 2 / (e^(2|x|) + 1))`.
#[cube]
fn tanh_f<F: Float>(x: F, #[comptime] poly: bool) -> F {
    let mut y = F::new(0.0);
    if comptime![poly] {
        y = tanh_poly::<F>(x);
    } else {
        y = F::tanh(x);
    }
    y
}

#[cube]
fn tanh_poly<F: Float>(x: F) -> F {
    let t = F::new(1.0) - F::new(2.0) / (exp_poly::<F>(F::new(2.0) * F::abs(x)) + F::new(1.0));
    select(x < F::new(0.0), -t, t)
}

#[cube]
fn apply_unary<F: Float>(
    x: F,
    p0: F,
    p1: F,
    #[comptime] op: u32,
    #[comptime] exact: bool,
    #[comptime] poly: bool,
) -> F {
    let zero = F::new(0.0);
    let one = F::new(1.0);
    let mut y = x;
    if comptime![op == NEG] {
        y = -x;
    } else if comptime![op == ABS] {
        y = F::abs(x);
    } else if comptime![op == EXP] {
        y = exp_f::<F>(x, poly);
    } else if comptime![op == LOG] {
        y = ln_f::<F>(x, poly);
    } else if comptime![op == SQRT] {
        y = F::sqrt(x);
    } else if comptime![op == RSQRT] {
        y = one / F::sqrt(x);
    } else if comptime![op == RECIP] {
        y = one / x;
    } else if comptime![op == TANH] {
        y = tanh_f::<F>(x, poly);
    } else if comptime![op == SIGMOID] {
        y = one / (one + exp_f::<F>(-x, poly));
    } else if comptime![op == RELU] {
        y = select(x > zero, x, zero);
    } else if comptime![op == GELU] {
        let s2 = F::new(0.707_106_77) + F::new(1.210_161_7e-8);
        y = F::new(0.5) * x * (one + erf_f::<F>(x * s2, exact, poly));
    } else if comptime![op == GELU_GRAD] {
        let s2 = F::new(0.707_106_77) + F::new(1.210_161_7e-8);
        let inv_sqrt_2pi = F::new(0.398_942_3) + F::new(-1.133_517e-8);
        let cdf = F::new(0.5) * (one + erf_f::<F>(x * s2, exact, poly));
        y = cdf + x * inv_sqrt_2pi * exp_f::<F>(F::new(-0.5) * x * x, poly);
    } else if comptime![op == ERF] {
        y = erf_f::<F>(x, exact, poly);
    } else if comptime![op == SIN] {
        y = sin_cos_f::<F>(x, false, poly);
    } else if comptime![op == COS] {
        y = sin_cos_f::<F>(x, true, poly);
    } else if comptime![op == SIGN] {
        y = select(x > zero, one, select(x < zero, -one, zero));
    } else if comptime![op == STEP] {
        y = select(x > zero, one, zero);
    } else if comptime![op == POWF] {
        y = pow_f::<F>(x, p0, poly);
    } else if comptime![op == CLAMP] {
        y = select(x < p0, p0, select(x > p1, p1, x));
    } else if comptime![op == IN_RANGE] {
        y = select(x >= p0 && x <= p1, one, zero);
    } else if comptime![op == AFFINE] {
        y = x * p0 + p1;
    }
    y
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn unary_kernel<F: Float + CubeElement>(
    x: &Tensor<F>,
    x_off: usize,
    out: &mut Array<F>,
    p0: F,
    p1: F,
    n: usize,
    #[comptime] op: u32,
    #[comptime] exact: bool,
    #[comptime] poly: bool,
) {
    if ABSOLUTE_POS < n {
        out[ABSOLUTE_POS] = apply_unary::<F>(x[offset_of::<F>(x, x_off, ABSOLUTE_POS)], p0, p1, op, exact, poly);
    }
}

/// i64 unary ops: `Neg`, `Abs`, `Sign`, integral `Affine` (wrapping, as on the CPU).
#[cube(launch)]
fn unary_int_kernel<I: Int + CubeElement>(
    x: &Tensor<I>,
    x_off: usize,
    out: &mut Array<I>,
    p0: I,
    p1: I,
    n: usize,
    #[comptime] op: u32,
) {
    if ABSOLUTE_POS < n {
        let v = x[offset_of::<I>(x, x_off, ABSOLUTE_POS)];
        let zero = I::new(0);
        let one = I::new(1);
        let mut y = v;
        if comptime![op == NEG] {
            y = zero - v;
        } else if comptime![op == ABS] {
            y = select(v < zero, zero - v, v);
        } else if comptime![op == SIGN] {
            y = select(v > zero, one, select(v < zero, zero - one, zero));
        } else if comptime![op == AFFINE] {
            y = v * p0 + p1;
        }
        out[ABSOLUTE_POS] = y;
    }
}

// Binary op codes (comptime).
const ADD: u32 = 0;
const SUB: u32 = 1;
const MUL: u32 = 2;
const DIV: u32 = 3;
const POW: u32 = 4;
const MAXIMUM: u32 = 5;
const MINIMUM: u32 = 6;
const EQ: u32 = 7;
const NE: u32 = 8;
const GT: u32 = 9;
const GE: u32 = 10;
const LT: u32 = 11;
const LE: u32 = 12;

fn binary_code(op: BinaryOp) -> u32 {
    match op {
        BinaryOp::Add => ADD,
        BinaryOp::Sub => SUB,
        BinaryOp::Mul => MUL,
        BinaryOp::Div => DIV,
        BinaryOp::Pow => POW,
        BinaryOp::Maximum => MAXIMUM,
        BinaryOp::Minimum => MINIMUM,
        BinaryOp::Eq => EQ,
        BinaryOp::Ne => NE,
        BinaryOp::Gt => GT,
        BinaryOp::Ge => GE,
        BinaryOp::Lt => LT,
        BinaryOp::Le => LE,
    }
}

/// Every binary op but `Pow`, on any numeric type. `Maximum`/`Minimum` propagate NaN as the
/// CPU does (`a != a` is false for integers).
#[cube]
fn apply_binary<N: Numeric>(a: N, b: N, #[comptime] op: u32) -> N {
    let one = N::from_int(1);
    let zero = N::from_int(0);
    let mut y = a;
    if comptime![op == ADD] {
        y = a + b;
    } else if comptime![op == SUB] {
        y = a - b;
    } else if comptime![op == MUL] {
        y = a * b;
    } else if comptime![op == DIV] {
        y = a / b;
    } else if comptime![op == MAXIMUM] {
        y = select(a != a || a > b, a, b);
    } else if comptime![op == MINIMUM] {
        y = select(a != a || a < b, a, b);
    } else if comptime![op == EQ] {
        y = select(a == b, one, zero);
    } else if comptime![op == NE] {
        y = select(a != b, one, zero);
    } else if comptime![op == GT] {
        y = select(a > b, one, zero);
    } else if comptime![op == GE] {
        y = select(a >= b, one, zero);
    } else if comptime![op == LT] {
        y = select(a < b, one, zero);
    } else if comptime![op == LE] {
        y = select(a <= b, one, zero);
    }
    y
}

#[cube(launch)]
fn binary_kernel<N: Numeric>(
    a: &Tensor<N>,
    a_off: usize,
    b: &Tensor<N>,
    b_off: usize,
    out: &mut Array<N>,
    n: usize,
    #[comptime] op: u32,
) {
    if ABSOLUTE_POS < n {
        let x = a[offset_of::<N>(a, a_off, ABSOLUTE_POS)];
        let y = b[offset_of::<N>(b, b_off, ABSOLUTE_POS)];
        out[ABSOLUTE_POS] = apply_binary::<N>(x, y, op);
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
/// The float-only binary ops: `Pow`, and `Maximum`/`Minimum` with `is_nan` (`a != a` may be
/// folded away by shader compilers, which may assume no NaN in comparisons).
fn float_binary_kernel<F: Float + CubePrimitive<WithScalar<bool> = bool>>(
    a: &Tensor<F>,
    a_off: usize,
    b: &Tensor<F>,
    b_off: usize,
    out: &mut Array<F>,
    n: usize,
    #[comptime] op: u32,
    #[comptime] poly: bool,
) {
    if ABSOLUTE_POS < n {
        let x = a[offset_of::<F>(a, a_off, ABSOLUTE_POS)];
        let y = b[offset_of::<F>(b, b_off, ABSOLUTE_POS)];
        let mut r = x;
        if comptime![op == POW] {
            r = pow_f::<F>(x, y, poly);
        } else if comptime![op == MAXIMUM] {
            r = select(F::is_nan(x) || x > y, x, y);
        } else {
            r = select(F::is_nan(x) || x < y, x, y);
        }
        out[ABSOLUTE_POS] = r;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn where_kernel<C: Numeric, E: CubePrimitive>(
    c: &Tensor<C>,
    c_off: usize,
    a: &Tensor<E>,
    a_off: usize,
    b: &Tensor<E>,
    b_off: usize,
    out: &mut Array<E>,
    n: usize,
) {
    if ABSOLUTE_POS < n {
        let m = c[offset_of::<C>(c, c_off, ABSOLUTE_POS)];
        let x = a[offset_of::<E>(a, a_off, ABSOLUTE_POS)];
        let y = b[offset_of::<E>(b, b_off, ABSOLUTE_POS)];
        out[ABSOLUTE_POS] = select(m != C::from_int(0), x, y);
    }
}

impl<R: Runtime> GpuBackend<R> {
    /// Copies the view `x` (layout `lx`) into the view `lo` of the existing buffer `out`
    /// (same shape). The strided copy behind `copy_strided`, `contiguous` and `cat`.
    pub(super) fn copy_into(&self, x: &CubeStorage, lx: &Layout, out: &CubeStorage, lo: &Layout) -> Result<()> {
        self.same_device("copy", x)?;
        let n = lx.numel();
        if n == 0 {
            return Ok(());
        }
        let (xa, x_off) = self.view(x, lx);
        let (oa, o_off) = self.view(out, lo);
        let (count, dim) = self.grid(n);
        with_dtype!(x.dtype, E => copy_kernel::launch::<E, R>(&self.client, count, dim, xa, x_off, oa, o_off, n));
        Ok(())
    }

    pub(super) fn copy_strided_impl(&self, x: &CubeStorage, l: &Layout) -> Result<CubeStorage> {
        let out = self.alloc(l.numel(), x.dtype)?;
        self.copy_into(x, l, &out, &Layout::contiguous(l.shape()))?;
        Ok(out)
    }

    pub(super) fn fill_impl(&self, n: usize, dtype: DType, value: f64) -> Result<CubeStorage> {
        self.check("fill", dtype)?;
        let out = self.alloc(n, dtype)?;
        if n > 0 {
            let (count, dim) = self.grid(n);
            with_dtype!(dtype, E => fill_kernel::launch::<E, R>(
                &self.client, count, dim, self.array(&out), E::from_f64_lossy(value), n
            ));
        }
        Ok(out)
    }

    pub(super) fn cast_impl(&self, x: &CubeStorage, l: &Layout, dtype: DType) -> Result<CubeStorage> {
        self.same_device("cast", x)?;
        self.check("cast", dtype)?;
        if dtype == x.dtype {
            return self.copy_strided_impl(x, l);
        }
        let n = l.numel();
        let out = self.alloc(n, dtype)?;
        if n > 0 {
            let (xa, x_off) = self.view(x, l);
            let (count, dim) = self.grid(n);
            with_dtype!(x.dtype, A => with_dtype!(dtype, B =>
                cast_kernel::launch::<A, B, R>(&self.client, count, dim, xa, x_off, self.array(&out), n)
            ));
        }
        Ok(out)
    }

    pub(super) fn unary_impl(&self, op: UnaryOp, x: &CubeStorage, l: &Layout) -> Result<CubeStorage> {
        self.same_device("unary", x)?;
        let n = l.numel();
        let out = self.alloc(n, x.dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let (code, p0, p1) = unary_code(op);
        let (xa, x_off) = self.view(x, l);
        let (count, dim) = self.grid(n);
        match x.dtype {
            DType::I64 => {
                let int_ok = matches!(op, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign)
                    || matches!(op, UnaryOp::Affine(m, a) if m.fract() == 0.0 && a.fract() == 0.0);
                if !int_ok {
                    return Err(Error::DType { op: "unary", expected: "a float dtype for this op", got: DType::I64 });
                }
                unary_int_kernel::launch::<i64, R>(
                    &self.client,
                    count,
                    dim,
                    xa,
                    x_off,
                    self.array(&out),
                    p0 as i64,
                    p1 as i64,
                    n,
                    code,
                );
            }
            dtype => with_float!("unary", dtype, F => unary_kernel::launch::<F, R>(
                &self.client, count, dim, xa, x_off, self.array(&out), p0 as F, p1 as F, n, code,
                dtype == DType::F64, self.poly(dtype)
            )),
        }
        Ok(out)
    }

    pub(super) fn binary_impl(
        &self,
        op: BinaryOp,
        a: &CubeStorage,
        la: &Layout,
        b: &CubeStorage,
        lb: &Layout,
    ) -> Result<CubeStorage> {
        self.same_device("binary", a)?;
        self.same_device("binary", b)?;
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: "binary", lhs: a.dtype, rhs: b.dtype });
        }
        if la.shape() != lb.shape() {
            return Err(Error::shape("binary", &[la.shape(), lb.shape()], "operands must be broadcast to one shape"));
        }
        if a.dtype == DType::I64 && matches!(op, BinaryOp::Div | BinaryOp::Pow) {
            return Err(Error::DType { op: "binary", expected: "a float dtype for div and pow", got: DType::I64 });
        }
        let n = la.numel();
        let out = self.alloc(n, a.dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let (aa, a_off) = self.view(a, la);
        let (ba, b_off) = self.view(b, lb);
        let (count, dim) = self.grid(n);
        let o = self.array(&out);
        let code = binary_code(op);
        if op == BinaryOp::Pow || (a.dtype.is_float() && matches!(op, BinaryOp::Maximum | BinaryOp::Minimum)) {
            with_float!("binary", a.dtype, F => float_binary_kernel::launch::<F, R>(
                &self.client, count, dim, aa, a_off, ba, b_off, o, n, code, self.poly(a.dtype)
            ));
        } else {
            with_dtype!(a.dtype, E => binary_kernel::launch::<E, R>(
                &self.client, count, dim, aa, a_off, ba, b_off, o, n, code
            ));
        }
        Ok(out)
    }

    pub(super) fn where_impl(
        &self,
        c: &CubeStorage,
        lc: &Layout,
        a: &CubeStorage,
        la: &Layout,
        b: &CubeStorage,
        lb: &Layout,
    ) -> Result<CubeStorage> {
        for s in [c, a, b] {
            self.same_device("where", s)?;
        }
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: "where", lhs: a.dtype, rhs: b.dtype });
        }
        if lc.shape() != la.shape() || la.shape() != lb.shape() {
            return Err(Error::shape("where", &[lc.shape(), la.shape(), lb.shape()], "operands must share one shape"));
        }
        let n = la.numel();
        let out = self.alloc(n, a.dtype)?;
        if n == 0 {
            return Ok(out);
        }
        let (ca, c_off) = self.view(c, lc);
        let (aa, a_off) = self.view(a, la);
        let (ba, b_off) = self.view(b, lb);
        let (count, dim) = self.grid(n);
        let o = self.array(&out);
        with_dtype!(c.dtype, C => with_dtype!(a.dtype, E => where_kernel::launch::<C, E, R>(
            &self.client, count, dim, ca, c_off, aa, a_off, ba, b_off, o, n
        )));
        Ok(out)
    }
}

/// `f64 -> E` as `as` would convert (floats to ints truncate toward zero).
pub(super) trait FromF64Lossy {
    fn from_f64_lossy(v: f64) -> Self;
}
impl FromF64Lossy for f32 {
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
}
impl FromF64Lossy for f64 {
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
}
impl FromF64Lossy for i64 {
    fn from_f64_lossy(v: f64) -> Self {
        v as i64
    }
}
