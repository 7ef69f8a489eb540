//! The fuzz targets' corpora and the inputs that once failed them (`fuzz/seeds/TARGET`, `fuzz/regressions/TARGET`),
//! replayed through the same checks as the fuzzer's (`fuzz/checks`), so that the normal suite keeps them passing
//! without nightly or libFuzzer.

#[path = "../../../fuzz/checks/mod.rs"]
mod check;

use std::path::Path;

/// Feeds every file under `fuzz/{seeds,regressions}/target` to `check`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
        for entry in dir {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "{} fails {target}'s check", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn the_checkpoint_reader_corpus_passes() {
    let n = replay("checkpoint_reader", check::checkpoint_reader);
    assert!(n > 0, "no corpus for checkpoint_reader");
}

#[test]
fn the_record_batch_corpus_passes() {
    let n = replay("record_batch", check::record_batch);
    assert!(n > 0, "no corpus for record_batch");
}
