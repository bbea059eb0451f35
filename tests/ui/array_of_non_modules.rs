// An array whose items are not modules.
use stategrad::nn::{Module, Param};

struct Block {
    weight: Param,
}

#[derive(Module)]
struct Net {
    blocks: [Block; 2],
}

fn main() {}
