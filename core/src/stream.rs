//! DStreams: a job is an ordinary value built from these operators.
//!
//! Every batch goes through one protocol, whatever the operators: [`DStream::begin`] once, then
//! [`DStream::feed_each`] for each part of the batch's input as it arrives (in (partition, offset) order), then
//! [`DStream::finish_each`]. Operators that can (the input, `map`, `filter`, `map_with_state`, ...) hand their
//! elements on while the parts arrive; those that need the whole batch (`reduce_by_key`, windows, `count`) hand
//! theirs on at the end. A chain of operators is one value whose per-record work the compiler fuses into one loop.
//! A stream used by several consumers is a [`Shared`] stream: computed once per part and per batch, its elements
//! cloned for each consumer.

use crate::jvm::{CompactBuffer, JvmDisplay, StableHash};
use crate::print::write_batch;
use crate::record::{RecordRef, RecordSource, Run, SourceError};
use crate::state::{OutputOrder, Slot, State, StateError, StateMap, StateSnapshot, StateSpecOptions, TimeoutScan};
use crate::stateful::{decode, encode_into, short_type_name, StateCodecError, StateVisit, Stateful};
use crate::time::{Duration, Time};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::rc::Rc;

/// A record that could not be parsed, or offsets whose records could not be read at all (a damaged record batch),
/// with where they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Malformed {
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record (the first of the offsets skipped).
    pub offset: i64,
    /// What was wrong with it.
    pub reason: String,
    /// For offsets skipped unread: the last of them (`offset..=last_offset`); `None` for one parsed record.
    #[serde(default)]
    pub last_offset: Option<i64>,
}

impl Malformed {
    /// The offsets `offset..=last` of `partition`, skipped unread because of `reason`.
    pub fn skipped(partition: i32, offset: i64, last: i64, reason: String) -> Self {
        Malformed { partition, offset, reason, last_offset: Some(last) }
    }

    /// How many records (offsets) it stands for: one for a record, the offsets skipped for a damaged batch.
    pub fn count(&self) -> u64 {
        self.last_offset.map_or(1, |last| (last - self.offset).max(0) as u64 + 1)
    }

    /// Malformed records in `list`, counted by [`count`](Self::count).
    pub fn total(list: &[Malformed]) -> u64 {
        list.iter().map(Malformed::count).sum()
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_offset {
            None => {
                let p = PartitionLabel(self.partition);
                write!(f, "malformed record at partition {p} offset {}: {}", self.offset, self.reason)
            }
            Some(last) => {
                let p = PartitionLabel(self.partition);
                write!(f, "offsets {}..={last} of partition {p} (unread): {}", self.offset, self.reason)
            }
        }
    }
}

/// An engine partition number as a reader knows it: the partition of a job's first input as it is, another
/// input's as `P of input N` (see [`crate::record::input_partition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLabel(pub i32);

impl fmt::Display for PartitionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::record::split_partition(self.0) {
            (0, p) => write!(f, "{p}"),
            (n, p) => write!(f, "{p} of input {n}"),
        }
    }
}

/// What to do with a record the job cannot parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MalformedPolicy {
    /// Skip it, count it and report its position (default).
    #[default]
    Skip,
    /// Stop the job with an error naming the record.
    Fail,
}

/// Why a batch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// A malformed record under `MalformedPolicy::Fail`.
    #[error("{0}")]
    Malformed(Malformed),
    /// A `mapWithState` function misused its `State` handle.
    #[error("state error for key {key} in batch {time}: {error}")]
    State {
        /// Batch time.
        time: Time,
        /// The key, as `Debug` prints it.
        key: String,
        /// What went wrong.
        error: StateError,
    },
    /// A stream was configured against Spark's rules (e.g. a window not a multiple of its parent's slide).
    #[error("invalid stream configuration: {0}")]
    Config(ConfigError),
    /// `reduce_by_key_and_window` with an inverse met a key that is in the batches leaving the window but neither
    /// in the previous window (a filter dropped it) nor in the batches entering it, so its value cannot be known:
    /// Spark fails the batch the same way.
    #[error(
        "reduce_by_key_and_window in batch {time}, key {key}: Neither previous window has value for key, nor new \
         values found (the filter dropped the key from an earlier window while its values were still in it)"
    )]
    WindowInconsistent {
        /// Batch time.
        time: Time,
        /// The key, as `Debug` prints it.
        key: String,
    },
    /// The batch's records could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An output operation failed (e.g. a file could not be written).
    #[error("output operation failed in batch {time}: {reason}")]
    Output {
        /// Batch time.
        time: Time,
        /// What went wrong.
        reason: String,
    },
}

/// A stream configured against Spark's rules: found at the first batch (when the batch interval is known), as
/// Spark finds them when the graph is built or started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A window's length or slide is not a multiple of its parent's slide (Spark's `WindowedDStream` and
    /// `ReducedWindowedDStream` refuse it).
    #[error(
        "the {what} of {operator} ({value}) must be a multiple of the slide duration of its parent stream ({parent})"
    )]
    WindowNotMultiple {
        /// The operator (`window`, `reduce_by_key_and_window`).
        operator: &'static str,
        /// `window length` or `slide`.
        what: &'static str,
        /// The length or slide given.
        value: Duration,
        /// The parent stream's slide.
        parent: Duration,
    },
    /// A union, cogroup or join of streams whose slides differ (Spark: "Array of DStreams have different slide
    /// times").
    #[error("{operator} of streams with different slide times ({first} and {second})")]
    DifferentSlides {
        /// The operator (`union`, `join`, ...).
        operator: &'static str,
        /// The first stream's slide.
        first: Duration,
        /// The other stream's slide.
        second: Duration,
    },
    /// A state checkpoint interval below its stream's slide or not a multiple of it (Spark's
    /// `DStream.validateAtStart`).
    #[error(
        "the checkpoint interval of {operator} has been set to {interval}, which is {problem} its slide time \
         ({slide}); set it to a multiple of {slide}"
    )]
    CheckpointInterval {
        /// The operator (`map_with_state`).
        operator: &'static str,
        /// The interval given.
        interval: Duration,
        /// The stream's slide.
        slide: Duration,
        /// `lower than` or `not a multiple of`.
        problem: &'static str,
    },
}

/// Everything an operator may see of one batch.
pub struct BatchContext<'a> {
    /// The batch's time (the end of the interval it covers).
    pub time: Time,
    /// The grid origin: batch k is at `zero + k * interval`.
    pub zero: Time,
    /// The batch interval.
    pub interval: Duration,
    /// The batch's input records: the current part while feeding, nothing in `begin` and `finish`.
    pub input: &'a dyn RecordSource,
    /// Which part of the batch is being fed (0, 1, ...): shared streams compute each part once.
    pub part: u64,
    /// Malformed records found in this batch.
    pub malformed: &'a mut Vec<Malformed>,
    /// Text printed by `print` output operations.
    pub printed: &'a mut String,
    /// The batch's clock while it finishes (`None` while it begins and is fed): output operations are timed
    /// with it.
    pub clock: Option<&'a dyn crate::time::Clock>,
    /// The output operations that ran their last step in this batch, in order.
    pub outputs: &'a mut Vec<OutputOperation>,
}

/// One output operation of a batch (Spark's `OutputOperationInfo`): its position among the job's output
/// operations, its kind, and when its last step ran. An output operation's elements reach it as the batch is
/// fed, interleaved with the other operations in one pass; its last step (what must see the whole batch
/// upstream, e.g. a `reduce_by_key`'s result or a window's, and then its own action: the text of a `print`, the
/// closure of a `foreach_batch`) runs on its own, and that is what is timed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOperation {
    /// Its position among the job's output operations (0, 1, ...), in the order the program defined them.
    pub id: usize,
    /// Its kind: `print` or `foreach_batch` (`save_as_text_files` and the like are `foreach_batch`).
    pub name: &'static str,
    /// When its last step began.
    pub started: Time,
    /// When its last step ended.
    pub completed: Time,
}

impl fmt::Debug for BatchContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchContext")
            .field("time", &self.time)
            .field("zero", &self.zero)
            .field("interval", &self.interval)
            .field("input_len_hint", &self.input.len_hint())
            .field("part", &self.part)
            .field("malformed", &self.malformed)
            .field("printed", &self.printed)
            .finish()
    }
}

impl BatchContext<'_> {
    /// True if `(time - zero)` is a positive multiple of `d`.
    pub fn is_multiple(&self, d: Duration) -> bool {
        let since = self.time - self.zero;
        d.0 > 0 && since.0 > 0 && since.0 % d.0 == 0
    }
}

/// Where a stream hands its elements: a closure `FnMut(T)`, or a type of its own whose `push` is always inlined
/// into the loop that produces the elements.
pub trait Sink<T> {
    /// Takes one element.
    fn push(&mut self, x: T);
}

impl<T, F: FnMut(T)> Sink<T> for F {
    #[inline(always)]
    fn push(&mut self, x: T) {
        self(x)
    }
}

/// A discretized stream, computed batch by batch: [`begin`](Self::begin), [`feed_each`](Self::feed_each) per
/// part of the input, [`finish_each`](Self::finish_each).
pub trait DStream {
    /// Element type.
    type Item;
    /// Starts the batch `ctx.time` (this stream and every stream it reads).
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Hands `sink` the elements the input part in `ctx` gives now (none, for a stream that needs the whole batch).
    fn feed_each<G: Sink<Self::Item>>(&mut self, ctx: &mut BatchContext<'_>, sink: G) -> Result<(), JobError>;
    /// Ends the batch: hands `sink` the rest of its elements; `Ok(false)` means no output at this time (a window
    /// between slides).
    fn finish_each<G: Sink<Self::Item>>(&mut self, ctx: &mut BatchContext<'_>, sink: G) -> Result<bool, JobError>;
    /// Visits the stateful operators this stream is built from (parents first), then itself if it is one.
    fn visit_state(&mut self, visit: &mut StateVisit<'_>);
    /// The stream's slide duration (Spark's `slideDuration`): it has output only at multiples of it. An input
    /// slides by the batch interval `batch`, a window by its slide; other operators by their parent's.
    fn slide(&self, batch: Duration) -> Duration;

    /// Computes a whole batch whose input is all in `ctx` (begin, one part, finish) into `out`.
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<Self::Item>) -> Result<bool, JobError>
    where
        Self: Sized,
    {
        self.begin(ctx)?;
        self.feed_each(ctx, |x| out.push(x))?;
        self.finish_each(ctx, |x| out.push(x))
    }
}

/// An output operation (`print`, `foreach_batch`, ...): it drives the streams it reads, once per batch.
pub trait OutputOp {
    /// Starts a batch.
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Takes one part of the batch's input.
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Ends the batch: does what the operation does with the batch's elements.
    fn finish(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Visits the stateful operators it reads.
    fn visit_state(&mut self, visit: &mut StateVisit<'_>);
    /// Its kind, as [`OutputOperation::name`] reports it.
    fn name(&self) -> &'static str {
        "output"
    }
}

/// A whole streaming job: what runs on each batch, part by part.
pub trait Job {
    /// Starts a batch (`ctx.input` is empty).
    fn begin_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Processes one part of the batch's input (`ctx.input`), after every earlier part in (partition, offset)
    /// order.
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Ends the batch (`ctx.input` is empty): what must see the whole batch, then the output operations.
    fn finish_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
    /// Visits every stateful operator of the job, in a fixed order (the same for the same program).
    fn visit_state(&mut self, visit: &mut StateVisit<'_>);
}

/// No records: the input of `begin` and `finish`.
pub struct NoRecords;

/// The empty input.
pub static NO_RECORDS: NoRecords = NoRecords;

impl RecordSource for NoRecords {
    fn len_hint(&self) -> usize {
        0
    }
    fn for_each_run(&self, _f: &mut dyn FnMut(Run<'_>)) -> Result<usize, SourceError> {
        Ok(0)
    }
}

/// A job made of output operations, run in the order they were added.
#[derive(Default)]
pub struct Graph {
    ops: Vec<Box<dyn OutputOp>>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph").field("outputs", &self.ops.len()).finish()
    }
}

impl Graph {
    /// An empty job.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds an output operation.
    pub fn output(mut self, op: impl OutputOp + 'static) -> Self {
        self.ops.push(Box::new(op));
        self
    }
    /// Adds an output operation already boxed.
    pub fn push_output(&mut self, op: Box<dyn OutputOp>) {
        self.ops.push(op);
    }
}

impl Job for Graph {
    fn begin_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.ops.iter_mut().try_for_each(|op| op.begin(ctx))
    }
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.ops.iter_mut().try_for_each(|op| op.feed(ctx))
    }
    fn finish_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        for (id, op) in self.ops.iter_mut().enumerate() {
            let started = ctx.clock.map(|c| c.now());
            op.finish(ctx)?;
            if let (Some(started), Some(clock)) = (started, ctx.clock) {
                ctx.outputs.push(OutputOperation { id, name: op.name(), started, completed: clock.now() });
            }
        }
        Ok(())
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.ops.iter_mut().for_each(|op| op.visit_state(visit))
    }
}

// ---------------------------------------------------------------------------------------------
// Sources

/// Turns an input record into a stream element.
pub trait RecordParser {
    /// The element type.
    type Item;
    /// Why a record is refused.
    type Error: fmt::Display;
    /// Parses one record.
    fn parse(&mut self, rec: RecordRef<'_>) -> Result<Self::Item, Self::Error>;
}

impl<T, E: fmt::Display, F: FnMut(RecordRef<'_>) -> Result<T, E>> RecordParser for F {
    type Item = T;
    type Error = E;
    #[inline]
    fn parse(&mut self, rec: RecordRef<'_>) -> Result<T, E> {
        self(rec)
    }
}

/// The input stream: parses each record of the batch, in (partition, offset) order.
pub struct Input<F> {
    parse: F,
    policy: Policy,
    inputs: Inputs,
    /// How many named inputs the graph reads, if the input belongs to one: reading its only input is reading
    /// every record (no check per record).
    graph_inputs: Option<Rc<std::cell::Cell<usize>>>,
}

/// Which of a job's inputs an [`Input`] reads (see [`crate::record::input_partition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// Every record of the batch.
    All,
    /// The records of the inputs whose bits are set (bit `n`: input `n`).
    Of(u128),
}

impl Inputs {
    /// True if the record of engine partition `p` is read.
    #[inline(always)]
    pub fn admits(self, p: i32) -> bool {
        match self {
            Inputs::All => true,
            Inputs::Of(mask) => (mask >> (crate::record::split_partition(p).0 & 127)) & 1 == 1,
        }
    }
}

/// What an input does with a refused record: fixed, or the graph's (which the program may set at any time before
/// the run).
enum Policy {
    Fixed(MalformedPolicy),
    Graph(Rc<std::cell::Cell<MalformedPolicy>>),
}

/// The input stream of a job, with a parser from records to elements.
pub fn input<F: RecordParser>(parse: F, policy: MalformedPolicy) -> Input<F> {
    Input { parse, policy: Policy::Fixed(policy), inputs: Inputs::All, graph_inputs: None }
}

/// As [`input`], following the graph's policy cell, reading the records of `inputs` only of the graph's
/// `graph_inputs` named inputs.
pub(crate) fn input_with<F: RecordParser>(
    parse: F,
    policy: Rc<std::cell::Cell<MalformedPolicy>>,
    inputs: Inputs,
    graph_inputs: Rc<std::cell::Cell<usize>>,
) -> Input<F> {
    Input { parse, policy: Policy::Graph(policy), inputs, graph_inputs: Some(graph_inputs) }
}

impl<F: RecordParser> DStream for Input<F> {
    type Item = F::Item;
    fn begin(&mut self, _ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        Ok(())
    }

    fn feed_each<G: Sink<F::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let mut failed = None;
        let policy = match &self.policy {
            Policy::Fixed(p) => *p,
            Policy::Graph(cell) => cell.get(),
        };
        let mut reader = Reader { parse: &mut self.parse, policy, malformed: ctx.malformed, failed: &mut failed };
        // The only input of a graph that reads one is every record: no check per record.
        let only = self.graph_inputs.as_ref().is_some_and(|n| n.get() <= 1);
        let inputs = match self.inputs {
            Inputs::Of(mask) if only && mask & 1 == 1 => Inputs::All,
            other => other,
        };
        // Records come a run at a time; the loop over a run, with the per-record work inlined, is the only one. The
        // closure owns the reader and the sink, so that the loop keeps their parts in registers.
        let mut each_run = move |run: Run<'_>| {
            if reader.failed.is_some() {
                return;
            }
            for rec in run.iter() {
                if !inputs.admits(rec.partition) {
                    continue;
                }
                if !reader.read(rec, &mut sink) {
                    break;
                }
            }
        };
        let read = ctx.input.for_each_run(&mut each_run);
        drop(each_run);
        read?;
        match failed {
            Some(m) => Err(JobError::Malformed(m)),
            None => Ok(()),
        }
    }

    fn finish_each<G: Sink<F::Item>>(&mut self, _ctx: &mut BatchContext<'_>, _sink: G) -> Result<bool, JobError> {
        Ok(true)
    }

    fn visit_state(&mut self, _visit: &mut StateVisit<'_>) {}

    fn slide(&self, batch: Duration) -> Duration {
        batch
    }
}

/// Parses records for [`Input`]: elements go to the sink, malformed records to the batch's list, or, under
/// `MalformedPolicy::Fail`, the first one ends the batch (later records are skipped).
struct Reader<'a, F> {
    parse: &'a mut F,
    policy: MalformedPolicy,
    malformed: &'a mut Vec<Malformed>,
    failed: &'a mut Option<Malformed>,
}

impl<F: RecordParser> Reader<'_, F> {
    /// Reads one record; false if it failed the batch.
    #[inline(always)]
    fn read(&mut self, rec: RecordRef<'_>, sink: &mut impl Sink<F::Item>) -> bool {
        match self.parse.parse(rec) {
            Ok(v) => sink.push(v),
            Err(e) => {
                let m = malformed(&rec, &e);
                if self.policy == MalformedPolicy::Fail {
                    *self.failed = Some(m);
                    return false;
                }
                self.malformed.push(m);
            }
        }
        true
    }
}

/// What is reported of a malformed record.
#[cold]
#[inline(never)]
fn malformed(rec: &RecordRef<'_>, e: &dyn fmt::Display) -> Malformed {
    let reason = format!("{e} (value {:?})", preview(rec.value));
    Malformed { partition: rec.partition, offset: rec.offset, reason, last_offset: None }
}

fn preview(value: &[u8]) -> String {
    const MAX: usize = 60;
    let mut s = String::from_utf8_lossy(&value[..value.len().min(MAX)]).into_owned();
    if value.len() > MAX {
        s.push_str("...");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Stateless operators

/// `map`.
pub struct Map<P, F> {
    parent: P,
    f: F,
}
impl<P: DStream, U, F: FnMut(P::Item) -> U> DStream for Map<P, F> {
    type Item = U;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.parent.begin(ctx)
    }
    #[inline]
    fn feed_each<G: Sink<U>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let f = &mut self.f;
        self.parent.feed_each(ctx, |x| sink.push(f(x)))
    }
    fn finish_each<G: Sink<U>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let f = &mut self.f;
        self.parent.finish_each(ctx, |x| sink.push(f(x)))
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `flatMap`.
pub struct FlatMap<P, F> {
    parent: P,
    f: F,
}
impl<P: DStream, I: IntoIterator, F: FnMut(P::Item) -> I> DStream for FlatMap<P, F> {
    type Item = I::Item;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<I::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let f = &mut self.f;
        self.parent.feed_each(ctx, |x| f(x).into_iter().for_each(|x| sink.push(x)))
    }
    fn finish_each<G: Sink<I::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let f = &mut self.f;
        self.parent.finish_each(ctx, |x| f(x).into_iter().for_each(|x| sink.push(x)))
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `filter`.
pub struct Filter<P, F> {
    parent: P,
    f: F,
}
impl<P: DStream, F: FnMut(&P::Item) -> bool> DStream for Filter<P, F> {
    type Item = P::Item;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let f = &mut self.f;
        self.parent.feed_each(ctx, |x| {
            if f(&x) {
                sink.push(x)
            }
        })
    }
    fn finish_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let f = &mut self.f;
        self.parent.finish_each(ctx, |x| {
            if f(&x) {
                sink.push(x)
            }
        })
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `mapValues`.
pub struct MapValues<P, F> {
    parent: P,
    f: F,
}
/// `mapValues` keeps its parent's partitioning (as Spark's), so its partition count is its parent's (what
/// `group_by_key_and_window(..).partitions(n)` sets).
impl<P: Partitioned, F> Partitioned for MapValues<P, F> {
    fn shuffle(&self) -> &Shuffle {
        self.parent.shuffle()
    }
}

impl<K, V, U, P: DStream<Item = (K, V)>, F: FnMut(V) -> U> DStream for MapValues<P, F> {
    type Item = (K, U);
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<(K, U)>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let f = &mut self.f;
        self.parent.feed_each(ctx, |(k, v)| sink.push((k, f(v))))
    }
    fn finish_each<G: Sink<(K, U)>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let f = &mut self.f;
        self.parent.finish_each(ctx, |(k, v)| sink.push((k, f(v))))
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `union`: this batch's elements of the first stream, then of the second.
pub struct Union<A: DStream, B: DStream> {
    a: A,
    b: B,
    buf: Vec<B::Item>,
}
impl<T, A: DStream<Item = T>, B: DStream<Item = T>> DStream for Union<A, B> {
    type Item = T;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let (first, second) = (self.a.slide(ctx.interval), self.b.slide(ctx.interval));
        if first != second {
            return Err(JobError::Config(ConfigError::DifferentSlides { operator: "union", first, second }));
        }
        self.buf.clear();
        self.a.begin(ctx)?;
        self.b.begin(ctx)
    }
    fn feed_each<G: Sink<T>>(&mut self, ctx: &mut BatchContext<'_>, sink: G) -> Result<(), JobError> {
        self.a.feed_each(ctx, sink)?;
        let buf = &mut self.buf;
        self.b.feed_each(ctx, |x| buf.push(x))
    }
    fn finish_each<G: Sink<T>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let ha = self.a.finish_each(ctx, |x| sink.push(x))?;
        let buf = &mut self.buf;
        let hb = self.b.finish_each(ctx, |x| buf.push(x))?;
        self.buf.drain(..).for_each(|x| sink.push(x));
        Ok(ha || hb)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.a.visit_state(visit);
        self.b.visit_state(visit);
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.a.slide(batch)
    }
}

/// `count`: one element per batch, the number of elements (0 for an empty batch).
pub struct Count<P> {
    parent: P,
    n: i64,
}
impl<P: DStream> DStream for Count<P> {
    type Item = i64;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.n = 0;
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<i64>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let n = &mut self.n;
        self.parent.feed_each(ctx, |_| *n += 1)
    }
    fn finish_each<G: Sink<i64>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let n = &mut self.n;
        let has = self.parent.finish_each(ctx, |_| *n += 1)?;
        if has {
            sink.push(self.n);
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// Where a keyed operator (`reduce_by_key`, `update_state_by_key`, `reduce_by_key_and_window`, ...) takes its
/// output order and its number of shuffle partitions from. The order is the graph's (one setting for every keyed
/// operator of a graph, [`GraphBuilder::set_output_order`](crate::graph::GraphBuilder::set_output_order)) or the
/// operator's own; the partition count (Spark's `numPartitions`, by default 2 as `defaultParallelism` under
/// `local[2]`) only matters under [`OutputOrder::SparkPartitions`].
#[derive(Debug, Clone)]
pub struct Shuffle {
    order: Rc<Cell<OutputOrder>>,
    partitions: Rc<Cell<usize>>,
}

impl Default for Shuffle {
    fn default() -> Self {
        Shuffle::new(OutputOrder::Arrival, 2)
    }
}

impl Shuffle {
    /// An order and a partition count of the operator's own.
    pub fn new(order: OutputOrder, partitions: usize) -> Self {
        Shuffle { order: Rc::new(Cell::new(order)), partitions: Rc::new(Cell::new(partitions.max(1))) }
    }
    /// Following an order cell shared with other operators (a graph's), with a partition count of its own.
    pub(crate) fn following(order: Rc<Cell<OutputOrder>>) -> Self {
        Shuffle { order, partitions: Rc::new(Cell::new(2)) }
    }
    /// Sets the number of shuffle partitions (Spark's `numPartitions`; at least 1).
    pub fn set_partitions(&self, n: usize) {
        self.partitions.set(n.max(1));
    }
    /// The number of shuffle partitions.
    pub fn partitions(&self) -> usize {
        self.partitions.get()
    }
    /// The output order.
    pub fn order(&self) -> OutputOrder {
        self.order.get()
    }
    /// `Some(partitions)` under Spark's order.
    fn spark(&self) -> Option<usize> {
        (self.order.get() == OutputOrder::SparkPartitions).then(|| self.partitions.get())
    }
}

/// A keyed operator with a shuffle (what [`Stream::partitions`](crate::graph::Stream::partitions) sets).
pub trait Partitioned {
    /// The operator's order and partition count.
    fn shuffle(&self) -> &Shuffle;
}

/// Indices of `keys` (distinct) in Spark's order after a hash shuffle into `n` partitions: each partition's keys
/// go into its hash table in the order given, or, after a map-side combine (`sort_by_hash`), sorted by `hashCode`
/// (Spark's map side sorts its combined output by partition and key hashCode, stably; one map task assumed).
fn spark_order_of<K: StableHash>(keys: impl Iterator<Item = K>, n: usize, sort_by_hash: bool) -> Vec<u32> {
    let mut hashes: Vec<(i32, u32)> = keys.enumerate().map(|(i, k)| (k.stable_hash(), i as u32)).collect();
    if sort_by_hash {
        hashes.sort_by_key(|&(h, _)| h);
    }
    let seq: Vec<i32> = hashes.iter().map(|&(h, _)| h).collect();
    let mut order = Vec::with_capacity(seq.len());
    crate::jvm::spark_shuffle_order(&seq, n, &mut order);
    order.into_iter().map(|i| hashes[i as usize].1).collect()
}

/// `items` rearranged as `order` says (each index once).
fn permute<T>(items: Vec<T>, order: &[u32]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.iter().filter_map(|&i| slots[i as usize].take()).collect()
}

/// Puts one partition's state entries `(last update, key)` in the order of Spark's state map
/// (`OpenHashMapBasedStateMap.getAll`): one delta map per batch, older batches first, each in its hash table's
/// slot order. The keys of one batch are taken to have been put in the order given (their insertion order into
/// Spark's delta map, and the keys that a later batch moved on, are not known: exact unless two keys of one batch
/// collide in that table).
pub(crate) fn spark_state_order<K: StableHash, T>(items: &mut Vec<(Time, K, T)>) {
    if items.len() < 2 {
        return;
    }
    items.sort_by_key(|(t, _, _)| *t);
    let taken = std::mem::take(items);
    let mut start = 0;
    let mut order: Vec<u32> = Vec::with_capacity(taken.len());
    let mut table = crate::jvm::SparkHashOrder::new();
    while start < taken.len() {
        let t = taken[start].0;
        let end = start + taken[start..].iter().take_while(|(u, _, _)| *u == t).count();
        table.clear();
        for (i, (_, k, _)) in taken[start..end].iter().enumerate() {
            table.insert(k.stable_hash(), (start + i) as u32);
        }
        order.extend(table.iter());
        start = end;
    }
    *items = permute(taken, &order);
}

/// Reduces (key, value) pairs per key within one batch; keys in the order of their first element.
struct Reducer<K, V> {
    index: FxHashMap<K, usize>,
    acc: Vec<(K, Option<V>)>,
}

impl<K, V> Default for Reducer<K, V> {
    fn default() -> Self {
        Reducer { index: FxHashMap::default(), acc: Vec::new() }
    }
}

impl<K: Hash + Eq + Clone, V> Reducer<K, V> {
    fn add(&mut self, k: K, v: V, f: &mut impl FnMut(V, V) -> V) {
        match self.index.get(&k) {
            Some(&i) => {
                let slot = &mut self.acc[i].1;
                let old = slot.take().expect("accumulated values are always set");
                *slot = Some(f(old, v));
            }
            None => {
                self.index.insert(k.clone(), self.acc.len());
                self.acc.push((k, Some(v)));
            }
        }
    }
    /// Forgets what was reduced so far.
    fn clear(&mut self) {
        self.index.clear();
        self.acc.clear();
    }
    /// The reduced pairs, in order of first appearance; the reducer is empty afterwards.
    fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.index.clear();
        self.acc.drain(..).map(|(k, v)| (k, v.expect("accumulated values are always set")))
    }
    /// The reduced pairs in Spark's order for `n` shuffle partitions (see [`spark_order_of`]).
    fn drain_spark(&mut self, n: usize, sort_by_hash: bool) -> Vec<(K, V)>
    where
        K: StableHash,
    {
        let pairs: Vec<(K, V)> = self.drain().collect();
        let order = spark_order_of(pairs.iter().map(|(k, _)| k), n, sort_by_hash);
        permute(pairs, &order)
    }
}

/// `reduceByKey` within one batch; keys come out in the order of their first element, or in Spark's (by shuffle
/// partition, then that partition's hash table) under [`OutputOrder::SparkPartitions`].
pub struct ReduceByKey<P, K, V, F> {
    parent: P,
    f: F,
    reducer: Reducer<K, V>,
    shuffle: Shuffle,
    /// The parent is already partitioned as this operator's output (the second reduce of
    /// `reduce_by_key_and_window`): Spark does not shuffle, and keys enter its table in arrival order.
    partitioned_parent: bool,
}

impl<P, K, V, F> ReduceByKey<P, K, V, F> {
    /// This operator's order and partition count taken from `shuffle`.
    pub fn with_shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Its own output order.
    pub fn output_order(self, order: OutputOrder) -> Self {
        let n = self.shuffle.partitions();
        self.with_shuffle(Shuffle::new(order, n))
    }
    /// Marks the parent as already partitioned as this operator's output.
    fn after_partitioned(mut self) -> Self {
        self.partitioned_parent = true;
        self
    }
}

impl<P, K, V, F> Partitioned for ReduceByKey<P, K, V, F> {
    fn shuffle(&self) -> &Shuffle {
        &self.shuffle
    }
}

impl<K: Hash + Eq + Clone + StableHash, V, P: DStream<Item = (K, V)>, F: FnMut(V, V) -> V> DStream
    for ReduceByKey<P, K, V, F>
{
    type Item = (K, V);
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.reducer.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<(K, V)>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let (r, f) = (&mut self.reducer, &mut self.f);
        self.parent.feed_each(ctx, |(k, v)| r.add(k, v, f))
    }
    fn finish_each<G: Sink<(K, V)>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let (r, f) = (&mut self.reducer, &mut self.f);
        let has = self.parent.finish_each(ctx, |(k, v)| r.add(k, v, f))?;
        match self.shuffle.spark() {
            None => self.reducer.drain().for_each(|x| sink.push(x)),
            Some(n) => self.reducer.drain_spark(n, !self.partitioned_parent).into_iter().for_each(|x| sink.push(x)),
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `reduceByKeyAndWindow(f, length, slide)` without an inverse, its two reductions sharing `shuffle` (Spark's
/// `reduceByKey(f, partitioner).window(length, slide).reduceByKey(f, partitioner)`).
#[allow(clippy::type_complexity)]
pub(crate) fn reduce_by_key_and_window_with<P, K, V, F>(
    parent: P,
    f: F,
    g: F,
    length: Duration,
    slide: Duration,
    shuffle: Shuffle,
) -> ReduceByKey<Window<ReduceByKey<P, K, V, F>>, K, V, F>
where
    P: DStream<Item = (K, V)>,
    F: FnMut(V, V) -> V,
    K: Hash + Eq + Clone + StableHash + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    parent
        .reduce_by_key(f)
        .with_shuffle(shuffle.clone())
        .window(length, slide)
        .reduce_by_key(g)
        .with_shuffle(shuffle)
        .after_partitioned()
}

/// `groupByKeyAndWindow(length, slide)`, its two groupings sharing `shuffle` (Spark's `groupByKey(partitioner)
/// .window(length, slide).combineByKey(.., partitioner)`).
pub(crate) fn group_by_key_and_window_with<P, K, V>(
    parent: P,
    length: Duration,
    slide: Duration,
    shuffle: Shuffle,
) -> GroupByKeyAndWindow<P, K, V>
where
    P: DStream<Item = (K, V)>,
    K: Hash + Eq + Clone + StableHash + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    let flat: fn(Vec<Vec<V>>) -> Vec<V> = concat;
    parent
        .group_by_key()
        .with_shuffle(shuffle.clone())
        .window(length, slide)
        .group_by_key()
        .with_shuffle(shuffle)
        .after_partitioned()
        .map_values(flat)
}

/// `reduce`: one element per batch with elements, every element folded with `f` in arrival order; nothing for an
/// empty batch (Spark: `map(x => (null, x)).reduceByKey(f, 1).map(_._2)`, an empty RDD).
pub struct Reduce<P: DStream, F> {
    parent: P,
    f: F,
    acc: Option<P::Item>,
}
impl<P: DStream, F: FnMut(P::Item, P::Item) -> P::Item> DStream for Reduce<P, F> {
    type Item = P::Item;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.acc = None;
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let (acc, f) = (&mut self.acc, &mut self.f);
        self.parent.feed_each(ctx, |x| fold(acc, x, f))
    }
    fn finish_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let (acc, f) = (&mut self.acc, &mut self.f);
        let has = self.parent.finish_each(ctx, |x| fold(acc, x, f))?;
        if let Some(x) = self.acc.take() {
            sink.push(x);
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

#[inline(always)]
fn fold<T>(acc: &mut Option<T>, x: T, f: &mut impl FnMut(T, T) -> T) {
    *acc = Some(match acc.take() {
        Some(a) => f(a, x),
        None => x,
    });
}

/// `countByValue`: (element, number of times it occurs in the batch), in order of first appearance.
pub type CountByValue<P> = ReduceByKey<
    Map<P, fn(<P as DStream>::Item) -> (<P as DStream>::Item, i64)>,
    <P as DStream>::Item,
    i64,
    fn(i64, i64) -> i64,
>;

fn with_one<T>(x: T) -> (T, i64) {
    (x, 1)
}

fn add_i64(a: i64, b: i64) -> i64 {
    a + b
}

fn sub_i64(a: i64, b: i64) -> i64 {
    a - b
}

fn nonzero<K>(kv: &(K, i64)) -> bool {
    kv.1 != 0
}

fn keyed_by_unit<T>(x: T) -> ((), T) {
    ((), x)
}

fn unkeyed<T>(kv: ((), T)) -> T {
    kv.1
}

fn to_one<T>(_: T) -> i64 {
    1
}

fn concat<V>(vs: Vec<Vec<V>>) -> Vec<V> {
    vs.into_iter().flatten().collect()
}

/// `reduceByWindow(f, length, slide)` without an inverse: Spark's `reduce(f).window(length, slide).reduce(f)`.
pub type ReduceByWindow<P, F> = Reduce<Window<Reduce<P, F>>, F>;

/// `reduceByWindow(f, inverse, length, slide)`: Spark's `map((1, _)).reduceByKeyAndWindow(f, inverse, ...)
/// .map(_._2)`: once an element has entered, the window always has a value (the reduction of what is left).
pub type ReducedByWindow<P, F, G> = Map<
    ReducedWindow<
        Map<P, fn(<P as DStream>::Item) -> ((), <P as DStream>::Item)>,
        (),
        <P as DStream>::Item,
        F,
        G,
        fn(&((), <P as DStream>::Item)) -> bool,
    >,
    fn(((), <P as DStream>::Item)) -> <P as DStream>::Item,
>;

/// `countByWindow(length, slide)`: Spark's `map(_ => 1L).reduceByWindow(_ + _, _ - _, length, slide)`.
pub type CountByWindow<P> =
    ReducedByWindow<Map<P, fn(<P as DStream>::Item) -> i64>, fn(i64, i64) -> i64, fn(i64, i64) -> i64>;

/// `countByValueAndWindow(length, slide)`: Spark's `map((_, 1L)).reduceByKeyAndWindow(_ + _, _ - _, length,
/// slide, filter = count != 0)`.
pub type CountByValueAndWindow<P> = ReducedWindow<
    Map<P, fn(<P as DStream>::Item) -> (<P as DStream>::Item, i64)>,
    <P as DStream>::Item,
    i64,
    fn(i64, i64) -> i64,
    fn(i64, i64) -> i64,
    fn(&(<P as DStream>::Item, i64)) -> bool,
>;

/// `groupByKeyAndWindow(length, slide)`: Spark's `groupByKey().window(length, slide)` with each key's groups
/// concatenated (oldest batch first); keys in order of first appearance in the window.
pub type GroupByKeyAndWindow<P, K, V> =
    MapValues<GroupByKey<Window<GroupByKey<P, K, V>>, K, Vec<V>>, fn(Vec<Vec<V>>) -> Vec<V>>;

/// `groupByKey` within one batch: (key, its values in arrival order), keys in order of first appearance.
pub struct GroupByKey<P, K, V> {
    parent: P,
    index: FxHashMap<K, usize>,
    groups: Vec<(K, Vec<V>)>,
    shuffle: Shuffle,
    /// The parent is already partitioned as this operator's output (the second grouping of
    /// `group_by_key_and_window`): Spark does not shuffle, and keys enter its table in arrival order.
    partitioned_parent: bool,
}

impl<P, K, V> GroupByKey<P, K, V> {
    /// This operator's order and partition count taken from `shuffle`.
    pub fn with_shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Its own output order.
    pub fn output_order(self, order: OutputOrder) -> Self {
        let n = self.shuffle.partitions();
        self.with_shuffle(Shuffle::new(order, n))
    }
    fn after_partitioned(mut self) -> Self {
        self.partitioned_parent = true;
        self
    }
}

impl<P, K, V> Partitioned for GroupByKey<P, K, V> {
    fn shuffle(&self) -> &Shuffle {
        &self.shuffle
    }
}

impl<P, K: Hash + Eq + Clone, V> GroupByKey<P, K, V> {
    fn add(index: &mut FxHashMap<K, usize>, groups: &mut Vec<(K, Vec<V>)>, k: K, v: V) {
        match index.get(&k) {
            Some(&i) => groups[i].1.push(v),
            None => {
                index.insert(k.clone(), groups.len());
                groups.push((k, vec![v]));
            }
        }
    }
}

impl<K: Hash + Eq + Clone + StableHash, V, P: DStream<Item = (K, V)>> DStream for GroupByKey<P, K, V> {
    type Item = (K, Vec<V>);
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.index.clear();
        self.groups.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<(K, Vec<V>)>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let (index, groups) = (&mut self.index, &mut self.groups);
        self.parent.feed_each(ctx, |(k, v)| Self::add(index, groups, k, v))
    }
    fn finish_each<G: Sink<(K, Vec<V>)>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let (index, groups) = (&mut self.index, &mut self.groups);
        let has = self.parent.finish_each(ctx, |(k, v)| Self::add(index, groups, k, v))?;
        self.index.clear();
        match self.shuffle.spark() {
            None => self.groups.drain(..).for_each(|x| sink.push(x)),
            Some(n) => {
                // Spark's groupByKey is a combineByKey: combined and sorted by hashCode on the map side.
                let groups = std::mem::take(&mut self.groups);
                let order = spark_order_of(groups.iter().map(|(k, _)| k), n, !self.partitioned_parent);
                permute(groups, &order).into_iter().for_each(|x| sink.push(x));
            }
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// What a [`CoGroup`] emits for each key: the cogroup itself or one of the joins (Spark's `PairRDDFunctions`).
pub trait CoGroupKind<K, V, W> {
    /// The operator's name, for errors.
    const NAME: &'static str;
    /// Element type.
    type Output;
    /// Emits the elements of one key, given its values in each stream (at least one is not empty).
    fn emit<G: Sink<Self::Output>>(k: K, vs: Vec<V>, ws: Vec<W>, sink: &mut G);
}

/// `cogroup`: (key, (values in the first stream, values in the second)), each side a [`CompactBuffer`] as Spark's.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoGroupAll;
impl<K, V, W> CoGroupKind<K, V, W> for CoGroupAll {
    const NAME: &'static str = "cogroup";
    type Output = (K, (CompactBuffer<V>, CompactBuffer<W>));
    fn emit<G: Sink<Self::Output>>(k: K, vs: Vec<V>, ws: Vec<W>, sink: &mut G) {
        sink.push((k, (CompactBuffer(vs), CompactBuffer(ws))))
    }
}

/// `join`: for a key in both streams, every (v, w), v outer and w inner, in arrival order.
#[derive(Debug, Clone, Copy, Default)]
pub struct InnerJoin;
impl<K: Clone, V: Clone, W: Clone> CoGroupKind<K, V, W> for InnerJoin {
    const NAME: &'static str = "join";
    type Output = (K, (V, W));
    fn emit<G: Sink<Self::Output>>(k: K, vs: Vec<V>, ws: Vec<W>, sink: &mut G) {
        for v in &vs {
            for w in &ws {
                sink.push((k.clone(), (v.clone(), w.clone())));
            }
        }
    }
}

/// `leftOuterJoin`: as `join`, and (v, None) for a key only in the first stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeftOuterJoin;
impl<K: Clone, V: Clone, W: Clone> CoGroupKind<K, V, W> for LeftOuterJoin {
    const NAME: &'static str = "left_outer_join";
    type Output = (K, (V, Option<W>));
    fn emit<G: Sink<Self::Output>>(k: K, vs: Vec<V>, ws: Vec<W>, sink: &mut G) {
        if ws.is_empty() {
            vs.into_iter().for_each(|v| sink.push((k.clone(), (v, None))));
            return;
        }
        for v in &vs {
            for w in &ws {
                sink.push((k.clone(), (v.clone(), Some(w.clone()))));
            }
        }
    }
}

/// `rightOuterJoin`: as `join`, and (None, w) for a key only in the second stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct RightOuterJoin;
impl<K: Clone, V: Clone, W: Clone> CoGroupKind<K, V, W> for RightOuterJoin {
    const NAME: &'static str = "right_outer_join";
    type Output = (K, (Option<V>, W));
    fn emit<G: Sink<Self::Output>>(k: K, vs: Vec<V>, ws: Vec<W>, sink: &mut G) {
        if vs.is_empty() {
            ws.into_iter().for_each(|w| sink.push((k.clone(), (None, w))));
            return;
        }
        for v in &vs {
            for w in &ws {
                sink.push((k.clone(), (Some(v.clone()), w.clone())));
            }
        }
    }
}

/// `fullOuterJoin`: as `join`, and (v, None) or (None, w) for a key in one stream only.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullOuterJoin;
impl<K: Clone, V: Clone, W: Clone> CoGroupKind<K, V, W> for FullOuterJoin {
    const NAME: &'static str = "full_outer_join";
    type Output = (K, (Option<V>, Option<W>));
    fn emit<G: Sink<Self::Output>>(k: K, vs: Vec<V>, ws: Vec<W>, sink: &mut G) {
        if ws.is_empty() {
            vs.into_iter().for_each(|v| sink.push((k.clone(), (Some(v), None))));
        } else if vs.is_empty() {
            ws.into_iter().for_each(|w| sink.push((k.clone(), (None, Some(w)))));
        } else {
            for v in &vs {
                for w in &ws {
                    sink.push((k.clone(), (Some(v.clone()), Some(w.clone()))));
                }
            }
        }
    }
}

/// `cogroup` and the joins of two keyed streams with the same slide, within one batch. Keys come in order of
/// first appearance in the first stream, then those only in the second in order of first appearance there
/// (whatever parts the batch arrives in); values in arrival order. Spark's order (hash partitions) differs.
pub struct CoGroup<A, B, K, V, W, J> {
    a: A,
    b: B,
    index: FxHashMap<K, usize>,
    groups: Vec<(K, Vec<V>, Vec<W>)>,
    right: Vec<(K, W)>,
    kind: std::marker::PhantomData<J>,
    shuffle: Shuffle,
}

impl<A, B, K, V, W, J> CoGroup<A, B, K, V, W, J> {
    /// This operator's order and partition count taken from `shuffle`.
    pub fn with_shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Its own output order.
    pub fn output_order(self, order: OutputOrder) -> Self {
        let n = self.shuffle.partitions();
        self.with_shuffle(Shuffle::new(order, n))
    }
}

impl<A, B, K, V, W, J> Partitioned for CoGroup<A, B, K, V, W, J> {
    fn shuffle(&self) -> &Shuffle {
        &self.shuffle
    }
}

impl<K: Hash + Eq + Clone, V, W> CoGroup<(), (), K, V, W, ()> {
    fn add_left(index: &mut FxHashMap<K, usize>, groups: &mut Vec<(K, Vec<V>, Vec<W>)>, k: K, v: V) {
        match index.get(&k) {
            Some(&i) => groups[i].1.push(v),
            None => {
                index.insert(k.clone(), groups.len());
                groups.push((k, vec![v], Vec::new()));
            }
        }
    }
}

impl<K, V, W, A, B, J> DStream for CoGroup<A, B, K, V, W, J>
where
    K: Hash + Eq + Clone + StableHash,
    A: DStream<Item = (K, V)>,
    B: DStream<Item = (K, W)>,
    J: CoGroupKind<K, V, W>,
{
    type Item = J::Output;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let (first, second) = (self.a.slide(ctx.interval), self.b.slide(ctx.interval));
        if first != second {
            return Err(JobError::Config(ConfigError::DifferentSlides { operator: J::NAME, first, second }));
        }
        self.index.clear();
        self.groups.clear();
        self.right.clear();
        self.a.begin(ctx)?;
        self.b.begin(ctx)
    }
    fn feed_each<G: Sink<J::Output>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let (index, groups, right) = (&mut self.index, &mut self.groups, &mut self.right);
        self.a.feed_each(ctx, |(k, v)| CoGroup::<(), (), K, V, W, ()>::add_left(index, groups, k, v))?;
        self.b.feed_each(ctx, |x| right.push(x))
    }
    fn finish_each<G: Sink<J::Output>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let (index, groups, right) = (&mut self.index, &mut self.groups, &mut self.right);
        let ha = self.a.finish_each(ctx, |(k, v)| CoGroup::<(), (), K, V, W, ()>::add_left(index, groups, k, v))?;
        let hb = self.b.finish_each(ctx, |x| right.push(x))?;
        // The second stream's values once the first's are all in: the key order does not depend on the parts.
        for (k, w) in self.right.drain(..) {
            match self.index.get(&k) {
                Some(&i) => self.groups[i].2.push(w),
                None => {
                    self.index.insert(k.clone(), self.groups.len());
                    self.groups.push((k, Vec::new(), vec![w]));
                }
            }
        }
        self.index.clear();
        if let Some(n) = self.shuffle.spark() {
            // Spark's CoGroupedRDD fills each partition's table with the first stream's records, then the second's
            // (both shuffled as they arrive): the key order above is that insertion order.
            let groups = std::mem::take(&mut self.groups);
            let order = spark_order_of(groups.iter().map(|(k, _, _)| k), n, false);
            self.groups = permute(groups, &order);
        }
        for (k, vs, ws) in self.groups.drain(..) {
            J::emit(k, vs, ws, &mut sink);
        }
        Ok(ha || hb)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.a.visit_state(visit);
        self.b.visit_state(visit);
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.a.slide(batch)
    }
}

/// `repartition(n)`: the same elements. Spark deals each input partition's elements round robin to `n` new
/// partitions, from a start drawn from `XORShiftRandom(partition index)`, and concatenates the new partitions
/// (`RDD.coalesce(n, shuffle = true)`): under [`OutputOrder::SparkPartitions`] the batch comes out in that order
/// (the input taken as one partition), otherwise in arrival order. It changes no partition count after it: Spark
/// Streaming's keyed operators use `defaultParallelism` (or their own `numPartitions`), not their parent's.
pub struct Repartition<P: DStream> {
    parent: P,
    shuffle: Shuffle,
    spark: Option<usize>,
    buf: Vec<P::Item>,
}

impl<P: DStream> Repartition<P> {
    /// This operator's order taken from `shuffle` (its partition count stays `n`).
    pub fn with_order_of(mut self, shuffle: &Shuffle) -> Self {
        self.shuffle = Shuffle { order: shuffle.order.clone(), partitions: self.shuffle.partitions.clone() };
        self
    }
    /// Its own output order.
    pub fn output_order(self, order: OutputOrder) -> Self {
        self.with_order_of(&Shuffle::new(order, 1))
    }
}

impl<P: DStream> DStream for Repartition<P> {
    type Item = P::Item;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.spark = self.shuffle.spark();
        self.buf.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        match self.spark {
            None => self.parent.feed_each(ctx, |x| sink.push(x)),
            Some(_) => {
                let buf = &mut self.buf;
                self.parent.feed_each(ctx, |x| buf.push(x))
            }
        }
    }
    fn finish_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let Some(n) = self.spark else { return self.parent.finish_each(ctx, |x| sink.push(x)) };
        let buf = &mut self.buf;
        let has = self.parent.finish_each(ctx, |x| buf.push(x))?;
        // Element i goes to partition (start + 1 + i) mod n; partitions are concatenated.
        let start = crate::jvm::xorshift_first_int(0, n as i32) as usize;
        let mut slots: Vec<Option<P::Item>> = self.buf.drain(..).map(Some).collect();
        for p in 0..n {
            let first = (p + n - (start + 1) % n) % n;
            for slot in slots.iter_mut().skip(first).step_by(n) {
                if let Some(x) = slot.take() {
                    sink.push(x);
                }
            }
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `transform`: a function of each batch's time and elements (all of them, in order) gives the batch's elements
/// (Spark's `transform((rdd, time) => ...)`); called only at times the stream has output.
pub struct Transform<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}
impl<P: DStream, U, F: FnMut(Time, Vec<P::Item>) -> Vec<U>> DStream for Transform<P, F> {
    type Item = U;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.buf.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<U>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let buf = &mut self.buf;
        self.parent.feed_each(ctx, |x| buf.push(x))
    }
    fn finish_each<G: Sink<U>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let buf = &mut self.buf;
        let has = self.parent.finish_each(ctx, |x| buf.push(x))?;
        let items = std::mem::take(&mut self.buf);
        if has {
            (self.f)(ctx.time, items).into_iter().for_each(|x| sink.push(x));
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

/// `transformWith`: a function of each batch's time and the elements of two streams with the same slide gives
/// the batch's elements (Spark's `transformWith(other, (rdd1, rdd2, time) => ...)`).
pub struct TransformWith<A: DStream, B: DStream, F> {
    a: A,
    b: B,
    f: F,
    left: Vec<A::Item>,
    right: Vec<B::Item>,
}
impl<A: DStream, B: DStream, U, F: FnMut(Time, Vec<A::Item>, Vec<B::Item>) -> Vec<U>> DStream
    for TransformWith<A, B, F>
{
    type Item = U;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let (first, second) = (self.a.slide(ctx.interval), self.b.slide(ctx.interval));
        if first != second {
            return Err(JobError::Config(ConfigError::DifferentSlides { operator: "transform_with", first, second }));
        }
        self.left.clear();
        self.right.clear();
        self.a.begin(ctx)?;
        self.b.begin(ctx)
    }
    fn feed_each<G: Sink<U>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let (left, right) = (&mut self.left, &mut self.right);
        self.a.feed_each(ctx, |x| left.push(x))?;
        self.b.feed_each(ctx, |x| right.push(x))
    }
    fn finish_each<G: Sink<U>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let (left, right) = (&mut self.left, &mut self.right);
        let ha = self.a.finish_each(ctx, |x| left.push(x))?;
        let hb = self.b.finish_each(ctx, |x| right.push(x))?;
        let (l, r) = (std::mem::take(&mut self.left), std::mem::take(&mut self.right));
        let has = ha || hb;
        if has {
            (self.f)(ctx.time, l, r).into_iter().for_each(|x| sink.push(x));
        }
        Ok(has)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.a.visit_state(visit);
        self.b.visit_state(visit);
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.a.slide(batch)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared streams

/// A stream read by several consumers (several output operations, or `map_with_state`'s mapped stream and its
/// `state_snapshots`): computed once per part and per batch; each consumer gets its elements in the same order.
/// With one consumer it is a plain pass-through.
pub struct Shared<D: DStream> {
    slot: Rc<RefCell<SharedSlot<D>>>,
}

struct SharedSlot<D: DStream> {
    node: D,
    consumers: usize,
    begun: Option<Time>,
    fed: Option<(Time, u64)>,
    fed_items: Vec<D::Item>,
    finished: Option<(Time, bool)>,
    finished_items: Vec<D::Item>,
}

impl<D: DStream> Shared<D> {
    /// Shares `node`; [`consumer`](Self::consumer) hands out the handles its consumers read through.
    pub fn new(node: D) -> Self {
        let slot = SharedSlot {
            node,
            consumers: 0,
            begun: None,
            fed: None,
            fed_items: Vec::new(),
            finished: None,
            finished_items: Vec::new(),
        };
        Shared { slot: Rc::new(RefCell::new(slot)) }
    }
    /// A handle for one more consumer.
    pub fn consumer(&self) -> Self {
        self.slot.borrow_mut().consumers += 1;
        Shared { slot: self.slot.clone() }
    }
    /// Calls `f` with the shared stream (e.g. to read an operator's state).
    pub fn with<R>(&self, f: impl FnOnce(&D) -> R) -> R {
        f(&self.slot.borrow().node)
    }
    /// Calls `f` with the shared stream, mutably.
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.slot.borrow_mut().node)
    }
    fn id(&self) -> usize {
        Rc::as_ptr(&self.slot) as *const u8 as usize
    }
}

impl<D: DStream> DStream for Shared<D>
where
    D::Item: Clone,
{
    type Item = D::Item;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let mut slot = self.slot.borrow_mut();
        if slot.begun == Some(ctx.time) {
            return Ok(());
        }
        slot.begun = Some(ctx.time);
        slot.node.begin(ctx)
    }
    #[inline]
    fn feed_each<G: Sink<D::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let mut slot = self.slot.borrow_mut();
        let slot = &mut *slot;
        if slot.consumers <= 1 {
            return slot.node.feed_each(ctx, sink);
        }
        // Several consumers: through a dynamic call, so that the single-consumer path above stays the only static
        // call of `sink` (the compiler then inlines it into the record loop).
        slot.feed_shared(ctx, &mut |x| sink.push(x))
    }
    fn finish_each<G: Sink<D::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let mut slot = self.slot.borrow_mut();
        let slot = &mut *slot;
        if slot.consumers <= 1 {
            return slot.node.finish_each(ctx, sink);
        }
        slot.finish_shared(ctx, &mut |x| sink.push(x))
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        if visit.first_time(self.id()) {
            self.slot.borrow_mut().node.visit_state(visit);
        }
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.slot.borrow().node.slide(batch)
    }
}

impl<D: DStream> SharedSlot<D>
where
    D::Item: Clone,
{
    #[inline(never)]
    fn feed_shared(&mut self, ctx: &mut BatchContext<'_>, sink: &mut dyn FnMut(D::Item)) -> Result<(), JobError> {
        if self.fed != Some((ctx.time, ctx.part)) {
            self.fed_items.clear();
            let items = &mut self.fed_items;
            self.node.feed_each(ctx, |x| items.push(x))?;
            self.fed = Some((ctx.time, ctx.part));
        }
        self.fed_items.iter().cloned().for_each(sink);
        Ok(())
    }

    #[inline(never)]
    fn finish_shared(&mut self, ctx: &mut BatchContext<'_>, sink: &mut dyn FnMut(D::Item)) -> Result<bool, JobError> {
        let slot = self;
        let has = match slot.finished {
            Some((t, has)) if t == ctx.time => has,
            _ => {
                slot.finished_items.clear();
                slot.fed_items.clear();
                let items = &mut slot.finished_items;
                let has = slot.node.finish_each(ctx, |x| items.push(x))?;
                slot.finished = Some((ctx.time, has));
                has
            }
        };
        slot.finished_items.iter().cloned().for_each(sink);
        Ok(has)
    }
}

// ---------------------------------------------------------------------------------------------
// Windows

/// `window(length, slide)`: at slide times, the union of the parent's batches in `(T - length, T]`.
pub struct Window<P: DStream> {
    parent: P,
    length: Duration,
    slide: Duration,
    name: Option<String>,
    current: Vec<P::Item>,
    kept: VecDeque<(Time, Vec<P::Item>)>,
}
impl<P: DStream> DStream for Window<P>
where
    P::Item: Clone + Serialize + DeserializeOwned,
{
    type Item = P::Item;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        check_window("window", self.parent.slide(ctx.interval), self.length, self.slide)?;
        self.current.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let current = &mut self.current;
        self.parent.feed_each(ctx, |x| current.push(x))
    }
    fn finish_each<G: Sink<P::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let current = &mut self.current;
        if self.parent.finish_each(ctx, |x| current.push(x))? {
            self.kept.push_back((ctx.time, std::mem::take(&mut self.current)));
        }
        let start = ctx.time - self.length;
        while self.kept.front().is_some_and(|(t, _)| *t <= start) {
            self.kept.pop_front();
        }
        if !ctx.is_multiple(self.slide) {
            return Ok(false);
        }
        for (_, b) in &self.kept {
            b.iter().cloned().for_each(|x| sink.push(x));
        }
        Ok(true)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit);
        visit.visit(self);
    }
    fn slide(&self, _batch: Duration) -> Duration {
        self.slide
    }
}

impl<P: DStream> Stateful for Window<P>
where
    P::Item: Serialize + DeserializeOwned,
{
    fn kind(&self) -> &'static str {
        "window"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn set_name(&mut self, name: &str) {
        self.name = Some(name.to_string());
    }
    fn params(&self, _interval: Duration) -> Vec<(String, String)> {
        vec![
            ("length".into(), self.length.to_string()),
            ("slide".into(), self.slide.to_string()),
            ("element".into(), short_type_name::<P::Item>()),
        ]
    }
    fn save(&self, out: &mut Vec<u8>) -> Result<(), StateCodecError> {
        encode_into(&self.kept, out)
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateCodecError> {
        self.kept = decode(bytes)?;
        Ok(())
    }
    fn len(&self) -> usize {
        self.kept.len()
    }
}

/// Spark's rule for windows: length and slide are multiples of the parent's slide.
fn check_window(operator: &'static str, parent: Duration, length: Duration, slide: Duration) -> Result<(), JobError> {
    for (what, value) in [("window length", length), ("slide", slide)] {
        if !value.is_multiple_of(parent) {
            return Err(JobError::Config(ConfigError::WindowNotMultiple { operator, what, value, parent }));
        }
    }
    Ok(())
}

/// What `reduceByKeyAndWindow` with an inverse keeps: each batch's reduced pairs still in reach, and the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReducedWindowState<K: Ord, V> {
    /// Each recent batch's pairs, reduced per key, oldest first.
    pub batches: VecDeque<(Time, Vec<(K, V)>)>,
    /// The last window's value per key.
    pub window: BTreeMap<K, V>,
}

/// `reduceByKeyAndWindow` with an inverse function: the previous window minus the batches that left plus those that entered.
pub struct ReducedWindow<P, K: Ord, V, F, G, H> {
    parent: P,
    reduce: F,
    inverse: G,
    filter: Option<H>,
    length: Duration,
    slide: Duration,
    name: Option<String>,
    reducer: Reducer<K, V>,
    state: ReducedWindowState<K, V>,
    shuffle: Shuffle,
    /// Under Spark's order: the last output's key order (the first of the tables Spark's cogroup fills).
    last_order: Vec<K>,
}

impl<P, K: Ord, V, F, G, H> ReducedWindow<P, K, V, F, G, H> {
    /// This operator's order and partition count taken from `shuffle`.
    pub fn with_shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Its own output order.
    pub fn output_order(self, order: OutputOrder) -> Self {
        let n = self.shuffle.partitions();
        self.with_shuffle(Shuffle::new(order, n))
    }
}

impl<P, K: Ord, V, F, G, H> Partitioned for ReducedWindow<P, K, V, F, G, H> {
    fn shuffle(&self) -> &Shuffle {
        &self.shuffle
    }
}

impl<K, V, P, F, G, H> DStream for ReducedWindow<P, K, V, F, G, H>
where
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
    P: DStream<Item = (K, V)>,
    F: FnMut(V, V) -> V,
    G: FnMut(V, V) -> V,
    H: FnMut(&(K, V)) -> bool,
{
    type Item = (K, V);
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        check_window("reduce_by_key_and_window", self.parent.slide(ctx.interval), self.length, self.slide)?;
        self.reducer.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<Z: Sink<(K, V)>>(&mut self, ctx: &mut BatchContext<'_>, _sink: Z) -> Result<(), JobError> {
        let (r, f) = (&mut self.reducer, &mut self.reduce);
        self.parent.feed_each(ctx, |(k, v)| r.add(k, v, f))
    }
    fn finish_each<Z: Sink<(K, V)>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: Z) -> Result<bool, JobError> {
        let (r, f) = (&mut self.reducer, &mut self.reduce);
        let has = self.parent.finish_each(ctx, |(k, v)| r.add(k, v, f))?;
        let spark = self.shuffle.spark();
        if has {
            // Under Spark's order, each batch as its reduceByKey gives it (the order its pairs enter the cogroup).
            let reduced: Vec<(K, V)> = match spark {
                Some(n) => self.reducer.drain_spark(n, true),
                None => self.reducer.drain().collect(),
            };
            self.state.batches.push_back((ctx.time, reduced));
        }
        self.reducer.clear();
        if !ctx.is_multiple(self.slide) {
            return Ok(false);
        }
        let t = ctx.time;
        let prev = t - self.slide;
        // Per key: values that left the window (reduced), values that entered (reduced).
        let mut left: BTreeMap<K, V> = BTreeMap::new();
        let mut entered: BTreeMap<K, V> = BTreeMap::new();
        // Spark's slices: leaving (T - slide - length, T - length], entering (T - slide, T]; with a slide longer
        // than the window a batch is in both.
        for (bt, kvs) in &self.state.batches {
            let leaves = *bt > prev - self.length && *bt <= t - self.length;
            for (target, yes) in [(&mut left, leaves), (&mut entered, *bt > prev)] {
                if !yes {
                    continue;
                }
                for (k, v) in kvs {
                    match target.get_mut(k) {
                        Some(acc) => *acc = (self.reduce)(acc.clone(), v.clone()),
                        None => {
                            target.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        // Spark's cogroup of (previous window, leaving batches, entering batches) fills each partition's table in
        // that order: the previous output's keys (after a restore, by key), then each batch's, oldest first.
        let insertion: Option<Vec<K>> = spark.map(|_| {
            let mut seen: std::collections::BTreeSet<&K> = std::collections::BTreeSet::new();
            let mut seq: Vec<K> = Vec::new();
            let leaving =
                self.state.batches.iter().filter(|(bt, _)| *bt > prev - self.length && *bt <= t - self.length);
            let entering = self.state.batches.iter().filter(|(bt, _)| *bt > prev);
            let batch_keys = leaving.chain(entering).flat_map(|(_, kvs)| kvs.iter().map(|(k, _)| k));
            for k in self.last_order.iter().chain(self.state.window.keys()).chain(batch_keys) {
                if seen.insert(k) {
                    seq.push(k.clone());
                }
            }
            seq
        });
        let mut next: BTreeMap<K, V> = BTreeMap::new();
        let mut old = std::mem::take(&mut self.state.window);
        // Spark's cogroup of (previous window, leaving, entering): every key of any of the three.
        let mut keys: Vec<K> = old.keys().chain(entered.keys()).chain(left.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let value = match old.remove(&k) {
                // No previous value: the entering values alone (Spark ignores the leaving ones here); with none
                // entering either, the key's value cannot be known and Spark fails the batch.
                None => match entered.remove(&k) {
                    Some(e) => Some(e),
                    None => return Err(JobError::WindowInconsistent { time: t, key: format!("{k:?}") }),
                },
                Some(mut v) => {
                    if let Some(l) = left.remove(&k) {
                        v = (self.inverse)(v, l);
                    }
                    if let Some(e) = entered.remove(&k) {
                        v = (self.reduce)(v, e);
                    }
                    Some(v)
                }
            };
            if let Some(v) = value {
                let kv = (k, v);
                let keep = match &mut self.filter {
                    Some(f) => f(&kv),
                    None => true,
                };
                if keep {
                    next.insert(kv.0, kv.1);
                }
            }
        }
        match (spark, insertion) {
            (Some(n), Some(seq)) => {
                self.last_order.clear();
                for i in spark_order_of(seq.iter(), n, false) {
                    let k = &seq[i as usize];
                    if let Some(v) = next.get(k) {
                        self.last_order.push(k.clone());
                        sink.push((k.clone(), v.clone()));
                    }
                }
            }
            _ => next.iter().map(|(k, v)| (k.clone(), v.clone())).for_each(|x| sink.push(x)),
        }
        self.state.window = next;
        let start = t - self.length;
        while self.state.batches.front().is_some_and(|(bt, _)| *bt <= start) {
            self.state.batches.pop_front();
        }
        Ok(true)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit);
        visit.visit(self);
    }
    fn slide(&self, _batch: Duration) -> Duration {
        self.slide
    }
}

impl<P, K, V, F, G, H> Stateful for ReducedWindow<P, K, V, F, G, H>
where
    K: Ord + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn kind(&self) -> &'static str {
        "reduce_by_key_and_window"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn set_name(&mut self, name: &str) {
        self.name = Some(name.to_string());
    }
    fn params(&self, _interval: Duration) -> Vec<(String, String)> {
        vec![
            ("length".into(), self.length.to_string()),
            ("slide".into(), self.slide.to_string()),
            ("inverse".into(), "true".into()),
            ("filter".into(), self.filter.is_some().to_string()),
            ("key".into(), short_type_name::<K>()),
            ("value".into(), short_type_name::<V>()),
        ]
    }
    fn save(&self, out: &mut Vec<u8>) -> Result<(), StateCodecError> {
        encode_into(&self.state, out)
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateCodecError> {
        self.state = decode(bytes)?;
        Ok(())
    }
    fn len(&self) -> usize {
        self.state.window.len()
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// Adds a value to its key's group, noting a new key's first appearance when `track` is set.
#[inline(always)]
fn group_into<K: Ord + Clone, V>(grouped: &mut BTreeMap<K, Vec<V>>, arrival: &mut Vec<K>, track: bool, k: K, v: V) {
    match grouped.entry(k) {
        std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().push(v),
        std::collections::btree_map::Entry::Vacant(e) => {
            if track {
                arrival.push(e.key().clone());
            }
            e.insert(vec![v]);
        }
    }
}

/// `updateStateByKey`: every batch, `f(new values, old state)` for every key with state or data; `None` deletes.
/// Output: every (key, state) after the batch, sorted by key.
pub struct UpdateStateByKey<P, K, V, S, F> {
    parent: P,
    f: F,
    name: Option<String>,
    state: BTreeMap<K, S>,
    grouped: BTreeMap<K, Vec<V>>,
    shuffle: Shuffle,
    /// Under Spark's order: this batch's keys in order of first appearance, and the last output's key order (Spark
    /// inserts the batch's keys, then the previous state's, into each partition's cogroup table).
    arrival: Vec<K>,
    last_order: Vec<K>,
}

impl<P, K, V, S, F> UpdateStateByKey<P, K, V, S, F> {
    /// This operator's order and partition count taken from `shuffle`.
    pub fn with_shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Its own output order.
    pub fn output_order(self, order: OutputOrder) -> Self {
        let n = self.shuffle.partitions();
        self.with_shuffle(Shuffle::new(order, n))
    }
}

impl<P, K, V, S, F> Partitioned for UpdateStateByKey<P, K, V, S, F> {
    fn shuffle(&self) -> &Shuffle {
        &self.shuffle
    }
}

impl<K, V, S, P, F> DStream for UpdateStateByKey<P, K, V, S, F>
where
    K: Ord + Clone + StableHash + Serialize + DeserializeOwned,
    S: Clone + Serialize + DeserializeOwned,
    P: DStream<Item = (K, V)>,
    F: FnMut(&[V], Option<S>) -> Option<S>,
{
    type Item = (K, S);
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.grouped.clear();
        self.arrival.clear();
        self.parent.begin(ctx)
    }
    fn feed_each<G: Sink<(K, S)>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        let (grouped, arrival) = (&mut self.grouped, &mut self.arrival);
        let spark = self.shuffle.spark().is_some();
        self.parent.feed_each(ctx, |(k, v)| group_into(grouped, arrival, spark, k, v))
    }
    fn finish_each<G: Sink<(K, S)>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let (grouped, arrival) = (&mut self.grouped, &mut self.arrival);
        let spark = self.shuffle.spark();
        if !self.parent.finish_each(ctx, |(k, v)| group_into(grouped, arrival, spark.is_some(), k, v))? {
            // Between the parent's slides: the state stream does not compute (Spark's isTimeValid).
            return Ok(false);
        }
        // Spark's cogroup table of each partition gets the batch's keys (arrival order), then the previous
        // state's (in the last output's order; after a restore, by key).
        let insertion: Option<Vec<K>> = spark.map(|_| {
            let mut seen: std::collections::BTreeSet<&K> = self.arrival.iter().collect();
            let mut seq: Vec<K> = self.arrival.clone();
            for k in self.last_order.iter().chain(self.state.keys()) {
                if seen.insert(k) {
                    seq.push(k.clone());
                }
            }
            seq
        });
        let mut grouped = std::mem::take(&mut self.grouped);
        let mut old = std::mem::take(&mut self.state);
        let mut keys: Vec<K> = old.keys().chain(grouped.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let vals = grouped.remove(&k).unwrap_or_default();
            if let Some(s) = (self.f)(&vals, old.remove(&k)) {
                self.state.insert(k, s);
            }
        }
        match (spark, insertion) {
            (Some(n), Some(seq)) => {
                let order = spark_order_of(seq.iter(), n, false);
                self.last_order.clear();
                for i in order {
                    let k = &seq[i as usize];
                    if let Some(s) = self.state.get(k) {
                        self.last_order.push(k.clone());
                        sink.push((k.clone(), s.clone()));
                    }
                }
            }
            _ => self.state.iter().map(|(k, s)| (k.clone(), s.clone())).for_each(|x| sink.push(x)),
        }
        Ok(true)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit);
        visit.visit(self);
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

impl<P, K, V, S, F> UpdateStateByKey<P, K, V, S, F> {
    /// Current state, sorted by key.
    pub fn state(&self) -> &BTreeMap<K, S> {
        &self.state
    }
}

impl<P, K, V, S, F> Stateful for UpdateStateByKey<P, K, V, S, F>
where
    K: Ord + Serialize + DeserializeOwned,
    S: Serialize + DeserializeOwned,
{
    fn kind(&self) -> &'static str {
        "update_state_by_key"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn set_name(&mut self, name: &str) {
        self.name = Some(name.to_string());
    }
    fn params(&self, _interval: Duration) -> Vec<(String, String)> {
        vec![("key".into(), short_type_name::<K>()), ("state".into(), short_type_name::<S>())]
    }
    fn save(&self, out: &mut Vec<u8>) -> Result<(), StateCodecError> {
        encode_into(&self.state, out)
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateCodecError> {
        self.state = decode(bytes)?;
        Ok(())
    }
    fn len(&self) -> usize {
        self.state.len()
    }
}

/// The function of a `mapWithState` stream in its full form: (batch time, key, value, state) -> optional output.
pub trait MappingFunction<K, V, S> {
    /// The mapped element type.
    type Output;
    /// One call for one record (or one timing-out key, with `value = None`).
    fn call(
        &mut self,
        time: Time,
        key: &K,
        value: Option<V>,
        state: &mut State<'_, S>,
    ) -> Result<Option<Self::Output>, StateError>;

    /// The same call, handing its output (if any) to `sink`; override to build the output in place.
    #[inline(always)]
    fn call_each(
        &mut self,
        time: Time,
        key: &K,
        value: Option<V>,
        state: &mut State<'_, S>,
        sink: &mut impl FnMut(Self::Output),
    ) -> Result<(), StateError> {
        if let Some(m) = self.call(time, key, value, state)? {
            sink(m);
        }
        Ok(())
    }
}

/// Adapter for the full form.
pub struct FullFn<F>(pub F);
impl<K, V, S, M, F> MappingFunction<K, V, S> for FullFn<F>
where
    F: FnMut(Time, &K, Option<V>, &mut State<'_, S>) -> Result<Option<M>, StateError>,
{
    type Output = M;
    #[inline]
    fn call(
        &mut self,
        time: Time,
        key: &K,
        value: Option<V>,
        state: &mut State<'_, S>,
    ) -> Result<Option<M>, StateError> {
        (self.0)(time, key, value, state)
    }
}

/// Adapter for the simple form: one output for every call.
pub struct SimpleFn<F>(pub F);
impl<K, V, S, M, F> MappingFunction<K, V, S> for SimpleFn<F>
where
    F: FnMut(&K, Option<V>, &mut State<'_, S>) -> Result<M, StateError>,
{
    type Output = M;
    #[inline]
    fn call(
        &mut self,
        _time: Time,
        key: &K,
        value: Option<V>,
        state: &mut State<'_, S>,
    ) -> Result<Option<M>, StateError> {
        (self.0)(key, value, state).map(Some)
    }
}

/// A `StateSpec`: the mapping function, initial state and options.
pub struct StateSpec<F, K, S> {
    func: F,
    initial: Vec<(K, S)>,
    options: StateSpecOptions,
    name: Option<String>,
}

impl<K, S> StateSpec<(), K, S> {
    /// A spec from the simple form `(key, value, state) -> output`.
    pub fn function<V, M, G>(f: G) -> StateSpec<SimpleFn<G>, K, S>
    where
        G: FnMut(&K, Option<V>, &mut State<'_, S>) -> Result<M, StateError>,
    {
        StateSpec { func: SimpleFn(f), initial: Vec::new(), options: StateSpecOptions::default(), name: None }
    }
    /// A spec from the full form `(time, key, value, state) -> optional output`.
    pub fn full<V, M, G>(f: G) -> StateSpec<FullFn<G>, K, S>
    where
        G: FnMut(Time, &K, Option<V>, &mut State<'_, S>) -> Result<Option<M>, StateError>,
    {
        StateSpec { func: FullFn(f), initial: Vec::new(), options: StateSpecOptions::default(), name: None }
    }
    /// A spec from any `MappingFunction` value (a nameable type, so the job's type can be written down).
    pub fn with_mapping<F>(f: F) -> StateSpec<F, K, S> {
        StateSpec { func: f, initial: Vec::new(), options: StateSpecOptions::default(), name: None }
    }
}

impl<F, K, S> StateSpec<F, K, S> {
    /// Initial state, stamped with the first batch's time.
    pub fn initial_state(mut self, initial: Vec<(K, S)>) -> Self {
        self.initial = initial;
        self
    }
    /// Number of state partitions.
    pub fn num_partitions(mut self, n: usize) -> Self {
        self.options.num_partitions = n.max(1);
        self
    }
    /// Idle timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.options.timeout = Some(d);
        self
    }
    /// State checkpoint interval (default 10 x the stream's slide); also the SparkCompatible scan interval.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.options.checkpoint_interval = Some(d);
        self
    }
    /// When to scan for timed-out keys.
    pub fn timeout_scan(mut self, scan: TimeoutScan) -> Self {
        self.options.timeout_scan = scan;
        self
    }
    /// Order of outputs within a batch.
    pub fn output_order(mut self, order: OutputOrder) -> Self {
        self.options.output_order = order;
        self
    }
    /// All options at once.
    pub fn options(mut self, options: StateSpecOptions) -> Self {
        self.options = options;
        self
    }
    /// Names the operator, so that its checkpointed state follows it when the graph changes shape.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// Checkpointable content of a `mapWithState` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapWithStateCheckpoint<K, S> {
    /// Whether the initial state has been applied.
    pub initialized: bool,
    /// The state.
    pub state: StateSnapshot<K, S>,
}

/// A borrowed view of a `mapWithState` stream's checkpointable content; serialises as `MapWithStateCheckpoint`
/// (entries unsorted), without copying the state.
#[derive(Serialize)]
#[serde(rename = "MapWithStateCheckpoint")]
pub struct MapWithStateCheckpointRef<'a, K: Serialize + Hash + Eq + StableHash, S: Serialize> {
    /// Whether the initial state has been applied.
    pub initialized: bool,
    /// The state.
    pub state: crate::state::StateSnapshotRef<'a, K, S>,
}

/// `mapWithState`: one call per record in order, state threaded between calls, timeouts scanned after the data.
pub struct MapWithState<P, F, K, S, M> {
    parent: P,
    func: F,
    initial: Vec<(K, S)>,
    options: StateSpecOptions,
    name: Option<String>,
    initialized: bool,
    map: StateMap<K, S>,
    expired: Vec<(Time, K, ())>,
    /// Keys that timed out in the last batch computed.
    timed_out: u64,
    /// Under Spark's output order over several partitions: the batch's outputs with their state partition, handed
    /// on at the batch's end.
    tagged: Vec<(u32, M)>,
}

/// The per-record step of [`MapWithState`], borrowing its parts.
struct MwsStep<'a, F, K, S> {
    time: Time,
    has_timeout: bool,
    map: &'a mut StateMap<K, S>,
    func: &'a mut F,
    failure: Option<JobError>,
}

impl<'a, F, K, S> MwsStep<'a, F, K, S>
where
    K: Hash + Eq + Clone + StableHash + fmt::Debug,
{
    fn new(time: Time, options: &StateSpecOptions, map: &'a mut StateMap<K, S>, func: &'a mut F) -> Self {
        MwsStep { time, has_timeout: options.timeout.is_some(), map, func, failure: None }
    }

    /// Calls the function for one record; its output goes to `emit` with the key's state partition.
    #[inline(always)]
    fn one<V, M>(&mut self, k: K, v: V, emit: &mut impl FnMut(u32, M))
    where
        F: MappingFunction<K, V, S, Output = M>,
    {
        if self.failure.is_some() {
            return;
        }
        let time = self.time;
        let n = self.map.parts.len();
        let p = if n == 1 { 0 } else { crate::jvm::partition_of(&k, n) };
        let part = &mut self.map.parts[p];
        let mut out = |m: M| emit(p as u32, m);
        let r = match part.get_mut(&k) {
            Some(slot) => {
                let mut st = State::lend(&mut slot.value);
                let r = self.func.call_each(time, &k, Some(v), &mut st, &mut out);
                let (removed, touched) = (st.is_removed(), st.is_updated() || self.has_timeout);
                if removed {
                    part.remove(&k);
                } else if touched {
                    slot.updated_at = time;
                }
                r
            }
            None => {
                let mut st = State::wrap(None, false);
                let r = self.func.call_each(time, &k, Some(v), &mut st, &mut out);
                if let Some(s) = st.into_owned() {
                    part.insert(k.clone(), Slot { value: s, updated_at: time });
                }
                r
            }
        };
        if let Err(error) = r {
            self.failure = Some(JobError::State { time, key: format!("{k:?}"), error });
        }
    }
}

/// The sink `map_with_state` hands its parent: one mapping-function call per element, always inlined into the
/// parent's record loop.
struct MwsFeed<'s, 'a, F, K, S, E> {
    step: &'s mut MwsStep<'a, F, K, S>,
    emit: E,
}

impl<F, K, V, S, M, E> Sink<(K, V)> for MwsFeed<'_, '_, F, K, S, E>
where
    K: Hash + Eq + Clone + StableHash + fmt::Debug,
    F: MappingFunction<K, V, S, Output = M>,
    E: FnMut(u32, M),
{
    #[inline(always)]
    fn push(&mut self, (k, v): (K, V)) {
        self.step.one(k, v, &mut self.emit)
    }
}

impl<P: DStream, F, K, S, M> MapWithState<P, F, K, S, M> {
    /// The state checkpoint interval for a given batch interval (by default 10 x the stream's slide, which is the
    /// batch interval unless a window comes before).
    pub fn checkpoint_interval(&self, batch: Duration) -> Duration {
        self.options.checkpoint_interval.unwrap_or(self.parent.slide(batch) * 10)
    }
}

impl<P, F, K, S, M> MapWithState<P, F, K, S, M> {
    /// True if outputs are grouped by state partition at the batch's end (Spark's order over several partitions).
    fn by_partition(&self) -> bool {
        self.options.output_order == OutputOrder::SparkPartitions && self.map.parts.len() > 1
    }
}

impl<P, F, K, V, S, M> DStream for MapWithState<P, F, K, S, M>
where
    P: DStream<Item = (K, V)>,
    F: MappingFunction<K, V, S, Output = M>,
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug + Serialize + DeserializeOwned,
    S: Serialize + DeserializeOwned,
{
    type Item = M;

    /// Checks the checkpoint interval against the slide, applies the initial state (at the first slide) and
    /// forgets any unfinished batch.
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let slide = self.parent.slide(ctx.interval);
        if let Some(interval) = self.options.checkpoint_interval {
            check_checkpoint_interval("map_with_state", interval, slide)?;
        }
        // Spark stamps the initial state with the first time the state stream computes: its first slide.
        if !self.initialized && ctx.is_multiple(slide) {
            for (k, s) in self.initial.drain(..) {
                self.map.insert(k, s, ctx.time);
            }
            self.initialized = true;
        }
        self.tagged.clear();
        self.parent.begin(ctx)
    }

    /// Runs the mapping function over the data records of this part.
    #[inline]
    fn feed_each<G: Sink<M>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<(), JobError> {
        let by_partition = self.by_partition();
        let mut step = MwsStep::new(ctx.time, &self.options, &mut self.map, &mut self.func);
        if by_partition {
            let tagged = &mut self.tagged;
            self.parent.feed_each(ctx, MwsFeed { step: &mut step, emit: |p, m| tagged.push((p, m)) })?;
        } else {
            self.parent.feed_each(ctx, MwsFeed { step: &mut step, emit: |_, m| sink.push(m) })?;
        }
        step.failure.map_or(Ok(()), Err)
    }

    /// The parent's last elements, then (under Spark's order) the outputs grouped by state partition, then the
    /// timed-out keys.
    fn finish_each<G: Sink<M>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let time = ctx.time;
        self.timed_out = 0;
        let by_partition = self.by_partition();
        let mut step = MwsStep::new(time, &self.options, &mut self.map, &mut self.func);
        let has = if by_partition {
            let tagged = &mut self.tagged;
            self.parent.finish_each(ctx, MwsFeed { step: &mut step, emit: |p, m| tagged.push((p, m)) })?
        } else {
            self.parent.finish_each(ctx, MwsFeed { step: &mut step, emit: |_, m| sink.push(m) })?
        };
        if let Some(e) = step.failure {
            return Err(e);
        }
        // Between the parent's slides (downstream of a window) the stream does not compute: no timeout scan.
        if !has {
            return Ok(false);
        }
        let scan = match self.options.timeout {
            None => None,
            Some(timeout) => match self.options.timeout_scan {
                TimeoutScan::EveryBatch => Some(time - timeout),
                TimeoutScan::SparkCompatible => ctx
                    .is_multiple(self.options.checkpoint_interval.unwrap_or(self.parent.slide(ctx.interval) * 10))
                    .then_some(time - timeout),
            },
        };
        // Stable: arrival order within each partition.
        self.tagged.sort_by_key(|(p, _)| *p);
        let spark_order = self.options.output_order == OutputOrder::SparkPartitions;
        let mut tagged = std::mem::take(&mut self.tagged);
        let mut data = tagged.drain(..).peekable();
        let map = &mut self.map;
        for p in 0..map.parts.len() {
            // Spark concatenates its state partitions; each one holds its data outputs, then its timed-out keys.
            while let Some((_, m)) = data.next_if(|(q, _)| *q as usize == p) {
                sink.push(m);
            }
            let Some(threshold) = scan else { continue };
            self.expired.clear();
            self.expired.extend(
                map.parts[p]
                    .iter()
                    .filter(|(_, s)| s.updated_at < threshold)
                    .map(|(k, s)| (s.updated_at, k.clone(), ())),
            );
            if spark_order {
                // Spark's state map lists older generations (batches) first, each in its table's order.
                spark_state_order(&mut self.expired);
            } else {
                self.expired.sort_by(|a, b| a.1.cmp(&b.1));
            }
            self.timed_out += self.expired.len() as u64;
            for (_, k, ()) in self.expired.drain(..) {
                let value = map.parts[p].remove(&k).map(|s| s.value);
                let mut st = State::wrap(value, true);
                match self.func.call(time, &k, None, &mut st) {
                    Ok(Some(m)) => sink.push(m),
                    Ok(None) => {}
                    Err(error) => return Err(JobError::State { time, key: format!("{k:?}"), error }),
                }
            }
        }
        data.for_each(|(_, m)| sink.push(m));
        self.tagged = tagged;
        Ok(true)
    }

    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit);
        visit.visit(self);
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.parent.slide(batch)
    }
}

impl<P, F, K, S, M> Stateful for MapWithState<P, F, K, S, M>
where
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug + Serialize + DeserializeOwned,
    S: Serialize + DeserializeOwned,
{
    fn kind(&self) -> &'static str {
        "map_with_state"
    }
    fn timed_out(&self) -> u64 {
        self.timed_out
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn set_name(&mut self, name: &str) {
        self.name = Some(name.to_string());
    }
    /// Only what changes the state counts: the timeout and, with one, what decides when keys expire. The number
    /// of state partitions does not (a restored state is partitioned anew).
    fn params(&self, interval: Duration) -> Vec<(String, String)> {
        let o = &self.options;
        let mut p = vec![
            ("key".to_string(), short_type_name::<K>()),
            ("state".to_string(), short_type_name::<S>()),
            ("timeout".to_string(), o.timeout.map_or("none".to_string(), |d| d.to_string())),
        ];
        if o.timeout.is_some() {
            p.push(("batch_interval".to_string(), interval.to_string()));
            p.push((
                "checkpoint_interval".to_string(),
                o.checkpoint_interval.map_or("default".to_string(), |d| d.to_string()),
            ));
            p.push(("timeout_scan".to_string(), format!("{:?}", o.timeout_scan)));
        }
        p
    }
    fn save(&self, out: &mut Vec<u8>) -> Result<(), StateCodecError> {
        encode_into(&self.checkpoint_ref(), out)
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateCodecError> {
        let cp: MapWithStateCheckpoint<K, S> = decode(bytes)?;
        self.restore(cp)
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

impl<P, F, K, S, M> MapWithState<P, F, K, S, M>
where
    K: Hash + Eq + Ord + Clone + StableHash,
{
    /// The live state.
    pub fn state(&self) -> &StateMap<K, S> {
        &self.map
    }
    /// Checkpointable content, entries in the state's own order (as a checkpoint file holds them).
    pub fn checkpoint(&self) -> MapWithStateCheckpoint<K, S>
    where
        S: Clone,
    {
        MapWithStateCheckpoint { initialized: self.initialized, state: self.map.snapshot_in_order() }
    }
    /// Checkpointable content, borrowed: serialises as `checkpoint()` does, without copying or sorting.
    pub fn checkpoint_ref(&self) -> MapWithStateCheckpointRef<'_, K, S>
    where
        K: Serialize,
        S: Serialize,
    {
        MapWithStateCheckpointRef { initialized: self.initialized, state: self.map.snapshot_ref() }
    }
    /// Replaces the state with a checkpoint's; the partition count stays the spec's. A snapshot listing a key
    /// twice is refused (the state is then left as it was).
    pub fn restore(&mut self, cp: MapWithStateCheckpoint<K, S>) -> Result<(), StateCodecError>
    where
        K: fmt::Debug,
    {
        self.map = StateMap::from_entries(self.options.num_partitions, cp.state.entries)
            .map_err(|k| StateCodecError(format!("key {k:?} appears twice in the snapshot")))?;
        self.initialized = cp.initialized;
        if cp.initialized {
            self.initial.clear();
        }
        Ok(())
    }
    /// Shares this stream between its mapped output and `stateSnapshots()`.
    #[allow(clippy::type_complexity)]
    pub fn with_snapshots(self) -> (Shared<Self>, Snapshots<Self>)
    where
        Self: DStream,
    {
        let shared = Shared::new(self);
        (shared.consumer(), Snapshots { inner: shared.consumer() })
    }
}

/// Spark's `DStream.validateAtStart` for a checkpoint interval: at least the slide, and a multiple of it.
fn check_checkpoint_interval(operator: &'static str, interval: Duration, slide: Duration) -> Result<(), JobError> {
    let problem = if interval < slide {
        "lower than"
    } else if !interval.is_multiple_of(slide) {
        "not a multiple of"
    } else {
        return Ok(());
    };
    Err(JobError::Config(ConfigError::CheckpointInterval { operator, interval, slide, problem }))
}

/// What a `map_with_state` stream's state looks like from outside: for [`Snapshots`].
pub trait KeyedState {
    /// Key type.
    type Key;
    /// State type.
    type State;
    /// Every live (key, state), sorted by key.
    fn sorted_states(&self) -> Vec<(Self::Key, Self::State)>;
    /// Every live (key, state) in the stream's output order: sorted by key, or Spark's state map order.
    fn ordered_states(&self) -> Vec<(Self::Key, Self::State)> {
        self.sorted_states()
    }
}

impl<P, F, K, S, M> KeyedState for MapWithState<P, F, K, S, M>
where
    K: Hash + Eq + Ord + Clone + StableHash,
    S: Clone,
{
    type Key = K;
    type State = S;
    fn sorted_states(&self) -> Vec<(K, S)> {
        self.map.sorted_states()
    }
    /// Under Spark's order: partition by partition, each as Spark's state map lists it.
    fn ordered_states(&self) -> Vec<(K, S)> {
        if self.options.output_order != OutputOrder::SparkPartitions {
            return self.map.sorted_states();
        }
        let mut all = Vec::with_capacity(self.map.len());
        for part in &self.map.parts {
            let mut items: Vec<(Time, K, S)> =
                part.iter().map(|(k, s)| (s.updated_at, k.clone(), s.value.clone())).collect();
            spark_state_order(&mut items);
            all.extend(items.into_iter().map(|(_, k, s)| (k, s)));
        }
        all
    }
}

/// `stateSnapshots()`: every live (key, state) after the batch, sorted by key.
pub struct Snapshots<D: DStream> {
    inner: Shared<D>,
}

impl<D: DStream> Snapshots<D> {
    /// The snapshots of a shared `map_with_state` stream.
    pub fn of(inner: Shared<D>) -> Self {
        Snapshots { inner }
    }
}

impl<D> DStream for Snapshots<D>
where
    D: DStream + KeyedState,
    D::Item: Clone,
{
    type Item = (D::Key, D::State);
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.inner.begin(ctx)
    }
    fn feed_each<G: Sink<Self::Item>>(&mut self, ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        self.inner.feed_each(ctx, drop)
    }
    fn finish_each<G: Sink<Self::Item>>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        if !self.inner.finish_each(ctx, drop)? {
            return Ok(false);
        }
        self.inner.with(|d| d.ordered_states()).into_iter().for_each(|x| sink.push(x));
        Ok(true)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.inner.visit_state(visit)
    }
    fn slide(&self, batch: Duration) -> Duration {
        self.inner.slide(batch)
    }
}

// ---------------------------------------------------------------------------------------------
// Output operations

/// `print(num)`: Spark's header and the first `num` elements of every batch with output; only the first
/// `num + 1` elements of a batch are kept (one more tells whether to print `...`).
pub struct Print<P: DStream> {
    parent: P,
    num: usize,
    buf: Vec<P::Item>,
}
impl<P: DStream> OutputOp for Print<P>
where
    P::Item: JvmDisplay,
{
    fn name(&self) -> &'static str {
        "print"
    }
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.buf.clear();
        self.parent.begin(ctx)
    }
    #[inline]
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let (buf, keep) = (&mut self.buf, self.num.saturating_add(1));
        self.parent.feed_each(ctx, |x| {
            if buf.len() < keep {
                buf.push(x)
            }
        })
    }
    fn finish(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let (buf, keep) = (&mut self.buf, self.num.saturating_add(1));
        let has = self.parent.finish_each(ctx, |x| {
            if buf.len() < keep {
                buf.push(x)
            }
        })?;
        if has {
            write_batch(ctx.printed, ctx.time, &self.buf, self.num);
        }
        self.buf.clear();
        Ok(())
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
}

/// `foreachRDD`: calls a function with each batch's elements (in batches with output); an error fails the batch.
pub struct ForEachBatch<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}

/// Why a [`ForEachBatch`] function failed.
pub type OutputError = Box<dyn std::error::Error + Send + Sync>;

/// A function called with each batch's elements.
pub trait BatchFn<T> {
    /// Called once per batch with output.
    fn call_batch(&mut self, time: Time, items: &[T]) -> Result<(), OutputError>;
}

/// A batch function that cannot fail.
pub struct Infallible<F>(pub F);
impl<T, F: FnMut(Time, &[T])> BatchFn<T> for Infallible<F> {
    fn call_batch(&mut self, time: Time, items: &[T]) -> Result<(), OutputError> {
        (self.0)(time, items);
        Ok(())
    }
}

/// A batch function that can fail.
pub struct Fallible<F>(pub F);
impl<T, F: FnMut(Time, &[T]) -> Result<(), OutputError>> BatchFn<T> for Fallible<F> {
    fn call_batch(&mut self, time: Time, items: &[T]) -> Result<(), OutputError> {
        (self.0)(time, items)
    }
}

impl<P: DStream, F: BatchFn<P::Item>> OutputOp for ForEachBatch<P, F> {
    fn name(&self) -> &'static str {
        "foreach_batch"
    }
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.buf.clear();
        self.parent.begin(ctx)
    }
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let buf = &mut self.buf;
        self.parent.feed_each(ctx, |x| buf.push(x))
    }
    fn finish(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let buf = &mut self.buf;
        let has = self.parent.finish_each(ctx, |x| buf.push(x))?;
        let r = if has { self.f.call_batch(ctx.time, &self.buf) } else { Ok(()) };
        self.buf.clear();
        r.map_err(|e| JobError::Output { time: ctx.time, reason: e.to_string() })
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
}

// ---------------------------------------------------------------------------------------------
// Builders

/// The operators, as methods on every stream (each consumes the stream; a stream read twice is [`Shared`]).
pub trait DStreamExt: DStream + Sized {
    /// `map`.
    fn map<U, F: FnMut(Self::Item) -> U>(self, f: F) -> Map<Self, F> {
        Map { parent: self, f }
    }
    /// `flatMap`.
    fn flat_map<I: IntoIterator, F: FnMut(Self::Item) -> I>(self, f: F) -> FlatMap<Self, F> {
        FlatMap { parent: self, f }
    }
    /// `filter`.
    fn filter<F: FnMut(&Self::Item) -> bool>(self, f: F) -> Filter<Self, F> {
        Filter { parent: self, f }
    }
    /// `mapValues`.
    fn map_values<K, V, U, F: FnMut(V) -> U>(self, f: F) -> MapValues<Self, F>
    where
        Self: DStream<Item = (K, V)>,
    {
        MapValues { parent: self, f }
    }
    /// `union`.
    fn union<B: DStream<Item = Self::Item>>(self, other: B) -> Union<Self, B> {
        Union { a: self, b: other, buf: Vec::new() }
    }
    /// `count`.
    fn count(self) -> Count<Self> {
        Count { parent: self, n: 0 }
    }
    /// `transform((rdd, time) => ...)`: `f` turns each batch's elements into the batch's output.
    fn transform<U, F: FnMut(Time, Vec<Self::Item>) -> Vec<U>>(self, f: F) -> Transform<Self, F> {
        Transform { parent: self, f, buf: Vec::new() }
    }
    /// `transformWith(other, (rdd1, rdd2, time) => ...)`: `f` turns each batch's elements of both streams (same
    /// slide) into the batch's output.
    fn transform_with<B, U, F>(self, other: B, f: F) -> TransformWith<Self, B, F>
    where
        B: DStream,
        F: FnMut(Time, Vec<Self::Item>, Vec<B::Item>) -> Vec<U>,
    {
        TransformWith { a: self, b: other, f, left: Vec::new(), right: Vec::new() }
    }
    /// `repartition(n)`: the same elements (see [`Repartition`] for their order under Spark's).
    fn repartition(self, n: usize) -> Repartition<Self> {
        Repartition { parent: self, shuffle: Shuffle::new(OutputOrder::Arrival, n), spark: None, buf: Vec::new() }
    }
    /// `reduce`: one element per batch with elements, folded with `f` in arrival order.
    fn reduce<F: FnMut(Self::Item, Self::Item) -> Self::Item>(self, f: F) -> Reduce<Self, F> {
        Reduce { parent: self, f, acc: None }
    }
    /// `countByValue`: (element, count) per batch, in order of first appearance.
    fn count_by_value(self) -> CountByValue<Self>
    where
        Self::Item: Hash + Eq + Clone + StableHash,
    {
        let one: fn(Self::Item) -> (Self::Item, i64) = with_one;
        self.map(one).reduce_by_key(add_i64 as fn(i64, i64) -> i64)
    }
    /// `groupByKey`: (key, values) per batch, keys in order of first appearance, values in arrival order.
    fn group_by_key<K, V>(self) -> GroupByKey<Self, K, V>
    where
        Self: DStream<Item = (K, V)>,
    {
        GroupByKey {
            parent: self,
            index: FxHashMap::default(),
            groups: Vec::new(),
            shuffle: Shuffle::default(),
            partitioned_parent: false,
        }
    }
    /// `cogroup` with another keyed stream of the same slide: (key, (values here, values there)) per batch.
    fn cogroup<K, V, W, B>(self, other: B) -> CoGroup<Self, B, K, V, W, CoGroupAll>
    where
        Self: DStream<Item = (K, V)>,
        B: DStream<Item = (K, W)>,
    {
        co_group(self, other)
    }
    /// `join`: (key, (v, w)) for every pair of values of a key in both streams, per batch.
    fn join<K, V, W, B>(self, other: B) -> CoGroup<Self, B, K, V, W, InnerJoin>
    where
        Self: DStream<Item = (K, V)>,
        B: DStream<Item = (K, W)>,
    {
        co_group(self, other)
    }
    /// `leftOuterJoin`: as `join`, with (v, None) for keys only in this stream.
    fn left_outer_join<K, V, W, B>(self, other: B) -> CoGroup<Self, B, K, V, W, LeftOuterJoin>
    where
        Self: DStream<Item = (K, V)>,
        B: DStream<Item = (K, W)>,
    {
        co_group(self, other)
    }
    /// `rightOuterJoin`: as `join`, with (None, w) for keys only in `other`.
    fn right_outer_join<K, V, W, B>(self, other: B) -> CoGroup<Self, B, K, V, W, RightOuterJoin>
    where
        Self: DStream<Item = (K, V)>,
        B: DStream<Item = (K, W)>,
    {
        co_group(self, other)
    }
    /// `fullOuterJoin`: as `join`, with (v, None) or (None, w) for keys in one stream only.
    fn full_outer_join<K, V, W, B>(self, other: B) -> CoGroup<Self, B, K, V, W, FullOuterJoin>
    where
        Self: DStream<Item = (K, V)>,
        B: DStream<Item = (K, W)>,
    {
        co_group(self, other)
    }
    /// `reduceByWindow(f, length, slide)` without an inverse: Spark's `reduce(f).window(length, slide).reduce(f)`.
    fn reduce_by_window<F>(self, f: F, length: Duration, slide: Duration) -> ReduceByWindow<Self, F>
    where
        F: FnMut(Self::Item, Self::Item) -> Self::Item + Clone,
        Self::Item: Clone + Serialize + DeserializeOwned,
    {
        let g = f.clone();
        self.reduce(f).window(length, slide).reduce(g)
    }
    /// `reduceByWindow(f, inverse, length, slide)`: see [`ReducedByWindow`].
    fn reduce_by_window_inv<F, G>(
        self,
        f: F,
        inverse: G,
        length: Duration,
        slide: Duration,
    ) -> ReducedByWindow<Self, F, G>
    where
        F: FnMut(Self::Item, Self::Item) -> Self::Item,
        G: FnMut(Self::Item, Self::Item) -> Self::Item,
        Self::Item: Clone + Serialize + DeserializeOwned,
    {
        let key: fn(Self::Item) -> ((), Self::Item) = keyed_by_unit;
        let unkey: fn(((), Self::Item)) -> Self::Item = unkeyed;
        self.map(key).reduce_by_key_and_window_inv(f, inverse, length, slide, None).map(unkey)
    }
    /// `countByWindow(length, slide)`: the number of elements in the window, at each slide (see [`CountByWindow`]:
    /// nothing until a first element has entered, 0 once all have left).
    fn count_by_window(self, length: Duration, slide: Duration) -> CountByWindow<Self> {
        let one: fn(Self::Item) -> i64 = to_one;
        self.map(one).reduce_by_window_inv(
            add_i64 as fn(i64, i64) -> i64,
            sub_i64 as fn(i64, i64) -> i64,
            length,
            slide,
        )
    }
    /// `countByValueAndWindow(length, slide)`: (element, count in the window), sorted, counts of 0 dropped.
    fn count_by_value_and_window(self, length: Duration, slide: Duration) -> CountByValueAndWindow<Self>
    where
        Self::Item: Hash + Eq + Ord + Clone + StableHash + fmt::Debug + Serialize + DeserializeOwned,
    {
        let one: fn(Self::Item) -> (Self::Item, i64) = with_one;
        let keep: fn(&(Self::Item, i64)) -> bool = nonzero;
        self.map(one).reduce_by_key_and_window_inv(
            add_i64 as fn(i64, i64) -> i64,
            sub_i64 as fn(i64, i64) -> i64,
            length,
            slide,
            Some(keep),
        )
    }
    /// `groupByKeyAndWindow(length, slide)`: (key, its values in the window, oldest first), at each slide.
    fn group_by_key_and_window<K, V>(self, length: Duration, slide: Duration) -> GroupByKeyAndWindow<Self, K, V>
    where
        Self: DStream<Item = (K, V)>,
        K: Hash + Eq + Clone + StableHash + Serialize + DeserializeOwned,
        V: Clone + Serialize + DeserializeOwned,
    {
        group_by_key_and_window_with(self, length, slide, Shuffle::default())
    }
    /// `reduceByKey`.
    fn reduce_by_key<K, V, F: FnMut(V, V) -> V>(self, f: F) -> ReduceByKey<Self, K, V, F>
    where
        Self: DStream<Item = (K, V)>,
    {
        ReduceByKey {
            parent: self,
            f,
            reducer: Reducer::default(),
            shuffle: Shuffle::default(),
            partitioned_parent: false,
        }
    }
    /// `window(length, slide)`.
    fn window(self, length: Duration, slide: Duration) -> Window<Self> {
        Window { parent: self, length, slide, name: None, current: Vec::new(), kept: VecDeque::new() }
    }
    /// `reduceByKeyAndWindow` without an inverse: reduce per batch, window, reduce again.
    #[allow(clippy::type_complexity)]
    fn reduce_by_key_and_window<K, V, F>(
        self,
        f: F,
        length: Duration,
        slide: Duration,
    ) -> ReduceByKey<Window<ReduceByKey<Self, K, V, F>>, K, V, F>
    where
        Self: DStream<Item = (K, V)>,
        F: FnMut(V, V) -> V + Clone,
        K: Hash + Eq + Clone + StableHash + Serialize + DeserializeOwned,
        V: Clone + Serialize + DeserializeOwned,
    {
        let g = f.clone();
        let shuffle = Shuffle::default();
        reduce_by_key_and_window_with(self, f, g, length, slide, shuffle)
    }
    /// `reduceByKeyAndWindow` with an inverse function and an optional filter; output sorted by key.
    #[allow(clippy::type_complexity)]
    fn reduce_by_key_and_window_inv<K, V, F, G, H>(
        self,
        reduce: F,
        inverse: G,
        length: Duration,
        slide: Duration,
        filter: Option<H>,
    ) -> ReducedWindow<Self, K, V, F, G, H>
    where
        Self: DStream<Item = (K, V)>,
        K: Ord,
        H: FnMut(&(K, V)) -> bool,
    {
        ReducedWindow {
            parent: self,
            reduce,
            inverse,
            filter,
            length,
            slide,
            name: None,
            reducer: Reducer::default(),
            state: ReducedWindowState { batches: VecDeque::new(), window: BTreeMap::new() },
            shuffle: Shuffle::default(),
            last_order: Vec::new(),
        }
    }
    /// `updateStateByKey`.
    fn update_state_by_key<K, V, S, F>(self, f: F) -> UpdateStateByKey<Self, K, V, S, F>
    where
        Self: DStream<Item = (K, V)>,
        F: FnMut(&[V], Option<S>) -> Option<S>,
    {
        UpdateStateByKey {
            parent: self,
            f,
            name: None,
            state: BTreeMap::new(),
            grouped: BTreeMap::new(),
            shuffle: Shuffle::default(),
            arrival: Vec::new(),
            last_order: Vec::new(),
        }
    }
    /// `updateStateByKey(f, partitioner, initialRDD)`: as [`update_state_by_key`](Self::update_state_by_key), the
    /// first batch that computes seeing `initial` as the previous state (a key listed twice keeps its last
    /// state); a state restored from a checkpoint replaces it.
    fn update_state_by_key_with_initial<K, V, S, F>(
        self,
        f: F,
        initial: Vec<(K, S)>,
    ) -> UpdateStateByKey<Self, K, V, S, F>
    where
        Self: DStream<Item = (K, V)>,
        K: Ord + Clone,
        F: FnMut(&[V], Option<S>) -> Option<S>,
    {
        // Spark's first cogroup table gets the initial state's keys in the order given (after the batch's).
        let mut last_order: Vec<K> = Vec::new();
        let mut state = BTreeMap::new();
        for (k, s) in initial {
            if state.insert(k.clone(), s).is_none() {
                last_order.push(k);
            }
        }
        UpdateStateByKey {
            parent: self,
            f,
            name: None,
            state,
            grouped: BTreeMap::new(),
            shuffle: Shuffle::default(),
            arrival: Vec::new(),
            last_order,
        }
    }
    /// `mapWithState`.
    fn map_with_state<K, V, S, F>(self, spec: StateSpec<F, K, S>) -> MapWithState<Self, F, K, S, F::Output>
    where
        Self: DStream<Item = (K, V)>,
        K: Hash + Eq + StableHash,
        F: MappingFunction<K, V, S>,
    {
        let n = spec.options.num_partitions;
        MapWithState {
            parent: self,
            func: spec.func,
            initial: spec.initial,
            options: spec.options,
            name: spec.name,
            initialized: false,
            map: StateMap::new(n),
            expired: Vec::new(),
            timed_out: 0,
            tagged: Vec::new(),
        }
    }
    /// Shares this stream between several consumers (see [`Shared`]).
    fn shared(self) -> Shared<Self> {
        // The handle returned is the stream's first consumer; each `consumer()` of it adds one.
        Shared::new(self).consumer()
    }
    /// `print(num)`.
    fn print(self, num: usize) -> Print<Self>
    where
        Self::Item: JvmDisplay,
    {
        Print { parent: self, num, buf: Vec::new() }
    }
    /// `foreachRDD`.
    fn foreach_batch<F: FnMut(Time, &[Self::Item])>(self, f: F) -> ForEachBatch<Self, Infallible<F>> {
        ForEachBatch { parent: self, f: Infallible(f), buf: Vec::new() }
    }
    /// `foreachRDD` with a function that can fail: an error fails the batch (the job stops, nothing is lost).
    fn try_foreach_batch<F>(self, f: F) -> ForEachBatch<Self, Fallible<F>>
    where
        F: FnMut(Time, &[Self::Item]) -> Result<(), OutputError>,
    {
        ForEachBatch { parent: self, f: Fallible(f), buf: Vec::new() }
    }
}

impl<D: DStream> DStreamExt for D {}

fn co_group<A, B, K, V, W, J>(a: A, b: B) -> CoGroup<A, B, K, V, W, J> {
    CoGroup {
        a,
        b,
        index: FxHashMap::default(),
        groups: Vec::new(),
        right: Vec::new(),
        kind: std::marker::PhantomData,
        shuffle: Shuffle::default(),
    }
}
