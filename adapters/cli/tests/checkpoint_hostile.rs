//! Checkpoint files that pass their checksum but hold what no run writes, or whose framing lies, met by
//! `dstream checkpoint show` and `dstream run --checkpoint`: never a panic (exit 101) or a hang; a corrupt newest
//! file falls back to the previous one, a state that cannot be right fails with one line naming the file.

mod common;

use common::{broker, checkpoint_rows, dstream, exit_within, generate, ok_stdout as ok};
use dstream_adapters::checkpoint::{
    encode, file_name, read_file, Checkpoint, CheckpointMeta, CheckpointStore, JobState, NextOffset, OperatorState,
};
use dstream_cli::lab::{Avg, LabCheckpoint, LabConfig};
use dstream_core::state::{StateEntry, StateSnapshot};
use dstream_core::{Duration, Key, Time};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A lab checkpoint after batch `t` (ms, interval 100 ms) holding `entries` as (key, sum, count).
fn lab_checkpoint(t: i64, entries: &[(&str, i128, u64)]) -> Checkpoint<JobState> {
    let entries = entries
        .iter()
        .map(|&(k, sum, n)| (Key::new(k), StateEntry { state: Avg::new(sum, n), updated_at: Time(t) }))
        .collect::<Vec<_>>();
    let lab = LabCheckpoint { initialized: true, state: StateSnapshot { num_partitions: 2, entries } };
    let op = OperatorState {
        id: "map_with_state#0".into(),
        kind: "map_with_state".into(),
        len: lab.state.entries.len() as u64,
        bytes: postcard::to_stdvec(&lab).unwrap(),
    };
    Checkpoint {
        meta: CheckpointMeta {
            leader_epochs: Vec::new(),
            fingerprint: dstream_cli::lab::fingerprint("avg", 1, &LabConfig::default(), Duration(100)),
            time: Time(t),
            zero: Time(0),
            interval: Duration(100),
            next_offsets: vec![NextOffset { partition: 0, offset: 3 }],
            pending: vec![],
        },
        state: vec![op],
    }
}

/// `dstream checkpoint show DIR`, which must exit within a minute.
fn show(dir: &Path) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["checkpoint", "show", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    exit_within(&mut child, std::time::Duration::from_secs(60));
    child.wait_with_output().unwrap()
}

/// Exit status 1 (an error, not a panic) ending with one error line, returned.
fn failure_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("dstream: "), "{err}");
    last.to_string()
}

/// Issue 14 item 5: a section length near 2^64 in the newest file is reported and the previous checkpoint shown.
#[test]
fn show_falls_back_over_a_length_near_2_64() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(tmp.path()).unwrap();
    store.save(&lab_checkpoint(100, &[("a", 6, 3)])).unwrap();
    let newest = store.save(&lab_checkpoint(200, &[("a", 8, 4)])).unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    for len in [u64::MAX, u64::MAX - 20, u64::MAX - 25, u64::MAX - 31] {
        bytes[12..20].copy_from_slice(&len.to_le_bytes());
        std::fs::write(&newest, &bytes).unwrap();
        let out = show(tmp.path());
        assert_eq!(checkpoint_rows(&ok(&out)), vec![("a".to_string(), 6, 3)], "{}", stderr(&out));
        assert!(stderr(&out).contains("warning: skipped checkpoint"), "{}", stderr(&out));
    }
}

/// Issue 14 item 8: a key with sum 0 and a huge count hung `mean`; a count of 0 and duplicate keys were shown as
/// they were. Each is now one line naming the file.
#[test]
fn show_refuses_a_state_no_run_writes() {
    type Rows = &'static [(&'static str, i128, u64)];
    let cases: [(Rows, &str); 4] = [
        (&[("a", 0, 1 << 60), ("b", 0, 0)], "invalid"),
        (&[("a", 5, 0)], "invalid"),
        (&[("a", i128::MAX, 1)], "invalid"),
        (&[("a", 1, 1), ("b", 2, 2), ("a", 3, 3)], r#"key "a" appears twice"#),
    ];
    for (entries, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let path = CheckpointStore::open(tmp.path()).unwrap().save(&lab_checkpoint(100, entries)).unwrap();
        let out = show(tmp.path());
        let err = failure_line(&out);
        assert!(err.contains(want) && err.contains(path.to_str().unwrap()), "{entries:?}: {err}");
        assert!(out.stdout.is_empty(), "{entries:?}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // A zero sum over a huge count that is otherwise valid is shown, promptly.
    let tmp = tempfile::tempdir().unwrap();
    CheckpointStore::open(tmp.path()).unwrap().save(&lab_checkpoint(100, &[("z", 0, 1 << 60)])).unwrap();
    let out = show(tmp.path());
    assert_eq!(ok(&out), format!("z\t0\t{}\t0.0\n", 1u64 << 60));
}

/// Issue 14 item 11: a key holding a tab, newline, carriage return or backslash stays one line and one field.
#[test]
fn show_escapes_keys_that_would_break_its_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = [("a\tb", 2, 1), ("c\nd", 4, 2), ("e\\f\rg", 3, 1)];
    CheckpointStore::open(tmp.path()).unwrap().save(&lab_checkpoint(100, &entries)).unwrap();
    let rows = checkpoint_rows(&ok(&show(tmp.path())));
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys, [r"a\tb", r"c\nd", r"e\\f\rg"]);
}

/// Issue 14 items 5 and 8 with a real broker: `run` skips a newest file with a length near 2^64 or a batch time
/// near 2^63 (which wrapped the grid) for the previous one and resumes exactly; a newest file whose state lists
/// a key twice, or a count of 0, stops the run with one line naming the file.
#[test]
fn run_falls_back_or_fails_clearly_on_hostile_checkpoints() {
    let Some(b) = broker() else { return };
    let addr = b.addr();
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let ck_s = ck.to_str().unwrap();
    generate(addr, "avg", 300, 3, &[]);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--brokers", addr, "--starting-offsets", "earliest", "--batch-interval", "100ms"];
        args.extend_from_slice(&["--max-rate-per-partition", "1000", "--checkpoint", ck_s]);
        args.extend_from_slice(extra);
        dstream(&args)
    };
    let total = |dir: &Path| -> u64 {
        checkpoint_rows(&ok(&dstream(&["checkpoint", "show", dir.to_str().unwrap()]))).iter().map(|r| r.2).sum()
    };
    ok(&run(&["--batches", "1"]));
    assert_eq!(total(&ck), 100);
    let store = CheckpointStore::open_read_only(&ck);
    let (real_time, real_path) = store.list().unwrap()[0].clone();
    let real: Checkpoint<JobState> = read_file(&real_path).unwrap();
    let later = |edit: &dyn Fn(&mut Checkpoint<JobState>)| {
        let mut cp = real.clone();
        cp.meta.time = Time(real_time.0 + 100);
        edit(&mut cp);
        let path = ck.join(file_name(Time(real_time.0 + 100)));
        std::fs::write(&path, encode(&cp).unwrap()).unwrap();
        path
    };

    // A length near 2^64, then a batch time near 2^63: each newest file is skipped, the real one resumed.
    let torn = later(&|_| {});
    let mut bytes = std::fs::read(&torn).unwrap();
    bytes[12..20].copy_from_slice(&(u64::MAX - 25).to_le_bytes());
    std::fs::write(&torn, &bytes).unwrap();
    let out = run(&["--batches", "1"]);
    ok(&out);
    assert!(
        stderr(&out).contains("warning: skipped checkpoint") && stderr(&out).contains("truncated"),
        "{}",
        stderr(&out)
    );
    assert_eq!(total(&ck), 200);
    let (real_time, real_path) = store.list().unwrap()[0].clone();
    let real: Checkpoint<JobState> = read_file(&real_path).unwrap();
    let mut wrapped = real.clone();
    wrapped.meta.time = Time(i64::MAX - 50);
    wrapped.meta.pending.clear();
    std::fs::write(ck.join(file_name(Time(i64::MAX - 50))), encode(&wrapped).unwrap()).unwrap();
    let out = run(&["--batches", "1"]);
    ok(&out);
    assert!(stderr(&out).contains("batch time 9223372036854775757 ms is out of range"), "{}", stderr(&out));
    assert_eq!(total(&ck), 300);
    std::fs::remove_file(ck.join(file_name(Time(i64::MAX - 50)))).unwrap();

    // A key listed twice, then a count of 0: one line naming the file, nothing resumed.
    let _ = real_time;
    let real_path = store.list().unwrap()[0].1.clone();
    let real: Checkpoint<JobState> = read_file(&real_path).unwrap();
    let t = real.meta.time.0 + 100;
    let lab_edit = |f: &dyn Fn(&mut LabCheckpoint)| {
        let mut cp = real.clone();
        cp.meta.time = Time(t);
        let mut lab: LabCheckpoint = postcard::from_bytes(&cp.state[0].bytes).unwrap();
        f(&mut lab);
        cp.state[0].bytes = postcard::to_stdvec(&lab).unwrap();
        let path = ck.join(file_name(Time(t)));
        std::fs::write(&path, encode(&cp).unwrap()).unwrap();
        path
    };
    let dup = lab_edit(&|lab| {
        let first = lab.state.entries[0].clone();
        lab.state.entries.push(first);
    });
    let err = failure_line(&run(&["--batches", "1"]));
    assert!(err.contains(dup.to_str().unwrap()) && err.contains("appears twice"), "{err}");
    let zero = lab_edit(&|lab| lab.state.entries[0].1.state = Avg::new(0, 0));
    let err = failure_line(&run(&["--batches", "1"]));
    assert!(err.contains(zero.to_str().unwrap()) && err.contains("invalid"), "{err}");
}

/// Found by the checkpoint_reader fuzz target (fuzz/regressions/checkpoint_reader): a CRC-valid file whose
/// fingerprint claims 2^32 - 1 partitions made the check of its offsets allocate a slot per partition (64 GiB)
/// before finding that it lists one. Now it is an invalid file like any other: the previous checkpoint is shown.
#[test]
fn show_falls_back_over_a_partition_count_near_2_32() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(tmp.path()).unwrap();
    store.save(&lab_checkpoint(100, &[("a", 6, 3)])).unwrap();
    let mut huge = lab_checkpoint(200, &[("a", 8, 4)]);
    huge.meta.fingerprint.partitions = u32::MAX;
    std::fs::write(tmp.path().join(file_name(Time(200))), encode(&huge).unwrap()).unwrap();
    let out = show(tmp.path());
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("checkpoint-200") && err.contains("next offsets leave out partition 1"), "{err}");
    assert_eq!(checkpoint_rows(&ok(&out)), [("a".to_string(), 6, 3)]);
}
