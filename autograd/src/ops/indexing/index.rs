//! The multi-dimensional indexer `x.i((.., 1..3, s(0.., 2), -1, NewAxis))`: Python's
//! `x[:, 1:3, 0::2, -1, None]`. Every item lowers to a view op (`slice`, `narrow` +
//! `squeeze`, `unsqueeze`), so the result shares storage and its gradient is theirs.
use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use crate::{Error, Result, Tensor};

/// One item of an index: what Python writes between the commas of `x[...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorIndex {
    /// `x[i]`: one position (negative counts from the end); the dimension is dropped.
    Index(i64),
    /// `x[start:end:step]`: `None` bounds are the dimension's ends; negative bounds count
    /// from the end and are clamped, as in Python. A view (`Tensor::slice`).
    Slice {
        /// First position (`None`: 0).
        start: Option<i64>,
        /// One past the last position (`None`: the size).
        end: Option<i64>,
        /// Positive step.
        step: usize,
    },
    /// `x[None]`: a new size-1 axis.
    NewAxis,
    /// `x[...]`: as many full slices as the other items leave dimensions.
    Ellipsis,
}

/// `x[None]` (`np.newaxis`): a new axis of size 1.
pub const NEW_AXIS: TensorIndex = TensorIndex::NewAxis;
/// `x[...]`: full slices over every dimension the other items do not name.
pub const ELLIPSIS: TensorIndex = TensorIndex::Ellipsis;

/// A stepped slice, Python's `start:end:step`: `s(0.., 2)` is `0::2`, `s(1..7, 3)` is
/// `1:7:3`, `s(.., 2)` is `::2`.
pub fn s(range: impl Into<TensorIndex>, step: usize) -> TensorIndex {
    match range.into() {
        TensorIndex::Slice { start, end, .. } => TensorIndex::Slice { start, end, step },
        TensorIndex::Index(i) => TensorIndex::Slice { start: Some(i), end: Some(i.saturating_add(1)), step },
        other => other,
    }
}

fn slice(start: Option<i64>, end: Option<i64>) -> TensorIndex {
    TensorIndex::Slice { start, end, step: 1 }
}

impl From<RangeFull> for TensorIndex {
    fn from(_: RangeFull) -> Self {
        slice(None, None)
    }
}

macro_rules! index_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for TensorIndex {
            fn from(i: $t) -> Self {
                TensorIndex::Index(i as i64)
            }
        }
        impl From<Range<$t>> for TensorIndex {
            fn from(r: Range<$t>) -> Self {
                slice(Some(r.start as i64), Some(r.end as i64))
            }
        }
        impl From<RangeFrom<$t>> for TensorIndex {
            fn from(r: RangeFrom<$t>) -> Self {
                slice(Some(r.start as i64), None)
            }
        }
        impl From<RangeTo<$t>> for TensorIndex {
            fn from(r: RangeTo<$t>) -> Self {
                slice(None, Some(r.end as i64))
            }
        }
        // an inclusive end of -1 is the last element: the exclusive end is "to the end"
        impl From<RangeInclusive<$t>> for TensorIndex {
            fn from(r: RangeInclusive<$t>) -> Self {
                let end = *r.end() as i64;
                slice(Some(*r.start() as i64), (end != -1).then(|| end + 1))
            }
        }
        impl From<RangeToInclusive<$t>> for TensorIndex {
            fn from(r: RangeToInclusive<$t>) -> Self {
                let end = r.end as i64;
                slice(None, (end != -1).then(|| end + 1))
            }
        }
    )*};
}
index_from_int!(i32, i64, isize, usize);

/// What [`Tensor::i`] takes: one item, a tuple of up to eight items of any of the forms
/// [`TensorIndex`] converts from, or a slice or vector of [`TensorIndex`].
pub trait Indexer {
    /// The items, in order.
    fn into_items(self) -> Vec<TensorIndex>;
}

impl<T: Into<TensorIndex>> Indexer for T {
    fn into_items(self) -> Vec<TensorIndex> {
        vec![self.into()]
    }
}

impl Indexer for Vec<TensorIndex> {
    fn into_items(self) -> Vec<TensorIndex> {
        self
    }
}

impl Indexer for &[TensorIndex] {
    fn into_items(self) -> Vec<TensorIndex> {
        self.to_vec()
    }
}

macro_rules! index_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<TensorIndex>),+> Indexer for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_items(self) -> Vec<TensorIndex> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
index_tuple!(A);
index_tuple!(A, B);
index_tuple!(A, B, C);
index_tuple!(A, B, C, D);
index_tuple!(A, B, C, D, E);
index_tuple!(A, B, C, D, E, F);
index_tuple!(A, B, C, D, E, F, G);
index_tuple!(A, B, C, D, E, F, G, H);

impl Tensor {
    /// Python's basic indexing `x[...]`, as a view: ranges and [`s`] (stepped) slices,
    /// single positions (dropping their dimension; negative counts from the end),
    /// [`NEW_AXIS`] and [`ELLIPSIS`]. Dimensions the items do not reach are kept whole.
    ///
    /// ```
    /// use stategrad_autograd::{s, Tensor, Device, ELLIPSIS, NEW_AXIS};
    /// let x = Tensor::arange(0, 24, stategrad_autograd::DType::F64, Device::Cpu)?.reshape(&[2, 3, 4])?;
    /// assert_eq!(x.i((.., 1..3, s(0.., 2)))?.shape(), &[2, 2, 2]); // x[:, 1:3, 0::2]
    /// assert_eq!(x.i((ELLIPSIS, 1))?.shape(), &[2, 3]);           // x[..., 1]
    /// assert_eq!(x.i((-1, NEW_AXIS))?.shape(), &[1, 3, 4]);        // x[-1, None]
    /// assert_eq!(x.i((1, 2, -1))?.item()?, 23.0);                  // x[1, 2, -1]
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn i(&self, index: impl Indexer) -> Result<Tensor> {
        let items = index.into_items();
        let ellipses = items.iter().filter(|t| **t == TensorIndex::Ellipsis).count();
        if ellipses > 1 {
            return Err(Error::argument("index", "an index can only have a single ellipsis"));
        }
        let consuming = items.iter().filter(|t| matches!(t, TensorIndex::Index(_) | TensorIndex::Slice { .. })).count();
        if consuming > self.rank() {
            return Err(Error::argument(
                "index",
                format!("too many indices for a tensor of rank {}: {consuming} given", self.rank()),
            ));
        }
        let mut out = self.clone();
        let mut d = 0; // the output dimension the next item applies to
        for item in items {
            match item {
                TensorIndex::Index(i) => {
                    let size = out.shape()[d];
                    let p = if i < 0 { i + size as i64 } else { i };
                    if !(0..size as i64).contains(&p) {
                        return Err(Error::Index { op: "index", index: i, dim: d, size });
                    }
                    out = out.narrow(d, p as usize, 1)?.squeeze(d)?;
                }
                TensorIndex::Slice { start, end, step } => {
                    out = out.slice(d, start.unwrap_or(0), end.unwrap_or(i64::MAX), step)?;
                    d += 1;
                }
                TensorIndex::NewAxis => {
                    out = out.unsqueeze(d)?;
                    d += 1;
                }
                TensorIndex::Ellipsis => d += self.rank() - consuming,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn x() -> Tensor {
        t64(&(0..24).map(f64::from).collect::<Vec<_>>(), &[2, 3, 4])
    }

    #[test]
    fn forward() {
        let x = x();
        // x[:, 1:3, 0::2]
        let v = x.i((.., 1..3, s(0.., 2))).unwrap();
        assert!(v.same_storage(&x));
        assert_close(&v, &[4.0, 6.0, 8.0, 10.0, 16.0, 18.0, 20.0, 22.0], 0.0);
        // x[..., 1::2] and x[..., -1]
        assert_close(&x.i((ELLIPSIS, s(1.., 2))).unwrap().i((1, 2)).unwrap(), &[21.0, 23.0], 0.0);
        assert_close(&x.i((ELLIPSIS, -1)).unwrap(), &[3.0, 7.0, 11.0, 15.0, 19.0, 23.0], 0.0);
        // x[-1, None, :2, 1:3] (an inclusive range) and x[0, ..., None]
        let w = x.i((-1, NEW_AXIS, ..2, 1..=2)).unwrap();
        assert_eq!(w.shape(), &[1, 2, 2]);
        assert_close(&w, &[13.0, 14.0, 17.0, 18.0], 0.0);
        assert_eq!(x.i((0, ELLIPSIS, NEW_AXIS)).unwrap().shape(), &[3, 4, 1]);
        assert_eq!(x.i(1).unwrap().shape(), &[3, 4]);
        assert_eq!(x.i((.., ..=-1)).unwrap().shape(), &[2, 3, 4]);
        assert_eq!(x.i(vec![TensorIndex::Index(0), s(.., 2)]).unwrap().shape(), &[2, 4]);
    }

    #[test]
    fn errors_name_the_problem() {
        let x = x();
        assert!(matches!(x.i((0, 3)), Err(Error::Index { op: "index", index: 3, dim: 0, size: 3 })));
        assert!(matches!(x.i(-3), Err(Error::Index { op: "index", index: -3, .. })));
        assert!(matches!(x.i((0, 0, 0, 0)), Err(Error::Argument { op: "index", .. })));
        assert!(matches!(x.i((ELLIPSIS, ELLIPSIS)), Err(Error::Argument { op: "index", .. })));
        assert!(matches!(x.i(s(.., 0)), Err(Error::Argument { op: "slice", .. })));
    }

    #[test]
    fn gradient() {
        check_view(|x| x.i((.., 1, s(0.., 2))));
        check_view(|x| x.i((ELLIPSIS, -1, NEW_AXIS)));
        check_view(|x| x.i((s(1.., 2), NEW_AXIS, ..2)));
        check_unary(|x| x.i((-1, s(.., 2))), -1.0, 1.0); // transposed, sliced, broadcast; gradgrad
    }
}
