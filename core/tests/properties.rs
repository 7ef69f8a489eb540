//! Property tests: arbitrary sequences of update / remove / no-op records and idle timeouts agree with a plain
//! model map written from SPARK-SEMANTICS.md §2.3-2.4, under both timeout scan policies and any partition count.

mod common;
use common::*;
use dstream_core::{DStreamExt, Duration, Graph, State, StateSpec, TimeoutScan};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// What a record asks the function to do with its key's state.
#[derive(Debug, Clone, Copy)]
enum Op {
    Update(i64),
    Remove,
    Noop,
}

fn op_text(op: Op) -> i64 {
    match op {
        Op::Update(v) => v,
        Op::Remove => 0,
        Op::Noop => -1,
    }
}

/// One emitted event: (key, state seen before the call, timing out).
type Event = (String, Option<i64>, bool);

fn model(
    batches: &[Vec<(String, Op)>],
    timeout: Option<i64>,
    scan_every: i64, // scan when batch index (1-based) is a multiple of this
) -> (Vec<Vec<Event>>, BTreeMap<String, i64>) {
    let mut state: BTreeMap<String, (i64, i64)> = BTreeMap::new(); // key -> (value, last update batch)
    let mut out = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let t = i as i64 + 1;
        let mut events = Vec::new();
        for (k, op) in batch {
            let before = state.get(k).map(|s| s.0);
            events.push((k.clone(), before, false));
            match op {
                Op::Update(v) => {
                    state.insert(k.clone(), (*v, t));
                }
                Op::Remove => {
                    state.remove(k);
                }
                Op::Noop => {
                    if timeout.is_some() {
                        if let Some(s) = state.get_mut(k) {
                            s.1 = t;
                        }
                    }
                }
            }
        }
        if let Some(to) = timeout {
            if t % scan_every == 0 {
                let expired: Vec<String> = state.iter().filter(|(_, s)| t - s.1 > to).map(|(k, _)| k.clone()).collect();
                let mut timed: Vec<Event> = Vec::new();
                for k in expired {
                    let (v, _) = state.remove(&k).expect("present");
                    timed.push((k, Some(v), true));
                }
                events.extend(timed);
            }
        }
        out.push(events);
    }
    (out, state.into_iter().map(|(k, (v, _))| (k, v)).collect())
}

fn engine_run(
    batches: &[Vec<(String, Op)>],
    timeout: Option<i64>,
    scan: TimeoutScan,
    checkpoint_every: i64,
    partitions: usize,
) -> (Vec<Vec<Event>>, BTreeMap<String, i64>) {
    let mut spec = StateSpec::full(|_t, k: &String, v: Option<i64>, st: &mut State<'_, i64>| {
        let before = st.get_option().copied();
        let timing_out = st.is_timing_out();
        match v {
            Some(-1) | None => {}
            Some(0) => st.remove()?,
            Some(x) => st.update(x)?,
        }
        Ok(Some((k.clone(), before, timing_out)))
    })
    .num_partitions(partitions)
    .timeout_scan(scan)
    .checkpoint_interval(Duration(checkpoint_every * 1000));
    if let Some(to) = timeout {
        spec = spec.timeout(Duration(to * 1000));
    }
    let (mapped, snaps) = pairs().map_with_state(spec).with_snapshots();
    let (out, sink) = collector::<Event>();
    let (snap_out, snap_sink) = collector::<(String, i64)>();
    let g = Graph::new().output(mapped.foreach_batch(sink)).output(snaps.foreach_batch(snap_sink));
    let texts: Vec<Vec<String>> =
        batches.iter().map(|b| b.iter().map(|(k, op)| format!("{k}:{}", op_text(*op))).collect()).collect();
    let refs: Vec<Vec<&str>> = texts.iter().map(|b| b.iter().map(String::as_str).collect()).collect();
    let slices: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    run(g, 1000, &slices, 0);
    let mut events: Vec<Vec<Event>> = out.borrow().iter().map(|(_, v)| v.clone()).collect();
    // Timed-out keys come out by partition then key; the model lists them by key.
    for e in events.iter_mut() {
        let split = e.iter().position(|x| x.2).unwrap_or(e.len());
        e[split..].sort();
    }
    let last = snap_out.borrow().last().map(|(_, v)| v.clone()).unwrap_or_default();
    (events, last.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![(1i64..9).prop_map(Op::Update), Just(Op::Remove), Just(Op::Noop)]
}

fn batches() -> impl Strategy<Value = Vec<Vec<(String, Op)>>> {
    let rec = (prop::sample::select(vec!["a", "b", "c", "d", "é"]).prop_map(String::from), op());
    prop::collection::vec(prop::collection::vec(rec, 0..6), 1..30)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_batch_scan_agrees_with_the_model(
        b in batches(), timeout in prop::option::of(1i64..5), parts in 1usize..5,
    ) {
        let want = model(&b, timeout, 1);
        let got = engine_run(&b, timeout, TimeoutScan::EveryBatch, 10, parts);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn spark_compatible_scan_agrees_with_the_model(
        b in batches(), timeout in prop::option::of(1i64..5), every in 1i64..6, parts in 1usize..5,
    ) {
        let want = model(&b, timeout, every);
        let got = engine_run(&b, timeout, TimeoutScan::SparkCompatible, every, parts);
        prop_assert_eq!(got, want);
    }
}
