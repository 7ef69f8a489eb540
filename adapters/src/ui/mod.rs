//! The web UI of a running job, as Spark's Streaming tab: a page that charts and lists the batches, a JSON API
//! it polls (`/api/v1/batches`, `/api/v1/batches/<time>`, `/api/v1/state`) and `/metrics` in the Prometheus
//! text format.
//!
//! A [`UiCollector`] is a [`StreamingListener`]: when a batch starts it notes it as running, and after it stores
//! a small summary (a lock and a few allocations per batch, nothing per record) in a bounded history; the run's
//! hooks add what listeners do not hear (state sizes, checkpoints, the queue of generated batches, failures).
//! A [`UiServer`] serves that history from threads of its own: one accepts, a few answer, each request rendered
//! under the lock and written after it is released, so a slow or stuck client never holds up a batch. Requests are bounded (size, header count, time),
//! and the server listens on loopback addresses only unless asked otherwise.

mod http;
mod render;

pub use crate::recovery::Restored;
use crate::recovery::WriteStats;
use crate::run::GeneratedBatches;
use crate::streaming::{BatchCompleted, StreamingListener};
use dstream_core::{BatchInfo, Duration, Malformed, OffsetRange, Time};
use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Completed batches kept by default (Spark's `spark.streaming.ui.retainedBatches`).
pub const DEFAULT_RETAINED_BATCHES: usize = 1000;

/// Malformed records kept per batch, with their positions (the count is always exact).
pub const MALFORMED_KEPT_PER_BATCH: usize = 100;

/// Bytes of a batch's `print` output kept (the start of it).
pub const PRINTED_KEPT_PER_BATCH: usize = 4096;

/// The port tried first when none is given (Spark's UI port).
pub const DEFAULT_PORT: u16 = 4040;

/// Ports tried after a taken one, one after another, before any free port is taken (Spark's
/// `spark.port.maxRetries`).
pub const PORT_RETRIES: u16 = 16;

/// What the UI shows about the job itself.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// The topic read.
    pub topic: String,
    /// The batch interval.
    pub batch_interval: Duration,
    /// Completed batches kept (the newest).
    pub retained_batches: usize,
}

/// Why the UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The address does not resolve.
    #[error("web UI address {addr}: {source}")]
    Resolve {
        /// The address given.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The address is not a loopback address and listening beyond loopback was not asked for.
    #[error("web UI address {0} is not a loopback address (pass --ui-allow-remote to listen on it)")]
    NotLoopback(String),
    /// No port could be bound.
    #[error("cannot listen on {addr} for the web UI: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One completed batch as the UI keeps it.
#[derive(Debug, Clone)]
pub(crate) struct BatchRecord {
    pub(crate) time: Time,
    pub(crate) records: u64,
    pub(crate) malformed: u64,
    pub(crate) malformed_kept: Vec<Malformed>,
    /// Keys of stateful operators whose idle timeout expired in it.
    pub(crate) timed_out: u64,
    pub(crate) scheduling_delay: Duration,
    pub(crate) processing_time: Duration,
    pub(crate) lag: i64,
    /// (partition, lag) when it was generated; empty for a batch run again.
    pub(crate) lags: Vec<(i32, i64)>,
    pub(crate) waiting: usize,
    pub(crate) ranges: Vec<OffsetRange>,
    /// The start of what its `print` operations wrote, and that output's whole length.
    pub(crate) printed: String,
    pub(crate) printed_len: usize,
    /// Wall-clock ms when it completed (or failed).
    pub(crate) completed_at: i64,
    /// Why it failed, if it did (the run stopped there).
    pub(crate) error: Option<String>,
}

impl BatchRecord {
    pub(crate) fn total_delay(&self) -> Duration {
        Duration(self.scheduling_delay.0 + self.processing_time.0)
    }
}

/// Totals of one partition.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartitionTotals {
    /// Offsets in completed batches' ranges (records, unless the log has gaps).
    pub(crate) records: u64,
    /// The next offset after the last completed batch.
    pub(crate) next_offset: i64,
    /// Records in its log beyond the last completed live batch's range when that batch was generated.
    pub(crate) lag: Option<i64>,
}

/// The size of one stateful operator's state.
#[derive(Debug, Clone)]
pub(crate) struct OperatorState {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) keys: u64,
    /// Keys timed out in the last batch, and in all batches.
    pub(crate) timed_out: u64,
    pub(crate) timed_out_total: u64,
    /// Bytes of its state in the last checkpoint, and that checkpoint's batch.
    pub(crate) bytes: Option<(u64, Time)>,
}

/// The batch being processed.
#[derive(Debug, Clone)]
pub(crate) struct RunningBatch {
    pub(crate) info: BatchInfo,
    /// Wall-clock ms when its processing started.
    pub(crate) started_at: i64,
}

/// What the UI knows of checkpoints.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckpointFigures {
    /// Saved after a batch (handed to the writer thread, or written inline).
    pub(crate) saved: u64,
    pub(crate) last_batch: Option<Time>,
    pub(crate) last_path: Option<PathBuf>,
    /// Wall-clock ms when the last one was handed over for writing.
    pub(crate) last_at: Option<i64>,
    /// Time the batch path spent on the last one (encoding the state; writing it too when not in background).
    pub(crate) last_batch_path: Option<std::time::Duration>,
    /// Durable on disk, failed writes and the last written.
    pub(crate) writes: WriteStats,
    /// Checkpoint errors the run met (each stops it), the last with its wall-clock ms.
    pub(crate) failures: u64,
    pub(crate) last_failure: Option<(String, i64)>,
    /// The restore at start, if the run resumed from a checkpoint.
    pub(crate) restored: Option<Restored>,
}

/// Everything the UI shows, shared by the collector and the server.
#[derive(Debug)]
pub(crate) struct UiData {
    pub(crate) config: UiConfig,
    /// Wall-clock ms when the collector was made.
    pub(crate) start_time: i64,
    pub(crate) started: std::time::Instant,
    pub(crate) completed: u64,
    pub(crate) records: u64,
    pub(crate) malformed: u64,
    pub(crate) timed_out: u64,
    /// Batches generated and not completed when the last batch completed: time and records.
    pub(crate) waiting: Vec<(Time, u64)>,
    pub(crate) last_lag: i64,
    /// Oldest first.
    pub(crate) batches: VecDeque<BatchRecord>,
    pub(crate) partitions: BTreeMap<i32, PartitionTotals>,
    pub(crate) state: Vec<OperatorState>,
    pub(crate) checkpoint: CheckpointFigures,
    pub(crate) running: Option<RunningBatch>,
    /// The run's batches generated and not completed, live, when the run shares them.
    pub(crate) generated: Option<GeneratedBatches>,
    /// Why the run failed, with the wall-clock ms.
    pub(crate) failure: Option<(String, i64)>,
}

/// The longest start of `s` of at most `max` bytes that ends on a character boundary.
fn head(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Feeds the UI: a [`StreamingListener`] (add it to a streaming context, or call it from a run's hooks), plus
/// what listeners do not hear (state size, checkpoints). Clones share the same data.
#[derive(Debug, Clone)]
pub struct UiCollector {
    data: Arc<Mutex<UiData>>,
}

impl UiCollector {
    /// A collector with nothing collected yet; its start time is now.
    pub fn new(config: UiConfig) -> Self {
        let data = UiData {
            config,
            start_time: wall_ms(),
            started: std::time::Instant::now(),
            completed: 0,
            records: 0,
            malformed: 0,
            timed_out: 0,
            waiting: Vec::new(),
            last_lag: 0,
            batches: VecDeque::new(),
            partitions: BTreeMap::new(),
            state: Vec::new(),
            checkpoint: CheckpointFigures::default(),
            running: None,
            generated: None,
            failure: None,
        };
        UiCollector { data: Arc::new(Mutex::new(data)) }
    }

    fn lock(&self) -> MutexGuard<'_, UiData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch began processing (its ranges fixed): shown as running.
    pub fn batch_started(&self, info: &BatchInfo) {
        let running = RunningBatch { info: info.clone(), started_at: wall_ms() };
        let mut d = self.lock();
        d.waiting.retain(|w| w.0 > info.time);
        d.running = Some(running);
    }

    /// A batch completed, with what listeners do not hear of it: the size of each stateful operator's state
    /// after it, its checkpoint, if one was saved (to `path`, costing the batch path `batch_path`), and the
    /// checkpoints written so far. All of it is shown at once.
    pub fn batch_completed(
        &self,
        b: &BatchCompleted<'_>,
        state: &[StateSize<'_>],
        checkpoint: Option<SavedCheckpoint>,
        writes: Option<&WriteStats>,
    ) {
        let mut record = BatchRecord::of(b);
        record.timed_out = state.iter().map(|s| s.timed_out).sum();
        let mut d = self.lock();
        // Copied only when it changed (a write completed or failed).
        if let Some(w) =
            writes.filter(|w| (w.written, w.failed) != (d.checkpoint.writes.written, d.checkpoint.writes.failed))
        {
            d.checkpoint.writes = w.clone();
        }
        d.running = None;
        for s in state {
            let i = match d.state.iter().position(|o| o.name == s.operator) {
                Some(i) => i,
                None => {
                    d.state.push(OperatorState {
                        name: s.operator.to_string(),
                        kind: s.kind.to_string(),
                        keys: 0,
                        timed_out: 0,
                        timed_out_total: 0,
                        bytes: None,
                    });
                    d.state.len() - 1
                }
            };
            let o = &mut d.state[i];
            o.keys = s.keys;
            o.timed_out = s.timed_out;
            o.timed_out_total += s.timed_out;
        }
        if let Some(saved) = checkpoint {
            for (id, n) in &saved.state_bytes {
                if let Some(o) = d.state.iter_mut().find(|o| &o.name == id) {
                    o.bytes = Some((*n, b.info.time));
                }
            }
            let c = &mut d.checkpoint;
            c.saved += 1;
            c.last_batch = Some(b.info.time);
            c.last_path = Some(saved.path);
            c.last_at = Some(wall_ms());
            c.last_batch_path = Some(saved.batch_path);
        }
        d.waiting.clear();
        d.waiting.extend(b.pending.iter().map(|p| (p.time, p.ranges.iter().map(|r| r.count() as u64).sum())));
        d.add(record);
    }

    /// The run restored a checkpoint at start.
    pub fn restored(&self, r: Restored) {
        self.lock().checkpoint.restored = Some(r);
    }

    /// The checkpoints written so far (e.g. after the last ones were flushed at the end of a run).
    pub fn checkpoints_written(&self, writes: &WriteStats) {
        self.lock().checkpoint.writes = writes.clone();
    }

    /// Saving or writing a checkpoint failed (which stops the run).
    pub fn checkpoint_failed(&self, error: &str) {
        let mut d = self.lock();
        d.checkpoint.failures += 1;
        d.checkpoint.last_failure = Some((error.to_string(), wall_ms()));
    }

    /// The run failed: the running batch, if any, is shown as failed with `error`.
    pub fn run_failed(&self, error: &str) {
        let now = wall_ms();
        let mut d = self.lock();
        d.failure = Some((error.to_string(), now));
        if let Some(r) = d.running.take() {
            let record = BatchRecord {
                time: r.info.time,
                records: r.info.ranges.iter().map(|r| r.count() as u64).sum(),
                malformed: 0,
                malformed_kept: Vec::new(),
                timed_out: 0,
                scheduling_delay: Duration((r.started_at - r.info.time.0).max(0)),
                processing_time: Duration(now - r.started_at),
                lag: 0,
                lags: Vec::new(),
                waiting: d.waiting.len(),
                ranges: r.info.ranges,
                printed: String::new(),
                printed_len: 0,
                completed_at: now,
                error: Some(error.to_string()),
            };
            d.keep(record);
        }
    }

    /// Shows the run's batches generated and not yet completed live (rather than as of the last completion).
    pub fn watch_generated(&self, generated: GeneratedBatches) {
        self.lock().generated = Some(generated);
    }

    /// Serves this collector's data on `addr` (HOST:PORT; port 0 for any free port). A taken port is followed
    /// by the next [`PORT_RETRIES`] ones, then any free port. Unless `allow_remote`, only loopback addresses
    /// are accepted.
    pub fn serve(&self, addr: &str, allow_remote: bool) -> Result<UiServer, UiError> {
        UiServer::start(addr, allow_remote, self.data.clone())
    }
}

impl StreamingListener for UiCollector {
    fn on_batch_started(&mut self, info: &BatchInfo) {
        self.batch_started(info);
    }
    fn on_batch_completed(&mut self, b: &BatchCompleted<'_>) {
        self.batch_completed(b, &[], None, None);
    }
}

/// The size of a stateful operator's state.
#[derive(Debug, Clone, Copy)]
pub struct StateSize<'a> {
    /// The operator's name.
    pub operator: &'a str,
    /// Its kind (e.g. `map_with_state`).
    pub kind: &'a str,
    /// Keys in its state.
    pub keys: u64,
    /// Keys whose idle timeout expired in the batch.
    pub timed_out: u64,
}

/// A checkpoint saved after a batch.
#[derive(Debug, Clone)]
pub struct SavedCheckpoint {
    /// Its file (written by now, or soon by a background writer).
    pub path: PathBuf,
    /// Time the batch path spent on it.
    pub batch_path: std::time::Duration,
    /// Each stateful operator's id and the bytes of its state in it.
    pub state_bytes: Vec<(String, u64)>,
}

impl BatchRecord {
    fn of(b: &BatchCompleted<'_>) -> Self {
        BatchRecord {
            time: b.info.time,
            records: b.records as u64,
            malformed: Malformed::total(b.malformed),
            malformed_kept: b.malformed.iter().take(MALFORMED_KEPT_PER_BATCH).cloned().collect(),
            timed_out: 0,
            scheduling_delay: b.scheduling_delay,
            processing_time: b.processing_time,
            lag: b.lag,
            lags: b.lags.to_vec(),
            waiting: b.pending.len(),
            printed: head(b.printed, PRINTED_KEPT_PER_BATCH).to_string(),
            printed_len: b.printed.len(),
            ranges: b.info.ranges.clone(),
            completed_at: wall_ms(),
            error: None,
        }
    }
}

impl UiData {
    fn add(&mut self, record: BatchRecord) {
        let d = self;
        d.completed += 1;
        d.records += record.records;
        d.malformed += record.malformed;
        d.timed_out += record.timed_out;
        d.last_lag = record.lag;
        for r in &record.ranges {
            let p = d.partitions.entry(r.partition).or_default();
            p.records += r.count() as u64;
            p.next_offset = p.next_offset.max(r.until);
        }
        for &(partition, lag) in &record.lags {
            d.partitions.entry(partition).or_default().lag = Some(lag);
        }
        d.keep(record);
    }

    /// Keeps a batch among the newest.
    fn keep(&mut self, record: BatchRecord) {
        let keep = self.config.retained_batches.max(1);
        while self.batches.len() >= keep {
            self.batches.pop_front();
        }
        self.batches.push_back(record);
    }
}

/// The UI's HTTP server; stops accepting when dropped.
#[derive(Debug)]
pub struct UiServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl UiServer {
    fn start(addr: &str, allow_remote: bool, data: Arc<Mutex<UiData>>) -> Result<UiServer, UiError> {
        let addrs: Vec<SocketAddr> =
            addr.to_socket_addrs().map_err(|source| UiError::Resolve { addr: addr.to_string(), source })?.collect();
        let Some(first) = addrs.first().copied() else {
            return Err(UiError::Resolve { addr: addr.to_string(), source: std::io::ErrorKind::NotFound.into() });
        };
        if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(UiError::NotLoopback(addr.to_string()));
        }
        let listener = bind_with_fallback(first).map_err(|source| UiError::Bind { addr: addr.to_string(), source })?;
        let local = listener.local_addr().map_err(|source| UiError::Bind { addr: addr.to_string(), source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = http::spawn(listener, data, stop.clone())
            .map_err(|source| UiError::Bind { addr: addr.to_string(), source })?;
        Ok(UiServer { addr: local, stop, acceptor: Some(acceptor) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, std::time::Duration::from_millis(200));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Binds `addr`; if its port is taken, the next [`PORT_RETRIES`] ports, then any free port.
fn bind_with_fallback(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let first_err = match TcpListener::bind(addr) {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => e,
        Err(e) => return Err(e),
    };
    for step in 1..=PORT_RETRIES {
        let Some(port) = addr.port().checked_add(step) else { break };
        let mut a = addr;
        a.set_port(port);
        match TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    let mut a = addr;
    a.set_port(0);
    TcpListener::bind(a).map_err(|_| first_err)
}
