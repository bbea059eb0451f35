//! The per-device error flag: how a kernel reports bad input without a host round-trip.
//!
//! Index kernels (index_select, gather, scatter_add) check every index they read. An index
//! outside its dimension reads 0 (or is skipped) and is reported here: the first reporting
//! thread claims the flag with an atomic add and writes the op's code, the index, the
//! dimension and its size. The flag is read back in the same synchronisation as the data of
//! every `to_host` (and by [`synchronize`]); when it is set the read returns
//! [`Error::Index`] naming the op (deferred, like CUDA's device-side asserts, but typed)
//! and the flag is cleared on the device, so the device stays usable.
use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{transfer, GpuBackend};
use crate::{Device, Error, Result};

/// Words of the flag: `[reports, op code, index lo, index hi, dim, size, 0, 0]`.
const WORDS: usize = 8;

/// Size of the error flag, read back with every `to_host` (counted by [`super::transfers`]).
pub const ERROR_FLAG_BYTES: usize = WORDS * 4;

/// The ops that report, by code (0: no error).
const OPS: [&str; 4] = ["", "index_select", "gather", "scatter_add"];
pub(super) const INDEX_SELECT: u32 = 1;
pub(super) const GATHER: u32 = 2;
pub(super) const SCATTER_ADD: u32 = 3;

/// Reports index `v` (outside `0..size` of dimension `dim`) for op `code`. Only the first
/// report after a clear writes its details; later ones only count.
#[cube]
pub(super) fn report<I: Int>(flag: &mut Array<Atomic<u32>>, code: u32, v: I, dim: usize, size: usize) {
    if flag[0].fetch_add(1u32) == 0u32 {
        flag[1].store(code);
        flag[2].store(u32::cast_from(v));
        flag[3].store(u32::cast_from(v >> I::new(32)));
        flag[4].store(u32::cast_from(dim));
        flag[5].store(u32::cast_from(size));
    }
}

#[cube(launch)]
fn clear_kernel(flag: &mut Array<Atomic<u32>>) {
    if ABSOLUTE_POS < flag.len() {
        flag[ABSOLUTE_POS].store(0u32);
    }
}

/// A cleared flag on the device of `client` (one upload, when the device is opened).
pub(super) fn create<R: Runtime>(client: &ComputeClient<R>) -> Handle {
    transfer::to_device(ERROR_FLAG_BYTES);
    client.create_from_slice(u32::as_bytes(&[0u32; WORDS]))
}

impl<R: Runtime> GpuBackend<R> {
    /// The flag as a kernel argument.
    pub(super) fn flag_arg(&self) -> ArrayArg<R> {
        // SAFETY: the flag buffer holds `WORDS` u32.
        unsafe { ArrayArg::from_raw_parts(self.flag.clone(), WORDS) }
    }

    /// Reads `data` (when given) and the error flag back in one synchronisation: the data's
    /// bytes, or the deferred [`Error::Index`] of a kernel that ran before (flag cleared).
    pub(super) fn read_with_flag(
        &self,
        op: &'static str,
        data: Option<Handle>,
    ) -> Result<Option<cubecl::bytes::Bytes>> {
        let mut handles: Vec<Handle> = data.into_iter().collect();
        handles.push(self.flag.clone());
        let mut bytes = cubecl::reader::read_sync(self.client.read_async(handles)).map_err(|e| Error::Unsupported {
            op,
            msg: format!("reading back from {} failed (a kernel failed to compile or run?): {e:?}", self.device),
        })?;
        transfer::to_host(bytes.iter().map(|b| b.len()).sum());
        let flag = bytes.pop().expect("the flag was read");
        let w = u32::from_bytes(&flag);
        if w[0] != 0 {
            clear_kernel::launch::<R>(
                &self.client,
                CubeCount::Static(1, 1, 1),
                CubeDim::new_1d(WORDS as u32),
                self.flag_arg(),
            );
            let op = OPS.get(w[1] as usize).copied().filter(|o| !o.is_empty()).unwrap_or("an index kernel");
            let index = ((w[3] as u64) << 32 | w[2] as u64) as i64;
            return Err(Error::Index { op, index, dim: w[4] as usize, size: w[5] as usize });
        }
        Ok(bytes.pop())
    }
}

/// Waits for the work queued on `device` and returns the deferred error of any kernel that
/// failed since the last read-back ([`Error::Index`] from an index op), clearing it. The CPU
/// and the meta device have nothing queued: `Ok`.
pub fn synchronize(device: Device) -> Result<()> {
    match device {
        Device::Cpu | Device::Meta => Ok(()),
        _ => super::backend(device)?.synchronize(),
    }
}
