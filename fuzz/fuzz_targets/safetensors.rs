//! libFuzzer target: `fuzzing::safetensors` (see tests/fuzzing/mod.rs) on each input.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::safetensors(data);
});
