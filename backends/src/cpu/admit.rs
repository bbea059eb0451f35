//! Admission of large host allocations.
//!
//! `try_reserve` only reports what the allocator refuses, and Linux often refuses nothing:
//! with `vm.overcommit_memory = 1` (the default of many container hosts) a request for a
//! terabyte succeeds, and the process is killed by the kernel when the pages are first
//! written, which no caller can handle. So before a large buffer is allocated, its size is
//! checked against what the system can back: the memory the kernel reports available plus
//! free swap, and the room left under the process's cgroup limit (v2 or v1) when it has one;
//! and against the cap set by [`set_host_memory_limit`]. A request past either is
//! [`Error::OutOfMemory`](crate::Error::OutOfMemory), as a refused `try_reserve` is. The
//! buffer pool is emptied and the check made again before a request is refused, since
//! pooled buffers are memory the process itself can give back.
//!
//! Requests below [`ADMIT_FROM_BYTES`] are not checked (the check reads `/proc`, about ten
//! microseconds; buffers reused from the pool are not checked either). Off Linux only the
//! cap applies, and the allocator's own answer.
use std::sync::atomic::{AtomicUsize, Ordering};

/// Allocations of at least this many bytes are checked before they are made.
pub const ADMIT_FROM_BYTES: usize = 64 << 20;

static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Caps the size of any one host allocation at `bytes` (`None` removes the cap): a larger
/// request is [`Error::OutOfMemory`](crate::Error::OutOfMemory). Useful to keep a test, a
/// fuzzer or a shared machine's job from taking the whole host.
pub fn set_host_memory_limit(bytes: Option<usize>) {
    LIMIT.store(bytes.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// The cap set by [`set_host_memory_limit`], if any.
pub fn host_memory_limit() -> Option<usize> {
    Some(LIMIT.load(Ordering::Relaxed)).filter(|&l| l != usize::MAX)
}

/// Whether a host allocation of `bytes` may be made now.
pub(crate) fn admit(bytes: usize) -> bool {
    if bytes > LIMIT.load(Ordering::Relaxed) {
        return false;
    }
    if bytes < ADMIT_FROM_BYTES {
        return true;
    }
    let fits = || available_bytes().is_none_or(|avail| bytes <= avail);
    if fits() {
        return true;
    }
    if super::pool_bytes() > 0 {
        super::clear_pool();
        return fits();
    }
    false
}

/// The bytes the system can back now, when it says: the least of the kernel's available
/// memory plus free swap and the room under the cgroup limit.
pub fn available_bytes() -> Option<usize> {
    sys::available()
}

#[cfg(target_os = "linux")]
mod sys {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    pub fn available() -> Option<usize> {
        let mem = meminfo();
        let cgroup = cgroup_room();
        match (mem, cgroup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `MemAvailable + SwapFree` from `/proc/meminfo`.
    fn meminfo() -> Option<usize> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let field = |name: &str| -> Option<usize> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            let kb: usize = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
            kb.checked_mul(1024)
        };
        let avail = field("MemAvailable:")?;
        Some(avail.saturating_add(field("SwapFree:").unwrap_or(0)))
    }

    /// The room left under this process's cgroup memory limit, when one is set.
    fn cgroup_room() -> Option<usize> {
        let read = |p: &PathBuf| -> Option<usize> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        match dir()? {
            Cgroup::V2(d) => {
                let max = read(&d.join("memory.max"))?; // "max" (no limit) does not parse
                let used = read(&d.join("memory.current"))?;
                Some(max.saturating_sub(used))
            }
            Cgroup::V1(d) => {
                let max = read(&d.join("memory.limit_in_bytes"))?;
                if max >= 1 << 60 {
                    return None; // v1 spells "no limit" as a huge number
                }
                let used = read(&d.join("memory.usage_in_bytes"))?;
                Some(max.saturating_sub(used))
            }
        }
    }

    enum Cgroup {
        V2(PathBuf),
        V1(PathBuf),
    }

    /// This process's memory cgroup directory, found once from `/proc/self/cgroup`.
    fn dir() -> Option<&'static Cgroup> {
        static DIR: OnceLock<Option<Cgroup>> = OnceLock::new();
        DIR.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let root = PathBuf::from("/sys/fs/cgroup");
            for line in text.lines() {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let rel = path.trim_start_matches('/');
                if controllers.split(',').any(|c| c == "memory") {
                    let d = root.join("memory").join(rel);
                    if d.join("memory.limit_in_bytes").exists() {
                        return Some(Cgroup::V1(d));
                    }
                }
                if controllers.is_empty() {
                    let d = root.join(rel);
                    if d.join("memory.max").exists() {
                        return Some(Cgroup::V2(d));
                    }
                }
            }
            None
        })
        .as_ref()
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub fn available() -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_reports_memory_and_a_terabyte_is_not_admitted() {
        if cfg!(target_os = "linux") {
            let avail = available_bytes().expect("Linux reports available memory");
            assert!(avail > 0);
            // twice what is available: other tests free memory meanwhile, so `avail + 1` may
            // fit by the time `admit` reads the system again
            assert!(!admit(avail.saturating_mul(2)), "a request past what is available is refused");
        }
        assert!(admit(1 << 20), "a small request is admitted");
        assert!(!admit(1 << 40) || available_bytes().is_some_and(|a| a >= 1 << 40));
    }
}
