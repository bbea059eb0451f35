//! MNIST in the IDX format (gzipped or not), seeded shuffling and the CapsNet paper's
//! augmentation (random shifts of up to 2 pixels, zero padded).
//!
//! IDX: a big-endian header `0x00 0x00 <type> <ndims>`, then `ndims` u32 sizes, then the
//! data; MNIST images are type `0x08` (u8) with 3 dims (magic 2051), labels 1 dim (magic
//! 2049). The same code reads the bundled 8,000/2,000 subset and the full 60,000/10,000
//! files. Every malformed input (missing file, bad gzip, wrong magic, truncated data,
//! image/label count mismatch, label above 9) is an [`Error`], never a panic.
//!
//! Randomness is counter-based ([`mix`]): the shuffle and the shifts of epoch `e` depend only
//! on `(seed, e)`, so a run resumed at epoch `e` sees exactly the batches an uninterrupted
//! run would.
// Shared with tests/capsnet.rs and benches/capsnet.rs, which each use a part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use stategrad::autograd::{Device, Error, Result, Tensor};

/// Which half of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-*` files.
    Train,
    /// `t10k-*` files.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// One split of MNIST, held as raw bytes (pixels are converted per batch).
#[derive(Clone, Debug)]
pub struct Mnist {
    /// `len * rows * cols` pixels, row-major, 0..=255.
    pub images: Vec<u8>,
    /// One label per image, 0..=9.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

/// A file's bytes, gunzipped when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_maybe_gz(raw, path)
}

/// `raw` gunzipped when it starts with the gzip magic (`path` names it in errors).
pub fn decode_maybe_gz(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format { path: path.display().to_string(), msg: msg.into() }
}

/// Parses an IDX u8 file: checks the magic (`expected`, which fixes the number of dims) and
/// that the data fills the declared sizes exactly. Returns the sizes and the data.
pub fn parse_idx<'a>(bytes: &'a [u8], path: &Path, expected: u32) -> Result<(Vec<usize>, &'a [u8])> {
    let word = |i: usize| bytes.get(4 * i..4 * i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let magic = word(0).ok_or_else(|| format_err(path, format!("truncated: {} bytes, no IDX header", bytes.len())))?;
    if magic != expected {
        return Err(format_err(
            path,
            format!("wrong magic {magic} (0x{magic:08x}); expected {expected} (0x{expected:08x}), an IDX u8 file"),
        ));
    }
    let ndims = (magic & 0xff) as usize;
    let dims = (1..=ndims)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| format_err(path, format!("truncated header: {ndims} sizes declared")))?;
    let data = &bytes[4 * (ndims + 1)..];
    let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match want {
        Some(n) if n == data.len() => Ok((dims, data)),
        Some(n) if n > data.len() => {
            Err(format_err(path, format!("truncated: sizes {dims:?} need {n} bytes of data, found {}", data.len())))
        }
        Some(n) => {
            Err(format_err(path, format!("{} trailing bytes after the {n} declared by {dims:?}", data.len() - n)))
        }
        None => Err(format_err(path, format!("sizes {dims:?} overflow"))),
    }
}

/// The first existing file among the usual spellings of `stem` in `dir` (`.gz` or not;
/// `train-images-idx3-ubyte` or `train-images.idx3-ubyte`).
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let names = [format!("{stem}.gz"), stem.to_string(), format!("{dotted}.gz"), dotted];
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        Error::io(
            dir.join(&names[0]),
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {stem}[.gz] in this directory")),
        )
    })
}

impl Mnist {
    /// Loads one split from `dir` (the four standard MNIST file names, gzipped or not).
    pub fn load(dir: &Path, split: Split) -> Result<Mnist> {
        let ipath = find(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
        let lpath = find(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
        Mnist::from_idx(&read_maybe_gz(&ipath)?, &ipath, &read_maybe_gz(&lpath)?, &lpath)
    }

    /// Builds a split from the (already gunzipped) bytes of an images and a labels file.
    pub fn from_idx(images: &[u8], ipath: &Path, labels: &[u8], lpath: &Path) -> Result<Mnist> {
        let (idims, pixels) = parse_idx(images, ipath, IMAGES_MAGIC)?;
        let (ldims, labels) = parse_idx(labels, lpath, LABELS_MAGIC)?;
        if idims[0] != ldims[0] {
            return Err(format_err(
                lpath,
                format!("{} labels for {} images in {}", ldims[0], idims[0], ipath.display()),
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l > 9) {
            return Err(format_err(lpath, format!("label {} at index {i} is not a digit", labels[i])));
        }
        Ok(Mnist { images: pixels.to_vec(), labels: labels.to_vec(), rows: idims[1], cols: idims[2] })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let px = self.rows * self.cols;
        &self.images[i * px..][..px]
    }

    /// The first `n` images only (or all of them).
    pub fn take(&self, n: usize) -> Mnist {
        let n = n.min(self.len());
        let px = self.rows * self.cols;
        Mnist { images: self.images[..n * px].to_vec(), labels: self.labels[..n].to_vec(), ..*self }
    }

    /// A batch of the images `idx`, as `x [b, 1, rows, cols]` f32 in `[0, 1]` and labels;
    /// with `shift = Some((max, seed))`, each image is translated by a random
    /// `(dy, dx) in [-max, max]^2` drawn from `(seed, position in the batch)`.
    pub fn batch(&self, idx: &[usize], shift: Option<(usize, u64)>, device: Device) -> Result<Batch> {
        let (h, w) = (self.rows, self.cols);
        let mut x = vec![0f32; idx.len() * h * w];
        for (k, (&i, dst)) in idx.iter().zip(x.chunks_mut(h * w)).enumerate() {
            let src = self.image(i);
            let (dy, dx) = match shift {
                Some((max, seed)) if max > 0 => {
                    let r = mix(seed, k as u64);
                    let span = 2 * max as u64 + 1;
                    ((r % span) as isize - max as isize, ((r >> 32) % span) as isize - max as isize)
                }
                _ => (0, 0),
            };
            for y in 0..h {
                let sy = y as isize - dy;
                if sy < 0 || sy >= h as isize {
                    continue;
                }
                for xx in 0..w {
                    let sx = xx as isize - dx;
                    if sx >= 0 && sx < w as isize {
                        dst[y * w + xx] = src[sy as usize * w + sx as usize] as f32 / 255.0;
                    }
                }
            }
        }
        let labels: Vec<usize> = idx.iter().map(|&i| self.labels[i] as usize).collect();
        let y = Tensor::from_vec(labels.iter().map(|&l| l as i64).collect::<Vec<i64>>(), &[idx.len()], device)?;
        Ok(Batch { x: Tensor::from_vec(x, &[idx.len(), 1, h, w], device)?, y, labels })
    }
}

/// One mini-batch.
pub struct Batch {
    /// Images `[b, 1, 28, 28]`, f32 in `[0, 1]`.
    pub x: Tensor,
    /// Labels `[b]`, i64.
    pub y: Tensor,
    /// The same labels on the host.
    pub labels: Vec<usize>,
}

/// SplitMix64 of `(seed, counter)`: a stateless, well-mixed 64-bit hash.
pub fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed ^ counter.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of epoch `epoch`'s shuffle and augmentation (a pure function of both).
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    mix(seed ^ 0x6361_7073_6e65_7400, epoch as u64)
}

/// A permutation of `0..n` (Fisher-Yates driven by [`mix`]).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix(seed, i as u64) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
