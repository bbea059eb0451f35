//! [`DataParallel`]: one replica of a model per rank, kept in step. At construction every
//! rank checks that all ranks hold the same state (names, shapes, dtypes, frozen flags,
//! buffer kinds and policies), then takes rank 0's parameters and buffers; after each
//! backward pass [`DataParallel::reduce_gradients`] averages the gradients (rank-ordered,
//! bucketed, frozen parameters never sent, missing gradients as zeros); before each forward
//! the buffers are synced by their [`SyncPolicy`]. Syncs *replace* a buffer's tensor, so a
//! tensor the tape saved in an earlier forward is never written to.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use stategrad_autograd::{DType, Device, Error, Grads, Result, Tensor};
use stategrad_backends::cpu::Pooled;
use stategrad_backends::{HostElement, Storage};
use stategrad_nn::{Buffer, Forward, Module, Param, Visitor, VisitorMut};

use crate::ProcessGroup;

/// How a buffer is kept in step across ranks.
///
/// | policy | at construction | before each forward |
/// | --- | --- | --- |
/// | `Broadcast` | rank 0's | rank 0's (PyTorch DDP's behaviour) |
/// | `Average` | rank 0's | the mean over ranks (running statistics that reflect every rank) |
/// | `Once` | rank 0's | untouched (the default for non-persistent buffers) |
/// | `Local` | untouched | untouched: each rank keeps its own |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Rank 0's value, sent before every forward.
    Broadcast,
    /// The all-reduce mean over ranks, before every forward (integers: in f64, truncated).
    Average,
    /// Each rank keeps its own value, never sent (not even at construction).
    Local,
    /// Rank 0's value, sent at construction only.
    Once,
}

/// Which [`SyncPolicy`] each buffer gets, and the gradient bucket size.
///
/// Rules by name pattern come first (the first match wins; `*` matches any run of
/// characters, dots included), then the kind's default: persistent buffers
/// [`SyncPolicy::Broadcast`], non-persistent ones [`SyncPolicy::Once`].
///
/// ```
/// use stategrad_dist::{SyncConfig, SyncPolicy};
/// let cfg = SyncConfig::default().buffers("*.running_*", SyncPolicy::Average);
/// assert_eq!(cfg.policy_for("bn1.running_mean", true), SyncPolicy::Average);
/// assert_eq!(cfg.policy_for("bn1.num_batches_tracked", true), SyncPolicy::Broadcast);
/// assert_eq!(cfg.policy_for("table", false), SyncPolicy::Once);
/// ```
#[derive(Clone, Debug)]
pub struct SyncConfig {
    rules: Vec<(String, SyncPolicy)>,
    persistent: SyncPolicy,
    non_persistent: SyncPolicy,
    bucket_bytes: usize,
}

/// Default gradient bucket: 32 MiB, so 8M f32 gradients are one bucket.
pub const DEFAULT_BUCKET_BYTES: usize = 32 << 20;

/// A float gradient of at least this size (or the bucket size, if smaller) is averaged in
/// its own storage rather than copied into a bucket: copying 31 MiB in and out cost the
/// CapsNet's all-reduce 15 % over a raw `MPI_Allreduce` of the same buffer.
const DIRECT_BYTES: usize = 1 << 20;

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            rules: Vec::new(),
            persistent: SyncPolicy::Broadcast,
            non_persistent: SyncPolicy::Once,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }
}

impl SyncConfig {
    /// Buffers whose dotted name matches `pattern` get `policy` (earlier rules win).
    pub fn buffers(mut self, pattern: &str, policy: SyncPolicy) -> Self {
        self.rules.push((pattern.to_string(), policy));
        self
    }

    /// The policy of persistent buffers no rule matches (default `Broadcast`).
    pub fn persistent(mut self, policy: SyncPolicy) -> Self {
        self.persistent = policy;
        self
    }

    /// The policy of non-persistent buffers no rule matches (default `Once`).
    pub fn non_persistent(mut self, policy: SyncPolicy) -> Self {
        self.non_persistent = policy;
        self
    }

    /// Gradient bucket size in bytes (at least one parameter per bucket).
    pub fn bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(1);
        self
    }

    /// The policy a buffer named `name` gets.
    pub fn policy_for(&self, name: &str, persistent: bool) -> SyncPolicy {
        self.rules.iter().find(|(p, _)| glob(p, name)).map(|r| r.1).unwrap_or(if persistent {
            self.persistent
        } else {
            self.non_persistent
        })
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Communication counters of one wrapper (what was sent from this rank's point of view).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Collective calls made for gradients (mask agreement included).
    pub gradient_collectives: usize,
    /// Collective calls made for buffers (construction included).
    pub buffer_collectives: usize,
    /// Times each buffer was sent, by name.
    pub buffer_sends: HashMap<String, usize>,
}

struct SyncedBuffer {
    name: String,
    buffer: Buffer,
    policy: SyncPolicy,
}

/// Data-parallel training of `M`: one `DataParallel` per rank, each over its own replica.
///
/// The wrapper is itself a [`Module`] with exactly the model's state names (no prefix), so
/// `state_dict`, checkpoints and optimizers work on it as on the plain model.
///
/// ```
/// use stategrad_dist::{run_replicas, DataParallel, SyncConfig, ProcessGroup};
/// use stategrad_nn::{Linear, Forward, Module};
/// use stategrad_autograd::{Tensor, DType, Device};
/// let results = run_replicas(2, |g| {
///     let model = Linear::new(3, 1)?;          // different random init on each rank
///     let rank = g.rank();
///     let dp = DataParallel::new(model, std::sync::Arc::new(g), SyncConfig::default())?;
///     let x = Tensor::full(&[2, 3], rank as f64, DType::F32, Device::Cpu)?;
///     let grads = dp.backward(&dp.forward(&x)?.sum_all()?)?;
///     let w = dp.module().weight.clone();
///     Ok((w.data().to_vec::<f32>()?, w.grad(&grads).unwrap().to_vec::<f32>()?))
/// });
/// let r: Vec<_> = results.into_iter().collect::<Result<_, _>>()?;
/// assert_eq!(r[0], r[1]);                          // same weights, same averaged gradient
/// assert_eq!(r[0].1, vec![1.0; 3]);                // mean of 2*0 and 2*1
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub struct DataParallel<M: Module> {
    module: M,
    group: Arc<dyn ProcessGroup>,
    bucket_bytes: usize,
    buffers: Vec<SyncedBuffer>,
    gradient_collectives: AtomicUsize,
    buffer_collectives: AtomicUsize,
    sends: std::sync::Mutex<HashMap<String, usize>>,
}

impl<M: Module> DataParallel<M> {
    /// Wraps this rank's replica. Every rank must call it (it is a collective): all ranks'
    /// state signatures are exchanged and compared first, so ranks with different models all
    /// fail with an [`stategrad_autograd::Error::Collective`] naming the first differing key
    /// (none hangs); then rank 0's parameters and every non-`Local` buffer are broadcast.
    pub fn new(module: M, group: Arc<dyn ProcessGroup>, cfg: SyncConfig) -> Result<Self> {
        const OP: &str = "DataParallel::new";
        let params = module.named_parameters();
        let buffers: Vec<SyncedBuffer> = module
            .named_buffers()
            .into_iter()
            .map(|(name, buffer)| {
                let policy = cfg.policy_for(&name, buffer.is_persistent());
                SyncedBuffer { name, buffer, policy }
            })
            .collect();
        let mut sig: Vec<(String, String)> = params
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    format!("parameter {:?} {}{}", p.shape(), p.dtype(), if p.needs_grad() { "" } else { " frozen" }),
                )
            })
            .collect();
        sig.extend(buffers.iter().map(|b| {
            let kind = if b.buffer.is_persistent() { "persistent" } else { "non-persistent" };
            (b.name.clone(), format!("{kind} buffer {:?} {} ({:?})", b.buffer.shape(), b.buffer.dtype(), b.policy))
        }));
        let text: String = sig.iter().map(|(n, d)| format!("{n}\t{d}\n")).collect();
        let all = group.all_gather_bytes(OP, text.as_bytes())?;
        let parse = |b: &[u8]| -> Vec<(String, String)> {
            String::from_utf8_lossy(b)
                .lines()
                .map(|l| l.split_once('\t').unwrap_or((l, "")))
                .map(|(n, d)| (n.to_string(), d.to_string()))
                .collect()
        };
        let ours = parse(&all[0]);
        for (r, other) in all.iter().enumerate().skip(1) {
            let theirs = parse(other);
            for i in 0..ours.len().max(theirs.len()) {
                let (a, b) = (ours.get(i), theirs.get(i));
                if a != b {
                    let show = |x: Option<&(String, String)>| {
                        x.map(|(n, d)| format!("`{n}` ({d})")).unwrap_or("nothing".into())
                    };
                    let key = a.or(b).map(|x| x.0.clone());
                    let msg = format!(
                        "ranks hold different models: entry {i} is {} on rank 0 but {} on rank {r}",
                        show(a),
                        show(b)
                    );
                    return Err(group.error(OP, key.as_deref(), msg));
                }
            }
        }
        let dp = DataParallel {
            module,
            group,
            bucket_bytes: cfg.bucket_bytes,
            buffers,
            gradient_collectives: AtomicUsize::new(0),
            buffer_collectives: AtomicUsize::new(0),
            sends: Default::default(),
        };
        for (_, p) in &params {
            p.set(dp.group.broadcast_tensor(OP, &p.data(), 0, p.device())?)?;
            dp.buffer_collectives.fetch_add(1, Ordering::Relaxed);
        }
        for b in dp.buffers.iter().filter(|b| b.policy != SyncPolicy::Local) {
            dp.send(OP, b, SyncPolicy::Broadcast)?;
        }
        Ok(dp)
    }

    fn send(&self, op: &'static str, b: &SyncedBuffer, how: SyncPolicy) -> Result<()> {
        let t = b.buffer.tensor();
        let new = if how == SyncPolicy::Average {
            self.group.all_reduce_tensor(op, &t, true)?
        } else {
            self.group.broadcast_tensor(op, &t, 0, t.device())?
        };
        // A fresh tensor replaces the old one: whatever the tape saved of the old stays intact.
        b.buffer.set(new)?;
        self.buffer_collectives.fetch_add(1, Ordering::Relaxed);
        *self.sends.lock().unwrap_or_else(|e| e.into_inner()).entry(b.name.clone()).or_default() += 1;
        Ok(())
    }

    /// The wrapped replica.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The replica, unwrapped.
    pub fn into_inner(self) -> M {
        self.module
    }

    /// The process group.
    pub fn group(&self) -> &Arc<dyn ProcessGroup> {
        &self.group
    }

    /// The policy each buffer got, by name.
    pub fn buffer_policies(&self) -> Vec<(String, SyncPolicy)> {
        self.buffers.iter().map(|b| (b.name.clone(), b.policy)).collect()
    }

    /// Communication counters so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            gradient_collectives: self.gradient_collectives.load(Ordering::Relaxed),
            buffer_collectives: self.buffer_collectives.load(Ordering::Relaxed),
            buffer_sends: self.sends.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Syncs every `Broadcast` and `Average` buffer (a collective: every rank calls it).
    /// [`Forward::forward`] on the wrapper calls it first; call it yourself before a forward
    /// of the inner module, or after the last step to read synced statistics.
    pub fn sync_buffers(&self) -> Result<()> {
        for b in &self.buffers {
            if matches!(b.policy, SyncPolicy::Broadcast | SyncPolicy::Average) {
                self.send("DataParallel::sync_buffers", b, b.policy)?;
            }
        }
        Ok(())
    }

    /// `loss.backward()` followed by [`DataParallel::reduce_gradients`].
    pub fn backward(&self, loss: &Tensor) -> Result<Grads> {
        self.reduce_gradients(loss.backward()?)
    }

    /// Replaces each trainable parameter's gradient in `grads` by its mean over all ranks
    /// (a collective). Ranks first agree on which parameters got a gradient anywhere; a
    /// parameter without one on this rank counts as zeros. Frozen parameters are never sent.
    /// Gradients travel in buckets of the configured size (consecutive parameters of one
    /// dtype), so a model's whole gradient is a handful of collectives; the sums are
    /// rank-ordered, so every rank gets bit-identical gradients.
    pub fn reduce_gradients(&self, mut grads: Grads) -> Result<Grads> {
        const OP: &str = "DataParallel::reduce_gradients";
        let params: Vec<(String, Param)> =
            self.module.named_parameters().into_iter().filter(|(_, p)| p.needs_grad()).collect();
        let mask: Vec<u8> = params.iter().map(|(_, p)| p.grad(&grads).is_some() as u8).collect();
        let masks = self.group.all_gather_bytes(OP, &mask)?;
        self.gradient_collectives.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = masks.iter().position(|m| m.len() != mask.len()) {
            return Err(self.group.error(
                OP,
                None,
                format!("rank {r} has {} trainable parameters, this rank {}", masks[r].len(), mask.len()),
            ));
        }
        let used: Vec<&(String, Param)> =
            params.iter().enumerate().filter(|(i, _)| masks.iter().any(|m| m[*i] != 0)).map(|(_, p)| p).collect();
        // A float gradient at least a bucket (or 1 MiB) in size is averaged where it lies, with
        // no copy into a bucket and back. The choice rests on the parameter's dtype and size
        // only, so every rank makes the same collectives in the same order.
        let direct = |p: &Param| {
            matches!(p.dtype(), DType::F32 | DType::F64)
                && p.numel() * p.dtype().size_in_bytes() >= DIRECT_BYTES.min(self.bucket_bytes)
        };
        for (_, p) in used.iter().filter(|(_, p)| direct(p)) {
            self.reduce_direct(p, &mut grads)?;
        }
        let used: Vec<&(String, Param)> = used.into_iter().filter(|(_, p)| !direct(p)).collect();
        let mut start = 0;
        while start < used.len() {
            let dtype = used[start].1.dtype();
            let mut end = start;
            let mut bytes = 0;
            while end < used.len()
                && used[end].1.dtype() == dtype
                && (end == start || bytes + used[end].1.numel() * dtype.size_in_bytes() <= self.bucket_bytes)
            {
                bytes += used[end].1.numel() * dtype.size_in_bytes();
                end += 1;
            }
            self.reduce_bucket(&used[start..end], dtype, &mut grads)?;
            start = end;
        }
        Ok(grads)
    }

    /// Averages one parameter's gradient in its own storage when this rank's `Grads` holds it
    /// alone (the usual case after backward), else in a private copy
    /// ([`Tensor::host_slice_mut`]); zeros where this rank has none. Half precision never
    /// comes here.
    fn reduce_direct(&self, p: &Param, grads: &mut Grads) -> Result<()> {
        const OP: &str = "DataParallel::reduce_gradients";
        let shape = p.shape();
        let local = grads.remove(p.id());
        macro_rules! mean {
            ($t:ty, $mean:ident) => {{
                // This rank's gradient as a writable host buffer (copy-on-write: in place when
                // the Grads handed over held the only handle), or the reason it cannot be.
                let prepared = (|| -> Result<Tensor> {
                    let mut g = match local {
                        Some(g) if g.shape() != shape => {
                            return Err(Error::shape(
                                OP,
                                &[g.shape(), &shape],
                                "a gradient must have its parameter's shape",
                            ))
                        }
                        Some(g) if g.device() == Device::Cpu => g,
                        Some(g) => g.to_device(Device::Cpu)?,
                        None => Tensor::zeros(&shape, p.dtype(), Device::Cpu)?,
                    };
                    g.host_slice_mut::<$t>()?;
                    Ok(g)
                })();
                match prepared {
                    Ok(mut g) => {
                        self.group.$mean(OP, g.host_slice_mut::<$t>()?)?;
                        self.gradient_collectives.fetch_add(1, Ordering::Relaxed);
                        g
                    }
                    Err(e) => {
                        // Still meet the other ranks, with nothing: their collective fails on
                        // the length instead of waiting for this rank forever.
                        let _ = self.group.$mean(OP, &mut []);
                        return Err(e);
                    }
                }
            }};
        }
        let g = match p.dtype() {
            DType::F32 => mean!(f32, all_reduce_mean_f32),
            _ => mean!(f64, all_reduce_mean_f64),
        };
        grads.insert(p.id(), if p.device() == Device::Cpu { g } else { g.to_device(p.device())? });
        Ok(())
    }

    fn reduce_bucket(&self, bucket: &[&(String, Param)], dtype: DType, grads: &mut Grads) -> Result<()> {
        const OP: &str = "DataParallel::reduce_gradients";
        let n = self.group.world_size();
        let total: usize = bucket.iter().map(|(_, p)| p.numel()).sum();
        // The bucket comes from the CPU backend's pool (and returns to it when the gradients
        // are dropped): a training step reuses the same pages instead of faulting fresh ones
        // in. The summed bucket becomes one tensor and each parameter's gradient a view of it
        // (no copy out).
        macro_rules! reduce {
            ($t:ty, $into:ident) => {{
                let mut send = <$t as Pooled>::take(total)?;
                for (_, p) in bucket {
                    match p.grad(grads) {
                        Some(g) => extend_host(&mut send, &g, n)?,
                        None => send.resize(send.len() + p.numel(), 0.0),
                    }
                }
                // Summed in place: no receive buffer to allocate and fill.
                self.group.$into(OP, &mut send)?;
                self.gradient_collectives.fetch_add(1, Ordering::Relaxed);
                Tensor::from_vec(send, &[total], Device::Cpu)?
            }};
        }
        let flat = match dtype {
            DType::F32 => reduce!(f32, all_reduce_sum_f32),
            DType::F64 => reduce!(f64, all_reduce_sum_f64),
            DType::I64 => return Ok(()),
            DType::F16 | DType::BF16 => {
                return Err(Error::Unsupported {
                    op: OP,
                    msg: "half-precision gradients (keep master weights in f32 and cast for compute)".into(),
                })
            }
        };
        let mut at = 0;
        for (_, p) in bucket {
            let k = p.numel();
            let mut g = flat.narrow(0, at, k)?.reshape(&p.shape())?;
            if p.device() != Device::Cpu {
                g = g.to_device(p.device())?;
            }
            grads.insert(p.id(), g);
            at += k;
        }
        Ok(())
    }
}

/// Appends `t`'s elements divided by `n` to `out`: straight from host memory when `t` is a
/// contiguous CPU tensor, else through a copy to the host.
///
/// Dividing before the sum saves a pass over the bucket. For a power-of-two world size it
/// gives the same bits as dividing the sum (halving is exact); otherwise the rounding
/// differs from `sum / n` by at most an ulp per term, and is still the same on every rank.
// Without a GPU backend compiled in, `Storage` has only the CPU variant.
#[allow(irrefutable_let_patterns)]
fn extend_host<T: HostElement + Scale>(out: &mut Vec<T>, t: &Tensor, n: usize) -> Result<()> {
    // For a power of two, multiplying by 1/n is exact and gives the quotient's bits.
    let scale = |part: &[T], out: &mut Vec<T>| {
        if n.is_power_of_two() {
            let r = T::recip(n);
            out.extend(part.iter().map(|&x| x * r));
        } else {
            let d = T::from_count(n);
            out.extend(part.iter().map(|&x| x / d));
        }
    };
    if t.is_contiguous() {
        if let Storage::Cpu(s) = t.storage() {
            if let Some(all) = T::slice(s) {
                let o = t.layout().offset();
                if let Some(part) = all.get(o..o + t.numel()) {
                    scale(part, out);
                    return Ok(());
                }
            }
        }
    }
    scale(&t.to_vec::<T>()?, out);
    Ok(())
}

/// The float types gradients are averaged in.
trait Scale: Copy + std::ops::Mul<Output = Self> + std::ops::Div<Output = Self> {
    fn from_count(n: usize) -> Self;
    fn recip(n: usize) -> Self;
}

impl Scale for f32 {
    fn from_count(n: usize) -> f32 {
        n as f32
    }
    fn recip(n: usize) -> f32 {
        1.0 / n as f32
    }
}

impl Scale for f64 {
    fn from_count(n: usize) -> f64 {
        n as f64
    }
    fn recip(n: usize) -> f64 {
        1.0 / n as f64
    }
}

/// Transparent: the wrapper has no state or name of its own; walks, typed access and
/// replacement reach the replica's modules as if it were not there.
impl<M: Module> Module for DataParallel<M> {
    fn visit(&self, v: &mut dyn Visitor) {
        self.module.visit(v)
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        self.module.visit_mut(v)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        self.module.as_any()
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        self.module.as_any_mut()
    }

    fn as_layer_slot(&mut self) -> Option<&mut stategrad_nn::LayerSlot> {
        self.module.as_layer_slot()
    }

    fn type_name(&self) -> &'static str {
        self.module.type_name()
    }
}

impl<M: Module + Forward> Forward for DataParallel<M> {
    /// Syncs the buffers ([`DataParallel::sync_buffers`]), then runs the replica's forward.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.sync_buffers()?;
        self.module.forward(x)
    }
}
