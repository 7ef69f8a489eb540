//! Checkpointing a running engine and resuming it exactly once (SPARK-SEMANTICS §5).
//!
//! A run loop calls [`Checkpointer::after_batch`] after every completed batch and, on start,
//! [`Checkpointer::load`] then [`restore`] and [`Resumed::recompute`]: the state comes back as of the
//! checkpoint's batch, the batches that were generated but not completed are run again over their stored
//! offset ranges, and the live stream continues from the stored next offsets. Every offset is therefore
//! reflected in the state exactly once; the printed output of recomputed batches appears again (at least once).

use crate::checkpoint::{
    encode, file_name, Checkpoint, CheckpointError, CheckpointMeta, CheckpointStore, Fingerprint, JobState, Loaded,
    NextOffset,
};
use crate::run::{run_pending, CompletedBatch, PendingError, RunError, RunHooks, RunSummary};
use crossbeam_channel::{Receiver, Sender};
use dstream_core::checkpoint::LeaderEpoch;
use dstream_core::{
    BatchInfo, BatchReport, BatchTimer, Clock, Duration, Engine, EngineError, Job, OffsetRange, RecordBatch, Time,
};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

pub use dstream_core::checkpoint::{restore_state, save_state, RestoreError};

/// Writes checkpoints of one job to a store, every `every` batches of the grid, inline or on a writer thread.
#[derive(Debug)]
pub struct Checkpointer {
    store: CheckpointStore,
    fingerprint: Fingerprint,
    every: u64,
    background: Option<Background>,
    leader_epochs: Vec<LeaderEpoch>,
    /// Each stateful operator's id and the bytes of its state in the last checkpoint saved.
    state_bytes: Vec<(String, u64)>,
    writes: WriteStats,
    restored: Option<Restored>,
    /// The checkpoint the last batch saved, if it was a checkpoint batch.
    saved_by_last_batch: Option<PathBuf>,
}

/// A completed batch's place on its grid: its time, the grid's origin and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The batch's time.
    pub time: Time,
    /// The grid's origin.
    pub zero: Time,
    /// The batch interval.
    pub interval: Duration,
}

/// A run's restore from a checkpoint at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The checkpoint's file.
    pub path: PathBuf,
    /// Its batch.
    pub batch: Time,
    /// Batches it left pending, run again first.
    pub pending: usize,
    /// How long loading it (reading, checksum, decoding, checks) and restoring the job's state took.
    pub took: std::time::Duration,
}

/// A checkpoint on disk: written, fsync'd and renamed into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenCheckpoint {
    /// Its batch.
    pub time: Time,
    /// Its file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// How long writing took: the file, its fsync, the rename and the directory's fsync (on the writer thread
    /// when in background).
    pub took: std::time::Duration,
    /// When it was durable.
    pub at: std::time::SystemTime,
}

/// What a [`Checkpointer`] has written so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Checkpoints durable on disk (a background write counts once its result is collected).
    pub written: u64,
    /// Writes that failed.
    pub failed: u64,
    /// The last one durable.
    pub last: Option<WrittenCheckpoint>,
}

impl WriteStats {
    fn record(&mut self, r: Result<WrittenCheckpoint, CheckpointError>) -> Result<(), CheckpointError> {
        match r {
            Ok(w) => {
                self.written += 1;
                self.last = Some(w);
                Ok(())
            }
            Err(e) => {
                self.failed += 1;
                Err(e)
            }
        }
    }
}

/// Writes `bytes` (the checkpoint of batch `time`) to `store`, timed.
fn write_timed(store: &CheckpointStore, time: Time, bytes: &[u8]) -> Result<WrittenCheckpoint, CheckpointError> {
    let started = std::time::Instant::now();
    let path = store.write_encoded(time, bytes)?;
    let took = started.elapsed();
    Ok(WrittenCheckpoint { time, path, bytes: bytes.len() as u64, took, at: std::time::SystemTime::now() })
}

/// The writer thread: checkpoints are encoded on the batch path (state and offsets captured together) and
/// written, fsync'd and renamed in order on this thread, one at a time.
#[derive(Debug)]
struct Background {
    tx: Option<Sender<(Time, Vec<u8>)>>,
    acks: Receiver<Result<WrittenCheckpoint, CheckpointError>>,
    in_flight: usize,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// A checkpointer for the job `fingerprint` describes, saving every `every` batches (at least 1), inline.
    pub fn new(store: CheckpointStore, fingerprint: Fingerprint, every: u64) -> Self {
        Checkpointer {
            store,
            fingerprint,
            every: every.max(1),
            background: None,
            leader_epochs: Vec::new(),
            state_bytes: Vec::new(),
            writes: WriteStats::default(),
            restored: None,
            saved_by_last_batch: None,
        }
    }

    /// Writes on a background thread: the batch path only encodes. At most one checkpoint waits while another is
    /// written (then the batch path blocks); a failed write is returned by the next `after_batch`, `save` or
    /// `flush`. A crash before a write finishes loses only that checkpoint: the previous one is used.
    pub fn in_background(mut self) -> Self {
        if self.background.is_none() {
            let (tx, rx) = crossbeam_channel::bounded::<(Time, Vec<u8>)>(1);
            let (ack_tx, acks) = crossbeam_channel::unbounded();
            let store = self.store.clone();
            let handle = std::thread::Builder::new()
                .name("checkpoint-writer".into())
                .spawn(move || {
                    for (time, bytes) in rx {
                        let r = write_timed(&store, time, &bytes);
                        let failed = r.is_err();
                        if ack_tx.send(r).is_err() || failed {
                            break;
                        }
                    }
                })
                .expect("spawn the checkpoint writer thread");
            self.background = Some(Background { tx: Some(tx), acks, in_flight: 0, handle: Some(handle) });
        }
        self
    }

    /// The store.
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// The job's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Each stateful operator's id and the bytes of its state (in the operator's own encoding, as the checkpoint
    /// stores it) in the last checkpoint saved; empty before the first.
    pub fn state_bytes(&self) -> &[(String, u64)] {
        &self.state_bytes
    }

    /// Notes the restore the run started from (for monitoring).
    pub fn note_restored(&mut self, r: Restored) {
        self.restored = Some(r);
    }

    /// The restore the run started from, if noted.
    pub fn restored(&self) -> Option<&Restored> {
        self.restored.as_ref()
    }

    /// The checkpoints written so far, and failures.
    pub fn write_stats(&self) -> &WriteStats {
        &self.writes
    }

    /// True if batch `time` is a checkpoint batch: `(time - zero) / interval` is a multiple of `every`.
    pub fn is_due(&self, time: Time, zero: Time, interval: Duration) -> bool {
        let k = (time - zero).millis() / interval.millis().max(1);
        k.rem_euclid(self.every as i64) == 0
    }

    /// The newest valid checkpoint of this job (see [`CheckpointStore::load_latest`]).
    pub fn load(&self) -> Result<Option<Loaded<JobState>>, CheckpointError> {
        self.store.load_latest(Some(&self.fingerprint))
    }

    /// Saves the engine's state as of its last completed batch, with where the stream continues and the
    /// batches generated after it; returns the file (written by the time this returns, unless in background).
    /// Does nothing (`Ok(None)`) if no batch has completed.
    pub fn save<J: Job>(
        &mut self,
        engine: &mut Engine<J>,
        next_offsets: &[NextOffset],
        pending: &[BatchInfo],
    ) -> Result<Option<PathBuf>, CheckpointError> {
        let Some(time) = engine.last_completed() else { return Ok(None) };
        let at = Grid { time, zero: engine.timer().zero(), interval: engine.timer().interval() };
        self.save_job(engine.job_mut(), at, next_offsets, pending).map(Some)
    }

    /// Saves `job`'s state as of batch `at.time` on its grid, with where the stream continues and the batches
    /// generated after it (what [`save`](Self::save) does with an engine's job).
    pub fn save_job(
        &mut self,
        job: &mut dyn Job,
        at: Grid,
        next_offsets: &[NextOffset],
        pending: &[BatchInfo],
    ) -> Result<PathBuf, CheckpointError> {
        let Grid { time, zero, interval } = at;
        // Partitions added to a topic while running are read, so the checkpoint's input has them too.
        self.fingerprint.grow_to(next_offsets);
        let meta = CheckpointMeta {
            leader_epochs: self.leader_epochs.clone(),
            fingerprint: self.fingerprint.clone(),
            time,
            zero,
            interval,
            next_offsets: next_offsets.to_vec(),
            pending: pending.to_vec(),
        };
        let state = save_state(job).map_err(|e| CheckpointError::State(e.to_string()))?;
        self.state_bytes.clear();
        self.state_bytes.extend(state.iter().map(|o| (o.id.clone(), o.bytes.len() as u64)));
        let cp = Checkpoint { meta, state };
        let path = match &mut self.background {
            None => {
                let r = write_timed(&self.store, time, &encode(&cp)?);
                let path = r.as_ref().map(|w| w.path.clone()).ok();
                self.writes.record(r)?;
                path.unwrap_or_else(|| self.store.dir().join(file_name(time)))
            }
            Some(bg) => {
                bg.collect(false, &mut self.writes)?;
                let bytes = encode(&cp)?;
                let tx = bg.tx.as_ref().expect("the sender lives until drop");
                if tx.send((time, bytes)).is_err() {
                    // The writer stopped after a failure it has already reported.
                    bg.collect(true, &mut self.writes)?;
                }
                bg.in_flight += 1;
                self.store.dir().join(file_name(time))
            }
        };
        Ok(path)
    }

    /// Saves if the engine's last completed batch is a checkpoint batch; call after every batch.
    pub fn after_batch<J: Job>(
        &mut self,
        engine: &mut Engine<J>,
        next_offsets: &[NextOffset],
        pending: &[BatchInfo],
    ) -> Result<Option<PathBuf>, CheckpointError> {
        let Some(time) = engine.last_completed() else { return self.collect().map(|()| None) };
        let at = Grid { time, zero: engine.timer().zero(), interval: engine.timer().interval() };
        self.after_batch_job(engine.job_mut(), at, next_offsets, pending)
    }

    /// Saves `job` if batch `at.time` is a checkpoint batch (what [`after_batch`](Self::after_batch) does with an
    /// engine's job); call after every batch.
    pub fn after_batch_job(
        &mut self,
        job: &mut dyn Job,
        at: Grid,
        next_offsets: &[NextOffset],
        pending: &[BatchInfo],
    ) -> Result<Option<PathBuf>, CheckpointError> {
        self.saved_by_last_batch = None;
        if self.is_due(at.time, at.zero, at.interval) {
            let path = self.save_job(job, at, next_offsets, pending)?;
            self.saved_by_last_batch = Some(path.clone());
            return Ok(Some(path));
        }
        self.collect().map(|()| None)
    }

    /// The checkpoint the last [`after_batch`](Self::after_batch) (or [`after_batch_job`](Self::after_batch_job))
    /// saved, if that batch was a checkpoint batch.
    pub fn saved_by_last_batch(&self) -> Option<&Path> {
        self.saved_by_last_batch.as_deref()
    }

    /// Takes in the background writer's finished writes (their failures), without waiting.
    fn collect(&mut self) -> Result<(), CheckpointError> {
        match &mut self.background {
            Some(bg) => bg.collect(false, &mut self.writes),
            None => Ok(()),
        }
    }

    /// The leader epochs the checkpoints saved from now on store (see [`LeaderEpoch`]).
    pub fn set_leader_epochs(&mut self, epochs: &[LeaderEpoch]) {
        self.leader_epochs.clear();
        self.leader_epochs.extend_from_slice(epochs);
    }

    /// Waits until every checkpoint handed to the writer thread is durable (no-op when inline).
    pub fn flush(&mut self) -> Result<(), CheckpointError> {
        match &mut self.background {
            Some(bg) => bg.collect(true, &mut self.writes),
            None => Ok(()),
        }
    }
}

impl Background {
    /// Takes the writer's results into `stats`: all of them if `wait`, else those ready; the first failure is
    /// returned.
    fn collect(&mut self, wait: bool, stats: &mut WriteStats) -> Result<(), CheckpointError> {
        while self.in_flight > 0 {
            let r = if wait {
                match self.acks.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                match self.acks.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            self.in_flight -= 1;
            stats.record(r)?;
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Finish queued writes: a clean exit leaves the newest checkpoint on disk.
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An engine restored from a checkpoint, with the work left to catch up.
pub struct Resumed<J> {
    /// The engine, its state as of the checkpoint's batch, its timer after the last stored batch.
    pub engine: Engine<J>,
    /// Where each partition's live stream continues once the pending batches have run.
    pub next_offsets: Vec<NextOffset>,
    /// Batches to run again over their stored ranges, oldest first.
    pub pending: Vec<BatchInfo>,
    /// The leader epochs the checkpoint stored, to check the log against (see [`LeaderEpoch`]).
    pub leader_epochs: Vec<LeaderEpoch>,
}

/// Why catching up after a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError<E: std::error::Error + 'static> {
    /// The records of a stored batch could not be fetched (e.g. retention deleted them).
    #[error("cannot fetch the records of stored batch {time}: {source}")]
    Fetch {
        /// The batch.
        time: Time,
        /// The source's error.
        source: E,
    },
    /// A recomputed batch failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The checkpoint's state does not fit the job.
    #[error("cannot restore the checkpoint's state: {0}")]
    Restore(#[from] RestoreError),
    /// A hook after a recomputed batch failed (e.g. its checkpoint could not be written).
    #[error("{0}")]
    Run(String),
    /// The checkpoint after a recomputed batch could not be written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Rebuilds an engine from a checkpoint: `job` (rebuilt by the program) gets the stored state. The batch grid
/// is the stored one if `interval` is unchanged; otherwise a new grid starts after the last stored batch (and `now`).
pub fn restore<J: Job>(
    cp: Checkpoint<JobState>,
    mut job: J,
    interval: Duration,
    now: Time,
) -> Result<Resumed<J>, RestoreError> {
    let meta = cp.meta;
    meta.check().map_err(RestoreError::Invalid)?;
    restore_state(&mut job, &cp.state)?;
    let last = meta.pending.last().map_or(meta.time, |b| b.time.max(meta.time));
    let timer = if meta.interval == interval {
        BatchTimer::resume(meta.zero, interval, last)
    } else {
        BatchTimer::first_start(now.max(last), interval)
    };
    Ok(Resumed {
        engine: Engine::new(job, timer),
        next_offsets: meta.next_offsets,
        pending: meta.pending,
        leader_epochs: meta.leader_epochs,
    })
}

impl<J: Job> Resumed<J> {
    /// Runs every pending batch again over its stored ranges, in order, through the same path as a live batch
    /// ([`run_pending`]): `fetch` fills the batch with exactly the records of the ranges, `on_report` sees each
    /// report (print it: at-least-once output), and the checkpointer (if any) saves after each, so a crash during
    /// catch-up loses nothing either.
    pub fn recompute<E, F, R>(
        &mut self,
        checkpointer: Option<&mut Checkpointer>,
        clock: &dyn Clock,
        fetch: F,
        on_report: R,
    ) -> Result<(), RecoveryError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(&[OffsetRange], &mut RecordBatch) -> Result<(), E>,
        R: FnMut(&BatchReport),
    {
        struct Hooks<'a, R> {
            checkpointer: Option<&'a mut Checkpointer>,
            on_report: R,
        }
        impl<J: Job, R: FnMut(&BatchReport)> RunHooks<J> for Hooks<'_, R> {
            fn after_batch(
                &mut self,
                b: &mut CompletedBatch<'_, J>,
            ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                (self.on_report)(b.report);
                if let Some(c) = self.checkpointer.as_deref_mut() {
                    let next: Vec<NextOffset> =
                        b.next_offsets.iter().map(|&(partition, offset)| NextOffset { partition, offset }).collect();
                    c.after_batch(b.engine, &next, b.pending)?;
                }
                Ok(())
            }
            fn needs_records(&self) -> bool {
                false
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let next: Vec<(i32, i64)> = self.next_offsets.iter().map(|n| (n.partition, n.offset)).collect();
        let mut hooks = Hooks { checkpointer, on_report };
        let mut summary = RunSummary::default();
        let mut out = std::io::sink();
        let mut fetch = fetch;
        let result = run_pending(
            &mut self.engine,
            &pending,
            &next,
            &mut self.leader_epochs,
            |r: &[OffsetRange], b: &mut RecordBatch| fetch(r, b).map(|()| Default::default()),
            &mut hooks,
            &mut summary,
            &mut out,
            clock,
        );
        // What did not run stays pending.
        self.pending = pending[summary.batches as usize..].to_vec();
        result.map_err(|e| match e {
            PendingError::Fetch { time, source } => RecoveryError::Fetch { time, source },
            PendingError::Run(RunError::Engine(e)) => RecoveryError::Engine(e),
            // The hook writes checkpoints: its failure keeps its type.
            PendingError::Run(RunError::Hook { source, time }) => match source.downcast::<CheckpointError>() {
                Ok(e) => RecoveryError::Checkpoint(*e),
                Err(source) => RecoveryError::Run(RunError::Hook { time, source }.to_string()),
            },
            PendingError::Run(e) => RecoveryError::Run(e.to_string()),
        })
    }
}
