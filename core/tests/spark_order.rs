//! Spark's output order (`OutputOrder::SparkPartitions`) against the real Spark Streaming: the expected outputs in
//! `tests/spark/*.out` were printed by Spark 4.0.1 (`local[2]`, its ManualClock, one input partition) running
//! `tests/spark/Oracle.java` over the batches in `tests/spark/*.in`; see `tests/spark/README.md`.

use dstream_core::graph::{GraphBuilder, Stream};
use dstream_core::jvm::JvmDisplay;
use dstream_core::{
    BatchTimer, Clock, DStream, Duration, Engine, ManualClock, OutputOrder, RecordBatch, State, StateError, StateSpec,
};
use std::cell::RefCell;
use std::rc::Rc;

type Out = Rc<RefCell<String>>;
type Keep = fn(&(String, i64)) -> bool;

/// Prints each batch's elements as Oracle.java does: `== NAME @ TIME`, then one element per line.
fn out<D>(s: &Stream<D>, name: &'static str, text: &Out)
where
    D: DStream + 'static,
    D::Item: Clone + JvmDisplay + 'static,
{
    let text = text.clone();
    s.foreach_batch(move |t, items| {
        let mut b = text.borrow_mut();
        b.push_str(&format!("== {name} @ {}\n", t.0));
        for x in items {
            x.write_jvm(&mut b);
            b.push('\n');
        }
    });
}

/// Runs the graph over the batches of a `.in` file (one batch a line, words separated by spaces, `-` empty);
/// returns what it printed.
fn run(graph: &GraphBuilder, input: &str) -> String {
    let mut printed = String::new();
    let interval = Duration::from_secs(1);
    let mut clock = ManualClock::default();
    let mut engine = Engine::new(graph.build(), BatchTimer::first_start(clock.now(), interval));
    let mut offset = 0;
    for line in input.lines() {
        let mut batch = RecordBatch::new();
        for w in line.split(' ').filter(|w| !w.is_empty() && *w != "-") {
            batch.push(0, offset, 0, None, w.as_bytes());
            offset += 1;
        }
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("one batch per interval");
        printed.push_str(&engine.run_batch(t, &mut batch, &clock).expect("batch runs").printed);
    }
    printed
}

fn words(g: &GraphBuilder) -> Stream<impl DStream<Item = String>> {
    g.records().map(|r| String::from_utf8_lossy(r.value).into_owned())
}

fn sum(vs: &[i64], s: Option<i64>) -> Option<i64> {
    Some(s.unwrap_or(0) + vs.iter().sum::<i64>())
}

fn section(all: &str, name: &str) -> String {
    let mut keep = false;
    let mut s = String::new();
    for l in all.lines() {
        if let Some(h) = l.strip_prefix("== ") {
            keep = h.split(" @ ").next() == Some(name);
        }
        if keep {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

fn check(got: &str, want: &str, names: &[&str]) {
    for name in names {
        assert_eq!(section(got, name), section(want, name), "{name}");
    }
}

#[test]
fn keyed_outputs_in_sparks_order_with_string_keys() {
    let g = GraphBuilder::new();
    g.set_output_order(OutputOrder::SparkPartitions);
    let text: Out = Rc::default();
    let w = words(&g);
    let pairs = w.map(|w| (w, 1i64));
    out(&pairs.reduce_by_key(|a, b| a + b), "reduce_by_key", &text);
    out(pairs.reduce_by_key(|a, b| a + b).partitions(3), "reduce_by_key_3", &text);
    out(&w.count_by_value(), "count_by_value", &text);
    out(&pairs.update_state_by_key(sum), "update_state_by_key", &text);
    out(pairs.update_state_by_key(sum).partitions(3), "update_state_by_key_3", &text);
    let (l, s) = (Duration::from_secs(2), Duration::from_secs(1));
    out(&pairs.reduce_by_key_and_window(|a, b| a + b, l, s), "window", &text);
    let no_filter: Option<Keep> = None;
    out(&pairs.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, l, s, no_filter), "window_inv", &text);
    let spec = StateSpec::function(
        |k: &String, v: Option<i64>, st: &mut State<'_, i64>| -> Result<(String, i64), StateError> {
            let n = st.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
            st.update(n)?;
            Ok((k.clone(), n))
        },
    )
    .output_order(OutputOrder::SparkPartitions);
    out(&pairs.map_with_state(spec).state_snapshots(), "snapshots", &text);
    run(&g, include_str!("spark/keyed.in"));
    let want = include_str!("spark/keyed.out");
    check(
        &text.borrow(),
        want,
        &[
            "reduce_by_key",
            "reduce_by_key_3",
            "count_by_value",
            "update_state_by_key",
            "update_state_by_key_3",
            "window",
            "window_inv",
            "snapshots",
        ],
    );
}

#[test]
fn keyed_outputs_in_sparks_order_with_long_keys() {
    // Scala Long keys: hashCode (v ^ (v >>> 32)), negative ones included.
    let g = GraphBuilder::new();
    g.set_output_order(OutputOrder::SparkPartitions);
    let text: Out = Rc::default();
    let pairs = words(&g).map(|w| (w.parse::<i64>().expect("a number"), 1i64));
    out(&pairs.reduce_by_key(|a, b| a + b), "reduce_by_key", &text);
    out(&pairs.update_state_by_key(sum), "update_state_by_key", &text);
    run(&g, include_str!("spark/longs.in"));
    check(&text.borrow(), include_str!("spark/longs.out"), &["reduce_by_key", "update_state_by_key"]);
}

#[test]
fn the_default_order_is_not_sparks() {
    // The Spark runs above are not in dstream's own order (first appearance, or sorted by key), so the tests
    // that match them check the order and not only the elements.
    let g = GraphBuilder::new();
    let text: Out = Rc::default();
    let pairs = words(&g).map(|w| (w, 1i64));
    out(&pairs.reduce_by_key(|a, b| a + b), "reduce_by_key", &text);
    out(&pairs.update_state_by_key(sum), "update_state_by_key", &text);
    run(&g, include_str!("spark/keyed.in"));
    let want = include_str!("spark/keyed.out");
    for name in ["reduce_by_key", "update_state_by_key"] {
        let (got, spark) = (section(&text.borrow(), name), section(want, name));
        assert_ne!(got, spark, "{name}");
        let sorted = |s: &str| {
            let mut l: Vec<&str> = s.lines().collect();
            l.sort();
            l.join("\n")
        };
        assert_eq!(sorted(&got), sorted(&spark), "{name}: the same elements");
    }
}

#[test]
fn repartition_deals_round_robin_as_spark() {
    // Spark's repartition(n) deals the batch's elements round robin from XORShiftRandom(0).nextInt(n) + 1 and
    // concatenates the n partitions; in dstream's own order it changes nothing.
    let g = GraphBuilder::new();
    g.set_output_order(OutputOrder::SparkPartitions);
    let text: Out = Rc::default();
    let w = words(&g);
    out(&w.repartition(3), "repartition_3", &text);
    out(&w.repartition(2), "repartition_2", &text);
    run(&g, include_str!("spark/misc.in"));
    check(&text.borrow(), include_str!("spark/misc.out"), &["repartition_3", "repartition_2"]);

    let g = GraphBuilder::new();
    let text: Out = Rc::default();
    out(&words(&g).repartition(3), "repartition_3", &text);
    run(&g, "a b c d\n");
    assert_eq!(*text.borrow(), "== repartition_3 @ 1000\na\nb\nc\nd\n");
}

#[test]
fn grouped_outputs_print_as_sparks() {
    // Spark Streaming's groupByKey (and groupByKeyAndWindow) group into ArrayBuffers, cogroup into CompactBuffers,
    // which Scala 2.13 prints as Seq(..); joins are cogroups flattened, in the cogroup's key order.
    let g = GraphBuilder::new();
    g.set_output_order(OutputOrder::SparkPartitions);
    let pairs = words(&g).map(|w| (w, 1i64));
    let other = pairs.filter(|(k, _)| k.as_str() < "m").map_values(|v| v * 10);
    pairs.group_by_key().print(100);
    pairs.cogroup(&other).print(100);
    pairs.join(&other).print(100);
    pairs.left_outer_join(&other).print(100);
    pairs.full_outer_join(&other).print(100);
    pairs.group_by_key_and_window(Duration::from_secs(2), Duration::from_secs(1)).print(100);
    let printed = run(&g, include_str!("spark/grouped.in"));
    assert_eq!(printed, include_str!("spark/grouped.out"));
}

mod props {
    use super::*;
    use dstream_core::jvm::{partition_of, StableHash};
    use proptest::prelude::*;

    type Batches = Vec<Vec<u8>>;
    /// Per batch, each element's (shuffle partition, printed form).
    type PerBatch = Vec<Vec<(usize, String)>>;

    /// Each operator's output per batch, one line per element, with the key's shuffle partition (of 2).
    fn outputs(batches: &Batches, spark: bool) -> Vec<(&'static str, PerBatch)> {
        let g = GraphBuilder::new();
        if spark {
            g.set_output_order(OutputOrder::SparkPartitions);
        }
        let pairs = g.records().map(|r| (String::from_utf8_lossy(r.value).into_owned(), 1i64));
        let other = pairs.filter(|(k, _)| k.len() % 2 == 0).map_values(|v| v * 10);
        let mut all: Vec<(&'static str, Rc<RefCell<PerBatch>>)> = Vec::new();
        macro_rules! keep {
            ($name:expr, $s:expr) => {{
                let o: Rc<RefCell<PerBatch>> = Rc::default();
                let o2 = o.clone();
                $s.foreach_batch(move |_t, items| {
                    o2.borrow_mut().push(
                        items
                            .iter()
                            .map(|x| {
                                let mut s = String::new();
                                x.write_jvm(&mut s);
                                (partition_of(&x.0.stable_hash(), 2), s)
                            })
                            .collect(),
                    )
                });
                all.push(($name, o));
            }};
        }
        let (l, s) = (Duration::from_secs(2), Duration::from_secs(1));
        let no_filter: Option<Keep> = None;
        keep!("reduce_by_key", pairs.reduce_by_key(|a, b| a + b));
        keep!("update_state_by_key", pairs.update_state_by_key(sum));
        keep!("window", pairs.reduce_by_key_and_window(|a, b| a + b, l, s));
        keep!("window_inv", pairs.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, l, s, no_filter));
        keep!("group_by_key", pairs.group_by_key());
        keep!("cogroup", pairs.cogroup(&other));
        keep!("join", pairs.join(&other));
        let text: String = batches
            .iter()
            .map(|b| {
                let w: Vec<String> = b.iter().map(|k| format!("k{k}")).collect();
                if w.is_empty() {
                    "-".to_string()
                } else {
                    w.join(" ")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        run(&g, &format!("{text}\n"));
        all.into_iter().map(|(n, o)| (n, o.borrow().clone())).collect()
    }

    proptest! {
        // Spark's order only reorders: per batch the same elements as dstream's own order, and grouped by shuffle
        // partition (partition 0's keys, then partition 1's).
        #[test]
        fn sparks_order_is_a_grouping_of_the_same_elements(
            batches in prop::collection::vec(prop::collection::vec(0u8..120, 0..80), 1..6),
        ) {
            let (spark, own) = (outputs(&batches, true), outputs(&batches, false));
            for ((name, s), (_, o)) in spark.iter().zip(own.iter()) {
                prop_assert_eq!(s.len(), o.len(), "{}", name);
                for (sb, ob) in s.iter().zip(o.iter()) {
                    let (mut a, mut b) = (sb.clone(), ob.clone());
                    a.sort();
                    b.sort();
                    prop_assert_eq!(a, b, "{}", name);
                    prop_assert!(sb.windows(2).all(|w| w[0].0 <= w[1].0), "{} not grouped: {:?}", name, sb);
                }
            }
        }
    }
}

#[test]
fn timed_out_keys_and_snapshots_in_sparks_order() {
    // mapWithState with a 1 s timeout, scanned at state checkpoints (every 10 batches): 40 keys in batch 1, 16 of
    // them again (and 2 new) in batch 2; all time out at 10 s, partition by partition, each partition's keys of
    // batch 1 first, then those of batch 2, each batch's in its delta map's order.
    let g = GraphBuilder::new();
    let text: Out = Rc::default();
    let pairs = words(&g).map(|w| (w, 1i64));
    let spec = StateSpec::full(
        |_t, k: &String, v: Option<i64>, st: &mut State<'_, i64>| -> Result<Option<(String, i64)>, StateError> {
            if st.is_timing_out() {
                return Ok(Some((k.clone(), -*st.get()?)));
            }
            let n = st.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
            st.update(n)?;
            Ok(Some((k.clone(), n)))
        },
    )
    .timeout(Duration::from_secs(1))
    .output_order(OutputOrder::SparkPartitions);
    let mapped = pairs.map_with_state(spec);
    out(&mapped, "mapped", &text);
    out(&mapped.state_snapshots(), "snapshots", &text);
    run(&g, include_str!("spark/timeouts.in"));
    check(&text.borrow(), include_str!("spark/timeouts.out"), &["mapped", "snapshots"]);
}

#[test]
fn a_dstream_ext_operator_takes_its_own_order() {
    // Without a graph: `.output_order(..)` on the operator gives the same order as the graph-wide setting.
    use dstream_core::{input, DStreamExt, Graph, MalformedPolicy, RecordRef};
    fn word(r: RecordRef<'_>) -> Result<(String, i64), std::convert::Infallible> {
        Ok((String::from_utf8_lossy(r.value).into_owned(), 1))
    }
    let text: Out = Rc::default();
    let t2 = text.clone();
    let sink = move |t: dstream_core::Time, items: &[(String, i64)]| {
        let mut b = t2.borrow_mut();
        b.push_str(&format!("== reduce_by_key @ {}\n", t.0));
        for x in items {
            x.write_jvm(&mut b);
            b.push('\n');
        }
    };
    let op = input(word, MalformedPolicy::Fail).reduce_by_key(|a, b| a + b).output_order(OutputOrder::SparkPartitions);
    let graph = Graph::new().output(op.foreach_batch(sink));
    let interval = Duration::from_secs(1);
    let mut clock = ManualClock::default();
    let mut engine = Engine::new(graph, BatchTimer::first_start(clock.now(), interval));
    let mut offset = 0;
    for line in include_str!("spark/keyed.in").lines() {
        let mut batch = RecordBatch::new();
        for w in line.split(' ').filter(|w| !w.is_empty() && *w != "-") {
            batch.push(0, offset, 0, None, w.as_bytes());
            offset += 1;
        }
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("one batch per interval");
        engine.run_batch(t, &mut batch, &clock).expect("batch runs");
    }
    check(&text.borrow(), include_str!("spark/keyed.out"), &["reduce_by_key"]);
}
