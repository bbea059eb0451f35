//! [`CapsNet`]: the MNIST model of the paper (Conv1 -> PrimaryCaps -> DigitCaps with routing,
//! plus a reconstruction decoder fed by the masked digit capsules), at the paper's size
//! ([`CapsNetConfig::paper`]) or reduced for quick runs and tests ([`CapsNetConfig::small`]).
use stategrad_autograd::{no_grad, Conv2dParams, Result, Tensor};

use super::layers::{DigitCapsules, PrimaryCapsules};
use super::loss::{margin_loss, reconstruction_loss};
use super::routing::RoutingMode;
use crate::{Conv2d, Forward, Linear, Module};

/// The sizes of a [`CapsNet`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapsNetConfig {
    /// Input image side (28 for MNIST).
    pub image: usize,
    /// Conv1 output channels (paper: 256).
    pub conv_channels: usize,
    /// Kernel side of Conv1 and PrimaryCaps (paper: 9).
    pub kernel: usize,
    /// Primary capsule types (paper: 32).
    pub primary_types: usize,
    /// Primary capsule dimension (paper: 8).
    pub primary_dim: usize,
    /// Output capsules, one per class (10).
    pub classes: usize,
    /// Output capsule dimension (paper: 16).
    pub digit_dim: usize,
    /// Decoder hidden widths (paper: 512, 1024).
    pub decoder: [usize; 2],
    /// Routing iterations (paper: 3).
    pub routing_iters: usize,
    /// Routing mode.
    pub routing: RoutingMode,
    /// Standard deviation of the initial DigitCaps matrices.
    pub w_std: f64,
    /// Weight of the reconstruction loss (paper: 0.0005).
    pub recon_weight: f64,
}

impl CapsNetConfig {
    /// The paper's MNIST model: 8.2 M parameters, 1,152 primary capsules.
    pub fn paper() -> Self {
        CapsNetConfig {
            image: 28,
            conv_channels: 256,
            kernel: 9,
            primary_types: 32,
            primary_dim: 8,
            classes: 10,
            digit_dim: 16,
            decoder: [512, 1024],
            routing_iters: 3,
            routing: RoutingMode::Detached,
            w_std: 0.01,
            recon_weight: 0.0005,
        }
    }

    /// A reduced model for quick runs and tests (64 conv channels, 8 primary types of 8-D).
    pub fn small() -> Self {
        CapsNetConfig { conv_channels: 64, primary_types: 8, decoder: [128, 256], ..Self::paper() }
    }

    /// Side of the primary capsule grid (6 for the paper's model).
    pub fn primary_grid(&self) -> usize {
        let conv1 = self.image + 1 - self.kernel;
        (conv1 - self.kernel) / 2 + 1
    }

    /// Number of primary capsules (1,152 for the paper's model).
    pub fn primary_caps(&self) -> usize {
        self.primary_types * self.primary_grid() * self.primary_grid()
    }
}

/// The reconstruction network: masked digit capsules -> hidden -> hidden -> pixels (sigmoid).
#[derive(Module, Clone, Debug)]
pub struct Decoder {
    /// First hidden layer (ReLU).
    pub fc1: Linear,
    /// Second hidden layer (ReLU).
    pub fc2: Linear,
    /// Output layer (sigmoid), one unit per pixel.
    pub fc3: Linear,
}

impl Forward for Decoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc3.forward(&self.fc2.forward(&self.fc1.forward(x)?.relu()?)?.relu()?)?.sigmoid()
    }
}

/// Sabour, Frosst & Hinton's CapsNet for 28x28 digits.
#[derive(Module, Clone, Debug)]
pub struct CapsNet {
    /// Conv1 (ReLU).
    pub conv1: Conv2d,
    /// PrimaryCaps (stride 2).
    pub primary: PrimaryCapsules,
    /// DigitCaps, one capsule per class, with routing.
    pub digit: DigitCapsules,
    /// Reconstruction decoder.
    pub decoder: Decoder,
    /// The sizes (not state).
    #[module(skip)]
    pub config: CapsNetConfig,
}

/// Everything a forward pass produces.
#[derive(Clone, Debug)]
pub struct CapsOutput {
    /// Digit capsules `[b, classes, digit_dim]`.
    pub v: Tensor,
    /// Their lengths `[b, classes]` (class scores in `[0, 1)`).
    pub lengths: Tensor,
    /// Final routing coefficients `[b, classes, primary caps]` (sum to 1 over classes).
    pub c: Tensor,
    /// Reconstructions `[b, image * image]` in `[0, 1]`.
    pub recon: Tensor,
}

/// The losses of one batch.
#[derive(Clone, Debug)]
pub struct CapsLosses {
    /// `margin + recon_weight * recon`, the scalar to backpropagate.
    pub total: Tensor,
    /// The margin loss.
    pub margin: Tensor,
    /// The (unweighted) reconstruction loss.
    pub recon: Tensor,
}

impl CapsNet {
    /// A freshly initialised model (f32, CPU; seed with `manual_seed` first).
    pub fn new(config: CapsNetConfig) -> Result<CapsNet> {
        let c = config;
        let decoder = Decoder {
            fc1: Linear::new(c.classes * c.digit_dim, c.decoder[0])?,
            fc2: Linear::new(c.decoder[0], c.decoder[1])?,
            fc3: Linear::new(c.decoder[1], c.image * c.image)?,
        };
        Ok(CapsNet {
            conv1: Conv2d::new(1, c.conv_channels, (c.kernel, c.kernel), Conv2dParams::default())?,
            primary: PrimaryCapsules::new(c.conv_channels, c.primary_types, c.primary_dim, c.kernel, 2)?,
            digit: DigitCapsules::new(
                c.primary_caps(),
                c.primary_dim,
                c.classes,
                c.digit_dim,
                c.routing_iters,
                c.routing,
                c.w_std,
            )?,
            decoder,
            config,
        })
    }

    /// Sets the routing mode (the parameters are untouched).
    pub fn set_routing(&mut self, mode: RoutingMode) {
        self.config.routing = mode;
        self.digit.mode = mode;
    }

    /// Runs the model on `x [b, 1, image, image]`; the decoder sees the capsule of
    /// `labels [b]` (i64) when given (training), else that of the longest capsule.
    pub fn forward_full(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<CapsOutput> {
        let h = self.conv1.forward(x)?.relu()?;
        let u = self.primary.forward(&h)?;
        let routed = self.digit.route(&u)?;
        let v = routed.v;
        let lengths = v.square()?.sum(-1, false)?.add_scalar(1e-9)?.sqrt()?;
        let predicted;
        let mask_labels = match labels {
            Some(l) => l,
            None => {
                predicted = lengths.argmax(1, false)?;
                &predicted
            }
        };
        let mask = mask_labels.one_hot(self.config.classes, v.dtype())?.unsqueeze(-1)?;
        let recon = self.decoder.forward(&v.mul(&mask)?.flatten(1, 2)?)?;
        Ok(CapsOutput { v, lengths, c: routed.c, recon })
    }

    /// The losses of a batch (`x [b, 1, h, w]`, `labels [b]` i64), masking the decoder with
    /// the true labels, and the forward pass's outputs.
    pub fn losses(&self, x: &Tensor, labels: &Tensor) -> Result<(CapsLosses, CapsOutput)> {
        let out = self.forward_full(x, Some(labels))?;
        let margin = margin_loss(&out.lengths, &labels.one_hot(self.config.classes, out.lengths.dtype())?)?;
        let recon = reconstruction_loss(&out.recon, &x.flatten(1, 3)?)?;
        let total = margin.add(&recon.mul_scalar(self.config.recon_weight)?)?;
        Ok((CapsLosses { total, margin, recon }, out))
    }

    /// Predicted classes of `x` (under `no_grad`).
    pub fn predict(&self, x: &Tensor) -> Result<Vec<usize>> {
        let _guard = no_grad();
        let out = self.forward_full(x, None)?;
        Ok(out.lengths.argmax(1, false)?.to_vec::<i64>()?.into_iter().map(|c| c as usize).collect())
    }
}

impl Forward for CapsNet {
    /// Class scores: the digit capsule lengths `[b, classes]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_full(x, None)?.lengths)
    }
}
