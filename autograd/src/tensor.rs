//! `Tensor`: a cheap handle (one `Arc`) over a shared storage, a layout, and the tape
//! information that says whether (and how) it is tracked. Creation, host transfer and
//! accessors live here; every op lives in its own file under `ops/`.
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use stategrad_backends::{
    checked_numel, CpuStorage, DType, Device, Distribution, Error, HostElement, Layout, Result, Storage,
};

use crate::defaults::{default_device, default_dtype, device_or_default, dtype_or_default};
use crate::tape::NodeRef;

/// Identifies a tracked leaf; gradients in [`crate::Grads`] are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TensorId {
    /// A fresh, process-unique id (parameter containers keep one for their whole life).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        TensorId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// How a tensor takes part in autograd.
pub(crate) enum Track {
    /// Not tracked: no gradient flows to or through it.
    None,
    /// A leaf that requires grad.
    Leaf(TensorId),
    /// The output of a recorded op.
    Node(NodeRef),
}

pub(crate) struct Inner {
    pub(crate) storage: Arc<Storage>,
    pub(crate) layout: Layout,
    pub(crate) track: Track,
}

/// An n-dimensional array on a device, possibly tracked by the tape.
///
/// Cloning is cheap (one `Arc`). Views (transpose, narrow, expand, ...) share storage.
/// `Tensor` is `Send + Sync`; grad mode is per thread.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

static SEED: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);

/// Seeds the global generator behind [`next_seed`] (and so every random creation and
/// initialisation that takes no explicit seed).
pub fn manual_seed(seed: u64) {
    SEED.store(seed, Ordering::SeqCst);
}

/// The next seed of the global generator: deterministic given [`manual_seed`] and the
/// order of calls.
pub fn next_seed() -> u64 {
    let s = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
    stategrad_backends::uniform_at(s, 0).to_bits() ^ s
}

fn check_numel(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
    let numel = checked_numel(op, shape)?;
    if numel != len {
        return Err(Error::Shape {
            op,
            shapes: vec![shape.to_vec()],
            msg: format!("{len} elements do not fill shape {shape:?} ({numel} elements)"),
        });
    }
    Ok(())
}

impl Tensor {
    /// An untracked tensor over `storage` viewed through `layout`. The view must lie inside
    /// the storage (every element it reads exists): otherwise [`Error::Shape`] naming both,
    /// so no kernel ever reads out of bounds, on any device.
    pub fn from_storage(storage: Storage, layout: Layout) -> Result<Tensor> {
        let extent = layout.storage_extent();
        if extent > storage.len() {
            return Err(Error::Shape {
                op: "from_storage",
                shapes: vec![layout.shape().to_vec(), layout.strides().to_vec()],
                msg: format!(
                    "a view (shape, strides, offset {}) reaching element {} over a storage of {} elements",
                    layout.offset(),
                    extent - 1,
                    storage.len()
                ),
            });
        }
        Ok(Tensor::from_storage_unchecked(storage, layout))
    }

    /// [`Tensor::from_storage`] for a kernel's fresh output, whose layout fits by construction.
    pub(crate) fn from_storage_unchecked(storage: Storage, layout: Layout) -> Tensor {
        Tensor(Arc::new(Inner { storage: Arc::new(storage), layout, track: Track::None }))
    }

    /// An untracked tensor sharing this one's storage, viewed through `layout`.
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor(Arc::new(Inner { storage: self.0.storage.clone(), layout, track: Track::None }))
    }

    pub(crate) fn with_track(&self, track: Track) -> Tensor {
        Tensor(Arc::new(Inner { storage: self.0.storage.clone(), layout: self.0.layout.clone(), track }))
    }

    /// A tensor of `shape` holding `data` (row-major), on `device` (`None`: the default
    /// device, [`crate::default_device`]).
    pub fn from_vec<T: HostElement>(
        data: Vec<T>,
        shape: &[usize],
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        check_numel("from_vec", data.len(), shape)?;
        let storage = Storage::from_host(CpuStorage::from_vec(data), device_or_default(device))?;
        Ok(Tensor::from_storage_unchecked(storage, Layout::contiguous(shape)))
    }

    /// A tensor of `shape` holding a copy of `data`, on `device` (`None`: the default).
    pub fn from_slice<T: HostElement>(
        data: &[T],
        shape: &[usize],
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// PyTorch's `torch.tensor([...])` for a list of floats: `data` (row-major) converted
    /// to the default dtype, on the default device ([`crate::TensorOptions::scope`]).
    ///
    /// ```
    /// use stategrad_autograd::{default_dtype, Tensor};
    /// let t = Tensor::new(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.dtype(), default_dtype());
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn new(data: &[f64], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice(data, shape, Device::Cpu)?.to_dtype(default_dtype())?.to_device(default_device())
    }

    /// A 0-dimensional tensor holding `value`. `None` for dtype or device: the default.
    pub fn scalar(value: f64, dtype: impl Into<Option<DType>>, device: impl Into<Option<Device>>) -> Result<Tensor> {
        Tensor::full(&[], value, dtype, device)
    }

    /// A tensor of `shape` filled with `value`. `None` for dtype or device: the default
    /// ([`crate::default_dtype`], [`crate::default_device`]).
    pub fn full(
        shape: &[usize],
        value: f64,
        dtype: impl Into<Option<DType>>,
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        Tensor::filled("full", shape, value, dtype_or_default(dtype), device_or_default(device))
    }

    /// `full` under the name of the constructor the user called (errors name it).
    fn filled(op: &'static str, shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let numel = checked_numel(op, shape)?;
        let storage = Storage::fill(device, numel, dtype, value).map_err(|e| e.in_op(op))?;
        Ok(Tensor::from_storage_unchecked(storage, Layout::contiguous(shape)))
    }

    /// Zeros of `shape`. `None` for dtype or device: the default.
    pub fn zeros(
        shape: &[usize],
        dtype: impl Into<Option<DType>>,
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        Tensor::filled("zeros", shape, 0.0, dtype_or_default(dtype), device_or_default(device))
    }

    /// Ones of `shape`. `None` for dtype or device: the default.
    pub fn ones(shape: &[usize], dtype: impl Into<Option<DType>>, device: impl Into<Option<Device>>) -> Result<Tensor> {
        Tensor::filled("ones", shape, 1.0, dtype_or_default(dtype), device_or_default(device))
    }

    /// `start, start + 1, ...` below `end` (PyTorch's `arange`). `None` for dtype: int64,
    /// as PyTorch gives for integer bounds; `None` for device: the default.
    pub fn arange(
        start: i64,
        end: i64,
        dtype: impl Into<Option<DType>>,
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        let n = usize::try_from(end.saturating_sub(start).max(0))
            .map_err(|_| Error::argument("arange", format!("{start}..{end} has too many elements")))?;
        checked_numel("arange", &[n])?;
        let mut v: Vec<i64> = stategrad_backends::cpu::try_vec(n).map_err(|e| e.in_op("arange"))?;
        v.extend(start..start + n as i64);
        Tensor::from_vec(v, &[n], device)?.to_dtype(dtype.into().unwrap_or(DType::I64))
    }

    /// Uniform random values on `[lo, hi)` from the global generator ([`manual_seed`]).
    /// `None` for dtype or device: the default.
    pub fn rand(
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: impl Into<Option<DType>>,
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        Tensor::rand_seeded(shape, Distribution::Uniform { lo, hi }, dtype, device, next_seed())
    }

    /// Normal random values from the global generator ([`manual_seed`]). `None` for dtype
    /// or device: the default.
    pub fn randn(
        shape: &[usize],
        mean: f64,
        std: f64,
        dtype: impl Into<Option<DType>>,
        device: impl Into<Option<Device>>,
    ) -> Result<Tensor> {
        Tensor::rand_seeded(shape, Distribution::Normal { mean, std }, dtype, device, next_seed())
    }

    /// Random values drawn with an explicit seed: element `i` depends only on `(seed, i)`,
    /// the same for every thread count and device. `None` for dtype or device: the default.
    pub fn rand_seeded(
        shape: &[usize],
        dist: Distribution,
        dtype: impl Into<Option<DType>>,
        device: impl Into<Option<Device>>,
        seed: u64,
    ) -> Result<Tensor> {
        let numel = checked_numel("rand", shape)?;
        let storage = Storage::rand(device_or_default(device), numel, dtype_or_default(dtype), dist, seed)
            .map_err(|e| e.in_op("rand"))?;
        Ok(Tensor::from_storage_unchecked(storage, Layout::contiguous(shape)))
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.shape(), self.dtype(), self.device())
    }

    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::ones(self.shape(), self.dtype(), self.device())
    }

    /// `value` everywhere, with this tensor's shape, dtype and device.
    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        Tensor::full(self.shape(), value, self.dtype(), self.device())
    }

    /// A tensor of `shape` filled with `value`, with this tensor's dtype and device.
    pub fn full_on(&self, shape: &[usize], value: f64) -> Result<Tensor> {
        Tensor::full(shape, value, self.dtype(), self.device())
    }

    /// Uniform random values on `[lo, hi)` with this tensor's shape, dtype and device.
    pub fn rand_like(&self, lo: f64, hi: f64) -> Result<Tensor> {
        Tensor::rand(self.shape(), lo, hi, self.dtype(), self.device())
    }

    /// Normal random values with this tensor's shape, dtype and device.
    pub fn randn_like(&self, mean: f64, std: f64) -> Result<Tensor> {
        Tensor::randn(self.shape(), mean, std, self.dtype(), self.device())
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }

    /// Size of dimension `dim` (negative counts from the end).
    pub fn size(&self, dim: impl crate::Dim) -> Result<usize> {
        Ok(self.shape()[dim.to_index("size", self.rank())?])
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.storage.dtype()
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.0.storage.device()
    }

    /// Shape, strides and offset of this view.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// The shared storage (advanced: backends and serialization).
    pub fn storage(&self) -> &Storage {
        &self.0.storage
    }

    /// True when the elements are stored densely in row-major order.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// True when gradients flow through this tensor: a leaf that requires grad, or the
    /// output of a recorded op.
    pub fn is_tracked(&self) -> bool {
        !matches!(self.0.track, Track::None)
    }

    /// True for a leaf that requires grad.
    pub fn is_leaf(&self) -> bool {
        matches!(self.0.track, Track::Leaf(_))
    }

    /// The leaf id (for a leaf that requires grad), which keys its gradient in [`crate::Grads`].
    pub fn id(&self) -> Option<TensorId> {
        match self.0.track {
            Track::Leaf(id) => Some(id),
            _ => None,
        }
    }

    /// True when both handles share one storage allocation.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// With `true`, a new tracked leaf sharing this storage (detached from any graph);
    /// with `false`, an untracked handle. Only float tensors can require grad.
    pub fn requires_grad(&self, requires: bool) -> Result<Tensor> {
        if !requires {
            return Ok(self.detach());
        }
        self.leaf_with_id(TensorId::new())
    }

    /// A tracked leaf sharing this storage with the given, stable id (how a parameter
    /// container hands out its tensor: the gradient is found under the same id every step).
    pub fn leaf_with_id(&self, id: TensorId) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return Err(Error::DType { op: "requires_grad", expected: "a float dtype", got: self.dtype() });
        }
        Ok(self.with_track(Track::Leaf(id)))
    }

    /// An untracked handle to the same data: the graph is cut here.
    pub fn detach(&self) -> Tensor {
        if !self.is_tracked() {
            return self.clone();
        }
        self.with_track(Track::None)
    }

    /// The elements, row-major, copied to the host as `T` (which must be the dtype's type).
    pub fn to_vec<T: HostElement>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch { op: "to_vec", lhs: self.dtype(), rhs: T::DTYPE });
        }
        let host = self.0.storage.to_host(&self.0.layout)?;
        Ok(T::slice(&host).map(|s| s.to_vec()).unwrap_or_default())
    }

    /// The elements as one writable host slice, copy-on-write: written where they lie when
    /// this handle alone owns a storage that holds exactly its contiguous elements in memory
    /// of its own; otherwise the handle first gets a private contiguous copy, so no other
    /// handle (a clone, a view, a tensor the tape saved, a mapped file) sees the writes.
    /// An untracked CPU tensor of `T`'s dtype only: else `Error::Autograd`, `Error::Device`
    /// or `Error::DTypeMismatch`.
    ///
    /// For in-place work on values nothing else can observe, such as averaging a gradient
    /// across ranks where it lies.
    ///
    /// ```
    /// # use stategrad_autograd::{Device, Tensor};
    /// let mut a = Tensor::from_slice(&[1.0f32, 2.0], &[2], Device::Cpu)?;
    /// let b = a.clone(); // shares a's storage
    /// a.host_slice_mut::<f32>()?[0] = 5.0; // a gets its own copy first
    /// assert_eq!((a.to_vec::<f32>()?, b.to_vec::<f32>()?), (vec![5.0, 2.0], vec![1.0, 2.0]));
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn host_slice_mut<T: HostElement>(&mut self) -> Result<&mut [T]> {
        const OP: &str = "host_slice_mut";
        if self.is_tracked() {
            return Err(Error::Autograd { op: OP, msg: "a tracked tensor is not written in place (detach it)".into() });
        }
        if self.device() != Device::Cpu {
            return Err(Error::Device { op: OP, a: self.device(), b: Device::Cpu });
        }
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch { op: OP, lhs: self.dtype(), rhs: T::DTYPE });
        }
        self.make_unique(OP)?;
        match self.unique_storage() {
            Storage::Cpu(s) => T::slice_mut(s),
            #[allow(unreachable_patterns)] // `Meta` (and GPU storages where compiled in)
            _ => None,
        }
        .ok_or_else(|| Error::Unsupported { op: OP, msg: "a storage without host memory".into() })
    }

    /// The elements, row-major, converted to f64 (any dtype).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(self.0.storage.to_host(&self.0.layout)?.to_f64_vec())
    }

    /// The single element of a one-element tensor, as f64.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape("item", &[self.shape()], "item() needs exactly one element"));
        }
        Ok(self.to_f64_vec()?[0])
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor[{:?}, {}, {}", self.shape(), self.dtype(), self.device())?;
        match &self.0.track {
            Track::None => {}
            Track::Leaf(id) => write!(f, ", leaf {id:?}")?,
            Track::Node(n) => write!(f, ", grad_fn={}", n.name())?,
        }
        if self.numel() <= 16 {
            if let Ok(v) = self.to_f64_vec() {
                write!(f, ", {v:?}")?;
            }
        }
        write!(f, "]")
    }
}
