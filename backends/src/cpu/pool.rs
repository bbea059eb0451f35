//! Reuse of large host buffers.
//!
//! A training step allocates the same large tensors every iteration (activations, their
//! gradients, im2col buffers). Fresh multi-megabyte allocations come from `mmap`, so every
//! page is faulted in and zeroed by the kernel on first touch, on every step. Freed CPU
//! storages of at least [`MIN_POOLED_BYTES`] are kept here instead, keyed by exact capacity
//! (a training loop asks for the same sizes again), up to a cap on the bytes held
//! ([`set_pool_limit`]); smaller ones go back to `malloc`, which serves them well. When a
//! buffer would pass the cap, the sizes used least recently are freed first: an evaluation
//! pass between epochs (other batch sizes) must not leave the pool full of buffers training
//! never asks for, with training's own turned away and page-faulted in again every step.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::Result;

/// Buffers smaller than this are not pooled.
pub const MIN_POOLED_BYTES: usize = 1 << 16;

static LIMIT: AtomicUsize = AtomicUsize::new(1 << 30);
static HELD: AtomicUsize = AtomicUsize::new(0);
/// A clock for the buckets' last use (taken from or given to).
static TICK: AtomicU64 = AtomicU64::new(0);

/// Sets the most bytes the pool keeps (default 1 GiB); 0 disables pooling and frees the pool.
pub fn set_pool_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    if bytes == 0 {
        clear_pool();
    }
}

/// Bytes currently held by the pool.
pub fn pool_bytes() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// Frees every pooled buffer.
pub fn clear_pool() {
    f32::clear();
    f64::clear();
    i64::clear();
    half::f16::clear();
    half::bf16::clear();
}

/// Free buffers of one capacity, and when that size was last used.
#[doc(hidden)]
pub struct Bucket<T> {
    bufs: Vec<Vec<T>>,
    used: u64,
}

type Buckets<T> = Mutex<Option<HashMap<usize, Bucket<T>>>>;

/// A free buffer of capacity `n` from `map`, marking the size as used now.
fn pop<T>(map: &mut HashMap<usize, Bucket<T>>, n: usize) -> Option<Vec<T>> {
    let b = map.get_mut(&n)?;
    b.used = TICK.fetch_add(1, Ordering::Relaxed);
    b.bufs.pop()
}

/// Element types whose buffers are pooled.
pub trait Pooled: Copy + Send + Sized + Default + 'static {
    /// This type's buckets of free buffers, by capacity.
    #[doc(hidden)]
    fn buckets() -> &'static Buckets<Self>;

    /// A vector of length 0 and capacity at least `n`, reused when one is free. An
    /// allocation the system refuses or cannot back (see [`super::admit`]), or a byte size
    /// past `isize::MAX`, is [`Error::OutOfMemory`](crate::Error::OutOfMemory), never an abort.
    fn take(n: usize) -> Result<Vec<Self>> {
        let bytes = n.saturating_mul(size_of::<Self>());
        if bytes >= MIN_POOLED_BYTES {
            let reused = Self::buckets().lock().ok().and_then(|mut b| pop(b.as_mut()?, n));
            if let Some(mut v) = reused {
                HELD.fetch_sub(bytes, Ordering::Relaxed);
                v.clear();
                return Ok(v);
            }
        }
        super::try_vec(n)
    }

    /// `n` copies of `value` in a reused buffer when one is free.
    fn filled(n: usize, value: Self) -> Result<Vec<Self>> {
        let mut v = Self::take(n)?;
        v.resize(n, value);
        Ok(v)
    }

    /// `n` elements of unspecified (initialised) values, for scratch and outputs that are
    /// written in full before they are read: a reused buffer comes as it was left, so no
    /// zero-fill pass is paid (a fresh one is filled with the default value once).
    fn scratch(n: usize) -> Result<Vec<Self>> {
        let bytes = n.saturating_mul(size_of::<Self>());
        if bytes >= MIN_POOLED_BYTES {
            let reused = Self::buckets().lock().ok().and_then(|mut b| pop(b.as_mut()?, n));
            if let Some(v) = reused {
                HELD.fetch_sub(bytes, Ordering::Relaxed);
                // pooled buffers are kept at `len == capacity` (see `give`), and the bucket
                // of `n` holds capacity `n`
                debug_assert_eq!(v.len(), n);
                return Ok(v);
            }
        }
        Self::filled(n, Self::default())
    }

    /// Returns a buffer to the pool, first freeing buffers of the sizes used least recently
    /// when it would pass the limit; it goes back to the allocator when small, larger than
    /// the limit, or when no other size is left to free. Pooled buffers are initialised to their whole capacity, so [`Pooled::scratch`] can hand
    /// one out as it is.
    fn give(mut v: Vec<Self>) {
        let (cap, size) = (v.capacity(), size_of::<Self>());
        let bytes = cap * size;
        let limit = LIMIT.load(Ordering::Relaxed);
        if bytes < MIN_POOLED_BYTES || bytes > limit {
            return;
        }
        if v.len() < cap {
            v.resize(cap, Self::default());
        }
        let Ok(mut guard) = Self::buckets().lock() else { return };
        let map = guard.get_or_insert_with(HashMap::new);
        // make room by freeing buffers of the sizes used least recently (never this size)
        while HELD.load(Ordering::Relaxed) + bytes > limit {
            let victim = map.iter().filter(|(&c, b)| c != cap && !b.bufs.is_empty()).min_by_key(|(_, b)| b.used);
            let Some((&c, _)) = victim else { return };
            if let Some(old) = map.get_mut(&c).and_then(|b| b.bufs.pop()) {
                HELD.fetch_sub(c * size, Ordering::Relaxed);
                drop(old);
            }
        }
        HELD.fetch_add(bytes, Ordering::Relaxed);
        let b = map.entry(cap).or_insert(Bucket { bufs: Vec::new(), used: 0 });
        b.used = TICK.fetch_add(1, Ordering::Relaxed);
        b.bufs.push(v);
    }

    /// Frees this type's pooled buffers.
    fn clear() {
        if let Ok(mut b) = Self::buckets().lock() {
            if let Some(map) = b.take() {
                let bytes: usize = map.values().flat_map(|b| &b.bufs).map(|v| v.capacity() * size_of::<Self>()).sum();
                HELD.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
    }
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn buckets() -> &'static Buckets<Self> {
                static BUCKETS: Buckets<$t> = Mutex::new(None);
                &BUCKETS
            }
        }
    )*};
}
pooled!(f32, f64, i64, bool, half::f16, half::bf16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Error};

    #[test]
    fn impossible_allocations_are_errors() {
        // 2^61 f64 = 16 EiB: past isize::MAX bytes.
        let err = f64::take(1 << 61).unwrap_err();
        assert!(matches!(err, Error::OutOfMemory { bytes, device: Device::Cpu, .. } if bytes == 1u128 << 64), "{err}");
        // 2^50 f32 = 4 PiB: a valid size no machine here can back.
        assert!(matches!(f32::take(1 << 50), Err(Error::OutOfMemory { .. })));
    }

    #[test]
    fn large_buffers_are_reused_small_ones_are_not() {
        let n = MIN_POOLED_BYTES; // f64: 8x the threshold
        let v = f64::filled(n, 1.5).unwrap();
        let ptr = v.as_ptr();
        f64::give(v);
        let again = f64::take(n).unwrap();
        assert_eq!((again.as_ptr(), again.len()), (ptr, 0), "the same allocation comes back, emptied");
        let small = f64::filled(4, 0.0).unwrap();
        f64::give(small);
        assert!(f64::take(4).unwrap().capacity() >= 4);
        let z = f64::filled(n, 0.0).unwrap();
        assert!(z.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn scratch_reuses_a_buffer_as_it_was_left_and_a_short_one_is_padded() {
        let n = MIN_POOLED_BYTES / 4 + 3; // f32, over the threshold
        let v = f32::filled(n, 2.5).unwrap();
        let ptr = v.as_ptr();
        f32::give(v);
        let s = f32::scratch(n).unwrap();
        assert_eq!((s.as_ptr(), s.len()), (ptr, n));
        assert!(s.iter().all(|&x| x == 2.5), "no fill pass on reuse");
        f32::give(s);
        // a buffer given back with spare capacity is pooled fully initialised
        let mut short = f32::take(n + 5).unwrap();
        short.extend(std::iter::repeat_n(1.0, n));
        f32::give(short);
        let s = f32::scratch(n + 5).unwrap();
        assert_eq!(s.len(), n + 5);
        assert_eq!(&s[n..], &[0.0; 5], "the tail was padded with the default");
    }
}
