//! The five kinds of state (DESIGN.md's table), checked by behaviour: listed by
//! `parameters()` or not, saved in `state_dict` or not, moved by `to_dtype` or not, changed
//! by an optimizer step or not, tracked by the tape or not. Also: both registration ways
//! give the same graph, names and state_dict; tied weights are one node; names are PyTorch's.
use stategrad::autograd::{no_grad, DType, Device, Tensor};
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{BatchNorm1d, Buffer, Dropout, Forward, Linear, Module, ModuleDict, Param};

fn t(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, &[v.len()], Device::Cpu).unwrap()
}

#[derive(Module)]
struct Model {
    my_param: Param,
    my_buffer: Buffer,
    my_scratch: Buffer,
    my_tensor: Tensor,
    frozen: Param,
    count: Buffer,
}

fn model() -> Model {
    let frozen = Param::new(t(&[5.0, 6.0]));
    frozen.requires_grad(false);
    Model {
        my_param: Param::new(t(&[1.0, 2.0])),
        my_buffer: Buffer::new(t(&[3.0])),
        my_scratch: Buffer::non_persistent(t(&[4.0])),
        my_tensor: t(&[7.0]),
        frozen,
        count: Buffer::new(Tensor::zeros(&[], DType::I64, Device::Cpu).unwrap()),
    }
}

fn names<T>(v: Vec<(String, T)>) -> Vec<String> {
    v.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn listing_and_saving_follow_the_kind_of_state() {
    let m = model();
    assert_eq!(names(m.named_parameters()), ["my_param", "frozen"]);
    assert_eq!(names(m.named_buffers()), ["my_buffer", "my_scratch", "count"]);
    let sd = m.state_dict();
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(keys, ["my_param", "frozen", "my_buffer", "count"]); // no scratch, no plain tensor
    assert_eq!(m.num_parameters(), 4);
}

#[test]
fn to_dtype_moves_every_param_and_buffer_in_place_and_nothing_else() {
    let m = model();
    let outside = m.my_scratch.clone(); // a handle held outside the module
    m.to_dtype(DType::F64).unwrap();
    assert_eq!(m.my_param.dtype(), DType::F64);
    assert_eq!(m.frozen.dtype(), DType::F64);
    assert_eq!(m.my_buffer.dtype(), DType::F64);
    assert_eq!(outside.tensor().to_vec::<f64>().unwrap(), vec![4.0]); // sees the moved data
    assert_eq!(m.my_tensor.dtype(), DType::F32); // plain tensor: not moved
    assert_eq!(m.count.dtype(), DType::I64); // integer buffers keep their dtype
    assert!(!m.frozen.needs_grad(), "a move does not unfreeze");
    assert!(m.to_dtype(DType::I64).is_err());
    m.to_device(Device::Cpu).unwrap();
    assert_eq!(m.device(), Some(Device::Cpu));
}

#[test]
fn only_trainable_params_are_tracked_and_changed_by_a_step() {
    let m = model();
    assert!(m.my_param.tensor().unwrap().is_tracked());
    assert!(!m.frozen.tensor().unwrap().is_tracked());
    assert!(!m.my_buffer.tensor().is_tracked());
    assert!(!m.my_tensor.is_tracked());
    {
        let _g = no_grad();
        assert!(!m.my_param.tensor().unwrap().is_tracked());
    }
    // A loss touching every kind: only my_param gets a gradient.
    let y = m.my_param.tensor().unwrap().sum_all().unwrap();
    let y = y.add(&m.frozen.tensor().unwrap().sum_all().unwrap()).unwrap();
    let y = y.add(&m.my_buffer.tensor().sum_all().unwrap()).unwrap();
    let y = y.add(&m.my_tensor.sum_all().unwrap()).unwrap();
    let grads = y.backward().unwrap();
    assert_eq!(grads.len(), 1);
    let mut cfg = SgdConfig::new(0.5);
    cfg.weight_decay = 0.1;
    let mut opt = Sgd::new(m.parameters(), cfg).unwrap();
    opt.step(&grads).unwrap();
    assert_eq!(m.my_param.data().to_vec::<f32>().unwrap(), vec![1.0 - 0.5 * (1.0 + 0.1), 2.0 - 0.5 * (1.0 + 0.2)]);
    assert_eq!(m.frozen.data().to_vec::<f32>().unwrap(), vec![5.0, 6.0]);
    assert_eq!(m.my_buffer.tensor().to_vec::<f32>().unwrap(), vec![3.0]);
}

#[derive(Module)]
struct Derived {
    w: Param,
    stats: Buffer,
    scratch: Buffer,
    fc: Linear,
    blocks: Vec<Linear>,
    maybe: Option<Param>,
    none: Option<Param>,
    #[module(skip)]
    _skipped: Linear,
    lr: f64,
}

#[test]
fn derive_and_run_time_registration_give_the_same_graph_names_and_state_dict() {
    let w = Param::new(t(&[1.0]));
    let stats = Buffer::new(t(&[2.0]));
    let scratch = Buffer::non_persistent(t(&[3.0]));
    let fc = Linear::new(2, 2).unwrap();
    let blocks = vec![Linear::new(2, 3).unwrap(), Linear::new(3, 1).unwrap()];
    let maybe = Param::new(t(&[4.0]));
    let derived = Derived {
        w: w.clone(),
        stats: stats.clone(),
        scratch: scratch.clone(),
        fc: fc.clone(),
        blocks: blocks.clone(),
        maybe: Some(maybe.clone()),
        none: None,
        _skipped: Linear::new(1, 1).unwrap(),
        lr: 0.1,
    };
    let mut dict = ModuleDict::new();
    dict.register_parameter("w", w).unwrap();
    dict.register_buffer_handle("stats", stats).unwrap();
    dict.register_buffer_handle("scratch", scratch).unwrap();
    dict.register_module("fc", fc).unwrap();
    let mut list = ModuleDict::new();
    for (i, b) in blocks.into_iter().enumerate() {
        list.register_module(&i.to_string(), b).unwrap();
    }
    dict.register_module("blocks", list).unwrap();
    dict.register_parameter("maybe", maybe).unwrap();

    let (a, b) = (derived.state_graph(), dict.state_graph());
    assert_eq!(a.edges(), b.edges());
    assert_eq!(names(derived.named_parameters()), names(dict.named_parameters()));
    assert_eq!(names(derived.named_buffers()), names(dict.named_buffers()));
    let (sa, sb) = (derived.state_dict(), dict.state_dict());
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for ((_, x), (_, y)) in sa.iter().zip(sb.iter()) {
        assert!(x.same_storage(y));
    }
    assert_eq!(
        sa.keys().collect::<Vec<_>>(),
        [
            "w",
            "maybe",
            "stats",
            "fc.weight",
            "fc.bias",
            "blocks.0.weight",
            "blocks.0.bias",
            "blocks.1.weight",
            "blocks.1.bias"
        ]
    );
    let modules: Vec<String> = derived.named_modules().into_iter().map(|(p, _)| p).collect();
    assert_eq!(modules, ["", "fc", "blocks", "blocks.0", "blocks.1"]);
}

#[test]
fn run_time_names_must_be_valid_and_unique() {
    let mut d = ModuleDict::new();
    d.register_parameter("w", Param::new(t(&[1.0]))).unwrap();
    for bad in ["w", "", "a.b"] {
        let err = d.register_parameter(bad, Param::new(t(&[1.0]))).unwrap_err();
        assert!(matches!(err, stategrad::autograd::Error::State { .. }), "{bad:?}: {err}");
        assert!(d.register_buffer(bad, t(&[1.0]), true).is_err());
        assert!(d.register_module(bad, Linear::new(1, 1).unwrap()).is_err());
    }
    assert_eq!(d.len(), 1);
}

#[derive(Module)]
struct Tied {
    emb: Linear,
    head: Linear,
}

#[test]
fn a_tied_weight_is_one_node_with_two_parents_listed_and_saved_once() {
    let emb = Linear::new(4, 4).unwrap();
    let head = Linear { weight: emb.weight.clone(), bias: None };
    let m = Tied { emb, head };
    assert_eq!(names(m.named_parameters()), ["emb.weight", "emb.bias"]);
    assert_eq!(m.state_dict().keys().collect::<Vec<_>>(), ["emb.weight", "emb.bias"]);
    let g = m.state_graph();
    let weight_node = g.graph().node_indices().find(|&i| g.graph()[i].path() == "emb.weight").unwrap();
    let parents: Vec<_> =
        g.graph().neighbors_directed(weight_node, stategrad::nn::petgraph::Direction::Incoming).collect();
    assert_eq!(parents.len(), 2);
    // Still tied after a move, and a file saved under the second name loads into it.
    m.to_dtype(DType::F64).unwrap();
    assert!(m.head.weight.ptr_eq(&m.emb.weight));
    assert_eq!(m.head.weight.dtype(), DType::F64);
    let mut sd = m.state_dict();
    let w = sd.remove("emb.weight").unwrap().mul_scalar(2.0).unwrap();
    sd.insert("head.weight", w.clone());
    let report = m.load_state_dict(&sd, true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(m.emb.weight.data().to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
}

#[derive(Module)]
struct Net {
    layers: Vec<Inner>,
    drop: Dropout,
}

#[derive(Module)]
struct Inner {
    bn: BatchNorm1d,
}

#[test]
fn train_eval_and_freezing_reach_every_submodule() {
    let net = Net {
        layers: vec![Inner { bn: BatchNorm1d::new(2).unwrap() }, Inner { bn: BatchNorm1d::new(2).unwrap() }],
        drop: Dropout::new(0.5).unwrap(),
    };
    assert!(net.is_training());
    net.eval();
    assert!(!net.is_training());
    assert!(net.layers.iter().all(|l| !l.bn.training.get()) && !net.drop.training.get());
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu).unwrap();
    net.layers[1].bn.forward(&x).unwrap();
    assert_eq!(net.layers[1].bn.num_batches_tracked.tensor().item().unwrap(), 0.0);
    net.train();
    net.layers[1].bn.forward(&x).unwrap();
    assert_eq!(net.layers[1].bn.num_batches_tracked.tensor().item().unwrap(), 1.0);

    net.requires_grad(false);
    assert!(net.parameters().iter().all(|p| !p.needs_grad()));
    assert!(!net.layers[0].bn.forward(&x).unwrap().is_tracked());
    net.requires_grad(true);
    assert!(net.layers[0].bn.forward(&x).unwrap().is_tracked());
}

#[test]
fn dot_draws_each_kind_distinctly() {
    let m = model();
    let dot = m.state_graph().to_dot();
    assert!(dot.starts_with("digraph"));
    let line = |name: &str| dot.lines().find(|l| l.contains(&format!("label=\"{name}\\n"))).unwrap().to_string();
    assert!(line("my_param").contains("style=filled"));
    assert!(!line("my_buffer").contains("dashed") && !line("my_buffer").contains("filled"));
    assert!(line("my_scratch").contains("dashed"));
    assert!(line("(root)").contains("shape=box"));
    assert!(!dot.contains("my_tensor"));
    assert_eq!(dot.matches(" -> ").count(), 5);
}
