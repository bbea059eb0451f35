//! Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW steps against updates
//! computed by hand with scalar formulas; frozen parameters and buffers never move (weight
//! decay on); parameter groups; resuming from a serialized state gives the same trajectory.
//! The fused in-place kernels (the default) against the tensor-op reference (`fused(false)`)
//! for every option, f32 and f64; in place in a training loop; copy-on-write for shared and
//! memory-mapped storages; state saved by one path resumes on the other.
mod optim_cases;

use stategrad::autograd::{DType, Device, Grads, Storage, Tensor};
use stategrad::nn::optim::{Adam, AdamConfig, AdamW, Optimizer, OptimizerState, ParamGroup, Sgd, SgdConfig};
use stategrad::nn::{Buffer, Forward, Linear, Module, Param, StateDict};

const C: [f64; 2] = [0.5, -3.0];

fn param(v: &[f64]) -> Param {
    Param::new(Tensor::from_slice(v, &[v.len()], Device::Cpu).unwrap())
}

/// Gradients of `sum(C * p)`: the constant `C`.
fn linear_grads(p: &Param) -> Grads {
    let c = Tensor::from_slice(&C, &[2], Device::Cpu).unwrap();
    p.tensor().unwrap().mul(&c).unwrap().sum_all().unwrap().backward().unwrap()
}

fn values(p: &Param) -> Vec<f64> {
    p.data().to_vec::<f64>().unwrap()
}

#[track_caller]
fn assert_near(got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "got {got:?}, want {want:?}");
    }
}

#[test]
fn sgd_momentum_nesterov_and_weight_decay_match_hand_computation() {
    for nesterov in [false, true] {
        let p = param(&[1.0, -2.0]);
        let cfg = SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov, weight_decay: 0.01 };
        let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
        let (mut x, mut buf) = ([1.0f64, -2.0], [0.0f64; 2]);
        for step in 0..3 {
            opt.step(&linear_grads(&p)).unwrap();
            for i in 0..2 {
                let d = C[i] + 0.01 * x[i];
                buf[i] = if step == 0 { d } else { 0.9 * buf[i] + d };
                let dir = if nesterov { d + 0.9 * buf[i] } else { buf[i] };
                x[i] -= 0.1 * dir;
            }
            assert_near(&values(&p), &x);
        }
    }
}

fn adam_by_hand(decoupled: bool, steps: usize) -> [f64; 2] {
    let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
    let (mut x, mut m, mut v) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
    for t in 1..=steps as i32 {
        for i in 0..2 {
            let mut g = C[i];
            if decoupled {
                x[i] *= 1.0 - lr * wd;
            } else {
                g += wd * x[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            x[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
        }
    }
    x
}

#[test]
fn adam_and_adamw_match_hand_computation() {
    let cfg = AdamConfig { lr: 0.01, weight_decay: 0.1, ..Default::default() };
    let p = param(&[1.0, -2.0]);
    let mut adam = Adam::new(vec![p.clone()], cfg.clone()).unwrap();
    let q = param(&[1.0, -2.0]);
    let mut adamw = AdamW::new(vec![q.clone()], cfg).unwrap();
    for steps in 1..=3 {
        adam.step(&linear_grads(&p)).unwrap();
        adamw.step(&linear_grads(&q)).unwrap();
        assert_near(&values(&p), &adam_by_hand(false, steps));
        assert_near(&values(&q), &adam_by_hand(true, steps));
    }
    assert_ne!(values(&p), values(&q));
}

#[derive(Module)]
struct WithFrozen {
    fc: Linear,
    frozen: Linear,
    stats: Buffer,
}

#[test]
fn frozen_params_and_buffers_are_bit_identical_after_ten_steps_with_weight_decay() {
    let m = WithFrozen {
        fc: Linear::new(3, 3).unwrap(),
        frozen: Linear::new(3, 3).unwrap(),
        stats: Buffer::new(Tensor::ones(&[3], DType::F32, Device::Cpu).unwrap()),
    };
    m.frozen.requires_grad(false);
    let frozen_before: Vec<Vec<u32>> = m
        .frozen
        .parameters()
        .iter()
        .map(|p| p.data().to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    let fc_before = m.fc.weight.data().to_vec::<f32>().unwrap();
    let x = Tensor::ones(&[2, 3], DType::F32, Device::Cpu).unwrap();
    let optimizers: Vec<Box<dyn Optimizer>> = vec![
        Box::new(
            Sgd::new(m.parameters(), SgdConfig { weight_decay: 0.5, momentum: 0.9, ..SgdConfig::new(0.1) }).unwrap(),
        ),
        Box::new(Adam::new(m.parameters(), AdamConfig { weight_decay: 0.5, ..AdamConfig::new(0.1) }).unwrap()),
        Box::new(AdamW::new(m.parameters(), AdamConfig { weight_decay: 0.5, ..AdamConfig::new(0.1) }).unwrap()),
    ];
    for mut opt in optimizers {
        for _ in 0..10 {
            let y = m.frozen.forward(&m.fc.forward(&x).unwrap()).unwrap();
            let loss = y.mul(&m.stats.tensor()).unwrap().square().unwrap().mean_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
    }
    let frozen_after: Vec<Vec<u32>> = m
        .frozen
        .parameters()
        .iter()
        .map(|p| p.data().to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    assert_eq!(frozen_before, frozen_after);
    assert_eq!(m.stats.tensor().to_vec::<f32>().unwrap(), vec![1.0; 3]);
    assert_ne!(m.fc.weight.data().to_vec::<f32>().unwrap(), fc_before);
}

#[test]
fn param_groups_use_their_own_lr_and_weight_decay() {
    let (a, b) = (param(&[1.0, -2.0]), param(&[1.0, -2.0]));
    let groups = vec![ParamGroup::new(vec![a.clone()]), ParamGroup::new(vec![b.clone()]).lr(1.0).weight_decay(0.5)];
    let mut opt = Sgd::with_groups(groups, SgdConfig::new(0.1)).unwrap();
    let mut grads = linear_grads(&a);
    grads.insert(b.id(), grads.get_id(a.id()).unwrap().clone());
    opt.step(&grads).unwrap();
    assert_near(&values(&a), &[1.0 - 0.1 * C[0], -2.0 - 0.1 * C[1]]);
    assert_near(&values(&b), &[1.0 - (C[0] + 0.5), -2.0 - (C[1] - 1.0)]);
    assert_eq!(opt.param_groups()[1].lr, Some(1.0));
    assert!(Sgd::new(vec![a.clone(), a], SgdConfig::new(0.1)).is_err(), "a parameter listed twice");
}

fn train(model: &Linear, opt: &mut dyn Optimizer, steps: usize) {
    let x = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 1.5, 0.0, -0.5], &[2, 3], Device::Cpu).unwrap();
    for _ in 0..steps {
        let loss = model.forward(&x).unwrap().sub_scalar(1.0).unwrap().square().unwrap().mean_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
}

#[test]
fn resuming_from_serialized_state_gives_the_same_trajectory() {
    let cfg = AdamConfig { weight_decay: 0.01, ..AdamConfig::new(0.05) };
    let straight = Linear::new(3, 2).unwrap();
    let start = straight.state_dict();
    let mut opt = Adam::new(straight.parameters(), cfg.clone()).unwrap();
    train(&straight, &mut opt, 6);

    let first = Linear::new(3, 2).unwrap();
    first.load_state_dict(&start, true).unwrap();
    let mut opt1 = Adam::new(first.parameters(), cfg.clone()).unwrap();
    train(&first, &mut opt1, 3);
    let model_json = serde_json::to_string(&first.state_dict()).unwrap();
    let opt_json = serde_json::to_string(&opt1.state_dict().unwrap()).unwrap();

    let resumed = Linear::new(3, 2).unwrap();
    resumed.load_state_dict(&serde_json::from_str::<StateDict>(&model_json).unwrap(), true).unwrap();
    let mut opt2 = Adam::new(resumed.parameters(), cfg).unwrap();
    // A state of the wrong kind or shape is refused and changes nothing.
    let mut wrong: OptimizerState = serde_json::from_str(&opt_json).unwrap();
    wrong.kind = "sgd".into();
    assert!(opt2.load_state_dict(&wrong).is_err());
    opt2.load_state_dict(&serde_json::from_str(&opt_json).unwrap()).unwrap();
    train(&resumed, &mut opt2, 3);

    for (a, b) in straight.parameters().iter().zip(resumed.parameters()) {
        assert_eq!(a.data().to_vec::<f32>().unwrap(), b.data().to_vec::<f32>().unwrap());
    }
}

#[test]
fn fused_steps_equal_the_tensor_op_reference_for_every_option_in_f32_and_f64() {
    // The fused kernel does the reference's arithmetic op by op (the same scalars, rounded to
    // the dtype the same way), so on the CPU the two agree to rounding (today: bit for bit).
    for config in optim_cases::configs() {
        for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
            let fused = optim_cases::trajectory(&config, Device::Cpu, dtype, true).unwrap();
            let reference = optim_cases::trajectory(&config, Device::Cpu, dtype, false).unwrap();
            optim_cases::assert_close(&format!("{} {dtype}", config.name), &fused, &reference, tol);
            // and the parameters really moved
            let start = optim_cases::params(Device::Cpu, dtype).unwrap();
            assert_ne!(fused[1].1, start[1].data().to_f64_vec().unwrap(), "{}", config.name);
        }
    }
}

fn data_ptr(t: &Tensor) -> usize {
    match t.storage() {
        Storage::Cpu(s) => s.as_le_bytes().as_ptr() as usize,
        _ => unreachable!("CPU tensors here"),
    }
}

/// The storages an optimizer writes: every parameter's, then every state tensor's.
fn written(model: &dyn Module, opt: &dyn Optimizer) -> Vec<usize> {
    let mut out: Vec<usize> = model.parameters().iter().map(|p| data_ptr(&p.data())).collect();
    for slots in opt.param_slots().unwrap().iter().flatten() {
        out.extend(slots.tensors.values().map(data_ptr));
    }
    out
}

#[test]
fn fused_steps_update_parameters_and_state_in_place_in_a_training_loop() {
    let model = Linear::new(300, 200).unwrap(); // 60,200 parameters: the parallel split runs
    let optimizers: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::new(model.parameters(), SgdConfig { momentum: 0.9, ..SgdConfig::new(0.01) }).unwrap()),
        Box::new(AdamW::new(model.parameters(), AdamConfig { weight_decay: 0.1, ..AdamConfig::new(0.01) }).unwrap()),
    ];
    let x = Tensor::rand(&[8, 300], -1.0, 1.0, DType::F32, Device::Cpu).unwrap();
    for mut opt in optimizers {
        let loss = || model.forward(&x).unwrap().square().unwrap().mean_all().unwrap();
        opt.step(&loss().backward().unwrap()).unwrap(); // creates the state
        let before = written(&model, &*opt);
        let values = model.weight.data().to_vec::<f32>().unwrap();
        for _ in 0..3 {
            let loss = loss(); // alive across the step, as in a training loop printing it
            opt.step(&loss.backward().unwrap()).unwrap();
            assert!(loss.item().unwrap().is_finite());
        }
        assert_eq!(written(&model, &*opt), before, "the same allocations after three more steps");
        assert_ne!(model.weight.data().to_vec::<f32>().unwrap(), values);
    }
}

#[test]
fn tensors_sharing_a_storage_across_a_fused_step_keep_their_values() {
    let p = param(&[1.0, -2.0]);
    let mut opt = Adam::new(vec![p.clone()], AdamConfig::new(0.1)).unwrap();
    opt.step(&linear_grads(&p)).unwrap();
    let data = p.data();
    let held = data.to_vec::<f64>().unwrap();
    let view = data.narrow(0, 1, 1).unwrap();
    let snapshot = opt.param_slots().unwrap()[0][0].tensors["exp_avg"].clone();
    let exp_avg = snapshot.to_vec::<f64>().unwrap();
    opt.step(&linear_grads(&p)).unwrap();
    assert_eq!(data.to_vec::<f64>().unwrap(), held, "a handle taken before the step");
    assert_eq!(view.to_vec::<f64>().unwrap(), held[1..].to_vec(), "a view taken before the step");
    assert_eq!(snapshot.to_vec::<f64>().unwrap(), exp_avg, "a state tensor taken before the step");
    assert_ne!(values(&p), held, "the parameter itself moved");
    let now = opt.param_slots().unwrap()[0][0].tensors["exp_avg"].to_vec::<f64>().unwrap();
    assert_ne!(now, exp_avg, "the state itself moved");
}

#[test]
fn a_memory_mapped_parameter_is_copied_at_its_first_fused_step_and_the_file_is_untouched() {
    let path = std::env::temp_dir().join(format!("stategrad-optim-mapped-{}.safetensors", std::process::id()));
    let model = Linear::new(64, 32).unwrap();
    model.save_safetensors(&path).unwrap();
    let file = std::fs::read(&path).unwrap();
    let loaded = Linear::new(64, 32).unwrap();
    loaded.load_safetensors(&path, true).unwrap();
    let mapped = |m: &Linear| matches!(m.weight.data().storage(), Storage::Cpu(s) if s.is_borrowed());
    assert!(mapped(&loaded), "loads borrow the mapping");
    let mut opt = Sgd::new(loaded.parameters(), SgdConfig::new(0.5)).unwrap();
    let x = Tensor::ones(&[2, 64], DType::F32, Device::Cpu).unwrap();
    opt.step(&loaded.forward(&x).unwrap().sum_all().unwrap().backward().unwrap()).unwrap();
    assert!(!mapped(&loaded), "the first update owns its buffer");
    assert_ne!(loaded.weight.data().to_vec::<f32>().unwrap(), model.weight.data().to_vec::<f32>().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), file, "the file is never written");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn state_saved_by_either_path_resumes_on_the_other() {
    let cfg = AdamConfig { weight_decay: 0.01, ..AdamConfig::new(0.05) };
    for (first_fused, then_fused) in [(false, true), (true, false)] {
        let straight = Linear::new(3, 2).unwrap();
        let start = straight.state_dict();
        let mut opt = Adam::new(straight.parameters(), cfg.clone()).unwrap().fused(false);
        train(&straight, &mut opt, 6);

        let first = Linear::new(3, 2).unwrap();
        first.load_state_dict(&start, true).unwrap();
        let mut opt1 = Adam::new(first.parameters(), cfg.clone()).unwrap().fused(first_fused);
        train(&first, &mut opt1, 3);
        let saved = serde_json::to_string(&opt1.state_dict().unwrap()).unwrap();
        let mut opt2 = Adam::new(first.parameters(), cfg.clone()).unwrap().fused(then_fused);
        opt2.load_state_dict(&serde_json::from_str(&saved).unwrap()).unwrap();
        assert_eq!(opt2.state_dict().unwrap(), opt1.state_dict().unwrap());
        train(&first, &mut opt2, 3);
        for (a, b) in straight.parameters().iter().zip(first.parameters()) {
            let (a, b) = (a.data().to_vec::<f32>().unwrap(), b.data().to_vec::<f32>().unwrap());
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs())), "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn a_gradient_of_the_wrong_shape_is_an_error_naming_the_op() {
    // backward never yields such a gradient; a hand-built Grads can
    for fused in [true, false] {
        let p = param(&[1.0, -2.0]);
        let mut grads = Grads::default();
        grads.insert(p.id(), Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu).unwrap());
        let mut opt = Sgd::new(vec![p.clone()], SgdConfig::new(0.1)).unwrap().fused(fused);
        let err = opt.step(&grads).unwrap_err();
        if fused {
            assert!(err.to_string().contains("optim_step"), "{err}");
        }
        assert!(err.to_string().contains("[3]") && err.to_string().contains("[2]"), "{err}");
        assert_eq!(values(&p), vec![1.0, -2.0], "fused={fused}: nothing changed");
    }
}
