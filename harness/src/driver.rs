//! A test driver in the manner of Kafka Streams' `TopologyTestDriver` (SPARK-SEMANTICS §8, STYLE §2).
//!
//! The driver owns a real core [`Engine`] and a [`ManualClock`] at zero. Records piped in land in the
//! next batch, with offsets assigned per partition from 0; `advance(k)` moves the clock by k batch
//! intervals and returns the k batches that ran, each with its mapped output, printed text, malformed
//! records and the frame (time, ranges, records) a recording of it would hold. `checkpoint()` at a batch
//! boundary and `Driver::restore` continue on the same grid with the same offsets and state.
//!
//! ```
//! use dstream_core::graph::GraphBuilder;
//! use dstream_core::Duration;
//! use dstream_harness::driver::{Driver, Output};
//! let g = GraphBuilder::new();
//! let lengths = g.records_of("avg").map(|r| r.value.len());
//! let out = Output::capture(&lengths);
//! let mut d = Driver::for_graph(&g, Duration::from_secs(2));
//! d.pipe(0, b"a,10");
//! d.pipe(0, b"bb,15");
//! let batch = d.advance(1).unwrap().remove(0);
//! assert_eq!(batch.time.millis(), 2000);
//! assert_eq!(out.read_values(), vec![4, 5]);
//! ```

use crate::recording::Frame;
use dstream_core::checkpoint::{
    restore_state, save_state, Checkpoint, CheckpointMeta, Fingerprint, InputPrint, JobState, NextOffset, RestoreError,
};
use dstream_core::graph::{GraphBuilder, Stream};
use dstream_core::{
    BatchTimer, Clock, Duration, Engine, EngineError, Job, Malformed, ManualClock, OffsetRange, RecordBatch, Time,
};
use dstream_core::{DStream, Graph, StateCodecError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

/// A job the driver can run and observe: its mapped output and its state after each batch.
pub trait DriverJob: Job {
    /// An element of the mapped stream.
    type Output: Clone + fmt::Debug + PartialEq;
    /// The job's state as `stateSnapshots()` shows it (every live key, sorted by key).
    type Snapshot: Clone + fmt::Debug + PartialEq;
    /// The last batch's mapped output.
    fn mapped(&self) -> Vec<Self::Output>;
    /// The current state.
    fn snapshot_state(&self) -> Self::Snapshot;
}

/// A job whose state the driver can checkpoint and restore.
pub trait CheckpointJob: DriverJob {
    /// The checkpointable state.
    type Checkpoint: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// The state to checkpoint.
    fn checkpoint_state(&self) -> Self::Checkpoint;
    /// Replaces the state with a checkpoint's.
    fn restore_state(&mut self, cp: Self::Checkpoint);
}

/// What one batch of the job `J` produced.
pub type Batch<J> = BatchOutput<<J as DriverJob>::Output, <J as DriverJob>::Snapshot>;

/// What one batch produced.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutput<O, S = ()> {
    /// The batch's time.
    pub time: Time,
    /// The mapped stream's elements, in processing order.
    pub mapped: Vec<O>,
    /// The state after the batch (`stateSnapshots()`), unless the driver was built `without_snapshots`.
    pub snapshot: Option<S>,
    /// What the job printed (Spark's `print()` text).
    pub printed: String,
    /// Records skipped as malformed.
    pub malformed: Vec<Malformed>,
    /// The batch as a recording holds it: time, every partition's range, the records.
    pub frame: Frame,
}

/// Where a driver stood after a batch: enough to continue exactly, as a direct Kafka checkpoint is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverCheckpoint<C> {
    /// Time of the last completed batch (the grid's zero if none ran).
    pub time: Time,
    /// The batch grid's origin.
    pub zero: Time,
    /// The next offset to read, per partition (index = partition).
    pub next_offsets: Vec<i64>,
    /// The job's state.
    pub job: C,
}

/// Why a driver checkpoint could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode a driver checkpoint: {0}")]
pub struct CheckpointDecodeError(pub String);

impl<C: Serialize + DeserializeOwned> DriverCheckpoint<C> {
    /// The checkpoint as postcard bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding plain data into a Vec cannot fail")
    }
    /// A checkpoint from postcard bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointDecodeError> {
        match postcard::take_from_bytes(bytes) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(CheckpointDecodeError(format!("{} bytes left over", rest.len()))),
            Err(e) => Err(CheckpointDecodeError(e.to_string())),
        }
    }
}

/// Drives a job through the real engine with a manual clock.
pub struct Driver<J: DriverJob> {
    engine: Engine<J>,
    clock: ManualClock,
    pending: RecordBatch,
    /// Next offset to assign, per partition.
    next_offsets: Vec<i64>,
    /// Offset where the next batch's range starts, per partition.
    committed: Vec<i64>,
    /// Whether each batch's output carries a state snapshot.
    snapshots: bool,
    /// Inputs after the first (a graph reading several topics): per input, (next offset to assign, offset
    /// where the next batch's range starts) per partition.
    more: Vec<(Vec<i64>, Vec<i64>)>,
    /// The graph's named inputs (its topics) by index, for [`Driver::pipe_to`].
    inputs: Vec<String>,
}

impl<J: DriverJob> Driver<J> {
    /// A driver of any job, clock at zero, first batch at `batch_interval`, one partition to start.
    ///
    /// # Panics
    /// If `batch_interval` is not positive.
    pub fn with_job(job: J, batch_interval: Duration) -> Self {
        let clock = ManualClock::default();
        let timer = BatchTimer::first_start(clock.now(), batch_interval);
        Driver {
            engine: Engine::new(job, timer),
            clock,
            pending: RecordBatch::new(),
            next_offsets: vec![0],
            committed: vec![0],
            snapshots: true,
            more: Vec::new(),
            inputs: Vec::new(),
        }
    }

    /// Leaves the per-batch state snapshot out of every `BatchOutput` (it copies the whole state each batch).
    pub fn without_snapshots(mut self) -> Self {
        self.snapshots = false;
        self
    }

    /// Declares `n` partitions (at least), so every batch has a range for each even if nothing was piped to it.
    pub fn with_partitions(mut self, n: usize) -> Self {
        self.grow(n);
        self
    }

    fn grow(&mut self, n: usize) {
        if self.next_offsets.len() < n {
            self.next_offsets.resize(n, 0);
            self.committed.resize(n, 0);
        }
    }

    /// Pipes a value with no key into `partition`, timestamped with the clock; returns its offset.
    pub fn pipe(&mut self, partition: i32, value: &[u8]) -> i64 {
        let ts = self.clock.now().millis();
        self.pipe_record(partition, None, value, ts)
    }

    /// Pipes a record into `partition`; returns the offset it was given. `partition` is the engine's number: for a graph of several inputs, input `n`'s partition `p` is
    /// [`input_partition(n, p)`](dstream_core::record::input_partition) (or use [`Driver::pipe_to`]).
    ///
    /// # Panics
    /// If `partition` is negative.
    pub fn pipe_record(&mut self, partition: i32, key: Option<&[u8]>, value: &[u8], timestamp: i64) -> i64 {
        assert!(partition >= 0, "partition must not be negative, got {partition}");
        let (input, p) = dstream_core::record::split_partition(partition);
        let p = p as usize;
        let next = if input == 0 {
            self.grow(p + 1);
            &mut self.next_offsets[p]
        } else {
            if self.more.len() < input {
                self.more.resize(input, (Vec::new(), Vec::new()));
            }
            let (next, committed) = &mut self.more[input - 1];
            if next.len() <= p {
                next.resize(p + 1, 0);
                committed.resize(p + 1, 0);
            }
            &mut next[p]
        };
        let offset = *next;
        *next += 1;
        self.pending.push(partition, offset, timestamp, key, value);
        offset
    }

    /// Advances the clock by `k` batch intervals and runs the `k` batches that fall due.
    pub fn advance(&mut self, k: usize) -> Result<Vec<Batch<J>>, EngineError> {
        let interval = self.engine.timer().interval();
        let mut outputs = Vec::with_capacity(k);
        for _ in 0..k {
            self.clock.advance(interval);
            while let Some(time) = self.engine.poll_due(self.clock.now()) {
                outputs.push(self.run_one(time)?);
            }
        }
        Ok(outputs)
    }

    /// Spark's `TestSuiteBase` shape: batch i gets `batches[i]` on partition 0; returns one output per batch.
    pub fn run_batches<V: AsRef<[u8]>>(&mut self, batches: &[Vec<V>]) -> Result<Vec<Batch<J>>, EngineError> {
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            for v in b {
                self.pipe(0, v.as_ref());
            }
            out.extend(self.advance(1)?);
        }
        Ok(out)
    }

    fn run_one(&mut self, time: Time) -> Result<Batch<J>, EngineError> {
        let mut ranges: Vec<OffsetRange> = (0..self.next_offsets.len())
            .map(|p| OffsetRange { partition: p as i32, from: self.committed[p], until: self.next_offsets[p] })
            .collect();
        for (i, (next, committed)) in self.more.iter_mut().enumerate() {
            let input = |p: usize| dstream_core::record::input_partition(i + 1, p as i32);
            ranges.extend((0..next.len()).map(|p| OffsetRange {
                partition: input(p),
                from: committed[p],
                until: next[p],
            }));
            committed.copy_from_slice(next);
        }
        self.pending.sort_by_position();
        let frame = Frame::from_batch(time, &ranges, &self.pending);
        let report = self.engine.run_batch(time, &mut self.pending, &self.clock)?;
        self.pending.clear();
        self.committed.copy_from_slice(&self.next_offsets);
        Ok(BatchOutput {
            time,
            mapped: self.engine.job().mapped().to_vec(),
            snapshot: self.snapshots.then(|| self.engine.job().snapshot_state()),
            printed: report.printed,
            malformed: report.malformed,
            frame,
        })
    }

    /// The clock's time (the last batch's time after `advance`).
    pub fn time(&self) -> Time {
        self.clock.now()
    }

    /// The job.
    pub fn job(&self) -> &J {
        self.engine.job()
    }

    /// The engine's grid origin.
    pub fn zero(&self) -> Time {
        self.engine.timer().zero()
    }

    /// Number of partitions seen or declared.
    pub fn partitions(&self) -> usize {
        self.next_offsets.len()
    }

    /// Records piped but not yet in a batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl<J: DriverJob> Driver<J> {
    /// The job's current state.
    pub fn snapshot(&self) -> J::Snapshot {
        self.engine.job().snapshot_state()
    }
}

impl<J: CheckpointJob> Driver<J> {
    /// Where the driver stands after its last batch. Records piped since are not included: like records in
    /// a Kafka log past the checkpointed offsets, they must be piped again after a restore.
    pub fn checkpoint(&self) -> DriverCheckpoint<J::Checkpoint> {
        DriverCheckpoint {
            time: self.clock.now(),
            zero: self.zero(),
            next_offsets: self.committed.clone(),
            job: self.engine.job().checkpoint_state(),
        }
    }

    /// A driver of `job` continuing from `checkpoint`: same grid, offsets and state; the next batch is one
    /// interval after the checkpoint's time.
    ///
    /// # Panics
    /// If `batch_interval` is not positive.
    pub fn restore_job(mut job: J, batch_interval: Duration, checkpoint: DriverCheckpoint<J::Checkpoint>) -> Self {
        job.restore_state(checkpoint.job);
        let timer = BatchTimer::resume(checkpoint.zero, batch_interval, checkpoint.time);
        let mut next = checkpoint.next_offsets;
        if next.is_empty() {
            next.push(0);
        }
        Driver {
            engine: Engine::new(job, timer),
            clock: ManualClock::new(checkpoint.time),
            pending: RecordBatch::new(),
            committed: next.clone(),
            next_offsets: next,
            snapshots: true,
            more: Vec::new(),
            inputs: Vec::new(),
        }
    }
}

/// Any graph built with [`GraphBuilder`] runs in the driver; its output is read through [`Output`] handles and
/// its state per stateful operator.
impl DriverJob for Graph {
    type Output = ();
    type Snapshot = ();
    fn mapped(&self) -> Vec<()> {
        Vec::new()
    }
    fn snapshot_state(&self) {}
}

/// The elements a stream produced, batch by batch, as the driver ran it (Kafka Streams' `TestOutputTopic`).
pub struct Output<T> {
    batches: Captured<T>,
}

/// Batches captured and not read yet.
type Captured<T> = Rc<RefCell<VecDeque<(Time, Vec<T>)>>>;

impl<T: Clone + 'static> Output<T> {
    /// Captures `stream`'s elements (an output operation on its graph: create it before the driver).
    pub fn capture<D>(stream: &Stream<D>) -> Self
    where
        D: DStream<Item = T> + 'static,
    {
        let batches: Captured<T> = Rc::default();
        let b = batches.clone();
        stream.foreach_batch(move |t, items: &[T]| b.borrow_mut().push_back((t, items.to_vec())));
        Output { batches }
    }
    /// The oldest batch not read yet: its time and elements.
    pub fn read_batch(&self) -> Option<(Time, Vec<T>)> {
        self.batches.borrow_mut().pop_front()
    }
    /// Every element not read yet, in order, across batches.
    pub fn read_values(&self) -> Vec<T> {
        self.batches.borrow_mut().drain(..).flat_map(|(_, v)| v).collect()
    }
    /// True if every batch has been read.
    pub fn is_empty(&self) -> bool {
        self.batches.borrow().is_empty()
    }
}

/// Why a graph driver could not read or restore state.
#[derive(Debug, thiserror::Error)]
pub enum DriverStateError {
    /// No stateful operator has this id.
    #[error("no stateful operator {0:?} (the graph has: {1})")]
    NoOperator(String, String),
    /// The state could not be saved, decoded or restored.
    #[error(transparent)]
    State(#[from] RestoreError),
    /// The state does not decode as the type asked for.
    #[error("the state of {0} does not decode as asked: {1}")]
    Decode(String, StateCodecError),
}

impl Driver<Graph> {
    /// A driver of everything `graph` defines so far (build [`Output`]s first), clock at zero, first batch at
    /// `batch_interval`.
    pub fn for_graph(graph: &GraphBuilder, batch_interval: Duration) -> Self {
        let mut d = Driver::with_job(graph.build(), batch_interval).without_snapshots();
        d.inputs = graph.inputs();
        d
    }

    /// Pipes a record into `partition` of the graph's input `topic` (a name it gave
    /// [`GraphBuilder::records_of`]), as a Kafka producer writes to a topic; returns its offset.
    ///
    /// ```
    /// use dstream_core::graph::GraphBuilder;
    /// use dstream_core::Duration;
    /// use dstream_harness::driver::{Driver, Output};
    /// let program = |g: &GraphBuilder| {
    ///     let text = |r: dstream_core::graph::ConsumerRecord<'_>| String::from_utf8_lossy(r.value).into_owned();
    ///     let clicks = g.records_of("clicks").map(move |r| (text(r), r.topic.to_string()));
    ///     let views = g.records_of("views").map(move |r| (text(r), r.partition));
    ///     Output::capture(&clicks.join(&views))
    /// };
    /// let g = GraphBuilder::new();
    /// let joined = program(&g);
    /// let mut d = Driver::for_graph(&g, Duration::from_secs(1));
    /// d.pipe_to("clicks", 0, None, b"ann");
    /// d.pipe_to("views", 2, None, b"ann");
    /// d.pipe_to("views", 0, None, b"bob");
    /// d.advance(1).unwrap();
    /// assert_eq!(joined.read_values(), vec![("ann".to_string(), ("clicks".to_string(), 2))]);
    /// // A checkpoint holds both topics' offsets; a driver of the program built anew continues after them.
    /// let cp = d.checkpoint_as("clicks", "app").unwrap();
    /// assert_eq!(cp.meta.fingerprint.topics(), "clicks,views");
    /// let g = GraphBuilder::new();
    /// let _joined = program(&g);
    /// let mut d = Driver::from_checkpoint(&g, &cp).unwrap();
    /// assert_eq!(d.pipe_to("views", 0, None, b"cat"), 1);
    /// assert_eq!(d.pipe_to("views", 2, None, b"dan"), 1);
    /// assert_eq!(d.pipe_to("clicks", 0, None, b"eve"), 1);
    /// ```
    ///
    /// # Panics
    /// If the graph reads no input `topic`, or `partition` is negative or beyond what an input can number.
    pub fn pipe_to(&mut self, topic: &str, partition: i32, key: Option<&[u8]>, value: &[u8]) -> i64 {
        let Some(input) = self.inputs.iter().position(|t| t == topic) else {
            panic!("the graph reads no input {topic:?} (it reads {:?})", self.inputs);
        };
        assert!((0..1 << dstream_core::record::INPUT_SHIFT).contains(&partition), "partition {partition} out of range");
        let ts = self.clock.now().millis();
        self.pipe_record(dstream_core::record::input_partition(input, partition), key, value, ts)
    }

    /// The state of every stateful operator now, as a checkpoint holds it.
    pub fn operator_states(&mut self) -> Result<JobState, DriverStateError> {
        Ok(save_state(self.engine.job_mut())?)
    }

    /// The state of the stateful operator `id` (its name, or `kind#position`), decoded as `T` (e.g.
    /// `MapWithStateCheckpoint<K, S>` for `map_with_state`).
    pub fn state<T: DeserializeOwned>(&mut self, id: &str) -> Result<T, DriverStateError> {
        let ops = self.operator_states()?;
        let Some(op) = ops.iter().find(|o| o.id == id) else {
            let ids: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
            return Err(DriverStateError::NoOperator(id.to_string(), ids.join(", ")));
        };
        dstream_core::stateful::decode(&op.bytes).map_err(|e| DriverStateError::Decode(id.to_string(), e))
    }

    /// Where the driver stands after its last batch, as the checkpoint file store writes it (`topic` stands for
    /// the source in the fingerprint). Records piped since are not included.
    pub fn checkpoint_as(&mut self, topic: &str, job_name: &str) -> Result<Checkpoint<JobState>, DriverStateError> {
        let interval = self.engine.timer().interval();
        // Inputs after the first are named as the graph names them.
        let more = self
            .more
            .iter()
            .enumerate()
            .map(|(i, (_, committed))| InputPrint {
                topic: self.inputs.get(i + 1).cloned().unwrap_or_default(),
                partitions: committed.len() as u32,
                topic_id: None,
            })
            .collect();
        let fingerprint =
            Fingerprint::of_job(topic, self.partitions() as u32, job_name, self.engine.job_mut(), interval)
                .with_more_inputs(more);
        let mut next_offsets: Vec<NextOffset> =
            self.committed.iter().enumerate().map(|(p, &offset)| NextOffset { partition: p as i32, offset }).collect();
        for (i, (_, committed)) in self.more.iter().enumerate() {
            next_offsets.extend(committed.iter().enumerate().map(|(p, &offset)| NextOffset {
                partition: dstream_core::record::input_partition(i + 1, p as i32),
                offset,
            }));
        }
        let meta = CheckpointMeta {
            leader_epochs: Vec::new(),
            fingerprint,
            time: self.clock.now(),
            zero: self.zero(),
            interval,
            next_offsets,
            pending: Vec::new(),
        };
        Ok(Checkpoint { meta, state: self.operator_states()? })
    }

    /// A driver of `graph` (built anew by the program, outputs captured first) continuing from `checkpoint`:
    /// same grid, offsets and state.
    pub fn from_checkpoint(graph: &GraphBuilder, checkpoint: &Checkpoint<JobState>) -> Result<Self, DriverStateError> {
        let mut job = graph.build();
        restore_state(&mut job, &checkpoint.state)?;
        let meta = &checkpoint.meta;
        let timer = BatchTimer::resume(meta.zero, meta.interval, meta.time);
        let mut next: Vec<i64> = vec![0; (meta.fingerprint.partitions as usize).max(1)];
        let mut more: Vec<(Vec<i64>, Vec<i64>)> =
            meta.fingerprint.more_inputs.iter().map(|i| (vec![0; i.partitions as usize], Vec::new())).collect();
        for n in &meta.next_offsets {
            let (input, p) = dstream_core::record::split_partition(n.partition);
            let Ok(p) = usize::try_from(p) else { continue };
            let offsets = match input {
                0 => &mut next,
                i => match more.get_mut(i - 1) {
                    Some(m) => &mut m.0,
                    None => continue,
                },
            };
            if offsets.len() <= p {
                offsets.resize(p + 1, 0);
            }
            offsets[p] = n.offset;
        }
        more.iter_mut().for_each(|(next, committed)| *committed = next.clone());
        let mut inputs = graph.inputs();
        if inputs.is_empty() {
            inputs.push(meta.fingerprint.topic.clone());
        }
        Ok(Driver {
            engine: Engine::new(job, timer),
            clock: ManualClock::new(meta.time),
            pending: RecordBatch::new(),
            committed: next.clone(),
            next_offsets: next,
            snapshots: false,
            more,
            inputs,
        })
    }
}
