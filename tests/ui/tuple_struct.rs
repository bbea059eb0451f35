// State is named by field: a tuple struct has no names.
use stategrad::nn::{Linear, Module};

#[derive(Module)]
struct Net(Linear);

fn main() {}
