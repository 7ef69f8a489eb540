//! `dstream run --checkpoint` and `dstream checkpoint show` as a user meets them: resuming, a corrupt newest file,
//! no valid file, a checkpoint of another job, --reset-checkpoint, and directories that cannot be used; on tansu
//! and Apache Kafka.

#[macro_use]
mod common;

use common::{
    broker, broker_disabled, checkpoint_rows, dstream, generate, ok_stdout as ok, python, shared_kafka, TestBroker,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure: exit status 1 and exactly one line on stderr, which is returned.
fn one_line_failure(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// (key, sum, count) rows of `dstream checkpoint show`.
fn show(dir: &Path) -> Vec<(String, i128, u64)> {
    checkpoint_rows(&ok(&dstream(&["checkpoint", "show", dir.to_str().unwrap()])))
}

fn newest(dir: &Path) -> std::path::PathBuf {
    let store = dstream_adapters::checkpoint::CheckpointStore::open_read_only(dir);
    store.list().unwrap()[0].1.clone()
}

#[test]
fn an_unusable_checkpoint_directory_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let below = file.join("ck");
    // The directory is checked before any broker is contacted.
    let out = dstream(&["run", "--brokers", "127.0.0.1:1", "--checkpoint", below.to_str().unwrap()]);
    let err = one_line_failure(&out);
    assert!(err.starts_with("dstream: cannot create checkpoint directory"), "{err}");
    assert!(err.contains("a-file/ck"), "{err}");

    let out = dstream(&["checkpoint", "show", tmp.path().join("missing").to_str().unwrap()]);
    let err = one_line_failure(&out);
    assert!(err.starts_with("dstream: cannot list checkpoint directory"), "{err}");
    let out = dstream(&["checkpoint", "show", tmp.path().to_str().unwrap()]);
    assert!(one_line_failure(&out).contains("no checkpoint in"));

    let out = dstream(&["run", "--reset-checkpoint"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--checkpoint"), "{}", stderr(&out));
}

fn resume_fall_back_refuse_and_reset(b: &TestBroker) {
    let (addr, topic, other) = (b.addr(), &b.topic("avg"), &b.topic("other"));
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let ck_s = ck.to_str().unwrap();
    generate(addr, topic, 300, 5, &[]);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--brokers", addr, "--starting-offsets", "earliest", "--batch-interval", "100ms"];
        if !extra.contains(&"--topic") {
            args.extend_from_slice(&["--topic", topic]);
        }
        args.extend_from_slice(&["--max-rate-per-partition", "1000", "--checkpoint", ck_s]);
        args.extend_from_slice(extra);
        dstream(&args)
    };

    // 100 records per batch: two batches, then two more after a restart, which resumes where the first run ended.
    let first = run(&["--batches", "2"]);
    ok(&first);
    assert!(stderr(&first).contains("no checkpoint in"), "{}", stderr(&first));
    let after_two: u64 = show(&ck).iter().map(|r| r.2).sum();
    assert_eq!(after_two, 200);
    let second = run(&["--batches", "2"]);
    ok(&second);
    assert!(stderr(&second).contains("dstream: resuming from"), "{}", stderr(&second));
    let all = show(&ck);
    assert_eq!(all.iter().map(|r| r.2).sum::<u64>(), 300);

    // A corrupt newest file is reported and the previous checkpoint used.
    let path = newest(&ck);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let third = run(&["--batches", "1"]);
    ok(&third);
    let err = stderr(&third);
    assert!(err.contains("warning: skipped checkpoint") && err.contains("checksum mismatch"), "{err}");
    assert_eq!(show(&ck), all, "recomputing from the older checkpoint gives the same state");

    // Another topic's job is refused, saying what differs.
    generate(addr, other, 10, 1, &["--partitions", "2"]);
    let out = run(&["--batches", "1", "--topic", other]);
    let err = one_line_failure(&out);
    assert!(err.contains("belongs to a different job"), "{err}");
    assert!(err.contains(&format!(r#"topic: checkpoint has "{topic}", this run has "{other}""#)), "{err}");
    // More partitions than the checkpoint's is no difference (the topic grew); the topic is.
    assert!(!err.contains("partitions:"), "{err}");

    // No valid file at all: a clear error; --reset-checkpoint starts fresh on purpose.
    for (_, p) in dstream_adapters::checkpoint::CheckpointStore::open_read_only(&ck).list().unwrap() {
        std::fs::write(&p, b"garbage").unwrap();
    }
    let err = one_line_failure(&run(&["--batches", "1"]));
    assert!(err.contains("no valid checkpoint") && err.contains("--reset-checkpoint"), "{err}");
    let fresh = run(&["--batches", "1", "--reset-checkpoint"]);
    ok(&fresh);
    assert!(stderr(&fresh).contains("moved the old checkpoints to"), "{}", stderr(&fresh));
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 100);
}

fn ctrl_c_between_batches_saves_the_last_batch_whatever_the_interval(b: &TestBroker) {
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    generate(addr, topic, 50, 9, &[]);
    // A checkpoint is due every 100 batches only: the one batch of this run is saved because the run ends.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", addr, "--topic", topic, "--starting-offsets", "earliest", "--batch-interval", "1s"])
        .args(["--checkpoint", ck.to_str().unwrap(), "--checkpoint-every", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "dstream ended before its first batch: {seen}");
        seen.push_str(&line);
        if line.starts_with("dstream: batch ") {
            assert!(line.contains(": 50 records"), "{seen}");
            break;
        }
    }
    // The next batch is a second away: Ctrl-C reaches a run waiting for it.
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{status}: {seen}{rest}");
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 50, "{seen}{rest}");
}

on_both_brokers!(
    resume_fall_back_refuse_and_reset,
    ctrl_c_between_batches_saves_the_last_batch_whatever_the_interval,
    pending_batches_run_again_through_the_live_path
);

fn pending_batches_run_again_through_the_live_path(b: &TestBroker) {
    use dstream_adapters::checkpoint::{read_file, CheckpointStore, JobState, NextOffset};
    use dstream_core::{BatchInfo, Duration, OffsetRange};
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let ck_s = ck.to_str().unwrap();
    generate(addr, topic, 300, 9, &[]);
    let run = || {
        dstream(&[
            "run",
            "--brokers",
            addr,
            "--topic",
            topic,
            "--starting-offsets",
            "earliest",
            "--batch-interval",
            "100ms",
            "--max-rate-per-partition",
            "1000",
            "--batches",
            "1",
            "--print",
            "1000",
            "--checkpoint",
            ck_s,
        ])
    };
    ok(&run());
    // As if the run had generated the next batch ([100, 200)) and died before completing it.
    let mut cp = read_file::<JobState>(&newest(&ck)).unwrap();
    let pending = BatchInfo {
        time: cp.meta.time + Duration::from_millis(100),
        ranges: vec![OffsetRange { partition: 0, from: 100, until: 200 }],
    };
    cp.meta.pending = vec![pending.clone()];
    cp.meta.next_offsets = vec![NextOffset { partition: 0, offset: 200 }];
    CheckpointStore::open(&ck).unwrap().save(&cp).unwrap();

    let second = run();
    let out = ok(&second);
    let err = stderr(&second);
    // The pending batch has its status line and its output, as a live batch does; then one live batch follows.
    assert!(err.contains(&format!("dstream: batch {}: 100 records", pending.time)), "{err}");
    assert!(out.contains(&format!("Time: {}\n", pending.time)), "{out}");
    assert_eq!(common::batch_record_counts(&err), vec![100, 100], "{err}");
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 300);
}

/// Issue 14 item 9: while one `dstream run --checkpoint DIR` runs, a second on the same directory is refused with
/// one line naming the first's pid, and touches nothing; once the first has stopped, the directory is free.
#[test]
fn a_second_run_on_the_same_directory_is_refused_naming_the_holder() {
    let Some(b) = broker() else { return };
    let addr = b.addr();
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let ck_s = ck.to_str().unwrap();
    generate(addr, "avg", 60, 4, &[]);
    let args = ["run", "--brokers", addr, "--starting-offsets", "earliest", "--batch-interval", "200ms"];
    let mut first = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(args)
        .args(["--checkpoint", ck_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(first.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the first run ended before its first batch: {seen}");
        seen.push_str(&line);
        if line.starts_with("dstream: batch ") {
            break;
        }
    }
    let second = dstream(&[&args[..], &["--checkpoint", ck_s, "--batches", "1"]].concat());
    let msg = one_line_failure(&second);
    assert!(msg.contains(&format!("is in use by another process, pid {}", first.id())), "{msg}");
    assert!(msg.contains(ck_s) && msg.contains("another --checkpoint directory"), "{msg}");
    // The first run goes on undisturbed and stops cleanly with every record counted once.
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(first.id() as i32, libc::SIGINT) }, 0);
    let status = first.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{status}: {seen}{rest}");
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 60, "{seen}{rest}");
    let third = dstream(&[&args[..], &["--checkpoint", ck_s, "--batches", "1"]].concat());
    ok(&third);
    assert!(stderr(&third).contains("dstream: resuming from"), "{}", stderr(&third));
}

/// Issue 14 item 11: a dangling symbolic link as --checkpoint is named as such (it said "File exists").
#[test]
fn a_dangling_symlink_as_the_checkpoint_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("ck");
    std::os::unix::fs::symlink(tmp.path().join("gone"), &link).unwrap();
    let out = dstream(&["run", "--brokers", "127.0.0.1:1", "--checkpoint", link.to_str().unwrap()]);
    let err = one_line_failure(&out);
    assert!(err.contains("is a symbolic link to") && err.contains("gone, which does not exist"), "{err}");
    assert!(!err.contains("File exists"), "{err}");
}

/// Issue 14 item 11: a newest checkpoint that is a symbolic link is skipped with a warning naming it, and
/// `--reset-checkpoint` moves it aside with the rest.
#[test]
fn a_symlinked_newest_checkpoint_is_skipped_with_a_word() {
    use dstream_adapters::checkpoint::{encode, Checkpoint, CheckpointMeta, NextOffset};
    use dstream_cli::lab::{Avg, LabCheckpoint, LabConfig};
    use dstream_core::state::{StateEntry, StateSnapshot};
    use dstream_core::{Duration, Key, Time};
    let tmp = tempfile::tempdir().unwrap();
    let entries = vec![(Key::new("a"), StateEntry { state: Avg::new(4, 2), updated_at: Time(100) })];
    let lab = LabCheckpoint { initialized: true, state: StateSnapshot { num_partitions: 2, entries } };
    let op = dstream_adapters::checkpoint::OperatorState {
        id: "map_with_state#0".into(),
        kind: "map_with_state".into(),
        len: 1,
        bytes: postcard::to_stdvec(&lab).unwrap(),
    };
    let cp = Checkpoint {
        meta: CheckpointMeta {
            leader_epochs: Vec::new(),
            fingerprint: dstream_cli::lab::fingerprint("avg", 1, &LabConfig::default(), Duration(100)),
            time: Time(100),
            zero: Time(0),
            interval: Duration(100),
            next_offsets: vec![NextOffset { partition: 0, offset: 2 }],
            pending: vec![],
        },
        state: vec![op],
    };
    std::fs::write(tmp.path().join("checkpoint-100"), encode(&cp).unwrap()).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::write(&elsewhere, encode(&cp).unwrap()).unwrap();
    let link = tmp.path().join("checkpoint-200");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let out = dstream(&["checkpoint", "show", tmp.path().to_str().unwrap()]);
    assert_eq!(checkpoint_rows(&ok(&out)), vec![("a".to_string(), 4, 2)]);
    let err = stderr(&out);
    assert!(err.contains(&format!("warning: skipped checkpoint {}: a symbolic link", link.display())), "{err}");
}

/// Issue 14 item 11: negative and out-of-range values are value errors with clap's exit status 2, one line each
/// (negative numbers read as "unexpected argument '-1'"; some bad values exited 1).
#[test]
fn bad_values_are_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = tmp.path().join("lines.txt");
    std::fs::write(&lines, "a,1\n").unwrap();
    let lines = lines.to_str().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (&["run", "--print", "-1"], "invalid value '-1' for '--print"),
        (&["run", "--batch-interval", "-1s"], "invalid value '-1s' for '--batch-interval"),
        (&["run", "--batches", "-3"], "invalid value '-3' for '--batches"),
        (&["run", "--max-rate-per-partition", "-5"], "invalid value '-5'"),
        (&["run", "--brokers", ","], "--brokers is empty"),
        (&["generate", "--partitions", "0"], "invalid value '0' for '--partitions"),
        (&["generate", "--count", "-1"], "invalid value '-1' for '--count"),
        (&["replay", "--lines", lines, "--records-per-batch", "0"], "invalid value '0' for '--records-per-batch"),
        (&["replay", "--lines", lines, "--print", "-2"], "invalid value '-2' for '--print"),
    ];
    for (args, want) in cases {
        let out = dstream(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want) && !err.contains("unexpected argument"), "{args:?}: {err}");
    }
}

/// A checkpoint's offsets point into one log: after the topic is replaced, `run` names what changed and the way
/// on, and `--reset-checkpoint` starts over on the new log. `replace` deletes and re-creates the topic (its
/// records gone), however the broker allows.
fn a_replaced_topic_is_refused_naming_the_ids(addr: &str, topic: &str, replace: &mut dyn FnMut()) {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    let ck_s = ck.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--brokers", addr, "--topic", topic, "--starting-offsets", "earliest"];
        args.extend_from_slice(&["--batch-interval", "100ms", "--max-rate-per-partition", "1000", "--ui", "off"]);
        args.extend_from_slice(&["--checkpoint", ck_s]);
        args.extend_from_slice(extra);
        dstream(&args)
    };
    generate(addr, topic, 300, 5, &[]);
    ok(&run(&["--batches", "2"]));
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 200);
    replace();
    // The new log grows past the saved offsets (200): read from there, it would look like the old one's rest.
    generate(addr, topic, 500, 6, &[]);
    let err = one_line_failure(&run(&["--batches", "1"]));
    // The id `checkpoint show` names is the one the refusal names as the checkpoint's.
    let shown = stderr(&dstream(&["checkpoint", "show", ck_s]));
    let id = shown.split(", topic id ").nth(1).and_then(|r| r.split(')').next()).expect(&shown).to_string();
    assert!(err.contains(&format!("was taken from topic {topic:?} with id {id}, ")), "{err} / {shown}");
    assert!(err.contains("but the topic now has id ") && err.contains("--reset-checkpoint"), "{err}");
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 200, "the refused run changed nothing");
    let fresh = run(&["--batches", "1", "--reset-checkpoint"]);
    ok(&fresh);
    // From the new log's start: its first 100 records.
    let model: u64 = show(&ck).iter().map(|r| r.2).sum();
    assert_eq!(model, 100, "{}", stderr(&fresh));
    ok(&run(&["--batches", "1"]));
    assert_eq!(show(&ck).iter().map(|r| r.2).sum::<u64>(), 200, "resumed on the new log");
}

#[test]
fn tansu_restarted_without_its_data_is_a_replaced_topic() {
    let Some(mut t) = broker() else { return };
    let addr = t.addr().to_string();
    let mut tansu = Some(&mut t);
    a_replaced_topic_is_refused_naming_the_ids(&addr, "avg", &mut || {
        // Memory storage: on the same address, an empty broker where the topic is created again.
        tansu.take().expect("replaced once").restart().expect("restart tansu");
    });
}

/// Deletes a topic with confluent-kafka's admin client and waits until the cluster no longer lists it.
const DELETE_TOPIC: &str = r#"
import sys, time
from confluent_kafka.admin import AdminClient
addr, topic = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": addr})
for f in admin.delete_topics([topic], operation_timeout=30).values():
    f.result()
deadline = time.time() + 60
while topic in admin.list_topics(timeout=10).topics:
    assert time.time() < deadline, "the topic is still listed 60 s after its deletion"
    time.sleep(0.05)
print("deleted")
"#;

#[test]
fn a_kafka_topic_deleted_and_re_created_is_a_replaced_topic() {
    if broker_disabled() {
        return;
    }
    let addr = shared_kafka().addr();
    let topic = "avg-replaced";
    a_replaced_topic_is_refused_naming_the_ids(&addr, topic, &mut || {
        assert_eq!(python(DELETE_TOPIC, &[&addr, topic]).trim(), "deleted");
    });
}
