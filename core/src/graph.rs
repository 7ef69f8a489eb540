//! Building a job as Spark does: streams are handles on one graph, each operator returns a new stream, and an
//! output operation (`print`, `foreach_batch`) registers itself on the graph. A stream can feed any number of
//! operators and outputs; it is computed once per batch.
//!
//! ```
//! use dstream_core::graph::GraphBuilder;
//! use dstream_core::{BatchTimer, Duration, Engine, ManualClock, RecordBatch, Time};
//!
//! let graph = GraphBuilder::new();
//! let lines = graph.records().map(|r| String::from_utf8_lossy(r.value).into_owned());
//! let words = lines.flat_map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>());
//! words.map(|w| (w, 1i64)).reduce_by_key(|a, b| a + b).print(10);
//! words.count().print(1);
//!
//! let mut engine = Engine::new(graph.build(), BatchTimer::first_start(Time(0), Duration::from_secs(1)));
//! let mut batch = RecordBatch::new();
//! batch.push(0, 0, 0, None, b"to be or not to be");
//! let report = engine.run_batch(Time(1000), &mut batch, &ManualClock::new(Time(1000))).unwrap();
//! assert!(report.printed.contains("(to,2)\n(be,2)\n(or,1)\n(not,1)\n"));
//! assert!(report.printed.ends_with("6\n\n"));
//! ```

use crate::jvm::{JvmDisplay, StableHash};
use crate::record::{split_partition, RecordRef, SourceError};
use crate::sources::{Directory, PullStream, Queue, QueueStream, TextFileStream};
use crate::state::OutputOrder;
use crate::stateful::Stateful;
use crate::stream::{
    group_by_key_and_window_with, input_with, reduce_by_key_and_window_with, CoGroup, CoGroupAll, Count, CountByValue,
    CountByValueAndWindow, CountByWindow, DStream, DStreamExt, Filter, FlatMap, FullOuterJoin, Graph, GroupByKey,
    GroupByKeyAndWindow, InnerJoin, Input, Inputs, LeftOuterJoin, MalformedPolicy, Map, MapValues, MapWithState,
    MappingFunction, OutputError, OutputOp, Partitioned, RecordParser, Reduce, ReduceByKey, ReduceByWindow,
    ReducedByWindow, ReducedWindow, Repartition, RightOuterJoin, Shared, Shuffle, Snapshots, StateSpec, Transform,
    TransformWith, Union, UpdateStateByKey, Window,
};
use crate::time::{Duration, Time};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::fmt;
use std::hash::Hash;
use std::rc::Rc;

/// A graph under construction: the output operations registered so far. Cloning it gives another handle on
/// the same graph.
#[derive(Clone, Default)]
pub struct GraphBuilder {
    inner: Rc<RefCell<Builder>>,
}

#[derive(Default)]
struct Builder {
    outputs: Vec<Box<dyn OutputOp>>,
    /// The named inputs (topics), in the order the program first asked for them: the index of each is its
    /// input number (see [`crate::record::input_partition`]).
    inputs: Vec<Rc<str>>,
    /// `inputs.len()`, shared with the graph's input streams.
    input_count: Rc<std::cell::Cell<usize>>,
    policy: Rc<std::cell::Cell<MalformedPolicy>>,
    order: Rc<std::cell::Cell<OutputOrder>>,
}

impl fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder").field("outputs", &self.inner.borrow().outputs.len()).finish()
    }
}

/// One input record as a program sees it: where it came from, its key and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerRecord<'a> {
    /// The topic (or source name).
    pub topic: &'a str,
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record within its partition.
    pub offset: i64,
    /// Record timestamp in ms.
    pub timestamp: i64,
    /// The message key, if any.
    pub key: Option<&'a [u8]>,
    /// The message value.
    pub value: &'a [u8],
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the input streams do with a record their parser refuses (default: skip and report it); applies to
    /// every input stream of the graph, whenever it was defined.
    pub fn set_malformed_policy(&self, policy: MalformedPolicy) {
        self.inner.borrow().policy.set(policy);
    }

    /// The order of every keyed operator's output within a batch (`reduce_by_key`, `count_by_value`,
    /// `update_state_by_key`, `reduce_by_key_and_window` with or without an inverse, `repartition`): dstream's
    /// (default: first appearance, or sorted by key where documented) or Spark's ([`OutputOrder::SparkPartitions`]:
    /// by shuffle partition, then that partition's hash table). Applies to every operator of the graph, whenever it
    /// was defined. `map_with_state` and its `state_snapshots` follow their [`StateSpec`]'s order.
    pub fn set_output_order(&self, order: OutputOrder) {
        self.inner.borrow().order.set(order);
    }

    /// A shuffle following the graph's output order.
    fn shuffle(&self) -> Shuffle {
        Shuffle::following(self.inner.borrow().order.clone())
    }

    /// The policy [`set_malformed_policy`](Self::set_malformed_policy) set (skip by default).
    pub fn malformed_policy(&self) -> MalformedPolicy {
        self.inner.borrow().policy.get()
    }

    /// The batch's input records from the source `topic` names (a Kafka topic): the records of that input only,
    /// when a job reads several (see [`inputs`](Self::inputs)).
    pub fn records_of(&self, topic: &str) -> InputStream {
        self.records_of_all(&[topic])
    }

    /// The batch's input records from any of the sources `topics` name (Spark's `Subscribe(topics)`): one
    /// stream of the records of all of them, each carrying its topic.
    ///
    /// # Panics
    /// If `topics` is empty, or the graph would read more than [`MAX_INPUTS`](crate::record::MAX_INPUTS) inputs.
    pub fn records_of_all(&self, topics: &[&str]) -> InputStream {
        assert!(!topics.is_empty(), "an input stream needs at least one topic");
        let mut mask = 0u128;
        for t in topics {
            mask |= 1 << self.input_index(t);
        }
        let names = self.inner.borrow().inputs.clone().into();
        InputStream { graph: self.clone(), inputs: Inputs::Of(mask), names }
    }

    /// The index of input `topic`, registered if new.
    fn input_index(&self, topic: &str) -> usize {
        let mut b = self.inner.borrow_mut();
        if let Some(i) = b.inputs.iter().position(|t| &**t == topic) {
            return i;
        }
        assert!(b.inputs.len() < crate::record::MAX_INPUTS, "a job reads at most {} inputs", crate::record::MAX_INPUTS);
        b.inputs.push(Rc::from(topic));
        b.input_count.set(b.inputs.len());
        b.inputs.len() - 1
    }

    /// The named inputs the program reads (its topics), in the order it first asked for them: input `n`'s
    /// partition `p` is engine partition [`input_partition(n, p)`](crate::record::input_partition).
    pub fn inputs(&self) -> Vec<String> {
        self.inner.borrow().inputs.iter().map(|t| t.to_string()).collect()
    }

    /// Every record of the batch, from a source with no name (or whatever input it came from).
    pub fn records(&self) -> InputStream {
        let names = self.inner.borrow().inputs.clone().into();
        InputStream { graph: self.clone(), inputs: Inputs::All, names }
    }

    /// `queueStream(queue, oneAtATime)`: each batch takes the next batch pushed on `queue` (`one_at_a_time`), or
    /// all of them; nothing when it is empty. See [`QueueStream`].
    pub fn queue_stream<T: Clone + 'static>(&self, queue: &Queue<T>, one_at_a_time: bool) -> Stream<QueueStream<T>> {
        self.stream(QueueStream::new(queue, one_at_a_time, None))
    }

    /// `queueStream(queue, oneAtATime, defaultRDD)`: as [`queue_stream`](Self::queue_stream), with `default` for a
    /// batch that finds the queue empty.
    pub fn queue_stream_or<T: Clone + 'static>(
        &self,
        queue: &Queue<T>,
        one_at_a_time: bool,
        default: Vec<T>,
    ) -> Stream<QueueStream<T>> {
        self.stream(QueueStream::new(queue, one_at_a_time, Some(default)))
    }

    /// A stream whose batch is what `pull(batch time, out)` appends when the batch starts; an error fails the
    /// batch. The adapters build their receivers (`socket_text_stream`) on it.
    pub fn pull_stream<T, F>(&self, pull: F) -> Stream<PullStream<F, T>>
    where
        T: Clone + 'static,
        F: FnMut(Time, &mut Vec<T>) -> Result<(), SourceError> + 'static,
    {
        self.stream(PullStream::new(pull))
    }

    /// `textFileStream` over a [`Directory`]: the lines of the files that appear in it, files modified at or
    /// before `created_ms` ignored (see [`TextFileStream`]); `dstream_adapters` gives one on a real directory.
    pub fn text_file_stream_in<D: Directory + 'static>(&self, dir: D, created_ms: i64) -> Stream<TextFileStream<D>> {
        self.stream(TextFileStream::new(dir, created_ms))
    }

    /// Adds an output operation (what [`Stream::print`] and [`Stream::foreach_batch`] do).
    pub fn output(&self, op: impl OutputOp + 'static) {
        self.inner.borrow_mut().outputs.push(Box::new(op));
    }

    /// Number of output operations registered.
    pub fn outputs(&self) -> usize {
        self.inner.borrow().outputs.len()
    }

    /// The job: every output operation registered so far, in order (the builder is left empty).
    pub fn build(&self) -> Graph {
        let mut g = Graph::new();
        for op in std::mem::take(&mut self.inner.borrow_mut().outputs) {
            g.push_output(op);
        }
        g
    }

    fn policy_and_count(&self) -> (Rc<std::cell::Cell<MalformedPolicy>>, Rc<std::cell::Cell<usize>>) {
        let b = self.inner.borrow();
        (b.policy.clone(), b.input_count.clone())
    }

    fn stream<D: DStream>(&self, node: D) -> Stream<D> {
        Stream { node: Shared::new(node), graph: self.clone() }
    }
}

/// The records of the batch, before the program turns them into elements: `map` or `try_map` them.
#[derive(Clone)]
pub struct InputStream {
    graph: GraphBuilder,
    inputs: Inputs,
    /// The graph's inputs when this stream was made (its own among them), by index.
    names: Rc<[Rc<str>]>,
}

impl fmt::Debug for InputStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputStream").field("inputs", &self.inputs).field("names", &self.names).finish()
    }
}

/// The topic of a record, from its engine partition: the one input a stream reads, or a table of them.
#[derive(Clone)]
struct TopicOf {
    names: Rc<[Rc<str>]>,
    only: Option<Rc<str>>,
}

impl TopicOf {
    fn of(stream: &InputStream) -> Self {
        let only = match stream.inputs {
            Inputs::Of(mask) if mask.count_ones() == 1 => stream.names.get(mask.trailing_zeros() as usize).cloned(),
            _ => None,
        };
        TopicOf { names: stream.names.clone(), only }
    }

    #[inline(always)]
    fn record<'a>(&'a self, r: RecordRef<'a>) -> ConsumerRecord<'a> {
        let (input, partition) = split_partition(r.partition);
        let topic = match &self.only {
            Some(t) => t,
            None => self.names.get(input).map_or("", |t| t),
        };
        ConsumerRecord { topic, partition, offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value }
    }
}

/// A parser from records to elements that always succeeds.
pub struct MapRecords<F> {
    topic: TopicOf,
    f: F,
}

impl<T, F: FnMut(ConsumerRecord<'_>) -> T> RecordParser for MapRecords<F> {
    type Item = T;
    type Error = std::convert::Infallible;
    #[inline(always)]
    fn parse(&mut self, r: RecordRef<'_>) -> Result<T, std::convert::Infallible> {
        Ok((self.f)(self.topic.record(r)))
    }
}

/// A parser from records to elements that may refuse a record (it is then malformed: counted and reported).
pub struct TryMapRecords<F> {
    topic: TopicOf,
    f: F,
}

impl<T, E: fmt::Display, F: FnMut(ConsumerRecord<'_>) -> Result<T, E>> RecordParser for TryMapRecords<F> {
    type Item = T;
    type Error = E;
    #[inline(always)]
    fn parse(&mut self, r: RecordRef<'_>) -> Result<T, E> {
        (self.f)(self.topic.record(r))
    }
}

impl InputStream {
    /// `map`: each record to one element.
    pub fn map<T, F>(&self, f: F) -> Stream<Input<MapRecords<F>>>
    where
        T: Clone + 'static,
        F: FnMut(ConsumerRecord<'_>) -> T + 'static,
    {
        let (policy, count) = self.graph.policy_and_count();
        self.graph.stream(input_with(MapRecords { topic: TopicOf::of(self), f }, policy, self.inputs, count))
    }

    /// `map` with a parser that may refuse a record: a refused record is malformed, reported with its partition
    /// and offset and skipped (or, under [`MalformedPolicy::Fail`], it fails the batch).
    pub fn try_map<T, E, F>(&self, f: F) -> Stream<Input<TryMapRecords<F>>>
    where
        T: Clone + 'static,
        E: fmt::Display + 'static,
        F: FnMut(ConsumerRecord<'_>) -> Result<T, E> + 'static,
    {
        let (policy, count) = self.graph.policy_and_count();
        self.graph.stream(input_with(TryMapRecords { topic: TopicOf::of(self), f }, policy, self.inputs, count))
    }

    /// Each record through a [`RecordParser`] of the program's own.
    pub fn parse<P>(&self, parser: P) -> Stream<Input<P>>
    where
        P: RecordParser + 'static,
        P::Item: Clone + 'static,
    {
        let (policy, count) = self.graph.policy_and_count();
        self.graph.stream(input_with(parser, policy, self.inputs, count))
    }
}

/// A DStream of the graph under construction: operators return new streams, output operations register on the
/// graph. Elements are `Clone` (a stream read by several operators hands each a copy) and, for stateful
/// operators, `Serialize` (their state goes into checkpoints).
pub struct Stream<D: DStream> {
    node: Shared<D>,
    graph: GraphBuilder,
}

impl<D: DStream> fmt::Debug for Stream<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("item", &std::any::type_name::<D::Item>()).finish()
    }
}

impl<D> Stream<D>
where
    D: DStream + 'static,
    D::Item: Clone + 'static,
{
    fn up(&self) -> Shared<D> {
        self.node.consumer()
    }

    /// The graph this stream belongs to.
    pub fn graph(&self) -> &GraphBuilder {
        &self.graph
    }

    /// `map`.
    pub fn map<U: Clone + 'static, F: FnMut(D::Item) -> U + 'static>(&self, f: F) -> Stream<Map<Shared<D>, F>> {
        self.graph.stream(self.up().map(f))
    }

    /// `flatMap`.
    pub fn flat_map<I, F>(&self, f: F) -> Stream<FlatMap<Shared<D>, F>>
    where
        I: IntoIterator + 'static,
        I::Item: Clone + 'static,
        F: FnMut(D::Item) -> I + 'static,
    {
        self.graph.stream(self.up().flat_map(f))
    }

    /// `filter`.
    pub fn filter<F: FnMut(&D::Item) -> bool + 'static>(&self, f: F) -> Stream<Filter<Shared<D>, F>> {
        self.graph.stream(self.up().filter(f))
    }

    /// `union`: this batch's elements of this stream, then of `other`.
    pub fn union<E>(&self, other: &Stream<E>) -> Stream<Union<Shared<D>, Shared<E>>>
    where
        E: DStream<Item = D::Item> + 'static,
    {
        self.graph.stream(self.up().union(other.up()))
    }

    /// `count`: one element per batch, the number of elements.
    pub fn count(&self) -> Stream<Count<Shared<D>>> {
        self.graph.stream(self.up().count())
    }

    /// `transform((rdd, time) => ...)`: `f` turns each batch's elements into the batch's output.
    pub fn transform<U, F>(&self, f: F) -> Stream<Transform<Shared<D>, F>>
    where
        U: Clone + 'static,
        F: FnMut(Time, Vec<D::Item>) -> Vec<U> + 'static,
    {
        self.graph.stream(self.up().transform(f))
    }

    /// `transformWith(other, (rdd1, rdd2, time) => ...)`: `f` turns each batch's elements of this stream and
    /// `other` (same slide) into the batch's output.
    pub fn transform_with<E, U, F>(&self, other: &Stream<E>, f: F) -> Stream<TransformWith<Shared<D>, Shared<E>, F>>
    where
        E: DStream + 'static,
        E::Item: Clone + 'static,
        U: Clone + 'static,
        F: FnMut(Time, Vec<D::Item>, Vec<E::Item>) -> Vec<U> + 'static,
    {
        self.graph.stream(self.up().transform_with(other.up(), f))
    }

    /// `repartition(n)`: the same elements; under Spark's output order (the graph's), in the order Spark's round
    /// robin over `n` partitions gives them. No partition count changes after it (as in Spark Streaming).
    pub fn repartition(&self, n: usize) -> Stream<Repartition<Shared<D>>> {
        self.graph.stream(self.up().repartition(n).with_order_of(&self.graph.shuffle()))
    }

    /// `reduce`: one element per batch with elements, folded with `f` in arrival order.
    pub fn reduce<F: FnMut(D::Item, D::Item) -> D::Item + 'static>(&self, f: F) -> Stream<Reduce<Shared<D>, F>> {
        self.graph.stream(self.up().reduce(f))
    }

    /// `countByValue`: (element, count) per batch, in order of first appearance.
    pub fn count_by_value(&self) -> Stream<CountByValue<Shared<D>>>
    where
        D::Item: Hash + Eq + StableHash,
    {
        self.graph.stream(self.up().count_by_value().with_shuffle(self.graph.shuffle()))
    }

    /// `reduceByWindow(f, length, slide)`: Spark's `reduce(f).window(length, slide).reduce(f)`.
    pub fn reduce_by_window<F>(&self, f: F, length: Duration, slide: Duration) -> Stream<ReduceByWindow<Shared<D>, F>>
    where
        D::Item: Serialize + DeserializeOwned,
        F: FnMut(D::Item, D::Item) -> D::Item + Clone + 'static,
    {
        self.graph.stream(self.up().reduce_by_window(f, length, slide))
    }

    /// `reduceByWindow(f, inverse, length, slide)`: the previous window's value minus what left plus what entered.
    pub fn reduce_by_window_inv<F, G>(
        &self,
        f: F,
        inverse: G,
        length: Duration,
        slide: Duration,
    ) -> Stream<ReducedByWindow<Shared<D>, F, G>>
    where
        D::Item: Serialize + DeserializeOwned,
        F: FnMut(D::Item, D::Item) -> D::Item + 'static,
        G: FnMut(D::Item, D::Item) -> D::Item + 'static,
    {
        self.graph.stream(self.up().reduce_by_window_inv(f, inverse, length, slide))
    }

    /// `countByWindow(length, slide)`: the number of elements in the window at each slide (nothing until a first
    /// element has entered, 0 once all have left).
    pub fn count_by_window(&self, length: Duration, slide: Duration) -> Stream<CountByWindow<Shared<D>>> {
        self.graph.stream(self.up().count_by_window(length, slide))
    }

    /// `countByValueAndWindow(length, slide)`: (element, count in the window), sorted, counts of 0 dropped.
    pub fn count_by_value_and_window(
        &self,
        length: Duration,
        slide: Duration,
    ) -> Stream<CountByValueAndWindow<Shared<D>>>
    where
        D::Item: Hash + Eq + Ord + StableHash + fmt::Debug + Serialize + DeserializeOwned,
    {
        self.graph.stream(self.up().count_by_value_and_window(length, slide).with_shuffle(self.graph.shuffle()))
    }

    /// `window(length, slide)`: at each slide, the elements of the batches in the last `length`.
    pub fn window(&self, length: Duration, slide: Duration) -> Stream<Window<Shared<D>>>
    where
        D::Item: Serialize + DeserializeOwned,
    {
        self.graph.stream(self.up().window(length, slide))
    }

    /// `print(num)`: Spark's header and the first `num` elements of each batch.
    pub fn print(&self, num: usize)
    where
        D::Item: JvmDisplay,
    {
        self.graph.output(self.up().print(num));
    }

    /// `foreachRDD`: calls `f` with each batch's time and elements.
    pub fn foreach_batch<F: FnMut(Time, &[D::Item]) + 'static>(&self, f: F) {
        self.graph.output(self.up().foreach_batch(f));
    }

    /// `foreachRDD` with a function that can fail: an error fails the batch (the job stops; a restart from a
    /// checkpoint runs the batch again).
    pub fn try_foreach_batch<F>(&self, f: F)
    where
        F: FnMut(Time, &[D::Item]) -> Result<(), OutputError> + 'static,
    {
        self.graph.output(self.up().try_foreach_batch(f));
    }
}

impl<D, K, V> Stream<D>
where
    D: DStream<Item = (K, V)> + 'static,
    K: Clone + 'static,
    V: Clone + 'static,
{
    /// `mapValues`.
    pub fn map_values<U: Clone + 'static, F: FnMut(V) -> U + 'static>(&self, f: F) -> Stream<MapValues<Shared<D>, F>> {
        self.graph.stream(self.up().map_values(f))
    }

    /// `groupByKeyAndWindow(length, slide)`: (key, its values in the window, oldest first), at each slide.
    pub fn group_by_key_and_window(
        &self,
        length: Duration,
        slide: Duration,
    ) -> Stream<GroupByKeyAndWindow<Shared<D>, K, V>>
    where
        K: Hash + Eq + StableHash + Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.graph.stream(group_by_key_and_window_with(self.up(), length, slide, self.graph.shuffle()))
    }

    /// `groupByKey` within each batch: (key, values in arrival order), keys in order of first appearance.
    pub fn group_by_key(&self) -> Stream<GroupByKey<Shared<D>, K, V>>
    where
        K: Hash + Eq + StableHash,
    {
        self.graph.stream(self.up().group_by_key().with_shuffle(self.graph.shuffle()))
    }

    /// `cogroup` with another keyed stream of the same slide: (key, (values here, values there)) per batch; keys
    /// in order of first appearance here, then those only in `other`.
    #[allow(clippy::type_complexity)]
    pub fn cogroup<E, W>(&self, other: &Stream<E>) -> Stream<CoGroup<Shared<D>, Shared<E>, K, V, W, CoGroupAll>>
    where
        K: Hash + Eq + StableHash,
        E: DStream<Item = (K, W)> + 'static,
        W: Clone + 'static,
    {
        self.graph.stream(self.up().cogroup(other.up()).with_shuffle(self.graph.shuffle()))
    }

    /// `join` with another keyed stream of the same slide: (key, (v, w)) for every pair of a key's values.
    #[allow(clippy::type_complexity)]
    pub fn join<E, W>(&self, other: &Stream<E>) -> Stream<CoGroup<Shared<D>, Shared<E>, K, V, W, InnerJoin>>
    where
        K: Hash + Eq + StableHash,
        E: DStream<Item = (K, W)> + 'static,
        W: Clone + 'static,
    {
        self.graph.stream(self.up().join(other.up()).with_shuffle(self.graph.shuffle()))
    }

    /// `leftOuterJoin`: as [`join`](Self::join), with (v, None) for keys only in this stream.
    #[allow(clippy::type_complexity)]
    pub fn left_outer_join<E, W>(
        &self,
        other: &Stream<E>,
    ) -> Stream<CoGroup<Shared<D>, Shared<E>, K, V, W, LeftOuterJoin>>
    where
        K: Hash + Eq + StableHash,
        E: DStream<Item = (K, W)> + 'static,
        W: Clone + 'static,
    {
        self.graph.stream(self.up().left_outer_join(other.up()).with_shuffle(self.graph.shuffle()))
    }

    /// `rightOuterJoin`: as [`join`](Self::join), with (None, w) for keys only in `other`.
    #[allow(clippy::type_complexity)]
    pub fn right_outer_join<E, W>(
        &self,
        other: &Stream<E>,
    ) -> Stream<CoGroup<Shared<D>, Shared<E>, K, V, W, RightOuterJoin>>
    where
        K: Hash + Eq + StableHash,
        E: DStream<Item = (K, W)> + 'static,
        W: Clone + 'static,
    {
        self.graph.stream(self.up().right_outer_join(other.up()).with_shuffle(self.graph.shuffle()))
    }

    /// `fullOuterJoin`: as [`join`](Self::join), with (v, None) or (None, w) for keys in one stream only.
    #[allow(clippy::type_complexity)]
    pub fn full_outer_join<E, W>(
        &self,
        other: &Stream<E>,
    ) -> Stream<CoGroup<Shared<D>, Shared<E>, K, V, W, FullOuterJoin>>
    where
        K: Hash + Eq + StableHash,
        E: DStream<Item = (K, W)> + 'static,
        W: Clone + 'static,
    {
        self.graph.stream(self.up().full_outer_join(other.up()).with_shuffle(self.graph.shuffle()))
    }

    /// `reduceByKey` within each batch; keys in the order of their first element.
    pub fn reduce_by_key<F>(&self, f: F) -> Stream<ReduceByKey<Shared<D>, K, V, F>>
    where
        K: Hash + Eq + StableHash,
        F: FnMut(V, V) -> V + 'static,
    {
        self.graph.stream(self.up().reduce_by_key(f).with_shuffle(self.graph.shuffle()))
    }

    /// `reduceByKeyAndWindow(f, length, slide)` without an inverse: reduce per batch, window, reduce again.
    #[allow(clippy::type_complexity)]
    pub fn reduce_by_key_and_window<F>(
        &self,
        f: F,
        length: Duration,
        slide: Duration,
    ) -> Stream<ReduceByKey<Window<ReduceByKey<Shared<D>, K, V, F>>, K, V, F>>
    where
        K: Hash + Eq + StableHash + Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
        F: FnMut(V, V) -> V + Clone + 'static,
    {
        let g = f.clone();
        self.graph.stream(reduce_by_key_and_window_with(self.up(), f, g, length, slide, self.graph.shuffle()))
    }

    /// `reduceByKeyAndWindow(f, inverse, length, slide)`: the previous window minus the batches that left plus
    /// those that entered; keys whose value `filter` refuses are dropped. Output sorted by key.
    #[allow(clippy::type_complexity)]
    pub fn reduce_by_key_and_window_inv<F, G, H>(
        &self,
        f: F,
        inverse: G,
        length: Duration,
        slide: Duration,
        filter: Option<H>,
    ) -> Stream<ReducedWindow<Shared<D>, K, V, F, G, H>>
    where
        K: Hash + Eq + Ord + StableHash + fmt::Debug + Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
        F: FnMut(V, V) -> V + 'static,
        G: FnMut(V, V) -> V + 'static,
        H: FnMut(&(K, V)) -> bool + 'static,
    {
        let op = self.up().reduce_by_key_and_window_inv(f, inverse, length, slide, filter);
        self.graph.stream(op.with_shuffle(self.graph.shuffle()))
    }

    /// `updateStateByKey`: `f(new values, old state)` for every key with state or new values; `None` removes
    /// the key. Output: every (key, state), sorted by key.
    pub fn update_state_by_key<S, F>(&self, f: F) -> Stream<UpdateStateByKey<Shared<D>, K, V, S, F>>
    where
        K: Ord + StableHash + Serialize + DeserializeOwned,
        S: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(&[V], Option<S>) -> Option<S> + 'static,
    {
        self.graph.stream(self.up().update_state_by_key(f).with_shuffle(self.graph.shuffle()))
    }

    /// `updateStateByKey(f, partitioner, initialRDD)`: as [`update_state_by_key`](Self::update_state_by_key), the
    /// first batch that computes seeing `initial` as the previous state.
    pub fn update_state_by_key_with_initial<S, F>(
        &self,
        f: F,
        initial: Vec<(K, S)>,
    ) -> Stream<UpdateStateByKey<Shared<D>, K, V, S, F>>
    where
        K: Ord + StableHash + Serialize + DeserializeOwned,
        S: Clone + Serialize + DeserializeOwned + 'static,
        F: FnMut(&[V], Option<S>) -> Option<S> + 'static,
    {
        self.graph.stream(self.up().update_state_by_key_with_initial(f, initial).with_shuffle(self.graph.shuffle()))
    }

    /// `mapWithState(spec)`: the spec's function once per record, with the key's state; see [`StateSpec`].
    #[allow(clippy::type_complexity)]
    pub fn map_with_state<S, F>(&self, spec: StateSpec<F, K, S>) -> Stream<MapWithState<Shared<D>, F, K, S, F::Output>>
    where
        K: Hash + Eq + Ord + StableHash + fmt::Debug + Serialize + DeserializeOwned,
        S: Serialize + DeserializeOwned + 'static,
        F: MappingFunction<K, V, S> + 'static,
        F::Output: Clone + 'static,
    {
        self.graph.stream(self.up().map_with_state(spec))
    }
}

impl<P, F, K, S, M> Stream<MapWithState<P, F, K, S, M>>
where
    MapWithState<P, F, K, S, M>: DStream<Item = M> + 'static,
    M: Clone + 'static,
    K: Hash + Eq + Ord + Clone + StableHash + 'static,
    S: Clone + 'static,
{
    /// `stateSnapshots()`: every live (key, state) after each batch, sorted by key.
    #[allow(clippy::type_complexity)]
    pub fn state_snapshots(&self) -> Stream<Snapshots<MapWithState<P, F, K, S, M>>> {
        self.graph.stream(Snapshots::of(self.up()))
    }

    /// Calls `f` with the operator's state (e.g. to read a key's state between batches, in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&crate::state::StateMap<K, S>) -> R) -> R {
        self.node.with(|m| f(m.state()))
    }
}

impl<D: DStream + Partitioned> Stream<D> {
    /// The number of shuffle partitions of this keyed operator (Spark's `numPartitions` argument, as in
    /// `reduceByKey(f, n)`; 2 by default, Spark's `defaultParallelism` under `local[2]`): under Spark's output
    /// order, the output comes partition by partition (`hashCode` mod `n`).
    pub fn partitions(&self, n: usize) -> &Self {
        self.node.with(|d| d.shuffle().set_partitions(n));
        self
    }
}

impl<D: DStream + Stateful> Stream<D> {
    /// Names this stateful operator, so that its checkpointed state follows it when the graph changes shape (by
    /// default an operator is known by its kind and position).
    pub fn name(&self, name: &str) -> &Self {
        self.node.with_mut(|d| d.set_name(name));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchTimer, Engine, ManualClock, RecordBatch};

    fn run(graph: &GraphBuilder, batches: &[&[&str]]) -> String {
        let interval = Duration::from_secs(1);
        let mut engine = Engine::new(graph.build(), BatchTimer::first_start(Time(0), interval));
        let mut printed = String::new();
        let mut offset = 0;
        for (i, values) in batches.iter().enumerate() {
            let mut batch = RecordBatch::new();
            for v in values.iter() {
                batch.push(0, offset, 0, None, v.as_bytes());
                offset += 1;
            }
            let t = Time((i as i64 + 1) * 1000);
            printed.push_str(&engine.run_batch(t, &mut batch, &ManualClock::new(t)).unwrap().printed);
        }
        printed
    }

    #[test]
    fn one_stream_feeds_several_outputs_and_is_computed_once() {
        let g = GraphBuilder::new();
        let calls = Rc::new(RefCell::new(0));
        let c = calls.clone();
        let n = g.records().map(move |r| {
            *c.borrow_mut() += 1;
            r.value.len() as i64
        });
        n.print(5);
        n.count().print(1);
        let doubled = n.map(|x| x * 2);
        doubled.union(&n).print(10);
        let out = run(&g, &[&["a", "bb"]]);
        let want =
            "-------------------------------------------\nTime: 1000 ms\n-------------------------------------------\n";
        assert_eq!(out, format!("{want}1\n2\n\n{want}2\n\n{want}2\n4\n1\n2\n\n"));
        assert_eq!(*calls.borrow(), 2, "the shared stream runs once per record");
    }

    #[test]
    fn mapped_and_snapshot_streams_of_one_map_with_state() {
        let g = GraphBuilder::new();
        let pairs = g.records().map(|r| (String::from_utf8_lossy(r.value).into_owned(), 1i64));
        let spec = StateSpec::function(|_k: &String, v: Option<i64>, s: &mut crate::State<'_, i64>| {
            let n = s.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
            s.update(n)?;
            Ok(n)
        });
        let counts = pairs.map_with_state(spec);
        counts.print(10);
        counts.state_snapshots().print(10);
        let out = run(&g, &[&["a", "b", "a"], &["b"]]);
        let h = |t: i64| {
            format!("-------------------------------------------\nTime: {t} ms\n-------------------------------------------\n")
        };
        let want =
            format!("{}1\n1\n2\n\n{}(a,2)\n(b,1)\n\n{}2\n\n{}(a,2)\n(b,2)\n\n", h(1000), h(1000), h(2000), h(2000));
        assert_eq!(out, want);
    }

    #[test]
    fn joins_count_by_value_and_reduce_as_stream_methods() {
        // One input read by both sides of the join: "k=v" records; the left side keeps v < 10, the right v >= 10.
        // Batch a=1 b=2 a=10 c=30: left a [1], b [2]; right a [10], c [30]. leftOuterJoin: (a,(1,Some(10)))
        // (b,(2,None)); fullOuterJoin adds (c,(None,Some(30))); countByValue of the keys: a 2, b 1, c 1 (first
        // appearance); reduce of the values: 43.
        let g = GraphBuilder::new();
        let kv = g.records().map(|r| {
            let s = String::from_utf8_lossy(r.value).into_owned();
            let (k, v) = s.split_once('=').unwrap();
            (k.to_string(), v.parse::<i64>().unwrap())
        });
        let left = kv.filter(|(_, v)| *v < 10);
        let right = kv.filter(|(_, v)| *v >= 10);
        left.left_outer_join(&right).print(10);
        left.full_outer_join(&right).print(10);
        kv.map(|(k, _)| k).count_by_value().print(10);
        kv.map(|(_, v)| v).reduce(|a, b| a + b).print(10);
        let out = run(&g, &[&["a=1", "b=2", "a=10", "c=30"]]);
        let h =
            "-------------------------------------------\nTime: 1000 ms\n-------------------------------------------\n";
        let want = format!(
            "{h}(a,(1,Some(10)))\n(b,(2,None))\n\n{h}(a,(Some(1),Some(10)))\n(b,(Some(2),None))\n(c,(None,Some(30)))\n\n\
             {h}(a,2)\n(b,1)\n(c,1)\n\n{h}43\n\n"
        );
        assert_eq!(out, want);
    }

    #[test]
    fn windowed_counts_as_stream_methods() {
        // Window 2 s, slide 1 s over x y x | x: countByWindow 3 then 4; countByValueAndWindow (x,2) (y,1) then
        // (x,3) (y,1), sorted.
        let g = GraphBuilder::new();
        let words = g.records().map(|r| String::from_utf8_lossy(r.value).into_owned());
        let (l, s) = (Duration::from_secs(2), Duration::from_secs(1));
        words.count_by_window(l, s).print(10);
        words.count_by_value_and_window(l, s).print(10);
        let out = run(&g, &[&["x", "y", "x"], &["x"]]);
        let h = |t: i64| {
            format!("-------------------------------------------\nTime: {t} ms\n-------------------------------------------\n")
        };
        let want = format!("{}3\n\n{}(x,2)\n(y,1)\n\n{}4\n\n{}(x,3)\n(y,1)\n\n", h(1000), h(1000), h(2000), h(2000));
        assert_eq!(out, want);
    }

    #[test]
    fn the_malformed_policy_applies_to_streams_defined_before_it_was_set() {
        let g = GraphBuilder::new();
        g.records()
            .try_map(|r| {
                std::str::from_utf8(r.value).map_err(|e| e.to_string())?.parse::<i64>().map_err(|e| e.to_string())
            })
            .print(1);
        g.set_malformed_policy(MalformedPolicy::Fail);
        let mut engine = Engine::new(g.build(), BatchTimer::first_start(Time(0), Duration::from_secs(1)));
        let mut batch = RecordBatch::new();
        batch.push(0, 0, 0, None, b"x");
        let err = engine.run_batch(Time(1000), &mut batch, &ManualClock::new(Time(1000))).unwrap_err();
        assert!(err.to_string().contains("partition 0 offset 0"), "{err}");
    }

    #[test]
    fn try_map_reports_refused_records_with_their_position() {
        let g = GraphBuilder::new();
        let n = g.records_of("t").try_map(|r| {
            std::str::from_utf8(r.value).map_err(|e| e.to_string())?.parse::<i64>().map_err(|e| e.to_string())
        });
        n.print(10);
        let mut engine = Engine::new(g.build(), BatchTimer::first_start(Time(0), Duration::from_secs(1)));
        let mut batch = RecordBatch::new();
        batch.push(3, 41, 0, None, b"7");
        batch.push(3, 42, 0, None, b"x");
        let r = engine.run_batch(Time(1000), &mut batch, &ManualClock::new(Time(1000))).unwrap();
        assert_eq!((r.malformed.len(), r.malformed[0].partition, r.malformed[0].offset), (1, 3, 42));
        assert!(r.printed.contains("\n7\n"));
    }
}
