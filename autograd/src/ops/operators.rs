//! `std::ops` operators on `&Tensor` (and `&Tensor` with `f64`): the one convenience that
//! panics.
//!
//! # Panics
//! On the same conditions as the named methods (`add`, `sub`, `mul`, `div`, `neg`) return an
//! error, with the same message. Use the methods in code that handles errors.
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::Tensor;

macro_rules! binary_operator {
    ($trait:ident, $fn:ident, $method:ident, $scalar:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $fn(self, rhs: &Tensor) -> Tensor {
                self.$method(rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
        impl $trait<f64> for &Tensor {
            type Output = Tensor;
            fn $fn(self, rhs: f64) -> Tensor {
                self.$scalar(rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    };
}

binary_operator!(Add, add, add, add_scalar);
binary_operator!(Sub, sub, sub, sub_scalar);
binary_operator!(Mul, mul, mul, mul_scalar);
binary_operator!(Div, div, div, div_scalar);

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    #[test]
    fn operators_match_methods() {
        let a = t64(&[1.0, 2.0], &[2]);
        let b = t64(&[3.0, 5.0], &[2]);
        assert_close(&(&(&a + &b) * 2.0), &[8.0, 14.0], 0.0);
        assert_close(&(&(&a - &b) / &b), &[-2.0 / 3.0, -0.6], 1e-15);
        assert_close(&-&a, &[-1.0, -2.0], 0.0);
    }
    #[test]
    #[should_panic(expected = "add: shapes [2] and [3] do not broadcast")]
    fn operators_panic_with_the_error_message() {
        let _ = &t64(&[1.0, 2.0], &[2]) + &t64(&[1.0, 2.0, 3.0], &[3]);
    }
}
