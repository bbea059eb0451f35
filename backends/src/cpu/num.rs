//! The element arithmetic the CPU kernels share, written once for f32, f64 and i64 so that
//! no kernel copies an f32 path into an f64 one.
//!
//! [`Num`] is what reductions need (bounds, a wide sum accumulator, NaN tests); [`Float`]
//! adds what softmax, matmul and conv need (exp and the GEMM call). Both are sealed.
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

/// Floating-point elements (f32, f64).
pub trait Float: Num<Sum = f64> + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> {
    /// `e^x`.
    fn exp(self) -> Self;
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

macro_rules! float_num {
    ($t:ty, $gemm:path) => {
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
                <$t>::exp(self)
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
float_num!(f32, matrixmultiply::sgemm);
float_num!(f64, matrixmultiply::dgemm);

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
