//! Resuming `run_job` from saved offsets and state (what a checkpoint holds), on tansu and Apache Kafka: every
//! offset is counted once.

#[macro_use]
mod common;

use common::*;
use dstream_adapters::kafka::direct::{OutOfRangePolicy, StartingOffsets};
use dstream_adapters::kafka::ClientConfig;
use dstream_adapters::run::{run_job, CompletedBatch, Resume, RunError, RunHooks, RunOptions, RunSummary, Start};
use dstream_cli::lab::{LabCheckpoint, LabConfig, LabJob};
use dstream_core::{BatchInfo, BatchTimer, Clock, Duration, Engine, OffsetRange};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Default)]
struct Saved {
    state: Option<LabCheckpoint>,
    offsets: Vec<(i32, i64)>,
    batches: Vec<BatchInfo>,
    averages: Vec<(String, f64)>,
}

impl RunHooks<LabJob> for Saved {
    fn after_batch(
        &mut self,
        b: &mut CompletedBatch<'_, LabJob>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.state = Some(b.engine.job().checkpoint());
        self.offsets = b.next_offsets.to_vec();
        self.batches.push(b.info.clone());
        self.averages = b.engine.job().averages().into_iter().map(|(k, a)| (k.to_string(), a)).collect();
        Ok(())
    }
}

fn options(b: &TestBroker, topic: &str, batches: u64) -> RunOptions {
    RunOptions {
        brokers: vec![b.addr().to_string()],
        topic: topic.into(),
        batch_interval: Duration::from_millis(100),
        starting_offsets: StartingOffsets::Earliest,
        max_rate_per_partition: 3000, // 300 per partition per batch
        batches: Some(batches),
        on_out_of_range: OutOfRangePolicy::Fail,
        client: ClientConfig::default(),
        on_bad_batch: dstream_core::MalformedPolicy::Fail,
        more_topics: Vec::new(),
    }
}

/// Runs the lab job to its end, output and status lines discarded.
fn run(
    opts: &RunOptions,
    resume: Option<Resume<LabJob>>,
    hooks: &mut dyn RunHooks<LabJob>,
) -> Result<RunSummary, RunError> {
    let mut out = Vec::new();
    let start = match resume {
        Some(r) => Start::Resume(r),
        None => Start::Fresh(LabJob::new(LabConfig::default())),
    };
    run_job(opts, start, hooks, Arc::new(AtomicBool::new(false)), &mut out)
}

/// A resume point: offsets, an optional saved lab state, and the batch timer.
fn resume_at(offsets: Vec<(i32, i64)>, state: Option<LabCheckpoint>, timer: BatchTimer) -> Resume<LabJob> {
    let mut job = LabJob::new(LabConfig::default());
    if let Some(cp) = state {
        job.restore(cp).unwrap();
    }
    Resume { offsets, engine: Engine::new(job, timer), pending: Vec::new(), leader_epochs: Vec::new() }
}

/// A batch grid starting now.
fn grid_from_now(opts: &RunOptions) -> BatchTimer {
    BatchTimer::first_start(dstream_adapters::clock::SystemClock.now(), opts.batch_interval)
}

fn resume_from_saved_offsets_and_state_counts_every_offset_once(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 1000, 5, &[]);
    let mut first = Saved::default();
    let s = run(&options(b, t, 2), None, &mut first).unwrap();
    assert_eq!((s.batches, s.records), (2, 600));
    assert_eq!(first.offsets, vec![(0, 600)]);

    // Resume on a new grid from the saved offsets and state: 300 + 100 remain.
    let opts = options(b, t, 2);
    let timer = grid_from_now(&opts);
    let resume = resume_at(first.offsets.clone(), first.state.clone(), timer);
    let mut second = Saved::default();
    let s = run(&opts, Some(resume), &mut second).unwrap();
    assert_eq!((s.batches, s.records), (2, 400));
    assert_eq!(second.averages, model_of(lab_messages(5, 1000, 1).iter().flatten()).averages());
}

fn pending_batches_run_again_over_exactly_their_ranges(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 1000, 6, &[]);
    let mut first = Saved::default();
    run(&options(b, t, 1), None, &mut first).unwrap();
    // As if batch 2 ([300, 700)) had been generated but not completed before a crash.
    let last = first.batches[0].time;
    let pending = BatchInfo {
        time: last + Duration::from_millis(100),
        ranges: vec![OffsetRange { partition: 0, from: 300, until: 700 }],
    };
    let opts = options(b, t, 1);
    let mut resume = resume_at(
        vec![(0, 700)],
        first.state.clone(),
        BatchTimer::resume(last - Duration::from_millis(100), opts.batch_interval, pending.time),
    );
    resume.pending = vec![pending.clone()];
    let mut second = Saved::default();
    let s = run(&opts, Some(resume), &mut second).unwrap();
    // The pending batch (400 records), then one live batch of 300 (rate limit).
    assert_eq!((s.batches, s.records), (2, 700));
    assert_eq!(second.batches[0], pending);
    assert_eq!(second.batches[1].ranges, vec![OffsetRange { partition: 0, from: 700, until: 1000 }]);
    assert_eq!(second.averages, model_of(lab_messages(6, 1000, 1).iter().flatten()).averages());
}

#[derive(Default)]
struct Resets(Vec<dstream_adapters::kafka::direct::OffsetReset>, u64);

impl RunHooks<LabJob> for Resets {
    fn after_batch(
        &mut self,
        b: &mut CompletedBatch<'_, LabJob>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.1 += b.report.records as u64;
        Ok(())
    }
    fn on_reset(&mut self, r: &dstream_adapters::kafka::direct::OffsetReset) {
        self.0.push(*r);
    }
}

fn offsets_outside_the_log_follow_the_policy(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 500, 8, &[]);
    let run_with = |policy: OutOfRangePolicy| {
        let mut opts = options(b, t, 1);
        opts.on_out_of_range = policy;
        opts.max_rate_per_partition = 0;
        let timer = grid_from_now(&opts);
        // A saved offset beyond the log's end, as after the topic was deleted and created again.
        let resume = resume_at(vec![(0, 5000)], None, timer);
        let mut hooks = Resets::default();
        let r = run(&opts, Some(resume), &mut hooks);
        (r, hooks)
    };
    let (r, _) = run_with(OutOfRangePolicy::Fail);
    let err = r.expect_err("fails as Spark does");
    assert!(err.to_string().contains(&format!("offset 5000 of {t}-0 is out of range")), "{err}");
    assert!(err.to_string().contains("the log holds [0, 500)"), "{err}");
    let (r, hooks) = run_with(OutOfRangePolicy::Earliest);
    r.unwrap();
    assert_eq!((hooks.0.len(), hooks.0[0].from, hooks.0[0].to, hooks.1), (1, 5000, 0, 500));
    let (r, hooks) = run_with(OutOfRangePolicy::Latest);
    r.unwrap();
    assert_eq!((hooks.0.len(), hooks.0[0].from, hooks.0[0].to, hooks.1), (1, 5000, 500, 0));
}

/// Deletes the records of partition 0 of a topic before an offset (Kafka's DeleteRecords, through confluent-kafka).
const DELETE_BEFORE: &str = r#"
import sys
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
addr, topic, before = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": addr})
for f in admin.delete_records([TopicPartition(topic, 0, before)]).values():
    print(f.result().low_watermark)
"#;

#[test]
fn a_saved_offset_below_the_log_start_is_reported_against_the_real_log_start() {
    // Apache Kafka only: tansu does not implement DeleteRecords.
    let Some(b) = broker_of(Kind::Kafka) else { return };
    let t = &b.topic("avg");
    generate(b.addr(), t, 500, 8, &[]);
    assert_eq!(python(DELETE_BEFORE, &[b.addr(), t, "200"]).trim(), "200");
    let run_with = |policy: OutOfRangePolicy| {
        let mut opts = options(&b, t, 1);
        opts.on_out_of_range = policy;
        opts.max_rate_per_partition = 0;
        let timer = grid_from_now(&opts);
        // A saved offset the log no longer holds, as after retention deleted it.
        let resume = resume_at(vec![(0, 100)], None, timer);
        let mut hooks = Resets::default();
        let r = run(&opts, Some(resume), &mut hooks);
        (r, hooks)
    };
    let (r, _) = run_with(OutOfRangePolicy::Fail);
    let err = r.expect_err("fails as Spark does");
    assert!(
        err.to_string().contains(&format!("offset 100 of {t}-0 is out of range: the log holds [200, 500)")),
        "{err}"
    );
    let (r, hooks) = run_with(OutOfRangePolicy::Earliest);
    r.unwrap();
    let reset = hooks.0[0];
    assert_eq!(
        (hooks.0.len(), reset.from, reset.to, reset.earliest, reset.latest, hooks.1),
        (1, 100, 200, 200, 500, 300)
    );
}

fn saved_offsets_for_partitions_that_are_gone_are_a_clear_error(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 10, 1, &[]);
    let opts = options(b, t, 1);
    let timer = grid_from_now(&opts);
    let resume = resume_at(vec![(0, 0), (3, 0)], None, timer);
    let err = run(&opts, Some(resume), &mut Saved::default()).expect_err("partition 3 does not exist");
    assert!(err.to_string().contains("has no partition [3]"), "{err}");
}

/// Holds the first batch until well after the second batch's tick, then produces more records.
struct SlowFirstBatch {
    addr: String,
    topic: String,
    counts: Vec<usize>,
}

impl RunHooks<LabJob> for SlowFirstBatch {
    fn after_batch(
        &mut self,
        b: &mut CompletedBatch<'_, LabJob>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.counts.push(b.report.records);
        if self.counts.len() == 1 {
            // Slow processing: the next tick (time + interval) passes while this batch is still running.
            let late = b.info.time + b.engine.timer().interval() + Duration::from_millis(500);
            while dstream_adapters::clock::SystemClock.now() < late {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let mut c =
                dstream_adapters::kafka::Client::connect(std::slice::from_ref(&self.addr), ClientConfig::default())?;
            let values: Vec<&[u8]> = vec![b"z,1"; 50];
            let batch = dstream_adapters::kafka::records::encode_batch(
                &values,
                0,
                dstream_adapters::kafka::records::Codec::None,
            )?;
            c.produce(&self.topic, 0, batch, dstream_adapters::kafka::Acks::All)?;
        }
        Ok(())
    }
}

fn a_batch_holds_what_its_tick_saw_not_what_arrived_before_it_ran(b: &TestBroker) {
    let t = &b.topic("avg");
    generate(b.addr(), t, 100, 2, &[]);
    let mut opts = options(b, t, 3);
    opts.batch_interval = Duration::from_secs(1);
    opts.max_rate_per_partition = 0;
    let mut hooks = SlowFirstBatch { addr: b.addr().to_string(), topic: t.clone(), counts: vec![] };
    run(&opts, None, &mut hooks).unwrap();
    // Batch 2 was generated at its tick, before the 50 records existed, though it ran after they arrived.
    assert_eq!(hooks.counts, vec![100, 0, 50]);
}

on_both_brokers!(
    resume_from_saved_offsets_and_state_counts_every_offset_once,
    pending_batches_run_again_over_exactly_their_ranges,
    offsets_outside_the_log_follow_the_policy,
    saved_offsets_for_partitions_that_are_gone_are_a_clear_error,
    a_batch_holds_what_its_tick_saw_not_what_arrived_before_it_ran,
);
