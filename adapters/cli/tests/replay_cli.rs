//! `dstream replay --lines` end to end: the real binary, checked against the harness's reference model.

use dstream_cli::model::AverageModel;
use std::process::Command;

fn dstream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dstream"))
}

fn fixture(name: &str) -> String {
    format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Spark's print output for the model's outputs, formatted independently of dstream's JVM formatter: for
/// values in [1e-3, 1e7) Rust's `{:?}` and Java's `Double.toString` agree (shortest digits, at least one decimal).
fn expected(lines: &[&[u8]], per_batch: usize, num: usize, interval_ms: i64) -> String {
    let rule = "-".repeat(43);
    let mut m = AverageModel::new();
    let mut s = String::new();
    for (i, chunk) in lines.chunks(per_batch).enumerate() {
        let outs: Vec<(String, f64)> = chunk.iter().filter_map(|l| m.feed(l)).collect();
        s.push_str(&format!("{rule}\nTime: {} ms\n{rule}\n", (i as i64 + 1) * interval_ms));
        for (k, v) in outs.iter().take(num) {
            assert!(*v == 0.0 || (1e-3..1e7).contains(&v.abs()), "{v} outside the range this check covers");
            s.push_str(&format!("({k},{v:?})\n"));
        }
        if outs.len() > num {
            s.push_str("...\n");
        }
        s.push('\n');
    }
    s
}

#[test]
fn replays_the_lab_fixture_exactly() {
    let path = fixture("lab.txt");
    let text = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = text.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n').collect();
    for (per_batch, num) in [(200, 10), (7, 3), (2000, 2000), (1, 1)] {
        let out = dstream()
            .args(["replay", "--lines", &path, "--records-per-batch", &per_batch.to_string(), "--print"])
            .arg(num.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected(&lines, per_batch, num, 2000));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("replayed 2000 records (0 malformed)"), "{err}");
    }
}

#[test]
fn malformed_lines_are_skipped_and_reported_with_their_position() {
    let dir = std::env::temp_dir().join(format!("dstream-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.txt");
    std::fs::write(&file, b"a,1\r\nb\nc, 2\na,2\n\xff,1\n").unwrap();
    let out = dstream().args(["replay", "--lines"]).arg(&file).args(["--batch-interval", "500ms"]).output().unwrap();
    assert!(out.status.success());
    let lines: Vec<&[u8]> = vec![b"a,1", b"b", b"c, 2", b"a,2", b"\xff,1"];
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected(&lines, 200, 10, 500));
    let err = String::from_utf8(out.stderr).unwrap();
    for off in [1, 2, 4] {
        assert!(err.contains(&format!("partition 0 offset {off}:")), "{err}");
    }
    assert!(err.contains("replayed 5 records (3 malformed) in 1 batches"), "{err}");

    let out = dstream().args(["replay", "--lines"]).arg(&file).args(["--on-malformed", "fail"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("partition 0 offset 1"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_flags_and_missing_files_are_one_line_and_non_zero() {
    for args in [
        vec!["replay", "--lines", "x", "--batch-interval", "2x"],
        vec!["replay", "--lines", "x", "--records-per-batch", "-1"],
        vec!["replay", "--lines", "x", "--records-per-batch", "0"],
        vec!["replay", "--lines", "/nonexistent/file"],
        vec!["replay", "--nope"],
    ] {
        let out = dstream().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("dstream: "), "{err}");
    }
}

#[test]
fn spark_order_prints_even_letters_first_as_local_2_does() {
    // Under local[2] a one-letter key's partition is its character code mod 2; Spark prints partition 0 first,
    // arrival order within each partition.
    let path = fixture("lab.txt");
    let out = dstream()
        .args(["replay", "--lines", &path, "--records-per-batch", "200", "--print", "1000", "--order", "spark"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = text.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n').collect();
    // The running averages are the arrival-order ones, only printed in another order: compute them in arrival
    // order, then print in partition order.
    let mut m = AverageModel::new();
    let rule = "-".repeat(43);
    let mut want = String::new();
    for (i, chunk) in lines.chunks(200).enumerate() {
        let outs: Vec<(String, f64)> = chunk.iter().filter_map(|l| m.feed(l)).collect();
        want.push_str(&format!("{rule}\nTime: {} ms\n{rule}\n", (i + 1) * 2000));
        for parity in [0, 1] {
            for (k, v) in outs.iter().filter(|(k, _)| k.as_bytes()[0] % 2 == parity) {
                want.push_str(&format!("({k},{v:?})\n"));
            }
        }
        want.push('\n');
    }
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}
