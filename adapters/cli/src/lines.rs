//! Replay of a plain text file: one message value per line, a fixed number of lines per batch.

use crate::lab::{LabConfig, LabJob};
use dstream_core::{BatchTimer, Clock, Duration, Engine, EngineError, ManualClock, RecordBatch};
use std::io::Write;

pub use dstream_adapters::replay::ReplaySummary;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The job failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// `records_per_batch` was zero.
    #[error("records per batch must be at least 1")]
    ZeroBatch,
}

/// Splits text into message values: lines end in `\n` or `\r\n`; a final line without a newline counts.
pub fn split_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let empty = text.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty).map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Replays `text` through the lab job, `records_per_batch` lines a batch on partition 0, first batch at one interval;
/// printed output goes to `out`, each malformed record to `on_malformed`.
pub fn replay_lines(
    text: &[u8],
    records_per_batch: usize,
    interval: Duration,
    config: LabConfig,
    out: &mut dyn Write,
    on_malformed: &mut dyn FnMut(&dstream_core::Malformed),
) -> Result<ReplaySummary, ReplayError> {
    if records_per_batch == 0 {
        return Err(ReplayError::ZeroBatch);
    }
    let mut clock = ManualClock::default();
    let mut job = LabJob::new(config);
    job.keep_printed_only();
    let mut engine = Engine::new(job, BatchTimer::first_start(clock.now(), interval));
    let mut batch = RecordBatch::new();
    let mut lines = split_lines(text).peekable();
    let mut offset = 0i64;
    let mut summary = ReplaySummary::default();
    while lines.peek().is_some() {
        batch.clear();
        for line in lines.by_ref().take(records_per_batch) {
            batch.push(0, offset, 0, None, line);
            offset += 1;
        }
        clock.advance(interval);
        let time = engine.poll_due(clock.now()).expect("one interval advanced gives one batch");
        let report = engine.run_batch(time, &mut batch, &clock)?;
        report.malformed.iter().for_each(&mut *on_malformed);
        out.write_all(report.printed.as_bytes())?;
        summary.batches += 1;
        summary.records += report.records as u64;
        summary.malformed += dstream_core::Malformed::total(&report.malformed);
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_a_text_file() {
        let v: Vec<&[u8]> = split_lines(b"a,1\r\nb,2\n\nc,3").collect();
        assert_eq!(v, vec![&b"a,1"[..], b"b,2", b"", b"c,3"]);
        assert_eq!(split_lines(b"").count(), 0);
        assert_eq!(split_lines(b"\n").count(), 1);
        assert_eq!(split_lines(b"x\n").count(), 1);
    }
}
