//! `Layout`: shape, strides (in elements) and offset of a view into a storage.
//!
//! transpose, permute, narrow, broadcast/expand, squeeze, unsqueeze and reshape of
//! contiguous data only rewrite the layout; the storage is shared. Kernels walk strided
//! inputs through [`StridedIndex`] (or take the fast path of [`Layout::contiguous_offset`]).
use smallvec::SmallVec;

use crate::{Error, Result};

/// A short vector of dimensions or strides; rank <= 6 stays on the stack.
pub type Dims = SmallVec<[usize; 6]>;

/// Shape, strides and offset (both in elements) of a view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Dims,
    strides: Dims,
    offset: usize,
}

/// The largest number of elements a tensor may have: its byte size at the widest dtype
/// (8 bytes) must fit in `isize`, as Rust's allocations require.
pub const MAX_NUMEL: usize = (isize::MAX as usize) / 8;

/// The element count of `shape`, checked: the product of its dims, and the product of its
/// dims with zeros counted as ones (which bounds every contiguous stride), must stay within
/// [`MAX_NUMEL`]. An overflow is [`Error::Shape`] naming `op` and the shape, never a
/// wrapped count that a kernel would later trip over.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let mut strides_bound: usize = 1;
    let mut numel: usize = 1;
    for &d in shape {
        strides_bound = strides_bound.checked_mul(d.max(1)).filter(|&n| n <= MAX_NUMEL).ok_or_else(|| {
            Error::shape(op, &[shape], format!("the shape's size overflows (at most {MAX_NUMEL} elements)"))
        })?;
        numel *= d; // <= strides_bound
    }
    Ok(numel)
}

/// Row-major strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Dims {
    let mut strides: Dims = SmallVec::from_elem(0, shape.len());
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i].max(1);
    }
    strides
}

/// The NumPy broadcast of two shapes (aligned at the right; a size-1 dim stretches).
pub fn broadcast_shapes(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Dims> {
    let rank = lhs.len().max(rhs.len());
    let mut out: Dims = SmallVec::from_elem(0, rank);
    for i in 0..rank {
        let l = if i + lhs.len() >= rank { lhs[i + lhs.len() - rank] } else { 1 };
        let r = if i + rhs.len() >= rank { rhs[i + rhs.len() - rank] } else { 1 };
        out[i] = match (l, r) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => return Err(Error::Broadcast { op, lhs: lhs.to_vec(), rhs: rhs.to_vec() }),
        };
    }
    // Two shapes that fit can broadcast to one that does not ([2^40, 1] and [1, 2^40]).
    checked_numel(op, &out)?;
    Ok(out)
}

impl Layout {
    /// A contiguous row-major layout of `shape` at offset 0. The shape must fit
    /// ([`checked_numel`]; every public constructor checks it first, see [`Layout::checked`]).
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout { shape: SmallVec::from_slice(shape), strides: contiguous_strides(shape), offset: 0 }
    }

    /// [`Layout::contiguous`] after checking that `shape` fits ([`checked_numel`]).
    pub fn checked(op: &'static str, shape: &[usize]) -> Result<Self> {
        checked_numel(op, shape)?;
        Ok(Layout::contiguous(shape))
    }

    /// A layout from its parts (strides and offset in elements). Shape and strides must have
    /// one rank and the view's extent (`offset + sum((d - 1) * stride) + 1`) must not
    /// overflow; otherwise [`Error::Shape`]. Whether the view fits a storage is checked
    /// where both meet (`Tensor::from_storage`).
    pub fn new(shape: &[usize], strides: &[usize], offset: usize) -> Result<Self> {
        const OP: &str = "Layout::new";
        if shape.len() != strides.len() {
            return Err(Error::shape(OP, &[shape, strides], "shape and strides differ in rank"));
        }
        checked_numel(OP, shape)?;
        let mut extent = offset;
        for (&d, &st) in shape.iter().zip(strides) {
            if d == 0 {
                extent = 0;
                break;
            }
            extent =
                (d - 1).checked_mul(st).and_then(|x| extent.checked_add(x)).filter(|&e| e < MAX_NUMEL).ok_or_else(
                    || Error::shape(OP, &[shape, strides], format!("offset {offset}: the view's extent overflows")),
                )?;
        }
        let _ = extent;
        Ok(Layout::from_parts(shape, strides, offset))
    }

    /// A sub-view's layout from parts taken of a valid layout (no checks needed).
    pub(crate) fn from_parts(shape: &[usize], strides: &[usize], offset: usize) -> Self {
        Layout { shape: SmallVec::from_slice(shape), strides: SmallVec::from_slice(strides), offset }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The strides, in elements (0 for a broadcast dimension).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Offset of the first element, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are stored densely in row-major order (size-1 dims ignored).
    pub fn is_contiguous(&self) -> bool {
        if self.shape.contains(&0) {
            return true; // no element to be out of order (and no stride is ever read)
        }
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] == 1 {
                continue;
            }
            if self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// `Some(offset)` when contiguous: the elements are `storage[offset..offset + numel]`.
    pub fn contiguous_offset(&self) -> Option<usize> {
        self.is_contiguous().then_some(self.offset)
    }

    /// One past the largest storage index this view reads (0 when empty).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + 1
    }

    fn check_dim(&self, op: &'static str, dim: usize, rank: usize) -> Result<()> {
        if dim >= rank {
            return Err(Error::Dim { op, dim: dim as i64, rank: self.rank() });
        }
        Ok(())
    }

    /// Swaps two dimensions (a view).
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Layout> {
        self.check_dim("transpose", d0, self.rank())?;
        self.check_dim("transpose", d1, self.rank())?;
        let mut l = self.clone();
        l.shape.swap(d0, d1);
        l.strides.swap(d0, d1);
        Ok(l)
    }

    /// Reorders dimensions: output dim `i` is input dim `perm[i]` (a view).
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm.iter().all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(Error::shape(
                "permute",
                &[self.shape()],
                format!("{perm:?} is not a permutation of 0..{}", self.rank()),
            ));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// Elements `start..start + len` of dimension `dim` (a view).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        self.check_dim("narrow", dim, self.rank())?;
        if start.checked_add(len).is_none_or(|end| end > self.shape[dim]) {
            return Err(Error::shape(
                "narrow",
                &[self.shape()],
                format!("{len} elements from {start} outside dimension {dim} of size {}", self.shape[dim]),
            ));
        }
        let mut l = self.clone();
        l.shape[dim] = len;
        if l.shape.contains(&0) {
            l.offset = 0; // an empty view reads nothing: keep its offset inside any storage
        } else {
            l.offset += start * self.strides[dim];
        }
        Ok(l)
    }

    /// This view broadcast to `shape` (stride 0 along stretched or new leading dims).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Layout> {
        checked_numel("expand", shape)?;
        let err = || Error::Broadcast { op: "expand", lhs: self.shape.to_vec(), rhs: shape.to_vec() };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides: Dims = SmallVec::from_elem(0, shape.len());
        for i in 0..self.rank() {
            let (have, want) = (self.shape[i], shape[lead + i]);
            strides[lead + i] = if have == want {
                self.strides[i]
            } else if have == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout { shape: SmallVec::from_slice(shape), strides, offset: self.offset })
    }

    /// Removes dimension `dim`, which must have size 1 (a view).
    pub fn squeeze(&self, dim: usize) -> Result<Layout> {
        self.check_dim("squeeze", dim, self.rank())?;
        if self.shape[dim] != 1 {
            return Err(Error::shape(
                "squeeze",
                &[self.shape()],
                format!("dimension {dim} has size {}, not 1", self.shape[dim]),
            ));
        }
        let mut l = self.clone();
        l.shape.remove(dim);
        l.strides.remove(dim);
        Ok(l)
    }

    /// Inserts a size-1 dimension at `dim` (`0..=rank`) (a view).
    pub fn unsqueeze(&self, dim: usize) -> Result<Layout> {
        self.check_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut l = self.clone();
        let stride = if dim < self.rank() { self.strides[dim] * self.shape[dim] } else { 1 };
        l.shape.insert(dim, 1);
        l.strides.insert(dim, stride);
        Ok(l)
    }

    /// This view with `shape`, when that needs no copy (contiguous data); `None` otherwise.
    /// The caller checks that the element counts agree.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        debug_assert_eq!(shape.iter().product::<usize>(), self.numel());
        self.contiguous_offset().map(|offset| Layout {
            shape: SmallVec::from_slice(shape),
            strides: contiguous_strides(shape),
            offset,
        })
    }

    /// Storage offsets of every element, in row-major order of the shape.
    pub fn strided_index(&self) -> StridedIndex<'_> {
        StridedIndex::new(self, 0)
    }

    /// Storage offsets of the elements from row-major position `start` on.
    pub fn strided_index_from(&self, start: usize) -> StridedIndex<'_> {
        StridedIndex::new(self, start)
    }
}

/// Iterator over the storage offsets of a strided view, in row-major order.
#[derive(Clone, Debug)]
pub struct StridedIndex<'a> {
    layout: &'a Layout,
    index: Dims,
    next: Option<usize>,
    remaining: usize,
}

impl<'a> StridedIndex<'a> {
    fn new(layout: &'a Layout, start: usize) -> Self {
        let numel = layout.numel();
        let mut index: Dims = SmallVec::from_elem(0, layout.rank());
        let mut offset = layout.offset;
        let mut rest = start;
        for d in (0..layout.rank()).rev() {
            let size = layout.shape[d].max(1);
            index[d] = rest % size;
            rest /= size;
            offset += index[d] * layout.strides[d];
        }
        let remaining = numel.saturating_sub(start);
        StridedIndex { layout, index, next: (remaining > 0).then_some(offset), remaining }
    }
}

impl Iterator for StridedIndex<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        self.remaining -= 1;
        if self.remaining == 0 {
            self.next = None;
            return Some(current);
        }
        let mut offset = current;
        for d in (0..self.index.len()).rev() {
            let stride = self.layout.strides[d];
            if self.index[d] + 1 < self.layout.shape[d] {
                self.index[d] += 1;
                offset += stride;
                break;
            }
            offset -= self.index[d] * stride;
            self.index[d] = 0;
        }
        self.next = Some(offset);
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedIndex<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(l: &Layout) -> Vec<usize> {
        l.strided_index().collect()
    }

    #[test]
    fn views_walk_the_right_elements() {
        let l = Layout::contiguous(&[2, 3]);
        assert!(l.is_contiguous());
        assert_eq!(offsets(&l), vec![0, 1, 2, 3, 4, 5]);
        let t = l.transpose(0, 1).unwrap();
        assert!(!t.is_contiguous());
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(offsets(&t), vec![0, 3, 1, 4, 2, 5]);
        let n = l.narrow(1, 1, 2).unwrap();
        assert_eq!(offsets(&n), vec![1, 2, 4, 5]);
        let b = Layout::contiguous(&[3]).broadcast_as(&[2, 3]).unwrap();
        assert_eq!(offsets(&b), vec![0, 1, 2, 0, 1, 2]);
        let u = l.unsqueeze(1).unwrap();
        assert_eq!(u.shape(), &[2, 1, 3]);
        assert!(u.is_contiguous());
        assert_eq!(u.squeeze(1).unwrap(), l);
        assert_eq!(offsets(&t.strided_index_from(3).layout.clone()), offsets(&t));
        assert_eq!(t.strided_index_from(3).collect::<Vec<_>>(), vec![4, 2, 5]);
    }

    #[test]
    fn bad_views_are_errors() {
        let l = Layout::contiguous(&[2, 3]);
        assert!(matches!(l.transpose(0, 2), Err(Error::Dim { op: "transpose", dim: 2, rank: 2 })));
        assert!(l.permute(&[0, 0]).is_err());
        assert!(l.narrow(1, 2, 2).is_err());
        assert!(l.squeeze(0).is_err());
        assert!(l.broadcast_as(&[4, 3]).is_err());
        assert!(broadcast_shapes("add", &[2, 3], &[4, 1]).is_err());
        assert_eq!(broadcast_shapes("add", &[2, 1], &[5, 1, 4]).unwrap().as_slice(), &[5, 2, 4]);
    }

    #[test]
    fn empty_and_scalar_layouts() {
        let s = Layout::contiguous(&[]);
        assert_eq!(s.numel(), 1);
        assert_eq!(offsets(&s), vec![0]);
        let e = Layout::contiguous(&[3, 0]);
        assert_eq!(offsets(&e), Vec::<usize>::new());
        assert_eq!(e.storage_extent(), 0);
    }
}
