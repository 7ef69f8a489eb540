//! Replay of a recording: frame by frame through the job its header names, with a manual clock set to
//! each frame's batch time, printing exactly what the recorded run printed.

use crate::jobs::{build_job, JobSpecError};
use crate::recording::{Frame, Recording, RecordingError, RecordingHeader};
use dstream_core::{BatchReport, BatchTimer, Engine, EngineError, Job, Malformed, ManualClock, RecordBatch};
use std::io::Write;

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
    /// The header names a job that cannot be built.
    #[error("recording header: {0}")]
    Job(#[from] JobSpecError),
    /// The header's batch interval is not positive.
    #[error("recording header: batch interval {0} ms is not positive")]
    BadInterval(i64),
    /// A batch failed (or came out of order).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
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
    if header.batch_interval.millis() <= 0 {
        return Err(ReplayError::BadInterval(header.batch_interval.millis()));
    }
    let mut clock = ManualClock::new(header.zero);
    let mut engine = Engine::new(job, BatchTimer::resume(header.zero, header.batch_interval, header.zero));
    let mut batch = RecordBatch::new();
    let mut summary = ReplaySummary::default();
    for frame in frames {
        let frame = frame?;
        frame.fill(&mut batch);
        clock.set_time(frame.time);
        let report = engine.run_batch(frame.time, &mut batch, &clock)?;
        out.write_all(report.printed.as_bytes())?;
        on_batch(&report);
        summary.batches += 1;
        summary.records += report.records as u64;
        summary.malformed += report.malformed.len() as u64;
    }
    out.flush()?;
    Ok(summary)
}

/// Replays a whole recording through the job its header names.
pub fn replay(
    recording: &Recording,
    out: &mut dyn Write,
    on_malformed: &mut dyn FnMut(&Malformed),
) -> Result<ReplaySummary, ReplayError> {
    let job = build_job(&recording.header)?;
    let frames = recording.frames.iter().cloned().map(Ok);
    replay_frames(job, &recording.header, frames, out, &mut |r| r.malformed.iter().for_each(&mut *on_malformed))
}

/// Replays a recording and returns everything it printed.
pub fn replay_to_string(recording: &Recording) -> Result<String, ReplayError> {
    let mut out = Vec::new();
    replay(recording, &mut out, &mut |_| {})?;
    Ok(String::from_utf8(out).expect("print output is built from Rust strings"))
}
