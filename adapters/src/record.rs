//! Recording a live run: every batch's time, ranges and records, written as a harness recording that
//! `dstream replay FILE` (or the same program, through `replay`) plays back with the same output.

use crate::recording::{RecordingError, RecordingHeader, RecordingWriter};
use std::path::PathBuf;

/// Writes a recording of a run, batch by batch; the file is created at the first batch, when the grid and the
/// partitions are known, and flushed after every batch so that an interrupted run leaves a readable prefix.
pub struct Recorder {
    path: PathBuf,
    topic: String,
    job: String,
    params: Vec<(String, String)>,
    writer: Option<RecordingWriter>,
}

impl Recorder {
    /// A recorder writing to `path` for a run of the job named `job` with text parameters `params` on `topic`
    /// (the recording's header names them, so that a replay can rebuild the job).
    pub fn new(path: PathBuf, topic: &str, job: &str, params: Vec<(String, String)>) -> Self {
        Recorder { path, topic: topic.to_string(), job: job.to_string(), params, writer: None }
    }

    /// Writes one completed batch as a listener hears it (its input records must have been kept:
    /// [`StreamingListener::needs_input`](crate::streaming::StreamingListener::needs_input)); the header comes
    /// before the first.
    pub fn record_batch(&mut self, b: &crate::streaming::BatchCompleted<'_>) -> Result<(), RecordingError> {
        if self.writer.is_none() {
            let header = RecordingHeader {
                topic: self.topic.clone(),
                partitions: b.info.ranges.len() as u32,
                batch_interval: b.interval,
                zero: b.zero,
                job: self.job.clone(),
                params: self.params.clone(),
            };
            self.writer = Some(RecordingWriter::create(&self.path, &header)?);
        }
        let w = self.writer.as_mut().expect("created above");
        w.write_batch(b.info.time, &b.info.ranges, b.input)?;
        w.flush()
    }

    /// Syncs the file to disk; returns the number of batches written.
    pub fn finish(self) -> Result<u64, RecordingError> {
        match self.writer {
            Some(w) => {
                let n = w.frames();
                w.finish()?;
                Ok(n)
            }
            None => Ok(0),
        }
    }
}
