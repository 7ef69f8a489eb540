//! The Apache Kafka test support itself: provisioned from Maven on first use, a single KRaft broker that serves
//! requests, and every JVM it started gone after a drop and after the test process is killed.

mod common;

use common::{broker_disabled, kafka_cluster as start_cluster};
use dstream_adapters::kafka::{Client, ClientConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone, at most `within`.
fn gone_within(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The resident set of `pid` in MiB, from /proc.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

#[test]
fn a_single_broker_serves_requests_and_is_stopped_on_drop() {
    if broker_disabled() {
        return;
    }
    let started = Instant::now();
    let cluster = start_cluster(1);
    let took = started.elapsed();
    let pid = cluster.pid(0).expect("running");
    let dir = cluster.dir().to_path_buf();
    eprintln!(
        "Apache Kafka {} (1 node) serving after {:.1} s (provisioning included if not cached); JVM RSS {} MiB",
        cluster.version(),
        took.as_secs_f64(),
        rss_mib(pid)
    );
    let mut c = Client::connect(&[cluster.addr()], ClientConfig::default()).unwrap();
    assert!(c.create_topic("served", 2, 1).unwrap());
    assert_eq!(c.partitions("served").unwrap(), vec![0, 1]);
    drop(cluster);
    assert!(!alive(pid), "the JVM {pid} runs on after the drop");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// Set in the child process of the test below: start a broker, say its JVM's pid, and wait to be killed.
const ORPHAN_ENV: &str = "DSTREAM_TEST_KAFKA_ORPHAN";

#[test]
fn the_jvms_die_with_the_test_process_that_started_them() {
    if std::env::var_os(ORPHAN_ENV).is_some() {
        let cluster = start_cluster(1);
        println!("jvm {}", cluster.pid(0).unwrap());
        // Killed by the parent test; the cluster is never dropped.
        std::thread::sleep(Duration::from_secs(600));
        unreachable!("the parent kills this process");
    }
    if broker_disabled() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_jvms_die_with_the_test_process_that_started_them", "--nocapture", "--test-threads=1"])
        .env(ORPHAN_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let jvm: u32 = loop {
        let line = lines.next().expect("the child says its JVM's pid").unwrap();
        // The harness may have printed "test NAME ... " on the same line.
        if let Some((_, pid)) = line.rsplit_once("jvm ") {
            break pid.trim().parse().unwrap();
        }
    };
    assert!(alive(jvm));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(gone_within(jvm, Duration::from_secs(10)), "the JVM {jvm} outlived the process that started it");
}
