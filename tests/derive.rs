//! `#[derive(Module)]` dispatches on the `VisitState` trait, never on type names: every
//! container kind is found (listed, saved, stepped by an optimizer), plain data is not,
//! and a field that holds something the derive cannot see is a compile error (the
//! trybuild cases in `tests/ui/`, each with its expected message).
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use stategrad::autograd::{DType, Device, Tensor};
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{Buffer, Layer, Linear, Module, Param, Relu, Training, VisitState};

fn t(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, &[v.len()], Device::Cpu).unwrap()
}

fn keys(m: &dyn Module) -> Vec<String> {
    m.state_dict().keys().map(String::from).collect()
}

fn lin(i: usize, o: usize) -> Linear {
    Linear::new(i, o).unwrap()
}

type P = Param; // a field typed through an alias is still a parameter
type Layers = [Linear; 2];

#[derive(Module)]
struct Everything {
    alias: P,
    array: Layers,
    map: HashMap<String, Linear>,
    sorted: BTreeMap<String, Buffer>,
    list: Vec<Param>,
    nested: Vec<Vec<Linear>>,
    deque: VecDeque<Buffer>,
    some: Option<Linear>,
    none: Option<Linear>,
    boxed: Box<dyn Layer>,
    shared: Arc<Linear>,
    pair: (Param, Buffer),
    // Plain data: visits nothing, and leaves no empty child module behind.
    sizes: Vec<usize>,
    maybe: Option<f64>,
    name: String,
    device: Device,
    dtype: DType,
    cache: Tensor,
    dims: (usize, usize),
    flags: [bool; 3],
    training: Training,
}

fn everything() -> Everything {
    let mut map = HashMap::new();
    // Inserted out of order: names are sorted by key, whatever the hash order.
    for k in ["zeta", "alpha", "mid"] {
        map.insert(k.to_string(), lin(1, 1));
    }
    let mut sorted = BTreeMap::new();
    sorted.insert("b".to_string(), Buffer::new(t(&[2.0])));
    sorted.insert("a".to_string(), Buffer::new(t(&[1.0])));
    Everything {
        alias: Param::new(t(&[1.0])),
        array: [lin(1, 1), lin(1, 1)],
        map,
        sorted,
        list: vec![Param::new(t(&[1.0])), Param::new(t(&[2.0]))],
        nested: vec![vec![lin(1, 1)], vec![lin(1, 1), lin(1, 1)]],
        deque: VecDeque::from([Buffer::new(t(&[0.0]))]),
        some: Some(lin(1, 1)),
        none: None,
        boxed: Box::new(lin(1, 1)),
        shared: Arc::new(lin(1, 1)),
        pair: (Param::new(t(&[3.0])), Buffer::non_persistent(t(&[4.0]))),
        sizes: vec![1, 2],
        maybe: Some(1.0),
        name: "n".into(),
        device: Device::Cpu,
        dtype: DType::F32,
        cache: t(&[9.0]),
        dims: (1, 2),
        flags: [true; 3],
        training: Training::new(),
    }
}

#[test]
fn every_container_kind_is_state_under_pytorch_names() {
    let m = everything();
    let lin_keys = |p: &str| [format!("{p}.weight"), format!("{p}.bias")];
    let mut want = vec!["alias".to_string()];
    want.extend(lin_keys("array.0"));
    want.extend(lin_keys("array.1"));
    want.extend(lin_keys("map.alpha"));
    want.extend(lin_keys("map.mid"));
    want.extend(lin_keys("map.zeta"));
    want.extend(["sorted.a".to_string(), "sorted.b".to_string(), "list.0".to_string(), "list.1".to_string()]);
    want.extend(lin_keys("nested.0.0"));
    want.extend(lin_keys("nested.1.0"));
    want.extend(lin_keys("nested.1.1"));
    want.push("deque.0".to_string());
    want.extend(lin_keys("some"));
    want.extend(lin_keys("boxed"));
    want.extend(lin_keys("shared"));
    want.push("pair.0".to_string()); // pair.1 is non-persistent: moved, not saved
    assert_eq!(keys(&m), want);
    // 1 + 2*2 (array) + 3*2 (map) + 2 (list) + 3*2 (nested) + 2 (some) + 2 (boxed) + 2 (shared) + 1 (pair)
    assert_eq!(m.num_parameters(), 1 + 4 + 6 + 2 + 6 + 2 + 2 + 2 + 1);
    let buffers: Vec<String> = m.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers, ["sorted.a", "sorted.b", "deque.0", "pair.1"]);
    // Plain data makes no module: only the containers of state appear.
    let modules: Vec<String> = m.named_modules().into_iter().map(|(n, _)| n).collect();
    for plain in ["sizes", "maybe", "name", "device", "dtype", "cache", "dims", "flags", "none"] {
        assert!(!modules.iter().any(|n| n == plain), "{plain} listed as a module: {modules:?}");
    }
    for state in
        ["array", "map", "map.zeta", "sorted", "list", "nested.1.1", "deque", "some", "boxed", "shared", "pair"]
    {
        assert!(modules.iter().any(|n| n == state), "{state} missing from {modules:?}");
    }
}

#[test]
fn the_optimizer_steps_parameters_in_every_container() {
    let m = everything();
    let before: Vec<Vec<f32>> = m.parameters().iter().map(|p| p.data().to_vec::<f32>().unwrap()).collect();
    let mut loss = Tensor::zeros(&[], DType::F32, Device::Cpu).unwrap();
    for p in m.parameters() {
        loss = loss.add(&p.tensor().unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut opt = Sgd::new(m.parameters(), SgdConfig::new(0.5)).unwrap();
    opt.step(&grads).unwrap();
    for ((name, p), old) in m.named_parameters().iter().zip(&before) {
        let new = p.data().to_vec::<f32>().unwrap();
        let want: Vec<f32> = old.iter().map(|x| x - 0.5).collect();
        assert_eq!(new, want, "{name} not stepped");
    }
}

#[test]
fn to_dtype_reaches_every_container_and_train_eval_reaches_the_flag() {
    let m = everything();
    m.to_dtype(DType::F64).unwrap();
    assert_eq!(m.map["zeta"].weight.dtype(), DType::F64);
    assert_eq!(m.nested[1][1].weight.dtype(), DType::F64);
    assert_eq!(m.pair.1.dtype(), DType::F64); // non-persistent buffer: moved
    assert_eq!(m.shared.weight.dtype(), DType::F64);
    assert_eq!(m.cache.dtype(), DType::F32); // plain tensor: not moved
    m.eval();
    assert!(!m.training.get());
}

/// A generic module: the bound on `M` is written by the derive.
#[derive(Module)]
struct Wrapper<M> {
    inner: M,
    extra: Option<Box<M>>,
    #[module(skip)]
    _config: std::marker::PhantomData<fn() -> M>,
}

#[test]
fn generic_fields_are_visited_through_their_bound() {
    let w = Wrapper { inner: lin(2, 1), extra: Some(Box::new(lin(1, 1))), _config: Default::default() };
    assert_eq!(keys(&w), ["inner.weight", "inner.bias", "extra.weight", "extra.bias"]);
    let nested = Wrapper {
        inner: Wrapper { inner: Relu, extra: None, _config: Default::default() },
        extra: None,
        _config: Default::default(),
    };
    assert!(keys(&nested).is_empty());
}

/// A plain type of the user's own, declared plain once.
struct Schedule {
    _warmup: usize,
}

impl VisitState for Schedule {
    const PLAIN: bool = true;
    fn visit_state(&self, _name: &str, _v: &mut dyn stategrad::nn::Visitor) {}
}

#[derive(Module)]
struct WithSchedule {
    fc: Linear,
    schedule: Schedule,
    schedules: Vec<Schedule>,
}

#[test]
fn user_plain_types_can_opt_in_as_plain_data() {
    let m = WithSchedule { fc: lin(1, 1), schedule: Schedule { _warmup: 3 }, schedules: vec![] };
    assert_eq!(keys(&m), ["fc.weight", "fc.bias"]);
    assert_eq!(m.named_modules().len(), 2);
}

#[test]
fn compile_errors_name_the_field_that_would_have_been_dropped() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
