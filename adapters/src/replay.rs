//! Replay of a recording: frame by frame through the job its header names, with a manual clock set to
//! each frame's batch time, printing exactly what the recorded run printed.

use crate::recording::{Frame, RecordingError, RecordingHeader, RecordingReader};
use dstream_core::time::MAX_MILLIS;
use dstream_core::{BatchReport, BatchTimer, Engine, EngineError, Job, Malformed, ManualClock, RecordBatch, Time};
use std::io::{Read, Write};

/// Totals of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Batches run.
    pub batches: u64,
    /// Records replayed.
    pub records: u64,
    /// Malformed records skipped.
    pub malformed: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The recording could not be read.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// The header names a job that cannot be built (see the program that replays it).
    #[error("recording header: {0}")]
    Job(Box<dyn std::error::Error + Send + Sync>),
    /// The header's batch interval is not positive (or beyond `MAX_MILLIS`).
    #[error("recording header: batch interval {0} ms is not within 1..=9007199254740992 ms")]
    BadInterval(i64),
    /// A time in the recording (the header's grid origin or a batch's time) is out of range.
    #[error("recording: {what} {time} ms is out of range (at most 9007199254740992 ms either side of 0)")]
    BadTime {
        /// `grid origin` or `batch time`.
        what: &'static str,
        /// The time.
        time: i64,
    },
    /// A batch failed (or came out of order).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

/// The engine and manual clock of one replay.
struct Replayer<J> {
    engine: Engine<J>,
    clock: ManualClock,
    summary: ReplaySummary,
}

impl<J: Job> Replayer<J> {
    fn new(job: J, header: &RecordingHeader) -> Result<Self, ReplayError> {
        let interval = header.batch_interval.millis();
        if interval <= 0 || interval > MAX_MILLIS {
            return Err(ReplayError::BadInterval(interval));
        }
        if !header.zero.in_range() {
            return Err(ReplayError::BadTime { what: "grid origin", time: header.zero.0 });
        }
        let timer = BatchTimer::resume(header.zero, header.batch_interval, header.zero);
        Ok(Replayer {
            engine: Engine::new(job, timer),
            clock: ManualClock::new(header.zero),
            summary: ReplaySummary::default(),
        })
    }

    /// Runs one recorded batch with the clock set to its time.
    fn run(
        &mut self,
        time: Time,
        batch: &mut RecordBatch,
        out: &mut dyn Write,
        on_batch: &mut dyn FnMut(&BatchReport),
    ) -> Result<(), ReplayError> {
        if !time.in_range() {
            return Err(ReplayError::BadTime { what: "batch time", time: time.0 });
        }
        self.clock.set_time(time);
        let report = self.engine.run_batch(time, batch, &self.clock)?;
        out.write_all(report.printed.as_bytes())?;
        on_batch(&report);
        self.summary.batches += 1;
        self.summary.records += report.records as u64;
        self.summary.malformed += Malformed::total(&report.malformed);
        Ok(())
    }
}

/// Replays frames through `job` on the header's grid; each batch's printed text goes to `out`, and
/// `on_batch` sees every batch's report (malformed records included).
pub fn replay_frames<J: Job, I>(
    job: J,
    header: &RecordingHeader,
    frames: I,
    out: &mut dyn Write,
    on_batch: &mut dyn FnMut(&BatchReport),
) -> Result<ReplaySummary, ReplayError>
where
    I: IntoIterator<Item = Result<Frame, RecordingError>>,
{
    let mut r = Replayer::new(job, header)?;
    let mut batch = RecordBatch::new();
    for frame in frames {
        let frame = frame?;
        frame.fill(&mut batch);
        r.run(frame.time, &mut batch, out, on_batch)?;
    }
    out.flush()?;
    Ok(r.summary)
}

/// Replays what `reader` has left through `job`, decoding each frame straight into one reused batch buffer
/// (no allocation per record): the path `dstream replay` takes for binary recordings.
pub fn replay_reader<J: Job, R: Read>(
    job: J,
    reader: &mut RecordingReader<R>,
    out: &mut dyn Write,
    on_batch: &mut dyn FnMut(&BatchReport),
) -> Result<ReplaySummary, ReplayError> {
    let header = reader.header().clone();
    let mut r = Replayer::new(job, &header)?;
    let mut batch = RecordBatch::new();
    while let Some(info) = reader.next_into(&mut batch)? {
        r.run(info.time, &mut batch, out, on_batch)?;
    }
    out.flush()?;
    Ok(r.summary)
}
