//! Any job's state survives a crash: for random graphs built from the stateful operators (map_with_state with
//! and without timeouts, update_state_by_key, window, reduce_by_key_and_window with and without inverse),
//! crashing at random batches and restoring from a checkpoint (written and read back through the file format)
//! gives exactly the output of the uninterrupted run. The jobs read two topics: each operator reads one of them or
//! their union. And the fingerprint tells jobs apart by their stateful operators only.

use dstream_adapters::checkpoint::{decode, encode, Checkpoint, CheckpointMeta, Fingerprint, JobState, NextOffset};
use dstream_adapters::recovery::{restore_state, save_state};
use dstream_core::checkpoint::InputPrint;
use dstream_core::graph::GraphBuilder;
use dstream_core::record::input_partition;
use dstream_core::{
    BatchTimer, Duration, Engine, Graph, ManualClock, OutputOrder, RecordBatch, State, StateError, StateSpec, Time,
    TimeoutScan,
};
use proptest::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

const INTERVAL: Duration = Duration(1000);

/// One output of a random job.
#[derive(Debug, Clone)]
enum Op {
    /// map_with_state summing values, with an optional timeout (ms) scanned every batch or Spark's way.
    MapWithState {
        parts: usize,
        timeout: Option<i64>,
        every_batch: bool,
        spark_order: bool,
        snapshots: bool,
    },
    UpdateStateByKey,
    Window {
        length: i64,
        slide: i64,
    },
    ReduceWindow {
        length: i64,
        slide: i64,
        inverse: bool,
        filter: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let mult = |max: i64| (1..=max).prop_map(|k| k * 1000);
    prop_oneof![
        (1usize..4, prop::option::of(1i64..4), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(parts, t, every_batch, spark_order, snapshots)| Op::MapWithState {
                parts,
                timeout: t.map(|s| s * 1000),
                every_batch,
                spark_order,
                snapshots
            }
        ),
        Just(Op::UpdateStateByKey),
        (mult(4), mult(3)).prop_map(|(length, slide)| Op::Window { length, slide }),
        (mult(4), mult(3), any::<bool>(), any::<bool>())
            .prop_map(|(length, slide, inverse, filter)| Op::ReduceWindow { length, slide, inverse, filter }),
    ]
}

/// Which topic an operator reads.
#[derive(Debug, Clone, Copy)]
enum Source {
    A,
    B,
    Both,
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![Just(Source::A), Just(Source::B), Just(Source::Both)]
}

/// What every output collected: per output, per batch with output, its elements as text.
type Collected = Rc<RefCell<Vec<Vec<(i64, Vec<String>)>>>>;

fn collect<T: std::fmt::Debug>(c: &Collected, i: usize) -> impl FnMut(Time, &[T]) {
    let c = c.clone();
    move |t, items| c.borrow_mut()[i].push((t.0, items.iter().map(|x| format!("{x:?}")).collect()))
}

/// The job for `ops`, every output collected into `c`; each operator reads topic `a`, `b` or both.
fn build(ops: &[(Op, Source)], c: &Collected) -> Graph {
    let g = GraphBuilder::new();
    let parse = |r: dstream_core::graph::ConsumerRecord<'_>| {
        let s = std::str::from_utf8(r.value).unwrap();
        let (k, v) = s.split_once(':').unwrap();
        (format!("{k}{}", r.topic), v.parse::<i64>().unwrap())
    };
    let (a, b) = (g.records_of("a").map(parse), g.records_of("b").map(parse));
    let both = a.union(&b);
    let mut n = 0;
    let mut next = || {
        c.borrow_mut().push(Vec::new());
        n += 1;
        n - 1
    };
    for (op, source) in ops {
        // One type for the three sources: the union of both topics, kept to the topic(s) the operator reads.
        let source = *source;
        let pairs = both.filter(move |(k, _): &(String, i64)| match source {
            Source::A => k.ends_with('a'),
            Source::B => k.ends_with('b'),
            Source::Both => true,
        });
        match op {
            Op::MapWithState { parts, timeout, every_batch, spark_order, snapshots } => {
                let sum = |_t: Time, k: &String, v: Option<i64>, s: &mut State<'_, i64>| {
                    let Some(v) = v else { return Ok(Some((k.clone(), -1))) };
                    let n = s.get_option().copied().unwrap_or(0) + v;
                    s.update(n)?;
                    Ok::<_, StateError>(Some((k.clone(), n)))
                };
                let mut spec = StateSpec::full(sum).num_partitions(*parts);
                if let Some(t) = timeout {
                    spec = spec.timeout(Duration(*t));
                }
                if *every_batch {
                    spec = spec.timeout_scan(TimeoutScan::EveryBatch);
                } else {
                    spec = spec.checkpoint_interval(Duration(2000));
                }
                if *spark_order {
                    spec = spec.output_order(OutputOrder::SparkPartitions);
                }
                let mapped = pairs.map_with_state(spec);
                mapped.foreach_batch(collect(c, next()));
                if *snapshots {
                    mapped.state_snapshots().foreach_batch(collect(c, next()));
                }
            }
            Op::UpdateStateByKey => {
                let s = pairs.update_state_by_key(|vs: &[i64], old: Option<i64>| {
                    let n = old.unwrap_or(0) + vs.iter().sum::<i64>();
                    (n != 3).then_some(n)
                });
                s.foreach_batch(collect(c, next()));
            }
            Op::Window { length, slide } => {
                pairs.window(Duration(*length), Duration(*slide)).count().foreach_batch(collect(c, next()));
                pairs.window(Duration(*length), Duration(*slide)).foreach_batch(collect(c, next()));
            }
            Op::ReduceWindow { length, slide, inverse, filter } => {
                let (l, s) = (Duration(*length), Duration(*slide));
                if *inverse {
                    let f = filter.then_some(|kv: &(String, i64)| kv.1 != 0);
                    pairs
                        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, l, s, f)
                        .foreach_batch(collect(c, next()));
                } else {
                    pairs.reduce_by_key_and_window(|a, b| a + b, l, s).foreach_batch(collect(c, next()));
                }
            }
        }
    }
    g.build()
}

/// Per batch: (key, value, of topic `b` rather than `a`).
type Input = Vec<Vec<(u8, i64, bool)>>;

fn batches() -> impl Strategy<Value = Input> {
    prop::collection::vec(prop::collection::vec((0u8..4, -3i64..4, any::<bool>()), 0..6), 1..14)
}

/// The batch of `items`: topic `a` is input 0 (partition 0), `b` input 1; `offsets` are each topic's next offset.
fn fill(batch: &mut RecordBatch, items: &[(u8, i64, bool)], offsets: &mut [i64; 2]) {
    batch.clear();
    for (k, v, of_b) in items {
        let input = usize::from(*of_b);
        let value = format!("{}:{v}", (b'a' + k) as char);
        batch.push(input_partition(input, 0), offsets[input], 0, None, value.as_bytes());
        offsets[input] += 1;
    }
}

/// What a run gave: each output's batches, and the error of the batch that failed the job, if one did.
type RunOutput = (Vec<Vec<(i64, Vec<String>)>>, Option<String>);

/// Runs every batch, crashing after each batch in `crashes`: the state is saved as a checkpoint file would hold
/// it, the job is built anew and restored from it, and the run continues on the same grid. A batch that fails
/// ends the run (as Spark, `reduce_by_key_and_window` with a filter fails on values that cancel).
fn run(ops: &[(Op, Source)], input: &[Vec<(u8, i64, bool)>], crashes: &[usize]) -> RunOutput {
    let mut outputs: Vec<Vec<(i64, Vec<String>)>> = Vec::new();
    let mut c: Collected = Rc::new(RefCell::new(Vec::new()));
    let mut engine = Engine::new(build(ops, &c), BatchTimer::first_start(Time(0), INTERVAL));
    let mut batch = RecordBatch::new();
    let mut offset = [0i64; 2];
    let take = |c: &Collected, outputs: &mut Vec<Vec<(i64, Vec<String>)>>| {
        let got = std::mem::take(&mut *c.borrow_mut());
        if outputs.is_empty() {
            outputs.resize(got.len(), Vec::new());
        }
        for (o, g) in outputs.iter_mut().zip(got) {
            o.extend(g);
        }
    };
    for (i, items) in input.iter().enumerate() {
        let t = Time((i as i64 + 1) * INTERVAL.0);
        fill(&mut batch, items, &mut offset);
        if let Err(e) = engine.run_batch(t, &mut batch, &ManualClock::new(t)) {
            take(&c, &mut outputs);
            return (outputs, Some(e.to_string()));
        }
        if crashes.contains(&i) {
            let fingerprint = print_of(engine.job_mut());
            let state = save_state(engine.job_mut()).unwrap();
            let next_offsets = vec![
                NextOffset { partition: 0, offset: offset[0] },
                NextOffset { partition: input_partition(1, 0), offset: offset[1] },
            ];
            let meta = CheckpointMeta {
                leader_epochs: Vec::new(),
                fingerprint: fingerprint.clone(),
                time: t,
                zero: Time(0),
                interval: INTERVAL,
                next_offsets,
                pending: vec![],
            };
            meta.check().unwrap();
            let bytes = encode(&Checkpoint { meta: meta.clone(), state }).unwrap();
            take(&c, &mut outputs);
            // The process dies here; a new one builds the same job and restores the state into it.
            drop(engine);
            let loaded: Checkpoint<JobState> = decode(&bytes).unwrap();
            assert_eq!(loaded.meta, meta, "both topics' inputs and offsets come back from the file");
            c = Rc::new(RefCell::new(Vec::new()));
            let mut job = build(ops, &c);
            assert_eq!(print_of(&mut job), loaded.meta.fingerprint);
            restore_state(&mut job, &loaded.state).unwrap();
            engine = Engine::new(job, BatchTimer::resume(Time(0), INTERVAL, t));
        }
    }
    take(&c, &mut outputs);
    (outputs, None)
}

/// The fingerprint of a job reading topics `a` (1 partition) and `b` (1 partition).
fn print_of(job: &mut Graph) -> Fingerprint {
    let b = InputPrint { topic: "b".into(), partitions: 1, topic_id: None };
    Fingerprint::of_job("a", 1, "graph", job, INTERVAL).with_more_inputs(vec![b])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_restored_job_continues_exactly_as_the_uninterrupted_one(
        ops in prop::collection::vec((op(), source()), 1..4),
        input in batches(),
        crashes in prop::collection::vec(0usize..14, 0..4),
    ) {
        let whole = run(&ops, &input, &[]);
        let crashed = run(&ops, &input, &crashes);
        prop_assert_eq!(crashed, whole);
    }
}

#[test]
fn a_lost_operator_state_is_noticed() {
    // Mutation check of the property above: restoring into a job without the window's state differs.
    let ops = [(Op::ReduceWindow { length: 3000, slide: 1000, inverse: true, filter: false }, Source::Both)];
    let input = vec![vec![(0, 1, false)], vec![(0, 2, true)], vec![], vec![]];
    let whole = run(&ops, &input, &[]).0;
    let c: Collected = Rc::new(RefCell::new(Vec::new()));
    let mut engine = Engine::new(build(&ops, &c), BatchTimer::first_start(Time(0), INTERVAL));
    let mut batch = RecordBatch::new();
    let mut offset = [0i64; 2];
    for (i, items) in input.iter().enumerate() {
        let t = Time((i as i64 + 1) * 1000);
        fill(&mut batch, items, &mut offset);
        engine.run_batch(t, &mut batch, &ManualClock::new(t)).unwrap();
        if i == 1 {
            engine = Engine::new(build(&ops, &c), BatchTimer::resume(Time(0), INTERVAL, t));
        }
    }
    assert_ne!(c.borrow().concat(), whole.concat());
}

#[allow(clippy::type_complexity)]
fn sum_spec() -> StateSpec<
    dstream_core::stream::SimpleFn<impl FnMut(&String, Option<i64>, &mut State<'_, i64>) -> Result<i64, StateError>>,
    String,
    i64,
> {
    StateSpec::function(|_k: &String, v: Option<i64>, s: &mut State<'_, i64>| {
        let n = s.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
        s.update(n)?;
        Ok(n)
    })
}

/// The fingerprint of a small job: pairs, map_with_state (`timeout`), optionally a window, printed `print` times.
fn fingerprint(timeout: Option<i64>, window: Option<i64>, print: usize, name: Option<&str>, scale: i64) -> Fingerprint {
    let g = GraphBuilder::new();
    let pairs = g.records().map(move |r| (String::from_utf8_lossy(r.value).into_owned(), scale));
    let mut spec = sum_spec();
    if let Some(t) = timeout {
        spec = spec.timeout(Duration(t));
    }
    let m = pairs.map_with_state(spec);
    if let Some(n) = name {
        m.name(n);
    }
    m.print(print);
    if let Some(l) = window {
        pairs.window(Duration(l), Duration(1000)).print(print);
    }
    Fingerprint::of_job("t", 1, "app", &mut g.build(), INTERVAL)
}

#[test]
fn fingerprints_differ_by_stateful_operators_only() {
    let base = fingerprint(None, None, 10, None, 1);
    // Stateless changes: the print count, what a map closure computes.
    assert_eq!(fingerprint(None, None, 3, None, 1), base);
    assert_eq!(fingerprint(None, None, 10, None, 7), base);
    // A state-defining parameter changed: refused, naming the operator and the parameter.
    let d: Vec<String> =
        base.differences(&fingerprint(Some(5000), None, 10, None, 1)).iter().map(|d| d.to_string()).collect();
    assert!(d.contains(&r#"map_with_state#0.timeout: checkpoint has "none", this run has "5s""#.to_string()), "{d:?}");
    // A stateful operator added: named by its id and kind.
    let d: Vec<String> =
        base.differences(&fingerprint(None, Some(3000), 10, None, 1)).iter().map(|d| d.to_string()).collect();
    assert!(d.contains(&r#"window#1: checkpoint has "(absent)", this run has "window""#.to_string()), "{d:?}");
    assert!(d.contains(&r#"window#1.length: checkpoint has "(absent)", this run has "3s""#.to_string()), "{d:?}");
    // A window of another length is another job.
    let w = fingerprint(None, Some(3000), 10, None, 1);
    let d = w.differences(&fingerprint(None, Some(4000), 10, None, 1));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].field, "window#1.length");
    // A name is the operator's id.
    let named = fingerprint(None, None, 10, Some("sums"), 1);
    assert!(named.params.iter().any(|(k, v)| k == "sums" && v == "map_with_state"), "{:?}", named.params);
}
