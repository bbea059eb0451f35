//! The cubecl GPU backend: one implementation of [`Kernels`], generic over the cubecl
//! runtime (`wgpu`, `cuda`), with every kernel written once as a `#[cube]` function.
//!
//! [`backend`] maps a [`Device`] to a cached `GpuBackend<R>` behind `&dyn Kernels`, so the
//! runtime type is chosen once, when the device is opened, and never matched again. Storage
//! is a cubecl [`Handle`] (memory pooled by cubecl's memory management) plus the handle of
//! the backend that made it, so a kernel call never looks its device up again. Data comes
//! back to the host only in [`Kernels::to_host`], which also reads the device's error flag
//! (index kernels report out-of-range indices there, see `flag.rs`); [`transfers`] counts
//! every host <-> device copy. See `README.md` here for the file map and for what differs
//! from the CPU backend.
use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::{
    BinaryOp, Conv2dParams, CpuStorage, DType, Device, Distribution, Error, Kernels, Layout, OptimStep, ReduceOp,
    Result, UnaryOp,
};

mod conv;
mod device;
mod elementwise;
mod flag;
mod index;
mod matmul;
mod optim;
mod rand;
mod reduce;
mod transfer;

pub use device::{backend, devices};
pub use flag::{synchronize, ERROR_FLAG_BYTES};
pub use transfer::{transfers, Transfers};

/// The backend of one cubecl device, as the rest of the crate sees it.
pub type CubeKernels = dyn Kernels<Storage = CubeStorage> + Send + Sync;

/// Threads per cube for the one-thread-per-element kernels.
const BLOCK: u32 = 256;

/// Memory of a cubecl device: a pooled buffer of `len` elements of `dtype`, and the backend
/// (client) of its device, so kernels on it are dispatched without a device lookup.
#[derive(Clone)]
pub struct CubeStorage {
    handle: Handle,
    backend: &'static CubeKernels,
    device: Device,
    dtype: DType,
    len: usize,
}

impl std::fmt::Debug for CubeStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CubeStorage")
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("len", &self.len)
            .finish()
    }
}

impl CubeStorage {
    /// The backend of this buffer's device (the one that allocated it).
    pub fn backend(&self) -> &'static CubeKernels {
        self.backend
    }

    /// The device holding this buffer.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Runs `$body` with `$E` bound to the Rust element type of `$dtype` (f32, f64, i64).
macro_rules! with_dtype {
    ($dtype:expr, $E:ident => $body:expr) => {
        match $dtype {
            crate::DType::F32 => {
                type $E = f32;
                $body
            }
            crate::DType::F64 => {
                type $E = f64;
                $body
            }
            crate::DType::I64 => {
                type $E = i64;
                $body
            }
            crate::DType::F16 | crate::DType::BF16 => return Err(crate::cube::half_unsupported($dtype)),
        }
    };
}
/// As [`with_dtype`] for the float dtypes; i64 is an [`Error::DType`] naming `$op`.
macro_rules! with_float {
    ($op:expr, $dtype:expr, $F:ident => $body:expr) => {
        match $dtype {
            crate::DType::F32 => {
                type $F = f32;
                $body
            }
            crate::DType::F64 => {
                type $F = f64;
                $body
            }
            crate::DType::I64 => {
                return Err(crate::Error::DType { op: $op, expected: "a float dtype", got: crate::DType::I64 })
            }
            crate::DType::F16 | crate::DType::BF16 => return Err(crate::cube::half_unsupported($dtype)),
        }
    };
}
pub(crate) use {with_dtype, with_float};

/// f16 / bf16 are storage dtypes of the CPU backend only: checkpoints in half precision load
/// onto a GPU through a cast to f32 on the host (`LoadOptions::cast`), tensor by tensor.
pub(crate) fn half_unsupported(dtype: DType) -> Error {
    Error::Unsupported {
        op: "gpu",
        msg: format!("{dtype} tensors are not supported on GPU devices (cast to float32 on the CPU first)"),
    }
}

/// One cubecl device and its client; the kernels live in the sibling files, each an
/// `impl<R: Runtime> GpuBackend<R>` block.
pub struct GpuBackend<R: Runtime> {
    device: Device,
    client: ComputeClient<R>,
    /// This backend as the rest of the crate holds it (set once, when it is leaked at open).
    this: std::sync::OnceLock<&'static CubeKernels>,
    /// The device's error flag: `flag::WORDS` u32 written atomically by index kernels.
    flag: Handle,
    name: String,
    f64: bool,
    i64: bool,
    u64: bool,
    /// f64 transcendental functions written with f64 arithmetic (wgpu: WGSL / Vulkan
    /// provide exp, log, sin, ... for 32-bit floats only).
    f64_poly: bool,
}

impl<R: Runtime> GpuBackend<R> {
    /// Opens the backend of `device` for the life of the process: storages keep a
    /// `&'static` handle to it.
    fn open(device: Device, client: ComputeClient<R>, name: String) -> &'static CubeKernels {
        let props = client.properties();
        let f64 = props.supports_type(f64::as_type_native_unchecked());
        let i64 = props.supports_type(i64::as_type_native_unchecked());
        let u64 = props.supports_type(u64::as_type_native_unchecked());
        let f64_poly = R::name(&client).starts_with("wgpu");
        let flag = flag::create(&client);
        let this = std::sync::OnceLock::new();
        let b: &'static Self =
            Box::leak(Box::new(GpuBackend { device, client, this, flag, name, f64, i64, u64, f64_poly }));
        let _ = b.this.set(b);
        b
    }

    /// This backend as storages hold it.
    fn handle(&self) -> &'static CubeKernels {
        *self.this.get().expect("a GpuBackend is only reachable after `open` set its handle")
    }

    /// Whether kernels on `dtype` use the f64-arithmetic transcendental functions.
    fn poly(&self, dtype: DType) -> bool {
        dtype == DType::F64 && self.f64_poly
    }

    /// `Unsupported` when the device cannot hold `dtype` (f64 or i64 on some GPUs).
    fn check(&self, op: &'static str, dtype: DType) -> Result<()> {
        let ok = match dtype {
            DType::F32 => true,
            DType::F64 => self.f64,
            DType::I64 => self.i64,
            DType::F16 | DType::BF16 => return Err(half_unsupported(dtype)),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Unsupported {
                op,
                msg: format!("{} ({}) has no {dtype} support in shaders", self.device, self.name),
            })
        }
    }

    /// A fresh contiguous buffer of `len` elements (at least one byte-word is allocated).
    /// A size past what the device can allocate in one buffer (cubecl's `max_page_size`)
    /// is [`Error::OutOfMemory`] here, before cubecl would panic on it.
    fn alloc(&self, len: usize, dtype: DType) -> Result<CubeStorage> {
        let bytes = len.max(1) as u128 * dtype.size_in_bytes() as u128;
        let max = self.client.properties().memory.max_page_size as u128;
        if bytes > max || bytes > isize::MAX as u128 {
            return Err(Error::OutOfMemory { op: "alloc", bytes, device: self.device });
        }
        let handle = self.client.empty(bytes as usize);
        Ok(self.storage(handle, len, dtype))
    }

    fn storage(&self, handle: Handle, len: usize, dtype: DType) -> CubeStorage {
        CubeStorage { handle, backend: self.handle(), device: self.device, dtype, len }
    }

    /// The view `l` of `x` as a kernel tensor argument (shape and strides as cubecl metadata)
    /// plus its element offset, which kernels add themselves (buffer offsets must be aligned
    /// on wgpu). Rank 0 becomes shape `[1]`.
    fn view(&self, x: &CubeStorage, l: &Layout) -> (TensorArg<R>, usize) {
        let (shape, strides): (Vec<usize>, Vec<usize>) =
            if l.rank() == 0 { (vec![1], vec![1]) } else { (l.shape().to_vec(), l.strides().to_vec()) };
        // SAFETY: every kernel reads only offsets inside the view, which lies inside the buffer.
        let arg = unsafe { TensorArg::from_raw_parts(x.handle.clone(), strides.into(), shape.into()) };
        (arg, l.offset())
    }

    /// A contiguous buffer as a kernel array argument.
    fn array(&self, x: &CubeStorage) -> ArrayArg<R> {
        // SAFETY: `len` elements were allocated (at least one).
        unsafe { ArrayArg::from_raw_parts(x.handle.clone(), x.len.max(1)) }
    }

    /// Cube count for one thread per element of `n`.
    fn grid(&self, n: usize) -> (CubeCount, CubeDim) {
        let dim = CubeDim::new_1d(BLOCK);
        (cubecl::calculate_cube_count_elemwise(&self.client, n.max(1), dim), dim)
    }

    /// `x` itself when `l` is its whole buffer in order, else a contiguous copy.
    fn contiguous(&self, x: &CubeStorage, l: &Layout) -> Result<CubeStorage> {
        if l.is_contiguous() && l.offset() == 0 && l.numel() == x.len {
            return Ok(x.clone());
        }
        self.copy_strided_impl(x, l)
    }

    fn same_device(&self, op: &'static str, x: &CubeStorage) -> Result<()> {
        if x.device != self.device {
            return Err(Error::Device { op, a: self.device, b: x.device });
        }
        Ok(())
    }
}

/// Host bytes of a typed vector, for upload.
fn host_bytes(data: &CpuStorage) -> &[u8] {
    match data {
        CpuStorage::F32(v) => f32::as_bytes(v),
        CpuStorage::F64(v) => f64::as_bytes(v),
        CpuStorage::I64(v) => i64::as_bytes(v),
        // Rejected by `check` before any upload; the bytes are what they would be.
        CpuStorage::F16(_) | CpuStorage::BF16(_) => data.as_le_bytes(),
    }
}

impl<R: Runtime> Kernels for GpuBackend<R> {
    type Storage = CubeStorage;

    fn device(&self) -> Device {
        self.device
    }

    fn from_host(&self, data: &CpuStorage) -> Result<CubeStorage> {
        self.check("from_host", data.dtype())?;
        if data.is_empty() {
            return self.alloc(0, data.dtype());
        }
        let bytes = host_bytes(data);
        if bytes.len() as u64 > self.client.properties().memory.max_page_size {
            return Err(Error::OutOfMemory { op: "from_host", bytes: bytes.len() as u128, device: self.device });
        }
        let handle = self.client.create_from_slice(bytes);
        transfer::to_device(bytes.len());
        Ok(self.storage(handle, data.len(), data.dtype()))
    }

    fn to_host(&self, x: &CubeStorage, l: &Layout) -> Result<CpuStorage> {
        self.same_device("to_host", x)?;
        let n = l.numel();
        if n == 0 {
            return Ok(with_dtype!(x.dtype, E => CpuStorage::from_vec(Vec::<E>::new())));
        }
        let c = self.contiguous(x, l)?;
        // The error flag rides along in the same read (one synchronisation): a deferred
        // index error surfaces here, before the (zero-filled) data could be used.
        let Some(bytes) = self.read_with_flag("to_host", Some(c.handle.clone()))? else {
            return Err(Error::Unsupported { op: "to_host", msg: format!("{} returned no data", self.device) });
        };
        Ok(with_dtype!(x.dtype, E => CpuStorage::from_vec(E::from_bytes(&bytes)[..n].to_vec())))
    }

    fn synchronize(&self) -> Result<()> {
        self.read_with_flag("synchronize", None).map(|_| ())
    }

    fn fill(&self, numel: usize, dtype: DType, value: f64) -> Result<CubeStorage> {
        self.fill_impl(numel, dtype, value)
    }

    fn rand(&self, numel: usize, dtype: DType, dist: Distribution, seed: u64) -> Result<CubeStorage> {
        self.rand_impl(numel, dtype, dist, seed)
    }

    fn copy_strided(&self, x: &CubeStorage, l: &Layout) -> Result<CubeStorage> {
        self.copy_strided_impl(x, l)
    }

    fn cast(&self, x: &CubeStorage, l: &Layout, dtype: DType) -> Result<CubeStorage> {
        self.cast_impl(x, l, dtype)
    }

    fn unary(&self, op: UnaryOp, x: &CubeStorage, l: &Layout) -> Result<CubeStorage> {
        self.unary_impl(op, x, l)
    }

    fn binary(&self, op: BinaryOp, a: &CubeStorage, la: &Layout, b: &CubeStorage, lb: &Layout) -> Result<CubeStorage> {
        self.binary_impl(op, a, la, b, lb)
    }

    fn where_cond(
        &self,
        cond: &CubeStorage,
        lc: &Layout,
        a: &CubeStorage,
        la: &Layout,
        b: &CubeStorage,
        lb: &Layout,
    ) -> Result<CubeStorage> {
        self.where_impl(cond, lc, a, la, b, lb)
    }

    fn reduce(&self, op: ReduceOp, x: &CubeStorage, l: &Layout, axes: &[usize]) -> Result<CubeStorage> {
        self.reduce_impl(op, x, l, axes)
    }

    fn softmax(&self, x: &CubeStorage, l: &Layout, axis: usize, log: bool) -> Result<CubeStorage> {
        self.softmax_impl(x, l, axis, log)
    }

    fn matmul(&self, a: &CubeStorage, la: &Layout, b: &CubeStorage, lb: &Layout) -> Result<CubeStorage> {
        self.matmul_impl(a, la, b, lb)
    }

    fn conv2d(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        w: &CubeStorage,
        lw: &Layout,
        p: &Conv2dParams,
    ) -> Result<CubeStorage> {
        self.conv2d_impl(x, lx, w, lw, p)
    }

    fn conv2d_grad_input(
        &self,
        grad: &CubeStorage,
        lg: &Layout,
        w: &CubeStorage,
        lw: &Layout,
        p: &Conv2dParams,
        input_hw: (usize, usize),
    ) -> Result<CubeStorage> {
        self.conv2d_grad_input_impl(grad, lg, w, lw, p, input_hw)
    }

    fn conv2d_grad_weight(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        grad: &CubeStorage,
        lg: &Layout,
        p: &Conv2dParams,
        kernel_hw: (usize, usize),
    ) -> Result<CubeStorage> {
        self.conv2d_grad_weight_impl(x, lx, grad, lg, p, kernel_hw)
    }

    fn index_select(
        &self,
        x: &CubeStorage,
        lx: &Layout,
        dim: usize,
        idx: &CubeStorage,
        li: &Layout,
    ) -> Result<CubeStorage> {
        self.index_select_impl(x, lx, dim, idx, li)
    }

    fn gather(&self, x: &CubeStorage, lx: &Layout, dim: usize, idx: &CubeStorage, li: &Layout) -> Result<CubeStorage> {
        self.gather_impl(x, lx, dim, idx, li)
    }

    fn scatter_add(
        &self,
        dst: &CubeStorage,
        ld: &Layout,
        dim: usize,
        idx: &CubeStorage,
        li: &Layout,
        src: &CubeStorage,
        ls: &Layout,
    ) -> Result<CubeStorage> {
        self.scatter_add_impl(dst, ld, dim, idx, li, src, ls)
    }

    fn cat(&self, parts: &[(&CubeStorage, &Layout)], dim: usize) -> Result<CubeStorage> {
        self.cat_impl(parts, dim)
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        param: &mut CubeStorage,
        grad: &CubeStorage,
        lg: &Layout,
        state: &mut [&mut CubeStorage],
    ) -> Result<()> {
        self.optim_step_impl(step, param, grad, lg, state)
    }
}
