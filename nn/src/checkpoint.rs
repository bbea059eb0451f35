//! Checkpoints in the safetensors format: dotted names; F32, F64, I64, F16 and BF16
//! tensors; readable by `safetensors.torch.load_file` and able to read what
//! `safetensors.torch.save_file(model.state_dict())` writes.
//!
//! **Zero-copy loading.** [`load_safetensors`] memory-maps the file (read-only, `memmap2`)
//! and every CPU tensor whose bytes are aligned for its dtype borrows the mapping
//! ([`stategrad_autograd::HostBuf`]): loading a 1 GiB checkpoint costs the page cache, not
//! a second gigabyte of heap. Kernels write new storages and loads replace a parameter's
//! tensor; the fused optimizer step, which updates in place, first copies a borrowed
//! storage (`Tensor::optim_step_`'s copy-on-write): the first update of a mapped parameter
//! allocates its own buffer, tensors never updated keep borrowing, and the file is never written through the
//! mapping (it is mapped `PROT_READ`: a stray write would fault, not corrupt the file). The
//! mapping lives as long as any tensor borrowing it. Saves replace files by rename, so
//! saving over a file that a model still borrows is safe (the old inode stays mapped);
//! truncating it in place from another program is not (reads would fault: the usual
//! contract of memory maps, memmap2's `unsafe`). [`LoadOptions::mmap`]`(false)` reads
//! the file into memory instead (one buffer, which the tensors borrow the same way). A GPU load uploads each tensor from the mapping, one tensor
//! at a time, without a host copy of its own.
//!
//! **Streaming saves.** [`save_safetensors`] writes the header, then each tensor's bytes in
//! turn: a contiguous CPU tensor straight from its storage, any other (a strided view, a GPU
//! tensor) through a host copy of that one tensor. No copy of the whole state is built.
//!
//! **Metadata** (the safetensors header's `__metadata__`, strings): `format: pt` (as
//! PyTorch writes it), [`ORDER_KEY`] (the state dict's key order), [`VERSIONS_KEY`] (each
//! module's state version, see `Module::state_version`), [`TIES_KEY`] (tied weights:
//! each alias and the key it shares, saved once), and any user entries.
//!
//! Writes are atomic ([`write_atomic`]): a temporary file in the destination folder is
//! written, fsynced and renamed over the destination, then the folder is fsynced; a failed
//! write leaves the old file as it was. Every read failure — truncated, corrupt, random or
//! foreign bytes, unsupported dtypes — is an [`Error::Format`] naming the path.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use safetensors::tensor::{Dtype, SafeTensors};
use stategrad_autograd::half::{bf16, f16};
use stategrad_autograd::{
    CpuStorage, DType, Device, Error, HostBuf, HostElement, Layout, Result, SharedBytes, Storage, Tensor,
};

use crate::optim::{GroupState, Optimizer, OptimizerState, ParamState};
use crate::{LoadReport, Module, StateDict};
use stategrad_autograd::SerTensor;

pub use crate::load::{LoadOptions, ShapeMismatch};

/// Metadata key holding the state dict's key order (safetensors itself sorts by dtype and name).
pub const ORDER_KEY: &str = "stategrad.order";
/// Metadata key holding module state versions: a JSON object from module path to version.
pub const VERSIONS_KEY: &str = "stategrad.versions";
/// Metadata key holding tied weights: a JSON object from each alias to the key saved.
pub const TIES_KEY: &str = "stategrad.ties";

/// A safetensors header's `__metadata__`: string keys to string values.
pub type Metadata = BTreeMap<String, String>;

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
    }
}

fn our_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        _ => return None,
    })
}

fn format_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format { path: path.display().to_string(), msg: msg.into() }
}

/// Writes `sd` to `path` as safetensors, atomically (see [`write_atomic`]), streaming each
/// tensor (see the module docs).
pub fn save_safetensors(sd: &StateDict, path: impl AsRef<Path>) -> Result<()> {
    save_safetensors_with_metadata(sd, &Metadata::new(), path)
}

/// [`save_safetensors`] with extra `__metadata__` entries (`format` and [`ORDER_KEY`] are
/// always written by stategrad).
pub fn save_safetensors_with_metadata(sd: &StateDict, metadata: &Metadata, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    // Data in order of decreasing element size, so every tensor's offset is aligned for
    // its dtype (the header is padded to 8 bytes) and a later load can borrow it in place.
    let mut order: Vec<(&str, &Tensor)> = sd.iter().collect();
    order.sort_by_key(|(_, t)| std::cmp::Reverse(t.dtype().size_in_bytes()));
    let mut header = serde_json::Map::new();
    let mut meta: BTreeMap<String, String> = metadata.clone();
    meta.insert("format".into(), "pt".into());
    meta.insert(ORDER_KEY.into(), serde_json::to_string(&sd.keys().collect::<Vec<_>>()).expect("strings serialize"));
    header.insert("__metadata__".into(), serde_json::to_value(&meta).expect("strings serialize"));
    let mut offset = 0usize;
    for (k, t) in &order {
        if t.device() == Device::Meta {
            return Err(Error::State {
                op: "save_safetensors",
                msg: format!("{k:?} is unmaterialised (built in deferred mode): nothing to save"),
            });
        }
        let bytes = t.numel() * t.dtype().size_in_bytes();
        header.insert(
            (*k).to_string(),
            serde_json::json!({ "dtype": format!("{:?}", st_dtype(t.dtype())), "shape": t.shape(), "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header).map_err(|e| format_error(path, e.to_string()))?;
    header.resize(header.len().div_ceil(8) * 8, b' ');
    write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for (_, t) in &order {
            write_tensor(w, t)?;
        }
        Ok(())
    })
}

/// Writes `t`'s elements, little-endian: in place when it is a contiguous CPU tensor, else
/// through a host copy of this one tensor.
fn write_tensor(w: &mut dyn Write, t: &Tensor) -> io::Result<()> {
    let n = t.numel();
    let size = t.dtype().size_in_bytes();
    if let (Storage::Cpu(s), Some(off), true) =
        (t.storage(), t.layout().contiguous_offset(), cfg!(target_endian = "little"))
    {
        return w.write_all(&le_bytes(s)[off * size..(off + n) * size]);
    }
    let host = t.storage().to_host(t.layout()).map_err(io::Error::other)?;
    w.write_all(&le_bytes(&host))
}

#[cfg(target_endian = "little")]
fn le_bytes(s: &CpuStorage) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Borrowed(s.as_le_bytes())
}

#[cfg(target_endian = "big")]
fn le_bytes(s: &CpuStorage) -> std::borrow::Cow<'_, [u8]> {
    fn each<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    std::borrow::Cow::Owned(match s {
        CpuStorage::F32(v) => each(v, f32::to_le_bytes),
        CpuStorage::F64(v) => each(v, f64::to_le_bytes),
        CpuStorage::I64(v) => each(v, i64::to_le_bytes),
        CpuStorage::F16(v) => each(v, f16::to_le_bytes),
        CpuStorage::BF16(v) => each(v, bf16::to_le_bytes),
    })
}

/// Reads a safetensors file into a [`StateDict`] of CPU tensors (borrowing the memory-mapped
/// file where aligned, see the module docs), in the order it was saved by stategrad, else by
/// name.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<StateDict> {
    Ok(read_safetensors(path.as_ref(), true)?.0)
}

/// [`load_safetensors`] that also returns the header's `__metadata__`.
pub fn load_safetensors_with_metadata(path: impl AsRef<Path>) -> Result<(StateDict, Metadata)> {
    read_safetensors(path.as_ref(), true)
}

struct Mapped(memmap2::Mmap);

impl SharedBytes for Mapped {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Reads `path`, memory-mapped when `mmap` (and the file can be mapped), else into memory.
pub(crate) fn read_safetensors(path: &Path, mmap: bool) -> Result<(StateDict, Metadata)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // SAFETY: the map is read-only and private to this process's reads; the file being
    // truncated by another program while mapped is the caveat documented above.
    let mapped = (mmap && len > 0).then(|| unsafe { memmap2::Mmap::map(&file) }.ok()).flatten();
    let bytes: Arc<dyn SharedBytes> = match mapped {
        Some(m) => Arc::new(Mapped(m)),
        None => Arc::new(fs::read(path).map_err(|e| Error::io(path, e))?),
    };
    parse_safetensors(bytes).map_err(|msg| format_error(path, msg))
}

/// Reads safetensors bytes already in memory (a download, an archive member); `source`
/// names them in errors. Every malformed input is [`Error::Format`], never a panic. The
/// tensors borrow one copy of `bytes`.
pub fn state_dict_from_safetensors(bytes: &[u8], source: &str) -> Result<StateDict> {
    let shared: Arc<dyn SharedBytes> = Arc::new(bytes.to_vec());
    parse_safetensors(shared).map(|(sd, _)| sd).map_err(|msg| Error::Format { path: source.to_string(), msg })
}

fn parse_safetensors(shared: Arc<dyn SharedBytes>) -> std::result::Result<(StateDict, Metadata), String> {
    let bytes = shared.bytes();
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let metadata: Metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    if let Some(order) = metadata.get(ORDER_KEY) {
        let saved: Vec<String> = serde_json::from_str(order).map_err(|e| format!("bad {ORDER_KEY} metadata: {e}"))?;
        let mut sorted = saved.clone();
        sorted.sort();
        if sorted != names {
            return Err(format!("{ORDER_KEY} metadata does not list the file's tensors"));
        }
        names = saved;
    }
    let mut sd = StateDict::new();
    for name in names {
        let view = st.tensor(&name).map_err(|e| format!("tensor {name:?}: {e}"))?;
        let dtype = our_dtype(view.dtype()).ok_or_else(|| {
            format!("tensor {name:?}: dtype {:?} is not supported (F32, F64, I64, F16 and BF16 are)", view.dtype())
        })?;
        let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        let t = tensor_at(&shared, offset, dtype, view.shape()).map_err(|e| format!("tensor {name:?}: {e}"))?;
        sd.insert(name, t);
    }
    Ok((sd, metadata))
}

/// The tensor whose little-endian elements start at byte `offset` of `shared` (a mapped
/// file, or the file read into memory): borrowing them when aligned, else a copy.
fn tensor_at(shared: &Arc<dyn SharedBytes>, offset: usize, dtype: DType, shape: &[usize]) -> Result<Tensor> {
    fn typed<T: HostElement, const N: usize>(
        shared: &Arc<dyn SharedBytes>,
        offset: usize,
        n: usize,
        from_le: fn([u8; N]) -> T,
    ) -> HostBuf<T> {
        if let Some(b) = HostBuf::borrowed(shared.clone(), offset, n) {
            return b;
        }
        let data = &shared.bytes()[offset..offset + n * N];
        data.chunks_exact(N)
            .map(|c| from_le(c.try_into().expect("chunks_exact yields N bytes")))
            .collect::<Vec<_>>()
            .into()
    }
    let n: usize = shape.iter().product();
    let s = match dtype {
        DType::F32 => CpuStorage::F32(typed(shared, offset, n, f32::from_le_bytes)),
        DType::F64 => CpuStorage::F64(typed(shared, offset, n, f64::from_le_bytes)),
        DType::I64 => CpuStorage::I64(typed(shared, offset, n, i64::from_le_bytes)),
        DType::F16 => CpuStorage::F16(typed(shared, offset, n, f16::from_le_bytes)),
        DType::BF16 => CpuStorage::BF16(typed(shared, offset, n, bf16::from_le_bytes)),
    };
    Tensor::from_storage(Storage::Cpu(s), Layout::contiguous(shape))
}

/// Reads a JSON metadata entry, `None` when absent.
pub(crate) fn json_entry<T: serde::de::DeserializeOwned>(
    meta: &Metadata,
    key: &str,
) -> std::result::Result<Option<T>, String> {
    meta.get(key).map(|v| serde_json::from_str(v).map_err(|e| format!("bad {key} metadata: {e}"))).transpose()
}

/// Metadata key of a training checkpoint: JSON with the optimizer's hyper-parameters and
/// per-parameter steps (its tensors are stored as `optim.{param}.{slot}`) and the user's
/// metadata.
pub const TRAINING_KEY: &str = "stategrad.training";

/// What [`load_training_checkpoint`] restored.
#[derive(Clone, Debug)]
pub struct TrainingCheckpoint {
    /// The user metadata given to [`save_training_checkpoint`] (epoch, step, seeds, history).
    pub user: serde_json::Value,
    /// What the model load did.
    pub model: LoadReport,
    /// What the optimizer load did (by parameter name).
    pub optimizer: LoadReport,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TrainingMeta {
    kind: String,
    groups: Vec<TrainingGroup>,
    user: serde_json::Value,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TrainingGroup {
    lr: f64,
    weight_decay: f64,
    /// `(name, step, slot names)` per parameter.
    params: Vec<(String, u64, Vec<String>)>,
}

/// Saves a training checkpoint: `model`'s state (keys `model.*`), `optimizer`'s state keyed
/// by parameter name (`optim.{name}.{slot}`, hyper-parameters and steps in the metadata)
/// and `user` metadata (any JSON: epoch, step, RNG seeds, history), in one safetensors
/// file, atomically and streamed. [`load_training_checkpoint`] restores it.
pub fn save_training_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    user: &serde_json::Value,
) -> Result<()> {
    let path = path.as_ref();
    let graph = model.state_graph();
    let mut sd = StateDict::new();
    for (k, t) in graph.state_dict().iter() {
        sd.insert(format!("model.{k}"), t.clone());
    }
    let names = model.named_parameters();
    let slots = optimizer.param_slots()?;
    let mut groups = Vec::new();
    for (gi, (group, slots)) in optimizer.param_groups().iter().zip(&slots).enumerate() {
        let mut params = Vec::new();
        for (p, slot) in group.params.iter().zip(slots) {
            let Some((name, _)) = names.iter().find(|(_, q)| q.ptr_eq(p)) else {
                return Err(Error::State {
                    op: "save_training_checkpoint",
                    msg: format!("a parameter of optimizer group {gi} is not a parameter of the model"),
                });
            };
            for (k, t) in &slot.tensors {
                sd.insert(format!("optim.{name}.{k}"), t.clone());
            }
            params.push((name.clone(), slot.step, slot.tensors.keys().cloned().collect()));
        }
        groups.push(TrainingGroup {
            lr: group.learning_rate(),
            weight_decay: group.weight_decay.unwrap_or(0.0),
            params,
        });
    }
    let kind = optimizer.state_dict()?.kind; // hyper-parameters only are read from it
    let training = TrainingMeta { kind, groups, user: user.clone() };
    let mut meta = crate::load::module_metadata(model, &graph)?;
    meta.insert(TRAINING_KEY.into(), serde_json::to_string(&training).map_err(|e| format_error(path, e.to_string()))?);
    save_safetensors_with_metadata(&sd, &meta, path)
}

/// Restores a [`save_training_checkpoint`] file into `model` and `optimizer` (which must
/// be built over `model`'s parameters), following `opts` for the model (strictness also
/// applies to the optimizer, matched by parameter name). If either part fails, neither
/// changes. Returns the user metadata and both reports.
pub fn load_training_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &mut dyn Optimizer,
    opts: &LoadOptions,
) -> Result<TrainingCheckpoint> {
    let path = path.as_ref();
    let (sd, meta) = read_safetensors(path, opts.mmap)?;
    let training: TrainingMeta = json_entry(&meta, TRAINING_KEY)
        .map_err(|e| format_error(path, e))?
        .ok_or_else(|| format_error(path, format!("not a training checkpoint (no {TRAINING_KEY} metadata)")))?;
    let mut model_sd = StateDict::new();
    for (k, t) in sd.iter() {
        if let Some(k) = k.strip_prefix("model.") {
            model_sd.insert(k, t.clone());
        } else if !k.starts_with("optim.") {
            return Err(format_error(path, format!("unexpected tensor {k:?} in a training checkpoint")));
        }
    }
    let mut groups = Vec::new();
    for g in &training.groups {
        let mut params = Vec::new();
        for (name, step, slots) in &g.params {
            let mut tensors = BTreeMap::new();
            for slot in slots {
                let key = format!("optim.{name}.{slot}");
                let t = sd.get(&key).ok_or_else(|| format_error(path, format!("missing tensor {key:?}")))?;
                tensors.insert(slot.clone(), SerTensor::from_tensor(t)?);
            }
            params.push(ParamState { name: Some(name.clone()), step: *step, tensors });
        }
        groups.push(GroupState { lr: g.lr, weight_decay: g.weight_decay, params });
    }
    let state = OptimizerState { kind: training.kind, groups };
    let before = model.state_dict(); // shared handles: a cheap snapshot to restore on failure
    let model_report = crate::load::load_module(model, &model_sd, &meta, opts, "load_training_checkpoint")?;
    let optimizer_report = match optimizer.load_state_dict_named(&state, model, opts.strict) {
        Ok(r) => r,
        Err(e) => {
            model.load_state_dict(&before, true)?;
            return Err(e);
        }
    };
    Ok(TrainingCheckpoint { user: training.user, model: model_report, optimizer: optimizer_report })
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary file of a save in progress: `.{file}.tmp-{pid}-{n}` beside the target.
fn tmp_prefix(file_name: &std::ffi::OsStr) -> String {
    format!(".{}.tmp-", file_name.to_string_lossy())
}

/// Removes the temporary file when dropped, unless it was renamed (also on a panic inside
/// the caller's `write`).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes a file atomically: `write` fills a temporary file in `path`'s folder, which is
/// fsynced and renamed over `path`, then the folder is fsynced. If `write` (or any step)
/// fails, or panics, the temporary file is removed and `path` is left as it was.
///
/// A save killed part-way (`kill -9`, power loss) cannot clean up after itself; the next
/// save to the same `path` removes the temporary files of earlier saves to it whose writing
/// process is gone (on Linux, by `/proc/PID`; elsewhere, temporary files older than a day).
/// Files of live writers, this process's included, are never touched.
pub fn write_atomic(path: impl AsRef<Path>, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let path = path.as_ref();
    let file_name = path.file_name().ok_or_else(|| Error::io(path, io::Error::other("not a file path")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    remove_stale_tmp_files(&dir, file_name);
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{}{}-{n}", tmp_prefix(file_name), std::process::id()));
    let mut guard = TmpGuard(Some(tmp.clone()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        {
            let mut w = io::BufWriter::new(&mut file);
            write(&mut w)?;
            w.flush()?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        return Err(Error::io(path, e)); // the guard removes the temporary file
    }
    guard.0 = None; // renamed: nothing to remove
    sync_dir(&dir).map_err(|e| Error::io(&dir, e))
}

/// Removes `dir/.{file_name}.tmp-{pid}-{n}` files left by writers that no longer run.
/// Best effort: a file that cannot be read or removed is left alone (the save goes on).
fn remove_stale_tmp_files(dir: &Path, file_name: &std::ffi::OsStr) {
    let prefix = tmp_prefix(file_name);
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let Some(pid) = rest.split_once('-').and_then(|(pid, n)| {
            n.parse::<u64>().ok()?;
            pid.parse::<u32>().ok()
        }) else {
            continue; // not one of ours
        };
        if pid != std::process::id() && writer_is_gone(pid, &entry) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(target_os = "linux")]
fn writer_is_gone(pid: u32, _entry: &fs::DirEntry) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(not(target_os = "linux"))]
fn writer_is_gone(_pid: u32, entry: &fs::DirEntry) -> bool {
    // No portable liveness check without a libc call: only files untouched for a day.
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(()) // directories cannot be opened for fsync here; the rename is still atomic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_format_error_never_a_panic() {
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![1, 2, 3], vec![0xff; 64]];
        // A header length past the end, and a header claiming more data than exists.
        cases.push([64u64.to_le_bytes().to_vec(), b"{}      ".to_vec()].concat());
        let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        cases.push([(header.len() as u64).to_le_bytes().to_vec(), header.to_vec(), vec![0; 8]].concat());
        let header = br#"{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}"#;
        cases.push([(header.len() as u64).to_le_bytes().to_vec(), header.to_vec(), vec![0; 4]].concat());
        let header = br#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
        cases.push([(header.len() as u64).to_le_bytes().to_vec(), header.to_vec(), vec![0; 2]].concat());
        for bytes in cases {
            let shared: Arc<dyn SharedBytes> = Arc::new(bytes.clone());
            assert!(parse_safetensors(shared).is_err(), "{bytes:?} parsed");
        }
    }
}
