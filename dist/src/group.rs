//! [`ProcessGroup`]: the collectives data parallelism needs (rank, world size, all-reduce sum
//! and mean, broadcast, all-gather with uneven sizes, barrier), over host slices and over
//! tensors on any device. Two implementations: [`crate::InProcessGroup`] (threads of one
//! process, shared memory) and `MpiGroup` (processes, feature `mpi`).
//!
//! Sums are rank-ordered: element `i` of an all-reduce is `((x_0[i] + x_1[i]) + x_2[i]) + ...`
//! computed once and handed to every rank, so every rank gets bit-identical results whatever
//! the timing. A collective that cannot complete (a rank left, a timeout, ranks calling
//! different collectives or with different lengths) is an [`Error::Collective`], never a hang.
use stategrad_autograd::{DType, Device, Error, Result, Tensor};

/// A group of ranks that run the same program and meet in collectives. Every rank must call
/// the same collectives in the same order; `op` names the call in errors.
pub trait ProcessGroup: Send + Sync {
    /// This rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn world_size(&self) -> usize;

    /// What carries the data (`"in-process"`, `"mpi"`), for messages.
    fn transport(&self) -> &'static str;

    /// Every rank's `data` (lengths may differ), indexed by rank.
    fn all_gather_bytes(&self, op: &'static str, data: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// Replaces `data` on every rank by `root`'s (its length too).
    fn broadcast_bytes(&self, op: &'static str, data: &mut Vec<u8>, root: usize) -> Result<()>;

    /// Rank-ordered sum of `data` over all ranks, in place; every rank passes the same length.
    fn all_reduce_sum_f32(&self, op: &'static str, data: &mut [f32]) -> Result<()>;

    /// Rank-ordered sum of `data` over all ranks, in place; every rank passes the same length.
    fn all_reduce_sum_f64(&self, op: &'static str, data: &mut [f64]) -> Result<()>;

    /// Rank-ordered sum of `send` over all ranks, written to `recv` (same length). Transports
    /// that can reduce from one buffer into another override it to save a copy.
    fn all_reduce_sum_into_f32(&self, op: &'static str, send: &[f32], recv: &mut [f32]) -> Result<()> {
        check_into(self, op, send.len(), recv.len())?;
        recv.copy_from_slice(send);
        self.all_reduce_sum_f32(op, recv)
    }

    /// Rank-ordered sum of `send` over all ranks, written to `recv` (same length).
    fn all_reduce_sum_into_f64(&self, op: &'static str, send: &[f64], recv: &mut [f64]) -> Result<()> {
        check_into(self, op, send.len(), recv.len())?;
        recv.copy_from_slice(send);
        self.all_reduce_sum_f64(op, recv)
    }

    /// Returns once every rank has called it.
    fn barrier(&self, op: &'static str) -> Result<()>;

    /// An [`Error::Collective`] from this rank.
    fn error(&self, op: &'static str, key: Option<&str>, msg: String) -> Error {
        Error::Collective { op, rank: self.rank(), key: key.map(str::to_string), msg }
    }

    /// Every rank's `data` (lengths may differ), indexed by rank.
    fn all_gather_f64(&self, op: &'static str, data: &[f64]) -> Result<Vec<Vec<f64>>> {
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let all = self.all_gather_bytes(op, &bytes)?;
        Ok(all
            .iter()
            .map(|b| b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
            .collect())
    }

    /// Rank-ordered mean of `data` over all ranks, in place: the sum divided by the world
    /// size (transports may fold the division into the sum; the bits are the same).
    fn all_reduce_mean_f64(&self, op: &'static str, data: &mut [f64]) -> Result<()> {
        self.all_reduce_sum_f64(op, data)?;
        let n = self.world_size() as f64;
        data.iter_mut().for_each(|x| *x /= n);
        Ok(())
    }

    /// Rank-ordered mean of `data` over all ranks, in place (as [`Self::all_reduce_mean_f64`]).
    fn all_reduce_mean_f32(&self, op: &'static str, data: &mut [f32]) -> Result<()> {
        self.all_reduce_sum_f32(op, data)?;
        let n = self.world_size() as f32;
        data.iter_mut().for_each(|x| *x /= n);
        Ok(())
    }

    /// Sum (`mean == false`) or mean of `t` over all ranks: a new tensor of `t`'s shape and
    /// dtype on `t`'s device (each rank keeps its own device). Integer tensors are reduced in
    /// f64 and truncated back.
    fn all_reduce_tensor(&self, op: &'static str, t: &Tensor, mean: bool) -> Result<Tensor> {
        let n = self.world_size();
        match t.dtype() {
            DType::F32 => {
                let mut v = t.to_vec::<f32>()?;
                self.all_reduce_sum_f32(op, &mut v)?;
                if mean {
                    v.iter_mut().for_each(|x| *x /= n as f32);
                }
                Tensor::from_vec(v, t.shape(), t.device())
            }
            _ => {
                let mut v = t.to_f64_vec()?;
                self.all_reduce_sum_f64(op, &mut v)?;
                if mean {
                    v.iter_mut().for_each(|x| *x /= n as f64);
                }
                Tensor::from_vec(v, t.shape(), t.device())?.to_dtype(t.dtype())
            }
        }
    }

    /// `root`'s `t` on every rank, on each rank's own `device` (shape and dtype come from root).
    fn broadcast_tensor(&self, op: &'static str, t: &Tensor, root: usize, device: Device) -> Result<Tensor> {
        let mut bytes = if self.rank() == root { tensor_to_bytes(t)? } else { Vec::new() };
        self.broadcast_bytes(op, &mut bytes, root)?;
        tensor_from_bytes(&bytes, device).map_err(|e| self.error(op, None, e))
    }

    /// Every rank's `t` (shapes may differ), indexed by rank, each on `device`.
    fn all_gather_tensor(&self, op: &'static str, t: &Tensor, device: Device) -> Result<Vec<Tensor>> {
        let all = self.all_gather_bytes(op, &tensor_to_bytes(t)?)?;
        all.iter().map(|b| tensor_from_bytes(b, device).map_err(|e| self.error(op, None, e))).collect()
    }
}

pub(crate) fn check_into<G: ProcessGroup + ?Sized>(g: &G, op: &'static str, send: usize, recv: usize) -> Result<()> {
    if send != recv {
        return Err(g.error(op, None, format!("send buffer of {send} elements, receive buffer of {recv}")));
    }
    Ok(())
}

const TAGS: [DType; 5] = [DType::F32, DType::F64, DType::I64, DType::F16, DType::BF16];

/// dtype tag, rank, shape (u64 each), then the elements, little-endian.
pub(crate) fn tensor_to_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let tag = TAGS.iter().position(|&d| d == t.dtype()).unwrap_or(0) as u8;
    let mut out = vec![tag];
    out.extend((t.rank() as u64).to_le_bytes());
    t.shape().iter().for_each(|&d| out.extend((d as u64).to_le_bytes()));
    match t.dtype() {
        DType::F32 => t.to_vec::<f32>()?.iter().for_each(|x| out.extend(x.to_le_bytes())),
        DType::F64 => t.to_vec::<f64>()?.iter().for_each(|x| out.extend(x.to_le_bytes())),
        DType::I64 => t.to_vec::<i64>()?.iter().for_each(|x| out.extend(x.to_le_bytes())),
        // Half precision travels as f32 (exact both ways) and is cast back on arrival.
        DType::F16 | DType::BF16 => {
            t.to_dtype(DType::F32)?.to_vec::<f32>()?.iter().for_each(|x| out.extend(x.to_le_bytes()))
        }
    }
    Ok(out)
}

pub(crate) fn tensor_from_bytes(b: &[u8], device: Device) -> std::result::Result<Tensor, String> {
    let bad = || "malformed tensor message".to_string();
    let word = |i: usize| -> std::result::Result<u64, String> {
        let s = b.get(1 + 8 * i..9 + 8 * i).ok_or_else(bad)?;
        Ok(u64::from_le_bytes(s.try_into().map_err(|_| bad())?))
    };
    let dtype = *TAGS.get(*b.first().ok_or_else(bad)? as usize).ok_or_else(bad)?;
    let rank = word(0)? as usize;
    let shape: Vec<usize> =
        (0..rank).map(|i| word(1 + i).map(|d| d as usize)).collect::<std::result::Result<_, _>>()?;
    let data = b.get(9 + 8 * rank..).ok_or_else(bad)?;
    let fail = |e: Error| e.to_string();
    match dtype {
        DType::F32 => {
            let v: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Tensor::from_vec(v, &shape, device).map_err(fail)
        }
        DType::F16 | DType::BF16 => {
            let v: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Tensor::from_vec(v, &shape, device).and_then(|t| t.to_dtype(dtype)).map_err(fail)
        }
        DType::F64 => {
            let v: Vec<f64> =
                data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
            Tensor::from_vec(v, &shape, device).map_err(fail)
        }
        DType::I64 => {
            let v: Vec<i64> =
                data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
            Tensor::from_vec(v, &shape, device).map_err(fail)
        }
    }
}
