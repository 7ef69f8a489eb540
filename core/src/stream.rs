//! DStreams: a job is an ordinary value built from these operators, pulled once per batch.

use crate::jvm::{JvmDisplay, StableHash};
use crate::print::write_batch;
use crate::record::{RecordRef, RecordSource, Run, SourceError};
use crate::state::{OutputOrder, Slot, State, StateError, StateMap, StateSnapshot, StateSpecOptions, TimeoutScan};
use crate::time::{Duration, Time};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::rc::Rc;

/// A record that could not be parsed, with where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Malformed {
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed record at partition {} offset {}: {}", self.partition, self.offset, self.reason)
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
    /// A stream was configured against Spark's rules (e.g. a window not a multiple of the batch interval).
    #[error("invalid stream configuration: {0}")]
    Config(String),
    /// The batch's records could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Everything an operator may see of one batch.
pub struct BatchContext<'a> {
    /// The batch's time (the end of the interval it covers).
    pub time: Time,
    /// The grid origin: batch k is at `zero + k * interval`.
    pub zero: Time,
    /// The batch interval.
    pub interval: Duration,
    /// The batch's input records (or one part of them).
    pub input: &'a dyn RecordSource,
    /// Malformed records found in this batch.
    pub malformed: &'a mut Vec<Malformed>,
    /// Text printed by `print` output operations.
    pub printed: &'a mut String,
}

impl fmt::Debug for BatchContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchContext")
            .field("time", &self.time)
            .field("zero", &self.zero)
            .field("interval", &self.interval)
            .field("input_len_hint", &self.input.len_hint())
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

/// A discretized stream: per batch it appends its elements to `out` and says whether it has output at this time.
pub trait DStream {
    /// Element type.
    type Item;
    /// Computes this batch's elements; `Ok(false)` means no output at this time (a window between slides).
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<Self::Item>) -> Result<bool, JobError>;

    /// Computes this batch's elements into `sink` one by one; streams that can, do it without a buffer.
    fn compute_each<G: FnMut(Self::Item)>(&mut self, ctx: &mut BatchContext<'_>, sink: G) -> Result<bool, JobError>
    where
        Self: Sized,
    {
        let mut buf = Vec::new();
        let has = self.compute(ctx, &mut buf)?;
        buf.into_iter().for_each(sink);
        Ok(has)
    }
}

/// An output operation, run once per batch in registration order.
pub trait OutputOp {
    /// Runs the operation for the batch in `ctx`.
    fn run(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;
}

/// A whole streaming job: what runs on each batch.
pub trait Job {
    /// Runs every output operation for one batch.
    fn run_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError>;

    /// True if the job takes a batch part by part (`begin_batch`, `feed`..., `finish_batch`); otherwise the engine
    /// gathers the parts and calls `run_batch` once, at the end.
    fn incremental(&self) -> bool {
        false
    }
    /// Starts a batch (`ctx.input` is empty); only called if `incremental()`.
    fn begin_batch(&mut self, _ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
    /// Processes one part of the batch's input (`ctx.input`), after every earlier part in (partition, offset)
    /// order; only called if `incremental()`.
    fn feed(&mut self, _ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
    /// Ends the batch (`ctx.input` is empty): what must see the whole batch, then the output operations; only
    /// called if `incremental()`.
    fn finish_batch(&mut self, _ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
}

/// A job made of output operations, run in the order they were added.
#[derive(Default)]
pub struct Graph {
    ops: Vec<Box<dyn OutputOp>>,
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
}

impl Job for Graph {
    fn run_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        for op in &mut self.ops {
            op.run(ctx)?;
        }
        Ok(())
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
    policy: MalformedPolicy,
}

/// The input stream of a job, with a parser from records to elements.
pub fn input<F: RecordParser>(parse: F, policy: MalformedPolicy) -> Input<F> {
    Input { parse, policy }
}

impl<F: RecordParser> DStream for Input<F> {
    type Item = F::Item;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<F::Item>) -> Result<bool, JobError> {
        out.reserve(ctx.input.len_hint());
        self.compute_each(ctx, |v| out.push(v))
    }

    fn compute_each<G: FnMut(F::Item)>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let mut failed = None;
        let mut reader =
            Reader { parse: &mut self.parse, policy: self.policy, malformed: ctx.malformed, failed: &mut failed };
        // Records come a run at a time; the loop over a run, with the per-record work inlined, is the only one. The
        // closure owns the reader and the sink, so that the loop keeps their parts in registers.
        let mut each_run = move |run: Run<'_>| {
            if reader.failed.is_some() {
                return;
            }
            for rec in run.iter() {
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
            None => Ok(true),
        }
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
    fn read(&mut self, rec: RecordRef<'_>, sink: &mut impl FnMut(F::Item)) -> bool {
        match self.parse.parse(rec) {
            Ok(v) => sink(v),
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
    Malformed { partition: rec.partition, offset: rec.offset, reason: format!("{e} (value {:?})", preview(rec.value)) }
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
pub struct Map<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}
impl<P: DStream, U, F: FnMut(P::Item) -> U> DStream for Map<P, F> {
    type Item = U;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<U>) -> Result<bool, JobError> {
        let has = self.parent.compute(ctx, &mut self.buf)?;
        out.extend(self.buf.drain(..).map(&mut self.f));
        Ok(has)
    }
    fn compute_each<G: FnMut(U)>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let f = &mut self.f;
        self.parent.compute_each(ctx, |x| sink(f(x)))
    }
}

/// `flatMap`.
pub struct FlatMap<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}
impl<P: DStream, I: IntoIterator, F: FnMut(P::Item) -> I> DStream for FlatMap<P, F> {
    type Item = I::Item;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<I::Item>) -> Result<bool, JobError> {
        let has = self.parent.compute(ctx, &mut self.buf)?;
        out.extend(self.buf.drain(..).flat_map(&mut self.f));
        Ok(has)
    }
}

/// `filter`.
pub struct Filter<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}
impl<P: DStream, F: FnMut(&P::Item) -> bool> DStream for Filter<P, F> {
    type Item = P::Item;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<P::Item>) -> Result<bool, JobError> {
        let has = self.parent.compute(ctx, &mut self.buf)?;
        out.extend(self.buf.drain(..).filter(&mut self.f));
        Ok(has)
    }
    fn compute_each<G: FnMut(P::Item)>(&mut self, ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        let f = &mut self.f;
        self.parent.compute_each(ctx, |x| {
            if f(&x) {
                sink(x)
            }
        })
    }
}

/// `mapValues`.
pub struct MapValues<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}
impl<K, V, U, P: DStream<Item = (K, V)>, F: FnMut(V) -> U> DStream for MapValues<P, F> {
    type Item = (K, U);
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<(K, U)>) -> Result<bool, JobError> {
        let has = self.parent.compute(ctx, &mut self.buf)?;
        let f = &mut self.f;
        out.extend(self.buf.drain(..).map(|(k, v)| (k, f(v))));
        Ok(has)
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
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<T>) -> Result<bool, JobError> {
        let ha = self.a.compute(ctx, out)?;
        let hb = self.b.compute(ctx, &mut self.buf)?;
        out.append(&mut self.buf);
        Ok(ha || hb)
    }
}

/// `count`: one element per batch, the number of elements (0 for an empty batch).
pub struct Count<P: DStream> {
    parent: P,
    buf: Vec<P::Item>,
}
impl<P: DStream> DStream for Count<P> {
    type Item = i64;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<i64>) -> Result<bool, JobError> {
        let has = self.parent.compute(ctx, &mut self.buf)?;
        if has {
            out.push(self.buf.len() as i64);
        }
        self.buf.clear();
        Ok(has)
    }
}

/// `reduceByKey` within one batch; keys come out in the order of their first element.
pub struct ReduceByKey<P: DStream, K, V, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
    index: FxHashMap<K, usize>,
    acc: Vec<(K, Option<V>)>,
}
impl<K: Hash + Eq + Clone, V, P: DStream<Item = (K, V)>, F: FnMut(V, V) -> V> DStream for ReduceByKey<P, K, V, F> {
    type Item = (K, V);
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<(K, V)>) -> Result<bool, JobError> {
        let has = self.parent.compute(ctx, &mut self.buf)?;
        reduce_into(self.buf.drain(..), &mut self.f, &mut self.index, &mut self.acc);
        out.extend(drain_reduced(&mut self.acc));
        Ok(has)
    }
}

fn reduce_into<K: Hash + Eq + Clone, V>(
    items: impl Iterator<Item = (K, V)>,
    f: &mut impl FnMut(V, V) -> V,
    index: &mut FxHashMap<K, usize>,
    acc: &mut Vec<(K, Option<V>)>,
) {
    index.clear();
    for (k, v) in items {
        match index.get(&k) {
            Some(&i) => {
                let slot = &mut acc[i].1;
                let old = slot.take().expect("accumulated values are always set");
                *slot = Some(f(old, v));
            }
            None => {
                index.insert(k.clone(), acc.len());
                acc.push((k, Some(v)));
            }
        }
    }
}

fn drain_reduced<K, V>(acc: &mut Vec<(K, Option<V>)>) -> impl Iterator<Item = (K, V)> + '_ {
    acc.drain(..).map(|(k, v)| (k, v.expect("accumulated values are always set")))
}

// ---------------------------------------------------------------------------------------------
// Windows

/// `window(length, slide)`: at slide times, the union of the parent's batches in `(T - length, T]`.
pub struct Window<P: DStream> {
    parent: P,
    length: Duration,
    slide: Duration,
    kept: VecDeque<(Time, Vec<P::Item>)>,
    spare: Vec<Vec<P::Item>>,
}
impl<P: DStream> DStream for Window<P>
where
    P::Item: Clone,
{
    type Item = P::Item;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<P::Item>) -> Result<bool, JobError> {
        check_window(ctx.interval, self.length, self.slide)?;
        let mut buf = self.spare.pop().unwrap_or_default();
        if self.parent.compute(ctx, &mut buf)? {
            self.kept.push_back((ctx.time, buf));
        } else {
            self.spare.push(buf);
        }
        let start = ctx.time - self.length;
        while self.kept.front().is_some_and(|(t, _)| *t <= start) {
            let (_, mut b) = self.kept.pop_front().expect("checked non-empty");
            b.clear();
            self.spare.push(b);
        }
        if !ctx.is_multiple(self.slide) {
            return Ok(false);
        }
        for (_, b) in &self.kept {
            out.extend(b.iter().cloned());
        }
        Ok(true)
    }
}

fn check_window(interval: Duration, length: Duration, slide: Duration) -> Result<(), JobError> {
    if !length.is_multiple_of(interval) || !slide.is_multiple_of(interval) {
        return Err(JobError::Config(format!(
            "window length {length} and slide {slide} must be multiples of the batch interval {interval}"
        )));
    }
    Ok(())
}

/// `reduceByKeyAndWindow` with an inverse function: the previous window minus the batches that left plus those that entered.
pub struct ReducedWindow<P: DStream, K, V, F, G, H> {
    parent: P,
    reduce: F,
    inverse: G,
    filter: Option<H>,
    length: Duration,
    slide: Duration,
    buf: Vec<P::Item>,
    index: FxHashMap<K, usize>,
    batches: VecDeque<(Time, Vec<(K, V)>)>,
    window: BTreeMap<K, V>,
}

impl<K, V, P, F, G, H> DStream for ReducedWindow<P, K, V, F, G, H>
where
    K: Hash + Eq + Ord + Clone,
    V: Clone,
    P: DStream<Item = (K, V)>,
    F: FnMut(V, V) -> V,
    G: FnMut(V, V) -> V,
    H: FnMut(&(K, V)) -> bool,
{
    type Item = (K, V);
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<(K, V)>) -> Result<bool, JobError> {
        check_window(ctx.interval, self.length, self.slide)?;
        let mut acc = Vec::new();
        if self.parent.compute(ctx, &mut self.buf)? {
            reduce_into(self.buf.drain(..), &mut self.reduce, &mut self.index, &mut acc);
        }
        let reduced: Vec<(K, V)> = drain_reduced(&mut acc).collect();
        self.batches.push_back((ctx.time, reduced));
        if !ctx.is_multiple(self.slide) {
            return Ok(false);
        }
        let t = ctx.time;
        let prev = t - self.slide;
        // Per key: values that left the window (reduced), values that entered (reduced).
        let mut left: BTreeMap<K, V> = BTreeMap::new();
        let mut entered: BTreeMap<K, V> = BTreeMap::new();
        for (bt, kvs) in &self.batches {
            let target = if *bt > prev {
                &mut entered
            } else if *bt > prev - self.length && *bt <= t - self.length {
                &mut left
            } else {
                continue;
            };
            for (k, v) in kvs {
                match target.get_mut(k) {
                    Some(acc) => *acc = (self.reduce)(acc.clone(), v.clone()),
                    None => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut next: BTreeMap<K, V> = BTreeMap::new();
        let old = std::mem::take(&mut self.window);
        let mut keys: Vec<K> = old.keys().chain(entered.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        let mut old = old;
        for k in keys {
            let value = match old.remove(&k) {
                None => entered.remove(&k),
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
        out.extend(next.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.window = next;
        let start = t - self.length;
        while self.batches.front().is_some_and(|(bt, _)| *bt <= start) {
            self.batches.pop_front();
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// `updateStateByKey`: every batch, `f(new values, old state)` for every key with state or data; `None` deletes.
/// Output: every (key, state) after the batch, sorted by key.
pub struct UpdateStateByKey<P: DStream, K, V, S, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
    state: BTreeMap<K, S>,
    grouped: BTreeMap<K, Vec<V>>,
}
impl<K: Ord + Clone, V, S: Clone, P: DStream<Item = (K, V)>, F: FnMut(&[V], Option<S>) -> Option<S>> DStream
    for UpdateStateByKey<P, K, V, S, F>
{
    type Item = (K, S);
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<(K, S)>) -> Result<bool, JobError> {
        self.parent.compute(ctx, &mut self.buf)?;
        for (k, v) in self.buf.drain(..) {
            self.grouped.entry(k).or_default().push(v);
        }
        let mut grouped = std::mem::take(&mut self.grouped);
        let old = std::mem::take(&mut self.state);
        let mut keys: Vec<K> = old.keys().chain(grouped.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        let mut old = old;
        for k in keys {
            let vals = grouped.remove(&k).unwrap_or_default();
            if let Some(s) = (self.f)(&vals, old.remove(&k)) {
                self.state.insert(k, s);
            }
        }
        out.extend(self.state.iter().map(|(k, s)| (k.clone(), s.clone())));
        Ok(true)
    }
}

impl<P: DStream, K, V, S, F> UpdateStateByKey<P, K, V, S, F> {
    /// Current state, sorted by key.
    pub fn state(&self) -> &BTreeMap<K, S> {
        &self.state
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

    /// The same call, pushing its output (if any) onto `out`; override to write the output in place.
    #[inline(always)]
    fn call_into(
        &mut self,
        time: Time,
        key: &K,
        value: Option<V>,
        state: &mut State<'_, S>,
        out: &mut Vec<Self::Output>,
    ) -> Result<(), StateError> {
        if let Some(m) = self.call(time, key, value, state)? {
            out.push(m);
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
}

impl<K, S> StateSpec<(), K, S> {
    /// A spec from the simple form `(key, value, state) -> output`.
    pub fn function<V, M, G>(f: G) -> StateSpec<SimpleFn<G>, K, S>
    where
        G: FnMut(&K, Option<V>, &mut State<'_, S>) -> Result<M, StateError>,
    {
        StateSpec { func: SimpleFn(f), initial: Vec::new(), options: StateSpecOptions::default() }
    }
    /// A spec from the full form `(time, key, value, state) -> optional output`.
    pub fn full<V, M, G>(f: G) -> StateSpec<FullFn<G>, K, S>
    where
        G: FnMut(Time, &K, Option<V>, &mut State<'_, S>) -> Result<Option<M>, StateError>,
    {
        StateSpec { func: FullFn(f), initial: Vec::new(), options: StateSpecOptions::default() }
    }
    /// A spec from any `MappingFunction` value (a nameable type, so the job's type can be written down).
    pub fn with_mapping<F>(f: F) -> StateSpec<F, K, S> {
        StateSpec { func: f, initial: Vec::new(), options: StateSpecOptions::default() }
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
    /// State checkpoint interval (default 10 x batch interval); also the SparkCompatible scan interval.
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
pub struct MapWithState<P: DStream, F, K, S> {
    parent: P,
    func: F,
    initial: Vec<(K, S)>,
    options: StateSpecOptions,
    initialized: bool,
    map: StateMap<K, S>,
    expired: Vec<K>,
    tags: Vec<u32>,
    /// Outputs kept per batch, if not all (see [`MapWithState::limit_output`]).
    output_limit: Option<usize>,
}

impl<P, F, K, V, S> DStream for MapWithState<P, F, K, S>
where
    P: DStream<Item = (K, V)>,
    F: MappingFunction<K, V, S>,
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug,
{
    type Item = F::Output;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<F::Output>) -> Result<bool, JobError> {
        self.begin(ctx.time);
        self.process(ctx, out)?;
        self.finish(ctx, out)?;
        Ok(true)
    }
}

impl<P, F, K, V, S> MapWithState<P, F, K, S>
where
    P: DStream<Item = (K, V)>,
    F: MappingFunction<K, V, S>,
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug,
{
    /// Starts the batch at `time`: applies the initial state (first batch only) and forgets any unfinished batch.
    /// Then [`process`](Self::process) any number of parts of the batch's input, in order, and
    /// [`finish`](Self::finish) it; `compute` is exactly these three calls over the whole input.
    pub fn begin(&mut self, time: Time) {
        if !self.initialized {
            for (k, s) in self.initial.drain(..) {
                self.map.insert(k, s, time);
            }
            self.initialized = true;
        }
        self.tags.clear();
    }

    /// Runs the mapping function over the data records of `ctx` (one part of the batch's input), appending to `out`.
    pub fn process(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<F::Output>) -> Result<(), JobError> {
        let time = ctx.time;
        let has_timeout = self.options.timeout.is_some();
        let limit = self.limit();
        let map = &mut self.map;
        let func = &mut self.func;
        let n = map.parts.len();
        let mut failure = None;
        let by_partition = self.options.output_order == OutputOrder::SparkPartitions && n > 1;
        let tags = &mut self.tags;
        self.parent.compute_each(ctx, |(k, v)| {
            if failure.is_some() {
                return;
            }
            let p = if n == 1 { 0 } else { crate::jvm::partition_of(&k, n) };
            let part = &mut map.parts[p];
            let before = out.len();
            let r = match part.get_mut(&k) {
                Some(slot) => {
                    let mut st = State::lend(&mut slot.value);
                    let r = if out.len() < limit {
                        func.call_into(time, &k, Some(v), &mut st, out)
                    } else {
                        func.call(time, &k, Some(v), &mut st).map(drop)
                    };
                    let (removed, touched) = (st.is_removed(), st.is_updated() || has_timeout);
                    if removed {
                        part.remove(&k);
                    } else if touched {
                        slot.updated_at = time;
                    }
                    r
                }
                None => {
                    let mut st = State::wrap(None, false);
                    let r = if out.len() < limit {
                        func.call_into(time, &k, Some(v), &mut st, out)
                    } else {
                        func.call(time, &k, Some(v), &mut st).map(drop)
                    };
                    if let Some(s) = st.into_owned() {
                        part.insert(k.clone(), Slot { value: s, updated_at: time });
                    }
                    r
                }
            };
            if let Err(error) = r {
                failure = Some(JobError::State { time, key: format!("{k:?}"), error });
            } else if by_partition && out.len() > before {
                tags.push(p as u32);
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Keeps at most `limit` outputs of each batch (`None`: all), e.g. only what `print` shows; the mapping
    /// function still runs for every record and timing-out key. Ignored under Spark's output order over several
    /// state partitions, which orders the whole output at the batch's end.
    pub fn limit_output(&mut self, limit: Option<usize>) {
        self.output_limit = limit;
    }

    /// The number of outputs a batch keeps.
    fn limit(&self) -> usize {
        let spark_sorted = self.options.output_order == OutputOrder::SparkPartitions && self.map.parts.len() > 1;
        match self.output_limit {
            Some(n) if !spark_sorted => n,
            _ => usize::MAX,
        }
    }

    /// Ends the batch: groups the data records' outputs by state partition (Spark's order, if configured), then
    /// scans for timeouts; `out` must hold exactly what [`process`](Self::process) appended at its end.
    pub fn finish(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<F::Output>) -> Result<(), JobError> {
        let time = ctx.time;
        let limit = self.limit();
        let map = &mut self.map;
        let func = &mut self.func;
        let n = map.parts.len();
        if self.options.output_order == OutputOrder::SparkPartitions && n > 1 {
            // Stable: arrival order within each partition, as Spark's partitions are concatenated. One tag per
            // output of the data records, which are the last `tags.len()` elements of `out`.
            let first_out = out.len() - self.tags.len();
            let mut tagged: Vec<(u32, F::Output)> = self.tags.drain(..).zip(out.drain(first_out..)).collect();
            tagged.sort_by_key(|(p, _)| *p);
            out.extend(tagged.into_iter().map(|(_, m)| m));
        }
        if let Some(timeout) = self.options.timeout {
            let scan = match self.options.timeout_scan {
                TimeoutScan::EveryBatch => true,
                TimeoutScan::SparkCompatible => {
                    ctx.is_multiple(self.options.checkpoint_interval.unwrap_or(ctx.interval * 10))
                }
            };
            if scan {
                let threshold = time - timeout;
                for p in 0..n {
                    self.expired.clear();
                    self.expired
                        .extend(map.parts[p].iter().filter(|(_, s)| s.updated_at < threshold).map(|(k, _)| k.clone()));
                    self.expired.sort();
                    for k in self.expired.drain(..) {
                        let value = map.parts[p].remove(&k).map(|s| s.value);
                        let mut st = State::wrap(value, true);
                        match func.call(time, &k, None, &mut st) {
                            Ok(Some(m)) if out.len() < limit => out.push(m),
                            Ok(Some(_)) => {}
                            Ok(None) => {}
                            Err(error) => return Err(JobError::State { time, key: format!("{k:?}"), error }),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl<P: DStream, F, K, S> MapWithState<P, F, K, S>
where
    K: Hash + Eq + Ord + Clone + StableHash,
    S: Clone,
{
    /// The live state.
    pub fn state(&self) -> &StateMap<K, S> {
        &self.map
    }
    /// The state checkpoint interval for a given batch interval (10 x batch by default).
    pub fn checkpoint_interval(&self, batch: Duration) -> Duration {
        self.options.checkpoint_interval.unwrap_or(batch * 10)
    }
    /// Checkpointable content.
    pub fn checkpoint(&self) -> MapWithStateCheckpoint<K, S> {
        MapWithStateCheckpoint { initialized: self.initialized, state: self.map.snapshot() }
    }
    /// Checkpointable content, borrowed: serialises as `checkpoint()` does, without copying or sorting.
    pub fn checkpoint_ref(&self) -> MapWithStateCheckpointRef<'_, K, S>
    where
        K: Serialize,
        S: Serialize,
    {
        MapWithStateCheckpointRef { initialized: self.initialized, state: self.map.snapshot_ref() }
    }
    /// Replaces the state with a checkpoint's; the partition count stays the spec's.
    pub fn restore(&mut self, cp: MapWithStateCheckpoint<K, S>) {
        self.map = StateMap::from_entries(self.options.num_partitions, cp.state.entries);
        self.initialized = cp.initialized;
        if cp.initialized {
            self.initial.clear();
        }
    }
    /// Shares this stream between its mapped output and `stateSnapshots()`.
    #[allow(clippy::type_complexity)]
    pub fn with_snapshots<V, M>(self) -> (Mapped<P, F, K, S, M>, Snapshots<P, F, K, S, M>)
    where
        P: DStream<Item = (K, V)>,
        F: MappingFunction<K, V, S, Output = M>,
        K: fmt::Debug,
    {
        let inner = Rc::new(RefCell::new(SharedMws { node: self, at: None, out: Vec::new() }));
        (Mapped { inner: inner.clone() }, Snapshots { inner })
    }
}

type SharedHandle<P, F, K, S, M> = Rc<RefCell<SharedMws<P, F, K, S, M>>>;

/// A `mapWithState` stream shared by its mapped view and its snapshot view.
pub struct SharedMws<P: DStream, F, K, S, M> {
    node: MapWithState<P, F, K, S>,
    at: Option<Time>,
    out: Vec<M>,
}

impl<P, F, K, V, S, M> SharedMws<P, F, K, S, M>
where
    P: DStream<Item = (K, V)>,
    F: MappingFunction<K, V, S, Output = M>,
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug,
{
    fn ensure(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        if self.at != Some(ctx.time) {
            self.out.clear();
            self.node.compute(ctx, &mut self.out)?;
            self.at = Some(ctx.time);
        }
        Ok(())
    }
}

/// The mapped view of a shared `mapWithState` stream.
pub struct Mapped<P: DStream, F, K, S, M> {
    inner: SharedHandle<P, F, K, S, M>,
}
impl<P, F, K, V, S, M> DStream for Mapped<P, F, K, S, M>
where
    P: DStream<Item = (K, V)>,
    F: MappingFunction<K, V, S, Output = M>,
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug,
    M: Clone,
{
    type Item = M;
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<M>) -> Result<bool, JobError> {
        let mut inner = self.inner.borrow_mut();
        inner.ensure(ctx)?;
        out.extend(inner.out.iter().cloned());
        Ok(true)
    }
}

/// `stateSnapshots()`: every live (key, state) after the batch, sorted by key.
pub struct Snapshots<P: DStream, F, K, S, M> {
    inner: SharedHandle<P, F, K, S, M>,
}
impl<P, F, K, V, S, M> DStream for Snapshots<P, F, K, S, M>
where
    P: DStream<Item = (K, V)>,
    F: MappingFunction<K, V, S, Output = M>,
    K: Hash + Eq + Ord + Clone + StableHash + fmt::Debug,
    S: Clone,
{
    type Item = (K, S);
    fn compute(&mut self, ctx: &mut BatchContext<'_>, out: &mut Vec<(K, S)>) -> Result<bool, JobError> {
        let mut inner = self.inner.borrow_mut();
        inner.ensure(ctx)?;
        out.extend(inner.node.map.sorted_states());
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Output operations

/// `print(num)`: Spark's header and the first `num` elements of every batch with output.
pub struct Print<P: DStream> {
    parent: P,
    num: usize,
    buf: Vec<P::Item>,
}
impl<P: DStream> OutputOp for Print<P>
where
    P::Item: JvmDisplay,
{
    fn run(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.buf.clear();
        if self.parent.compute(ctx, &mut self.buf)? {
            write_batch(ctx.printed, ctx.time, &self.buf, self.num);
        }
        self.buf.clear();
        Ok(())
    }
}

/// `foreachRDD`: calls a function with each batch's elements.
pub struct ForEachBatch<P: DStream, F> {
    parent: P,
    f: F,
    buf: Vec<P::Item>,
}
impl<P: DStream, F: FnMut(Time, &[P::Item])> OutputOp for ForEachBatch<P, F> {
    fn run(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.buf.clear();
        if self.parent.compute(ctx, &mut self.buf)? {
            (self.f)(ctx.time, &self.buf);
        }
        self.buf.clear();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Builders

/// The operators, as methods on every stream.
pub trait DStreamExt: DStream + Sized {
    /// `map`.
    fn map<U, F: FnMut(Self::Item) -> U>(self, f: F) -> Map<Self, F> {
        Map { parent: self, f, buf: Vec::new() }
    }
    /// `flatMap`.
    fn flat_map<I: IntoIterator, F: FnMut(Self::Item) -> I>(self, f: F) -> FlatMap<Self, F> {
        FlatMap { parent: self, f, buf: Vec::new() }
    }
    /// `filter`.
    fn filter<F: FnMut(&Self::Item) -> bool>(self, f: F) -> Filter<Self, F> {
        Filter { parent: self, f, buf: Vec::new() }
    }
    /// `mapValues`.
    fn map_values<K, V, U, F: FnMut(V) -> U>(self, f: F) -> MapValues<Self, F>
    where
        Self: DStream<Item = (K, V)>,
    {
        MapValues { parent: self, f, buf: Vec::new() }
    }
    /// `union`.
    fn union<B: DStream<Item = Self::Item>>(self, other: B) -> Union<Self, B> {
        Union { a: self, b: other, buf: Vec::new() }
    }
    /// `count`.
    fn count(self) -> Count<Self> {
        Count { parent: self, buf: Vec::new() }
    }
    /// `reduceByKey`.
    fn reduce_by_key<K, V, F: FnMut(V, V) -> V>(self, f: F) -> ReduceByKey<Self, K, V, F>
    where
        Self: DStream<Item = (K, V)>,
    {
        ReduceByKey { parent: self, f, buf: Vec::new(), index: FxHashMap::default(), acc: Vec::new() }
    }
    /// `window(length, slide)`.
    fn window(self, length: Duration, slide: Duration) -> Window<Self> {
        Window { parent: self, length, slide, kept: VecDeque::new(), spare: Vec::new() }
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
        K: Hash + Eq + Clone,
        V: Clone,
    {
        let g = f.clone();
        self.reduce_by_key(f).window(length, slide).reduce_by_key(g)
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
        H: FnMut(&(K, V)) -> bool,
    {
        ReducedWindow {
            parent: self,
            reduce,
            inverse,
            filter,
            length,
            slide,
            buf: Vec::new(),
            index: FxHashMap::default(),
            batches: VecDeque::new(),
            window: BTreeMap::new(),
        }
    }
    /// `updateStateByKey`.
    fn update_state_by_key<K, V, S, F>(self, f: F) -> UpdateStateByKey<Self, K, V, S, F>
    where
        Self: DStream<Item = (K, V)>,
        F: FnMut(&[V], Option<S>) -> Option<S>,
    {
        UpdateStateByKey { parent: self, f, buf: Vec::new(), state: BTreeMap::new(), grouped: BTreeMap::new() }
    }
    /// `mapWithState`.
    fn map_with_state<K, V, S, F>(self, spec: StateSpec<F, K, S>) -> MapWithState<Self, F, K, S>
    where
        Self: DStream<Item = (K, V)>,
        K: Hash + Eq + StableHash,
    {
        let n = spec.options.num_partitions;
        MapWithState {
            parent: self,
            func: spec.func,
            initial: spec.initial,
            options: spec.options,
            initialized: false,
            map: StateMap::new(n),
            expired: Vec::new(),
            tags: Vec::new(),
            output_limit: None,
        }
    }
    /// `print(num)`.
    fn print(self, num: usize) -> Print<Self>
    where
        Self::Item: JvmDisplay,
    {
        Print { parent: self, num, buf: Vec::new() }
    }
    /// `foreachRDD`.
    fn foreach_batch<F: FnMut(Time, &[Self::Item])>(self, f: F) -> ForEachBatch<Self, F> {
        ForEachBatch { parent: self, f, buf: Vec::new() }
    }
}

impl<D: DStream> DStreamExt for D {}
