//! The live job: a fetch thread generates each batch at its tick (fixing offset ranges) and fetches exactly
//! those records; the calling thread runs the engine batch after batch and calls a hook after each.

use crate::clock::SystemClock;
use crate::kafka::direct::{
    DirectConfig, DirectStream, GeneratedBatch, OffsetReset, OutOfRangePolicy, StartingOffsets,
};
use crate::kafka::{Client, ClientConfig, KafkaError};
use crossbeam_channel::{unbounded, Receiver, Sender};
use dstream_core::lab::{LabCheckpoint, LabConfig, LabJob};
use dstream_core::{BatchInfo, BatchReport, BatchTimer, Clock, Duration, Engine, EngineError, RecordBatch, Time};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Everything `dstream run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Bootstrap brokers, HOST:PORT.
    pub brokers: Vec<String>,
    /// The topic.
    pub topic: String,
    /// The batch interval.
    pub batch_interval: Duration,
    /// Start offsets when not resuming.
    pub starting_offsets: StartingOffsets,
    /// Records per partition per second (0 = unlimited).
    pub max_rate_per_partition: u64,
    /// Stop after this many batches.
    pub batches: Option<u64>,
    /// The lab job's configuration.
    pub lab: LabConfig,
    /// Offsets that fell out of the log.
    pub on_out_of_range: OutOfRangePolicy,
    /// The Kafka client's settings.
    pub client: ClientConfig,
}

/// Where a resumed run starts: offsets, job state and the batch grid, e.g. from a checkpoint.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The next offset of every partition.
    pub offsets: Vec<(i32, i64)>,
    /// The job's state, if any.
    pub state: Option<LabCheckpoint>,
    /// The batch timer: its next tick is the first batch to run (missed ticks run at once, in order).
    pub timer: BatchTimer,
}

/// A batch that completed, as the per-batch hook sees it.
pub struct CompletedBatch<'a> {
    /// Its time and offset ranges.
    pub info: &'a BatchInfo,
    /// What the engine reported (printed text, delays, malformed records).
    pub report: &'a BatchReport,
    /// The records it processed, sorted by (partition, offset).
    pub records: &'a RecordBatch,
    /// The job after the batch.
    pub job: &'a LabJob,
    /// The next offset of every partition after this batch.
    pub next_offsets: &'a [(i32, i64)],
    /// The batch grid (zero and interval).
    pub timer: &'a BatchTimer,
    /// Records beyond this batch's ranges when it was generated.
    pub lag: i64,
}

/// Called by [`run_job`] on the processing thread.
pub trait RunHooks {
    /// After each completed batch, before the next starts; an error stops the run.
    fn after_batch(&mut self, batch: &CompletedBatch<'_>) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// When offsets fell out of the log and were skipped (policy earliest or latest).
    fn on_reset(&mut self, _reset: &OffsetReset) {}
}

/// Hooks that do nothing.
pub struct NoHooks;

impl RunHooks for NoHooks {
    fn after_batch(&mut self, _: &CompletedBatch<'_>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    /// Batches completed.
    pub batches: u64,
    /// Records processed.
    pub records: u64,
    /// Malformed records skipped.
    pub malformed: u64,
    /// True if the stop flag ended the run.
    pub stopped: bool,
}

/// Why a run ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The job failed on a batch.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The per-batch hook failed.
    #[error("after batch {time}: {source}")]
    Hook {
        /// Batch time.
        time: Time,
        /// The hook's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

struct Fetched {
    generated: GeneratedBatch,
    records: RecordBatch,
}

/// Connects, then runs the lab job until `batches` batches completed or `stop` is set; the running batch always
/// finishes. stdout gets what `print` writes; `status` gets one line per batch.
pub fn run_job(
    opts: &RunOptions,
    resume: Option<Resume>,
    hooks: &mut dyn RunHooks,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
    status: &mut dyn Write,
) -> Result<RunSummary, RunError> {
    let client = Client::connect(&opts.brokers, opts.client.clone())?;
    let direct_cfg = DirectConfig {
        topic: opts.topic.clone(),
        starting_offsets: opts.starting_offsets,
        max_rate_per_partition: opts.max_rate_per_partition,
        batch_interval: opts.batch_interval,
        on_out_of_range: opts.on_out_of_range,
    };
    let clock = SystemClock;
    let (offsets, state, timer) = match resume {
        Some(r) => (Some(r.offsets), r.state, r.timer),
        None => (None, None, BatchTimer::first_start(clock.now(), opts.batch_interval)),
    };
    let direct = DirectStream::new(client, direct_cfg, offsets)?;
    let mut job = LabJob::new(opts.lab.clone());
    if let Some(cp) = state {
        job.restore(cp);
    }
    let mut engine = Engine::new(job, timer.clone());
    let mut current: Vec<(i32, i64)> = direct.current_offsets().to_vec();

    let (tx, rx) = unbounded::<Result<Fetched, KafkaError>>();
    let (free_tx, free_rx) = unbounded::<RecordBatch>();
    let fetch_stop = stop.clone();
    let limit = opts.batches;
    let fetcher = std::thread::Builder::new()
        .name("dstream-fetch".into())
        .spawn(move || fetch_loop(direct, timer, limit, fetch_stop, tx, free_rx))
        .map_err(RunError::Output)?;

    let result = process_loop(&mut engine, &mut current, hooks, &stop, &rx, &free_tx, out, status, &clock);
    // Tell the fetch thread to finish (it also stops when the channels close) and wait for it.
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    drop(free_tx);
    let _ = fetcher.join();
    result.map(|mut s| {
        s.stopped = s.stopped || limit.is_none_or(|n| s.batches < n);
        s
    })
}

#[allow(clippy::too_many_arguments)]
fn process_loop(
    engine: &mut Engine<LabJob>,
    current: &mut Vec<(i32, i64)>,
    hooks: &mut dyn RunHooks,
    stop: &AtomicBool,
    rx: &Receiver<Result<Fetched, KafkaError>>,
    free_tx: &Sender<RecordBatch>,
    out: &mut dyn Write,
    status: &mut dyn Write,
    clock: &SystemClock,
) -> Result<RunSummary, RunError> {
    let mut summary = RunSummary::default();
    while let Ok(msg) = rx.recv() {
        let Fetched { generated, mut records } = msg?;
        for reset in &generated.resets {
            hooks.on_reset(reset);
        }
        let info = &generated.info;
        let report = engine.run_batch(info.time, &mut records, clock)?;
        out.write_all(report.printed.as_bytes())?;
        out.flush()?;
        for r in &info.ranges {
            if let Some(c) = current.iter_mut().find(|c| c.0 == r.partition) {
                c.1 = r.until;
            }
        }
        summary.batches += 1;
        summary.records += report.records as u64;
        summary.malformed += report.malformed.len() as u64;
        writeln!(
            status,
            "dstream: batch {}: {} records, {} malformed, processing {} ms, scheduling delay {} ms, lag {}",
            info.time,
            report.records,
            report.malformed.len(),
            report.processing_time.millis(),
            report.scheduling_delay.millis(),
            generated.lag
        )?;
        let done = CompletedBatch {
            info,
            report: &report,
            records: &records,
            job: engine.job(),
            next_offsets: current,
            timer: engine.timer(),
            lag: generated.lag,
        };
        hooks.after_batch(&done).map_err(|source| RunError::Hook { time: info.time, source })?;
        let _ = free_tx.send(records);
        if stop.load(Ordering::Relaxed) {
            summary.stopped = true;
            break;
        }
    }
    Ok(summary)
}

fn fetch_loop(
    mut direct: DirectStream,
    mut timer: BatchTimer,
    limit: Option<u64>,
    stop: Arc<AtomicBool>,
    tx: Sender<Result<Fetched, KafkaError>>,
    free_rx: Receiver<RecordBatch>,
) {
    let clock = SystemClock;
    let mut generated = 0u64;
    while limit.is_none_or(|n| generated < n) {
        // Wait for the next tick in short slices, so that a stop is noticed.
        let next = timer.next_time();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = clock.now();
            if now >= next {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis((next - now).millis().clamp(1, 20) as u64));
        }
        let Some(time) = timer.poll(clock.now()) else { continue };
        let result = direct.generate(time).and_then(|generated| {
            let mut records = free_rx.try_recv().unwrap_or_default();
            records.clear();
            direct.fetch_ranges(&generated.info.ranges, &mut records)?;
            Ok(Fetched { generated, records })
        });
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
        generated += 1;
    }
}
