//! The module-state API beyond the basics, by behaviour: typed access by path and in-place
//! replacement of submodules, tensor and module hooks, `functional_call`, `freeze`, EMA
//! copies and gradient clipping.
use std::sync::{Arc, Mutex};

use stategrad::autograd::{grad, BackwardOptions, Conv2dParams, DType, Device, Error, Grads, Tensor};
use stategrad::nn::functional::mse;
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{
    clip_grad_norm, clip_grad_value, functional_call, BatchNorm1d, BatchNorm2d, Buffer, Conv2d, Dropout, Ema,
    EmaConfig, Flatten, FloatBuffers, Forward, FrozenBatchNorm2d, Hooked, LayerSlot, Linear, Module, Param, Relu,
    Sequential, Warmup,
};

const CPU: Device = Device::Cpu;

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Every parameter's and buffer's data by name, bit for bit.
fn snapshot(m: &impl Module) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> =
        m.named_parameters().into_iter().map(|(n, p)| (n, bits(&p.data()))).collect();
    out.extend(m.named_buffers().into_iter().map(|(n, b)| (n, bits(&b.tensor()))));
    out
}

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, CPU).unwrap()
}

// ---------------------------------------------------------------- typed access, replacement

#[derive(Module)]
struct ConvNet {
    features: Sequential,
    extra: LayerSlot,
    head: Linear,
}

impl ConvNet {
    fn new() -> ConvNet {
        let conv = |i, o| Conv2d::new(i, o, (3, 3), Conv2dParams { padding: (1, 1), ..Default::default() }).unwrap();
        ConvNet {
            features: Sequential::new()
                .push(conv(2, 4))
                .push(BatchNorm2d::new(4).unwrap())
                .push(Relu)
                .push(conv(4, 3))
                .push(BatchNorm2d::new(3).unwrap())
                .push(Relu),
            extra: LayerSlot::new(BatchNorm2d::new(3).unwrap()),
            head: Linear::new(3 * 4 * 4, 2).unwrap(),
        }
    }
}

impl Forward for ConvNet {
    fn forward(&self, x: &Tensor) -> stategrad::autograd::Result<Tensor> {
        let y = self.extra.forward(&self.features.forward(x)?)?;
        self.head.forward(&Flatten.forward(&y)?)
    }
}

#[test]
fn replacing_every_batchnorm2d_by_frozen_batchnorm_keeps_the_eval_output_bit_identical() {
    let mut net = ConvNet::new();
    let x = Tensor::randn(&[5, 2, 4, 4], 0.5, 2.0, DType::F32, CPU).unwrap();
    // A few training forwards so the running statistics are not the identity.
    for _ in 0..3 {
        net.forward(&x).unwrap();
    }
    net.eval();
    let before = net.forward(&x).unwrap();
    let bn_params = net.parameters().len();
    let keys_before: Vec<String> = net.state_dict().keys().map(String::from).collect();

    let n = net.replace_modules::<BatchNorm2d>(|_, bn| Ok(Box::new(FrozenBatchNorm2d::from_batch_norm(bn)?))).unwrap();
    assert_eq!(n, 3);
    assert_eq!(net.for_each_module::<BatchNorm2d>(|_, _| {}), 0);
    assert_eq!(net.for_each_module::<FrozenBatchNorm2d>(|_, _| {}), 3);
    let after = net.forward(&x).unwrap();
    assert_eq!(bits(&after), bits(&before), "eval output must be bit-identical");
    // Two affine parameters per BatchNorm left parameters(); no BN parameter remains.
    assert_eq!(net.parameters().len(), bn_params - 6);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias", "head.weight", "head.bias"]
    );
    // The weights and biases are still saved, as buffers, under the same names (minus the counters).
    let keys_after: Vec<String> = net.state_dict().keys().map(String::from).collect();
    let expected: Vec<String> = keys_before.into_iter().filter(|k| !k.ends_with("num_batches_tracked")).collect();
    let mut sorted_after = keys_after.clone();
    sorted_after.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(sorted_after, sorted_expected);
    assert_eq!(net.get_buffer("features.1.weight").unwrap().shape(), vec![4]);
}

#[derive(Module)]
struct Typed {
    bn: BatchNorm2d,
    slot: LayerSlot,
}

#[test]
fn replacing_a_module_held_in_a_field_of_its_own_type_fails_naming_it_and_replaces_nothing() {
    let mut m = Typed { bn: BatchNorm2d::new(2).unwrap(), slot: LayerSlot::new(BatchNorm2d::new(2).unwrap()) };
    let mut calls = 0;
    let err = m
        .replace_modules::<BatchNorm2d>(|_, bn| {
            calls += 1;
            Ok(Box::new(FrozenBatchNorm2d::from_batch_norm(bn)?))
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::State { .. }), "{msg}");
    assert!(msg.contains("[\"bn\"]") && msg.contains("LayerSlot"), "{msg}");
    assert!(m.slot.get::<BatchNorm2d>().is_some(), "the slot must not have been replaced");
    assert_eq!(m.parameters().len(), 4);
    let _ = calls;
    // A failing replacement function changes nothing either.
    let mut net = ConvNet::new();
    let mut seen = 0;
    let err = net
        .replace_modules::<BatchNorm2d>(|path, bn| {
            seen += 1;
            if path == "extra" {
                return Err(Error::argument("test", "refused"));
            }
            Ok(Box::new(FrozenBatchNorm2d::from_batch_norm(bn)?))
        })
        .unwrap_err();
    assert!(err.to_string().contains("refused"));
    assert_eq!(net.for_each_module::<BatchNorm2d>(|_, _| {}), 3, "all or nothing");
}

#[derive(Module)]
struct Nested {
    blocks: LayerSlot,
}

#[test]
fn a_replaced_module_is_not_searched_further() {
    let inner = Sequential::new().push(Linear::new(2, 2).unwrap());
    let mut m = Nested { blocks: LayerSlot::new(Sequential::new().push(inner).push(Relu)) };
    assert_eq!(m.for_each_module::<Sequential>(|_, _| {}), 2);
    let mut seen = Vec::new();
    let n = m
        .replace_modules::<Sequential>(|path, _| {
            seen.push(path.to_string());
            Ok(Box::new(Relu))
        })
        .unwrap();
    assert_eq!((n, seen), (1, vec!["blocks".to_string()]));
    assert!(m.blocks.get::<Relu>().is_some());
    assert!(m.parameters().is_empty());
}

#[test]
fn lookups_by_dotted_path_return_the_models_handles_and_suggest_the_closest_name() {
    let net = ConvNet::new();
    let w = net.get_parameter("features.0.weight").unwrap();
    assert!(w.ptr_eq(&net.named_parameters().iter().find(|(n, _)| n == "features.0.weight").unwrap().1));
    let rm = net.get_buffer("features.1.running_mean").unwrap();
    rm.set(Tensor::full(&[4], 3.0, DType::F32, CPU).unwrap()).unwrap();
    assert_eq!(net.state_dict().get("features.1.running_mean").unwrap().to_vec::<f32>().unwrap(), vec![3.0; 4]);

    let err = net.get_parameter("features.0.wieght").unwrap_err();
    assert!(matches!(err, Error::Argument { .. }));
    assert!(err.to_string().contains("did you mean `features.0.weight`?"), "{err}");
    let err = net.get_parameter("features.1.running_mean").unwrap_err().to_string();
    assert!(err.contains("is a buffer, not a parameter"), "{err}");
    let err = net.get_buffer("head.weight").unwrap_err().to_string();
    assert!(err.contains("is a param, not a buffer"), "{err}");

    // Submodules: a clone shares the handles, so eval() on it reaches the model.
    let bn: BatchNorm2d = net.get_submodule("features.4").unwrap();
    bn.eval();
    net.with_submodule("features.4", |m| assert!(!m.is_training())).unwrap();
    assert!(net.with_submodule("features.1", |m| m.is_training()).unwrap());
    assert_eq!(net.with_submodule("extra", |m| m.type_name()).unwrap(), "BatchNorm");
    let err = net.get_submodule::<Linear>("features.4").unwrap_err().to_string();
    assert!(err.contains("is a BatchNorm, not a Linear"), "{err}");
    let err = net.with_submodule("featurs.4", |_| ()).unwrap_err().to_string();
    assert!(err.contains("did you mean `features.4`?"), "{err}");
}

#[test]
fn typed_mutable_walk_edits_every_module_of_a_type_and_apply_visits_children_first() {
    let mut net = ConvNet::new();
    let mut paths = Vec::new();
    let n = net
        .for_each_module_mut::<BatchNorm2d>(|path, bn| {
            paths.push(path.to_string());
            bn.momentum = 0.5;
            bn.running_var.set(Tensor::full(&[bn.running_var.shape()[0]], 2.0, DType::F32, CPU)?)
        })
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(paths, ["features.1", "features.4", "extra"]);
    net.for_each_module::<BatchNorm2d>(|_, bn| assert_eq!(bn.momentum, 0.5));
    assert!(net.get_buffer("extra.running_var").unwrap().tensor().to_vec::<f32>().unwrap().iter().all(|&v| v == 2.0));
    net.with_submodule_mut::<Linear, _>("head", |l| l.bias = None).unwrap();
    assert!(net.get_parameter("head.bias").is_err());
    assert!(net.with_submodule_mut::<Linear, _>("extra", |_| ()).is_err());

    let mut order = Vec::new();
    net.apply(|path, m| order.push((path.to_string(), m.type_name())));
    assert_eq!(order.last().unwrap(), &(String::new(), "ConvNet"));
    let pos = |p: &str| order.iter().position(|(q, _)| q == p).unwrap();
    assert!(pos("features.0") < pos("features"), "children before their parent");
    assert_eq!(order.len(), net.named_modules().len());
    // apply re-initialises by type, through the handles.
    net.apply(|_, m| {
        if let Some(l) = m.as_any().and_then(|a| a.downcast_ref::<Linear>()) {
            l.weight.set(l.weight.data().zeros_like().unwrap()).unwrap();
        }
    });
    assert!(net.head.weight.data().to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
}

#[derive(Module)]
struct Shared {
    a: Arc<BatchNorm1d>,
    b: Arc<BatchNorm1d>,
}

#[test]
fn a_module_out_of_mutable_reach_is_an_error_not_a_silent_skip() {
    let bn = Arc::new(BatchNorm1d::new(2).unwrap());
    let mut m = Shared { a: bn.clone(), b: bn };
    let err = m.for_each_module_mut::<BatchNorm1d>(|_, _| Ok(())).unwrap_err().to_string();
    assert!(err.contains("[\"a\", \"b\"]") && err.contains("cannot be reached mutably"), "{err}");
    // With one handle each, both are reached.
    let mut m = Shared { a: Arc::new(BatchNorm1d::new(2).unwrap()), b: Arc::new(BatchNorm1d::new(2).unwrap()) };
    assert_eq!(m.for_each_module_mut::<BatchNorm1d>(|_, _| Ok(())).unwrap(), 2);
}

// ---------------------------------------------------------------- hooks

#[test]
fn a_tensor_hook_that_doubles_a_gradient_doubles_exactly_that_leaf_and_removal_restores_it() {
    let a = t64(&[1.0, 2.0], &[2]).requires_grad(true).unwrap();
    let b = t64(&[3.0, -1.0], &[2]).requires_grad(true).unwrap();
    let loss = || a.mul(&b).unwrap().add(&a.mul(&a).unwrap()).unwrap().sum_all().unwrap();
    let plain = loss().backward().unwrap();
    let h = a.register_hook(|g| Ok(Some(g.mul_scalar(2.0)?))).unwrap();
    let hooked = loss().backward().unwrap();
    let ga = plain.get(&a).unwrap().to_vec::<f64>().unwrap();
    assert_eq!(hooked.get(&a).unwrap().to_vec::<f64>().unwrap(), ga.iter().map(|g| 2.0 * g).collect::<Vec<_>>());
    assert_eq!(hooked.get(&b).unwrap().to_vec::<f64>().unwrap(), plain.get(&b).unwrap().to_vec::<f64>().unwrap());
    // The hook saw the summed gradient once (a is used three times): b + 2a.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let h2 = a
        .register_hook(move |g| {
            s.lock().unwrap().push(g.to_vec::<f64>()?);
            Ok(None)
        })
        .unwrap();
    loss().backward().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![vec![2.0 * (3.0 + 2.0), 2.0 * (-1.0 + 4.0)]], "after the doubling hook");
    h.remove();
    h2.remove();
    let restored = loss().backward().unwrap();
    assert_eq!(restored.get(&a).unwrap().to_vec::<f64>().unwrap(), ga);
    assert!(t64(&[1.0], &[1]).register_hook(|_| Ok(None)).is_err(), "an untracked tensor cannot be hooked");
}

#[test]
fn a_hook_on_an_intermediate_changes_what_flows_to_its_inputs() {
    let x = t64(&[1.0, 2.0, 3.0], &[3]).requires_grad(true).unwrap();
    let y = x.mul_scalar(3.0).unwrap(); // dy/dx = 3
    let h = y.register_hook(|g| Ok(Some(g.zeros_like()?.add_scalar(10.0)?))).unwrap();
    let z = y.mul(&y).unwrap().sum_all().unwrap();
    let g =
        z.backward_opts(&z.ones_like().unwrap(), BackwardOptions { retain_graph: true, create_graph: false }).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![30.0; 3]);
    h.remove();
    let g = y.mul(&y).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![18.0, 36.0, 54.0]); // 2 y * 3
                                                                                     // A replacement of the wrong shape is an error naming the shapes.
    let y = x.mul_scalar(1.0).unwrap();
    let _keep = y.register_hook(|_| Ok(Some(Tensor::zeros(&[2], DType::F64, CPU)?))).unwrap();
    let err = y.sum_all().unwrap().backward().unwrap_err().to_string();
    assert!(err.contains("[2]") && err.contains("[3]"), "{err}");
}

#[test]
fn a_parameter_gradient_can_be_hooked_through_its_param() {
    let fc = Linear::new(3, 2).unwrap();
    let x = Tensor::randn(&[4, 3], 0.0, 1.0, DType::F32, CPU).unwrap();
    let loss = || fc.forward(&x).unwrap().sum_all().unwrap();
    let plain = loss().backward().unwrap();
    let h = fc.weight.register_hook(|g| Ok(Some(g.neg()?)));
    let hooked = loss().backward().unwrap();
    let neg: Vec<f32> = fc.weight.grad(&plain).unwrap().to_vec::<f32>().unwrap().iter().map(|v| -v).collect();
    assert_eq!(fc.weight.grad(&hooked).unwrap().to_vec::<f32>().unwrap(), neg);
    let bias = |g: &stategrad::autograd::Grads| fc.bias.as_ref().unwrap().grad(g).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(bias(&hooked), bias(&plain));
    h.remove();
    let g = loss().backward().unwrap();
    assert_eq!(bits(&fc.weight.grad(&g).unwrap()), bits(&fc.weight.grad(&plain).unwrap()));
}

#[test]
fn module_hooks_see_the_right_input_and_output_may_replace_them_and_run_in_order() {
    let fc = Hooked::new(Linear::new(2, 2).unwrap());
    let x = t64(&[1.0, 2.0], &[1, 2]).to_dtype(DType::F32).unwrap();
    let expected = fc.inner.forward(&x).unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let seen_out: Arc<Mutex<Option<Tensor>>> = Arc::default();
    let so = seen_out.clone();
    let pre = fc.hooks.register_forward_pre_hook(move |input| {
        l1.lock().unwrap().push(format!("pre {:?}", input.to_vec::<f32>()?));
        Ok(None)
    });
    let post1 = fc.hooks.register_forward_hook(move |input, output| {
        l2.lock().unwrap().push(format!("post1 {:?}", input.to_vec::<f32>()?));
        *so.lock().unwrap() = Some(output.clone());
        Ok(Some(output.mul_scalar(10.0)?))
    });
    let post2 = fc.hooks.register_forward_hook(move |_, output| {
        l3.lock().unwrap().push(format!("post2 {:?}", output.to_vec::<f32>()?));
        Ok(None)
    });
    let y = fc.forward(&x).unwrap();
    assert_eq!(bits(seen_out.lock().unwrap().as_ref().unwrap()), bits(&expected), "the hook saw the layer's output");
    let ten: Vec<f32> = expected.to_vec::<f32>().unwrap().iter().map(|v| v * 10.0).collect();
    assert_eq!(y.to_vec::<f32>().unwrap(), ten);
    assert_eq!(
        *log.lock().unwrap(),
        vec!["pre [1.0, 2.0]".to_string(), "post1 [1.0, 2.0]".into(), format!("post2 {ten:?}")]
    );
    // A pre-hook that replaces the input.
    let swap = fc.hooks.register_forward_pre_hook(|input| Ok(Some(input.zeros_like()?)));
    post1.remove();
    let y = fc.forward(&x).unwrap();
    let b = fc.inner.bias.as_ref().unwrap().data();
    assert_eq!(bits(&y), bits(&b.reshape(&[1, 2]).unwrap()), "zero input gives the bias");
    swap.remove();
    pre.remove();
    post2.remove();
    assert!(fc.hooks.is_empty());
    assert_eq!(bits(&fc.forward(&x).unwrap()), bits(&expected));
}

#[derive(Module)]
struct WithHooks {
    fc: Hooked<Linear>,
    bn: BatchNorm1d,
}

#[test]
fn hooks_are_not_state_and_survive_to_device() {
    let m = WithHooks { fc: Hooked::new(Linear::new(2, 2).unwrap()), bn: BatchNorm1d::new(2).unwrap() };
    let plain = WithHooks { fc: Hooked::new(Linear::new(2, 2).unwrap()), bn: BatchNorm1d::new(2).unwrap() };
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let _h = m.fc.hooks.register_forward_hook(move |_, _| {
        *c.lock().unwrap() += 1;
        Ok(None)
    });
    let leaf = m.bn.weight.as_ref().unwrap().register_hook(|g| Ok(Some(g.mul_scalar(0.0)?)));
    let keys = |m: &WithHooks| m.state_dict().keys().map(String::from).collect::<Vec<_>>();
    assert_eq!(keys(&m), keys(&plain));
    assert_eq!(keys(&m)[..2], ["fc.weight".to_string(), "fc.bias".to_string()]);
    assert_eq!(m.state_graph().edges(), plain.state_graph().edges());
    assert_eq!(m.get_submodule::<Linear>("fc").unwrap().weight.shape(), vec![2, 2]);
    m.to_device(CPU).unwrap();
    m.to_dtype(DType::F64).unwrap();
    let x = Tensor::randn(&[3, 2], 0.0, 1.0, DType::F64, CPU).unwrap();
    let y = m.bn.forward(&m.fc.forward(&x).unwrap()).unwrap();
    assert_eq!(*calls.lock().unwrap(), 1, "the module hook survived the move");
    let g = y.sum_all().unwrap().backward().unwrap();
    let gw = m.bn.weight.as_ref().unwrap().grad(&g).unwrap();
    assert_eq!(gw.to_vec::<f64>().unwrap(), vec![0.0, 0.0], "the parameter hook survived the move");
    leaf.remove();
}

// ---------------------------------------------------------------- functional_call

#[derive(Module)]
struct Mlp {
    fc1: Linear,
    bn: BatchNorm1d,
    fc2: Linear,
}

impl Mlp {
    fn new() -> Mlp {
        let m =
            Mlp { fc1: Linear::new(3, 4).unwrap(), bn: BatchNorm1d::new(4).unwrap(), fc2: Linear::new(4, 1).unwrap() };
        m.to_dtype(DType::F64).unwrap();
        m
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> stategrad::autograd::Result<Tensor> {
        self.fc2.forward(&self.bn.forward(&self.fc1.forward(x)?)?.tanh()?)
    }
}

#[test]
fn functional_call_with_the_weights_of_b_gives_bs_outputs_and_gradients_and_leaves_a_untouched() {
    let a = Mlp::new();
    let b = Mlp::new();
    a.eval();
    b.eval();
    let x = Tensor::randn(&[5, 3], 0.0, 1.0, DType::F64, CPU).unwrap();
    let a_before = snapshot(&a);
    let b_out = b.forward(&x).unwrap();
    let b_grads = b_out.square().unwrap().sum_all().unwrap().backward().unwrap();

    // B's parameters as tracked leaves, B's buffers as they are.
    let mut overrides: Vec<(String, Tensor)> =
        b.named_parameters().into_iter().map(|(n, p)| (n, p.data().requires_grad(true).unwrap())).collect();
    overrides.extend(b.named_buffers().into_iter().map(|(n, buf)| (n, buf.tensor())));
    let out = functional_call(&a, overrides.clone(), |m| m.forward(&x)).unwrap();
    assert_eq!(bits(&out.output), bits(&b_out));
    assert!(out.buffers.is_empty(), "eval mode writes no buffer");
    let grads = out.output.square().unwrap().sum_all().unwrap().backward().unwrap();
    for ((name, p), (_, t)) in b.named_parameters().iter().zip(&overrides) {
        assert_eq!(bits(grads.get(t).unwrap()), bits(&p.grad(&b_grads).unwrap()), "gradient of {name}");
    }
    for (_, p) in a.named_parameters() {
        assert!(p.grad(&grads).is_none(), "A's own parameters were not used");
    }
    assert_eq!(snapshot(&a), a_before, "A is bit-identical after the call");
    assert_ne!(bits(&a.forward(&x).unwrap()), bits(&b_out));
}

#[test]
fn functional_call_from_two_threads_with_different_overrides_gives_each_its_own_result() {
    let m = Linear::new(2, 1).unwrap();
    let x = Tensor::ones(&[1, 2], DType::F32, CPU).unwrap();
    let run = |w: f32, b: f32| {
        let m = &m;
        let x = &x;
        move || {
            let mut outs = Vec::new();
            for _ in 0..50 {
                let ov = [
                    ("weight", Tensor::full(&[1, 2], w as f64, DType::F32, CPU).unwrap()),
                    ("bias", Tensor::full(&[1], b as f64, DType::F32, CPU).unwrap()),
                ];
                let out = functional_call(m, ov, |m| {
                    std::thread::yield_now();
                    m.forward(x)
                })
                .unwrap();
                outs.push(out.output.to_vec::<f32>().unwrap()[0]);
            }
            outs
        }
    };
    let own = m.forward(&x).unwrap().to_vec::<f32>().unwrap()[0];
    let (r1, r2) = std::thread::scope(|s| {
        let t1 = s.spawn(run(1.0, 0.5));
        let t2 = s.spawn(run(-2.0, 3.0));
        let own_during = m.forward(&x).unwrap().to_vec::<f32>().unwrap()[0];
        assert_eq!(own_during, own, "this thread sees the module's own weights meanwhile");
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert!(r1.iter().all(|&v| v == 2.5), "{r1:?}");
    assert!(r2.iter().all(|&v| v == -1.0), "{r2:?}");
    assert_eq!(m.forward(&x).unwrap().to_vec::<f32>().unwrap()[0], own);
}

#[test]
fn functional_call_returns_batchnorm_updates_instead_of_applying_them() {
    let m = Mlp::new();
    let x = Tensor::randn(&[6, 3], 1.0, 2.0, DType::F64, CPU).unwrap();
    let before = snapshot(&m);
    let twin = Mlp::new();
    twin.load_state_dict(&m.state_dict(), true).unwrap();
    let no_overrides: [(&str, Tensor); 0] = [];
    let out = functional_call(&m, no_overrides, |m| m.forward(&x)).unwrap();
    assert_eq!(snapshot(&m), before, "the module's buffers are unchanged");
    let keys: Vec<&str> = out.buffers.keys().collect();
    assert_eq!(keys, ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]);
    // The returned values are what a stateful forward writes.
    let y = twin.forward(&x).unwrap();
    assert_eq!(bits(&out.output), bits(&y));
    for (name, t) in out.buffers.iter() {
        assert_eq!(bits(t), bits(&twin.get_buffer(name).unwrap().tensor()), "{name}");
    }
    assert_eq!(out.buffers.get("bn.num_batches_tracked").unwrap().to_vec::<i64>().unwrap(), vec![1]);
    out.apply_buffers(&m).unwrap();
    assert_eq!(snapshot(&m), snapshot(&twin), "the caller decides to apply them");
    // A buffer override is read by the call and the write to it comes back too.
    let rm = Tensor::full(&[4], 5.0, DType::F64, CPU).unwrap();
    let out = functional_call(&m, [("bn.running_mean", rm)], |m| m.forward(&x)).unwrap();
    let new_rm = out.buffers.get("bn.running_mean").unwrap().to_vec::<f64>().unwrap();
    let mean = m.fc1.forward(&x).unwrap().mean(0, false).unwrap().to_vec::<f64>().unwrap();
    for (r, mu) in new_rm.iter().zip(mean) {
        assert!((r - (0.9 * 5.0 + 0.1 * mu)).abs() < 1e-12);
    }
}

#[test]
fn functional_call_rejects_unknown_names_and_mismatched_tensors() {
    let m = Linear::new(2, 3).unwrap();
    let x = Tensor::ones(&[1, 2], DType::F32, CPU).unwrap();
    let err = functional_call(&m, [("wieght", Tensor::zeros(&[3, 2], DType::F32, CPU).unwrap())], |m| m.forward(&x))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `weight`?"), "{err}");
    let err = functional_call(&m, [("weight", Tensor::zeros(&[2, 3], DType::F32, CPU).unwrap())], |m| m.forward(&x))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3, 2]") && err.contains("[2, 3]"), "{err}");
}

#[test]
fn maml_second_order_gradient_through_functional_call_matches_finite_differences() {
    // One inner SGD step on a support set, loss of the adapted weights on a query set; the
    // meta-gradient with respect to the initial weights includes the Hessian term.
    let model = Linear::new(3, 1).unwrap();
    model.to_dtype(DType::F64).unwrap();
    let xs = Tensor::randn(&[4, 3], 0.0, 1.0, DType::F64, CPU).unwrap();
    let ys = Tensor::randn(&[4, 1], 0.0, 1.0, DType::F64, CPU).unwrap();
    let xq = Tensor::randn(&[5, 3], 0.0, 1.0, DType::F64, CPU).unwrap();
    let yq = Tensor::randn(&[5, 1], 0.0, 1.0, DType::F64, CPU).unwrap();
    let lr = 0.3;
    let cube = |t: &Tensor| t.mul(t).unwrap().mul(t).unwrap(); // a non-quadratic loss: second order matters
    let meta_loss = |w: &Tensor, b: &Tensor, create_graph: bool| {
        let inner = functional_call(&model, [("weight", w.clone()), ("bias", b.clone())], |m| {
            cube(&m.forward(&xs)?.sub(&ys)?).sum_all()?.mean_all()
        })
        .unwrap()
        .output;
        let g = grad(&[&inner], None, &[w, b], create_graph).unwrap();
        let w2 = w.sub(&g[0].as_ref().unwrap().mul_scalar(lr).unwrap()).unwrap();
        let b2 = b.sub(&g[1].as_ref().unwrap().mul_scalar(lr).unwrap()).unwrap();
        functional_call(&model, [("weight", w2), ("bias", b2)], |m| mse(&m.forward(&xq)?, &yq)).unwrap().output
    };
    let w0 = model.weight.data();
    let b0 = model.bias.as_ref().unwrap().data();
    let w = w0.requires_grad(true).unwrap();
    let b = b0.requires_grad(true).unwrap();
    let g = meta_loss(&w, &b, true).backward().unwrap();
    let analytic = g.get(&w).unwrap().to_vec::<f64>().unwrap();
    let first_order = {
        let g = meta_loss(&w, &b, false).backward().unwrap();
        g.get(&w).unwrap().to_vec::<f64>().unwrap()
    };
    let eps = 1e-6;
    let wv = w0.to_vec::<f64>().unwrap();
    for i in 0..3 {
        let shifted = |d: f64| {
            let mut v = wv.clone();
            v[i] += d;
            let w = t64(&v, &[1, 3]).requires_grad(true).unwrap();
            let b = b0.requires_grad(true).unwrap();
            meta_loss(&w, &b, false).item().unwrap()
        };
        let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
        assert!((analytic[i] - numeric).abs() < 1e-6 * (1.0 + numeric.abs()), "{i}: {} vs {numeric}", analytic[i]);
    }
    let diff: f64 = analytic.iter().zip(&first_order).map(|(a, f)| (a - f).abs()).sum();
    assert!(diff > 1e-4, "the second-order term must matter here ({diff})");
}

// ---------------------------------------------------------------- freeze

#[derive(Module)]
struct Finetune {
    backbone: Sequential,
    head: Sequential,
}

fn finetune() -> Finetune {
    let m = Finetune {
        backbone: Sequential::new()
            .push(Linear::new(3, 4).unwrap())
            .push(BatchNorm1d::new(4).unwrap())
            .push(Dropout::new(0.5).unwrap()),
        head: Sequential::new()
            .push(Linear::new(4, 4).unwrap())
            .push(BatchNorm1d::new(4).unwrap())
            .push(Dropout::new(0.5).unwrap())
            .push(Linear::new(4, 1).unwrap()),
    };
    m.to_dtype(DType::F64).unwrap();
    m
}

fn step(m: &Finetune, opt: &mut Sgd, x: &Tensor) -> Tensor {
    let y = m.head.forward(&m.backbone.forward(x).unwrap()).unwrap();
    let grads = y.square().unwrap().mean_all().unwrap().backward().unwrap();
    opt.step(&grads).unwrap();
    m.backbone.forward(x).unwrap()
}

#[test]
fn freeze_then_a_training_step_leaves_the_frozen_state_bit_identical_while_the_rest_trains() {
    let m = finetune();
    let x = Tensor::randn(&[8, 3], 0.0, 1.0, DType::F64, CPU).unwrap();
    let mut opt = Sgd::new(m.parameters(), SgdConfig { weight_decay: 0.1, ..SgdConfig::new(0.1) }).unwrap();
    m.backbone.freeze();
    let backbone_before = snapshot(&m.backbone);
    let head_before = snapshot(&m.head);
    let out1 = step(&m, &mut opt, &x);
    let out2 = step(&m, &mut opt, &x);
    assert_eq!(snapshot(&m.backbone), backbone_before, "no parameter, statistic or counter moved");
    assert_eq!(bits(&out1), bits(&out2), "frozen dropout is the identity, frozen BN uses running stats");
    assert!(m.is_training(), "still in train mode");
    let head_after = snapshot(&m.head);
    for ((name, a), (_, b)) in head_before.iter().zip(&head_after) {
        assert_ne!(a, b, "{name} of the head trains in train mode");
    }
    assert!(m.backbone.parameters().iter().all(|p| !p.needs_grad() && p.is_frozen()));
    // The whole model frozen: a step changes nothing at all.
    // The whole model frozen: a training-mode forward moves nothing and records nothing.
    m.freeze();
    let all = snapshot(&m);
    let y = m.head.forward(&m.backbone.forward(&x).unwrap()).unwrap();
    assert!(!y.is_tracked());
    assert_eq!(bits(&y), bits(&m.head.forward(&m.backbone.forward(&x).unwrap()).unwrap()), "no dropout");
    assert_eq!(snapshot(&m), all);
    assert!(m.is_training());
}

#[test]
fn unfreeze_restores_exactly_the_previous_flags_and_modes() {
    let m = finetune();
    let fixed = m.head.get_parameter("0.bias").unwrap();
    fixed.requires_grad(false); // frozen by hand before
    m.backbone.eval(); // and the backbone in eval mode
    let flags = |m: &Finetune| m.named_parameters().into_iter().map(|(n, p)| (n, p.needs_grad())).collect::<Vec<_>>();
    let modes = |m: &Finetune| {
        let mut v = Vec::new();
        m.for_each_module::<BatchNorm1d>(|p, bn| v.push((p.to_string(), bn.training.get(), bn.training.mode())));
        m.for_each_module::<Dropout>(|p, d| v.push((p.to_string(), d.training.get(), d.training.mode())));
        v
    };
    let (f0, m0) = (flags(&m), modes(&m));
    m.head.freeze();
    m.freeze(); // nested
    assert!(m.parameters().iter().all(|p| !p.needs_grad()));
    assert!(modes(&m).iter().all(|(_, active, _)| !active));
    m.unfreeze().unwrap();
    assert!(m.head.parameters().iter().all(|p| !p.needs_grad()), "the inner freeze still holds");
    m.head.unfreeze().unwrap();
    assert_eq!(flags(&m), f0);
    assert_eq!(modes(&m), m0);
    assert!(!fixed.needs_grad(), "a parameter frozen by hand stays frozen");
    let err = m.unfreeze().unwrap_err();
    assert!(matches!(err, Error::State { .. }) && err.to_string().contains("not frozen"), "{err}");
    // requires_grad keeps its meaning: it sets the flag, freeze counts stay independent.
    m.freeze();
    m.requires_grad(true);
    assert!(m.parameters().iter().all(|p| !p.needs_grad()), "frozen wins over requires_grad(true)");
    m.unfreeze().unwrap();
    assert!(m.parameters().iter().all(|p| p.needs_grad()));
}

// ---------------------------------------------------------------- EMA

#[derive(Module)]
struct Small {
    fc: Linear,
    bn: BatchNorm1d,
    scratch: Buffer,
}

fn small() -> Small {
    let m = Small {
        fc: Linear::new(2, 2).unwrap(),
        bn: BatchNorm1d::new(2).unwrap(),
        scratch: Buffer::non_persistent(Tensor::zeros(&[3], DType::F32, CPU).unwrap()),
    };
    m.to_dtype(DType::F64).unwrap();
    m
}

/// Sets every float parameter and buffer of `m` to `value + offset(index)`, and the
/// counter to `counter`.
fn set_all(m: &Small, value: f64, counter: i64) {
    for (i, p) in m.parameters().iter().enumerate() {
        p.set(p.data().full_like(value + i as f64).unwrap()).unwrap();
    }
    for (i, b) in m.buffers().iter().enumerate() {
        let t = b.tensor();
        let v = if t.dtype().is_float() { -value - i as f64 } else { counter as f64 };
        b.set(t.full_like(v).unwrap()).unwrap();
    }
}

#[test]
fn ema_after_n_updates_equals_the_closed_form_weighted_average_and_copies_integer_buffers() {
    let m = small();
    set_all(&m, 0.0, 0);
    let d = 0.8;
    let mut ema = Ema::new(&m, EmaConfig::new(d).float_buffers(FloatBuffers::Average)).unwrap();
    let values = [1.5, -2.0, 4.0, 0.25, 3.0];
    for (k, v) in values.iter().enumerate() {
        set_all(&m, *v, 10 + k as i64);
        ema.update(&m).unwrap();
    }
    // s_N = d^N s_0 + sum_k (1 - d) d^(N - k) v_k, elementwise (s_0 = the initial values).
    let n = values.len() as i32;
    let closed = |offset: f64, sign: f64| {
        let mut s = d.powi(n) * sign * offset;
        for (k, v) in values.iter().enumerate() {
            s += (1.0 - d) * d.powi(n - 1 - k as i32) * sign * (v + offset);
        }
        s
    };
    for (i, (name, _)) in m.named_parameters().iter().enumerate() {
        let got = ema.shadow(name).unwrap().tensor().to_vec::<f64>().unwrap();
        let want = closed(i as f64, 1.0);
        assert!(got.iter().all(|g| (g - want).abs() < 1e-12), "{name}: {got:?} vs {want}");
    }
    for (i, (name, b)) in m.named_buffers().iter().enumerate() {
        let got = ema.shadow(name).unwrap().tensor();
        if b.dtype().is_float() {
            let want = closed(i as f64, -1.0);
            assert!(got.to_vec::<f64>().unwrap().iter().all(|g| (g - want).abs() < 1e-12), "{name}");
        } else {
            assert_eq!(got.to_vec::<i64>().unwrap(), vec![14], "{name} is copied");
        }
    }
    assert_eq!(ema.num_updates(), 5);
}

#[test]
fn ema_state_dict_holds_only_buffers_under_the_models_names_and_moves_with_it() {
    let m = small();
    let ema = Ema::new(&m, EmaConfig::new(0.99)).unwrap();
    assert!(ema.parameters().is_empty());
    let keys = |sd: stategrad::nn::StateDict| sd.keys().map(String::from).collect::<Vec<_>>();
    assert_eq!(keys(ema.state_dict()), keys(m.state_dict()));
    let names = |v: Vec<(String, Buffer)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let mut model_names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    model_names.extend(names(m.named_buffers()));
    let mut ema_names = names(ema.named_buffers());
    ema_names.sort();
    model_names.sort();
    assert_eq!(ema_names, model_names, "the non-persistent buffer is shadowed but not saved");
    assert!(!ema.shadow("scratch").unwrap().is_persistent());
    // Saved and loaded like a module; moved like one.
    let other = Ema::new(&small(), EmaConfig::new(0.99)).unwrap();
    other.load_state_dict(&ema.state_dict(), true).unwrap();
    assert_eq!(bits(&other.shadow("fc.weight").unwrap().tensor()), bits(&m.fc.weight.data()));
    ema.to_dtype(DType::F32).unwrap();
    assert_eq!(ema.shadow("fc.weight").unwrap().dtype(), DType::F32);
    assert_eq!(ema.shadow("bn.num_batches_tracked").unwrap().dtype(), DType::I64);
    assert!(!ema.shadow("fc.weight").unwrap().tensor().is_tracked());
}

#[test]
fn ema_warm_up_copied_float_buffers_and_copy_to() {
    let m = small();
    set_all(&m, 0.0, 0);
    let mut ema = Ema::new(&m, EmaConfig::new(0.9).warmup(Warmup::NumUpdates)).unwrap();
    let mut want = 0.0; // fc.weight's shadow
    for (k, v) in [1.0, 2.0, 3.0].iter().enumerate() {
        let d = f64::min(0.9, (1.0 + k as f64) / (10.0 + k as f64));
        assert!((ema.current_decay() - d).abs() < 1e-15);
        set_all(&m, *v, 0);
        ema.update(&m).unwrap();
        want = d * want + (1.0 - d) * v;
    }
    let got = ema.shadow("fc.weight").unwrap().tensor().to_vec::<f64>().unwrap();
    assert!(got.iter().all(|g| (g - want).abs() < 1e-12));
    // Float buffers are copied by default.
    let rm_index = m.named_buffers().iter().position(|(n, _)| n == "bn.running_mean").unwrap();
    assert_eq!(
        ema.shadow("bn.running_mean").unwrap().tensor().to_vec::<f64>().unwrap(),
        vec![-3.0 - rm_index as f64; 2]
    );
    // copy_to writes the average into the model; no tape anywhere.
    ema.copy_to(&m).unwrap();
    assert_eq!(bits(&m.fc.weight.data()), bits(&ema.shadow("fc.weight").unwrap().tensor()));
    // A model of another shape is refused, nothing written.
    let other = Linear::new(2, 2).unwrap();
    assert!(matches!(ema.update(&other), Err(Error::State { .. })));
    assert_eq!(ema.num_updates(), 3);
}

// ---------------------------------------------------------------- clipping

fn close(t: &Tensor, want: &[f64]) {
    let got = t.to_vec::<f64>().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-15 * w.abs().max(1.0), "{got:?} vs {want:?}");
    }
}

#[test]
fn clip_grad_norm_matches_a_hand_computation_for_l2_and_inf() {
    let a = Param::new(t64(&[1.0, 2.0], &[2]));
    let b = Param::new(t64(&[-3.0, 0.5, 4.0], &[3]));
    let frozen = Param::new(t64(&[100.0], &[1]));
    let grads_of = || {
        let mut g = Grads::default();
        g.insert(a.id(), t64(&[3.0, -4.0], &[2]));
        g.insert(b.id(), t64(&[0.0, 12.0, -0.5], &[3]));
        g.insert(frozen.id(), t64(&[1000.0], &[1]));
        g
    };
    frozen.requires_grad(false);
    let params = vec![a.clone(), b.clone(), frozen.clone(), a.clone()];
    // L2: sqrt(9 + 16 + 0 + 144 + 0.25) = 13.0096...
    let l2 = (9.0f64 + 16.0 + 144.0 + 0.25).sqrt();
    let mut g = grads_of();
    let total = clip_grad_norm(&mut g, &params, 1.0, 2.0).unwrap();
    assert!((total - l2).abs() < 1e-12, "{total} vs {l2}");
    let coef = 1.0 / (l2 + 1e-6);
    close(&a.grad(&g).unwrap(), &[3.0 * coef, -4.0 * coef]);
    close(&b.grad(&g).unwrap(), &[0.0, 12.0 * coef, -0.5 * coef]);
    assert_eq!(frozen.grad(&g).unwrap().to_vec::<f64>().unwrap(), vec![1000.0], "frozen: skipped");
    // inf: max |g| = 12.
    let mut g = grads_of();
    let total = clip_grad_norm(&mut g, &params, 6.0, f64::INFINITY).unwrap();
    assert_eq!(total, 12.0);
    let coef = 6.0 / (12.0 + 1e-6);
    close(&b.grad(&g).unwrap(), &[0.0, 12.0 * coef, -0.5 * coef]);
    // Below the limit: unchanged, total still returned.
    let mut g = grads_of();
    let total = clip_grad_norm(&mut g, &params, 100.0, 2.0).unwrap();
    assert!((total - l2).abs() < 1e-12);
    assert_eq!(a.grad(&g).unwrap().to_vec::<f64>().unwrap(), vec![3.0, -4.0]);
    // p = 1: sum of |g|.
    let mut g = grads_of();
    let total = clip_grad_norm(&mut g, &params, 100.0, 1.0).unwrap();
    assert!((total - 19.5).abs() < 1e-12);
    assert!(clip_grad_norm(&mut g, &params, 1.0, 0.0).is_err());
    let mut bad = grads_of();
    bad.insert(a.id(), t64(&[f64::NAN, 0.0], &[2]));
    assert!(clip_grad_norm(&mut bad, &params, 1.0, 2.0).is_err());
    assert_eq!(b.grad(&bad).unwrap().to_vec::<f64>().unwrap(), vec![0.0, 12.0, -0.5], "left unchanged");
}

#[test]
fn clip_grad_value_clamps_each_element_and_skips_frozen_parameters() {
    let a = Param::new(t64(&[0.0, 0.0, 0.0], &[3]));
    let frozen = Param::new(t64(&[0.0], &[1]));
    let mut g = Grads::default();
    g.insert(a.id(), t64(&[-5.0, 0.3, 2.0], &[3]));
    g.insert(frozen.id(), t64(&[-5.0], &[1]));
    frozen.requires_grad(false);
    clip_grad_value(&mut g, &[a.clone(), frozen.clone()], 1.0).unwrap();
    assert_eq!(a.grad(&g).unwrap().to_vec::<f64>().unwrap(), vec![-1.0, 0.3, 1.0]);
    assert_eq!(frozen.grad(&g).unwrap().to_vec::<f64>().unwrap(), vec![-5.0]);
}
