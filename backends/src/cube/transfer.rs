//! The transfer counter: every host <-> device copy of the cubecl backend, counted per
//! calling thread, so a test or a user can show that a stretch of code (a training step)
//! moved nothing but what it asked for, even while other threads use the same device.
use std::cell::Cell;

/// Host <-> device copies made by one thread on cubecl devices (all of them together).
///
/// A read-back (`to_host`, `synchronize`) is one transfer whose bytes include the device's
/// error flag ([`super::ERROR_FLAG_BYTES`]), read in the same synchronisation.
///
/// ```no_run
/// use stategrad_backends::cube::transfers;
/// let before = transfers();
/// // ... GPU work ...
/// let moved = transfers().since(&before);
/// assert_eq!(moved.to_host, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Uploads (host to device).
    pub to_device: u64,
    /// Bytes uploaded.
    pub to_device_bytes: u64,
    /// Read-backs (device to host), each one synchronisation.
    pub to_host: u64,
    /// Bytes read back.
    pub to_host_bytes: u64,
}

impl Transfers {
    /// What was counted after `earlier` (a value this thread's [`transfers`] returned).
    pub fn since(&self, earlier: &Transfers) -> Transfers {
        Transfers {
            to_device: self.to_device - earlier.to_device,
            to_device_bytes: self.to_device_bytes - earlier.to_device_bytes,
            to_host: self.to_host - earlier.to_host,
            to_host_bytes: self.to_host_bytes - earlier.to_host_bytes,
        }
    }

    /// Transfers in both directions.
    pub fn count(&self) -> u64 {
        self.to_device + self.to_host
    }
}

thread_local! {
    static COUNTS: Cell<Transfers> = const { Cell::new(Transfers { to_device: 0, to_device_bytes: 0, to_host: 0, to_host_bytes: 0 }) };
}

/// The host <-> device transfers this thread has made since it started.
pub fn transfers() -> Transfers {
    COUNTS.with(Cell::get)
}

fn count(f: impl FnOnce(&mut Transfers)) {
    COUNTS.with(|c| {
        let mut t = c.get();
        f(&mut t);
        c.set(t);
    });
}

pub(super) fn to_device(bytes: usize) {
    count(|t| (t.to_device, t.to_device_bytes) = (t.to_device + 1, t.to_device_bytes + bytes as u64));
}

pub(super) fn to_host(bytes: usize) {
    count(|t| (t.to_host, t.to_host_bytes) = (t.to_host + 1, t.to_host_bytes + bytes as u64));
}
