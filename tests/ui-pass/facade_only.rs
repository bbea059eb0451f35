// A crate that depends on the `stategrad` facade only (no direct stategrad-nn dependency)
// can derive Module: the derive finds the path through the facade. Run, not just compiled.
use std::collections::HashMap;

use stategrad::nn::{Linear, Module, Param};
use stategrad::prelude::*;

#[derive(Module)]
struct Net {
    heads: HashMap<String, Linear>,
    scale: Param,
    #[module(skip)]
    note: std::cell::Cell<u8>,
}

fn main() {
    let mut heads = HashMap::new();
    heads.insert("b".to_string(), Linear::new(2, 1).unwrap());
    heads.insert("a".to_string(), Linear::new(2, 1).unwrap());
    let net = Net { heads, scale: Param::new(Tensor::ones(&[1], DType::F32, Device::Cpu).unwrap()), note: Default::default() };
    let keys: Vec<String> = net.state_dict().keys().map(String::from).collect();
    assert_eq!(keys, ["scale", "heads.a.weight", "heads.a.bias", "heads.b.weight", "heads.b.bias"]);
    net.note.set(1);
}
