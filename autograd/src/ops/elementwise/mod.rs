//! Element-wise ops: one output element per (broadcast) input element.

// unary
mod abs;
mod affine;
mod clamp;
mod erf;
mod exp;
mod gelu;
mod log;
mod masked_fill;
mod neg;
mod powf;
mod recip;
mod relu;
mod sigmoid;
mod sqrt;
mod tanh;
mod trig;
// binary (operands broadcast against each other)
mod add;
mod compare;
mod div;
mod maximum;
mod mul;
mod pow;
mod where_cond;
