//! `dstream generate` and `dstream run` against real brokers (tansu and Apache Kafka): the final averages equal an
//! independent model of exactly what was produced.

#[macro_use]
mod common;

use common::*;
use dstream_cli::model::AverageModel;
use std::time::{Duration, Instant};

fn rate_limited_batches_cover_exactly_what_was_produced(b: &TestBroker) {
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    generate(addr, topic, 2000, 42, &[]);
    // 1000 records/s per partition at 300 ms batches: 300 per batch, so 7 batches hold 2000.
    let out = dstream(&[
        "run",
        "--brokers",
        addr,
        "--topic",
        topic,
        "--starting-offsets",
        "earliest",
        "--batches",
        "7",
        "--batch-interval",
        "300ms",
        "--max-rate-per-partition",
        "1000",
        "--print",
        "100000",
    ]);
    let stdout = ok_stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(batch_record_counts(&stderr), vec![300, 300, 300, 300, 300, 300, 200], "{stderr}");
    let parts = lab_messages(42, 2000, 1);
    // Every record printed once, in offset order: the running averages match the model fed in that order.
    let mut model = AverageModel::new();
    let expected: Vec<(String, f64)> = parts[0].iter().map(|v| model.feed(v).unwrap()).collect();
    assert_eq!(printed_elements(&stdout), expected);
    let finals: Vec<(String, f64)> = final_averages(&stdout).into_iter().collect();
    assert_eq!(finals, model_of(parts.iter().flatten()).averages());
}

fn four_partitions(b: &TestBroker) {
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    generate(addr, topic, 4000, 7, &["--partitions", "4", "--compression", "lz4"]);
    let out = dstream(&[
        "run",
        "--brokers",
        addr,
        "--topic",
        topic,
        "--starting-offsets",
        "earliest",
        "--batches",
        "2",
        "--batch-interval",
        "200ms",
        "--print",
        "100000",
    ]);
    let stdout = ok_stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(batch_record_counts(&stderr), vec![4000, 0], "{stderr}");
    let parts = lab_messages(7, 4000, 4);
    // A batch is processed in (partition, offset) order.
    let mut model = AverageModel::new();
    let expected: Vec<(String, f64)> = parts.iter().flatten().map(|v| model.feed(v).unwrap()).collect();
    assert_eq!(printed_elements(&stdout), expected);
    let finals: Vec<(String, f64)> = final_averages(&stdout).into_iter().collect();
    assert_eq!(finals, model_of(parts.iter().flatten()).averages());
}

fn latest_start_reads_only_new_records(b: &TestBroker) {
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    generate(addr, topic, 500, 1, &[]);
    // Starting at the log end (Spark's default), one batch sees nothing of what was there before.
    let out = dstream(&["run", "--brokers", addr, "--topic", topic, "--batches", "1", "--batch-interval", "200ms"]);
    ok_stdout(&out);
    assert_eq!(batch_record_counts(&String::from_utf8_lossy(&out.stderr)), vec![0]);
}

#[test]
fn unreachable_broker_is_one_line_and_nonzero_exit() {
    let port = dstream_adapters::broker::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let out = dstream(&["run", "--brokers", &addr, "--batches", "1"]);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("no broker answers at {addr}")), "{stderr}");
    let out = dstream(&["generate", "--brokers", &addr, "--count", "1"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

fn unknown_topic_is_one_line_and_nonzero_exit(b: &TestBroker) {
    let out = dstream(&["run", "--brokers", b.addr(), "--topic", "nope", "--batches", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("topic \"nope\" does not exist"), "{stderr}");
}

fn a_recorded_run_replays_to_the_same_output(b: &TestBroker) {
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    generate(addr, topic, 1500, 3, &["--partitions", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.rec");
    let file = file.to_str().unwrap();
    let live = ok_stdout(&dstream(&[
        "run",
        "--brokers",
        addr,
        "--topic",
        topic,
        "--starting-offsets",
        "earliest",
        "--batches",
        "4",
        "--batch-interval",
        "200ms",
        "--max-rate-per-partition",
        "1000",
        "--record",
        file,
    ]));
    assert_eq!(live.matches("Time: ").count(), 4);
    assert_eq!(ok_stdout(&dstream(&["replay", file])), live);
    // `record` writes the same batches and prints nothing.
    let file2 = dir.path().join("rec.rec");
    let file2 = file2.to_str().unwrap();
    let out = dstream(&[
        "record",
        "--brokers",
        addr,
        "--topic",
        topic,
        "--out",
        file2,
        "--starting-offsets",
        "earliest",
        "--batches",
        "2",
        "--batch-interval",
        "200ms",
    ]);
    assert_eq!(ok_stdout(&out), "");
    let replayed = ok_stdout(&dstream(&["replay", file2]));
    let elements = printed_elements(&replayed);
    assert_eq!(elements.len(), 10, "print(10) of the first batch's 1500 elements; the second batch is empty");
    assert_eq!(batch_record_counts(&String::from_utf8_lossy(&out.stderr)), vec![1500, 0]);
    // Issue 14 item 11: a recording of no batch writes no file, and says so rather than "recorded 0 batches".
    let none = dir.path().join("none.rec");
    let out =
        dstream(&["record", "--brokers", addr, "--topic", topic, "--out", none.to_str().unwrap(), "--batches", "0"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("recorded nothing: no batch completed, so") && !err.contains("recorded 0"), "{err}");
    assert!(!none.exists());
}

on_both_brokers!(
    rate_limited_batches_cover_exactly_what_was_produced,
    four_partitions,
    latest_start_reads_only_new_records,
    unknown_topic_is_one_line_and_nonzero_exit,
    a_recorded_run_replays_to_the_same_output,
);
