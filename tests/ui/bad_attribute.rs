// A misspelt attribute is an error, not ignored.
use stategrad::nn::{Linear, Module};

#[derive(Module)]
struct Net {
    #[module(skipp)]
    fc: Linear,
}

fn main() {}
