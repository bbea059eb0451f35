//! Grad mode (per thread, as in PyTorch) and anomaly mode.
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

static ANOMALY: AtomicBool = AtomicBool::new(false);

/// True when ops on tracked tensors are recorded on this thread.
#[inline]
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped.
#[must_use = "grad mode is restored when the guard drops"]
#[derive(Debug)]
pub struct GradModeGuard {
    previous: bool,
    _not_send: std::marker::PhantomData<*const ()>, // grad mode is per thread
}

impl GradModeGuard {
    /// Sets grad mode to `enabled` until the guard drops.
    pub fn set(enabled: bool) -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(enabled));
        GradModeGuard { previous, _not_send: std::marker::PhantomData }
    }
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Disables recording until the guard drops (PyTorch's `with torch.no_grad():`).
///
/// ```
/// # use stategrad_autograd::*;
/// let w = Tensor::ones(&[2], DType::F32, Device::Cpu)?.requires_grad(true)?;
/// let y = { let _g = no_grad(); w.mul_scalar(2.0)? };
/// assert!(!y.is_tracked());
/// # Ok::<(), Error>(())
/// ```
pub fn no_grad() -> GradModeGuard {
    GradModeGuard::set(false)
}

/// Re-enables recording inside a `no_grad` scope until the guard drops.
pub fn enable_grad() -> GradModeGuard {
    GradModeGuard::set(true)
}

/// Runs `f` with recording disabled (the closure form of [`no_grad`]).
pub fn with_no_grad<T>(f: impl FnOnce() -> T) -> T {
    let _guard = no_grad();
    f()
}

/// Turns anomaly detection on or off (global): when on, backward checks every gradient a
/// rule produces and fails with [`crate::Error::Anomaly`] naming the op at the first NaN or Inf.
pub fn set_anomaly_enabled(enabled: bool) {
    ANOMALY.store(enabled, Ordering::Relaxed);
}

/// True when anomaly detection is on.
pub fn is_anomaly_enabled() -> bool {
    ANOMALY.load(Ordering::Relaxed)
}
