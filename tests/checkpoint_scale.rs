//! Checkpoints at real scale: memory-mapped loads (RSS of a 512 MiB parameter measured in a
//! child process), streaming saves, deferred (meta) builds materialised from a file,
//! versioned state with migrations, load options (prefixes, casts, shape policies, hooks)
//! with every action reported, half-precision storage, tied weights, optimizer state by
//! parameter name and one-call training checkpoints.
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use stategrad::autograd::{DType, Device, Error, Result, Storage, Tensor};
use stategrad::nn::checkpoint::{
    load_safetensors_with_metadata, load_training_checkpoint, save_safetensors_with_metadata, save_training_checkpoint,
    Metadata, TIES_KEY, VERSIONS_KEY,
};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer};
use stategrad::nn::{
    deferred, load_safetensors, save_safetensors, BatchNorm2d, Buffer, Embedding, Forward, FrozenBatchNorm2d,
    LayerNorm, Linear, LoadOptions, Migrated, Module, Param, SaveOptions, ShapeMismatch, SinusoidalPositionalEncoding,
    StateDict, Visitor,
};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("checkpoint_scale");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t.to_vec::<f32>().unwrap().iter().map(|x| x.to_bits() as u64).collect(),
        DType::F64 => t.to_vec::<f64>().unwrap().iter().map(|x| x.to_bits()).collect(),
        DType::I64 => t.to_vec::<i64>().unwrap().iter().map(|&x| x as u64).collect(),
        DType::F16 | DType::BF16 => t.to_dtype(DType::F64).map(|t| bits(&t)).unwrap(),
    }
}

fn is_mapped(t: &Tensor) -> bool {
    matches!(t.storage(), Storage::Cpu(s) if s.is_borrowed())
}

// ---------------------------------------------------------------------------------------
// Memory: a 512 MiB parameter, measured in a child process (this test binary re-run on one
// test, with the phase in the environment), peak RSS from /proc/self/status.

#[derive(Module)]
struct Big {
    w: Param,
    b: Param,
}

const BIG_ELEMS: usize = 128 << 20; // f32: 512 MiB

fn big(eager: bool) -> Big {
    let make = || Big {
        w: Param::new(Tensor::rand(&[BIG_ELEMS / 1024, 1024], -1.0, 1.0, DType::F32, Device::Cpu).unwrap()),
        b: Param::new(Tensor::rand(&[1024], -1.0, 1.0, DType::F32, Device::Cpu).unwrap()),
    };
    if eager {
        make()
    } else {
        deferred(make)
    }
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child's side: runs one phase and prints `rss: base hwm` (KiB).
#[test]
fn rss_child() {
    let Ok(phase) = std::env::var("STATEGRAD_RSS_PHASE") else { return }; // only as a child
    let path = PathBuf::from(std::env::var("STATEGRAD_RSS_FILE").unwrap());
    stategrad::backends::cpu::set_pool_limit(0);
    match phase.as_str() {
        "save" => {
            let m = big(true);
            let base = status_kib("VmRSS:");
            m.save_safetensors(&path).unwrap();
            println!("rss: {base} {}", status_kib("VmHWM:"));
        }
        "load" => {
            let base = status_kib("VmRSS:");
            let m = big(false);
            let report = m.load_safetensors(&path, true).unwrap();
            assert_eq!(report.loaded.len(), 2);
            assert!(is_mapped(&m.w.data()));
            // Read every element (sum), so every page of the mapping is resident.
            let s = m.w.data().sum_all().unwrap().item().unwrap();
            assert!(s.is_finite());
            println!("rss: {base} {}", status_kib("VmHWM:"));
        }
        other => panic!("phase {other}"),
    }
}

fn child_peak(phase: &str, path: &std::path::Path) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rss_child", "--nocapture", "--test-threads", "1"])
        .env("STATEGRAD_RSS_PHASE", phase)
        .env("STATEGRAD_RSS_FILE", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child {phase} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.split_once("rss: ").map(|(_, r)| r)).unwrap_or_else(|| panic!("{stdout}"));
    let v: Vec<u64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

#[test]
fn saving_and_loading_a_512_mib_parameter_peaks_well_under_1_2x_its_size() {
    let path = tmp("big.safetensors");
    let (base, hwm) = child_peak("save", &path);
    let file = std::fs::metadata(&path).unwrap().len() / 1024;
    assert!(file >= (BIG_ELEMS as u64 * 4) / 1024);
    // The model is resident before the save starts (base); the save adds no second copy.
    let extra = hwm.saturating_sub(base);
    eprintln!("save: model resident {base} KiB, peak {hwm} KiB, file {file} KiB: +{extra} KiB");
    assert!(extra < file / 10, "save added {extra} KiB over a {file} KiB model");
    assert!(hwm < base.max(file) + file / 5);

    let (base, hwm) = child_peak("load", &path);
    let extra = hwm.saturating_sub(base);
    eprintln!(
        "load: start {base} KiB, peak {hwm} KiB (all pages touched), file {file} KiB: {:.3}x",
        extra as f64 / file as f64
    );
    assert!((extra as f64) < 1.2 * file as f64 * 0.9, "load peaked at {extra} KiB for a {file} KiB file");
    std::fs::remove_file(&path).unwrap();
}

#[derive(Module)]
struct Small {
    fc: Linear,
    bn: BatchNorm2d,
    table: Buffer,
}

fn small() -> Small {
    Small {
        fc: Linear::new(5, 3).unwrap(),
        bn: BatchNorm2d::new(3).unwrap(),
        table: Buffer::new(Tensor::rand(&[7, 3], -1.0, 1.0, DType::F64, Device::Cpu).unwrap()),
    }
}

#[test]
fn mapped_tensors_equal_copied_ones_and_a_write_does_not_change_the_file() {
    let src = small();
    let path = tmp("small.safetensors");
    src.save_safetensors(&path).unwrap();
    let file_before = std::fs::read(&path).unwrap();

    let mapped = small();
    mapped.load_safetensors_with(&path, &LoadOptions::default()).unwrap();
    let copied = small();
    copied.load_safetensors_with(&path, &LoadOptions::default().mmap(false)).unwrap();
    for ((k, a), (_, b)) in mapped.state_dict().iter().zip(copied.state_dict().iter()) {
        assert_eq!(bits(a), bits(b), "{k}");
        assert_eq!(bits(a), bits(src.state_dict().get(k).unwrap()), "{k}");
    }
    assert!(is_mapped(&mapped.fc.weight.data()), "f32 weights borrow the mapping");
    assert!(is_mapped(&mapped.table.tensor()), "f64 too");

    // Writes: an optimizer step and a buffer update replace tensors; the file is untouched.
    let x = Tensor::rand(&[4, 5], -1.0, 1.0, DType::F32, Device::Cpu).unwrap();
    let grads = mapped.fc.forward(&x).unwrap().sum_all().unwrap().backward().unwrap();
    let mut opt = Adam::new(mapped.parameters(), AdamConfig::new(0.1)).unwrap();
    opt.step(&grads).unwrap();
    mapped.table.set(Tensor::zeros(&[7, 3], DType::F64, Device::Cpu).unwrap()).unwrap();
    assert!(!is_mapped(&mapped.fc.weight.data()), "the updated weight owns its memory");
    assert_ne!(bits(&mapped.fc.weight.data()), bits(&src.fc.weight.data()));
    assert_eq!(std::fs::read(&path).unwrap(), file_before, "the file did not change");
    // And a save over the mapped file (atomic rename) leaves still-mapped tensors intact.
    let bias_before = bits(&mapped.bn.running_var.tensor());
    mapped.save_safetensors(&path).unwrap();
    assert_eq!(bits(&mapped.bn.running_var.tensor()), bias_before);
}

#[test]
fn saving_streams_strided_views_and_half_tensors() {
    let t = Tensor::rand(&[3, 4], -2.0, 2.0, DType::F32, Device::Cpu).unwrap();
    let mut sd = StateDict::new();
    sd.insert("t_transposed", t.t().unwrap()); // a strided view: copied on its own
    sd.insert("narrowed", t.narrow(0, 1, 2).unwrap()); // contiguous at an offset
    sd.insert("half", t.to_dtype(DType::F16).unwrap());
    sd.insert("bhalf", t.to_dtype(DType::BF16).unwrap());
    sd.insert("count", Tensor::from_vec(vec![7i64], &[], Device::Cpu).unwrap());
    let path = tmp("views.safetensors");
    let meta = Metadata::from([("user.note".to_string(), "hello".to_string())]);
    save_safetensors_with_metadata(&sd, &meta, &path).unwrap();
    let (back, meta_back) = load_safetensors_with_metadata(&path).unwrap();
    assert_eq!(back.keys().collect::<Vec<_>>(), sd.keys().collect::<Vec<_>>());
    for (k, t) in sd.iter() {
        let b = back.get(k).unwrap();
        assert_eq!((b.shape(), b.dtype()), (t.shape(), t.dtype()), "{k}");
        assert_eq!(bits(b), bits(t), "{k}");
    }
    assert_eq!(meta_back.get("user.note").map(String::as_str), Some("hello"));
    assert!(is_mapped(back.get("half").unwrap()));
}

// ---------------------------------------------------------------------------------------
// Half precision as a storage dtype.

#[test]
fn half_dtypes_cast_round_trip_and_compute_through_f32() {
    let v = [1.0f32, -2.5, 0.1, 65504.0, 1e-8];
    let t = Tensor::from_slice(&v, &[5], Device::Cpu).unwrap();
    let h = t.to_dtype(DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    let back = h.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
    let expected: Vec<f32> = v.iter().map(|&x| stategrad::autograd::half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(back, expected);
    let b = t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
    let expected: Vec<f64> = v.iter().map(|&x| stategrad::autograd::half::bf16::from_f32(x).to_f64()).collect();
    assert_eq!(b, expected);
    // Arithmetic on half tensors runs through f32 and stays half.
    let s = h.add(&h).unwrap();
    assert_eq!(s.dtype(), DType::F16);
    let expected: Vec<f32> =
        expected_f16(&v).iter().map(|&x| stategrad::autograd::half::f16::from_f32(x + x).to_f32()).collect();
    assert_eq!(s.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(), expected);
    // Mixing half and f32 is still an error, not a silent cast.
    assert!(matches!(h.add(&t), Err(Error::DTypeMismatch { .. })));
    // A module converts to half and back.
    let m = small();
    m.to_dtype(DType::BF16).unwrap();
    assert_eq!(m.fc.weight.dtype(), DType::BF16);
    assert_eq!(m.bn.num_batches_tracked.dtype(), DType::I64);
}

fn expected_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| stategrad::autograd::half::f16::from_f32(x).to_f32()).collect()
}

// ---------------------------------------------------------------------------------------
// Deferred initialisation.

#[derive(Module)]
struct Seq {
    emb: Embedding,
    pos: SinusoidalPositionalEncoding,
    norm: LayerNorm,
    proj: Linear,
    bn: BatchNorm2d,
}

fn seq() -> Result<Seq> {
    Ok(Seq {
        emb: Embedding::new(20, 8)?,
        pos: SinusoidalPositionalEncoding::non_persistent(16, 8)?,
        norm: LayerNorm::new(&[8])?,
        proj: Linear::new(8, 8)?,
        bn: BatchNorm2d::new(2)?,
    })
}

impl Seq {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.pos.forward(&self.emb.forward(ids)?)?;
        self.proj.forward(&self.norm.forward(&x)?)
    }
}

#[test]
fn a_deferred_build_allocates_nothing_and_loads_bit_equal_to_an_eager_one() {
    let path = tmp("seq.safetensors");
    seq().unwrap().save_safetensors(&path).unwrap();
    assert!(!load_safetensors(&path).unwrap().contains_key("pos.pe"), "non-persistent: not saved");

    let lazy = deferred(seq).unwrap();
    assert!(lazy.state_dict().iter().all(|(_, t)| t.device() == Device::Meta));
    assert_eq!(lazy.pos.pe.device(), Device::Meta);
    assert_eq!(lazy.proj.weight.shape(), [8, 8]);
    let ids = Tensor::from_slice(&[1i64, 4, 4, 19, 0, 7], &[2, 3], Device::Cpu).unwrap();
    let e = lazy.forward(&ids).unwrap_err();
    assert!(e.to_string().contains("meta"), "{e}");
    let e = lazy.proj.weight.data().sum_all().unwrap_err();
    assert!(e.to_string().contains("unmaterialised"), "{e}");

    let report = lazy.load_safetensors_with(&path, &LoadOptions::default().device(Device::Cpu)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.recomputed, ["pos.pe"]);
    let eager = seq().unwrap();
    eager.load_safetensors(&path, true).unwrap();
    for ((k, a), (_, b)) in lazy.state_dict().iter().zip(eager.state_dict().iter()) {
        assert_eq!(bits(a), bits(b), "{k}");
    }
    assert_eq!(bits(&lazy.pos.pe.tensor()), bits(&SinusoidalPositionalEncoding::table(16, 8).unwrap()));
    assert_eq!(bits(&lazy.forward(&ids).unwrap()), bits(&eager.forward(&ids).unwrap()));
}

#[test]
fn a_tensor_left_unmaterialised_is_an_error_naming_it() {
    let path = tmp("seq_partial.safetensors");
    let mut sd = seq().unwrap().state_dict();
    sd.remove("proj.bias");
    save_safetensors(&sd, &path).unwrap();

    let lazy = deferred(seq).unwrap();
    match lazy.load_safetensors(&path, true).unwrap_err() {
        Error::Load { report, .. } => assert_eq!(report.missing[0].key, "proj.bias"),
        other => panic!("{other}"),
    }
    let e = lazy.load_safetensors(&path, false).unwrap_err();
    assert!(matches!(e, Error::State { .. }) && e.to_string().contains("proj.bias"), "{e}");
    assert_eq!(lazy.proj.weight.device(), Device::Meta, "nothing changed");

    // A non-persistent buffer whose module does not recompute it is named too.
    #[derive(Module)]
    struct Plain {
        fc: Linear,
        cache: Buffer,
    }
    let plain = deferred(|| Plain {
        fc: Linear::new(2, 2).unwrap(),
        cache: Buffer::non_persistent(Tensor::zeros(&[3], DType::F32, Device::Cpu).unwrap()),
    });
    let e = plain
        .load_state_dict(
            &Linear::new(2, 2).unwrap().state_dict().iter().map(|(k, t)| (format!("fc.{k}"), t.clone())).collect(),
            true,
        )
        .unwrap_err();
    assert!(e.to_string().contains("\"cache\""), "{e}");
}

// ---------------------------------------------------------------------------------------
// Versions and migrations.

/// Version 1 of a layer: `{scale}`.
#[derive(Module)]
struct ScaleV1 {
    scale: Param,
}

/// Version 2 renamed `scale` to `weight` and added `shift`; it upgrades v1 states.
struct ScaleV2 {
    weight: Param,
    shift: Param,
}

impl Module for ScaleV2 {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.param("shift", &self.shift);
    }
    fn state_version(&self) -> u32 {
        2
    }
    fn upgrade_state(&self, prefix: &str, state: &mut StateDict, from: Option<u32>) -> Result<Vec<Migrated>> {
        let mut done = Vec::new();
        if from.unwrap_or(1) < 2 {
            if let Some(t) = state.remove(&format!("{prefix}scale")) {
                state.insert(format!("{prefix}weight"), t);
                done.push(Migrated { key: format!("{prefix}weight"), action: "renamed from scale (v1)".into() });
                let zeros = Tensor::zeros(&self.shift.shape(), DType::F32, Device::Cpu)?;
                state.insert(format!("{prefix}shift"), zeros);
                done.push(Migrated { key: format!("{prefix}shift"), action: "added as zeros (v1)".into() });
            }
        }
        Ok(done)
    }
}

#[derive(Module)]
struct Holder<M: Module> {
    layer: M,
}

fn v2() -> Holder<ScaleV2> {
    let p = |v: f32| Param::new(Tensor::full(&[3], v as f64, DType::F32, Device::Cpu).unwrap());
    Holder { layer: ScaleV2 { weight: p(0.0), shift: p(9.0) } }
}

#[test]
fn a_versioned_module_migrates_a_v1_file_and_records_its_version() {
    let v1 = Holder { layer: ScaleV1 { scale: Param::new(Tensor::full(&[3], 2.0, DType::F32, Device::Cpu).unwrap()) } };
    let path = tmp("v1.safetensors");
    v1.save_safetensors(&path).unwrap();
    let (_, meta) = load_safetensors_with_metadata(&path).unwrap();
    assert_eq!(meta.get(VERSIONS_KEY).map(String::as_str), Some("{}"), "v1 everywhere");

    let m = v2();
    let report = m.load_safetensors(&path, true).unwrap();
    assert!(report.is_clean(), "{report}");
    let keys: Vec<&str> = report.migrated.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["layer.weight", "layer.shift"]);
    assert_eq!(m.layer.weight.data().to_vec::<f32>().unwrap(), [2.0; 3]);
    assert_eq!(m.layer.shift.data().to_vec::<f32>().unwrap(), [0.0; 3]);

    // A v2 file records version 2 and loads without migration.
    let path2 = tmp("v2.safetensors");
    m.save_safetensors(&path2).unwrap();
    let (_, meta) = load_safetensors_with_metadata(&path2).unwrap();
    assert_eq!(meta.get(VERSIONS_KEY).map(String::as_str), Some(r#"{"layer":2}"#));
    let again = v2();
    let report = again.load_safetensors(&path2, true).unwrap();
    assert!(report.migrated.is_empty(), "{report}");
    assert_eq!(again.layer.weight.data().to_vec::<f32>().unwrap(), [2.0; 3]);
}

#[test]
fn batchnorm_state_migrates_into_frozen_batchnorm_and_is_reported() {
    let bn = BatchNorm2d::new(3).unwrap();
    bn.running_mean.set(Tensor::from_slice(&[0.5f32, -1.0, 2.0], &[3], Device::Cpu).unwrap()).unwrap();
    let frozen = FrozenBatchNorm2d::new(3).unwrap();
    let report = frozen.load_state_dict(&bn.state_dict(), true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.migrated.len(), 1);
    assert_eq!(report.migrated[0].key, "num_batches_tracked");
    assert!(report.unexpected.is_empty());
    assert_eq!(frozen.running_mean.tensor().to_vec::<f32>().unwrap(), [0.5, -1.0, 2.0]);
    bn.eval();
    let x = Tensor::rand(&[2, 3, 4, 4], -1.0, 1.0, DType::F32, Device::Cpu).unwrap();
    assert_eq!(bits(&frozen.forward(&x).unwrap()), bits(&bn.forward(&x).unwrap()));
}

// ---------------------------------------------------------------------------------------
// Load options.

#[test]
fn prefixes_are_stripped_and_added_and_reported() {
    let src = small();
    for wrapper in ["module.", "_orig_mod.", "module._orig_mod."] {
        let sd: StateDict = src.state_dict().iter().map(|(k, t)| (format!("{wrapper}{k}"), t.clone())).collect();
        let dst = small();
        assert!(dst.load_state_dict(&sd, true).is_err());
        let opts = LoadOptions::default().strip_prefix("module.").strip_prefix("_orig_mod.");
        let report = dst.load_state_dict_with(&sd, &opts).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.renamed.len(), sd.len());
        let fc = report.renamed.iter().find(|r| r.to == "fc.weight").unwrap();
        assert_eq!(fc.from, format!("{wrapper}fc.weight"));
        assert_eq!(bits(&dst.fc.weight.data()), bits(&src.fc.weight.data()));
    }
    // A backbone file loads into a submodule by adding its prefix.
    #[derive(Module)]
    struct Wrapped {
        backbone: Small,
    }
    let w = Wrapped { backbone: small() };
    let report = w.load_state_dict_with(&src.state_dict(), &LoadOptions::default().add_prefix("backbone.")).unwrap();
    assert!(report.renamed.iter().any(|r| r.from == "fc.weight" && r.to == "backbone.fc.weight"));
    assert!(report.is_clean(), "{report}");
    assert_eq!(bits(&w.backbone.table.tensor()), bits(&src.table.tensor()));
}

#[test]
fn float_casts_load_f32_into_f64_and_back_and_are_reported() {
    let src = small(); // fc f32, table f64
    let dst = small();
    dst.to_dtype(DType::F64).unwrap();
    let before = bits(&dst.fc.weight.data());
    let e = dst.load_state_dict(&src.state_dict(), true).unwrap_err();
    assert!(matches!(&e, Error::Load { report, .. } if report.dtype_mismatches.len() == 6), "{e}");
    assert_eq!(bits(&dst.fc.weight.data()), before, "strict failure changed nothing");

    let report = dst.load_state_dict_with(&src.state_dict(), &LoadOptions::default().cast(true)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.cast.len(), 6, "{report}"); // fc 2, bn weight/bias/mean/var; table is f64 already
    assert!(report.cast.iter().all(|c| c.from == DType::F32 && c.to == DType::F64));
    assert_eq!(dst.fc.weight.dtype(), DType::F64);
    assert_eq!(
        dst.fc.weight.data().to_vec::<f64>().unwrap(),
        src.fc.weight.data().to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
    );

    // The reverse: f64 into f32 rounds like to_dtype.
    let back = small();
    let report = back.load_state_dict_with(&dst.state_dict(), &LoadOptions::default().cast(true)).unwrap();
    assert_eq!(report.cast.len(), 6);
    assert_eq!(bits(&back.fc.weight.data()), bits(&src.fc.weight.data()));
    // Integers are never cast.
    let mut sd = src.state_dict();
    sd.insert("bn.num_batches_tracked", Tensor::zeros(&[], DType::F32, Device::Cpu).unwrap());
    let e = small().load_state_dict_with(&sd, &LoadOptions::default().cast(true)).unwrap_err();
    assert!(
        matches!(&e, Error::Load { report, .. } if report.dtype_mismatches[0].key == "bn.num_batches_tracked"),
        "{e}"
    );
}

#[test]
fn shape_mismatch_policies_error_skip_or_keep_and_are_reported() {
    let src = Small { fc: Linear::new(5, 4).unwrap(), ..small() }; // fc: [4, 5] and [4]
    let sd = src.state_dict();
    let dst = small();
    let before = bits(&dst.fc.weight.data());
    let e = dst.load_state_dict(&sd, true).unwrap_err();
    assert!(matches!(&e, Error::Load { report, .. } if report.shape_mismatches.len() == 2), "{e}");
    assert_eq!(bits(&dst.fc.weight.data()), before);
    assert_eq!(bits(&dst.table.tensor()), bits(&small_table(&dst)), "nothing loaded");

    let report = dst.load_state_dict_with(&sd, &LoadOptions::default().on_shape_mismatch(ShapeMismatch::Skip)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.skipped.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["fc.weight", "fc.bias"]);
    assert_eq!(bits(&dst.fc.weight.data()), before, "skipped: kept its own");
    assert_eq!(bits(&dst.table.tensor()), bits(&src.table.tensor()), "the rest loaded");

    let report = dst.load_state_dict_with(&sd, &LoadOptions::default().on_shape_mismatch(ShapeMismatch::Keep)).unwrap();
    assert_eq!(report.resized.len(), 2);
    assert_eq!(report.resized[0].found_shape, [4, 5]);
    assert_eq!(dst.fc.weight.shape(), [4, 5]);
    assert_eq!(bits(&dst.fc.weight.data()), bits(&src.fc.weight.data()));
}

fn small_table(m: &Small) -> Tensor {
    m.table.tensor()
}

#[test]
fn load_and_save_hooks_run_in_order_and_see_the_state() {
    let src = small();
    let path = tmp("hooks.safetensors");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let save = SaveOptions::default()
        .metadata("epoch", "3")
        .pre_hook(move |sd| {
            l1.lock().unwrap().push(format!("pre-save {}", sd.len()));
            sd.insert("extra.note", Tensor::zeros(&[1], DType::F32, Device::Cpu)?);
            Ok(())
        })
        .post_hook(move |p| {
            l2.lock().unwrap().push(format!("post-save {}", p.exists()));
            Ok(())
        });
    src.save_safetensors_with(&path, &save).unwrap();
    let (sd, meta) = load_safetensors_with_metadata(&path).unwrap();
    assert!(sd.contains_key("extra.note"));
    assert_eq!(meta.get("epoch").map(String::as_str), Some("3"));

    let (l3, l4) = (log.clone(), log.clone());
    let opts = LoadOptions::default()
        .pre_hook(move |sd| {
            l3.lock().unwrap().push("pre-load".into());
            sd.remove("extra.note");
            Ok(())
        })
        .post_hook(move |r| {
            l4.lock().unwrap().push(format!("post-load {}", r.loaded.len()));
            Ok(())
        });
    let dst = small();
    dst.load_safetensors_with(&path, &opts).unwrap();
    assert_eq!(*log.lock().unwrap(), ["pre-save 8", "post-save true", "pre-load", "post-load 8"]);
    // A hook's error fails the load.
    let failing = LoadOptions::default().pre_hook(|_| Err(Error::argument("hook", "no")));
    assert!(dst.load_safetensors_with(&path, &failing).is_err());
}

// ---------------------------------------------------------------------------------------
// Tied weights.

#[derive(Module)]
struct TiedLm {
    emb: Param,
    head: Param,
}

#[test]
fn tied_weights_are_saved_once_with_the_tie_recorded_and_retied_on_load() {
    let w = Param::new(Tensor::rand(&[6, 4], -1.0, 1.0, DType::F32, Device::Cpu).unwrap());
    let tied = TiedLm { emb: w.clone(), head: w.clone() };
    let path = tmp("tied.safetensors");
    tied.save_safetensors(&path).unwrap();
    let (sd, meta) = load_safetensors_with_metadata(&path).unwrap();
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["emb"], "written once");
    assert_eq!(meta.get(TIES_KEY).map(String::as_str), Some(r#"{"head":"emb"}"#));

    // Into a tied model: one tensor, both names, still tied.
    let w2 = Param::new(Tensor::zeros(&[6, 4], DType::F32, Device::Cpu).unwrap());
    let again = TiedLm { emb: w2.clone(), head: w2 };
    let report = again.load_safetensors(&path, true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(again.emb.ptr_eq(&again.head));
    assert_eq!(bits(&again.head.data()), bits(&w.data()));

    // Into a model whose two names are separate handles: the tie fills both.
    let p = || Param::new(Tensor::zeros(&[6, 4], DType::F32, Device::Cpu).unwrap());
    let untied = TiedLm { emb: p(), head: p() };
    let report = untied.load_safetensors(&path, true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.renamed[0].from, "emb");
    assert_eq!(report.renamed[0].to, "head");
    assert_eq!(bits(&untied.head.data()), bits(&w.data()));
}

// ---------------------------------------------------------------------------------------
// Optimizer state by name.

#[derive(Module)]
struct AB {
    a: Linear,
    b: Linear,
}

#[derive(Module)]
struct BA {
    b: Linear,
    a: Linear,
}

fn loss_of(a: &Linear, b: &Linear, x: &Tensor) -> Tensor {
    let h = a.forward(x).unwrap().tanh().unwrap();
    b.forward(&h).unwrap().square().unwrap().sum_all().unwrap()
}

#[test]
fn optimizer_state_loads_by_name_into_a_reordered_model_and_the_next_step_is_bit_identical() {
    let x = Tensor::rand(&[5, 3], -1.0, 1.0, DType::F32, Device::Cpu).unwrap();
    let ab = AB { a: Linear::new(3, 4).unwrap(), b: Linear::new(4, 2).unwrap() };
    let mut opt = Adam::new(ab.parameters(), AdamConfig::new(0.01)).unwrap();
    for _ in 0..3 {
        opt.step(&loss_of(&ab.a, &ab.b, &x).backward().unwrap()).unwrap();
    }
    let state = opt.state_dict_named(&ab).unwrap();
    let names: Vec<_> = state.groups[0].params.iter().map(|p| p.name.clone().unwrap()).collect();
    assert_eq!(names, ["a.weight", "a.bias", "b.weight", "b.bias"]);

    // The same weights in a model that declares its layers the other way round.
    let ba = BA { b: Linear::new(4, 2).unwrap(), a: Linear::new(3, 4).unwrap() };
    ba.load_state_dict(&ab.state_dict(), true).unwrap();
    let mut opt2 = Adam::new(ba.parameters(), AdamConfig::new(0.5)).unwrap();
    // Positional loading would pair b.weight's [2, 4] state with a.weight: refused.
    assert!(opt2.load_state_dict(&state).is_err());
    let report = opt2.load_state_dict_named(&state, &ba, true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.loaded, ["b.weight", "b.bias", "a.weight", "a.bias"]);

    opt.step(&loss_of(&ab.a, &ab.b, &x).backward().unwrap()).unwrap();
    opt2.step(&loss_of(&ba.a, &ba.b, &x).backward().unwrap()).unwrap();
    for (k, t) in ab.state_dict().iter() {
        assert_eq!(bits(t), bits(ba.state_dict().get(k).unwrap()), "{k}");
    }

    // A model that lost a layer and gained one: strict fails and changes nothing; not
    // strict loads what matches and reports the rest.
    #[derive(Module)]
    struct AC {
        a: Linear,
        c: Linear,
    }
    let ac = AC { a: Linear::new(3, 4).unwrap(), c: Linear::new(4, 2).unwrap() };
    let mut opt3 = Adam::new(ac.parameters(), AdamConfig::new(0.01)).unwrap();
    let fresh = opt3.state_dict().unwrap();
    let e = opt3.load_state_dict_named(&state, &ac, true).unwrap_err();
    assert!(
        matches!(&e, Error::Load { report, .. } if report.missing.len() == 2 && report.unexpected.len() == 2),
        "{e}"
    );
    assert_eq!(opt3.state_dict().unwrap(), fresh);
    let report = opt3.load_state_dict_named(&state, &ac, false).unwrap();
    assert_eq!(report.loaded, ["a.weight", "a.bias"]);
    assert_eq!(report.missing.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["c.weight", "c.bias"]);
    assert_eq!(opt3.state_dict().unwrap().groups[0].params[0].step, 3);
}

// ---------------------------------------------------------------------------------------
// Training checkpoints.

#[test]
fn a_training_checkpoint_restores_model_optimizer_and_metadata_in_one_call() {
    let x = Tensor::rand(&[5, 3], -1.0, 1.0, DType::F32, Device::Cpu).unwrap();
    let ab = AB { a: Linear::new(3, 4).unwrap(), b: Linear::new(4, 2).unwrap() };
    let mut opt = Adam::new(ab.parameters(), AdamConfig::new(0.01)).unwrap();
    opt.step(&loss_of(&ab.a, &ab.b, &x).backward().unwrap()).unwrap();
    let path = tmp("train.safetensors");
    let user = serde_json::json!({ "epoch": 1, "seed": 7, "history": [[0.5, null]] });
    save_training_checkpoint(&path, &ab, &opt, &user).unwrap();

    let ba = BA { b: Linear::new(4, 2).unwrap(), a: Linear::new(3, 4).unwrap() };
    let mut opt2 = Adam::new(ba.parameters(), AdamConfig::new(0.9)).unwrap();
    let ckpt = load_training_checkpoint(&path, &ba, &mut opt2, &LoadOptions::default()).unwrap();
    assert_eq!(ckpt.user, user);
    assert!(ckpt.model.is_clean() && ckpt.optimizer.is_clean());
    assert_eq!(opt2.param_groups()[0].learning_rate(), 0.01);
    opt.step(&loss_of(&ab.a, &ab.b, &x).backward().unwrap()).unwrap();
    opt2.step(&loss_of(&ba.a, &ba.b, &x).backward().unwrap()).unwrap();
    for (k, t) in ab.state_dict().iter() {
        assert_eq!(bits(t), bits(ba.state_dict().get(k).unwrap()), "{k}");
    }

    // A model checkpoint is not a training checkpoint; a mismatching optimizer changes neither.
    ab.save_safetensors(tmp("model_only.safetensors")).unwrap();
    let e = load_training_checkpoint(tmp("model_only.safetensors"), &ba, &mut opt2, &LoadOptions::default());
    assert!(matches!(e, Err(Error::Format { .. })));
    let other = AB { a: Linear::new(3, 4).unwrap(), b: Linear::new(4, 2).unwrap() };
    let mut partial = Adam::new(other.a.parameters(), AdamConfig::new(0.01)).unwrap();
    let before = bits(&other.a.weight.data());
    // The optimizer's parameters exist in the model, but the checkpoint has b's state too.
    assert!(load_training_checkpoint(&path, &other, &mut partial, &LoadOptions::default()).is_err());
    assert_eq!(bits(&other.a.weight.data()), before, "the model was restored");
}
