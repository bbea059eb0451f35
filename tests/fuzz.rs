//! The stable fuzz driver: seeded mutations (truncate, flip, splice, grow headers, insert
//! JSON tokens, ...) of valid files, fed to the safetensors loader, the JSON state and
//! optimizer loaders and the IDX reader. Every input must give `Ok` or a typed `Err`;
//! a panic fails the test with the input that caused it (an abort fails the process).
//!
//! `cargo test` runs 5,000 inputs per target; `STATEGRAD_FUZZ_INPUTS=N` runs `N` per
//! target (`.ci/run`: 250,000 x 4 = 1,000,000) and prints the counts. The same targets run
//! under libFuzzer with `cargo fuzz run <target>` in `fuzz/` where a nightly toolchain exists.
use std::panic::{catch_unwind, AssertUnwindSafe};

mod fuzzing;

#[test]
fn mutated_files_give_ok_or_a_typed_error_never_a_panic() {
    let per_target: usize = std::env::var("STATEGRAD_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let mut total = 0usize;
    for (t, (name, run)) in fuzzing::TARGETS.iter().enumerate() {
        let seeds = fuzzing::seeds(name);
        // Each valid seed must itself load: the mutations start from real files.
        for s in &seeds {
            assert!(run(s), "{name}: a valid seed was rejected");
        }
        let mut accepted = 0usize;
        let mut corpus = seeds.clone();
        let mut rng = fuzzing::Rng(0x5eed_0000 + t as u64);
        for i in 0..per_target {
            let base = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            let input = fuzzing::mutate(&mut rng, base, other);
            total += 1;
            match catch_unwind(AssertUnwindSafe(|| run(&input))) {
                Ok(ok) => {
                    accepted += usize::from(ok);
                    // Accepted mutants become bases: mutations compound past the first checks.
                    if ok && corpus.len() < 512 {
                        corpus.push(input.clone());
                    }
                }
                Err(_) => {
                    failures.push(format!("{name} input {i}: {:?}", &input[..input.len().min(200)]));
                    if failures.len() > 5 {
                        break;
                    }
                }
            }
        }
        println!("fuzz {name}: {per_target} inputs, {accepted} accepted (Ok), the rest typed errors");
    }
    std::panic::set_hook(hook);
    println!("fuzz: {total} inputs over {} targets, {} panics", fuzzing::TARGETS.len(), failures.len());
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
    assert_eq!(total, per_target * fuzzing::TARGETS.len());
}

#[test]
fn the_seeds_are_valid_files() {
    // The driver's premise: unmutated seeds parse (so mutations probe deep paths, not only
    // the first magic check).
    use stategrad::nn::checkpoint::state_dict_from_safetensors;
    for s in fuzzing::seeds("safetensors") {
        assert_eq!(state_dict_from_safetensors(&s, "seed").unwrap().len(), 9);
    }
    for s in fuzzing::seeds("state_json") {
        assert_eq!(serde_json::from_slice::<stategrad::nn::StateDict>(&s).unwrap().len(), 9);
    }
    for s in fuzzing::seeds("optimizer_json") {
        serde_json::from_slice::<stategrad::nn::optim::OptimizerState>(&s).unwrap();
    }
}
