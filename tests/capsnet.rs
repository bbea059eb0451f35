//! CapsNet end to end, on the reduced model (`CapsNetConfig::small`) and the bundled MNIST:
//! training learns, the two routing modes agree forward and differ backward, routing
//! coefficients are distributions over the digit capsules and never state, checkpoints
//! round-trip bit for bit, resuming equals not stopping, and DigitCaps passes gradcheck in
//! both modes. The example's data and training modules are compiled in here unchanged.
#[path = "../examples/capsnet/data.rs"]
mod data;
#[path = "../examples/capsnet/train.rs"]
mod train;

use std::path::{Path, PathBuf};

use data::{parse_idx, Mnist, Split};
use stategrad::autograd::{gradcheck, manual_seed, DType, Device, Result, Tensor};
use stategrad::nn::capsule::{
    capsule_predictions, dynamic_routing, squash, CapsNet, CapsNetConfig, RoutingMode, SQUASH_EPS,
};
use stategrad::nn::Module;
use train::{evaluate, load_model_file, EpochRecord, TrainConfig, Trainer};

fn mnist(split: Split) -> Mnist {
    Mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"), split).unwrap()
}

fn small(seed: u64, mode: RoutingMode) -> CapsNet {
    small_with(seed, mode, CapsNetConfig::small().w_std)
}

/// With the default `w_std` the untrained predictions are tiny and routing starts out
/// almost uniform; a larger `w_std` makes the routing loop matter from the first step.
fn small_with(seed: u64, mode: RoutingMode, w_std: f64) -> CapsNet {
    manual_seed(seed);
    CapsNet::new(CapsNetConfig { routing: mode, w_std, ..CapsNetConfig::small() }).unwrap()
}

fn config(batch_size: usize) -> TrainConfig {
    TrainConfig { batch_size, lr: 2e-3, lr_decay: 0.9, shift: 2, seed: 7, device: Device::Cpu }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stategrad-capsnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn params(m: &CapsNet) -> Vec<(String, Vec<f32>)> {
    m.named_parameters().into_iter().map(|(n, p)| (n, p.data().to_vec::<f32>().unwrap())).collect()
}

#[test]
fn a_few_hundred_steps_reduce_the_loss_and_beat_chance() {
    let train = mnist(Split::Train).take(1600);
    let test = mnist(Split::Test).take(500);
    let mut t = Trainer::new(small(1, RoutingMode::Detached), config(16)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..2 {
        t.train_epoch(&train, None, |_, l| losses.push(l)).unwrap();
        t.history.push(EpochRecord { train_loss: 0.0, test_acc: f64::NAN, seconds: 0.0 });
    }
    assert_eq!(losses.len(), 200);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..20]), mean(&losses[180..]));
    assert!(last < 0.5 * first, "loss {first:.4} -> {last:.4}");
    let (acc, _) = evaluate(&t.model, &test, 100, Device::Cpu).unwrap();
    assert!(acc > 0.6, "test accuracy {acc} after 200 steps (chance: 0.1)");
}

#[test]
fn routing_modes_agree_forward_and_differ_in_conv_gradients() {
    let det = small_with(2, RoutingMode::Detached, 0.3);
    let mut diff = det.clone(); // shares the parameters
    diff.set_routing(RoutingMode::Differentiable);
    let batch = mnist(Split::Train).batch(&[0, 1, 2, 3], None, Device::Cpu).unwrap();
    let (ld, od) = det.losses(&batch.x, &batch.y).unwrap();
    let (lf, of) = diff.losses(&batch.x, &batch.y).unwrap();
    assert_eq!(od.v.to_vec::<f32>().unwrap(), of.v.to_vec::<f32>().unwrap(), "forward outputs differ");
    assert_eq!(ld.total.item().unwrap(), lf.total.item().unwrap());
    let (gd, gf) = (ld.total.backward().unwrap(), lf.total.backward().unwrap());
    for p in [&det.conv1.weight, &det.primary.conv.weight, &det.digit.weight] {
        let a = p.grad(&gd).unwrap().to_vec::<f32>().unwrap();
        let b = p.grad(&gf).unwrap().to_vec::<f32>().unwrap();
        let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
        let gap = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(gap > 1e-3 * scale, "gradients of {:?} agree ({gap} vs scale {scale})", p.shape());
    }
    // the decoder does not see the routing loop: its gradients agree
    let (a, b) = (det.decoder.fc3.weight.grad(&gd).unwrap(), det.decoder.fc3.weight.grad(&gf).unwrap());
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
}

#[test]
fn coefficients_sum_to_one_over_digit_capsules_and_are_not_state() {
    let m = small_with(3, RoutingMode::Differentiable, 0.3);
    let batch = mnist(Split::Test).batch(&[5, 6, 7], None, Device::Cpu).unwrap();
    let out = m.forward_full(&batch.x, None).unwrap();
    let caps = m.config.primary_caps();
    assert_eq!(out.c.shape(), &[3, 10, caps]);
    for s in out.c.sum(1, false).unwrap().to_vec::<f32>().unwrap() {
        assert!((s - 1.0).abs() < 1e-5, "coefficients sum to {s}");
    }
    let c = out.c.to_vec::<f32>().unwrap();
    assert!(c.iter().any(|&x| (x - 0.1).abs() > 1e-4), "routing left the coefficients uniform");
    let keys: Vec<String> = m.state_dict().keys().map(String::from).collect();
    let expected = [
        "conv1.weight",
        "conv1.bias",
        "primary.conv.weight",
        "primary.conv.bias",
        "digit.weight",
        "decoder.fc1.weight",
        "decoder.fc1.bias",
        "decoder.fc2.weight",
        "decoder.fc2.bias",
        "decoder.fc3.weight",
        "decoder.fc3.bias",
    ];
    assert_eq!(keys, expected);
    assert!(m.named_buffers().is_empty());
}

#[test]
fn checkpoint_save_load_evaluate_is_bit_identical() {
    let train = mnist(Split::Train).take(64);
    let test = mnist(Split::Test).take(200);
    let mut t = Trainer::new(small(4, RoutingMode::Detached), config(16)).unwrap();
    t.train_epoch(&train, None, |_, _| {}).unwrap();
    let path = tmp("roundtrip.safetensors");
    t.save(&path).unwrap();
    let loaded = small(99, RoutingMode::Detached);
    load_model_file(&loaded, &path).unwrap();
    let batch = test.batch(&(0..50).collect::<Vec<_>>(), None, Device::Cpu).unwrap();
    let (a, b) = (t.model.forward_full(&batch.x, None).unwrap(), loaded.forward_full(&batch.x, None).unwrap());
    assert_eq!(a.lengths.to_vec::<f32>().unwrap(), b.lengths.to_vec::<f32>().unwrap());
    let (acc_a, pa) = evaluate(&t.model, &test, 100, Device::Cpu).unwrap();
    let (acc_b, pb) = evaluate(&loaded, &test, 100, Device::Cpu).unwrap();
    assert_eq!((acc_a, pa), (acc_b, pb));
    // a damaged file is an error naming it, not a panic
    let bytes = std::fs::read(&path).unwrap();
    let bad = tmp("truncated.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_model_file(&loaded, &bad).unwrap_err().to_string();
    assert!(e.contains("truncated.safetensors"), "{e}");
}

#[test]
fn resume_gives_the_parameters_of_an_uninterrupted_run() {
    let train = mnist(Split::Train).take(96);
    let run = |t: &mut Trainer| {
        t.train_epoch(&train, None, |_, _| {}).unwrap();
        t.history.push(EpochRecord { train_loss: 0.0, test_acc: f64::NAN, seconds: 0.0 });
    };
    let mut straight = Trainer::new(small(5, RoutingMode::Differentiable), config(16)).unwrap();
    run(&mut straight);
    run(&mut straight);

    let mut first = Trainer::new(small(5, RoutingMode::Differentiable), config(16)).unwrap();
    run(&mut first);
    let path = tmp("resume.safetensors");
    first.save(&path).unwrap();
    let mut resumed = Trainer::new(small(6, RoutingMode::Differentiable), config(16)).unwrap();
    resumed.restore(&path).unwrap();
    assert_eq!(resumed.epoch(), 1);
    run(&mut resumed);
    assert_eq!(params(&straight.model), params(&resumed.model));
    // and the check can fail: a run that skipped the restore differs
    let mut fresh = Trainer::new(small(6, RoutingMode::Differentiable), config(16)).unwrap();
    run(&mut fresh);
    assert_ne!(params(&straight.model), params(&fresh.model));
}

/// Tiny f64 DigitCaps inputs: `u [2, 3 caps, 2]`, `W [3, 2 caps, 3, 2]`.
fn tiny() -> [Tensor; 2] {
    let u = Tensor::randn(&[2, 3, 2], 0.0, 1.0, DType::F64, Device::Cpu).unwrap();
    let w = Tensor::randn(&[3, 2, 3, 2], 0.0, 1.0, DType::F64, Device::Cpu).unwrap();
    [u.requires_grad(true).unwrap(), w.requires_grad(true).unwrap()]
}

#[test]
fn gradcheck_digit_capsules_differentiable() {
    manual_seed(11);
    let inputs = tiny();
    let f = |t: &[Tensor]| Ok(dynamic_routing(&capsule_predictions(&t[0], &t[1])?, 3, RoutingMode::Differentiable)?.v);
    gradcheck(f, &inputs).unwrap();
}

#[test]
fn gradcheck_digit_capsules_detached() {
    manual_seed(12);
    let inputs = tiny();
    let routed = |t: &[Tensor]| dynamic_routing(&capsule_predictions(&t[0], &t[1])?, 3, RoutingMode::Detached);
    // Detached routing's gradient is that of v = squash(sum_i c u_hat) with c held at its
    // value: check that function numerically, then that the layer's gradient is exactly it.
    let c = routed(&inputs).unwrap().c.detach().unsqueeze(2).unwrap(); // [b, j, 1, i]
    let frozen = |t: &[Tensor]| -> Result<Tensor> {
        squash(&c.matmul(&capsule_predictions(&t[0], &t[1])?)?, -1, SQUASH_EPS)?.squeeze(2)
    };
    gradcheck(frozen, &inputs).unwrap();
    let weights = Tensor::randn(&[2, 2, 3], 0.0, 1.0, DType::F64, Device::Cpu).unwrap();
    let layer = routed(&inputs).unwrap().v.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
    let reference = frozen(&inputs).unwrap().mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
    for x in &inputs {
        let (a, b) =
            (layer.get(x).unwrap().to_vec::<f64>().unwrap(), reference.get(x).unwrap().to_vec::<f64>().unwrap());
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-12), "{a:?} vs {b:?}");
    }
    // ... which is not the gradient of the full routing function
    assert!(gradcheck(|t: &[Tensor]| Ok(routed(t)?.v), &inputs).is_err());
}

#[test]
fn idx_files_load_and_bad_files_are_errors() {
    let train = mnist(Split::Train);
    assert_eq!((train.len(), train.rows, train.cols), (8000, 28, 28));
    assert_eq!(mnist(Split::Test).len(), 2000);
    let p = Path::new("x.idx");
    let mut ok = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
    ok.extend([1, 2, 3, 4]);
    let (dims, pixels) = parse_idx(&ok, p, 2051).unwrap();
    assert_eq!((dims, pixels), (vec![2, 1, 2], &[1u8, 2, 3, 4][..]));
    let err = |bytes: &[u8], magic| parse_idx(bytes, p, magic).unwrap_err().to_string();
    assert!(err(&ok, 2049).contains("wrong magic"));
    assert!(err(&ok[..18], 2051).contains("truncated"));
    assert!(err(&ok[..6], 2051).contains("truncated"));
    let labels = [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
    let e = Mnist::from_idx(&ok, p, &labels, Path::new("l.idx")).unwrap_err().to_string();
    assert!(e.contains("3 labels for 2 images"), "{e}");
    let e = Mnist::load(Path::new("no/such/dir"), Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
}
