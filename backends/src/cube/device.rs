//! Device discovery: which cubecl runtime serves a [`Device`], probed before any client is
//! created, because cubecl's clients panic (wgpu: no adapter; cuda: no driver or device)
//! instead of returning errors. One backend per device, created lazily once and cached
//! for the life of the process (failures are cached too, so a missing device is cheap).
//! The cache is consulted when a tensor is created on a device (`from_host`, `fill`,
//! `rand`); every later kernel on that tensor goes through the backend handle its storage
//! keeps, so no kernel call takes the cache's lock.
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::{CubeKernels, GpuBackend};
use crate::{Device, Error, Result};

type Slot = std::result::Result<&'static CubeKernels, String>;

/// The cached backend of `device` (a `Wgpu` or `Cuda` device), created on first use.
///
/// Returns [`Error::DeviceUnavailable`] when the device does not exist here (no adapter,
/// no CUDA driver or toolkit, an index past the last device) or its runtime was not compiled
/// in; never panics and never hangs on a GPU-less machine.
pub fn backend(device: Device) -> Result<&'static CubeKernels> {
    static CACHE: OnceLock<Mutex<HashMap<Device, Slot>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let slot = cache.entry(device).or_insert_with(|| open(device));
    slot.clone().map_err(|reason| Error::DeviceUnavailable { device, reason })
}

/// The GPU devices usable here (every wgpu adapter, every CUDA device), in index order.
pub fn devices() -> Vec<Device> {
    let mut out = Vec::new();
    #[cfg(feature = "wgpu")]
    out.extend((0..wgpu_probe::adapters().map(|a| a.len()).unwrap_or(0)).map(Device::Wgpu));
    #[cfg(feature = "cuda")]
    out.extend((0..cuda_probe::device_count().unwrap_or(0)).map(Device::Cuda));
    out.retain(|&d| backend(d).is_ok());
    out
}

fn open(device: Device) -> Slot {
    // Belt and braces: the probes below rule out the known panics of client creation; any
    // other panic inside cubecl/wgpu/cudarc while opening a device becomes an error too.
    let opened = std::panic::catch_unwind(|| match device {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(i) => wgpu_probe::open(i),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => cuda_probe::open(i),
        Device::Cpu => Err("the CPU is not a cubecl device".to_string()),
        Device::Meta => Err("the meta device holds no memory: it is not a cubecl device".to_string()),
        #[allow(unreachable_patterns)]
        _ => Err(format!("stategrad was built without the `{}` feature", kind(device))),
    });
    opened.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("opening the device panicked: {msg}"))
    })
}

#[allow(dead_code)]
fn kind(device: Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Wgpu(_) => "wgpu",
        Device::Cuda(_) => "cuda",
        Device::Meta => "meta",
    }
}

#[cfg(feature = "wgpu")]
mod wgpu_probe {
    use cubecl::wgpu::{AutoGraphicsApi, GraphicsApi, WgpuDevice, WgpuRuntime};
    use cubecl::Runtime;

    use super::{CubeKernels, GpuBackend};
    use crate::Device;

    /// The adapters of the platform's graphics API (Vulkan on Linux), `Other`-typed ones
    /// excluded as cubecl does, in enumeration order: `Device::Wgpu(i)` is the i-th.
    pub fn adapters() -> Result<Vec<wgpu::AdapterInfo>, String> {
        let backend = AutoGraphicsApi::backend();
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = cubecl::future::block_on(instance.enumerate_adapters(backend.into()));
        let infos: Vec<_> =
            adapters.iter().map(|a| a.get_info()).filter(|i| i.device_type != wgpu::DeviceType::Other).collect();
        if infos.is_empty() {
            return Err(format!(
                "no {backend:?} adapter found (no GPU driver; without a GPU install Mesa's lavapipe, \
                 Debian package mesa-vulkan-drivers)"
            ));
        }
        Ok(infos)
    }

    pub fn open(index: usize) -> Result<&'static CubeKernels, String> {
        let infos = adapters()?;
        let info = infos.get(index).ok_or_else(|| {
            let names: Vec<_> = infos.iter().map(|i| i.name.as_str()).collect();
            format!("only {} wgpu adapter(s): {names:?}", infos.len())
        })?;
        // cubecl names adapters by type and index within that type.
        let same_type = infos[..index].iter().filter(|i| i.device_type == info.device_type).count();
        let device = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(same_type),
            wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(same_type),
            wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(same_type),
            wgpu::DeviceType::Cpu if same_type == 0 => WgpuDevice::Cpu,
            _ => return Err(format!("adapter {:?} cannot be selected through cubecl", info.name)),
        };
        let client = WgpuRuntime::client(&device);
        Ok(GpuBackend::<WgpuRuntime>::open(Device::Wgpu(index), client, info.name.clone()))
    }
}

#[cfg(feature = "cuda")]
mod cuda_probe {
    use cubecl::cuda::{CudaDevice, CudaRuntime};
    use cubecl::Runtime;

    use super::{CubeKernels, GpuBackend};
    use crate::Device;

    /// The number of CUDA devices, or why CUDA cannot be used at all. Checked before any
    /// client exists: `CudaRuntime::client` panics on a machine without a device.
    pub fn device_count() -> Result<usize, String> {
        // SAFETY: only attempts to dlopen libcuda; no CUDA call is made when it fails.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("libcuda.so cannot be loaded (no NVIDIA driver)".into());
        }
        match cudarc::driver::CudaContext::device_count() {
            Ok(n) if n > 0 => Ok(n as usize),
            Ok(_) => Err("the CUDA driver reports 0 devices".into()),
            Err(e) => Err(format!("cuInit / cuDeviceGetCount failed: {e:?}")),
        }
    }

    pub fn open(index: usize) -> Result<&'static CubeKernels, String> {
        let count = device_count()?;
        if index >= count {
            return Err(format!("only {count} CUDA device(s)"));
        }
        // cubecl-cuda compiles kernels with NVRTC against the toolkit's headers, and panics
        // at the first launch when it cannot find them: check now.
        let include = cubecl::cuda::install::cuda_path().map(|p| p.join("include").join("cuda_runtime.h"));
        if !include.as_ref().is_some_and(|p| p.exists()) {
            return Err("CUDA toolkit headers not found (set CUDA_PATH; looked for include/cuda_runtime.h)".into());
        }
        let client = CudaRuntime::client(&CudaDevice::new(index));
        Ok(GpuBackend::<CudaRuntime>::open(Device::Cuda(index), client, format!("cuda:{index}")))
    }
}
