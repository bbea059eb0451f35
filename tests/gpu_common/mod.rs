//! GPU discovery shared by the GPU test files: the devices to test, or a clear skip.
//!
//! Without the `wgpu`/`cuda` features, or without an adapter, GPU tests print
//! `GPU tests skipped: <reason>`; with `STATEGRAD_REQUIRE_GPU=1` they fail instead.
use stategrad::backends::Device;

/// The GPU devices to test, or why there are none (printed once per test).
pub fn gpu_devices() -> Vec<Device> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    let (devices, reason) = {
        let d = stategrad::backends::cube::devices();
        let reason = if d.is_empty() {
            // Ask for device 0 of each compiled runtime to get the reason it is missing.
            let mut why = Vec::new();
            #[cfg(feature = "wgpu")]
            why.push(stategrad::backends::cube::backend(Device::Wgpu(0)).err().map(|e| e.to_string()));
            #[cfg(feature = "cuda")]
            why.push(stategrad::backends::cube::backend(Device::Cuda(0)).err().map(|e| e.to_string()));
            why.into_iter().flatten().collect::<Vec<_>>().join("; ")
        } else {
            String::new()
        };
        (d, reason)
    };
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let (devices, reason) = (Vec::new(), "built without the `wgpu` and `cuda` features".to_string());
    if devices.is_empty() {
        if std::env::var("STATEGRAD_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("STATEGRAD_REQUIRE_GPU=1 but no GPU device is usable: {reason}");
        }
        eprintln!("GPU tests skipped: {reason}");
    }
    devices
}
