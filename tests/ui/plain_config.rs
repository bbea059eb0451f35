// A plain configuration struct of the user's own: it must be marked #[module(skip)].
use stategrad::nn::{Linear, Module};

struct Config {
    hidden: usize,
}

#[derive(Module)]
struct Net {
    fc: Linear,
    config: Config,
}

fn main() {}
