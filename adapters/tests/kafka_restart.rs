//! The broker stops mid-run and comes back (tansu on SeaweedFS S3, so its data survives): the run waits,
//! resumes, and loses or double-counts nothing.

mod common;

use common::*;
use dstream_adapters::broker::{SeaweedS3, Tansu};
use dstream_harness::model::AverageModel;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn broker_restart_mid_run_loses_and_duplicates_nothing() {
    if broker().is_none() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let s3 = SeaweedS3::start(data.path()).expect("start SeaweedFS");
    let env = s3.tansu_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut tansu = Tansu::start_with("s3://tansu/", &env).expect("start tansu on S3");
    let addr = tansu.addr().to_string();
    generate(&addr, 600, 11, &[]);

    // 200 records per 200 ms batch; 12 batches are room for all 1000 records even after the outage.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", &addr, "--starting-offsets", "earliest", "--batches", "12"])
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
    tansu.kill();
    std::thread::sleep(Duration::from_millis(1500));
    tansu.restart().expect("restart tansu");
    generate(&addr, 400, 12, &[]);

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
    drop(s3);
}
