//! Fuzz target: see `check::checkpoint_reader` (fuzz/checks/mod.rs) for what it checks.
#![no_main]

#[path = "../checks/mod.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::checkpoint_reader(data));
