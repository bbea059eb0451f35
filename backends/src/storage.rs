//! `Storage`: the enum over backends. Each kernel call is dispatched here, once, to the
//! backend that owns the operands (a GPU storage carries its backend's handle, so no device
//! lookup happens per kernel); operands on different devices are an error.
use crate::cpu::CpuBackend;
#[cfg(feature = "cube")]
use crate::cube::{self, CubeStorage};
use half::{bf16, f16};

use crate::host::{HostBuf, Pod};
use crate::{
    BinaryOp, Conv2dParams, DType, Device, Distribution, Error, HostElement, Kernels, Layout, OptimStep, ReduceOp,
    Result, UnaryOp,
};

/// Host memory: one [`HostBuf`] per dtype (an owned vector, or a read-only window of a
/// memory-mapped file).
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    /// f32 elements.
    F32(HostBuf<f32>),
    /// f64 elements.
    F64(HostBuf<f64>),
    /// i64 elements.
    I64(HostBuf<i64>),
    /// IEEE half-precision elements (storage only: compute goes through f32).
    F16(HostBuf<f16>),
    /// bfloat16 elements (storage only: compute goes through f32).
    BF16(HostBuf<bf16>),
}

/// `$body` with `$v` bound to the payload of each variant of a [`CpuStorage`].
macro_rules! each_cpu {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            CpuStorage::F32($v) => $body,
            CpuStorage::F64($v) => $body,
            CpuStorage::I64($v) => $body,
            CpuStorage::F16($v) => $body,
            CpuStorage::BF16($v) => $body,
        }
    };
}

impl CpuStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_cpu!(self, v => v.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the elements borrow a memory-mapped file instead of owning a vector.
    pub fn is_borrowed(&self) -> bool {
        each_cpu!(self, v => v.is_borrowed())
    }

    /// The elements as a `T` slice, when the dtype is `T`'s.
    pub fn as_slice<T: HostElement>(&self) -> Option<&[T]> {
        T::slice(self)
    }

    /// The elements' little-endian bytes, in place (what a checkpoint stores).
    #[cfg(target_endian = "little")]
    pub fn as_le_bytes(&self) -> &[u8] {
        fn bytes<T: Pod>(v: &[T]) -> &[u8] {
            // SAFETY: `T: Pod` has no padding; the slice's memory is `size_of_val(v)` bytes.
            unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
        }
        each_cpu!(self, v => bytes(v))
    }

    /// Wraps a typed vector.
    pub fn from_vec<T: HostElement>(v: Vec<T>) -> Self {
        T::into_storage(v)
    }

    /// The elements converted to f64 (for tests and printing).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.to_vec(),
            CpuStorage::I64(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            CpuStorage::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        }
    }
}

/// Shape-free stand-in for the memory of a tensor built in deferred mode
/// ([`crate::meta::deferred`]): its dtype and element count, no data.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaStorage {
    /// The element type the tensor will have.
    pub dtype: DType,
    /// Its element count.
    pub len: usize,
}

/// A tensor's memory on one device. Cheap to share behind an `Arc`; kernels write fresh
/// outputs, except [`Storage::optim_step`], which updates storages its caller holds uniquely.
#[derive(Debug)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// Memory of a cubecl device (wgpu or cuda).
    #[cfg(feature = "cube")]
    Cube(CubeStorage),
    /// No memory: a tensor of a model built in deferred mode, waiting to be materialised
    /// (every kernel on it is an [`Error::State`]).
    Meta(MetaStorage),
}

/// Large host buffers go back to the CPU backend's pool (see `cpu/pool.rs`) for reuse.
impl Drop for Storage {
    fn drop(&mut self) {
        #[allow(irrefutable_let_patterns)] // refutable with the GPU backend compiled in
        if let Storage::Cpu(s) = self {
            use crate::cpu::Pooled;
            // Borrowed (mapped) elements are not the pool's: dropping the window unmaps.
            match std::mem::replace(s, CpuStorage::F32(Vec::new().into())) {
                CpuStorage::F32(v) => v.into_owned_vec().map(f32::give),
                CpuStorage::F64(v) => v.into_owned_vec().map(f64::give),
                CpuStorage::I64(v) => v.into_owned_vec().map(i64::give),
                CpuStorage::F16(v) => v.into_owned_vec().map(f16::give),
                CpuStorage::BF16(v) => v.into_owned_vec().map(bf16::give),
            };
        }
    }
}

/// The error of a kernel asked to read a tensor that was never materialised.
fn meta_error(op: &'static str) -> Error {
    Error::State {
        op,
        msg: "the tensor is unmaterialised (built in deferred mode): load a checkpoint into the model first".into(),
    }
}

/// [`meta_error`] when any operand is a [`Storage::Meta`].
fn check_materialised(op: &'static str, operands: &[&Storage]) -> Result<()> {
    match operands.iter().any(|s| matches!(s, Storage::Meta(_))) {
        true => Err(meta_error(op)),
        false => Ok(()),
    }
}

fn device_error(op: &'static str, a: &Storage, b: &Storage) -> Error {
    Error::Device { op, a: a.device(), b: b.device() }
}

impl Storage {
    /// The device holding this storage.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.device(),
            Storage::Meta(_) => Device::Meta,
        }
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.len(),
            Storage::Meta(m) => m.len,
        }
    }

    /// True when no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.dtype(),
            Storage::Meta(m) => m.dtype,
        }
    }

    /// Waits for the kernels queued on `device` and returns the deferred error of any that
    /// failed since the last read-back (an out-of-range index on a GPU is
    /// [`Error::Index`] naming the op), clearing it. `Ok` at once on the CPU.
    pub fn synchronize(device: Device) -> Result<()> {
        match device {
            #[cfg(feature = "cube")]
            Device::Wgpu(_) | Device::Cuda(_) => cube::synchronize(device),
            _ => Ok(()),
        }
    }

    /// Copies host data to `device`.
    pub fn from_host(data: CpuStorage, device: Device) -> Result<Storage> {
        if device == Device::Meta || crate::meta::is_deferred() {
            return Ok(Storage::Meta(MetaStorage { dtype: data.dtype(), len: data.len() }));
        }
        match device {
            Device::Cpu => Ok(Storage::Cpu(data)),
            #[cfg(feature = "cube")]
            Device::Wgpu(_) | Device::Cuda(_) => Ok(Storage::Cube(cube::backend(device)?.from_host(&data)?)),
            #[cfg(feature = "cube")]
            Device::Meta => Ok(Storage::Meta(MetaStorage { dtype: data.dtype(), len: data.len() })),
            #[cfg(not(feature = "cube"))]
            _ => Err(Error::DeviceUnavailable {
                device,
                reason: "stategrad was built without GPU support (enable the `wgpu` or `cuda` feature)".into(),
            }),
        }
    }

    /// The view `l` copied to the host, contiguous.
    pub fn to_host(&self, l: &Layout) -> Result<CpuStorage> {
        match self {
            Storage::Cpu(s) => CpuBackend.to_host(s, l),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.backend().to_host(s, l),
            Storage::Meta(_) => Err(meta_error("to_host")),
        }
    }

    /// The view `l` copied to `device` (contiguous there).
    pub fn to_device(&self, l: &Layout, device: Device) -> Result<Storage> {
        // In deferred mode a placeholder moved anywhere stays a placeholder.
        if device == Device::Meta || (matches!(self, Storage::Meta(_)) && crate::meta::is_deferred()) {
            return Ok(Storage::Meta(MetaStorage { dtype: self.dtype(), len: l.numel() }));
        }
        if self.device() == device {
            return self.copy_strided(l);
        }
        // A whole borrowed (memory-mapped) host storage uploads straight from the mapping:
        // cloning it clones the window's `Arc`, not the elements.
        if let Storage::Cpu(s) = self {
            if s.is_borrowed() && l.contiguous_offset() == Some(0) && l.numel() == s.len() {
                return Storage::from_host(s.clone(), device);
            }
        }
        Storage::from_host(self.to_host(l)?, device)
    }

    /// `numel` copies of `value` on `device`.
    pub fn fill(device: Device, numel: usize, dtype: DType, value: f64) -> Result<Storage> {
        if device == Device::Meta || crate::meta::is_deferred() {
            return Ok(Storage::Meta(MetaStorage { dtype, len: numel }));
        }
        match device {
            Device::Cpu => CpuBackend.fill(numel, dtype, value).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            _ => cube::backend(device)?.fill(numel, dtype, value).map(Storage::Cube),
            #[cfg(not(feature = "cube"))]
            _ => Storage::from_host(CpuStorage::F32(vec![].into()), device),
        }
    }

    /// `numel` seeded random elements on `device` (same values on every device).
    pub fn rand(device: Device, numel: usize, dtype: DType, dist: Distribution, seed: u64) -> Result<Storage> {
        if device == Device::Meta || crate::meta::is_deferred() {
            return Ok(Storage::Meta(MetaStorage { dtype, len: numel }));
        }
        match device {
            Device::Cpu => CpuBackend.rand(numel, dtype, dist, seed).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            _ => cube::backend(device)?.rand(numel, dtype, dist, seed).map(Storage::Cube),
            #[cfg(not(feature = "cube"))]
            _ => Storage::from_host(CpuStorage::F32(vec![].into()), device),
        }
    }

    /// See [`Kernels::copy_strided`].
    pub fn copy_strided(&self, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => CpuBackend.copy_strided(s, l).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.backend().copy_strided(s, l).map(Storage::Cube),
            // Placeholders stay placeholders through copies and casts (a constructor's
            // `to_dtype` in deferred mode); kernels that read data fail.
            Storage::Meta(m) => Ok(Storage::Meta(MetaStorage { dtype: m.dtype, len: l.numel() })),
        }
    }

    /// See [`Kernels::cast`].
    pub fn cast(&self, l: &Layout, dtype: DType) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => CpuBackend.cast(s, l, dtype).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.backend().cast(s, l, dtype).map(Storage::Cube),
            Storage::Meta(_) => Ok(Storage::Meta(MetaStorage { dtype, len: l.numel() })),
        }
    }

    /// See [`Kernels::unary`].
    pub fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => CpuBackend.unary(op, s, l).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.backend().unary(op, s, l).map(Storage::Cube),
            Storage::Meta(_) => Err(meta_error("unary")),
        }
    }

    /// See [`Kernels::binary`].
    pub fn binary(&self, op: BinaryOp, la: &Layout, rhs: &Storage, lb: &Layout) -> Result<Storage> {
        check_materialised("binary", &[self, rhs])?;
        #[allow(unreachable_patterns)]
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => CpuBackend.binary(op, a, la, b, lb).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            (Storage::Cube(a), Storage::Cube(b)) if a.device() == b.device() => {
                a.backend().binary(op, a, la, b, lb).map(Storage::Cube)
            }
            _ => Err(device_error("binary", self, rhs)),
        }
    }

    /// See [`Kernels::where_cond`].
    pub fn where_cond(&self, lc: &Layout, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Result<Storage> {
        check_materialised("where_cond", &[self, a, b])?;
        #[allow(unreachable_patterns)]
        match (self, a, b) {
            (Storage::Cpu(c), Storage::Cpu(a), Storage::Cpu(b)) => {
                CpuBackend.where_cond(c, lc, a, la, b, lb).map(Storage::Cpu)
            }
            #[cfg(feature = "cube")]
            (Storage::Cube(c), Storage::Cube(x), Storage::Cube(y))
                if c.device() == x.device() && x.device() == y.device() =>
            {
                c.backend().where_cond(c, lc, x, la, y, lb).map(Storage::Cube)
            }
            _ if self.device() != a.device() => Err(device_error("where", self, a)),
            _ => Err(device_error("where", a, b)),
        }
    }

    /// See [`Kernels::reduce`].
    pub fn reduce(&self, op: ReduceOp, l: &Layout, axes: &[usize]) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => CpuBackend.reduce(op, s, l, axes).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.backend().reduce(op, s, l, axes).map(Storage::Cube),
            Storage::Meta(_) => Err(meta_error("reduce")),
        }
    }

    /// See [`Kernels::softmax`].
    pub fn softmax(&self, l: &Layout, axis: usize, log: bool) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => CpuBackend.softmax(s, l, axis, log).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            Storage::Cube(s) => s.backend().softmax(s, l, axis, log).map(Storage::Cube),
            Storage::Meta(_) => Err(meta_error("softmax")),
        }
    }

    /// See [`Kernels::matmul`].
    pub fn matmul(&self, la: &Layout, rhs: &Storage, lb: &Layout) -> Result<Storage> {
        check_materialised("matmul", &[self, rhs])?;
        #[allow(unreachable_patterns)]
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => CpuBackend.matmul(a, la, b, lb).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            (Storage::Cube(a), Storage::Cube(b)) if a.device() == b.device() => {
                a.backend().matmul(a, la, b, lb).map(Storage::Cube)
            }
            _ => Err(device_error("matmul", self, rhs)),
        }
    }

    /// See [`Kernels::conv2d`].
    pub fn conv2d(&self, lx: &Layout, w: &Storage, lw: &Layout, p: &Conv2dParams) -> Result<Storage> {
        check_materialised("conv2d", &[self, w])?;
        #[allow(unreachable_patterns)]
        match (self, w) {
            (Storage::Cpu(x), Storage::Cpu(w)) => CpuBackend.conv2d(x, lx, w, lw, p).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            (Storage::Cube(x), Storage::Cube(w)) if x.device() == w.device() => {
                x.backend().conv2d(x, lx, w, lw, p).map(Storage::Cube)
            }
            _ => Err(device_error("conv2d", self, w)),
        }
    }

    /// See [`Kernels::conv2d_grad_input`].
    pub fn conv2d_grad_input(
        &self,
        lg: &Layout,
        w: &Storage,
        lw: &Layout,
        p: &Conv2dParams,
        input_hw: (usize, usize),
    ) -> Result<Storage> {
        check_materialised("conv2d_grad_input", &[self, w])?;
        #[allow(unreachable_patterns)]
        match (self, w) {
            (Storage::Cpu(g), Storage::Cpu(w)) => {
                CpuBackend.conv2d_grad_input(g, lg, w, lw, p, input_hw).map(Storage::Cpu)
            }
            #[cfg(feature = "cube")]
            (Storage::Cube(g), Storage::Cube(w)) if g.device() == w.device() => {
                g.backend().conv2d_grad_input(g, lg, w, lw, p, input_hw).map(Storage::Cube)
            }
            _ => Err(device_error("conv2d_grad_input", self, w)),
        }
    }

    /// See [`Kernels::conv2d_grad_weight`] (`self` is the conv's input).
    pub fn conv2d_grad_weight(
        &self,
        lx: &Layout,
        grad: &Storage,
        lg: &Layout,
        p: &Conv2dParams,
        kernel_hw: (usize, usize),
    ) -> Result<Storage> {
        check_materialised("conv2d_grad_weight", &[self, grad])?;
        #[allow(unreachable_patterns)]
        match (self, grad) {
            (Storage::Cpu(x), Storage::Cpu(g)) => {
                CpuBackend.conv2d_grad_weight(x, lx, g, lg, p, kernel_hw).map(Storage::Cpu)
            }
            #[cfg(feature = "cube")]
            (Storage::Cube(x), Storage::Cube(g)) if x.device() == g.device() => {
                x.backend().conv2d_grad_weight(x, lx, g, lg, p, kernel_hw).map(Storage::Cube)
            }
            _ => Err(device_error("conv2d_grad_weight", self, grad)),
        }
    }

    /// See [`Kernels::index_select`].
    pub fn index_select(&self, lx: &Layout, dim: usize, idx: &Storage, li: &Layout) -> Result<Storage> {
        check_materialised("index_select", &[self, idx])?;
        #[allow(unreachable_patterns)]
        match (self, idx) {
            (Storage::Cpu(x), Storage::Cpu(i)) => CpuBackend.index_select(x, lx, dim, i, li).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            (Storage::Cube(x), Storage::Cube(i)) if x.device() == i.device() => {
                x.backend().index_select(x, lx, dim, i, li).map(Storage::Cube)
            }
            _ => Err(device_error("index_select", self, idx)),
        }
    }

    /// See [`Kernels::gather`].
    pub fn gather(&self, lx: &Layout, dim: usize, idx: &Storage, li: &Layout) -> Result<Storage> {
        check_materialised("gather", &[self, idx])?;
        #[allow(unreachable_patterns)]
        match (self, idx) {
            (Storage::Cpu(x), Storage::Cpu(i)) => CpuBackend.gather(x, lx, dim, i, li).map(Storage::Cpu),
            #[cfg(feature = "cube")]
            (Storage::Cube(x), Storage::Cube(i)) if x.device() == i.device() => {
                x.backend().gather(x, lx, dim, i, li).map(Storage::Cube)
            }
            _ => Err(device_error("gather", self, idx)),
        }
    }

    /// See [`Kernels::scatter_add`] (`self` is the destination).
    pub fn scatter_add(
        &self,
        ld: &Layout,
        dim: usize,
        idx: &Storage,
        li: &Layout,
        src: &Storage,
        ls: &Layout,
    ) -> Result<Storage> {
        check_materialised("scatter_add", &[self, idx, src])?;
        #[allow(unreachable_patterns)]
        match (self, idx, src) {
            (Storage::Cpu(d), Storage::Cpu(i), Storage::Cpu(s)) => {
                CpuBackend.scatter_add(d, ld, dim, i, li, s, ls).map(Storage::Cpu)
            }
            #[cfg(feature = "cube")]
            (Storage::Cube(d), Storage::Cube(i), Storage::Cube(s))
                if d.device() == i.device() && d.device() == s.device() =>
            {
                d.backend().scatter_add(d, ld, dim, i, li, s, ls).map(Storage::Cube)
            }
            _ if self.device() != idx.device() => Err(device_error("scatter_add", self, idx)),
            _ => Err(device_error("scatter_add", self, src)),
        }
    }

    /// True when the elements borrow shared bytes (a mapped file), which are never written.
    pub fn is_borrowed(&self) -> bool {
        matches!(self, Storage::Cpu(s) if s.is_borrowed())
    }

    /// See [`Kernels::optim_step`]: `self` (the parameter) and `state` are updated in place.
    pub fn optim_step(
        &mut self,
        step: &OptimStep,
        grad: &Storage,
        lg: &Layout,
        state: &mut [&mut Storage],
    ) -> Result<()> {
        const OP: &str = "optim_step";
        let mut operands: Vec<&Storage> = vec![self, grad];
        operands.extend(state.iter().map(|s| &**s));
        check_materialised(OP, &operands)?;
        if let Some(other) = operands.iter().find(|s| s.device() != operands[0].device()) {
            return Err(device_error(OP, operands[0], other));
        }
        #[allow(unreachable_patterns)]
        match (self, grad) {
            (Storage::Cpu(p), Storage::Cpu(g)) => {
                let mut state: Vec<&mut CpuStorage> = state
                    .iter_mut()
                    .map(|s| match &mut **s {
                        Storage::Cpu(c) => c,
                        _ => unreachable!("devices checked above"),
                    })
                    .collect();
                CpuBackend.optim_step(step, p, g, lg, &mut state)
            }
            #[cfg(feature = "cube")]
            (Storage::Cube(p), Storage::Cube(g)) => {
                let mut state: Vec<&mut CubeStorage> = state
                    .iter_mut()
                    .map(|s| match &mut **s {
                        Storage::Cube(c) => c,
                        _ => unreachable!("devices checked above"),
                    })
                    .collect();
                cube::backend(p.device())?.optim_step(step, p, g, lg, &mut state)
            }
            _ => unreachable!("devices checked above, meta refused"),
        }
    }

    /// See [`Kernels::cat`]; all parts on one device.
    pub fn cat(parts: &[(&Storage, &Layout)], dim: usize) -> Result<Storage> {
        let Some(&(first, _)) = parts.first() else {
            return Err(Error::Shape { op: "cat", shapes: vec![], msg: "no tensors to concatenate".into() });
        };
        check_materialised("cat", &parts.iter().map(|(s, _)| *s).collect::<Vec<_>>())?;
        if let Some(&(other, _)) = parts.iter().find(|(s, _)| s.device() != first.device()) {
            return Err(device_error("cat", first, other));
        }
        match first {
            Storage::Cpu(_) => {
                let cpu: Vec<_> = parts
                    .iter()
                    .map(|(s, l)| match s {
                        Storage::Cpu(c) => (c, *l),
                        _ => unreachable!("devices checked above"),
                    })
                    .collect();
                CpuBackend.cat(&cpu, dim).map(Storage::Cpu)
            }
            #[cfg(feature = "cube")]
            Storage::Cube(c) => {
                let cube: Vec<_> = parts
                    .iter()
                    .map(|(s, l)| match s {
                        Storage::Cube(c) => (c, *l),
                        _ => unreachable!("devices checked above"),
                    })
                    .collect();
                c.backend().cat(&cube, dim).map(Storage::Cube)
            }
            Storage::Meta(_) => Err(meta_error("cat")),
        }
    }
}
