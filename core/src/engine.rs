//! The engine: one batch at a time, FIFO, on the batch grid; time is passed in, never read.

use crate::record::{OffsetRange, RecordBatch, RecordSource, SourceError};
use crate::stream::{BatchContext, Job, JobError, Malformed, OutputOperation, NO_RECORDS};
use crate::time::{BatchTimer, Clock, Duration, Time};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// What happened in one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    /// The batch's time.
    pub time: Time,
    /// Records in the batch's input.
    pub records: usize,
    /// Records that could not be parsed, and offsets that could not be read (skipped).
    pub malformed: Vec<Malformed>,
    /// What `print` operations wrote.
    pub printed: String,
    /// Start of processing minus the batch time.
    pub scheduling_delay: Duration,
    /// End of processing minus its start.
    pub processing_time: Duration,
    /// The job's output operations, in order, with when each ran its last step (see [`OutputOperation`]).
    pub output_operations: Vec<OutputOperation>,
}

/// Metadata of one generated batch: its time and the offset ranges it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInfo {
    /// Batch time.
    pub time: Time,
    /// One range per partition.
    pub ranges: Vec<OffsetRange>,
}

/// Runs a job batch after batch on the grid of a `BatchTimer`.
pub struct Engine<J> {
    job: J,
    timer: BatchTimer,
    last_completed: Option<Time>,
    totals: Totals,
}

/// A batch begun with [`Engine::begin_batch`] and not yet finished: what it has reported so far.
#[derive(Debug)]
pub struct OpenBatch {
    time: Time,
    start: Time,
    records: usize,
    parts: u64,
    malformed: Vec<Malformed>,
    printed: String,
    outputs: Vec<OutputOperation>,
}

impl OpenBatch {
    /// The batch's time.
    pub fn time(&self) -> Time {
        self.time
    }
    /// Records fed so far.
    pub fn records(&self) -> usize {
        self.records
    }
}

/// Running totals across batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Batches completed.
    pub batches: u64,
    /// Records seen.
    pub records: u64,
    /// Malformed records skipped.
    pub malformed: u64,
}

/// A source that remembers how many records it handed over last (a job reads its input once per part).
struct Counted<'a> {
    source: &'a dyn RecordSource,
    count: Cell<Option<usize>>,
}

impl RecordSource for Counted<'_> {
    fn len_hint(&self) -> usize {
        self.source.len_hint()
    }
    fn for_each_run(&self, f: &mut dyn FnMut(crate::record::Run<'_>)) -> Result<usize, SourceError> {
        let n = self.source.for_each_run(f)?;
        self.count.set(Some(n));
        Ok(n)
    }
    fn for_each_skipped(&self, f: &mut dyn FnMut(&Malformed)) {
        self.source.for_each_skipped(f)
    }
}

/// A batch ran out of order or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The job failed on this batch.
    #[error("batch {time} failed: {source}")]
    Job {
        /// Batch time.
        time: Time,
        /// The job's error.
        source: JobError,
    },
    /// A batch was submitted out of order (batches run one at a time, FIFO).
    #[error("batch {time} submitted after batch {last}: batches run in order")]
    OutOfOrder {
        /// The submitted batch.
        time: Time,
        /// The last completed batch.
        last: Time,
    },
}

impl<J: Job> Engine<J> {
    /// An engine running `job` on `timer`'s grid.
    pub fn new(job: J, timer: BatchTimer) -> Self {
        Engine { job, timer, last_completed: None, totals: Totals::default() }
    }

    /// The job.
    pub fn job(&self) -> &J {
        &self.job
    }
    /// The job, mutably (e.g. to restore its state).
    pub fn job_mut(&mut self) -> &mut J {
        &mut self.job
    }
    /// The batch timer.
    pub fn timer(&self) -> &BatchTimer {
        &self.timer
    }
    /// Totals so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }
    /// The last batch that completed.
    pub fn last_completed(&self) -> Option<Time> {
        self.last_completed
    }

    /// Moves the batch timer past `after` (on the same grid): the next tick is the first after it. For a run that
    /// continues after batches up to `after` were generated elsewhere.
    pub fn resume_timer_after(&mut self, after: Time) {
        self.timer = BatchTimer::resume(self.timer.zero(), self.timer.interval(), after);
    }

    /// The next batch time due at `now`, if any; call until `None` to get every missed tick, in order.
    pub fn poll_due(&mut self, now: Time) -> Option<Time> {
        self.timer.poll(now)
    }

    /// Starts the batch at `time`, to be given its input part by part with [`feed`](Self::feed) and ended with
    /// [`finish_batch`](Self::finish_batch); the report is the one [`run_batch`](Self::run_batch) gives for the
    /// whole input, processing time counted from this call.
    pub fn begin_batch(&mut self, time: Time, clock: &dyn Clock) -> Result<OpenBatch, EngineError> {
        if let Some(last) = self.last_completed {
            if time <= last {
                return Err(EngineError::OutOfOrder { time, last });
            }
        }
        let mut batch = OpenBatch {
            time,
            start: clock.now(),
            records: 0,
            parts: 0,
            malformed: Vec::new(),
            printed: String::new(),
            outputs: Vec::new(),
        };
        let mut ctx = self.context(&mut batch, &NO_RECORDS);
        self.job.begin_batch(&mut ctx).map_err(|source| EngineError::Job { time, source })?;
        Ok(batch)
    }

    /// Gives the open batch the next part of its input: sorted into (partition, offset) order first, and every
    /// record after those of the earlier parts in that order.
    pub fn feed(&mut self, batch: &mut OpenBatch, part: &mut RecordBatch) -> Result<(), EngineError> {
        part.sort_by_position();
        self.feed_source(batch, part)
    }

    /// Gives the open batch the next part of its input from a source that hands its records over in
    /// (partition, offset) order, every one after those of the earlier parts (e.g. records read in place from
    /// fetched bytes, with no buffer of their own).
    pub fn feed_source(&mut self, batch: &mut OpenBatch, part: &dyn RecordSource) -> Result<(), EngineError> {
        let time = batch.time;
        let counted = Counted { source: part, count: Cell::new(None) };
        let result = {
            let mut ctx = self.context(batch, &counted);
            self.job.feed(&mut ctx)
        };
        batch.parts += 1;
        result.map_err(|source| EngineError::Job { time, source })?;
        // A job that does not read its input (no output operation reads it) still counts it.
        let n = match counted.count.get() {
            Some(n) => n,
            None => part.for_each_run(&mut |_| {}).map_err(|e| EngineError::Job { time, source: e.into() })?,
        };
        batch.records += n;
        part.for_each_skipped(&mut |m| batch.malformed.push(m.clone()));
        Ok(())
    }

    /// Ends the open batch and reports it, as [`run_batch`](Self::run_batch) would for all of its parts at once.
    pub fn finish_batch(&mut self, mut batch: OpenBatch, clock: &dyn Clock) -> Result<BatchReport, EngineError> {
        let time = batch.time;
        {
            let mut ctx = self.context(&mut batch, &NO_RECORDS);
            ctx.clock = Some(clock);
            self.job.finish_batch(&mut ctx).map_err(|source| EngineError::Job { time, source })?;
        }
        let end = clock.now();
        self.last_completed = Some(time);
        self.totals.batches += 1;
        self.totals.records += batch.records as u64;
        self.totals.malformed += Malformed::total(&batch.malformed);
        Ok(BatchReport {
            time,
            records: batch.records,
            malformed: batch.malformed,
            printed: batch.printed,
            scheduling_delay: batch.start - time,
            processing_time: end - batch.start,
            output_operations: batch.outputs,
        })
    }

    fn context<'a>(&self, batch: &'a mut OpenBatch, input: &'a dyn RecordSource) -> BatchContext<'a> {
        BatchContext {
            time: batch.time,
            zero: self.timer.zero(),
            interval: self.timer.interval(),
            input,
            part: batch.parts,
            malformed: &mut batch.malformed,
            printed: &mut batch.printed,
            clock: None,
            outputs: &mut batch.outputs,
        }
    }

    /// Runs the batch at `time` over `input` (sorted into partition, offset order first); `clock` times it.
    pub fn run_batch(
        &mut self,
        time: Time,
        input: &mut RecordBatch,
        clock: &dyn Clock,
    ) -> Result<BatchReport, EngineError> {
        if let Some(last) = self.last_completed {
            if time <= last {
                return Err(EngineError::OutOfOrder { time, last });
            }
        }
        let mut batch = self.begin_batch(time, clock)?;
        self.feed(&mut batch, input)?;
        self.finish_batch(batch, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{input, DStreamExt, Graph, MalformedPolicy};
    use crate::time::ManualClock;

    #[test]
    fn batches_run_in_order_and_report_delays() {
        let job = Graph::new().output(
            input(|r: crate::RecordRef<'_>| Ok::<_, String>(r.value.len() as i64), MalformedPolicy::Skip)
                .count()
                .print(10),
        );
        let mut clock = ManualClock::default();
        let mut engine = Engine::new(job, BatchTimer::first_start(clock.now(), Duration(1000)));
        clock.advance(Duration(3000));
        let mut batch = RecordBatch::new();
        let mut times = vec![];
        clock.advance(Duration(250)); // processing starts late
        while let Some(t) = engine.poll_due(clock.now()) {
            let r = engine.run_batch(t, &mut batch, &clock).unwrap();
            times.push((t.0, r.scheduling_delay.0));
        }
        assert_eq!(times, vec![(1000, 2250), (2000, 1250), (3000, 250)]);
        let err = engine.run_batch(Time(2000), &mut batch, &clock).unwrap_err();
        assert!(matches!(err, EngineError::OutOfOrder { .. }));
    }
}
