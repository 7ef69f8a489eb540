//! Fuzz target: see `check::record_batch` (fuzz/checks/mod.rs) for what it checks.
#![no_main]

#[path = "../checks/mod.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::record_batch(data));
