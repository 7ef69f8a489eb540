//! A poison batch (one no reader can read: a compression bomb beyond the bound, or a damaged batch) on a real
//! broker: under `--on-malformed skip` its offsets are skipped, counted and reported in one line, and the run goes
//! on; a resume neither reads them again nor skips differently; under `fail` it stays a clear error.

mod common;

use common::{checkpoint_rows, dstream, model_of};
use dstream_adapters::kafka::direct::StartingOffsets;
use dstream_adapters::kafka::records::{encode_batch, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig};
use dstream_adapters::run::{run_job_to_end, CompletedBatch, Resume, RunHooks, RunOptions, Start};
use dstream_cli::lab::{LabConfig, LabJob};
use dstream_core::{BatchInfo, BatchTimer, Duration, Engine, Malformed, MalformedPolicy, OffsetRange, Time};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The bound on a decompressed batch the runs use, in MiB.
const BOUND_MIB: usize = 16;

/// Lab messages `key,value` numbered `from..until`.
fn messages(from: usize, until: usize) -> Vec<Vec<u8>> {
    (from..until).map(|i| format!("k{},{i}", i % 3).into_bytes()).collect()
}

fn produce(client: &mut Client, topic: &str, batch: bytes::Bytes) -> i64 {
    client.produce(topic, 0, batch, Acks::All).unwrap()
}

fn produce_good(client: &mut Client, topic: &str, msgs: &[Vec<u8>]) -> i64 {
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    produce(client, topic, encode_batch(&refs, 1000, Codec::None).unwrap())
}

/// Creates `topic` holding good records at offsets 0..10, a gzip bomb at 10, good records at 11..21, a damaged
/// batch at 21..=23 and good records at 24..29; returns the good messages.
fn poisoned_topic(client: &mut Client, topic: &str) -> Vec<Vec<u8>> {
    client.create_topic(topic, 1, 1).unwrap();
    let (before, after) = (messages(0, 10), messages(10, 20));
    assert_eq!(produce_good(client, topic, &before), 0);
    let bomb = common::bombs(4 * (BOUND_MIB << 20)).into_iter().find(|b| b.0 == "gzip").unwrap().1;
    assert_eq!(produce(client, topic, bomb), 10);
    assert_eq!(produce_good(client, topic, &after), 11);
    // A damaged batch (its checksum fails) at 21..=23, and good records after it.
    let refs: Vec<&[u8]> = [b"k0,100", b"k1,101", b"k2,102"].iter().map(|m| m.as_slice()).collect();
    let mut damaged = encode_batch(&refs, 1000, Codec::None).unwrap().to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert_eq!(produce(client, topic, bytes::Bytes::from(damaged)), 21);
    let tail = messages(20, 25);
    assert_eq!(produce_good(client, topic, &tail), 24);
    before.into_iter().chain(after).chain(tail).collect()
}

fn skip_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("dstream: skipped")).collect()
}

/// Total of the status lines' malformed counts.
fn malformed_in_status(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.starts_with("dstream: batch "))
        .map(|l| l.split(", ").nth(1).unwrap().strip_suffix(" malformed").unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_poison_batch_is_skipped_reported_once_and_not_read_again_after_a_resume() {
    let Some(broker) = common::broker() else { return };
    let addr = broker.addr().to_string();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).unwrap();
    let topic = "poison-cli";
    let mut good = poisoned_topic(&mut client, topic);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let ck = ck.to_str().unwrap();
    let mib = BOUND_MIB.to_string();
    let run = |policy: &str, batches: &str| {
        dstream(&[
            "run",
            "--brokers",
            &addr,
            "--topic",
            topic,
            "--starting-offsets",
            "earliest",
            "--batch-interval",
            "200ms",
            "--batches",
            batches,
            "--max-batch-mib",
            &mib,
            "--on-malformed",
            policy,
            "--checkpoint",
            ck,
            "--ui",
            "off",
        ])
    };

    // Under fail: a clear error naming the batch, nothing saved past it.
    let out = run("fail", "3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let too_large = format!(
        "record batch in {topic}-0 at offsets 10..=10 is too large: it inflates to more than {} bytes",
        BOUND_MIB << 20
    );
    assert!(stderr.contains(&too_large), "{stderr}");

    // Under skip: one line names the skipped offsets; the run goes on and its state holds every good record.
    let out = run("skip", "3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let want = [
        format!(
            "dstream: skipped offsets 10..=10 of partition 0 (unread): {too_large}, the bound on a decompressed batch"
        ),
        format!(
            "dstream: skipped offsets 21..=23 of partition 0 (unread): corrupt record batch in {topic}-0 at offsets \
             21..=23: checksum mismatch"
        ),
    ];
    assert_eq!(skip_lines(&stderr), want, "{stderr}");
    assert_eq!(malformed_in_status(&stderr), 4, "{stderr}");
    let state = |ck: &str| {
        let mut rows = checkpoint_rows(&common::ok_stdout(&dstream(&["checkpoint", "show", ck])));
        rows.sort();
        rows
    };
    let expected = |good: &[Vec<u8>]| model_of(good).sums();
    assert_eq!(state(ck), expected(&good));

    // More records, and a resume: the bomb is neither read again nor reported again; every record counts once.
    let more = messages(25, 30);
    assert_eq!(produce_good(&mut client, topic, &more), 29);
    good.extend(more);
    let out = run("skip", "2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(skip_lines(&stderr).is_empty(), "{stderr}");
    assert_eq!(malformed_in_status(&stderr), 0, "{stderr}");
    assert_eq!(state(ck), expected(&good));
}

/// Keeps each batch's malformed reports.
#[derive(Default)]
struct Reports(Vec<Malformed>);

impl RunHooks<LabJob> for Reports {
    fn after_batch(
        &mut self,
        b: &mut CompletedBatch<'_, LabJob>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.extend(b.report.malformed.iter().cloned());
        Ok(())
    }
    fn needs_records(&self) -> bool {
        false
    }
}

fn options(addr: &str, topic: &str, policy: MalformedPolicy, batches: u64) -> RunOptions {
    RunOptions {
        brokers: vec![addr.to_string()],
        topic: topic.into(),
        batch_interval: Duration::from_millis(100),
        starting_offsets: StartingOffsets::Earliest,
        max_rate_per_partition: 0,
        batches: Some(batches),
        on_out_of_range: dstream_adapters::kafka::direct::OutOfRangePolicy::Fail,
        client: ClientConfig { max_batch_bytes: BOUND_MIB << 20, ..ClientConfig::default() },
        on_bad_batch: policy,
        more_topics: Vec::new(),
    }
}

/// The state (key, average) and the malformed reports after running `pending` batches again (as after a restart)
/// and nothing live.
fn run_again(addr: &str, topic: &str, pending: Vec<BatchInfo>) -> (Vec<(String, f64)>, Vec<Malformed>) {
    let end = pending.last().unwrap().ranges[0].until;
    let timer = BatchTimer::resume(Time(0), Duration::from_millis(100), pending.last().unwrap().time);
    let engine = Engine::new(LabJob::new(LabConfig::default()), timer);
    let resume = Resume { offsets: vec![(0, end)], engine, pending, leader_epochs: Vec::new() };
    let mut reports = Reports::default();
    let mut out = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = options(addr, topic, MalformedPolicy::Skip, 0);
    let outcome = run_job_to_end(&opts, Start::Resume(resume), &mut reports, stop, &mut out).unwrap();
    let averages = outcome.resume.engine.job().averages().into_iter().map(|(k, a)| (k.to_string(), a)).collect();
    (averages, reports.0)
}

#[test]
fn batches_run_again_skip_exactly_what_the_live_run_skipped_however_they_are_cut() {
    let Some(broker) = common::broker() else { return };
    let addr = broker.addr().to_string();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).unwrap();
    let topic = "poison-lib";
    let good = poisoned_topic(&mut client, topic);
    let model = model_of(&good).averages();

    // The live run (segments read on the processing thread).
    let mut live = Reports::default();
    let mut out = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = options(&addr, topic, MalformedPolicy::Skip, 3);
    let outcome =
        run_job_to_end(&opts, Start::Fresh(LabJob::new(LabConfig::default())), &mut live, stop, &mut out).unwrap();
    let averages: Vec<(String, f64)> =
        outcome.resume.engine.job().averages().into_iter().map(|(k, a)| (k.to_string(), a)).collect();
    assert_eq!(averages, model);
    let spans = |m: &[Malformed]| m.iter().map(|m| (m.offset, m.last_offset)).collect::<Vec<_>>();
    assert_eq!(spans(&live.0), [(10, Some(10)), (21, Some(23))]);

    // The same offsets run again as stored batches, cut anywhere around the bomb: the same records, the same skip.
    for cuts in [vec![29], vec![10, 29], vec![11, 22, 29], vec![5, 10, 11, 21, 23, 29], vec![3, 17, 22, 24, 29]] {
        let mut from = 0;
        let pending: Vec<BatchInfo> = cuts
            .iter()
            .enumerate()
            .map(|(i, &until)| {
                let ranges = vec![OffsetRange { partition: 0, from, until }];
                from = until;
                BatchInfo { time: Time(100 * (i as i64 + 1)), ranges }
            })
            .collect();
        let (averages, malformed) = run_again(&addr, topic, pending);
        assert_eq!(averages, model, "cut at {cuts:?}");
        // A cut inside the damaged batch reports its part in each batch.
        let mut joined: Vec<(i64, Option<i64>)> = Vec::new();
        for (first, last) in spans(&malformed) {
            match joined.last_mut() {
                Some(prev) if prev.1 == Some(first - 1) => prev.1 = last,
                _ => joined.push((first, last)),
            }
        }
        assert_eq!(joined, spans(&live.0), "cut at {cuts:?}");
        assert_eq!(Malformed::total(&malformed), 4, "cut at {cuts:?}");
        assert!(malformed.iter().all(|m| live.0.iter().any(|l| l.reason == m.reason)), "cut at {cuts:?}");
    }
}
