// A HashMap whose values are not modules.
use std::collections::HashMap;
use stategrad::nn::{Module, Param};

struct Head {
    weight: Param,
}

#[derive(Module)]
struct Net {
    heads: HashMap<String, Head>,
}

fn main() {}
