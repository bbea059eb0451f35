//! The training loop of the CapsNet example, shared with `tests/capsnet.rs` and
//! `benches/capsnet.rs`: one Adam step, an epoch over seeded shuffled (and shifted) batches,
//! evaluation, and checkpoints holding model, optimizer and loop state in one safetensors
//! file (the library's training checkpoint: written atomically, restored in one call).
//!
//! Reproducibility: the batches of epoch `e` depend only on `(seed, e)` (see
//! [`crate::data::epoch_seed`]) and the learning rate only on `e`, so resuming from the
//! checkpoint written after epoch `e` continues exactly as the uninterrupted run would.
// Shared with tests/capsnet.rs and benches/capsnet.rs, which each use a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stategrad::autograd::{no_grad, DType, Device, Error, Grads, Result};
use stategrad::dist::{DataParallel, ProcessGroup, SyncConfig};
use stategrad::nn::capsule::CapsNet;
use stategrad::nn::checkpoint::{load_training_checkpoint, save_training_checkpoint};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer};
use stategrad::nn::{load_safetensors, LoadOptions, Module, StateDict};

use crate::data::{epoch_seed, mix, permutation, Batch, Mnist};

/// Hyper-parameters of the loop (the model's own sizes live in its config).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Images per step.
    pub batch_size: usize,
    /// Adam's learning rate at epoch 0.
    pub lr: f64,
    /// Learning-rate factor per epoch (`lr * decay^epoch`).
    pub lr_decay: f64,
    /// Largest random shift, in pixels (0: no augmentation).
    pub shift: usize,
    /// Seed of the shuffles and shifts.
    pub seed: u64,
    /// Where the batches go.
    pub device: Device,
}

/// One finished epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochRecord {
    /// Mean training loss.
    pub train_loss: f64,
    /// Test accuracy in `[0, 1]` (NaN when not evaluated).
    pub test_acc: f64,
    /// Training wall time, seconds.
    pub seconds: f64,
}

/// Wall time per phase of a training step (filled only when profiling).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Assembling batches.
    pub data: Duration,
    /// Forward pass and losses.
    pub forward: Duration,
    /// Backward pass.
    pub backward: Duration,
    /// Optimizer update.
    pub optimizer: Duration,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = (self.data + self.forward + self.backward + self.optimizer).as_secs_f64().max(1e-12);
        let part = |d: Duration| format!("{:.1}s ({:.0}%)", d.as_secs_f64(), 100.0 * d.as_secs_f64() / all);
        write!(
            f,
            "data {}, forward {}, backward {}, optimizer {}",
            part(self.data),
            part(self.forward),
            part(self.backward),
            part(self.optimizer)
        )
    }
}

/// Model, optimizer and loop state.
pub struct Trainer {
    /// The model being trained.
    pub model: CapsNet,
    /// Adam over the model's parameters.
    pub opt: Adam,
    /// Loop hyper-parameters.
    pub cfg: TrainConfig,
    /// Finished epochs (the next epoch to run is `history.len()`).
    pub history: Vec<EpochRecord>,
    /// Time per phase, when `profiling`.
    pub profile: Profile,
    /// Whether to time the phases.
    pub profiling: bool,
    /// Data-parallel training: this rank's wrapper over (a handle-sharing clone of) `model`.
    pub dp: Option<DataParallel<CapsNet>>,
}

/// Adds the time `f` takes to `slot` (when `on`).
fn timed<T>(on: bool, slot: &mut Duration, f: impl FnOnce() -> T) -> T {
    if !on {
        return f();
    }
    let t = Instant::now();
    let out = f();
    *slot += t.elapsed();
    out
}

impl Trainer {
    /// A trainer starting at epoch 0.
    pub fn new(model: CapsNet, cfg: TrainConfig) -> Result<Trainer> {
        let opt = Adam::new(model.parameters(), AdamConfig::new(cfg.lr))?;
        Ok(Trainer { model, opt, cfg, history: Vec::new(), profile: Profile::default(), profiling: false, dp: None })
    }

    /// A trainer that is one rank of data-parallel training over `group` (a collective: every
    /// rank calls it). Every rank starts from rank 0's model; each step, each rank takes its
    /// share of the batch and the gradients are averaged, so the ranks together take the
    /// same steps as one trainer on the whole batch.
    pub fn data_parallel(model: CapsNet, cfg: TrainConfig, group: Arc<dyn ProcessGroup>) -> Result<Trainer> {
        // A clone shares every parameter and buffer handle: the wrapper and `model` are one model.
        let dp = DataParallel::new(model.clone(), group, SyncConfig::default())?;
        let mut t = Trainer::new(model, cfg)?;
        t.dp = Some(dp);
        Ok(t)
    }

    /// This rank and the number of ranks (`(0, 1)` without data parallelism).
    pub fn rank(&self) -> (usize, usize) {
        self.dp.as_ref().map_or((0, 1), |d| (d.group().rank(), d.group().world_size()))
    }

    /// The next epoch to run (0-based).
    pub fn epoch(&self) -> usize {
        self.history.len()
    }

    /// The learning rate of `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.cfg.lr * self.cfg.lr_decay.powi(epoch as i32)
    }

    /// One Adam step on `batch`; returns the loss. Data-parallel: this rank's share of
    /// `batch` (the whole global batch), and the global batch's mean loss.
    pub fn step(&mut self, batch: &Batch) -> Result<f64> {
        if self.dp.is_some() {
            return self.step_shard(batch);
        }
        let on = self.profiling;
        let (losses, _) = timed(on, &mut self.profile.forward, || self.model.losses(&batch.x, &batch.y))?;
        let grads = timed(on, &mut self.profile.backward, || losses.total.backward())?;
        timed(on, &mut self.profile.optimizer, || self.opt.step(&grads))?;
        losses.total.item()
    }

    fn step_shard(&mut self, batch: &Batch) -> Result<f64> {
        let (on, profile) = (self.profiling, &mut self.profile);
        let dp = self.dp.as_ref().ok_or_else(|| Error::argument("step", "not data-parallel"))?;
        let (rank, n) = (dp.group().rank(), dp.group().world_size());
        let total = batch.labels.len();
        let (lo, hi) = (total * rank / n, total * (rank + 1) / n);
        dp.sync_buffers()?;
        let (grads, local_sum) = if hi > lo {
            let (x, y) = (batch.x.narrow(0, lo, hi - lo)?, batch.y.narrow(0, lo, hi - lo)?);
            let (losses, _) = timed(on, &mut profile.forward, || dp.module().losses(&x, &y))?;
            // Each rank's loss is the mean over its share; weighted by share * n / total, the
            // average of the ranks' gradients is the gradient of the global batch's mean loss.
            let weighted = losses.total.mul_scalar(((hi - lo) * n) as f64 / total as f64)?;
            let grads = timed(on, &mut profile.backward, || dp.backward(&weighted))?;
            (grads, losses.total.item()? * (hi - lo) as f64)
        } else {
            // A short last batch can leave a rank without examples: it contributes zeros.
            (dp.reduce_gradients(Grads::default())?, 0.0)
        };
        timed(on, &mut profile.optimizer, || self.opt.step(&grads))?;
        let mut sum = [local_sum];
        dp.group().all_reduce_sum_f64("capsnet loss", &mut sum)?;
        Ok(sum[0] / total as f64)
    }

    /// The batches of `epoch`: `(indices, shift seed)` in order (the last may be short).
    pub fn batches(&self, n: usize, epoch: usize) -> Vec<(Vec<usize>, u64)> {
        let seed = epoch_seed(self.cfg.seed, epoch);
        permutation(n, seed)
            .chunks(self.cfg.batch_size.max(1))
            .enumerate()
            .map(|(k, idx)| (idx.to_vec(), mix(seed, k as u64 + (1 << 40))))
            .collect()
    }

    /// Runs the next epoch over `train` (at most `max_steps` steps), calling `on_step(images,
    /// loss)` after each step; returns the mean loss. Does not evaluate or record.
    pub fn train_epoch(
        &mut self,
        train: &Mnist,
        max_steps: Option<usize>,
        mut on_step: impl FnMut(usize, f64),
    ) -> Result<f64> {
        let epoch = self.epoch();
        self.opt.set_lr(self.lr_at(epoch));
        let (mut sum, mut count) = (0.0, 0usize);
        let batches = self.batches(train.len(), epoch);
        let steps = max_steps.unwrap_or(batches.len()).min(batches.len());
        for (idx, shift_seed) in &batches[..steps] {
            let shift = (self.cfg.shift > 0).then_some((self.cfg.shift, *shift_seed));
            let on = self.profiling;
            let batch = timed(on, &mut self.profile.data, || train.batch(idx, shift, self.cfg.device))?;
            let loss = self.step(&batch)?;
            if !loss.is_finite() {
                return Err(Error::Autograd { op: "train", msg: format!("loss became {loss} at epoch {epoch}") });
            }
            sum += loss * idx.len() as f64;
            count += idx.len();
            on_step(idx.len(), loss);
        }
        Ok(sum / count.max(1) as f64)
    }

    /// Writes model, optimizer and history to `path`: one library training checkpoint
    /// (`save_training_checkpoint`: one safetensors file, atomic), the loop state as its
    /// user metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        // JSON has no NaN (an epoch not evaluated): such values travel as null.
        let num = |x: f64| if x.is_finite() { json!(x) } else { json!(null) };
        let history: Vec<_> =
            self.history.iter().map(|r| json!([num(r.train_loss), num(r.test_acc), num(r.seconds)])).collect();
        let user = json!({ "epoch": self.history.len(), "seed": self.cfg.seed, "history": history });
        save_training_checkpoint(path, &self.model, &self.opt, &user)
    }

    /// Restores what [`Trainer::save`] wrote (the model must have the same sizes), strictly:
    /// model and optimizer (matched by parameter name) or nothing. The seed is taken from
    /// the checkpoint so that the resumed epochs see the same batches.
    pub fn restore(&mut self, path: &Path) -> Result<()> {
        let bad = |msg: &str| Error::Format { path: path.display().to_string(), msg: msg.into() };
        let ckpt = load_training_checkpoint(path, &self.model, &mut self.opt, &LoadOptions::default())?;
        let rows = ckpt.user["history"].as_array().ok_or_else(|| bad("no history (not a CapsNet checkpoint)"))?;
        let value = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        self.history = rows
            .iter()
            .map(|r| EpochRecord { train_loss: value(&r[0]), test_acc: value(&r[1]), seconds: value(&r[2]) })
            .collect();
        if let Some(seed) = ckpt.user["seed"].as_u64() {
            self.cfg.seed = seed;
        }
        Ok(())
    }
}

/// Loads the model part of a checkpoint (keys `model.*`), or a plain model state dict,
/// strictly: a missing, unexpected or mis-shaped key is an error naming it.
pub fn load_model(model: &CapsNet, sd: &StateDict, path: &Path) -> Result<()> {
    let prefixed = sd.keys().any(|k| k.starts_with("model."));
    let mut own = StateDict::new();
    for (k, t) in sd.iter() {
        match k.strip_prefix("model.") {
            Some(name) => own.insert(name, t.clone()),
            None if !prefixed => own.insert(k, t.clone()),
            None => {}
        }
    }
    let report = model.load_state_dict(&own, true).map_err(|e| Error::Format {
        path: path.display().to_string(),
        msg: format!("does not fit this model (saved with or without --small?): {e}"),
    })?;
    if !report.is_clean() {
        return Err(Error::Format {
            path: path.display().to_string(),
            msg: format!("does not fit this model: {report:?}"),
        });
    }
    Ok(())
}

/// Loads a model checkpoint file into `model`.
pub fn load_model_file(model: &CapsNet, path: &Path) -> Result<()> {
    load_model(model, &load_safetensors(path)?, path)
}

/// Accuracy on `data` (and the predictions), in batches of `batch_size`, under `no_grad`.
pub fn evaluate(model: &CapsNet, data: &Mnist, batch_size: usize, device: Device) -> Result<(f64, Vec<usize>)> {
    let _guard = no_grad();
    let mut preds = Vec::with_capacity(data.len());
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch_size.max(1)) {
        preds.extend(model.predict(&data.batch(idx, None, device)?.x)?);
    }
    let correct = preds.iter().zip(&data.labels).filter(|(p, l)| **p == **l as usize).count();
    Ok((correct as f64 / data.len().max(1) as f64, preds))
}

/// Images `idx` of `data` and the model's reconstructions of them (from the capsule of the
/// predicted class), each `28 * 28` floats in `[0, 1]`.
pub fn reconstructions(
    model: &CapsNet,
    data: &Mnist,
    idx: &[usize],
    device: Device,
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let _guard = no_grad();
    let batch = data.batch(idx, None, device)?;
    let out = model.forward_full(&batch.x, None)?;
    let px = data.rows * data.cols;
    let x = batch.x.to_dtype(DType::F32)?.to_vec::<f32>()?;
    let r = out.recon.to_vec::<f32>()?;
    Ok(x.chunks(px).zip(r.chunks(px)).map(|(a, b)| (a.to_vec(), b.to_vec())).collect())
}
