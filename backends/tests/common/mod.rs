//! Helpers shared by the CPU kernel tests: a seeded generator, the views a kernel must
//! accept (contiguous, transposed, narrowed, broadcast), and plain multi-index walking for
//! the naive reference implementations.
#![allow(dead_code)]

use stategrad_backends::{CpuStorage, Layout};

/// A small deterministic generator (splitmix64), so tests need no extra dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.f64()).collect()
    }
    pub fn shape(&mut self, rank: usize, max: usize) -> Vec<usize> {
        (0..rank).map(|_| self.below(max + 1)).collect()
    }
}

/// The storage offset of multi-index `idx` in view `l`.
pub fn at(l: &Layout, idx: &[usize]) -> usize {
    l.offset() + idx.iter().zip(l.strides()).map(|(i, s)| i * s).sum::<usize>()
}

/// Every multi-index of `shape`, in row-major order.
pub fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0; shape.len()];
    for _ in 0..n {
        out.push(idx.clone());
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// A storage in dtype `dtype` ("f32" or "f64") holding `v`.
pub fn storage(v: &[f64], f32: bool) -> CpuStorage {
    if f32 {
        CpuStorage::F32(v.iter().map(|&x| x as f32).collect::<Vec<_>>().into())
    } else {
        CpuStorage::F64(v.to_vec().into())
    }
}

/// How a test view of a logical shape is laid out in memory.
#[derive(Clone, Copy, Debug)]
pub enum View {
    /// Dense row-major.
    Contiguous,
    /// Stored with the last two dims swapped, then transposed back (non-contiguous).
    Transposed,
    /// A narrowed window of a larger buffer (offset and gaps).
    Narrowed,
    /// Dim 0 stretched from size 1 (stride 0).
    Broadcast,
}

pub const VIEWS: [View; 4] = [View::Contiguous, View::Transposed, View::Narrowed, View::Broadcast];

/// Random values (as f64) for a view of logical `shape`, laid out as `view`: the storage
/// (f64 values) and the layout. Read element `idx` as `data[at(&l, idx)]`.
pub fn make_view(rng: &mut Rng, shape: &[usize], view: View) -> (Vec<f64>, Layout) {
    let n: usize = shape.iter().product();
    match view {
        View::Transposed if shape.len() >= 2 => {
            let r = shape.len();
            let mut s = shape.to_vec();
            s.swap(r - 2, r - 1);
            let l = Layout::contiguous(&s).transpose(r - 2, r - 1).unwrap();
            (rng.vec(n), l)
        }
        View::Narrowed if !shape.is_empty() => {
            let mut big = shape.to_vec();
            let last = big.len() - 1;
            big[last] += 3;
            let data = rng.vec(big.iter().product());
            let l = Layout::contiguous(&big).narrow(last, 2, shape[last]).unwrap();
            (data, l)
        }
        View::Broadcast if !shape.is_empty() => {
            let mut small = shape.to_vec();
            small[0] = 1;
            let data = rng.vec(small.iter().product());
            let l = Layout::contiguous(&small).broadcast_as(shape).unwrap();
            (data, l)
        }
        _ => (rng.vec(n), Layout::contiguous(shape)),
    }
}

/// Asserts `got` (any float storage) is within `tol * (1 + |want|)` of `want`, elementwise.
pub fn assert_close(got: &CpuStorage, want: &[f64], tol: f64, what: &str) {
    let got = got.to_f64_vec();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()) || g == w;
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

/// The tolerance for results computed in `f32` (or f64).
pub fn tol(f32: bool) -> f64 {
    if f32 {
        2e-5
    } else {
        1e-12
    }
}
