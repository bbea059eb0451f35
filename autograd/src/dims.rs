//! Dimension arguments: `usize`, or negative integers counting from the end, as in PyTorch.
use crate::{Error, Result};

/// One dimension index: `usize`, or `i32`/`i64`/`isize` where `-1` is the last dimension.
///
/// [`Dim::to_index`] is the one conversion every op taking a dimension goes through; a
/// dimension outside `-rank..rank` is [`Error::Dim`] naming the op, the dimension and the rank.
pub trait Dim: Copy {
    /// The dimension as `0..rank`, or [`Error::Dim`] naming `op`.
    fn to_index(self, op: &'static str, rank: usize) -> Result<usize>;

    /// A position to insert a new dimension at (`unsqueeze`, `stack`): `0..=rank`, negative
    /// counting from the end of the result (`-1` appends). Out of range is [`Error::Dim`]
    /// naming `op` and the input's rank.
    fn to_insert_index(self, op: &'static str, rank: usize) -> Result<usize> {
        self.to_index(op, rank + 1).map_err(|e| match e {
            Error::Dim { op, dim, .. } => Error::Dim { op, dim, rank },
            e => e,
        })
    }
}

impl Dim for usize {
    fn to_index(self, op: &'static str, rank: usize) -> Result<usize> {
        if self < rank {
            Ok(self)
        } else {
            Err(Error::Dim { op, dim: self as i64, rank })
        }
    }
}

macro_rules! signed_dim {
    ($($t:ty),*) => {$(
        impl Dim for $t {
            fn to_index(self, op: &'static str, rank: usize) -> Result<usize> {
                let d = self as i64;
                let i = if d < 0 { d + rank as i64 } else { d };
                if (0..rank as i64).contains(&i) { Ok(i as usize) } else { Err(Error::Dim { op, dim: d, rank }) }
            }
        }
    )*};
}
signed_dim!(i32, i64, isize);

/// One size of a target shape (`reshape`): `usize`, or a signed integer where `-1` means
/// "inferred from the element count", as in PyTorch's `x.view(b, -1)`.
pub trait Size: Copy {
    /// The size, or `None` for `-1`; another negative value is [`Error::Shape`] naming `op`.
    fn to_size(self, op: &'static str) -> Result<Option<usize>>;
}

impl Size for usize {
    fn to_size(self, _: &'static str) -> Result<Option<usize>> {
        Ok(Some(self))
    }
}

macro_rules! signed_size {
    ($($t:ty),*) => {$(
        impl Size for $t {
            fn to_size(self, op: &'static str) -> Result<Option<usize>> {
                match self {
                    -1 => Ok(None),
                    s if s < 0 => Err(Error::shape(op, &[], format!("invalid size {s} (only -1 is inferred)"))),
                    s => Ok(Some(s as usize)),
                }
            }
        }
    )*};
}
signed_size!(i32, i64, isize);

/// A target shape with at most one `-1`, resolved against `numel` elements.
pub(crate) fn resolve_shape<S: Size>(op: &'static str, shape: &[S], from: &[usize]) -> Result<Vec<usize>> {
    let sizes = shape.iter().map(|s| s.to_size(op)).collect::<Result<Vec<_>>>()?;
    let numel: usize = from.iter().product(); // an existing tensor's: it fits
    let known = stategrad_backends::checked_numel(op, &sizes.iter().flatten().copied().collect::<Vec<_>>())?;
    let shown = || sizes.iter().map(|s| s.map_or(-1, |s| s as i64)).collect::<Vec<_>>();
    match sizes.iter().filter(|s| s.is_none()).count() {
        0 => Ok(sizes.into_iter().flatten().collect()),
        1 if known > 0 && numel % known == 0 => Ok(sizes.into_iter().map(|s| s.unwrap_or(numel / known)).collect()),
        1 => Err(Error::shape(op, &[from], format!("{numel} elements cannot be viewed as {:?}", shown()))),
        _ => Err(Error::shape(op, &[from], format!("only one size can be -1, got {:?}", shown()))),
    }
}

/// A set of dimensions: one [`Dim`], or an array, slice or vector of them.
pub trait Dims {
    /// Sorted, de-duplicated indexes in `0..rank`.
    fn to_indexes(self, op: &'static str, rank: usize) -> Result<Vec<usize>>;
}

fn collect<D: Dim>(it: impl IntoIterator<Item = D>, op: &'static str, rank: usize) -> Result<Vec<usize>> {
    let mut v = it.into_iter().map(|d| d.to_index(op, rank)).collect::<Result<Vec<_>>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

impl<D: Dim> Dims for D {
    fn to_indexes(self, op: &'static str, rank: usize) -> Result<Vec<usize>> {
        Ok(vec![self.to_index(op, rank)?])
    }
}
impl<D: Dim, const N: usize> Dims for [D; N] {
    fn to_indexes(self, op: &'static str, rank: usize) -> Result<Vec<usize>> {
        collect(self, op, rank)
    }
}
impl<D: Dim, const N: usize> Dims for &[D; N] {
    fn to_indexes(self, op: &'static str, rank: usize) -> Result<Vec<usize>> {
        collect(self.iter().copied(), op, rank)
    }
}
impl<D: Dim> Dims for &[D] {
    fn to_indexes(self, op: &'static str, rank: usize) -> Result<Vec<usize>> {
        collect(self.iter().copied(), op, rank)
    }
}
impl<D: Dim> Dims for Vec<D> {
    fn to_indexes(self, op: &'static str, rank: usize) -> Result<Vec<usize>> {
        collect(self, op, rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_dims_count_from_the_end() {
        assert_eq!((-1).to_index("t", 3).unwrap(), 2);
        assert_eq!(0usize.to_index("t", 3).unwrap(), 0);
        assert!(matches!(3usize.to_index("sum", 3), Err(Error::Dim { op: "sum", dim: 3, rank: 3 })));
        assert!((-4).to_index("t", 3).is_err());
        assert_eq!([-1, 0, 2].to_indexes("t", 3).unwrap(), vec![0, 2]);
        assert_eq!((-1).to_insert_index("unsqueeze", 2).unwrap(), 2);
        assert_eq!(resolve_shape("r", &[2, -1], &[2, 3, 4]).unwrap(), vec![2, 12]);
        assert_eq!(resolve_shape("r", &[4usize, 6], &[2, 3, 4]).unwrap(), vec![4, 6]);
        assert!(resolve_shape("r", &[5, -1], &[2, 3, 4]).is_err());
        assert!(resolve_shape("r", &[-1, -1], &[2, 3, 4]).is_err());
        assert!(resolve_shape("r", &[-2, 12], &[2, 3, 4]).is_err());
        assert!(matches!(3usize.to_insert_index("stack", 2), Err(Error::Dim { op: "stack", dim: 3, rank: 2 })));
    }
}
