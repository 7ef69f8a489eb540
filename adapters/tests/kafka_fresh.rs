//! The fresh-machine path: no --brokers and nothing at the default address starts a local broker and the
//! generator; Ctrl-C stops a run gracefully with exit 0.

#[macro_use]
mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn no_broker_anywhere_provisions_tansu_and_the_generator() {
    if broker().is_none() {
        return;
    }
    let port = dstream_adapters::broker::free_port().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["--batches", "3", "--batch-interval", "500ms"])
        .env("DSTREAM_DEFAULT_BROKER", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let announce: Vec<&str> = stderr.lines().filter(|l| l.contains("starting a local tansu broker")).collect();
    assert_eq!(announce.len(), 1, "{stderr}");
    let counts = batch_record_counts(&stderr);
    assert_eq!(counts.len(), 3, "{stderr}");
    // The generator runs at 100 messages a second: a whole 500 ms batch holds some.
    assert!(counts[1..].iter().all(|&c| c > 0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!printed_elements(&stdout).is_empty());
}

fn ctrl_c_finishes_the_running_batch_and_exits_zero(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 10, 1, &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", b.addr(), "--topic", t, "--batch-interval", "200ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait for the first batch (after the web UI's address), then interrupt.
    let first =
        lines.by_ref().map(|l| l.unwrap()).find(|l| !l.starts_with("dstream: web UI at ")).expect("a status line");
    assert!(first.starts_with("dstream: batch "), "{first}");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // The rest of stderr is read on the side, so that a run that does not stop fails the test instead of hanging.
    let rest = std::thread::spawn(move || lines.map(|l| l.unwrap()).collect::<Vec<String>>());
    let exit = exit_within(&mut child, Duration::from_secs(10));
    let rest = rest.join().unwrap();
    assert!(exit.success(), "{exit} {rest:?}");
    assert!(rest.last().is_some_and(|l| l.starts_with("dstream: stopped after")), "{rest:?}");
}

on_both_brokers!(ctrl_c_finishes_the_running_batch_and_exits_zero);
