//! Checkpoints and serialization: bit-exact round trips (safetensors and serde JSON),
//! strict-load errors that list every problem and change nothing, non-strict reports,
//! atomic writes that survive an injected failure, and bad files that give errors, never
//! panics (a corpus of truncations and corruptions, plus proptest random bytes).
use std::path::PathBuf;

use proptest::prelude::*;
use stategrad::autograd::{DType, Device, Error, Tensor};
use stategrad::nn::checkpoint::write_atomic;
use stategrad::nn::{load_safetensors, save_safetensors, BatchNorm2d, Buffer, Linear, Module, Param, StateDict};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("checkpoint_tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[derive(Module)]
struct Net {
    fc: Linear,
    bn: BatchNorm2d,
    table: Buffer,
    scratch: Buffer,
}

fn net() -> Net {
    Net {
        fc: Linear::new(3, 2).unwrap(),
        bn: BatchNorm2d::new(2).unwrap(),
        table: Buffer::new(
            Tensor::from_slice(&[0.1f64, -0.0, f64::MIN_POSITIVE, 1e300], &[2, 2], Device::Cpu).unwrap(),
        ),
        scratch: Buffer::non_persistent(Tensor::zeros(&[5], DType::F32, Device::Cpu).unwrap()),
    }
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t.to_vec::<f32>().unwrap().iter().map(|x| x.to_bits() as u64).collect(),
        DType::F64 => t.to_vec::<f64>().unwrap().iter().map(|x| x.to_bits()).collect(),
        DType::I64 => t.to_vec::<i64>().unwrap().iter().map(|&x| x as u64).collect(),
        DType::F16 | DType::BF16 => bits(&t.to_dtype(DType::F64).unwrap()),
    }
}

fn assert_same(a: &StateDict, b: &StateDict) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for ((k, x), (_, y)) in a.iter().zip(b.iter()) {
        assert_eq!((x.shape(), x.dtype()), (y.shape(), y.dtype()), "{k}");
        assert_eq!(bits(x), bits(y), "{k}");
    }
}

#[test]
fn safetensors_round_trip_is_bit_exact_and_keeps_order() {
    let a = net();
    a.bn.num_batches_tracked.set(Tensor::full(&[], 7.0, DType::I64, Device::Cpu).unwrap()).unwrap();
    let path = tmp("round_trip.safetensors");
    a.save_safetensors(&path).unwrap();
    let loaded = load_safetensors(&path).unwrap();
    assert_same(&a.state_dict(), &loaded);
    assert!(!loaded.contains_key("scratch"));
    let b = net();
    assert!(b.load_safetensors(&path, true).unwrap().is_clean());
    assert_same(&a.state_dict(), &b.state_dict());
}

#[test]
fn serde_json_round_trip_is_exact() {
    let a = net();
    let json = serde_json::to_string(&a.state_dict()).unwrap();
    let back: StateDict = serde_json::from_str(&json).unwrap();
    assert_same(&a.state_dict(), &back);
    // dtype, shape and data must agree.
    let bad = json.replacen("\"f64\"", "\"f32\"", 1);
    assert!(serde_json::from_str::<StateDict>(&bad).is_err());
}

#[test]
fn strict_load_reports_every_problem_at_once_and_changes_nothing() {
    let m = net();
    let before = m.state_dict().iter().map(|(k, t)| (k.to_string(), bits(t))).collect::<Vec<_>>();
    let mut sd = net().state_dict();
    sd.remove("fc.bias"); // missing
    sd.remove("bn.running_var"); // missing
    let w = sd.remove("fc.weight").unwrap();
    sd.insert("fc.wieght", w); // unexpected, and fc.weight missing
    sd.insert("decoder.gamma", Tensor::zeros(&[1], DType::F32, Device::Cpu).unwrap()); // unexpected
    sd.insert("bn.weight", Tensor::zeros(&[3], DType::F32, Device::Cpu).unwrap()); // shape
    sd.insert("table", Tensor::zeros(&[2, 2], DType::F32, Device::Cpu).unwrap()); // dtype
    let err = m.load_state_dict(&sd, true).unwrap_err();
    let msg = err.to_string();
    // The error carries the report itself: callers match on it instead of parsing prose.
    let Error::Load { op: "load_state_dict", report } = &err else { panic!("not a Load error: {err:?}") };
    let keys = |l: &[stategrad::nn::UnmatchedKey]| l.iter().map(|k| k.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&report.missing), ["fc.weight", "fc.bias", "bn.running_var"]);
    assert_eq!(keys(&report.unexpected), ["fc.wieght", "decoder.gamma"]);
    assert_eq!(report.unexpected[0].suggestion.as_deref(), Some("fc.weight"));
    assert_eq!(report.shape_mismatches[0].key, "bn.weight");
    assert_eq!(
        (report.shape_mismatches[0].expected_shape.clone(), report.shape_mismatches[0].found_shape.clone()),
        (vec![2], vec![3])
    );
    assert_eq!(report.dtype_mismatches[0].key, "table");
    assert!(report.loaded.is_empty(), "nothing was loaded, the report must not say otherwise");
    assert!(msg.starts_with("load_state_dict: strict load failed, nothing loaded:"), "{msg}");
    assert!(!msg.contains("keys loaded"), "contradictory message: {msg}");
    for needle in [
        "\"fc.bias\"",
        "\"bn.running_var\"",
        "\"fc.weight\"",
        "\"fc.wieght\" (did you mean \"fc.weight\"?)",
        "\"decoder.gamma\"",
        "\"bn.weight\": module has [2] float32, state dict has [3] float32",
        "\"table\": module has [2, 2] float64, state dict has [2, 2] float32",
    ] {
        assert!(msg.contains(needle), "{needle} not in: {msg}");
    }
    let after = m.state_dict().iter().map(|(k, t)| (k.to_string(), bits(t))).collect::<Vec<_>>();
    assert_eq!(before, after, "a failed strict load changed the module");

    // Not strict: what matches loads, the rest is reported.
    let report = m.load_state_dict(&sd, false).unwrap();
    assert_eq!(report.shape_mismatches.len(), 1);
    assert_eq!(report.dtype_mismatches.len(), 1);
    assert_eq!(report.missing.len(), 3);
    assert_eq!(report.unexpected.len(), 2);
    assert!(report.loaded.contains(&"bn.bias".to_string()));
    assert_eq!(m.bn.weight.as_ref().unwrap().shape(), vec![2]);
}

#[test]
fn an_interrupted_write_leaves_the_old_file_intact() {
    let path = tmp("atomic.safetensors");
    let m = net();
    m.save_safetensors(&path).unwrap();
    let old = std::fs::read(&path).unwrap();
    let err = write_atomic(&path, |w| {
        w.write_all(&old[..old.len() / 2])?;
        Err(std::io::Error::other("injected failure"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("injected failure"));
    assert_eq!(std::fs::read(&path).unwrap(), old);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".atomic.safetensors.tmp-")) // other tests save beside it
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(net().load_safetensors(&path, true).is_ok());
}

fn expect_format_error(path: &std::path::Path) {
    match load_safetensors(path) {
        Err(Error::Format { path: p, .. }) => assert!(p.contains(path.file_name().unwrap().to_str().unwrap())),
        Ok(sd) => panic!("{} parsed into {} tensors", path.display(), sd.len()),
        Err(e) => panic!("wrong error: {e}"),
    }
}

#[test]
fn truncated_corrupt_and_foreign_files_are_format_errors() {
    let path = tmp("good.safetensors");
    net().save_safetensors(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = tmp("bad.safetensors");
    // Every truncation.
    for len in 0..good.len() {
        std::fs::write(&bad, &good[..len]).unwrap();
        expect_format_error(&bad);
    }
    // Foreign files: text, a PNG signature, JSON.
    for foreign in [&b"hello, world"[..], b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", b"{\"a\": 1}"] {
        std::fs::write(&bad, foreign).unwrap();
        expect_format_error(&bad);
    }
    // Corrupting any single header byte: an error or (rarely) a still-valid file; never a panic.
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize + 8;
    for i in 0..header_len {
        let mut c = good.clone();
        c[i] ^= 0x5a;
        std::fs::write(&bad, &c).unwrap();
        let _ = load_safetensors(&bad);
    }
    assert!(matches!(load_safetensors(tmp("does_not_exist.safetensors")), Err(Error::Io { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), prefix in 0u64..512) {
        let path = tmp("random.safetensors");
        // Half the cases get a plausible length prefix so parsing reaches the JSON header.
        let data = if prefix % 2 == 0 { [prefix.to_le_bytes().to_vec(), bytes].concat() } else { bytes };
        std::fs::write(&path, &data).unwrap();
        let _ = load_safetensors(&path); // Ok (a valid empty file is possible) or Err, never a panic
    }
}

#[test]
fn a_state_dict_saves_directly_and_unsupported_targets_error() {
    let mut sd = StateDict::new();
    sd.insert("p", Param::new(Tensor::ones(&[2], DType::F32, Device::Cpu).unwrap()).data());
    let path = tmp("direct.safetensors");
    save_safetensors(&sd, &path).unwrap();
    assert_same(&sd, &load_safetensors(&path).unwrap());
    assert!(save_safetensors(&sd, tmp("no_such_dir/x.safetensors")).is_err());
}
