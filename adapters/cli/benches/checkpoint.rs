//! Checkpoint cost: writing and loading 1,000,000 distinct keys, and checkpointing as a share of batch time for
//! the lab job at 100,000 records per batch. Run with `cargo bench -p dstream-cli --bench checkpoint`.
//! Files go to a temporary directory on the same filesystem as `target/`, with real fsyncs.

use dstream_adapters::checkpoint::{CheckpointStore, NextOffset};
use dstream_adapters::recovery::{restore, Checkpointer};
use dstream_cli::lab::{LabConfig, LabJob};
use dstream_core::{BatchTimer, Clock, Duration, Engine, ManualClock, RecordBatch, Time};
use std::time::Instant;

const INTERVAL: Duration = Duration(2000);

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-checkpoint");
    std::fs::create_dir_all(&base).expect("create bench dir");
    tempfile::tempdir_in(base).expect("temp dir")
}

fn million_keys() {
    const KEYS: usize = 1_000_000;
    let mut clock = ManualClock::new(Time(0));
    let mut engine = Engine::new(
        LabJob::new(LabConfig { print: None, ..LabConfig::default() }),
        BatchTimer::first_start(clock.now(), INTERVAL),
    );
    let mut batch = RecordBatch::with_capacity(KEYS, KEYS * 16);
    let mut line = String::new();
    for i in 0..KEYS {
        use std::fmt::Write;
        line.clear();
        write!(line, "key-{i:07},{}", i % 26).unwrap();
        batch.push(0, i as i64, 0, None, line.as_bytes());
    }
    clock.advance(INTERVAL);
    let t = engine.poll_due(clock.now()).unwrap();
    engine.run_batch(t, &mut batch, &clock).unwrap();
    assert_eq!(engine.job().snapshot().len(), KEYS);

    let dir = bench_dir();
    let fingerprint = dstream_cli::lab::fingerprint("avg", 1, engine.job().config(), INTERVAL);
    let mut ck = Checkpointer::new(CheckpointStore::open(dir.path()).unwrap(), fingerprint, 1);
    let next = [NextOffset { partition: 0, offset: KEYS as i64 }];
    let (mut writes, mut loads) = (Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let path = ck.save(&mut engine, &next, &[]).unwrap().unwrap();
        writes.push(ms(start.elapsed()));
        size = std::fs::metadata(&path).unwrap().len();

        let start = Instant::now();
        let loaded = ck.load().unwrap().unwrap();
        let resumed = restore(loaded.checkpoint, LabJob::new(LabConfig::default()), INTERVAL, clock.now()).unwrap();
        loads.push(ms(start.elapsed()));
        assert_eq!(resumed.engine.job().checkpoint().state.entries.len(), KEYS);
    }
    println!(
        "checkpoint of 1,000,000 keys ({:.1} MB): write {:.1} ms (encode from the live state + write + fsync + rename + dir fsync), \
         load {:.1} ms (read + CRC + decode + rebuild state), medians of 5",
        size as f64 / 1e6,
        median(writes),
        median(loads)
    );
}

/// Median (processing, checkpoint) ms per batch of the lab job at 100,000 records per batch.
fn lab_share(background: bool) -> (f64, f64) {
    const RECORDS: usize = 100_000;
    const BATCHES: usize = 50;
    let mut clock = ManualClock::new(Time(0));
    let mut engine = Engine::new(LabJob::new(LabConfig::default()), BatchTimer::first_start(clock.now(), INTERVAL));
    let dir = bench_dir();
    let mut ck = Checkpointer::new(
        CheckpointStore::open(dir.path()).unwrap(),
        dstream_cli::lab::fingerprint("avg", 2, engine.job().config(), INTERVAL),
        1,
    );
    if background {
        ck = ck.in_background();
    }
    // The lab generator's messages: a letter and a value 0-25, over two partitions.
    let mut batch = RecordBatch::with_capacity(RECORDS, RECORDS * 6);
    let mut next = [NextOffset { partition: 0, offset: 0 }, NextOffset { partition: 1, offset: 0 }];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut process, mut save) = (Vec::new(), Vec::new());
    for _ in 0..BATCHES {
        batch.clear();
        for i in 0..RECORDS {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let msg = [b'a' + (seed % 26) as u8, b',', b'0' + ((seed >> 8) % 10) as u8];
            let p = i % 2;
            batch.push(p as i32, next[p].offset, 0, None, &msg);
            next[p].offset += 1;
        }
        clock.advance(INTERVAL);
        let t = engine.poll_due(clock.now()).unwrap();
        let start = Instant::now();
        engine.run_batch(t, &mut batch, &clock).unwrap();
        process.push(ms(start.elapsed()));
        let start = Instant::now();
        ck.after_batch(&mut engine, &next, &[]).unwrap().unwrap();
        save.push(ms(start.elapsed()));
    }
    ck.flush().unwrap();
    (median(process), median(save))
}

fn report_lab_share() {
    for (background, how) in
        [(false, "inline (encode + write + 2 fsyncs)"), (true, "background writer (encode + hand-off)")]
    {
        let (p, s) = lab_share(background);
        println!(
            "lab job, 100,000 records per batch, checkpoint {how}: processing {p:.2} ms, checkpoint {s:.3} ms per batch \
             (medians of 50) = {:.3}% of the 2 s batch interval, {:.1}% of processing time",
            100.0 * s / INTERVAL.millis() as f64,
            100.0 * s / p
        );
    }
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    million_keys();
    report_lab_share();
}
