// A child struct that holds a parameter but does not derive Module: before, its weight
// vanished from parameters(), state_dict and the optimizer.
use stategrad::nn::{Module, Param};

struct Child {
    weight: Param,
}

#[derive(Module)]
struct Net {
    child: Child,
}

fn main() {}
