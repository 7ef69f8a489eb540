//! The broker stops mid-run and comes back (tansu on SeaweedFS S3, so its data survives; Apache Kafka with its
//! log on disk): the run waits, resumes, and loses or double-counts nothing.

mod common;

use common::*;
use dstream_adapters::broker::{SeaweedS3, Tansu};
use dstream_cli::model::AverageModel;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn tansu_restart_mid_run_loses_and_duplicates_nothing() {
    if broker().is_none() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let s3 = SeaweedS3::start(data.path()).expect("start SeaweedFS");
    let env = s3.tansu_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut tansu = Tansu::start_with("s3://tansu/", &env).expect("start tansu on S3");
    let addr = tansu.addr().to_string();
    restart_mid_run(&addr, || {
        tansu.kill();
        std::thread::sleep(Duration::from_millis(1500));
        tansu.restart().expect("restart tansu");
    });
    drop(s3);
}

#[test]
fn kafka_restart_mid_run_loses_and_duplicates_nothing() {
    if broker_disabled() {
        return;
    }
    // A broker of this test's own: the outage must not reach other tests.
    let mut kafka = kafka_cluster(1);
    let addr = kafka.addr();
    restart_mid_run(&addr, || {
        kafka.kill(0);
        std::thread::sleep(Duration::from_millis(1500));
        let t = std::time::Instant::now();
        kafka.restart(0).expect("restart Apache Kafka");
        eprintln!("Apache Kafka serving again {:.1} s after its restart", t.elapsed().as_secs_f64());
    });
}

/// Generates 600 records, runs dstream over them, calls `outage` (which stops the broker at `addr` and starts it
/// again) after the first batch, then generates 400 more: the run must count each of the 1000 exactly once.
fn restart_mid_run(addr: &str, outage: impl FnOnce()) {
    generate(addr, "avg", 600, 11, &[]);

    // 200 records per 200 ms batch; 12 batches are room for all 1000 records even after the outage.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", addr, "--starting-offsets", "earliest", "--batches", "12"])
        .args(["--batch-interval", "200ms", "--max-rate-per-partition", "1000", "--print", "100000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    // The first batch's status line (after the web UI's address).
    let first = stderr.by_ref().map(|l| l.unwrap()).find(|l| !l.starts_with("dstream: web UI at ")).unwrap();
    assert!(first.contains(": 200 records"), "{first}");

    // The outage: SIGKILL, down for a while (a simulated outage, not a wait for an event), then back.
    outage();
    generate(addr, "avg", 400, 12, &[]);

    // The rest of stderr is read on the side, so that a run that does not finish fails the test instead of hanging.
    let rest = std::thread::spawn(move || stderr.map(|l| l.unwrap()).collect::<Vec<String>>());
    let status = exit_within(&mut child, Duration::from_secs(60));
    let rest = rest.join().unwrap();
    assert!(status.success(), "{rest:?}");
    let printed = reader.join().unwrap();
    let total: u64 = batch_record_counts(&first).iter().chain(batch_record_counts(&rest.join("\n")).iter()).sum();
    assert_eq!(total, 1000, "{rest:?}");
    let mut model = AverageModel::new();
    let expected: Vec<(String, f64)> = [lab_messages(11, 600, 1), lab_messages(12, 400, 1)]
        .iter()
        .flatten()
        .flatten()
        .map(|v| model.feed(v).unwrap())
        .collect();
    assert_eq!(printed_elements(&printed), expected);
}
