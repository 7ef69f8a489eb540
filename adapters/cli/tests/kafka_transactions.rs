//! Transactional input on Apache Kafka: a transactional producer (confluent-kafka from PyPI) writes committed and
//! aborted transactions interleaved with plain records. read_committed reads the committed and plain records and
//! holds its batches at the last stable offset while a transaction is open; read_uncommitted reads every record;
//! neither hands a transaction marker to the job, and resuming from saved offsets counts every record once.

#[macro_use]
mod common;

use common::*;
use dstream_adapters::kafka::direct::{OutOfRangePolicy, RangeFetcher, StartingOffsets};
use dstream_adapters::kafka::{Client, ClientConfig, IsolationLevel};
use dstream_adapters::run::{run_job, CompletedBatch, Resume, RunHooks, RunOptions, RunSummary, Start};
use dstream_cli::generate::LabMessages;
use dstream_cli::lab::{LabCheckpoint, LabConfig, LabJob};
use dstream_core::{BatchTimer, Clock, Duration, Engine, OffsetRange, RecordBatch, RecordSource};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Carries out a plan (JSON, argv[3]) with a plain and a transactional producer: steps ["plain", partition,
/// values], ["begin"], ["txn", partition, values], ["commit"], ["abort"], ["hold"] (say "open" with the offsets
/// delivered so far, then wait for a line on stdin). Every produce is flushed before the next step, so records of
/// both producers interleave in the log as the plan orders them. Ends by printing "done".
const PRODUCE_PLAN: &str = r#"
import sys, json
from confluent_kafka import Producer
addr, topic, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
delivered = []
def report(err, msg):
    if err is not None:
        raise SystemExit("delivery failed: %s" % err)
    delivered.append([msg.partition(), msg.offset()])
plain = Producer({"bootstrap.servers": addr, "linger.ms": 0, "enable.idempotence": False})
tx = Producer({"bootstrap.servers": addr, "linger.ms": 0, "transactional.id": "dstream-test-" + topic})
tx.init_transactions(30)
for step in plan:
    op = step[0]
    if op in ("plain", "txn"):
        p = plain if op == "plain" else tx
        for v in step[2]:
            p.produce(topic, v.encode(), partition=step[1], on_delivery=report)
        if p.flush(30) != 0:
            raise SystemExit("not delivered in time")
    elif op == "begin":
        tx.begin_transaction()
    elif op == "commit":
        tx.commit_transaction(30)
    elif op == "abort":
        tx.abort_transaction(30)
    elif op == "hold":
        print("open " + json.dumps(delivered), flush=True)
        sys.stdin.readline()
print("done", flush=True)
"#;

/// What became of a record of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Plain,
    Committed,
    Aborted,
}

/// A plan for [`PRODUCE_PLAN`] built step by step, with lab messages as values, and each value's fate.
struct Plan {
    steps: Vec<serde_json::Value>,
    records: Vec<(Fate, Vec<u8>)>,
    open: Vec<usize>,
    gen: LabMessages,
}

impl Plan {
    fn new(seed: u64) -> Plan {
        Plan { steps: vec![], records: vec![], open: vec![], gen: LabMessages::new(seed) }
    }

    fn values(&mut self, n: usize, fate: Fate) -> Vec<String> {
        let mut buf = vec![];
        (0..n)
            .map(|_| {
                self.gen.next_into(&mut buf);
                self.records.push((fate, buf.clone()));
                String::from_utf8(buf.clone()).unwrap()
            })
            .collect()
    }

    fn plain(&mut self, partition: i32, n: usize) -> &mut Self {
        let v = self.values(n, Fate::Plain);
        self.steps.push(serde_json::json!(["plain", partition, v]));
        self
    }

    fn begin(&mut self) -> &mut Self {
        self.steps.push(serde_json::json!(["begin"]));
        self
    }

    /// Records of the open transaction; their fate is settled by `commit` or `abort`.
    fn txn(&mut self, partition: i32, n: usize) -> &mut Self {
        let start = self.records.len();
        let v = self.values(n, Fate::Committed);
        self.open.extend(start..self.records.len());
        self.steps.push(serde_json::json!(["txn", partition, v]));
        self
    }

    fn end(&mut self, commit: bool) -> &mut Self {
        for i in self.open.drain(..) {
            self.records[i].0 = if commit { Fate::Committed } else { Fate::Aborted };
        }
        self.steps.push(serde_json::json!([if commit { "commit" } else { "abort" }]));
        self
    }

    fn hold(&mut self) -> &mut Self {
        self.steps.push(serde_json::json!(["hold"]));
        self
    }

    fn json(&self) -> String {
        serde_json::Value::Array(self.steps.clone()).to_string()
    }

    /// The values whose fate is one of `fates`.
    fn tally(&self, fates: &[Fate]) -> Vec<Vec<u8>> {
        self.records.iter().filter(|r| fates.contains(&r.0)).map(|r| r.1.clone()).collect()
    }
}

/// Starts [`PRODUCE_PLAN`] on `plan`.
fn producer(addr: &str, topic: &str, plan: &Plan) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(PRODUCE_PLAN)
        .args([addr, topic, &plan.json()])
        .env("PYTHONPATH", confluent_kafka())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3")
}

/// Carries out a plan without holds to its end.
fn produce(addr: &str, topic: &str, plan: &Plan) {
    let out = producer(addr, topic, plan).wait_with_output().unwrap();
    assert!(out.status.success(), "the producer failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
}

fn options(b: &TestBroker, topic: &str, isolation: IsolationLevel, rate: u64, batches: Option<u64>) -> RunOptions {
    RunOptions {
        brokers: vec![b.addr().to_string()],
        topic: topic.into(),
        batch_interval: Duration::from_millis(100),
        starting_offsets: StartingOffsets::Earliest,
        max_rate_per_partition: rate,
        batches,
        on_out_of_range: OutOfRangePolicy::Fail,
        client: ClientConfig { isolation_level: isolation, ..ClientConfig::default() },
        on_bad_batch: dstream_core::MalformedPolicy::Fail,
        more_topics: Vec::new(),
    }
}

/// What the hook saw: per batch its ranges and records, and the state and offsets after the last one.
#[derive(Default)]
struct Seen {
    batches: Vec<(Vec<OffsetRange>, usize)>,
    state: Option<LabCheckpoint>,
    offsets: Vec<(i32, i64)>,
    averages: Vec<(String, f64)>,
}

impl Seen {
    fn note(&mut self, b: &mut CompletedBatch<'_, LabJob>) {
        self.batches.push((b.info.ranges.clone(), b.report.records));
        self.state = Some(b.engine.job().checkpoint());
        self.offsets = b.next_offsets.to_vec();
        self.averages = b.engine.job().averages().into_iter().map(|(k, a)| (k.to_string(), a)).collect();
    }
}

impl RunHooks<LabJob> for Seen {
    fn after_batch(
        &mut self,
        b: &mut CompletedBatch<'_, LabJob>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.note(b);
        Ok(())
    }
}

fn run(opts: &RunOptions, start: Start<LabJob>, hooks: &mut dyn RunHooks<LabJob>, stop: Arc<AtomicBool>) -> RunSummary {
    let mut out = Vec::new();
    run_job(opts, start, hooks, stop, &mut out).expect("the run succeeds")
}

fn fresh() -> Start<LabJob> {
    Start::Fresh(LabJob::new(LabConfig::default()))
}

/// The log end of every partition, as (partition, offset).
fn log_end(addr: &str, topic: &str, partitions: &[i32]) -> Vec<(i32, i64)> {
    let mut c = Client::connect(&[addr.to_string()], ClientConfig::default()).unwrap();
    c.list_offsets(topic, partitions, dstream_adapters::kafka::OffsetSpec::Latest).unwrap()
}

#[test]
fn read_committed_reads_committed_and_plain_records_once_and_read_uncommitted_all_but_markers() {
    let Some(b) = broker_of(Kind::Kafka) else { return };
    let t = &b.topic("txn");
    let mut c = Client::connect(&[b.addr().to_string()], ClientConfig::default()).unwrap();
    c.create_topic(t, 2, 1).unwrap();
    let mut plan = Plan::new(21);
    plan.plain(0, 50).begin().txn(0, 40).txn(1, 30).plain(0, 20).plain(1, 20).end(true);
    plan.begin().txn(0, 35).plain(0, 15).txn(1, 25).end(false).plain(1, 10);
    plan.begin().txn(1, 45).txn(0, 5).end(true);
    plan.begin().txn(0, 30).plain(1, 5).end(false).plain(0, 10);
    produce(b.addr(), t, &plan);
    let ends = log_end(b.addr(), t, &[0, 1]);
    let committed = plan.tally(&[Fate::Plain, Fate::Committed]);
    let everything = plan.tally(&[Fate::Plain, Fate::Committed, Fate::Aborted]);
    // Offsets are records plus one marker per transaction and partition it wrote to.
    assert_eq!(ends.iter().map(|e| e.1).sum::<i64>(), everything.len() as i64 + 7);

    // read_committed, 20 offsets per partition per batch, stopped after 3 batches and resumed from the saved
    // offsets and state: every batch's range is consecutive, every committed record counted once.
    let stop = || Arc::new(AtomicBool::new(false));
    let opts = options(&b, t, IsolationLevel::ReadCommitted, 200, Some(3));
    let mut first = Seen::default();
    let s1 = run(&opts, fresh(), &mut first, stop());
    assert_eq!((s1.batches, s1.malformed), (3, 0));
    assert_eq!(first.offsets, vec![(0, 60), (1, 60)]);
    let opts = options(&b, t, IsolationLevel::ReadCommitted, 200, Some(12));
    let mut job = LabJob::new(LabConfig::default());
    job.restore(first.state.clone().unwrap()).unwrap();
    let timer = BatchTimer::first_start(dstream_adapters::clock::SystemClock.now(), opts.batch_interval);
    let resume = Resume {
        offsets: first.offsets.clone(),
        engine: Engine::new(job, timer),
        pending: vec![],
        leader_epochs: Vec::new(),
    };
    let mut second = Seen::default();
    let s2 = run(&opts, Start::Resume(resume), &mut second, stop());
    assert_eq!(s2.malformed, 0, "a transaction marker reached the job");
    assert_eq!(second.offsets, ends, "read to the log end");
    assert_eq!(s1.records + s2.records, committed.len() as u64);
    let counted: usize = first.batches.iter().chain(&second.batches).map(|b| b.1).sum();
    assert_eq!(counted, committed.len());
    assert_eq!(second.averages, model_of(committed.iter()).averages());

    // Stored batches run again after a restart (into a batch, not in segments) drop the same records.
    for (level, want) in [(IsolationLevel::ReadCommitted, &committed), (IsolationLevel::ReadUncommitted, &everything)] {
        let cfg = ClientConfig { isolation_level: level, ..ClientConfig::default() };
        let mut fetcher = RangeFetcher::new(Client::connect(&[b.addr().to_string()], cfg).unwrap(), t);
        let mut batch = RecordBatch::new();
        for from in (0..ends.iter().map(|e| e.1).max().unwrap()).step_by(20) {
            let ranges: Vec<OffsetRange> = ends
                .iter()
                .map(|&(partition, end)| OffsetRange { partition, from: from.min(end), until: (from + 20).min(end) })
                .collect();
            fetcher.fetch_ranges(&ranges, &mut batch).unwrap();
        }
        let mut read = vec![];
        batch.for_each_record(&mut |r| read.push(r.value.to_vec())).unwrap();
        let (mut read, mut want) = (read, want.clone());
        read.sort();
        want.sort();
        assert_eq!(read, want, "{level}");
    }

    // read_uncommitted, one batch: every record, markers left out.
    let opts = options(&b, t, IsolationLevel::ReadUncommitted, 0, Some(1));
    let mut all = Seen::default();
    let s = run(&opts, fresh(), &mut all, stop());
    assert_eq!((s.records, s.malformed), (everything.len() as u64, 0));
    assert_eq!(all.offsets, ends);
    assert_eq!(all.averages, model_of(everything.iter()).averages());

    // `dstream run --isolation-level`: both levels, and the default is read_uncommitted.
    for (level, want) in
        [(Some("read_committed"), &committed), (Some("read_uncommitted"), &everything), (None, &everything)]
    {
        let mut args = vec!["run", "--brokers", b.addr(), "--topic", t, "--starting-offsets", "earliest"];
        args.extend(["--batches", "1", "--batch-interval", "200ms", "--print", "100000", "--ui", "off"]);
        if let Some(level) = level {
            args.extend(["--isolation-level", level]);
        }
        let out = dstream(&args);
        let stdout = ok_stdout(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(batch_record_counts(&stderr), vec![want.len() as u64], "{level:?}: {stderr}");
        assert!(stderr.contains(" 0 malformed"), "{level:?}: {stderr}");
        let want: std::collections::BTreeMap<String, f64> = model_of(want.iter()).averages().into_iter().collect();
        assert_eq!(final_averages(&stdout), want, "{level:?}");
    }
    let out = dstream(&["run", "--brokers", b.addr(), "--topic", t, "--isolation-level", "serializable"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read_committed or read_uncommitted"), "{stderr}");
}

/// Without transactions both levels read the same records, on tansu as on Apache Kafka.
fn without_transactions_both_levels_read_every_record(b: &TestBroker) {
    let t = &b.topic("plain");
    generate(b.addr(), t, 700, 23, &["--partitions", "2"]);
    let want = model_of(lab_messages(23, 700, 2).iter().flatten()).averages();
    for level in [IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted] {
        let mut seen = Seen::default();
        let s = run(&options(b, t, level, 2000, Some(3)), fresh(), &mut seen, Arc::default());
        assert_eq!((s.records, s.malformed), (700, 0), "{level}");
        assert_eq!(seen.offsets, vec![(0, 350), (1, 350)], "{level}");
        assert_eq!(seen.averages, want, "{level}");
    }
}

on_both_brokers!(without_transactions_both_levels_read_every_record);

/// Commits the held transaction once `hold_for` batches ended at the last stable offset, and stops the run once
/// `total` records were read.
struct CommitLater {
    seen: Seen,
    lso: i64,
    hold_for: usize,
    at_lso: usize,
    producer: Option<ChildStdin>,
    total: usize,
    stop: Arc<AtomicBool>,
}

impl RunHooks<LabJob> for CommitLater {
    fn after_batch(
        &mut self,
        b: &mut CompletedBatch<'_, LabJob>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.seen.note(b);
        if self.producer.is_some() && b.next_offsets == [(0, self.lso)] {
            self.at_lso += 1;
            if self.at_lso == self.hold_for {
                let mut stdin = self.producer.take().unwrap();
                stdin.write_all(b"commit\n")?;
            }
        }
        let read: usize = self.seen.batches.iter().map(|b| b.1).sum();
        if read >= self.total {
            self.stop.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn an_open_transaction_holds_read_committed_batches_at_the_last_stable_offset_until_it_commits() {
    let Some(b) = broker_of(Kind::Kafka) else { return };
    let t = &b.topic("txn-open");
    let mut c = Client::connect(&[b.addr().to_string()], ClientConfig::default()).unwrap();
    c.create_topic(t, 1, 1).unwrap();
    let mut plan = Plan::new(22);
    plan.plain(0, 30).begin().txn(0, 20).plain(0, 10).hold().end(true).plain(0, 5);
    let mut child = producer(b.addr(), t, &plan);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let open = lines.next().expect("the producer holds its transaction").unwrap();
    let delivered: Vec<(i32, i64)> = serde_json::from_str(open.strip_prefix("open ").unwrap()).unwrap();
    // The transaction's first record is the last stable offset while it is open.
    let lso = delivered[30].1;
    assert_eq!((lso, delivered.len()), (30, 60));
    let everything = plan.tally(&[Fate::Plain, Fate::Committed]);

    // read_uncommitted reads the open transaction's records at once: up to the high watermark.
    let mut all = Seen::default();
    let s = run(&options(&b, t, IsolationLevel::ReadUncommitted, 0, Some(1)), fresh(), &mut all, Arc::default());
    assert_eq!((s.records, all.offsets.clone()), (60, vec![(0, 60)]));

    // read_committed: batches stop at the last stable offset (the 30 plain records before the transaction) until
    // the transaction commits; then the rest, the marker left out.
    let stop = Arc::new(AtomicBool::new(false));
    let mut hooks = CommitLater {
        seen: Seen::default(),
        lso,
        hold_for: 5,
        at_lso: 0,
        producer: child.stdin.take(),
        total: everything.len(),
        stop: stop.clone(),
    };
    // At most 30 s of batches: a test that cannot end is a failure, not a hang.
    let s = run(&options(&b, t, IsolationLevel::ReadCommitted, 0, Some(300)), fresh(), &mut hooks, stop);
    // Not committed by the hook (the test fails below): closing its input commits, so that the producer ends.
    drop(hooks.producer.take());
    assert_eq!(lines.next().map(|l| l.unwrap()).as_deref(), Some("done"));
    assert!(child.wait().unwrap().success());
    let batches = &hooks.seen.batches;
    let held: Vec<&(Vec<OffsetRange>, usize)> = batches.iter().take_while(|b| b.0[0].until <= lso).collect();
    assert!(held.len() >= 5, "{batches:?}");
    assert_eq!(held.iter().map(|b| b.1).sum::<usize>(), 30, "{batches:?}");
    assert!(batches.iter().all(|b| b.0[0].until <= lso || b.0[0].from >= lso), "a batch straddled the LSO");
    assert_eq!((s.records, s.malformed), (everything.len() as u64, 0));
    assert_eq!(hooks.seen.offsets, log_end(b.addr(), t, &[0]));
    assert_eq!(hooks.seen.averages, model_of(everything.iter()).averages());
}
