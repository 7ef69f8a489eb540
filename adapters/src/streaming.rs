//! The entry point of a stream program, as Spark's `StreamingContext`: a batch interval, a checkpoint
//! directory, a direct Kafka stream, operators and output operations on it, then `start` and
//! `await_termination`.
//!
//! ```no_run
//! use dstream_adapters::streaming::{KafkaParams, KafkaUtils, StreamingContext};
//! use dstream_core::{Duration, State, StateError, StateSpec};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut ssc = StreamingContext::new(Duration::from_secs(2));
//!     ssc.checkpoint("checkpoint");
//!     let messages = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("localhost:9092"), "avg");
//!     let counts = messages
//!         .map(|r| (String::from_utf8_lossy(r.value).into_owned(), 1i64))
//!         .map_with_state(StateSpec::function(|_k: &String, v: Option<i64>, s: &mut State<'_, i64>| {
//!             let n = s.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
//!             s.update(n)?;
//!             Ok::<_, StateError>(n)
//!         }));
//!     counts.print(10);
//!     ssc.start()?;
//!     ssc.await_termination()?;
//!     Ok(())
//! }
//! ```
//!
//! Processing happens on the thread that calls [`StreamingContext::await_termination`] (the program's
//! closures need not be `Send`); batches are generated and fetched on threads of their own while it runs.

use crate::checkpoint::{CheckpointError, CheckpointStore, Fingerprint, NextOffset};
use crate::clock::SystemClock;
use crate::kafka::direct::{DirectConfig, OffsetReset, OutOfRangePolicy, StartingOffsets};
use crate::kafka::{Client, ClientConfig, IsolationLevel, KafkaError};
use crate::record::Recorder;
use crate::recovery::{restore, Checkpointer, Grid, RestoreError};
use crate::run::{
    reset_warning, run_job_to_end, CompletedBatch, MalformedReporter, Resume, RunEnd, RunError, RunHooks, RunOptions,
    RunSummary, Start,
};
use dstream_core::checkpoint::InputPrint;
use dstream_core::checkpoint::LeaderEpoch;
use dstream_core::graph::{GraphBuilder, InputStream, Stream};
use dstream_core::jvm::JvmDisplay;
use dstream_core::{
    BatchInfo, BatchReport, Clock, DStream, Duration, Graph, Job, Malformed, MalformedPolicy, OutputOperation,
    RecordBatch, Time,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How a direct Kafka stream reads: brokers, where to start, rate limit, out-of-range policy, client settings
/// (everything `dstream run` offers).
#[derive(Debug, Clone)]
pub struct KafkaParams {
    /// Bootstrap brokers, HOST:PORT.
    pub brokers: Vec<String>,
    /// Where a fresh start begins (Spark's `auto.offset.reset`; default: the log end).
    pub starting_offsets: StartingOffsets,
    /// Records per partition per second (0 = unlimited; Spark's `maxRatePerPartition`).
    pub max_rate_per_partition: u64,
    /// What to do when the next offset fell out of the log.
    pub on_out_of_range: OutOfRangePolicy,
    /// The Kafka client's settings (timeouts, retries, fetch sizes).
    pub client: ClientConfig,
}

impl KafkaParams {
    /// Reading from `brokers` (comma-separated HOST:PORT), with the defaults.
    pub fn new(brokers: &str) -> Self {
        KafkaParams {
            brokers: brokers.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect(),
            starting_offsets: StartingOffsets::default(),
            max_rate_per_partition: 0,
            on_out_of_range: OutOfRangePolicy::default(),
            client: ClientConfig::default(),
        }
    }
    /// Where a fresh start begins.
    pub fn starting_offsets(mut self, s: StartingOffsets) -> Self {
        self.starting_offsets = s;
        self
    }
    /// Records per partition per second (0 = unlimited).
    pub fn max_rate_per_partition(mut self, n: u64) -> Self {
        self.max_rate_per_partition = n;
        self
    }
    /// What to do when the next offset fell out of the log.
    pub fn on_out_of_range(mut self, p: OutOfRangePolicy) -> Self {
        self.on_out_of_range = p;
        self
    }
    /// Which records of transactional producers the stream reads (Kafka's `isolation.level`): read_uncommitted
    /// (the default, as Kafka's consumer and so Spark's source) or read_committed, whose batches end at the last
    /// stable offset and leave out aborted transactions. Transaction markers are never records of the stream.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.client.isolation_level = level;
        self
    }
    /// TLS and SASL, e.g. `Security::from_file(path)?` for a Kafka client properties file.
    pub fn security(mut self, s: crate::kafka::Security) -> Self {
        self.client.security = s;
        self
    }
    /// How long lost connections and leader changes are retried.
    pub fn retry_for(mut self, d: std::time::Duration) -> Self {
        self.client.retry_for = d;
        self
    }
    /// The Kafka client's settings, all at once (timeouts, retries, fetch and batch sizes).
    pub fn client_config(mut self, c: ClientConfig) -> Self {
        self.client = c;
        self
    }
}

/// Spark's `KafkaUtils`: where direct streams come from.
#[derive(Debug)]
pub struct KafkaUtils;

impl KafkaUtils {
    /// A direct stream of `topic` on `ssc`: each batch is exactly the records of its offset ranges, fixed at its
    /// tick (SPARK-SEMANTICS §1.2); records carry topic, partition, offset, timestamp, key and value.
    pub fn create_direct_stream(ssc: &mut StreamingContext, params: KafkaParams, topic: &str) -> InputStream {
        Self::create_direct_stream_of(ssc, params, &[topic])
    }

    /// A direct stream of several topics on `ssc` (Spark's `Subscribe(topics)`): each batch holds every topic's
    /// records of its ranges, topic by topic in the order given, each record carrying its topic. A context may
    /// have several direct streams (a join of two topics); all of them use the same brokers and client settings,
    /// and a topic read by two streams is read once, each stream seeing all its records.
    ///
    /// # Panics
    /// If `topics` is empty (a program's mistake, as Spark's `Subscribe` of no topic).
    pub fn create_direct_stream_of(ssc: &mut StreamingContext, params: KafkaParams, topics: &[&str]) -> InputStream {
        for t in topics {
            if !ssc.sources.iter().any(|s| s.topic == *t) {
                ssc.sources.push(Source { params: params.clone(), topic: t.to_string() });
            } else if ssc.sources.iter().any(|s| s.topic == *t && !s.params.same_as(&params)) {
                ssc.conflict
                    .get_or_insert_with(|| format!("topic {t:?} has two direct streams with different settings"));
            }
        }
        ssc.graph.records_of_all(topics)
    }
}

impl KafkaParams {
    /// True if both read alike (what `Debug` shows: brokers, offsets, rate, policy, client settings).
    fn same_as(&self, other: &KafkaParams) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }

    /// True if both reach the cluster alike (brokers and client settings).
    fn same_cluster(&self, other: &KafkaParams) -> bool {
        self.brokers == other.brokers && format!("{:?}", self.client) == format!("{:?}", other.client)
    }
}

#[derive(Debug, Clone)]
struct Source {
    params: KafkaParams,
    topic: String,
}

/// What a [`StreamingListener`] hears of a completed batch (Spark's `BatchInfo`).
#[derive(Debug)]
pub struct BatchCompleted<'a> {
    /// Its time and offset ranges.
    pub info: &'a BatchInfo,
    /// Records it processed.
    pub records: usize,
    /// Records skipped as malformed, with their positions.
    pub malformed: &'a [Malformed],
    /// From the batch's tick to the start of its processing (its ranges fixed).
    pub scheduling_delay: Duration,
    /// From the start of processing to the end (fetching included).
    pub processing_time: Duration,
    /// Records beyond its ranges when it was generated.
    pub lag: i64,
    /// The same per partition: (partition, records in its log beyond its range); empty for a batch run again
    /// after a restart or replayed.
    pub lags: &'a [(i32, i64)],
    /// Batches generated after it and not yet completed when it completed, oldest first (Spark's waiting
    /// batches).
    pub pending: &'a [BatchInfo],
    /// What its `print` operations wrote.
    pub printed: &'a str,
    /// Its input records, sorted by (partition, offset), if a listener asked for them
    /// ([`StreamingListener::needs_input`]); empty otherwise.
    pub input: &'a RecordBatch,
    /// Where the stream continues after it and `pending`: the next offset of every partition.
    pub next_offsets: &'a [(i32, i64)],
    /// Per partition, the leader epoch of the last record batch read so far (what a checkpoint stores).
    pub leader_epochs: &'a [LeaderEpoch],
    /// The batch grid's origin (batch k is at `zero + k * interval`).
    pub zero: Time,
    /// The batch interval.
    pub interval: Duration,
    /// Its output operations, in order, with when each ran its last step.
    pub output_operations: &'a [OutputOperation],
}

impl<'a> BatchCompleted<'a> {
    /// What listeners hear of a batch the run loop completed.
    pub fn of<J: Job>(b: &'a CompletedBatch<'_, J>) -> Self {
        let (zero, interval) = (b.engine.timer().zero(), b.engine.timer().interval());
        Self::parts(
            b.info,
            b.report,
            b.records,
            b.next_offsets,
            b.pending,
            b.lag,
            b.lags,
            b.leader_epochs,
            zero,
            interval,
        )
    }

    /// What listeners hear of a batch the run loop completed, and its job (for a listener that reads or saves the
    /// state).
    pub fn with_job<'b, J: Job>(b: &'b mut CompletedBatch<'_, J>) -> (BatchCompleted<'b>, &'b mut dyn Job) {
        let (zero, interval) = (b.engine.timer().zero(), b.engine.timer().interval());
        let CompletedBatch { info, report, records, engine, next_offsets, pending, lag, lags, leader_epochs } = b;
        let done = BatchCompleted::parts(
            info,
            report,
            records,
            next_offsets,
            pending,
            *lag,
            lags,
            leader_epochs,
            zero,
            interval,
        );
        (done, engine.job_mut())
    }

    #[allow(clippy::too_many_arguments)]
    fn parts(
        info: &'a BatchInfo,
        report: &'a BatchReport,
        input: &'a RecordBatch,
        next_offsets: &'a [(i32, i64)],
        pending: &'a [BatchInfo],
        lag: i64,
        lags: &'a [(i32, i64)],
        leader_epochs: &'a [LeaderEpoch],
        zero: Time,
        interval: Duration,
    ) -> Self {
        BatchCompleted {
            info,
            records: report.records,
            malformed: &report.malformed,
            scheduling_delay: report.scheduling_delay,
            processing_time: report.processing_time,
            lag,
            lags,
            pending,
            printed: &report.printed,
            input,
            next_offsets,
            leader_epochs,
            zero,
            interval,
            output_operations: &report.output_operations,
        }
    }
}

/// Where a run stopped, as [`StreamingListener::on_stopped`] hears it.
#[derive(Debug)]
pub struct RunStopped<'a> {
    /// The last completed batch, if any.
    pub last_completed: Option<Time>,
    /// The batch grid's origin.
    pub zero: Time,
    /// The batch interval.
    pub interval: Duration,
    /// Where the stream continues after `pending`: the next offset of every partition.
    pub next_offsets: &'a [(i32, i64)],
    /// Batches generated but not completed, oldest first (run again after a restart).
    pub pending: &'a [BatchInfo],
    /// Per partition, the leader epoch of the last record batch read.
    pub leader_epochs: &'a [LeaderEpoch],
}

/// What a listener that stops the run returns.
pub type ListenerError = Box<dyn std::error::Error + Send + Sync>;

/// Spark's `StreamingListener`: told of each batch as it completes, on the processing thread.
pub trait StreamingListener {
    /// A batch was generated: its ranges fixed at its tick and queued for processing (Spark's
    /// `onBatchSubmitted`). Heard on the processing thread, before the batch starts; a batch run again after a
    /// restart is submitted again first.
    fn on_batch_submitted(&mut self, _info: &BatchInfo) {}
    /// A batch began processing (its ranges are fixed).
    fn on_batch_started(&mut self, _info: &BatchInfo) {}
    /// An output operation of a batch began its last step (Spark's `onOutputOperationStarted`; see
    /// [`OutputOperation`] for what is timed). Heard once the batch's output operations ran, each operation's
    /// start and completion in order, before the batch's completion.
    fn on_output_operation_started(&mut self, _op: &OutputOperation) {}
    /// An output operation of a batch completed its last step (Spark's `onOutputOperationCompleted`).
    fn on_output_operation_completed(&mut self, _op: &OutputOperation) {}
    /// A batch completed (its output operations ran).
    fn on_batch_completed(&mut self, _batch: &BatchCompleted<'_>) {}
    /// True if this listener reads each batch's input records ([`BatchCompleted::input`]): they are then kept
    /// for the batch (a copy of every record).
    fn needs_input(&self) -> bool {
        false
    }
    /// A batch completed, heard with its job, for a listener that reads or saves the job's state (the
    /// checkpointer does) or may stop the run: an error stops it, as a failed output operation does. By default
    /// [`on_batch_completed`](Self::on_batch_completed).
    fn on_batch_completed_with_job(
        &mut self,
        batch: &BatchCompleted<'_>,
        _job: &mut dyn Job,
    ) -> Result<(), ListenerError> {
        self.on_batch_completed(batch);
        Ok(())
    }
    /// The run stopped (its last batch completed, or the context was stopped), with where the stream stands and
    /// the job; an error fails the stop. By default nothing.
    fn on_stopped(&mut self, _end: &RunStopped<'_>, _job: &mut dyn Job) -> Result<(), ListenerError> {
        Ok(())
    }
}

/// The status line `dstream run` prints after each batch, as a listener: `dstream: batch TIME: N records, M
/// malformed, processing P ms, scheduling delay S ms, lag L`, one line written at once.
pub struct StatusLine<W: Write> {
    out: W,
    line: String,
}

impl<W: Write> StatusLine<W> {
    /// Status lines written to `out`.
    pub fn new(out: W) -> Self {
        StatusLine { out, line: String::with_capacity(128) }
    }
}

impl StatusLine<std::io::Stderr> {
    /// Status lines on stderr.
    pub fn stderr() -> Self {
        StatusLine::new(std::io::stderr())
    }
}

impl<W: Write> StreamingListener for StatusLine<W> {
    fn on_batch_completed(&mut self, b: &BatchCompleted<'_>) {
        use std::fmt::Write as _;
        self.line.clear();
        // Formatted first and written at once: stderr is unbuffered, and a formatted write to it is a system call
        // per piece.
        let _ = writeln!(
            self.line,
            "dstream: batch {}: {} records, {} malformed, processing {} ms, scheduling delay {} ms, lag {}",
            b.info.time,
            b.records,
            Malformed::total(b.malformed),
            b.processing_time.millis(),
            b.scheduling_delay.millis(),
            b.lag
        );
        // A status line that cannot be written (stderr closed) is not a reason to stop the job.
        let _ = self.out.write_all(self.line.as_bytes());
    }
}

/// Why a streaming context failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// `start` before a stream or an output operation was defined, or after the context stopped.
    #[error("{0}")]
    Usage(&'static str),
    /// The program's inputs do not fit together (e.g. two direct streams on different clusters).
    #[error("{0}")]
    Config(String),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The run failed (a batch, an output, a checkpoint).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The checkpoint directory could not be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The recording could not be replayed.
    #[error("replay: {0}")]
    Replay(String),
    /// The web UI could not start.
    #[error(transparent)]
    Ui(#[from] crate::ui::UiError),
    /// The checkpoint's state does not fit this program.
    #[error("cannot restore the checkpoint {}: {source}", path.display())]
    Restore {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not fit.
        source: RestoreError,
    },
}

const NO_OUTPUTS: &str = "no output operations registered, so nothing to execute";

/// Stops a running context from anywhere (another thread, a signal handler): the running batch finishes and
/// a checkpoint of it is written.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    stopped: Arc<AtomicBool>,
    run: Arc<Mutex<Option<Arc<AtomicBool>>>>,
}

impl StopHandle {
    /// Asks the context to stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(run) = self.run.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            run.store(true, Ordering::SeqCst);
        }
    }
    /// True once [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
    /// Makes Ctrl-C (SIGINT) stop the context; a second Ctrl-C exits the process at once (status 130). Once per
    /// process.
    pub fn stop_on_ctrl_c(&self) -> Result<(), ctrlc::Error> {
        let me = self.clone();
        ctrlc::set_handler(move || {
            if me.is_stopped() {
                std::process::exit(130);
            }
            me.stop();
        })
    }
}

/// The checkpoint settings of a context.
#[derive(Debug, Clone)]
struct CheckpointSettings {
    dir: PathBuf,
    keep: usize,
    reset: bool,
}

/// Spark's `StreamingContext`: owns the graph, the direct stream's settings and the run.
pub struct StreamingContext {
    graph: GraphBuilder,
    interval: Duration,
    name: String,
    checkpoint: Option<CheckpointSettings>,
    /// The topics of the direct streams, each with its stream's settings, in the order first given.
    sources: Vec<Source>,
    /// A program's mistake found while defining, reported at start.
    conflict: Option<String>,
    checkpoint_every: u64,
    record: Option<PathBuf>,
    replay: Option<PathBuf>,
    status: bool,
    batches: Option<u64>,
    out: Box<dyn Write>,
    listeners: Vec<Box<dyn StreamingListener>>,
    stop: StopHandle,
    phase: Phase,
    ui: Option<(String, usize)>,
    ui_remote: bool,
    ui_server: Option<crate::ui::UiServer>,
    record_params: Vec<(String, String)>,
    summary: RunSummary,
}

enum Phase {
    Defining,
    Started(Box<Started>),
    Replaying(Graph),
    Stopped,
}

struct Started {
    opts: RunOptions,
    start: Start<Graph>,
    hooks: StandardHooks,
}

impl StreamingContext {
    /// A context with batches every `batch_interval`.
    pub fn new(batch_interval: Duration) -> Self {
        StreamingContext {
            graph: GraphBuilder::new(),
            interval: batch_interval,
            name: "dstream".into(),
            checkpoint: None,
            sources: Vec::new(),
            conflict: None,
            checkpoint_every: 1,
            record: None,
            replay: None,
            status: true,
            batches: None,
            out: Box::new(std::io::stdout()),
            listeners: Vec::new(),
            stop: StopHandle::default(),
            phase: Phase::Defining,
            ui: None,
            ui_remote: false,
            ui_server: None,
            record_params: Vec::new(),
            summary: RunSummary::default(),
        }
    }

    /// The graph streams are defined on (e.g. to build a stream without Kafka, or in tests).
    pub fn graph(&self) -> &GraphBuilder {
        &self.graph
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.interval
    }

    /// The program's name, stored in checkpoints (a checkpoint of another program is refused).
    pub fn app_name(&mut self, name: &str) -> &mut Self {
        self.name = name.to_string();
        self
    }

    /// Checkpoints go to `dir` after every batch (see [`checkpoint_every`](Self::checkpoint_every)); at `start`,
    /// a checkpoint there of the same program is resumed: its state is restored into the graph the program
    /// built, the batches it left pending run again, and the stream continues from its offsets.
    pub fn checkpoint(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        let (keep, reset) =
            self.checkpoint.as_ref().map_or((crate::checkpoint::DEFAULT_KEEP, false), |c| (c.keep, c.reset));
        self.checkpoint = Some(CheckpointSettings { dir: dir.into(), keep, reset });
        self
    }

    /// Keeps the newest `n` checkpoints (at least 1) in the checkpoint directory, removing older ones.
    pub fn keep_checkpoints(&mut self, n: usize) -> &mut Self {
        if let Some(c) = &mut self.checkpoint {
            c.keep = n.max(1);
        }
        self
    }

    /// At `start`, moves the checkpoints in the checkpoint directory aside (into a subdirectory, named on
    /// stderr) and starts fresh: the way on when a checkpoint is refused (another program, a replaced topic).
    pub fn reset_checkpoint(&mut self, on: bool) -> &mut Self {
        if let Some(c) = &mut self.checkpoint {
            c.reset = on;
        }
        self
    }

    /// Checkpoint every `n` batches (and when the run ends) rather than after every batch.
    pub fn checkpoint_every(&mut self, n: u64) -> &mut Self {
        self.checkpoint_every = n.max(1);
        self
    }

    /// Records every batch (time, ranges, records) to `path`, for `replay`.
    pub fn record_to(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.record = Some(path.into());
        self
    }

    /// Text parameters stored in a recording's header beside the program's name, so that a replay can rebuild
    /// the program as it was configured (none by default).
    pub fn recording_params(&mut self, params: Vec<(String, String)>) -> &mut Self {
        self.record_params = params;
        self
    }

    /// What the run so far did: batches, records, malformed records, and whether it was stopped.
    pub fn summary(&self) -> RunSummary {
        self.summary
    }

    /// Runs the program over a recording (made with [`record_to`](Self::record_to) or `dstream record`) instead of
    /// Kafka: batch by batch at the recorded times, with the recorded records, printing what the recorded run
    /// printed. No broker is needed; checkpoints are not written.
    pub fn replay_from(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.replay = Some(path.into());
        self
    }

    /// What a refused record does (see [`InputStream::try_map`]): skip and report it (default), or fail.
    pub fn on_malformed(&mut self, policy: MalformedPolicy) -> &mut Self {
        self.graph.set_malformed_policy(policy);
        self
    }

    /// One status line per batch on stderr, as `dstream run` prints (on by default).
    pub fn status_lines(&mut self, on: bool) -> &mut Self {
        self.status = on;
        self
    }

    /// Stops after `n` batches (counted over the whole life of the context).
    pub fn stop_after_batches(&mut self, n: u64) -> &mut Self {
        self.batches = Some(n);
        self
    }

    /// Where `print` writes (stdout by default).
    pub fn print_to(&mut self, out: impl Write + 'static) -> &mut Self {
        self.out = Box::new(out);
        self
    }

    /// Adds a listener.
    pub fn add_listener(&mut self, l: impl StreamingListener + 'static) -> &mut Self {
        self.listeners.push(Box::new(l));
        self
    }

    /// Serves the web UI (see [`crate::ui`]) on `addr` (a loopback HOST:PORT; a taken port is followed by the
    /// next ones) from `start` until the context is dropped, keeping the last `retained_batches` batches; the
    /// address is printed on stderr. Off by default.
    pub fn ui(&mut self, addr: &str, retained_batches: usize) -> &mut Self {
        self.ui = Some((addr.to_string(), retained_batches));
        self
    }

    /// Lets the web UI listen on an address beyond loopback (refused otherwise).
    pub fn ui_allow_remote(&mut self, on: bool) -> &mut Self {
        self.ui_remote = on;
        self
    }

    /// The web UI's address once started.
    pub fn ui_addr(&self) -> Option<std::net::SocketAddr> {
        self.ui_server.as_ref().map(|s| s.addr())
    }

    /// A handle that stops the context from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Connects, resumes from the checkpoint if there is one of this program, and readies the run; batches
    /// run while [`await_termination`](Self::await_termination) runs.
    pub fn start(&mut self) -> Result<(), StreamingError> {
        if !matches!(self.phase, Phase::Defining) {
            return Err(StreamingError::Usage("the context was already started"));
        }
        if self.replay.is_some() {
            if self.graph.outputs() == 0 {
                return Err(StreamingError::Usage(NO_OUTPUTS));
            }
            self.phase = Phase::Replaying(self.graph.build());
            return Ok(());
        }
        if let Some(conflict) = &self.conflict {
            return Err(StreamingError::Config(conflict.clone()));
        }
        if self.graph.outputs() == 0 {
            return Err(StreamingError::Usage(NO_OUTPUTS));
        }
        // The graph numbers its inputs in the order the program asked for them: the direct streams follow it.
        let mut inputs = Vec::new();
        for topic in self.graph.inputs() {
            match self.sources.iter().find(|s| s.topic == topic) {
                Some(s) => inputs.push(s.clone()),
                None => {
                    return Err(StreamingError::Config(format!(
                        "the program reads input {topic:?}, which no direct stream of this context reads"
                    )))
                }
            }
        }
        // No direct stream: the batches hold only what the graph's other sources (queues, files, sockets) bring,
        // and no broker is contacted.
        let source = inputs.first().cloned().unwrap_or(Source { params: KafkaParams::new(""), topic: String::new() });
        if let Some(other) = inputs.iter().find(|s| !s.params.same_cluster(&source.params)) {
            return Err(StreamingError::Config(format!(
                "the direct streams of one context use the same brokers and client settings ({:?} differs from {:?})",
                other.topic, source.topic
            )));
        }
        let topics: Vec<String> = inputs.iter().map(|s| s.topic.clone()).collect();
        let topics_label = topics.join(",");
        let mut job = self.graph.build();
        let p = &source.params;
        let mut client_config = p.client.clone();
        // A stop during connecting (retries included) ends the start rather than waiting the retries out.
        client_config.interrupt.get_or_insert_with(|| self.stop.stopped.clone());
        let opts = RunOptions {
            brokers: p.brokers.clone(),
            topic: source.topic.clone(),
            batch_interval: self.interval,
            starting_offsets: p.starting_offsets,
            max_rate_per_partition: p.max_rate_per_partition,
            batches: self.batches,
            on_out_of_range: p.on_out_of_range,
            client: client_config,
            on_bad_batch: self.graph.malformed_policy(),
            more_topics: inputs
                .iter()
                .skip(1)
                .map(|s| DirectConfig {
                    topic: s.topic.clone(),
                    starting_offsets: s.params.starting_offsets,
                    max_rate_per_partition: s.params.max_rate_per_partition,
                    batch_interval: self.interval,
                    on_out_of_range: s.params.on_out_of_range,
                })
                .collect(),
        };
        let mut checkpointer = None;
        let mut start = None;
        if let Some(c) = &self.checkpoint {
            // The directory is checked (and claimed) before any broker is contacted.
            let store = CheckpointStore::open(&c.dir)?.with_keep(c.keep);
            for leftover in store.removed_leftovers() {
                eprintln!(
                    "dstream: removed {}, a temporary file of a checkpoint write that did not finish",
                    leftover.display()
                );
            }
            if c.reset {
                if let Some(aside) = store.reset()? {
                    eprintln!("dstream: reset: moved the old checkpoints to {}", aside.display());
                }
            }
            let mut prints = Vec::new();
            if !topics.is_empty() {
                let mut client = Client::connect(&opts.brokers, opts.client.clone())?;
                for topic in &topics {
                    let partitions = client.partitions(topic)?.len() as u32;
                    let topic_id = client.topic_id(topic)?;
                    prints.push(InputPrint { topic: topic.clone(), partitions, topic_id });
                }
            }
            let no_kafka = InputPrint { topic: String::new(), partitions: 0, topic_id: None };
            let first = if prints.is_empty() { no_kafka } else { prints.remove(0) };
            let fingerprint = Fingerprint::of_job(&first.topic, first.partitions, &self.name, &mut job, self.interval)
                .with_topic_id(first.topic_id)
                .with_more_inputs(prints);
            let mut ck = Checkpointer::new(store, fingerprint, self.checkpoint_every).in_background();
            let restore_started = std::time::Instant::now();
            let loaded = ck.load()?;
            if loaded.is_none() {
                eprintln!("dstream: no checkpoint in {}: starting fresh", c.dir.display());
            }
            if let Some(loaded) = loaded {
                for skipped in &loaded.skipped {
                    eprintln!("dstream: warning: {skipped}; using an older checkpoint");
                }
                eprintln!(
                    "dstream: resuming from {} (batch {}, {} pending batch(es) to recompute)",
                    loaded.path.display(),
                    loaded.checkpoint.meta.time,
                    loaded.checkpoint.meta.pending.len()
                );
                let path = loaded.path.clone();
                let (batch, pending) = (loaded.checkpoint.meta.time, loaded.checkpoint.meta.pending.len());
                let resumed = restore(loaded.checkpoint, job, self.interval, SystemClock.now())
                    .map_err(|source| StreamingError::Restore { path: path.clone(), source })?;
                ck.note_restored(crate::recovery::Restored { path, batch, pending, took: restore_started.elapsed() });
                let offsets = resumed.next_offsets.iter().map(|n| (n.partition, n.offset)).collect();
                let (engine, pending, leader_epochs) = (resumed.engine, resumed.pending, resumed.leader_epochs);
                start = Some(Start::Resume(Resume { offsets, engine, pending, leader_epochs }));
                checkpointer = Some(ck);
                job = Graph::new();
            } else {
                checkpointer = Some(ck);
            }
        }
        let start = start.unwrap_or(Start::Fresh(job));
        let mut ui = None;
        if let Some((addr, retained)) = &self.ui {
            if self.checkpoint.is_none() && !topics.is_empty() {
                // The topic is known to exist before the UI starts, so that a bad broker or topic is the one line
                // it is without the UI.
                let mut client = Client::connect(&opts.brokers, opts.client.clone())?;
                for topic in &topics {
                    client.partitions(topic)?;
                }
            }
            let config = crate::ui::UiConfig {
                topic: topics_label.clone(),
                batch_interval: self.interval,
                retained_batches: *retained,
            };
            let collector = crate::ui::UiCollector::new(config);
            if let Some(r) = checkpointer.as_ref().and_then(Checkpointer::restored) {
                collector.restored(r.clone());
            }
            let server = collector.serve(addr, self.ui_remote)?;
            eprintln!("dstream: web UI at {}", server.url());
            self.ui_server = Some(server);
            ui = Some(collector);
        }
        let recorder = self
            .record
            .as_ref()
            .map(|path| Recorder::new(path.clone(), &topics_label, &self.name, self.record_params.clone()));
        let hooks = StandardHooks {
            malformed: MalformedReporter::default(),
            recorder,
            checkpointer,
            ui,
            status: self.status.then(|| Box::new(StatusLine::stderr()) as Box<dyn StreamingListener>),
            listeners: std::mem::take(&mut self.listeners),
            completed: 0,
            submitted: None,
        };
        self.phase = Phase::Started(Box::new(Started { opts, start, hooks }));
        Ok(())
    }

    /// Runs batches until the context is stopped (a [`StopHandle`], Ctrl-C if asked for) or the stream ends
    /// (see [`stop_after_batches`](Self::stop_after_batches)); the running batch always finishes, and a
    /// checkpoint of it is written.
    pub fn await_termination(&mut self) -> Result<(), StreamingError> {
        self.run_until(None).map(|_| ())
    }

    /// As [`await_termination`](Self::await_termination), for at most `timeout`: `Ok(true)` if the context
    /// terminated, `Ok(false)` if the time ran out (the running batch finished; batches not yet processed run
    /// when awaiting again, and missed ticks run at once, as after a restart).
    pub fn await_termination_or_timeout(&mut self, timeout: std::time::Duration) -> Result<bool, StreamingError> {
        self.run_until(Some(timeout))
    }

    /// Stops the context: with `graceful`, the batches generated but not yet processed run first. A stopped
    /// context cannot be started again.
    pub fn stop(&mut self, graceful: bool) -> Result<(), StreamingError> {
        self.stop.stop();
        if graceful {
            if let Phase::Started(s) = &mut self.phase {
                if let Start::Resume(r) = &s.start {
                    if !r.pending.is_empty() {
                        // Only the pending batches: no new ones are generated.
                        s.opts.batches = Some(s.hooks.completed);
                        self.phase = self.run_phase(None)?;
                    }
                }
            }
        }
        if let Phase::Started(s) = &mut self.phase {
            if let Some(c) = &mut s.hooks.checkpointer {
                c.flush()?;
            }
        }
        if let Phase::Started(s) = std::mem::replace(&mut self.phase, Phase::Stopped) {
            s.hooks.malformed.finish();
            if let Some(r) = s.hooks.recorder {
                let n = r.finish().map_err(|e| StreamingError::Run(RunError::End(Box::new(e))))?;
                let path = self.record.as_ref().expect("a recorder has a path").display();
                // The file is created at the first completed batch (its header needs the grid and the partitions).
                if n == 0 {
                    eprintln!("dstream: recorded nothing: no batch completed, so {path} was not written");
                } else {
                    eprintln!("dstream: recorded {n} batches to {path}");
                }
            }
        }
        Ok(())
    }

    fn run_until(&mut self, timeout: Option<std::time::Duration>) -> Result<bool, StreamingError> {
        match &self.phase {
            Phase::Defining => return Err(StreamingError::Usage("the context was not started")),
            Phase::Stopped => return Ok(true),
            Phase::Replaying(_) => {
                self.replay_recording()?;
                return Ok(true);
            }
            Phase::Started(_) => {}
        }
        self.phase = self.run_phase(timeout)?;
        let terminated = match &self.phase {
            Phase::Started(s) => self.stop.is_stopped() || s.opts.batches.is_some_and(|n| s.hooks.completed >= n),
            _ => true,
        };
        if terminated {
            self.stop(false)?;
        }
        Ok(terminated)
    }

    /// Runs the whole recording through the graph.
    fn replay_recording(&mut self) -> Result<(), StreamingError> {
        let Phase::Replaying(job) = std::mem::replace(&mut self.phase, Phase::Stopped) else { return Ok(()) };
        let path = self.replay.clone().expect("replaying has a path");
        let replay_err = |e: crate::replay::ReplayError| StreamingError::Replay(e.to_string());
        let mut reader = crate::recording::RecordingReader::open(&path)
            .map_err(|e| StreamingError::Replay(format!("{}: {e}", path.display())))?;
        let listeners = &mut self.listeners;
        let (zero, interval) = (reader.header().zero, reader.header().batch_interval);
        let no_input = dstream_core::RecordBatch::new();
        let mut on_batch = |r: &dstream_core::BatchReport| {
            r.malformed.iter().for_each(|m| eprintln!("dstream: skipped {m}"));
            let info = BatchInfo { time: r.time, ranges: Vec::new() };
            let done = BatchCompleted {
                info: &info,
                records: r.records,
                malformed: &r.malformed,
                scheduling_delay: r.scheduling_delay,
                processing_time: r.processing_time,
                lag: 0,
                lags: &[],
                pending: &[],
                printed: &r.printed,
                input: &no_input,
                next_offsets: &[],
                leader_epochs: &[],
                zero,
                interval,
                output_operations: &r.output_operations,
            };
            for l in listeners.iter_mut() {
                l.on_batch_submitted(&info);
                l.on_batch_started(&info);
                for op in &r.output_operations {
                    l.on_output_operation_started(op);
                    l.on_output_operation_completed(op);
                }
                l.on_batch_completed(&done);
            }
        };
        crate::replay::replay_reader(job, &mut reader, &mut self.out, &mut on_batch).map_err(replay_err)?;
        Ok(())
    }

    /// Runs the started context until it stops or `timeout` passes; the phase to continue from.
    fn run_phase(&mut self, timeout: Option<std::time::Duration>) -> Result<Phase, StreamingError> {
        let Phase::Started(mut s) = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return Ok(Phase::Stopped);
        };
        let flag = Arc::new(AtomicBool::new(self.stop.is_stopped()));
        *self.stop.run.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag.clone());
        // The timeout ends the run unless the run ends first (dropping `_cancel` wakes the timer thread at once).
        let mut _cancel = None;
        if let Some(t) = timeout {
            let f = flag.clone();
            let (tx, rx) = crossbeam_channel::bounded::<()>(0);
            _cancel = Some(tx);
            std::thread::Builder::new()
                .name("dstream-await-timeout".into())
                .spawn(move || {
                    if rx.recv_timeout(t) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                        f.store(true, Ordering::SeqCst);
                    }
                })
                .map_err(|e| StreamingError::Run(RunError::Output(e)))?;
        }
        let mut opts = s.opts.clone();
        opts.batches = s.opts.batches.map(|n| n.saturating_sub(s.hooks.completed));
        let start = std::mem::replace(&mut s.start, Start::Fresh(Graph::new()));
        let result = run_job_to_end(&opts, start, &mut s.hooks, flag, &mut self.out);
        *self.stop.run.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let outcome = result?;
        let (total, run) = (&mut self.summary, outcome.summary);
        total.batches += run.batches;
        total.records += run.records;
        total.malformed += run.malformed;
        total.stopped |= self.stop.is_stopped();
        s.start = Start::Resume(outcome.resume);
        Ok(Phase::Started(s))
    }
}

/// What a run does after each batch, for `dstream run` and a streaming context alike: malformed-record reports,
/// the recording, checkpoints (every N batches, and after the last batch of a run that ends), the web UI (with
/// each stateful operator's size and the checkpoint written) and the program's listeners.
#[derive(Default)]
pub struct StandardHooks {
    /// Reports malformed records on stderr.
    pub malformed: MalformedReporter,
    /// Records every batch, if asked for.
    pub recorder: Option<Recorder>,
    /// Saves checkpoints, if a directory was given.
    pub checkpointer: Option<Checkpointer>,
    /// Feeds the web UI, if it runs.
    pub ui: Option<crate::ui::UiCollector>,
    /// The status line, heard first of the listeners (before the batch's malformed-record reports), if on.
    pub status: Option<Box<dyn StreamingListener>>,
    /// The program's listeners.
    pub listeners: Vec<Box<dyn StreamingListener>>,
    /// Batches completed so far.
    pub completed: u64,
    /// The newest batch the listeners heard was submitted.
    pub submitted: Option<Time>,
}

fn next_offsets(offsets: &[(i32, i64)]) -> Vec<NextOffset> {
    offsets.iter().map(|&(partition, offset)| NextOffset { partition, offset }).collect()
}

impl<J: dstream_core::Job> RunHooks<J> for StandardHooks {
    fn after_batch(&mut self, b: &mut CompletedBatch<'_, J>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.completed += 1;
        let (done, job) = BatchCompleted::with_job(b);
        if let Some(status) = &mut self.status {
            status.on_batch_completed_with_job(&done, job)?;
        }
        if let Some(r) = &mut self.recorder {
            r.on_batch_completed_with_job(&done, job)?;
        }
        done.malformed.iter().for_each(|m| self.malformed.report(m));
        let mut saved = None;
        if let Some(c) = &mut self.checkpointer {
            // Batches generated ahead of processing are stored as pending, with their ranges: after a restart they
            // run again over exactly those ranges, and the live stream continues after them.
            let started = std::time::Instant::now();
            c.on_batch_completed_with_job(&done, job).inspect_err(|e| {
                if let Some(ui) = &self.ui {
                    ui.checkpoint_failed(&e.to_string());
                }
            })?;
            saved = c.saved_by_last_batch().map(|path| crate::ui::SavedCheckpoint {
                path: path.to_path_buf(),
                batch_path: started.elapsed(),
                state_bytes: c.state_bytes().to_vec(),
            });
        }
        if let Some(ui) = &self.ui {
            let mut sizes: Vec<(String, &'static str, u64, u64)> = Vec::new();
            crate::checkpoint::for_each_operator(job, &mut |id, op| {
                sizes.push((id.to_string(), op.kind(), op.len() as u64, op.timed_out()))
            });
            let state: Vec<crate::ui::StateSize<'_>> = sizes
                .iter()
                .map(|(id, kind, keys, timed_out)| crate::ui::StateSize {
                    operator: id,
                    kind,
                    keys: *keys,
                    timed_out: *timed_out,
                })
                .collect();
            let writes = self.checkpointer.as_ref().map(|c| c.write_stats());
            ui.batch_completed(&done, &state, saved, writes);
        }
        for l in &mut self.listeners {
            for op in done.output_operations {
                l.on_output_operation_started(op);
                l.on_output_operation_completed(op);
            }
            l.on_batch_completed_with_job(&done, job)?;
        }
        Ok(())
    }
    fn on_batch_submitted(&mut self, info: &BatchInfo) {
        // A batch left pending by an await that timed out runs again on the next await: heard submitted once.
        if self.submitted.is_some_and(|t| info.time <= t) {
            return;
        }
        self.submitted = Some(info.time);
        for l in &mut self.listeners {
            l.on_batch_submitted(info);
        }
    }
    fn before_batch(&mut self, info: &BatchInfo) {
        if let Some(ui) = &self.ui {
            ui.batch_started(info);
        }
        for l in &mut self.listeners {
            l.on_batch_started(info);
        }
    }
    fn at_end(&mut self, end: &mut RunEnd<'_, J>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let stopped = RunStopped {
            last_completed: end.engine.last_completed(),
            zero: end.engine.timer().zero(),
            interval: end.engine.timer().interval(),
            next_offsets: end.next_offsets,
            pending: end.pending,
            leader_epochs: end.leader_epochs,
        };
        let job: &mut dyn Job = end.engine.job_mut();
        if let Some(c) = &mut self.checkpointer {
            let saved = c.on_stopped(&stopped, job);
            if let Some(ui) = &self.ui {
                match &saved {
                    Ok(()) => ui.checkpoints_written(c.write_stats()),
                    Err(e) => ui.checkpoint_failed(&e.to_string()),
                }
            }
            saved?;
        }
        for l in &mut self.listeners {
            l.on_stopped(&stopped, job)?;
        }
        Ok(())
    }
    fn on_live(&mut self, generated: &crate::run::GeneratedBatches) {
        if let Some(ui) = &self.ui {
            ui.watch_generated(generated.clone());
        }
    }
    fn on_failure(&mut self, error: &RunError) {
        if let Some(ui) = &self.ui {
            ui.run_failed(&error.to_string());
        }
    }
    fn needs_records(&self) -> bool {
        self.recorder.is_some() || self.listeners.iter().any(|l| l.needs_input())
    }
    fn on_reset(&mut self, r: &OffsetReset) {
        eprintln!("{}", reset_warning(r));
    }
}

/// The checkpointer is a listener: after each batch it saves the job's state if the batch is a checkpoint batch,
/// and when the run stops it saves the last batch's and waits until every checkpoint is durable.
impl StreamingListener for Checkpointer {
    fn on_batch_completed_with_job(&mut self, b: &BatchCompleted<'_>, job: &mut dyn Job) -> Result<(), ListenerError> {
        self.set_leader_epochs(b.leader_epochs);
        let at = Grid { time: b.info.time, zero: b.zero, interval: b.interval };
        self.after_batch_job(job, at, &next_offsets(b.next_offsets), b.pending)?;
        Ok(())
    }
    fn on_stopped(&mut self, end: &RunStopped<'_>, job: &mut dyn Job) -> Result<(), ListenerError> {
        self.set_leader_epochs(end.leader_epochs);
        if let Some(time) = end.last_completed {
            let at = Grid { time, zero: end.zero, interval: end.interval };
            self.save_job(job, at, &next_offsets(end.next_offsets), end.pending)?;
        }
        self.flush()?;
        Ok(())
    }
}

/// The recorder is a listener: it writes each batch's ranges and input records to the recording.
impl StreamingListener for Recorder {
    fn needs_input(&self) -> bool {
        true
    }
    fn on_batch_completed_with_job(&mut self, b: &BatchCompleted<'_>, _job: &mut dyn Job) -> Result<(), ListenerError> {
        self.record_batch(b)?;
        Ok(())
    }
}

/// `saveAsTextFiles(prefix, suffix)`: each batch's elements, one per line as the JVM prints them, in one file
/// `PREFIX-TIME_MS[.SUFFIX]` per batch, written atomically (a temporary file, fsync, rename, fsync of the
/// directory): a file is there whole or not at all; a batch run again after a restart writes the same file.
pub trait SaveAsTextFiles {
    /// Registers the output operation.
    fn save_as_text_files(&self, prefix: impl AsRef<Path>, suffix: &str);
}

impl<D> SaveAsTextFiles for Stream<D>
where
    D: DStream + 'static,
    D::Item: Clone + JvmDisplay + 'static,
{
    fn save_as_text_files(&self, prefix: impl AsRef<Path>, suffix: &str) {
        let prefix = prefix.as_ref().to_path_buf();
        let suffix = suffix.to_string();
        let mut text = String::new();
        self.try_foreach_batch(move |time: Time, items: &[D::Item]| {
            text.clear();
            for x in items {
                x.write_jvm(&mut text);
                text.push('\n');
            }
            let path = batch_file(&prefix, &suffix, time);
            write_atomically(&path, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
        });
    }
}

/// The file of batch `time`: `PREFIX-TIME_MS[.SUFFIX]`.
pub fn batch_file(prefix: &Path, suffix: &str, time: Time) -> PathBuf {
    let mut name = prefix.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.push_str(&format!("-{}", time.millis()));
    if !suffix.is_empty() {
        name.push('.');
        name.push_str(suffix);
    }
    prefix.with_file_name(name)
}

/// Writes `bytes` to `path` so that it is there whole or not at all, and durable when this returns.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&temp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}
