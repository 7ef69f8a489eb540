//! Recording a live run: every batch's time, ranges and records, written as a harness recording that
//! `dstream replay FILE` plays back with the same output.

use crate::run::CompletedBatch;
use dstream_core::lab::LabConfig;
use dstream_harness::recording::{RecordingError, RecordingHeader, RecordingWriter};
use std::path::PathBuf;

/// Writes a recording of a run, batch by batch; the file is created at the first batch, when the grid and the
/// partitions are known, and flushed after every batch so that an interrupted run leaves a readable prefix.
pub struct Recorder {
    path: PathBuf,
    topic: String,
    config: LabConfig,
    writer: Option<RecordingWriter>,
}

impl Recorder {
    /// A recorder writing to `path` for a run of the lab job with `config` on `topic`.
    pub fn new(path: PathBuf, topic: &str, config: &LabConfig) -> Self {
        Recorder { path, topic: topic.to_string(), config: config.clone(), writer: None }
    }

    /// Appends one completed batch.
    pub fn record(&mut self, b: &CompletedBatch<'_>) -> Result<(), RecordingError> {
        if self.writer.is_none() {
            let header = RecordingHeader::lab(
                &self.topic,
                b.info.ranges.len() as u32,
                b.engine.timer().interval(),
                b.engine.timer().zero(),
                &self.config,
            );
            self.writer = Some(RecordingWriter::create(&self.path, &header)?);
        }
        let w = self.writer.as_mut().expect("created above");
        w.write_batch(b.info.time, &b.info.ranges, b.records)?;
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
