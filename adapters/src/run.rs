//! The live job: a generate thread fixes each batch's offset ranges at its tick, a fetch thread fetches exactly
//! those records, and the calling thread runs the engine batch after batch and calls a hook after each.

use crate::clock::SystemClock;
use crate::kafka::direct::{
    note_epoch, DirectConfig, GeneratedBatch, OffsetReset, OutOfRangePolicy, RangeFetcher, RangesRead, Segment,
    StartingOffsets,
};
use crate::kafka::inputs::{DirectStreams, RangeFetchers};
use crate::kafka::{Client, ClientConfig, KafkaError};
use crossbeam_channel::{unbounded, Receiver, Sender};
use dstream_core::checkpoint::LeaderEpoch;
use dstream_core::{
    BatchInfo, BatchReport, BatchTimer, Clock, Duration, Engine, EngineError, Job, Malformed, MalformedPolicy,
    OffsetRange, OpenBatch, RecordBatch, RecordSource, Run, SourceError, Time,
};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Everything `dstream run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Bootstrap brokers, HOST:PORT.
    pub brokers: Vec<String>,
    /// The topic (empty, with no `more_topics`: the job reads no Kafka topic, only its graph's other sources).
    pub topic: String,
    /// The batch interval.
    pub batch_interval: Duration,
    /// Start offsets when not resuming.
    pub starting_offsets: StartingOffsets,
    /// Records per partition per second (0 = unlimited).
    pub max_rate_per_partition: u64,
    /// Stop after this many batches.
    pub batches: Option<u64>,
    /// Offsets that fell out of the log.
    pub on_out_of_range: OutOfRangePolicy,
    /// The Kafka client's settings.
    pub client: ClientConfig,
    /// A record batch that cannot be read (damaged, or inflating beyond the bound on a batch): fail the run, or
    /// skip its offsets, counting and reporting them as malformed records (as `--on-malformed` says).
    pub on_bad_batch: MalformedPolicy,
    /// Other topics the job reads, each with its own direct stream: inputs 1, 2, ... (`topic` and the fields
    /// above are input 0; see [`dstream_core::record::input_partition`] for how their partitions are numbered).
    pub more_topics: Vec<DirectConfig>,
}

impl RunOptions {
    /// The direct stream configuration of every topic read, by input index; none if `topic` is empty (a job
    /// with no Kafka input).
    pub fn direct_configs(&self) -> Vec<DirectConfig> {
        if self.topic.is_empty() && self.more_topics.is_empty() {
            return Vec::new();
        }
        let first = DirectConfig {
            topic: self.topic.clone(),
            starting_offsets: self.starting_offsets,
            max_rate_per_partition: self.max_rate_per_partition,
            batch_interval: self.batch_interval,
            on_out_of_range: self.on_out_of_range,
        };
        std::iter::once(first).chain(self.more_topics.iter().cloned()).collect()
    }

    /// Every topic read, by input index.
    pub fn topics(&self) -> Vec<String> {
        self.direct_configs().into_iter().map(|c| c.topic).collect()
    }
}

/// Where a run starts: a job on a new batch grid, or where a checkpoint left it.
pub enum Start<J> {
    /// A fresh job; the first batch is one interval after the start.
    Fresh(J),
    /// A resumed job (see [`Resume`]).
    Resume(Resume<J>),
}

/// Where a resumed run starts, e.g. from a checkpoint: an engine (job state and batch grid), batches to run
/// again over their stored ranges, and the offsets where the live stream continues after them.
pub struct Resume<J> {
    /// The next offset of every partition after the pending batches.
    pub offsets: Vec<(i32, i64)>,
    /// The engine: its job's state and its timer, whose next tick is the first live batch (missed ticks run at
    /// once, in order, as Spark's down-time batches).
    pub engine: Engine<J>,
    /// Batches generated but not completed before the stop, run again first over exactly their ranges.
    pub pending: Vec<BatchInfo>,
    /// Per partition, the leader epoch of the last batch read before the stop: the log is checked against them
    /// before the run goes on (see [`LeaderEpoch`]).
    pub leader_epochs: Vec<LeaderEpoch>,
}

/// A batch that completed, as the per-batch hook sees it.
pub struct CompletedBatch<'a, J> {
    /// Its time and offset ranges.
    pub info: &'a BatchInfo,
    /// What the engine reported (printed text, delays, malformed records).
    pub report: &'a BatchReport,
    /// The records it processed, sorted by (partition, offset); empty for a live batch unless
    /// [`RunHooks::needs_records`] says the hooks use them.
    pub records: &'a RecordBatch,
    /// The engine after the batch (job, timer, last completed batch), e.g. for a checkpointer.
    pub engine: &'a mut Engine<J>,
    /// Where the live stream continues: the next offset of every partition not in this batch or `pending`.
    pub next_offsets: &'a [(i32, i64)],
    /// Batches generated after this one and not yet completed, oldest first: while catching up after a resume,
    /// the stored batches still to run again; for a live batch, those generated ahead of processing.
    pub pending: &'a [BatchInfo],
    /// Records beyond this batch's ranges when it was generated.
    pub lag: i64,
    /// The same per partition: (partition, records in its log beyond its range); empty for a batch run again.
    pub lags: &'a [(i32, i64)],
    /// Per partition, the leader epoch of the last batch read so far (e.g. for a checkpoint to store).
    pub leader_epochs: &'a [LeaderEpoch],
}

/// Called by [`run_job`] on the processing thread.
pub trait RunHooks<J> {
    /// After each completed batch, before the next starts; an error stops the run.
    fn after_batch(
        &mut self,
        batch: &mut CompletedBatch<'_, J>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// When offsets fell out of the log and were skipped (policy earliest or latest).
    fn on_reset(&mut self, _reset: &OffsetReset) {}
    /// When a batch was generated (its ranges fixed at its tick) and queued, heard on the processing thread
    /// before the batch begins; a batch run again after a restart is submitted again first.
    fn on_batch_submitted(&mut self, _info: &BatchInfo) {}
    /// When a batch begins processing (its ranges fixed), live or run again after a restart.
    fn before_batch(&mut self, _info: &BatchInfo) {}
    /// True if `after_batch` reads [`CompletedBatch::records`]: live batches are processed part by part as they
    /// are fetched, and the whole batch's records are kept (one more copy) only if this says so.
    fn needs_records(&self) -> bool {
        true
    }
    /// Once, when the run ends without an error (by `--batches`, Ctrl-C or the end of the stream), after its last
    /// batch: e.g. to save that batch's state whatever the checkpoint interval.
    fn at_end(&mut self, _end: &mut RunEnd<'_, J>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
    /// When live batches are about to be generated: the queue of those generated and not yet completed, to
    /// watch (e.g. the web UI's waiting batches).
    fn on_live(&mut self, _generated: &GeneratedBatches) {}
    /// When the run fails (a batch, its output or hooks, Kafka), just before the error is returned.
    fn on_failure(&mut self, _error: &RunError) {}
}

/// The batches a run has generated (ranges fixed) and not yet completed, oldest first, as the generate thread
/// leaves them: a view for monitoring.
#[derive(Debug, Clone, Default)]
pub struct GeneratedBatches(InFlight);

impl GeneratedBatches {
    /// The batches generated and not yet completed now, oldest first (the running one included).
    pub fn snapshot(&self) -> Vec<BatchInfo> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Where a run ended, as [`RunHooks::at_end`] sees it.
pub struct RunEnd<'a, J> {
    /// The engine after the last completed batch.
    pub engine: &'a mut Engine<J>,
    /// Where the live stream continues: the next offset of every partition not in `pending`.
    pub next_offsets: &'a [(i32, i64)],
    /// Batches generated but not completed, oldest first: to run again over their ranges after a restart.
    pub pending: &'a [BatchInfo],
    /// Per partition, the leader epoch of the last batch read.
    pub leader_epochs: &'a [LeaderEpoch],
}

/// Reports malformed records on stderr as a run meets them: the first [`MalformedReporter::SHOWN`], then how many
/// more were not shown.
#[derive(Debug, Default)]
pub struct MalformedReporter {
    reported: u64,
}

impl MalformedReporter {
    /// Records reported one by one; the rest are counted.
    pub const SHOWN: u64 = 20;
    /// Reports one malformed record.
    pub fn report(&mut self, m: &dstream_core::Malformed) {
        if self.reported < Self::SHOWN {
            eprintln!("dstream: skipped {m}");
        }
        self.reported += 1;
    }
    /// Says how many were not shown, if any.
    pub fn finish(&self) {
        if self.reported > Self::SHOWN {
            eprintln!("dstream: ... {} more malformed records not shown", self.reported - Self::SHOWN);
        }
    }
}

/// The warning for offsets that fell out of the log and were skipped.
pub fn reset_warning(r: &OffsetReset) -> String {
    format!(
        "dstream: warning: partition {} offsets [{}, {}) are outside the log [{}, {}); skipped {} offsets to {}",
        dstream_core::PartitionLabel(r.partition),
        r.from.min(r.to),
        r.from.max(r.to),
        r.earliest,
        r.latest,
        (r.to - r.from).abs(),
        r.to
    )
}

/// What a run did, and where it stopped: enough to continue it (as [`Start::Resume`]).
pub struct RunOutcome<J> {
    /// Counts.
    pub summary: RunSummary,
    /// The engine after the last completed batch, the offsets after every generated batch, and the batches
    /// generated but not completed.
    pub resume: Resume<J>,
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
    /// The hook at the end of the run failed.
    #[error("at the end of the run: {0}")]
    End(Box<dyn std::error::Error + Send + Sync>),
}

/// What the generate thread sends the fetch thread, per batch: `Tick` with where the batch starts, as soon as its
/// time has come (so that fetching its first records overlaps finding its end), then the batch.
enum Generated {
    Tick(Vec<(i32, i64)>),
    Batch(GeneratedBatch),
}

/// What the fetch thread sends, per batch: `Begin`, then the fetched bytes holding its records, unread, in
/// (partition, offset) order, then `End`.
enum Fetched {
    Begin(GeneratedBatch),
    Segment(Segment),
    End,
}

/// Connects, then runs the job until `batches` batches completed or `stop` is set; the running batch always
/// finishes. `out` gets what `print` writes; the hooks hear of every batch (the status line is one of them).
pub fn run_job<J: Job>(
    opts: &RunOptions,
    start: Start<J>,
    hooks: &mut dyn RunHooks<J>,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<RunSummary, RunError> {
    run_job_to_end(opts, start, hooks, stop, out).map(|o| o.summary)
}

/// As [`run_job`], and also hands back where the run stopped, so that it can be continued.
pub fn run_job_to_end<J: Job>(
    opts: &RunOptions,
    start: Start<J>,
    hooks: &mut dyn RunHooks<J>,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<RunOutcome<J>, RunError> {
    let result = run_to_end(opts, start, hooks, stop, out);
    if let Err(e) = &result {
        hooks.on_failure(e);
    }
    result
}

fn run_to_end<J: Job>(
    opts: &RunOptions,
    start: Start<J>,
    hooks: &mut dyn RunHooks<J>,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<RunOutcome<J>, RunError> {
    let clock = SystemClock;
    let (offsets, mut engine, pending, mut epochs) = match start {
        Start::Resume(r) => (Some(r.offsets), r.engine, r.pending, r.leader_epochs),
        Start::Fresh(job) => {
            let timer = BatchTimer::first_start(clock.now(), opts.batch_interval);
            (None, Engine::new(job, timer), Vec::new(), Vec::new())
        }
    };
    let connect = || {
        let mut client = Client::connect(&opts.brokers, opts.client.clone())?;
        client.set_interrupt(stop.clone());
        Ok(client)
    };
    let mut direct = DirectStreams::new(connect, opts.direct_configs(), offsets)?;
    // The log must still hold what was read, in the epochs it was read in (not truncated in place).
    direct.check_leader_epochs(&epochs)?;
    // Fetching has connections of its own, so that a slow fetch never delays fixing the next batch's ranges. A
    // stop does not cut it short: a batch whose ranges are fixed is fetched whole and completes (a batch half
    // applied to the state could be neither checkpointed nor run again), and no batch is generated after a stop.
    let mut fetch_cfg = opts.client.clone();
    fetch_cfg.interrupt = None;
    let skip = opts.on_bad_batch == MalformedPolicy::Skip;
    let mut fetchers = Vec::new();
    for topic in opts.topics() {
        let fetch_client = Client::connect(&opts.brokers, fetch_cfg.clone())?;
        fetchers.push(RangeFetcher::new(fetch_client, &topic).skip_bad_batches(skip));
    }
    let mut fetcher = RangeFetchers::new(fetchers);
    let mut current: Vec<(i32, i64)> = direct.current_offsets();
    let mut summary = RunSummary::default();
    // Catch up first: stored batches run again over exactly their ranges (their output appears again).
    run_pending(
        &mut engine,
        &pending,
        &current,
        &mut epochs,
        |r, b| fetcher.fetch_ranges(r, b),
        hooks,
        &mut summary,
        out,
        &clock,
    )
    .map_err(|e| match e {
        PendingError::Fetch { source, .. } => RunError::Kafka(source),
        PendingError::Run(e) => e,
    })?;
    let timer = engine.timer().clone();

    // generate thread --(tick, ranges)--> fetch thread --(fetched bytes)--> this thread, which reads the records.
    // `in_flight` lists the batches generated but not yet completed, so a checkpoint can store them as pending.
    let in_flight: InFlight = Arc::new(Mutex::new(VecDeque::new()));
    hooks.on_live(&GeneratedBatches(in_flight.clone()));
    let (gen_tx, gen_rx) = unbounded::<Result<Generated, KafkaError>>();
    let (tx, rx) = unbounded::<Result<Fetched, KafkaError>>();
    let limit = opts.batches;
    let gen_stop = stop.clone();
    let gen_in_flight = in_flight.clone();
    let generator = std::thread::Builder::new()
        .name("dstream-generate".into())
        .spawn(move || generate_loop(direct, timer, limit, gen_stop, gen_tx, gen_in_flight))
        .map_err(RunError::Output)?;
    let fetch_thread = std::thread::Builder::new()
        .name("dstream-fetch".into())
        .spawn(move || fetch_loop(fetcher, gen_rx, tx))
        .map_err(RunError::Output)?;

    let result =
        process_loop(&mut engine, &mut current, &mut epochs, &in_flight, summary, hooks, &stop, &rx, out, &clock);
    // Tell the fetch thread to finish (it also stops when the channels close) and wait for it.
    let interrupted = stop.swap(true, Ordering::SeqCst);
    drop(rx);
    let _ = generator.join();
    let _ = fetch_thread.join();
    let mut summary = result?;
    summary.stopped |= interrupted;
    // Both threads are done: the batches generated and not completed are final.
    let (pending, next_offsets) = pending_after(&in_flight, engine.last_completed(), &current);
    hooks
        .at_end(&mut RunEnd {
            engine: &mut engine,
            next_offsets: &next_offsets,
            pending: &pending,
            leader_epochs: &epochs,
        })
        .map_err(RunError::End)?;
    // The grid continues after every batch generated so far (the generate thread's timer, not the engine's).
    if let Some(last) = pending.last().map(|b| b.time).max(engine.last_completed()) {
        engine.resume_timer_after(last);
    }
    Ok(RunOutcome { summary, resume: Resume { offsets: next_offsets, engine, pending, leader_epochs: epochs } })
}

/// Why running stored batches again failed.
#[derive(Debug, thiserror::Error)]
pub enum PendingError<E: std::error::Error + 'static> {
    /// The records of a stored batch could not be fetched (e.g. retention deleted them).
    #[error("cannot fetch the records of stored batch {time}: {source}")]
    Fetch {
        /// The batch.
        time: Time,
        /// The source's error.
        source: E,
    },
    /// The batch failed, or its output or hooks did.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs stored batches again over exactly their ranges, oldest first (after a restart: the batches a checkpoint
/// left pending), through the same path as a live batch: printed output, status line, hooks (recording,
/// malformed records, checkpoints). `next_offsets` is where the live stream continues after all of them;
/// `epochs` is updated with the leader epochs the fetches saw.
#[allow(clippy::too_many_arguments)]
pub fn run_pending<J: Job, E: std::error::Error + 'static>(
    engine: &mut Engine<J>,
    pending: &[BatchInfo],
    next_offsets: &[(i32, i64)],
    epochs: &mut Vec<LeaderEpoch>,
    mut fetch: impl FnMut(&[OffsetRange], &mut RecordBatch) -> Result<RangesRead, E>,
    hooks: &mut dyn RunHooks<J>,
    summary: &mut RunSummary,
    out: &mut dyn Write,
    clock: &dyn Clock,
) -> Result<(), PendingError<E>> {
    let mut records = RecordBatch::new();
    for (i, info) in pending.iter().enumerate() {
        records.clear();
        hooks.on_batch_submitted(info);
        hooks.before_batch(info);
        let read =
            fetch(&info.ranges, &mut records).map_err(|source| PendingError::Fetch { time: info.time, source })?;
        let mut open = engine.begin_batch(info.time, clock).map_err(RunError::from)?;
        records.sort_by_position();
        engine
            .feed_source(&mut open, &WithUnread { records: &records, unread: &read.unread })
            .map_err(RunError::from)?;
        read.leader_epochs.iter().for_each(|&e| note_epoch(epochs, e));
        let report = engine.finish_batch(open, clock).map_err(RunError::from)?;
        let mut done = CompletedBatch {
            info,
            report: &report,
            records: &records,
            engine,
            next_offsets,
            pending: &pending[i + 1..],
            lag: 0,
            lags: &[],
            leader_epochs: epochs,
        };
        finish_batch(&mut done, summary, hooks, out)?;
    }
    Ok(())
}

/// A batch's records and the offsets that were skipped unread.
struct WithUnread<'a> {
    records: &'a RecordBatch,
    unread: &'a [Malformed],
}

impl RecordSource for WithUnread<'_> {
    fn len_hint(&self) -> usize {
        self.records.len()
    }
    fn for_each_run(&self, f: &mut dyn FnMut(Run<'_>)) -> Result<usize, SourceError> {
        self.records.for_each_run(f)
    }
    fn for_each_skipped(&self, f: &mut dyn FnMut(&Malformed)) {
        self.unread.iter().for_each(f)
    }
}

#[allow(clippy::too_many_arguments)]
fn process_loop<J: Job>(
    engine: &mut Engine<J>,
    current: &mut Vec<(i32, i64)>,
    epochs: &mut Vec<LeaderEpoch>,
    in_flight: &InFlight,
    mut summary: RunSummary,
    hooks: &mut dyn RunHooks<J>,
    stop: &AtomicBool,
    rx: &Receiver<Result<Fetched, KafkaError>>,
    out: &mut dyn Write,
    clock: &SystemClock,
) -> Result<RunSummary, RunError> {
    let keep = hooks.needs_records();
    let mut whole = RecordBatch::new();
    // The batch being fed: its generation and the engine's open batch.
    let mut open: Option<(GeneratedBatch, OpenBatch)> = None;
    // The newest batch the hooks heard was submitted.
    let mut submitted: Option<Time> = None;
    // Per partition of the open batch: where its records continue after offsets skipped with a bad batch (the
    // fetch moved past the batch by its length, and later segments may hold records the bad batch claimed).
    let mut floors: Vec<(i32, i64)> = Vec::new();
    while let Ok(msg) = rx.recv() {
        announce_submitted(in_flight, &mut submitted, hooks);
        let msg = match msg {
            Ok(m) => m,
            // Generating the next batch cut short by a stop request is not a failure; it comes between batches.
            Err(_) if stop.load(Ordering::Relaxed) && open.is_none() => {
                summary.stopped = true;
                break;
            }
            // A batch that cannot be completed fails the run: its state must not be checkpointed half applied.
            Err(e) => return Err(e.into()),
        };
        match msg {
            Fetched::Begin(generated) => {
                for reset in &generated.resets {
                    hooks.on_reset(reset);
                }
                hooks.before_batch(&generated.info);
                let batch = engine.begin_batch(generated.info.time, clock)?;
                whole.clear();
                floors.clear();
                open = Some((generated, batch));
                continue;
            }
            Fetched::Segment(mut segment) => {
                // Its records are read in place, on this thread, straight into the job.
                if let Some((_, batch)) = open.as_mut() {
                    if let Some(f) = floors.iter().find(|f| f.0 == segment.partition) {
                        segment.from = segment.from.max(f.1);
                    }
                    engine.feed_source(batch, &segment)?;
                    if let Some(e) = segment.leader_epoch {
                        note_epoch(epochs, e);
                    }
                    if let Some(after) = segment.skipped_until() {
                        floors.retain(|f| f.0 != segment.partition);
                        floors.push((segment.partition, after));
                    }
                    if keep {
                        segment
                            .for_each_record(&mut |r| whole.push(r.partition, r.offset, r.timestamp, r.key, r.value))
                            .map_err(|e| EngineError::Job { time: batch.time(), source: e.into() })?;
                    }
                }
                continue;
            }
            Fetched::End => {}
        }
        let Some((generated, batch)) = open.take() else { continue };
        let report = engine.finish_batch(batch, clock)?;
        let info = &generated.info;
        advance(current, &info.ranges);
        let (pending, next) = pending_after(in_flight, Some(info.time), current);
        let mut done = CompletedBatch {
            info,
            report: &report,
            records: &whole,
            engine,
            next_offsets: &next,
            pending: &pending,
            lag: generated.lag,
            lags: &generated.lags,
            leader_epochs: epochs,
        };
        finish_batch(&mut done, &mut summary, hooks, out)?;
        if stop.load(Ordering::Relaxed) {
            summary.stopped = true;
            break;
        }
    }
    Ok(summary)
}

/// Batches generated but not yet completed, oldest first.
type InFlight = Arc<Mutex<VecDeque<BatchInfo>>>;

/// Tells the hooks of every batch generated after `newest` (a lock per message from the fetch thread, none per
/// record), and moves `newest` on.
fn announce_submitted<J>(in_flight: &InFlight, newest: &mut Option<Time>, hooks: &mut dyn RunHooks<J>) {
    let fresh: Vec<BatchInfo> = {
        let queue = in_flight.lock().unwrap_or_else(|e| e.into_inner());
        queue.iter().filter(|b| newest.is_none_or(|t| b.time > t)).cloned().collect()
    };
    for b in &fresh {
        hooks.on_batch_submitted(b);
        *newest = Some(b.time);
    }
}

/// The batches generated after the completed batch `done` (forgetting those up to it), and where the stream
/// continues after them, `current` being the offsets after `done`.
fn pending_after(
    in_flight: &InFlight,
    done: Option<Time>,
    current: &[(i32, i64)],
) -> (Vec<BatchInfo>, Vec<(i32, i64)>) {
    let pending: Vec<BatchInfo> = {
        let mut queue = in_flight.lock().unwrap_or_else(|e| e.into_inner());
        while queue.front().is_some_and(|b| Some(b.time) <= done) {
            queue.pop_front();
        }
        queue.iter().cloned().collect()
    };
    let mut next = current.to_vec();
    for b in &pending {
        advance(&mut next, &b.ranges);
    }
    (pending, next)
}

/// Moves each partition's next offset to the end of its range; a partition new to `offsets` (added to the topic
/// while running) joins them, in partition order.
fn advance(offsets: &mut Vec<(i32, i64)>, ranges: &[OffsetRange]) {
    for r in ranges {
        match offsets.iter_mut().find(|c| c.0 == r.partition) {
            Some(c) => c.1 = c.1.max(r.until),
            None => {
                offsets.push((r.partition, r.until));
                offsets.sort_unstable();
            }
        }
    }
}

/// Prints a completed batch's output, counts it, and calls the hook.
fn finish_batch<J>(
    done: &mut CompletedBatch<'_, J>,
    summary: &mut RunSummary,
    hooks: &mut dyn RunHooks<J>,
    out: &mut dyn Write,
) -> Result<(), RunError> {
    let (info, report) = (done.info, done.report);
    out.write_all(report.printed.as_bytes())?;
    out.flush()?;
    summary.batches += 1;
    summary.records += report.records as u64;
    summary.malformed += Malformed::total(&report.malformed);
    hooks.after_batch(done).map_err(|source| RunError::Hook { time: info.time, source })
}

/// Fixes each batch's ranges at its tick, independent of how fast batches are fetched and processed.
fn generate_loop(
    mut direct: DirectStreams,
    mut timer: BatchTimer,
    limit: Option<u64>,
    stop: Arc<AtomicBool>,
    tx: Sender<Result<Generated, KafkaError>>,
    in_flight: InFlight,
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
            let left = clock.time_until(next);
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
        }
        let Some(time) = timer.poll(clock.now()) else { continue };
        if tx.send(Ok(Generated::Tick(direct.current_offsets()))).is_err() {
            return;
        }
        let result = direct.generate(time);
        if let Ok(b) = &result {
            in_flight.lock().unwrap_or_else(|e| e.into_inner()).push_back(b.info.clone());
        }
        let failed = result.is_err();
        if tx.send(result.map(Generated::Batch)).is_err() || failed {
            return;
        }
        generated += 1;
    }
}

/// Fetches exactly the records of each generated batch, in order, and sends the fetched bytes on as they come.
fn fetch_loop(
    mut fetcher: RangeFetchers,
    rx: Receiver<Result<Generated, KafkaError>>,
    tx: Sender<Result<Fetched, KafkaError>>,
) {
    while let Ok(generated) = rx.recv() {
        let generated = match generated {
            Ok(Generated::Tick(from)) => {
                fetcher.prefetch(&from);
                continue;
            }
            Ok(Generated::Batch(g)) => g,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let ranges = generated.info.ranges.clone();
        if tx.send(Ok(Fetched::Begin(generated))).is_err() {
            return;
        }
        let result = fetcher.fetch_ranges_in_segments(&ranges, |segment| {
            let _ = tx.send(Ok(Fetched::Segment(segment)));
        });
        let msg = result.map(|()| Fetched::End);
        let failed = msg.is_err();
        if tx.send(msg).is_err() || failed {
            return;
        }
    }
}
