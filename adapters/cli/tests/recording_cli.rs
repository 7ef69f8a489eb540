//! `dstream replay FILE`, `dstream recording dump` and `dstream recording build`, end to end with the real binary.

use dstream_harness::text::from_text;
use std::path::PathBuf;
use std::process::{Command, Output};

fn dstream(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dstream")).args(args).output().expect("the dstream binary runs")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

/// `tests/fixtures/lab.rec` worked out by hand: running averages per key, Spark's print layout.
fn lab_expected() -> String {
    let rule = "-".repeat(43);
    let batch = |t: i64, lines: &[&str]| {
        let mut s = format!("{rule}\nTime: {t} ms\n{rule}\n");
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push('\n');
        s
    };
    [
        // x: 18, then (18+9)/2; p: 22, then (22+3)/2; z: 1.
        batch(2000, &["(x,18.0)", "(p,22.0)", "(z,1.0)", "(x,13.5)", "(p,12.5)"]),
        // x: (18+9+0)/3; q: 25; p: (22+3+11)/3.
        batch(4000, &["(x,9.0)", "(q,25.0)", "(p,12.0)"]),
        // z: (1+24)/2, (1+24+2)/3.
        batch(6000, &["(z,12.5)", "(z,9.0)"]),
    ]
    .concat()
}

#[test]
fn replay_of_text_and_built_binary_print_the_same_as_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture("lab.rec");
    let out = dstream(&["replay".as_ref(), text.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), lab_expected());

    let bin = dir.path().join("lab.dsrec");
    let out = dstream(&["recording".as_ref(), "build".as_ref(), text.as_os_str(), "-o".as_ref(), bin.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&bin).unwrap().starts_with(b"\x89dstrec\n"));
    let out = dstream(&["replay".as_ref(), bin.as_os_str()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), lab_expected());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("replayed 10 records (0 malformed) in 3 batches"), "{err}");

    // dump gives a text form that parses to the same recording as the original fixture.
    let out = dstream(&["recording".as_ref(), "dump".as_ref(), bin.as_os_str()]);
    assert!(out.status.success());
    let dumped = from_text(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(dumped, from_text(&std::fs::read_to_string(&text).unwrap()).unwrap());
}

#[test]
fn a_corrupt_recording_is_one_line_naming_the_frame_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("lab.dsrec");
    let text = fixture("lab.rec");
    let out = dstream(&["recording".as_ref(), "build".as_ref(), text.as_os_str(), "-o".as_ref(), bin.as_os_str()]);
    assert!(out.status.success());
    let mut bytes = std::fs::read(&bin).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    let out = dstream(&["replay".as_ref(), bin.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("batch frame 2") && err.contains("checksum"), "{err}");
    // The batches before the corrupt frame were replayed and printed.
    assert!(String::from_utf8(out.stdout).unwrap().contains("Time: 4000 ms"));

    bytes.truncate(bytes.len() - 3);
    std::fs::write(&bin, &bytes).unwrap();
    let out = dstream(&["recording".as_ref(), "dump".as_ref(), bin.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("truncated recording: batch frame 2 at byte"), "{err}");
}

#[test]
fn bad_text_and_missing_arguments_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("bad.rec");
    std::fs::write(&t, "dstream-recording 1\n--- batch\n[p=x] a,1\n").unwrap();
    let out = dstream(&["replay".as_ref(), t.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 3"), "{err}");
    let out = dstream(&["replay".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}
