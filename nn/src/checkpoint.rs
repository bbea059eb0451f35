//! Checkpoints in the safetensors format (the `safetensors` crate): dotted names, F32, F64
//! and I64 tensors, readable by `safetensors.torch.load_file` and able to read what
//! `safetensors.torch.save_file(model.state_dict())` writes.
//!
//! Writes are atomic ([`write_atomic`]): a temporary file in the destination folder is
//! written, fsynced and renamed over the destination, then the folder is fsynced; a failed
//! write leaves the old file as it was. Every read failure — truncated, corrupt, random or
//! foreign bytes, unsupported dtypes — is an [`Error::Format`] naming the path.
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, View};
use stategrad_autograd::{DType, Device, Error, Result, Tensor};

use crate::StateDict;

/// Metadata key holding the state dict's key order (safetensors itself sorts by dtype and name).
const ORDER_KEY: &str = "stategrad.order";

struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_bytes(t: &Tensor) -> Result<Bytes> {
    let (dtype, data) = match t.dtype() {
        DType::F32 => (Dtype::F32, t.to_vec::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
        DType::F64 => (Dtype::F64, t.to_vec::<f64>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
        DType::I64 => (Dtype::I64, t.to_vec::<i64>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    Ok(Bytes { dtype, shape: t.shape().to_vec(), data })
}

fn from_bytes(dtype: Dtype, shape: &[usize], data: &[u8]) -> std::result::Result<Tensor, String> {
    fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| c.try_into().expect("chunks_exact yields N bytes"))
    }
    let t = match dtype {
        Dtype::F32 => Tensor::from_vec(chunks(data).map(f32::from_le_bytes).collect::<Vec<_>>(), shape, Device::Cpu),
        Dtype::F64 => Tensor::from_vec(chunks(data).map(f64::from_le_bytes).collect::<Vec<_>>(), shape, Device::Cpu),
        Dtype::I64 => Tensor::from_vec(chunks(data).map(i64::from_le_bytes).collect::<Vec<_>>(), shape, Device::Cpu),
        other => return Err(format!("dtype {other:?} is not supported (F32, F64 and I64 are)")),
    };
    t.map_err(|e| e.to_string())
}

/// Writes `sd` to `path` (a `&str`, `String`, `Path`, ...) as safetensors, atomically (see
/// [`write_atomic`]).
pub fn save_safetensors(sd: &StateDict, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = sd.iter().map(|(k, t)| Ok((k.to_string(), to_bytes(t)?))).collect::<Result<Vec<_>>>()?;
    let order = serde_json::to_string(&sd.keys().collect::<Vec<_>>())
        .map_err(|e| Error::Format { path: path.display().to_string(), msg: e.to_string() })?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string()), (ORDER_KEY.to_string(), order)]);
    let bytes = safetensors::serialize(tensors.iter().map(|(k, b)| (k.as_str(), b)), Some(metadata))
        .map_err(|e| Error::Format { path: path.display().to_string(), msg: e.to_string() })?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// Reads a safetensors file into a [`StateDict`] (CPU tensors), in the order it was saved
/// by stategrad, else by name.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_safetensors(&bytes).map_err(|msg| Error::Format { path: path.display().to_string(), msg })
}

/// Reads safetensors bytes already in memory (a download, an archive member); `source`
/// names them in errors. Every malformed input is [`Error::Format`], never a panic.
pub fn state_dict_from_safetensors(bytes: &[u8], source: &str) -> Result<StateDict> {
    parse_safetensors(bytes).map_err(|msg| Error::Format { path: source.to_string(), msg })
}

fn parse_safetensors(bytes: &[u8]) -> std::result::Result<StateDict, String> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    if let Some(order) = metadata.metadata().as_ref().and_then(|m| m.get(ORDER_KEY)) {
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
        let t = from_bytes(view.dtype(), view.shape(), view.data()).map_err(|e| format!("tensor {name:?}: {e}"))?;
        sd.insert(name, t);
    }
    Ok(sd)
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
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
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
        let header = br#"{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#;
        cases.push([(header.len() as u64).to_le_bytes().to_vec(), header.to_vec(), vec![0; 4]].concat());
        for bytes in cases {
            assert!(parse_safetensors(&bytes).is_err(), "{bytes:?} parsed");
        }
    }
}
