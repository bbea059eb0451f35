// A field typed through an alias of a type that is not a module.
use stategrad::nn::{Module, Param};

struct Encoder {
    weight: Param,
}
type Backbone = Encoder;

#[derive(Module)]
struct Net {
    backbone: Option<Box<Backbone>>,
}

fn main() {}
