//! `HostBuf<T>`: the elements of a CPU storage, either an owned vector or a borrowed,
//! read-only window of shared bytes (a memory-mapped checkpoint).
//!
//! Kernels write fresh outputs; the one in-place writer, the fused optimizer step, writes
//! only owned vectors ([`HostBuf::as_mut_slice`] is `None` for a window), and its caller
//! (`Tensor::optim_step_`) first copies a borrowed storage. So the first update of a
//! mapped tensor allocates an owned buffer (copy at the point of writing), the tensors
//! never updated keep borrowing, and the bytes behind the window — a file mapped
//! read-only — are never written.
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Bytes that a [`HostBuf`] may borrow: a memory map, a `Vec<u8>`, ... kept alive by an `Arc`.
pub trait SharedBytes: Send + Sync + 'static {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

impl SharedBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Element types that any bit pattern is a valid value of, so that little-endian bytes can
/// be read as a slice of them in place (f32, f64, i64, f16, bf16; never `bool`).
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`, and `Self` must
/// have no padding.
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

// SAFETY: plain numbers: every bit pattern is a value, no padding.
unsafe impl Pod for f32 {}
// SAFETY: as above.
unsafe impl Pod for f64 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: as above (half's types are `repr(transparent)` over `u16`).
unsafe impl Pod for half::f16 {}
// SAFETY: as above.
unsafe impl Pod for half::bf16 {}

enum Repr<T> {
    Owned(Vec<T>),
    Borrowed { bytes: Arc<dyn SharedBytes>, offset: usize, len: usize },
}

/// The elements of a CPU storage: an owned `Vec<T>` or a borrowed window of
/// [`SharedBytes`]. Dereferences to `[T]`, so kernels read both alike.
pub struct HostBuf<T>(Repr<T>);

impl<T: Pod> HostBuf<T> {
    /// `len` elements of `bytes` from byte `offset` on, borrowed in place; `None` when the
    /// window is out of bounds, misaligned for `T`, or the host is big-endian (files hold
    /// little-endian values): the caller then copies.
    pub fn borrowed(bytes: Arc<dyn SharedBytes>, offset: usize, len: usize) -> Option<Self> {
        let b = bytes.bytes();
        let end = len.checked_mul(size_of::<T>())?.checked_add(offset)?;
        if cfg!(target_endian = "big") || end > b.len() {
            return None;
        }
        // SAFETY: `offset <= end <= b.len()`, so the pointer stays within the allocation.
        let ptr = unsafe { b.as_ptr().add(offset) };
        if ptr.align_offset(align_of::<T>()) != 0 {
            return None;
        }
        Some(HostBuf(Repr::Borrowed { bytes, offset, len }))
    }
}

impl<T> HostBuf<T> {
    /// True when the elements borrow shared bytes (a mapped file) rather than own a vector.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Repr::Borrowed { .. })
    }

    /// The elements, writable, when owned; `None` when borrowed (never written in place).
    pub fn as_mut_slice(&mut self) -> Option<&mut [T]> {
        match &mut self.0 {
            Repr::Owned(v) => Some(v),
            Repr::Borrowed { .. } => None,
        }
    }

    /// The owned vector, `None` when borrowed.
    pub fn into_owned_vec(self) -> Option<Vec<T>> {
        match self.0 {
            Repr::Owned(v) => Some(v),
            Repr::Borrowed { .. } => None,
        }
    }
}

impl<T> From<Vec<T>> for HostBuf<T> {
    fn from(v: Vec<T>) -> Self {
        HostBuf(Repr::Owned(v))
    }
}

impl<T> FromIterator<T> for HostBuf<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        HostBuf(Repr::Owned(iter.into_iter().collect()))
    }
}

impl<T> Deref for HostBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Borrowed { bytes, offset, len } => {
                // SAFETY: `borrowed` (the only constructor of this arm, for `T: Pod`) checked
                // bounds and alignment; `T: Pod` makes every bit pattern a value; the bytes
                // are kept alive by the `Arc` for as long as `self` and are never written.
                unsafe { std::slice::from_raw_parts(bytes.bytes().as_ptr().add(*offset).cast::<T>(), *len) }
            }
        }
    }
}

impl<T: Clone> Clone for HostBuf<T> {
    /// A borrowed buffer clones the `Arc` (no copy); an owned one clones the vector.
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Owned(v) => HostBuf(Repr::Owned(v.clone())),
            Repr::Borrowed { bytes, offset, len } => {
                HostBuf(Repr::Borrowed { bytes: bytes.clone(), offset: *offset, len: *len })
            }
        }
    }
}

impl<T: PartialEq> PartialEq for HostBuf<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: fmt::Debug> fmt::Debug for HostBuf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_borrowed() {
            write!(f, "mapped ")?;
        }
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_windows_read_in_place_and_check_bounds() {
        let bytes: Vec<u8> = [1.5f32, -2.0, 3.25].iter().flat_map(|x| x.to_le_bytes()).collect();
        let shared: Arc<dyn SharedBytes> = Arc::new(bytes);
        let b = HostBuf::<f32>::borrowed(shared.clone(), 4, 2).unwrap();
        assert_eq!(&*b, &[-2.0, 3.25]);
        assert!(b.is_borrowed());
        assert!(b.clone().into_owned_vec().is_none());
        assert!(HostBuf::<f32>::borrowed(shared.clone(), 8, 2).is_none(), "past the end");
        assert!(HostBuf::<f32>::borrowed(shared, 2, 1).is_none(), "misaligned");
    }
}
