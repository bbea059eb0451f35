//! The one `Error` type of stategrad (re-exported by every crate above this one).
use crate::{DType, Device, GradcheckFailure, LoadReport};

/// Every fallible stategrad API returns this error. Each variant names the op (or file)
/// and the shapes, dtypes, devices or keys involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that do not broadcast against each other.
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not broadcast")]
    Broadcast {
        /// The op.
        op: &'static str,
        /// Left shape.
        lhs: Vec<usize>,
        /// Right shape.
        rhs: Vec<usize>,
    },
    /// Shapes that do not fit the op's shape rule.
    #[error("{op}: {msg} (shapes {shapes:?})")]
    Shape {
        /// The op.
        op: &'static str,
        /// The shapes involved, in argument order.
        shapes: Vec<Vec<usize>>,
        /// What is wrong.
        msg: String,
    },
    /// A dimension index outside `-rank..rank`.
    #[error("{op}: dimension {dim} out of range for a tensor of rank {rank}")]
    Dim {
        /// The op.
        op: &'static str,
        /// The dimension asked for.
        dim: i64,
        /// The tensor's rank.
        rank: usize,
    },
    /// Two operands of different dtypes.
    #[error("{op}: dtypes {lhs} and {rhs} differ (no implicit casts; use to_dtype)")]
    DTypeMismatch {
        /// The op.
        op: &'static str,
        /// Left dtype.
        lhs: DType,
        /// Right dtype.
        rhs: DType,
    },
    /// A dtype the op does not accept.
    #[error("{op}: expected {expected}, got {got}")]
    DType {
        /// The op.
        op: &'static str,
        /// What the op accepts.
        expected: &'static str,
        /// What it got.
        got: DType,
    },
    /// Operands on different devices.
    #[error("{op}: tensors on {a} and {b} (no implicit copies; use to_device)")]
    Device {
        /// The op.
        op: &'static str,
        /// First device.
        a: Device,
        /// Second device.
        b: Device,
    },
    /// An index outside its dimension.
    #[error("{op}: index {index} out of range for dimension {dim} of size {size}")]
    Index {
        /// The op.
        op: &'static str,
        /// The offending index.
        index: i64,
        /// The dimension indexed.
        dim: usize,
        /// That dimension's size.
        size: usize,
    },
    /// A device that does not exist here, or a backend not compiled in.
    #[error("device {device} unavailable: {reason}")]
    DeviceUnavailable {
        /// The device asked for.
        device: Device,
        /// Why it cannot be used.
        reason: String,
    },
    /// An op or dtype the backend does not support.
    #[error("{op}: unsupported: {msg}")]
    Unsupported {
        /// The op.
        op: &'static str,
        /// What is unsupported.
        msg: String,
    },
    /// A gradient asked for through something that has none.
    #[error("{op}: not differentiable: {msg}")]
    NotDifferentiable {
        /// The op.
        op: &'static str,
        /// Why.
        msg: String,
    },
    /// Misuse of the autograd engine (graph already freed, non-scalar backward, ...).
    #[error("{op}: {msg}")]
    Autograd {
        /// The call.
        op: &'static str,
        /// What went wrong.
        msg: String,
    },
    /// Anomaly mode found a NaN or Inf produced by a backward rule.
    #[error("anomaly: backward of {op} produced {what}")]
    Anomaly {
        /// The op whose backward rule produced it.
        op: &'static str,
        /// What was found (e.g. "NaN in the gradient of input 0").
        what: String,
    },
    /// A gradient check that failed: the worst element, with both values.
    #[error("gradcheck: {0}")]
    Gradcheck(Box<GradcheckFailure>),
    /// A strict state-dict load that found problems; nothing was changed. The report lists
    /// every missing and unexpected key (with suggestions) and every shape or dtype mismatch.
    #[error("{op}: strict load failed, nothing loaded:{}", Problems(report))]
    Load {
        /// The call (`load_state_dict`, `load_safetensors`, ...).
        op: &'static str,
        /// What was found.
        report: Box<LoadReport>,
    },
    /// An argument outside what the op accepts (a probability outside [0, 1], a chunk
    /// count of zero, an empty list of tensors, ...).
    #[error("{op}: {msg}")]
    Argument {
        /// The op.
        op: &'static str,
        /// What is wrong, with the value.
        msg: String,
    },
    /// An allocation that the device could not satisfy.
    #[error("{op}: out of memory allocating {bytes} bytes on {device}")]
    OutOfMemory {
        /// The op that allocated.
        op: &'static str,
        /// The size asked for.
        bytes: u128,
        /// Where.
        device: Device,
    },
    /// A collective operation (all-reduce, broadcast, all-gather, barrier, or a check made
    /// before one) that could not complete: ranks that disagree on the model, a rank that left
    /// the group or never arrived, an MPI failure. Every rank involved gets one, none hangs.
    #[error("{op} on rank {rank}{}: {msg}", .key.as_ref().map(|k| format!(" at `{k}`")).unwrap_or_default())]
    Collective {
        /// The collective or the call that ran it (`DataParallel::new`, `all_reduce`, ...).
        op: &'static str,
        /// The rank reporting it.
        rank: usize,
        /// The state key involved, when there is one (the first differing parameter or buffer).
        key: Option<String>,
        /// What went wrong, naming the other ranks involved.
        msg: String,
    },
    /// Module state: bad names, duplicate registrations, missing or unexpected keys.
    #[error("{op}: {msg}")]
    State {
        /// The call (`register_parameter`, `load_state_dict`, ...).
        op: &'static str,
        /// What is wrong, naming every key involved.
        msg: String,
    },
    /// A string that does not parse (device names, ...).
    #[error("cannot parse {what} from {input:?}: expected {expected}")]
    Parse {
        /// What was parsed.
        what: &'static str,
        /// The input.
        input: String,
        /// What would have parsed.
        expected: &'static str,
    },
    /// A file that is truncated, corrupt or not of the expected format.
    #[error("{path}: {msg}")]
    Format {
        /// The file (or stream) read.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An I/O failure, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The path read or written.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Displays a report's problems only (the error's message).
struct Problems<'a>(&'a LoadReport);

impl std::fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt_problems(f)
    }
}

/// `Result` with stategrad's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, shapes: &[&[usize]], msg: impl Into<String>) -> Self {
        Error::Shape { op, shapes: shapes.iter().map(|s| s.to_vec()).collect(), msg: msg.into() }
    }

    /// This error with `op` as its op when it is an [`Error::OutOfMemory`]: the call the
    /// user made is named, not the kernel or allocator inside it.
    pub fn in_op(self, op: &'static str) -> Self {
        match self {
            Error::OutOfMemory { bytes, device, .. } => Error::OutOfMemory { op, bytes, device },
            e => e,
        }
    }

    /// Shorthand for [`Error::Argument`].
    pub fn argument(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Argument { op, msg: msg.into() }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}
