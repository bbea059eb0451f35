//! Deferred mode: storages created on this thread inside [`deferred`] hold no memory
//! ([`crate::Storage::Meta`]: dtype and length only), so a model of any size can be built
//! without allocating and materialised later from a checkpoint, on the device it will run on.
use std::cell::Cell;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `build` in deferred mode: every tensor it creates (zeros, random initialisation,
/// host data) is a shape-and-dtype placeholder on `Device::Meta`, whatever device it asked
/// for. Kernels on such tensors are [`crate::Error::State`] errors. The mode is per thread
/// and ends when `build` returns or panics.
pub fn deferred<R>(build: impl FnOnce() -> R) -> R {
    struct Exit;
    impl Drop for Exit {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _exit = Exit;
    build()
}

/// True inside [`deferred`] on this thread.
pub fn is_deferred() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Runs `f` outside deferred mode (real allocations) even inside [`deferred`]: what a
/// module recomputing a buffer during materialisation needs.
pub fn eager<R>(f: impl FnOnce() -> R) -> R {
    let saved = DEPTH.with(|d| d.replace(0));
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(saved);
    f()
}
