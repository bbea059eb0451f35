//! The element arithmetic the CPU kernels share, written once for f32, f64 and i64 so that
//! no kernel copies an f32 path into an f64 one.
//!
//! [`Num`] is what reductions need (bounds, a wide sum accumulator, NaN tests); [`Float`]
//! adds what the float kernels need
//! (the element-wise math and the GEMM call). Both are sealed.
use super::vmath;
use crate::HostElement;

/// Arithmetic every storable element supports.
pub trait Num: HostElement + super::Pooled + sealed::Sealed {
    /// Sum accumulator: f64 for both floats (an f32 sum of 16M terms keeps ~1e-7 relative
    /// error instead of ~1e-3), i64 (wrapping) for integers.
    type Sum: Copy + Send + Sync + Default;
    /// The smallest value (-inf for floats): the identity of `max`.
    const LOWEST: Self;
    /// The largest value (+inf for floats): the identity of `min`.
    const HIGHEST: Self;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Widens to the accumulator.
    fn to_sum(self) -> Self::Sum;
    /// Narrows from the accumulator.
    fn from_sum(s: Self::Sum) -> Self;
    /// `a + b` in the accumulator (wrapping for integers).
    fn sum_add(a: Self::Sum, b: Self::Sum) -> Self::Sum;
    /// `a + b` in the element type (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// True for NaN (never for integers).
    #[inline(always)]
    #[allow(clippy::eq_op)]
    fn is_nan(self) -> bool {
        self != self
    }
}

/// Floating-point elements (f32, f64): the one float trait of the CPU kernels. f32's
/// transcendental functions are the vectorisable ones of [`super::vmath`]; f64's are
/// `std`'s and libm's (gradient checks run in f64). `+` is [`Num::add`] (kernels generic
/// over `Num` use it), so kernels that want the operator ask for `Add` beside `Float`.
pub trait Float:
    Num<Sum = f64>
    + PartialOrd
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    /// `e^x`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `sqrt(x)`.
    fn sqrt(self) -> Self;
    /// `|x|`.
    fn abs(self) -> Self;
    /// `tanh(x)`.
    fn tanh(self) -> Self;
    /// `1 / (1 + e^-x)`.
    fn sigmoid(self) -> Self;
    /// The error function.
    fn erf(self) -> Self;
    /// Exact GELU, `x Phi(x)`.
    fn gelu(self) -> Self;
    /// d/dx of exact GELU.
    fn gelu_grad(self) -> Self;
    /// `sin(x)`.
    fn sin(self) -> Self;
    /// `cos(x)`.
    fn cos(self) -> Self;
    /// `x^e`.
    fn powf(self, e: Self) -> Self;
    /// 1 for true, 0 for false.
    fn from_bool(b: bool) -> Self;
    /// `C = alpha * A B + beta * C` on raw pointers with element strides: matrixmultiply's
    /// sgemm or dgemm (single-threaded). Call it through [`super::gemm`], which checks it.
    ///
    /// # Safety
    /// Every element `(i, l)` of A (`i < m`, `l < k`), `(l, j)` of B and `(i, j)` of C at the
    /// given strides must lie inside live allocations; C must not alias A or B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

/// f64's transcendental functions, named as [`super::vmath`]'s f32 ones so that one macro
/// writes both `Float` impls. The GELU forms are the exact erf ones (libm's erf, ~1 ulp).
mod f64_math {
    const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    pub fn exp(x: f64) -> f64 {
        x.exp()
    }
    pub fn ln(x: f64) -> f64 {
        x.ln()
    }
    pub fn tanh(x: f64) -> f64 {
        x.tanh()
    }
    pub fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    pub fn erf(x: f64) -> f64 {
        libm::erf(x)
    }
    pub fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))
    }
    pub fn gelu_grad(x: f64) -> f64 {
        0.5 * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
    }
}

macro_rules! float_num {
    ($t:ty, $gemm:path, $math:ident) => {
        impl Num for $t {
            type Sum = f64;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn to_sum(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_sum(s: f64) -> Self {
                s as $t
            }
            #[inline(always)]
            fn sum_add(a: f64, b: f64) -> f64 {
                a + b
            }
            #[inline(always)]
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
        }
        impl Float for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                $math::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $math::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $math::tanh(self)
            }
            #[inline(always)]
            fn sigmoid(self) -> Self {
                $math::sigmoid(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $math::erf(self)
            }
            #[inline(always)]
            fn gelu(self) -> Self {
                $math::gelu(self)
            }
            #[inline(always)]
            fn gelu_grad(self) -> Self {
                $math::gelu_grad(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn from_bool(b: bool) -> Self {
                b as u8 as $t
            }
            #[inline(always)]
            unsafe fn raw_gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }
        }
    };
}
// One macro for the two float impls: they differ only in the type and the GEMM symbol.
float_num!(f32, matrixmultiply::sgemm, vmath);
float_num!(f64, matrixmultiply::dgemm, f64_math);

impl Num for i64 {
    type Sum = i64;
    const LOWEST: Self = i64::MIN;
    const HIGHEST: Self = i64::MAX;
    const ZERO: Self = 0;
    const ONE: Self = 1;
    #[inline(always)]
    fn to_sum(self) -> i64 {
        self
    }
    #[inline(always)]
    fn from_sum(s: i64) -> Self {
        s
    }
    #[inline(always)]
    fn sum_add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        a.wrapping_add(b)
    }
}

mod sealed {
    /// Only f32, f64 and i64 implement the kernel traits.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
}
