//! Capsule layers (Sabour, Frosst & Hinton 2017, "Dynamic Routing Between Capsules"):
//! [`squash`], [`PrimaryCapsules`], [`DigitCapsules`] with dynamic routing in either
//! [`RoutingMode`], the margin loss, and the whole [`CapsNet`] of the paper's MNIST model.
//!
//! The state graph of a capsule network is the point of this module. Its parameters are the
//! convolution weights, the transformation matrices `W [in caps, out caps, out dim, in dim]`
//! and the decoder; the routing logits and coefficients are *per-example state* computed in
//! every forward pass, so they are neither parameters nor buffers and never appear in a
//! `state_dict`. Whether the tape sees the routing computation is the [`RoutingMode`]:
//!
//! | mode | routing loop | final `s = sum_i c_ij u_hat_j|i` | gradient of W and the convs |
//! | --- | --- | --- | --- |
//! | `Differentiable` (paper) | on the tape | on the tape | through `u_hat` *and* through `c` |
//! | `Detached` | under `no_grad`, on `u_hat.detach()` | on the tape | through `u_hat` only (`c` constant) |
//!
//! Both modes compute the same forward values, bit for bit.
mod layers;
mod loss;
mod net;
mod routing;

pub use layers::{capsule_predictions, DigitCapsules, PrimaryCapsules};
pub use loss::{margin_loss, reconstruction_loss, MarginLoss};
pub use net::{CapsLosses, CapsNet, CapsNetConfig, CapsOutput, Decoder};
pub use routing::{dynamic_routing, squash, Routed, RoutingMode, SQUASH_EPS};
