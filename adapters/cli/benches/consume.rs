//! Consume 1,000,000 lab messages from a local broker: the bare client, then `dstream run` end to end, same run;
//! on tansu, then on Apache Kafka (one KRaft node). `cargo bench -p dstream-cli --bench consume` (figures for
//! README.md); `DSTREAM_BENCH_BROKER=tansu` or `kafka` runs one of them only.
//!
//! Both sides get the best of [`TRIES`] tries in one process: the bare client reads the first million records
//! [`TRIES`] times over, `dstream run` processes [`TRIES`] batches of a million records each (the topic holds
//! that many millions). Its first batch, in a process just started (no memory of its own yet, every buffer's pages
//! faulted in for the first time), is reported on its own.

#[path = "common/lab_topic.rs"]
mod lab_topic;

use dstream_adapters::broker::kafka::KafkaCluster;
use dstream_adapters::broker::Tansu;
use dstream_adapters::kafka::{Client, ClientConfig};
use std::process::Command;

use std::time::Instant;

const N: i64 = 1_000_000;

/// Tries per side: passes of the bare client, batches of `dstream run`.
const TRIES: usize = 5;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let only = std::env::var("DSTREAM_BENCH_BROKER").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wanted("tansu") {
        let broker = Tansu::start().expect("start tansu");
        println!("== tansu");
        bench(broker.addr());
    }
    if wanted("kafka") {
        let broker = KafkaCluster::start(1).expect("start Apache Kafka");
        println!("== Apache Kafka {}", broker.version());
        bench(&broker.addr());
    }
}

/// The whole bench against the broker at `addr`, on a topic `avg` it creates.
fn bench(addr: &str) {
    let addr = addr.to_string();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).expect("connect");
    lab_topic::produce(&mut client, (N * TRIES as i64) as u64);

    // The bare client: fetch and parse the first million records in place, best of TRIES.
    let mut best = f64::MAX;
    for _ in 0..TRIES {
        let t = Instant::now();
        assert!(lab_topic::read_first(&mut client, N) > 0);
        println!("  bare client pass: {:.3} s", t.elapsed().as_secs_f64());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let bare = N as f64 / best;
    println!("bare client: {N} records in {:.3} s = {:.2} M records/s", best, bare / 1e6);

    // dstream run end to end: TRIES batches of a million records each (a rate limit of ten million a second per
    // partition on a 100 ms grid), from the earliest offset. A batch's scheduling delay (from its tick to the start
    // of its processing: fixing its ranges and fetching its first records) plus its processing time is the time
    // from its tick to its completion.
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", &addr, "--starting-offsets", "earliest", "--batches", &TRIES.to_string()])
        .args(["--batch-interval", "100ms", "--max-rate-per-partition", "10000000"])
        .output()
        .expect("run dstream");
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("dstream: batch ")).collect();
    assert_eq!(lines.len(), TRIES, "{stderr}");
    let ms: Vec<i64> = lines
        .iter()
        .map(|line| {
            assert!(line.contains(&format!(": {N} records")), "{line}");
            let num_after = |key: &str| -> i64 {
                let rest = &line[line.find(key).expect(key) + key.len()..];
                rest.split(' ').next().unwrap().parse().unwrap()
            };
            num_after("processing ") + num_after("scheduling delay ")
        })
        .collect();
    let best_ms = *ms.iter().min().expect("batches");
    let run = N as f64 / (best_ms.max(1) as f64 / 1000.0);
    let first = N as f64 / (ms[0].max(1) as f64 / 1000.0);
    println!("  dstream run batches, tick to completion: {ms:?} ms (whole process {wall:.3} s)");
    println!(
        "dstream run: {N} records from tick to batch completion in {best_ms} ms = {:.2} M records/s ({:.2} of the \
         bare client); the first batch of the process: {} ms = {:.2} M records/s ({:.2} of the bare client)",
        run / 1e6,
        run / bare,
        ms[0],
        first / 1e6,
        first / bare
    );

    // Pipelined: ten batches of 100,000 (rate-limited ranges), so the fetch thread fixes and fetches batch k+1
    // while batch k is processed. Rate = records / (last completion - first tick). On a 10 ms grid the ten ticks
    // alone span 90 ms, so that figure shows the grid more than the job; on a 1 ms grid batches queue up and
    // the figure is the sustained throughput of a job that has fallen behind (the live job's worst case).
    for interval_ms in [10u64, 1] {
        let rate = (100_000 * 1000 / interval_ms).to_string();
        let interval = format!("{interval_ms}ms");
        let mut best_ms = i64::MAX;
        for _ in 0..3 {
            let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
                .args(["run", "--brokers", &addr, "--starting-offsets", "earliest", "--batches", "10"])
                .args(["--batch-interval", &interval, "--max-rate-per-partition", &rate])
                .output()
                .expect("run dstream");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
            let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("dstream: batch ")).collect();
            assert_eq!(lines.len(), 10, "{stderr}");
            assert!(lines.iter().all(|l| l.contains(": 100000 records")), "{stderr}");
            let field = |line: &str, key: &str| -> i64 {
                let rest = &line[line.find(key).expect(key) + key.len()..];
                rest.split(' ').next().unwrap().parse().unwrap()
            };
            let first = field(lines[0], "batch ");
            let last = lines[9];
            let end = field(last, "batch ") + field(last, "processing ") + field(last, "scheduling delay ");
            best_ms = best_ms.min(end - first);
        }
        let piped = N as f64 / (best_ms.max(1) as f64 / 1000.0);
        println!(
            "dstream run, 10 batches of 100,000 on a {interval_ms} ms grid: first tick to last completion {best_ms} ms \
             = {:.2} M records/s ({:.2} of the bare client)",
            piped / 1e6,
            piped / bare
        );
    }
}
