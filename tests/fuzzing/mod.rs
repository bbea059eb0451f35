//! What the fuzz targets run on one input, shared by the cargo-fuzz targets in `fuzz/`
//! (libFuzzer, nightly) and the stable driver in `tests/fuzz.rs` (seeded mutations). Each
//! target feeds bytes to one of the library's readers and asserts only that it returns: a
//! typed `Err` or an `Ok` whose contents are consistent. A panic or an abort is the bug.
#![allow(dead_code)]

use std::path::Path;

use stategrad::autograd::{DType, Device, Tensor};
use stategrad::nn::checkpoint::state_dict_from_safetensors;
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer, OptimizerState, Sgd, SgdConfig};
use stategrad::nn::{BatchNorm1d, Buffer, Forward, Linear, Module, Param, StateDict};

#[path = "../../examples/capsnet/data.rs"]
mod data;

/// The model every state loader targets: params, persistent and integer buffers.
#[derive(Module)]
pub struct Model {
    fc: Linear,
    bn: BatchNorm1d,
    scale: Param,
    table: Buffer,
}

pub fn target() -> Model {
    Model {
        fc: Linear::new(3, 2).unwrap(),
        bn: BatchNorm1d::new(2).unwrap(),
        scale: Param::new(Tensor::ones(&[2], DType::F32, Device::Cpu).unwrap()),
        table: Buffer::new(Tensor::zeros(&[2, 2], DType::F64, Device::Cpu).unwrap()),
    }
}

/// Loads a parsed state dict both ways; strict must fail or load everything.
fn load_both(sd: &StateDict) {
    let m = target();
    if let Ok(report) = m.load_state_dict(sd, true) {
        assert!(report.is_clean(), "a strict load succeeded with problems: {report}");
    }
    let _ = m.load_state_dict(sd, false);
}

/// Target 1: a safetensors file.
pub fn safetensors(data: &[u8]) -> bool {
    let Ok(sd) = state_dict_from_safetensors(data, "fuzz input") else { return false };
    for (_, t) in sd.iter() {
        assert_eq!(t.to_f64_vec().map(|v| v.len()).unwrap_or(t.numel()), t.numel());
    }
    load_both(&sd);
    true
}

/// Target 2: a state dict as JSON (serde).
pub fn state_json(data: &[u8]) -> bool {
    let Ok(sd) = serde_json::from_slice::<StateDict>(data) else { return false };
    load_both(&sd);
    true
}

/// Target 3: an optimizer state as JSON, loaded into SGD and Adam over the target's params.
pub fn optimizer_json(data: &[u8]) -> bool {
    let Ok(state) = serde_json::from_slice::<OptimizerState>(data) else { return false };
    let m = target();
    let mut sgd = Sgd::new(m.parameters(), SgdConfig { momentum: 0.9, ..SgdConfig::new(0.1) }).unwrap();
    let a = sgd.load_state_dict(&state).is_ok();
    let mut adam = Adam::new(m.parameters(), AdamConfig::new(1e-3)).unwrap();
    let b = adam.load_state_dict(&state).is_ok();
    a || b
}

/// Target 4: an IDX images file and labels file (the first byte splits the input),
/// gzipped or not, as MNIST.
pub fn idx(data: &[u8]) -> bool {
    let Some((&split, rest)) = data.split_first() else { return false };
    let at = (split as usize * rest.len()) / 255;
    let (images, labels) = rest.split_at(at.min(rest.len()));
    let ip = Path::new("images");
    let lp = Path::new("labels");
    let (Ok(images), Ok(labels)) =
        (data::decode_maybe_gz(images.to_vec(), ip), data::decode_maybe_gz(labels.to_vec(), lp))
    else {
        return false;
    };
    let Ok(m) = data::Mnist::from_idx(&images, ip, &labels, lp) else { return false };
    assert_eq!(m.images.len(), m.len() * m.rows * m.cols);
    assert!(m.labels.iter().all(|&l| l <= 9));
    true
}

/// Valid seed inputs for each target (mutations start from these).
pub fn seeds(target_name: &str) -> Vec<Vec<u8>> {
    let m = target();
    match target_name {
        "safetensors" => {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("stategrad-fuzz-seed-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("seed.safetensors");
            m.save_safetensors(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            vec![bytes]
        }
        "state_json" => vec![serde_json::to_vec(&m.state_dict()).unwrap()],
        "optimizer_json" => {
            let x = Tensor::ones(&[4, 3], DType::F32, Device::Cpu).unwrap();
            let loss = m.fc.forward(&x).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let mut adam = Adam::new(m.parameters(), AdamConfig::new(1e-3)).unwrap();
            adam.step(&grads).unwrap();
            let mut sgd = Sgd::new(m.parameters(), SgdConfig { momentum: 0.9, ..SgdConfig::new(0.1) }).unwrap();
            sgd.step(&grads).unwrap();
            vec![
                serde_json::to_vec(&adam.state_dict().unwrap()).unwrap(),
                serde_json::to_vec(&sgd.state_dict().unwrap()).unwrap(),
            ]
        }
        "idx" => {
            let idx = |magic: u32, dims: &[u32], data: &[u8]| {
                let mut v = magic.to_be_bytes().to_vec();
                dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
                v.extend_from_slice(data);
                v
            };
            let images = idx(2051, &[2, 3, 3], &[7; 18]);
            let labels = idx(2049, &[2], &[3, 9]);
            let join = |a: &[u8], b: &[u8]| {
                let split = ((a.len() * 255).div_ceil(a.len() + b.len())) as u8;
                let mut v = vec![split];
                v.extend_from_slice(a);
                v.extend_from_slice(b);
                v
            };
            let gz = |b: &[u8]| {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(b).unwrap();
                e.finish().unwrap()
            };
            vec![join(&images, &labels), join(&gz(&images), &gz(&labels))]
        }
        other => panic!("unknown fuzz target {other}"),
    }
}

/// A target: its name and its per-input function (true when the input was accepted).
pub type Target = (&'static str, fn(&[u8]) -> bool);

/// The four targets.
pub const TARGETS: [Target; 4] =
    [("safetensors", safetensors), ("state_json", state_json), ("optimizer_json", optimizer_json), ("idx", idx)];

/// Small deterministic generator for the stable driver's mutations (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One mutation of `input`: truncate, flip bits, splice in a piece of `other`, grow or
/// corrupt a header length, overwrite with interesting numbers, insert or delete bytes.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = if rng.below(4) == 0 { 2 + rng.below(3) } else { 1 };
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(8) {
            0 => v.truncate(rng.below(len + 1)),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    if !v.is_empty() {
                        let i = rng.below(v.len());
                        v[i] ^= 1 << rng.below(8);
                    }
                }
            }
            2 if !other.is_empty() => {
                let (a, b) = (rng.below(other.len()), rng.below(other.len()));
                let piece = &other[a.min(b)..a.max(b)];
                let at = rng.below(len + 1);
                v.splice(at..(at + rng.below(8)).min(len), piece.iter().copied());
            }
            3 if len >= 8 => {
                // safetensors: the first 8 bytes are the header length (little endian);
                // IDX: the first words are big-endian sizes. Grow, shrink or blow them up.
                let n = u64::from_le_bytes(v[..8].try_into().unwrap());
                let new = match rng.below(4) {
                    0 => n.wrapping_add(1 + rng.below(64) as u64),
                    1 => n.saturating_sub(1 + rng.below(64) as u64),
                    2 => u64::MAX - rng.below(16) as u64,
                    _ => 1 << rng.below(64),
                };
                v[..8].copy_from_slice(&new.to_le_bytes());
            }
            4 if len >= 4 => {
                let at = rng.below(len - 3);
                let word: u32 = [0, 1, u32::MAX, 0x7fff_ffff, 0x8000_0000, 2049, 2051][rng.below(7)];
                v[at..at + 4].copy_from_slice(&word.to_be_bytes());
            }
            5 => {
                let at = rng.below(len + 1);
                let bytes: &[u8] =
                    [&b"{"[..], b"}", b"\"", b"[", b"]", b",", b"1e309", b"-1", b"null", b"\"F16\"", b"\xff"]
                        [rng.below(11)];
                v.splice(at..at, bytes.iter().copied());
            }
            6 if len > 0 => {
                let (a, b) = (rng.below(len), rng.below(len));
                v.drain(a.min(b)..a.max(b));
            }
            _ => {
                let at = rng.below(len + 1);
                let n = rng.below(64);
                v.splice(at..at, (0..n).map(|_| rng.next() as u8));
            }
        }
    }
    v
}
