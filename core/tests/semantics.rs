//! Golden tests for SPARK-SEMANTICS.md: windows (§3, WindowOperationsSuite), the timeout example (§2.4,
//! MapWithStateSuite "state timing out"), state removal, snapshots and the `State` errors inside a job.
//! Every expected value below is worked out by hand from the rules in the comments, not taken from a run.

mod common;
use common::*;
use dstream_core::{DStreamExt, Duration, Graph, JobError, StateError, StateSpec, TimeoutScan};

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn window_length_4_slide_2() {
    // Batch i (1 s) holds element i. Output at T with (T - zero) % 2 s == 0 is the union of batches in (T - 4 s, T].
    // T=2: batches at 1,2 -> {0,1}; T=4: 1..4 -> {0..3}; T=6: 3..6 -> {2..5}; T=8: 5..8 -> {4,5}.
    let (out, sink) = collector::<i64>();
    let g = Graph::new().output(pairs().map(|(_, v)| v).window(Duration(4000), Duration(2000)).foreach_batch(sink));
    run(g, 1000, &[&["x:0"], &["x:1"], &["x:2"], &["x:3"], &["x:4"], &["x:5"]], 2);
    let got = out.borrow().clone();
    assert_eq!(got, vec![(2000, vec![0, 1]), (4000, vec![0, 1, 2, 3]), (6000, vec![2, 3, 4, 5]), (8000, vec![4, 5])]);
}

#[test]
fn window_length_2_slide_3() {
    // T=3: (1,3] -> {1,2}; T=6: (4,6] -> {4,5}.
    let (out, sink) = collector::<i64>();
    let g = Graph::new().output(pairs().map(|(_, v)| v).window(Duration(2000), Duration(3000)).foreach_batch(sink));
    run(g, 1000, &[&["x:0"], &["x:1"], &["x:2"], &["x:3"], &["x:4"], &["x:5"]], 0);
    assert_eq!(out.borrow().clone(), vec![(3000, vec![1, 2]), (6000, vec![4, 5])]);
}

#[test]
fn window_must_be_a_multiple_of_the_batch_interval() {
    let g = Graph::new().output(pairs().window(Duration(1500), Duration(1000)).print(10));
    let interval = Duration(1000);
    let mut clock = dstream_core::ManualClock::default();
    let mut e =
        dstream_core::Engine::new(g, dstream_core::BatchTimer::first_start(dstream_core::Clock::now(&clock), interval));
    clock.advance(interval);
    let err = e.run_batch(dstream_core::Time(1000), &mut dstream_core::RecordBatch::new(), &clock).unwrap_err();
    assert!(matches!(err, dstream_core::EngineError::Job { source: JobError::Config(_), .. }), "{err}");
}

const LARGER_SLIDE: &[&[&str]] = &[&["a:1"], &["a:2"], &["a:3"], &["a:4"], &["a:5"], &["a:6"], &[], &[]];

#[test]
fn reduce_by_key_and_window_larger_slide() {
    // Window 4 s, slide 2 s: T=2: 1+2=3; T=4: 1+2+3+4=10; T=6: 3+4+5+6=18; T=8: 5+6=11.
    let want = vec![
        (2000, vec![(s("a"), 3)]),
        (4000, vec![(s("a"), 10)]),
        (6000, vec![(s("a"), 18)]),
        (8000, vec![(s("a"), 11)]),
    ];
    let (out, sink) = collector::<(String, i64)>();
    let g = Graph::new()
        .output(pairs().reduce_by_key_and_window(|a, b| a + b, Duration(4000), Duration(2000)).foreach_batch(sink));
    run(g, 1000, LARGER_SLIDE, 0);
    assert_eq!(out.borrow().clone(), want);

    let (out, sink) = collector::<(String, i64)>();
    let g = Graph::new().output(
        pairs()
            .reduce_by_key_and_window_inv(
                |a, b| a + b,
                |a, b| a - b,
                Duration(4000),
                Duration(2000),
                None::<fn(&(String, i64)) -> bool>,
            )
            .foreach_batch(sink),
    );
    run(g, 1000, LARGER_SLIDE, 0);
    assert_eq!(out.borrow().clone(), want);
}

const KEYS_LEAVE: &[&[&str]] = &[&["a"], &["a", "b"], &["a", "b", "c"], &["a", "b"], &["b"], &[]];

#[test]
fn reduce_by_key_and_window_keys_that_leave() {
    // Window 2 s, slide 1 s, counts. Window contents by T:
    // 1: {a}; 2: {a},{a,b}; 3: {a,b},{a,b,c}; 4: {a,b,c},{a,b}; 5: {a,b},{b}; 6: {b},{}.
    let (out, sink) = collector::<(String, i64)>();
    let g = Graph::new()
        .output(pairs().reduce_by_key_and_window(|a, b| a + b, Duration(2000), Duration(1000)).foreach_batch(sink));
    run(g, 1000, KEYS_LEAVE, 0);
    let mut got = out.borrow().clone();
    for (_, v) in got.iter_mut() {
        v.sort();
    }
    let want = vec![
        (1000, vec![(s("a"), 1)]),
        (2000, vec![(s("a"), 2), (s("b"), 1)]),
        (3000, vec![(s("a"), 2), (s("b"), 2), (s("c"), 1)]),
        (4000, vec![(s("a"), 2), (s("b"), 2), (s("c"), 1)]),
        (5000, vec![(s("a"), 1), (s("b"), 2)]),
        (6000, vec![(s("b"), 1)]),
    ];
    assert_eq!(got, want);
}

#[test]
fn reduce_by_key_and_window_with_inverse_keeps_zeros_unless_filtered() {
    // With an inverse, a key stays with value 0 once it has left (Spark's WOS expects ("a",0)).
    type KeepFn = fn(&(String, i64)) -> bool;
    let run_inv = |filter: Option<KeepFn>| {
        let (out, sink) = collector::<(String, i64)>();
        let g = Graph::new().output(
            pairs()
                .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, Duration(2000), Duration(1000), filter)
                .foreach_batch(sink),
        );
        run(g, 1000, KEYS_LEAVE, 0);
        let got = out.borrow().clone();
        got
    };
    let got = run_inv(None);
    assert_eq!(got[4], (5000, vec![(s("a"), 1), (s("b"), 2), (s("c"), 0)]));
    assert_eq!(got[5], (6000, vec![(s("a"), 0), (s("b"), 1), (s("c"), 0)]));
    let got = run_inv(Some(|kv: &(String, i64)| kv.1 != 0));
    assert_eq!(got[4], (5000, vec![(s("a"), 1), (s("b"), 2)]));
    assert_eq!(got[5], (6000, vec![(s("b"), 1)]));
}

#[test]
fn update_state_by_key_visits_every_key_every_batch() {
    // Running count; the function also counts how often it ran per key (state = (count, calls)).
    let (out, sink) = collector::<(String, (i64, i64))>();
    let g = Graph::new().output(
        pairs()
            .update_state_by_key(|vals: &[i64], st: Option<(i64, i64)>| {
                let (c, calls) = st.unwrap_or((0, 0));
                Some((c + vals.iter().sum::<i64>(), calls + 1))
            })
            .foreach_batch(sink),
    );
    run(g, 1000, &[&["a", "b", "a"], &[], &["b"]], 0);
    let got = out.borrow().clone();
    assert_eq!(got[0], (1000, vec![(s("a"), (2, 1)), (s("b"), (1, 1))]));
    assert_eq!(got[1], (2000, vec![(s("a"), (2, 2)), (s("b"), (1, 2))]));
    assert_eq!(got[2], (3000, vec![(s("a"), (2, 3)), (s("b"), (2, 3))]));
}

fn timing_out_run(scan: TimeoutScan) -> Vec<(i64, Vec<String>)> {
    // MapWithStateSuite "state timing out": batch 1 s, timeout 3 s; the function updates on data and emits the key
    // only when it is timing out.
    let mut input: Vec<&[&str]> = vec![&["a", "b", "c"], &["a", "b"], &["a"], &[], &[], &["a"]];
    input.extend(std::iter::repeat_n(&["a"][..], 20));
    let spec = StateSpec::full(|_t, k: &String, v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        if v.is_some() {
            st.update(1)?;
        }
        Ok(if st.is_timing_out() { Some(k.clone()) } else { None })
    })
    .timeout(Duration(3000))
    .timeout_scan(scan);
    let (out, sink) = collector::<String>();
    let g = Graph::new().output(pairs().map_with_state(spec).foreach_batch(sink));
    run(g, 1000, &input, 0);
    let got: Vec<(i64, Vec<String>)> = out.borrow().iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    got
}

#[test]
fn timeouts_spark_compatible_fire_on_the_checkpoint_batch() {
    // c last updated at 1 s, b at 2 s. The scan runs only when (T - zero) is a multiple of 10 s: at T=10 the
    // threshold is 7 s, so b and c expire there, once each; a is refreshed every batch and never expires.
    assert_eq!(timing_out_run(TimeoutScan::SparkCompatible), vec![(10_000, vec![s("b"), s("c")])]);
}

#[test]
fn timeouts_every_batch_fire_as_soon_as_idle_longer_than_timeout() {
    // Strict rule: expire when T - last > 3 s. c (last 1 s) expires at T=5; b (last 2 s) at T=6.
    assert_eq!(timing_out_run(TimeoutScan::EveryBatch), vec![(5000, vec![s("c")]), (6000, vec![s("b")])]);
}

/// The timing-out run's keys timed out per batch, as the operator counts them: (batch time, count) where not 0.
fn timed_out_counts(scan: TimeoutScan) -> Vec<(i64, u64)> {
    use dstream_core::{BatchTimer, Clock, Engine, ManualClock, RecordBatch};
    let mut input: Vec<&[&str]> = vec![&["a", "b", "c"], &["a", "b"], &["a"], &[], &[], &["a"]];
    input.extend(std::iter::repeat_n(&["a"][..], 20));
    let spec = StateSpec::full(|_t, _k: &String, v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        if v.is_some() {
            st.update(1)?;
        }
        Ok::<_, StateError>(None::<()>)
    })
    .timeout(Duration(3000))
    .timeout_scan(scan);
    let g = Graph::new().output(pairs().map_with_state(spec).foreach_batch(|_, _: &[()]| {}));
    let mut clock = ManualClock::default();
    let mut engine = Engine::new(g, BatchTimer::first_start(clock.now(), Duration(1000)));
    let (mut batch, mut offset, mut counts) = (RecordBatch::new(), 0, vec![]);
    for values in &input {
        batch.clear();
        for v in values.iter() {
            batch.push(0, offset, 0, None, v.as_bytes());
            offset += 1;
        }
        clock.advance(Duration(1000));
        let t = engine.poll_due(clock.now()).unwrap();
        engine.run_batch(t, &mut batch, &clock).unwrap();
        let mut n = 0;
        dstream_core::checkpoint::for_each_operator(engine.job_mut(), &mut |_, op| n += op.timed_out());
        if n > 0 {
            counts.push((t.0, n));
        }
    }
    counts
}

#[test]
fn map_with_state_counts_the_keys_timed_out_in_each_batch() {
    // As in the timing-out tests above: every batch, c expires at T=5 and b at T=6; on checkpoint batches only,
    // both at T=10.
    assert_eq!(timed_out_counts(TimeoutScan::EveryBatch), vec![(5000, 1), (6000, 1)]);
    assert_eq!(timed_out_counts(TimeoutScan::SparkCompatible), vec![(10_000, 2)]);
}

#[test]
fn map_with_state_running_count_outputs_and_snapshots() {
    // Simple API running count: each record emits (key, count so far); snapshots hold every live key, sorted,
    // untouched keys included; a value of 0 removes the key.
    let spec = StateSpec::function(|k: &String, v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        let v = v.unwrap_or(0);
        if v == 0 {
            st.remove()?;
            return Ok((k.clone(), 0));
        }
        let c = st.get_option().copied().unwrap_or(0) + 1;
        st.update(c)?;
        Ok((k.clone(), c))
    });
    let (mapped, snaps) = pairs().map_with_state(spec).with_snapshots();
    let (m_out, m_sink) = collector::<(String, i64)>();
    let (s_out, s_sink) = collector::<(String, i64)>();
    let g = Graph::new().output(mapped.foreach_batch(m_sink)).output(snaps.foreach_batch(s_sink));
    run(g, 1000, &[&["b", "a", "b"], &["c"], &["a:0", "b"]], 0);
    assert_eq!(
        m_out.borrow().clone(),
        vec![
            (1000, vec![(s("b"), 1), (s("a"), 1), (s("b"), 2)]),
            (2000, vec![(s("c"), 1)]),
            (3000, vec![(s("a"), 0), (s("b"), 3)]),
        ]
    );
    assert_eq!(
        s_out.borrow().clone(),
        vec![
            (1000, vec![(s("a"), 1), (s("b"), 2)]),
            (2000, vec![(s("a"), 1), (s("b"), 2), (s("c"), 1)]),
            (3000, vec![(s("b"), 3), (s("c"), 1)]),
        ]
    );
}

#[test]
fn initial_state_with_a_function_that_emits_nothing() {
    // Initial state is stamped with the first batch's time; snapshots change though nothing is emitted.
    let spec = StateSpec::full(|_t, _k: &String, v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        let c = st.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
        st.update(c)?;
        Ok(None::<()>)
    })
    .initial_state(vec![(s("a"), 10), (s("z"), 5)]);
    let (mapped, snaps) = pairs().map_with_state(spec).with_snapshots();
    let (m_out, m_sink) = collector::<()>();
    let (s_out, s_sink) = collector::<(String, i64)>();
    let g = Graph::new().output(mapped.foreach_batch(m_sink)).output(snaps.foreach_batch(s_sink));
    run(g, 1000, &[&["a:2"], &["b:1"]], 0);
    assert!(m_out.borrow().iter().all(|(_, v)| v.is_empty()));
    assert_eq!(
        s_out.borrow().clone(),
        vec![(1000, vec![(s("a"), 12), (s("z"), 5)]), (2000, vec![(s("a"), 12), (s("b"), 1), (s("z"), 5)])]
    );
}

#[test]
fn state_misuse_fails_the_batch_with_a_typed_error() {
    let spec = StateSpec::function(|_k: &String, _v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        st.remove()?;
        st.update(1)?; // update after remove: IllegalArgumentException in Spark
        Ok(())
    });
    let g = Graph::new().output(pairs().map_with_state(spec).foreach_batch(|_, _| {}));
    let interval = Duration(1000);
    let mut clock = dstream_core::ManualClock::default();
    let mut e =
        dstream_core::Engine::new(g, dstream_core::BatchTimer::first_start(dstream_core::Clock::now(&clock), interval));
    clock.advance(interval);
    let mut b = dstream_core::RecordBatch::new();
    b.push(0, 0, 0, None, b"k");
    let err = e.run_batch(dstream_core::Time(1000), &mut b, &clock).unwrap_err();
    match err {
        dstream_core::EngineError::Job { source: JobError::State { key, error, .. }, .. } => {
            assert_eq!(key, "\"k\"");
            assert_eq!(error, StateError::UpdateAfterRemove);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn print_of_a_stream_with_count_and_union() {
    // count emits one element per batch, 0 for an empty batch; union is the first stream then the second.
    let g = Graph::new()
        .output(pairs().count().print(10))
        .output(pairs().map(|(k, _)| k).union(pairs().map(|(k, _)| k.to_uppercase())).print(3));
    let printed = run(g, 2000, &[&["a", "b"], &[]], 0);
    let rule = "-------------------------------------------";
    let want = format!(
        "{rule}\nTime: 2000 ms\n{rule}\n2\n\n{rule}\nTime: 2000 ms\n{rule}\na\nb\nA\n...\n\n\
         {rule}\nTime: 4000 ms\n{rule}\n0\n\n{rule}\nTime: 4000 ms\n{rule}\n\n"
    );
    assert_eq!(printed, want);
}

#[test]
fn spark_partition_order_groups_outputs_as_local_2_would() {
    // Under 2 partitions a one-letter key's partition is its character code mod 2: b (98), d (100) in
    // partition 0; a (97), c (99) in partition 1. Spark concatenates partition 0 then 1, arrival order within.
    let run_order = |order| {
        let spec =
            StateSpec::function(|k: &String, _v: Option<i64>, _st: &mut dstream_core::State<'_, i64>| Ok(k.clone()))
                .output_order(order);
        let (out, sink) = collector::<String>();
        let g = Graph::new().output(pairs().map_with_state(spec).foreach_batch(sink));
        run(g, 1000, &[&["a", "b", "c", "d", "a", "b"]], 0);
        let got = out.borrow()[0].1.clone();
        got
    };
    assert_eq!(run_order(dstream_core::OutputOrder::Arrival), ["a", "b", "c", "d", "a", "b"]);
    assert_eq!(run_order(dstream_core::OutputOrder::SparkPartitions), ["b", "d", "b", "a", "c", "a"]);
}

#[test]
fn stateless_operators_keep_arrival_order() {
    // flat_map splits each key into its characters; filter drops "b"; map_values doubles; reduce_by_key sums per
    // key in order of first appearance.
    let (out, sink) = collector::<(String, i64)>();
    let g = Graph::new().output(
        pairs()
            .flat_map(|(k, v)| k.chars().map(move |c| (c.to_string(), v)).collect::<Vec<_>>())
            .filter(|(k, _)| k != "b")
            .map_values(|v| v * 2)
            .reduce_by_key(|a, b| a + b)
            .foreach_batch(sink),
    );
    run(g, 1000, &[&["ab:1", "ca:2", "b:5"], &[]], 0);
    assert_eq!(out.borrow().clone(), vec![(1000, vec![(s("a"), 6), (s("c"), 4)]), (2000, vec![])]);
}

#[test]
fn reduce_by_key_and_window_inverse_filter_inconsistency_fails_the_batch_as_spark() {
    // ReducedWindowedDStream: each key of cogroup(previous window, batches leaving, batches entering) gets
    // previous - leaving + entering; a key with no previous value gets the entering values alone, and one with
    // neither a previous value nor entering values fails the batch ("Neither previous window has value for key,
    // nor new values found"). Window 2 s, slide 1 s, filter v != 0, input a:1 | a:-1 | (empty):
    // T=1: previous {}, entering {a:1} -> a=1, kept. T=2: previous {a:1}, leaving nothing (batches in (-1 s, 0]),
    // entering {a:-1} -> a=0, filtered out. T=3: previous {}, leaving batch 1 {a:1}, entering {} -> a fails.
    let g = Graph::new().output(
        pairs()
            .reduce_by_key_and_window_inv(
                |a, b| a + b,
                |a, b| a - b,
                Duration(2000),
                Duration(1000),
                Some(|kv: &(String, i64)| kv.1 != 0),
            )
            .print(10),
    );
    let (printed, err) = try_run(g, 1000, &[&["a:1"], &["a:-1"], &[]]);
    let rule = "-------------------------------------------";
    assert_eq!(printed, format!("{rule}\nTime: 1000 ms\n{rule}\n(a,1)\n\n{rule}\nTime: 2000 ms\n{rule}\n\n"));
    match &err {
        Some(dstream_core::EngineError::Job { time, source: JobError::WindowInconsistent { time: t, key } }) => {
            assert_eq!((time.0, t.0, key.as_str()), (3000, 3000, "\"a\""));
        }
        other => panic!("expected the inconsistency at batch 3, got {other:?}"),
    }
    let msg = err.unwrap().to_string();
    assert!(msg.contains("Neither previous window has value for key, nor new values found"), "{msg}");
    assert!(msg.contains("3000 ms") && msg.contains("key \"a\""), "{msg}");
}

fn config_error(g: Graph) -> dstream_core::ConfigError {
    match try_run(g, 1000, &[&["a"]]).1 {
        Some(dstream_core::EngineError::Job { source: JobError::Config(e), .. }) => e,
        other => panic!("expected a configuration error at the first batch, got {other:?}"),
    }
}

#[test]
fn checkpoint_interval_must_be_a_multiple_of_the_slide() {
    // DStream.validateAtStart: a checkpoint interval lower than the slide, or not a multiple of it, is refused.
    // Batch 1 s: 1500 ms is not a multiple of 1000 ms; over window(2 s, 2 s) the slide is 2 s, so 3 s is refused
    // and 4 s accepted.
    let spec = |cpi: i64| {
        StateSpec::function(|k: &String, _v: Option<i64>, _st: &mut dstream_core::State<'_, i64>| Ok(k.clone()))
            .checkpoint_interval(Duration(cpi))
    };
    let e = config_error(Graph::new().output(pairs().map_with_state(spec(1500)).print(10)));
    assert_eq!(
        e,
        dstream_core::ConfigError::CheckpointInterval {
            operator: "map_with_state",
            interval: Duration(1500),
            slide: Duration(1000),
            problem: "not a multiple of",
        }
    );
    assert!(e.to_string().contains("1500ms, which is not a multiple of its slide time (1s)"), "{e}");
    let windowed = |cpi| pairs().window(Duration(2000), Duration(2000)).map_with_state(spec(cpi)).print(10);
    let e = config_error(Graph::new().output(windowed(3000)));
    assert!(matches!(e, dstream_core::ConfigError::CheckpointInterval { slide: Duration(2000), .. }), "{e}");
    let e = config_error(Graph::new().output(windowed(1000)));
    assert!(matches!(e, dstream_core::ConfigError::CheckpointInterval { problem: "lower than", .. }), "{e}");
    assert!(try_run(Graph::new().output(windowed(4000)), 1000, &[&["a"], &["b"]]).1.is_none());
}

#[test]
fn union_of_streams_with_different_slides_is_refused() {
    // UnionDStream: "Array of DStreams have different slide times". The input slides by 1 s, the window by 2 s.
    let g = Graph::new().output(pairs().union(pairs().window(Duration(2000), Duration(2000))).print(10));
    assert_eq!(
        config_error(g),
        dstream_core::ConfigError::DifferentSlides { operator: "union", first: Duration(1000), second: Duration(2000) }
    );
    // The same slides are fine.
    let g = Graph::new().output(pairs().union(pairs().window(Duration(2000), Duration(1000))).print(10));
    assert!(try_run(g, 1000, &[&["a"]]).1.is_none());
}

#[test]
fn window_length_and_slide_must_be_multiples_of_the_parents_slide() {
    // WindowedDStream and ReducedWindowedDStream check against the parent's slide, not the batch interval: over
    // window(2 s, 2 s), a window of 3 s (a multiple of the 1 s batch) is refused, and so is a slide of 3 s.
    let parent = || pairs().window(Duration(2000), Duration(2000));
    let e = config_error(Graph::new().output(parent().window(Duration(3000), Duration(2000)).print(10)));
    assert_eq!(
        e,
        dstream_core::ConfigError::WindowNotMultiple {
            operator: "window",
            what: "window length",
            value: Duration(3000),
            parent: Duration(2000),
        }
    );
    let e = config_error(Graph::new().output(parent().window(Duration(4000), Duration(3000)).print(10)));
    assert!(matches!(e, dstream_core::ConfigError::WindowNotMultiple { what: "slide", .. }), "{e}");
    let e = config_error(
        Graph::new().output(
            parent()
                .reduce_by_key_and_window_inv(
                    |a, b| a + b,
                    |a, b| a - b,
                    Duration(3000),
                    Duration(2000),
                    None::<fn(&(String, i64)) -> bool>,
                )
                .print(10),
        ),
    );
    assert!(matches!(e, dstream_core::ConfigError::WindowNotMultiple { operator: "reduce_by_key_and_window", .. }));
    // A window of a window at multiples of its slide: window(4 s, 4 s) over window(2 s, 2 s), batch i holds i.
    // Inner at T=2: {1,2}, T=4: {3,4}; outer at T=4 holds both inner outputs: {1,2,3,4}.
    let (out, sink) = collector::<i64>();
    let g = Graph::new().output(
        pairs()
            .map(|(_, v)| v)
            .window(Duration(2000), Duration(2000))
            .window(Duration(4000), Duration(4000))
            .foreach_batch(sink),
    );
    run(g, 1000, &[&["x:1"], &["x:2"], &["x:3"], &["x:4"]], 0);
    assert_eq!(out.borrow().clone(), vec![(4000, vec![1, 2, 3, 4])]);
}

// Downstream of a window, every stream slides by the window's slide: Spark computes it (and output operations
// run) only at times T with (T - zero) a multiple of that slide (DStream.isTimeValid); stateful operators read
// their previous state from T - slide; the state checkpoint interval, and with it the timeout scan, defaults to
// 10 x the slide (InternalMapWithStateDStream).

#[test]
fn update_state_by_key_over_a_window_runs_at_the_windows_slide() {
    // Window (2 s, 2 s), batch 1 s, input a:1 b:2 | a:3 | c:4 | (empty), state (sum, calls).
    // T=2: window {a:1, b:2, a:3} -> a (4,1), b (2,1). T=4: window {c:4} -> a (4,2), b (2,2), c (4,1).
    // Nothing at T=1 or T=3.
    let (out, sink) = collector::<(String, (i64, i64))>();
    let g = Graph::new().output(
        pairs()
            .window(Duration(2000), Duration(2000))
            .update_state_by_key(|vals: &[i64], st: Option<(i64, i64)>| {
                let (c, calls) = st.unwrap_or((0, 0));
                Some((c + vals.iter().sum::<i64>(), calls + 1))
            })
            .foreach_batch(sink),
    );
    run(g, 1000, &[&["a:1", "b:2"], &["a:3"], &["c:4"], &[]], 0);
    assert_eq!(
        out.borrow().clone(),
        vec![
            (2000, vec![(s("a"), (4, 1)), (s("b"), (2, 1))]),
            (4000, vec![(s("a"), (4, 2)), (s("b"), (2, 2)), (s("c"), (4, 1))]),
        ]
    );
}

#[test]
fn map_with_state_snapshots_and_print_over_a_window_print_only_at_its_slide() {
    // Running count over window (2 s, 2 s), input a | b | a | (empty): T=2: window {a, b} -> mapped (a,1) (b,1),
    // snapshots (a,1) (b,1); T=4: window {a} -> mapped (a,2), snapshots (a,2) (b,1); count of the window: 2, 1.
    // No header at T=1 or T=3.
    let spec = StateSpec::function(|k: &String, _v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        let c = st.get_option().copied().unwrap_or(0) + 1;
        st.update(c)?;
        Ok((k.clone(), c))
    });
    let windowed = pairs().window(Duration(2000), Duration(2000)).shared();
    let (mapped, snaps) = windowed.consumer().map_with_state(spec).with_snapshots();
    let g = Graph::new().output(mapped.print(10)).output(snaps.print(10)).output(windowed.consumer().count().print(10));
    let printed = run(g, 1000, &[&["a"], &["b"], &["a"], &[]], 0);
    let h = |t: i64| {
        format!(
            "-------------------------------------------\nTime: {t} ms\n-------------------------------------------\n"
        )
    };
    let want = format!(
        "{}(a,1)\n(b,1)\n\n{}(a,1)\n(b,1)\n\n{}2\n\n{}(a,2)\n\n{}(a,2)\n(b,1)\n\n{}1\n\n",
        h(2000),
        h(2000),
        h(2000),
        h(4000),
        h(4000),
        h(4000)
    );
    assert_eq!(printed, want);
}

fn windowed_timeouts(scan: TimeoutScan, timeout: i64, initial: bool, batches: usize) -> Vec<(i64, Vec<String>)> {
    // One record a at T=1, then empty batches; over window (2 s, 2 s) a is updated at T=2 (the first time the
    // state stream computes), which is also when an initial state is stamped. The function emits a key only when
    // it times out.
    let spec = StateSpec::full(|_t, k: &String, v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        if v.is_some() {
            st.update(1)?;
        }
        Ok(if st.is_timing_out() { Some(k.clone()) } else { None })
    })
    .timeout(Duration(timeout))
    .timeout_scan(scan)
    .initial_state(if initial { vec![(s("z"), 0)] } else { vec![] });
    let (out, sink) = collector::<String>();
    let g =
        Graph::new().output(pairs().window(Duration(2000), Duration(2000)).map_with_state(spec).foreach_batch(sink));
    run(g, 1000, &[&["a"]], batches - 1);
    let got: Vec<(i64, Vec<String>)> = out.borrow().iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    got
}

#[test]
fn map_with_state_over_a_window_scans_timeouts_every_10_slides() {
    // Timeout 3 s, scan on checkpoint batches only: the checkpoint interval is 10 x 2 s = 20 s, so the first scan
    // is at T=20 (threshold 17 s > 2 s): a expires there, not at T=10.
    assert_eq!(windowed_timeouts(TimeoutScan::SparkCompatible, 3000, false, 24), vec![(20_000, vec![s("a")])]);
}

#[test]
fn map_with_state_over_a_window_stamps_initial_state_at_its_first_slide() {
    // Timeout 2 s, scan whenever the stream computes (T = 2, 4, 6, ...): a and the initial z are stamped at T=2;
    // at T=4 they have been idle 2 s (not more than 2 s), at T=6 4 s: both expire at T=6, by partition then key
    // (a is in partition 1, z (122) in partition 0).
    assert_eq!(windowed_timeouts(TimeoutScan::EveryBatch, 2000, true, 8), vec![(6000, vec![s("z"), s("a")])]);
}

fn spark_order_timeouts(timeout: i64, batches: &[&[&str]]) -> Vec<(i64, Vec<String>)> {
    // 2 state partitions, Spark's order, state checkpoint (and timeout scan) every 3 s; the function emits the
    // key for a record and "key!" for a key that times out.
    let spec = StateSpec::full(|_t, k: &String, v: Option<i64>, st: &mut dstream_core::State<'_, i64>| {
        if v.is_some() {
            st.update(1)?;
        }
        Ok(Some(if st.is_timing_out() { format!("{k}!") } else { k.clone() }))
    })
    .num_partitions(2)
    .timeout(Duration(timeout))
    .checkpoint_interval(Duration(3000))
    .output_order(dstream_core::OutputOrder::SparkPartitions);
    let (out, sink) = collector::<String>();
    let g = Graph::new().output(pairs().map_with_state(spec).foreach_batch(sink));
    run(g, 1000, batches, 0);
    let got: Vec<(i64, Vec<String>)> = out.borrow().iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    got
}

#[test]
fn spark_partition_order_puts_each_partitions_timeouts_after_its_data() {
    // MapWithStateRDDRecord: each state partition emits its data outputs, then its timed-out keys; partitions are
    // concatenated. Partition of a one-letter key: its code mod 2 (b, d in 0; a, c in 1). Timeout 1 s, input
    // b c | (empty) | a d: the scan at T=3 (threshold 2 s) expires b and c (updated at 1 s):
    // partition 0: d, b!; partition 1: a, c!.
    let got = spark_order_timeouts(1000, &[&["b", "c"], &[], &["a", "d"]]);
    assert_eq!(got, vec![(1000, vec![s("b"), s("c")]), (3000, vec![s("d"), s("b!"), s("a"), s("c!")])]);
}

#[test]
fn spark_partition_order_times_out_the_oldest_update_first() {
    // OpenHashMapBasedStateMap.getByTime lists the parent maps (older batches) before the newest delta: within a
    // partition the key updated longest ago times out first. Timeout 500 ms, input d | b | (empty): at T=3
    // (threshold 2.5 s) d (1 s) and b (2 s), both in partition 0, expire: d! before b!, not in key order.
    let got = spark_order_timeouts(500, &[&["d"], &["b"], &[]]);
    assert_eq!(got, vec![(1000, vec![s("d")]), (2000, vec![s("b")]), (3000, vec![s("d!"), s("b!")])]);
}

#[test]
fn update_state_by_key_with_an_initial_state() {
    // StateDStream with initialRDD: the first computed batch cogroups its data with the initial state, so every
    // initial key is updated then, with or without new values. Initial a (10,0), z (5,0); state (sum, calls);
    // input a:1 b:2 | (empty). T=1: a (11,1), b (2,1), z (5,1). T=2: a (11,2), b (2,2), z (5,2).
    let (out, sink) = collector::<(String, (i64, i64))>();
    let g = Graph::new().output(
        pairs()
            .update_state_by_key_with_initial(
                |vals: &[i64], st: Option<(i64, i64)>| {
                    let (c, calls) = st.unwrap_or((0, 0));
                    Some((c + vals.iter().sum::<i64>(), calls + 1))
                },
                vec![(s("a"), (10, 0)), (s("z"), (5, 0))],
            )
            .foreach_batch(sink),
    );
    run(g, 1000, &[&["a:1", "b:2"], &[]], 0);
    assert_eq!(
        out.borrow().clone(),
        vec![
            (1000, vec![(s("a"), (11, 1)), (s("b"), (2, 1)), (s("z"), (5, 1))]),
            (2000, vec![(s("a"), (11, 2)), (s("b"), (2, 2)), (s("z"), (5, 2))]),
        ]
    );
}

#[test]
fn count_by_value_reduce_and_group_by_key_per_batch() {
    // countByValue = map(x => (x, 1)).reduceByKey(_ + _); reduce folds the batch into one element and gives
    // nothing for an empty batch; groupByKey keeps each key's values in arrival order. Keys in order of first
    // appearance. Input a:1 b:2 a:3 c:4 | (empty).
    let input: &[&[&str]] = &[&["a:1", "b:2", "a:3", "c:4"], &[]];
    let (out, sink) = collector::<(String, i64)>();
    run(Graph::new().output(pairs().map(|(k, _)| k).count_by_value().foreach_batch(sink)), 1000, input, 0);
    assert_eq!(out.borrow().clone(), vec![(1000, vec![(s("a"), 2), (s("b"), 1), (s("c"), 1)]), (2000, vec![])]);

    let (out, sink) = collector::<i64>();
    run(Graph::new().output(pairs().map(|(_, v)| v).reduce(|a, b| a * 10 + b).foreach_batch(sink)), 1000, input, 0);
    // Arrival order: ((1 * 10 + 2) * 10 + 3) * 10 + 4 = 1234.
    assert_eq!(out.borrow().clone(), vec![(1000, vec![1234]), (2000, vec![])]);

    let (out, sink) = collector::<(String, Vec<i64>)>();
    run(Graph::new().output(pairs().group_by_key().foreach_batch(sink)), 1000, input, 0);
    assert_eq!(
        out.borrow().clone(),
        vec![(1000, vec![(s("a"), vec![1, 3]), (s("b"), vec![2]), (s("c"), vec![4])]), (2000, vec![])]
    );
}

/// The records whose key starts with `side` ('L' or 'R'), with that letter taken off.
fn side(side: char) -> impl dstream_core::DStream<Item = (String, i64)> {
    pairs().filter(move |(k, _)| k.starts_with(side)).map(|(k, v)| (k[1..].to_string(), v))
}

const JOIN_INPUT: &[&[&str]] = &[&["Rb:20", "La:1", "La:2", "Ra:10", "Lc:3", "Ra:11", "Rd:40"], &[]];

#[test]
fn cogroup_and_joins_per_batch() {
    // Left: a [1, 2], c [3]; right: b [20], a [10, 11], d [40]. cogroup gives every key with both value lists:
    // left keys in first appearance (a, c), then right-only ones (b, d). join: for v in left, w in right (a
    // only); leftOuterJoin adds (c, (3, None)); rightOuterJoin (b, (None, 20)) and (d, (None, 40)); fullOuterJoin
    // both. An empty batch gives nothing.
    let (out, sink) = collector::<(String, (Vec<i64>, Vec<i64>))>();
    run(Graph::new().output(side('L').cogroup(side('R')).map(unbuffer).foreach_batch(sink)), 1000, JOIN_INPUT, 0);
    assert_eq!(
        out.borrow().clone(),
        vec![
            (
                1000,
                vec![
                    (s("a"), (vec![1, 2], vec![10, 11])),
                    (s("c"), (vec![3], vec![])),
                    (s("b"), (vec![], vec![20])),
                    (s("d"), (vec![], vec![40])),
                ]
            ),
            (2000, vec![])
        ]
    );
    let a4 = [(1, 10), (1, 11), (2, 10), (2, 11)];

    let (out, sink) = collector::<(String, (i64, i64))>();
    run(Graph::new().output(side('L').join(side('R')).foreach_batch(sink)), 1000, JOIN_INPUT, 0);
    let want: Vec<_> = a4.iter().map(|&(v, w)| (s("a"), (v, w))).collect();
    assert_eq!(out.borrow().clone(), vec![(1000, want), (2000, vec![])]);

    let (out, sink) = collector::<(String, (i64, Option<i64>))>();
    run(Graph::new().output(side('L').left_outer_join(side('R')).foreach_batch(sink)), 1000, JOIN_INPUT, 0);
    let mut want: Vec<_> = a4.iter().map(|&(v, w)| (s("a"), (v, Some(w)))).collect();
    want.push((s("c"), (3, None)));
    assert_eq!(out.borrow().clone(), vec![(1000, want), (2000, vec![])]);

    let (out, sink) = collector::<(String, (Option<i64>, i64))>();
    run(Graph::new().output(side('L').right_outer_join(side('R')).foreach_batch(sink)), 1000, JOIN_INPUT, 0);
    let mut want: Vec<_> = a4.iter().map(|&(v, w)| (s("a"), (Some(v), w))).collect();
    want.extend([(s("b"), (None, 20)), (s("d"), (None, 40))]);
    assert_eq!(out.borrow().clone(), vec![(1000, want), (2000, vec![])]);

    let (out, sink) = collector::<(String, (Option<i64>, Option<i64>))>();
    run(Graph::new().output(side('L').full_outer_join(side('R')).foreach_batch(sink)), 1000, JOIN_INPUT, 0);
    let mut want: Vec<_> = a4.iter().map(|&(v, w)| (s("a"), (Some(v), Some(w)))).collect();
    want.extend([(s("c"), (Some(3), None)), (s("b"), (None, Some(20))), (s("d"), (None, Some(40)))]);
    assert_eq!(out.borrow().clone(), vec![(1000, want), (2000, vec![])]);
}

#[test]
fn join_order_does_not_depend_on_how_the_batch_arrives() {
    // The same batch in two parts, the right stream's b and a first: keys still come left first (a, c), then b.
    let (out, sink) = collector::<(String, (Vec<i64>, Vec<i64>))>();
    let g = Graph::new().output(side('L').cogroup(side('R')).map(unbuffer).foreach_batch(sink));
    let mut e =
        dstream_core::Engine::new(g, dstream_core::BatchTimer::first_start(dstream_core::Time(0), Duration(1000)));
    let clock = dstream_core::ManualClock::new(dstream_core::Time(1000));
    let mut open = e.begin_batch(dstream_core::Time(1000), &clock).unwrap();
    for (offset, values) in [(0, &["Rb:20", "Ra:10"][..]), (2, &["La:1", "Lc:3", "Ra:11"][..])] {
        let mut part = dstream_core::RecordBatch::new();
        for (i, v) in values.iter().enumerate() {
            part.push(0, offset + i as i64, 0, None, v.as_bytes());
        }
        e.feed(&mut open, &mut part).unwrap();
    }
    e.finish_batch(open, &clock).unwrap();
    assert_eq!(
        out.borrow()[0].1,
        vec![(s("a"), (vec![1], vec![10, 11])), (s("c"), (vec![3], vec![])), (s("b"), (vec![], vec![20]))]
    );
}

#[test]
fn join_of_streams_with_different_slides_is_refused() {
    // TransformedDStream (what join is built on) requires one slide for all its parents.
    let g =
        Graph::new().output(side('L').join(side('R').window(Duration(2000), Duration(2000))).foreach_batch(|_, _| {}));
    assert_eq!(
        config_error(g),
        dstream_core::ConfigError::DifferentSlides { operator: "join", first: Duration(1000), second: Duration(2000) }
    );
}

#[test]
fn count_by_window_is_an_inverse_reduction() {
    // countByWindow = map(_ => 1).reduceByWindow(+, -), i.e. reduceByKeyAndWindow with an inverse on one key:
    // window 2 s, slide 1 s, batch sizes 1, 2, 0, 0: T=1: 1; T=2: 1+2=3; T=3: 3-1=2; T=4: 2-2=0 (the key stays,
    // with 0). A stream that never had an element gives nothing at all (no key), not 0.
    let (out, sink) = collector::<i64>();
    let g = Graph::new().output(pairs().count_by_window(Duration(2000), Duration(1000)).foreach_batch(sink));
    run(g, 1000, &[&["a"], &["a", "b"], &[], &[]], 0);
    assert_eq!(out.borrow().clone(), vec![(1000, vec![1]), (2000, vec![3]), (3000, vec![2]), (4000, vec![0])]);
    let (out, sink) = collector::<i64>();
    let g = Graph::new().output(pairs().count_by_window(Duration(2000), Duration(1000)).foreach_batch(sink));
    run(g, 1000, &[&[], &[]], 0);
    assert_eq!(out.borrow().clone(), vec![(1000, vec![]), (2000, vec![])]);
}

#[test]
fn reduce_by_window_with_and_without_inverse() {
    // Window 4 s, slide 2 s over values 1..6 then two empty batches: T=2: 1+2=3; T=4: 1+..+4=10; T=6: 3+..+6=18;
    // T=8: 5+6=11 (nothing at odd times).
    let want = vec![(2000, vec![3]), (4000, vec![10]), (6000, vec![18]), (8000, vec![11])];
    let (out, sink) = collector::<i64>();
    let values = || pairs().map(|(_, v)| v);
    let g = Graph::new()
        .output(values().reduce_by_window(|a, b| a + b, Duration(4000), Duration(2000)).foreach_batch(sink));
    run(g, 1000, LARGER_SLIDE, 0);
    assert_eq!(out.borrow().clone(), want);
    let (out, sink) = collector::<i64>();
    let g = Graph::new().output(
        values().reduce_by_window_inv(|a, b| a + b, |a, b| a - b, Duration(4000), Duration(2000)).foreach_batch(sink),
    );
    run(g, 1000, LARGER_SLIDE, 0);
    assert_eq!(out.borrow().clone(), want);
}

#[test]
fn count_by_value_and_window_drops_zero_counts() {
    // countByValueAndWindow = map((_, 1)).reduceByKeyAndWindow(+, -, filter count != 0); window 2 s, slide 1 s,
    // keys a | a b | a b c | a b | b | (empty), sorted by key:
    // T=1 a1; T=2 a2 b1; T=3 a2 b2 c1; T=4 a2 b2 c1; T=5 a1 b2 (c left: 0, dropped); T=6 b1.
    let (out, sink) = collector::<(String, i64)>();
    let g = Graph::new()
        .output(pairs().map(|(k, _)| k).count_by_value_and_window(Duration(2000), Duration(1000)).foreach_batch(sink));
    run(g, 1000, KEYS_LEAVE, 0);
    let kv = |v: &[(&str, i64)]| v.iter().map(|(k, n)| (s(k), *n)).collect::<Vec<_>>();
    assert_eq!(
        out.borrow().clone(),
        vec![
            (1000, kv(&[("a", 1)])),
            (2000, kv(&[("a", 2), ("b", 1)])),
            (3000, kv(&[("a", 2), ("b", 2), ("c", 1)])),
            (4000, kv(&[("a", 2), ("b", 2), ("c", 1)])),
            (5000, kv(&[("a", 1), ("b", 2)])),
            (6000, kv(&[("b", 1)])),
        ]
    );
}

#[test]
fn group_by_key_and_window_concatenates_the_windows_batches() {
    // groupByKey().window(2 s, 1 s) then each key's groups concatenated, oldest batch first; input
    // a:1 b:2 | a:3 | (empty): T=1 (a,[1]) (b,[2]); T=2 (a,[1,3]) (b,[2]); T=3 (a,[3]).
    let (out, sink) = collector::<(String, Vec<i64>)>();
    let g = Graph::new().output(pairs().group_by_key_and_window(Duration(2000), Duration(1000)).foreach_batch(sink));
    run(g, 1000, &[&["a:1", "b:2"], &["a:3"], &[]], 0);
    assert_eq!(
        out.borrow().clone(),
        vec![
            (1000, vec![(s("a"), vec![1]), (s("b"), vec![2])]),
            (2000, vec![(s("a"), vec![1, 3]), (s("b"), vec![2])]),
            (3000, vec![(s("a"), vec![3])]),
        ]
    );
}

#[test]
fn transform_and_transform_with_see_each_batch_whole() {
    // transform: the batch's elements in arrival order, sorted here in descending value, first two kept, each
    // tagged with the batch time; transform_with: the left side's keys the right side does not have. Input
    // La:1 La:5 Lb:3 Rb:0 | (empty): transform of the left: T=1 [(1000,5), (1000,3)], T=2 []; transform_with:
    // T=1 [a, a], T=2 [].
    let (out, sink) = collector::<(i64, i64)>();
    let g = Graph::new().output(
        side('L')
            .transform(|t, mut xs: Vec<(String, i64)>| {
                xs.sort_by_key(|x| std::cmp::Reverse(x.1));
                xs.into_iter().take(2).map(|(_, v)| (t.0, v)).collect()
            })
            .foreach_batch(sink),
    );
    let input: &[&[&str]] = &[&["La:1", "La:5", "Lb:3", "Rb:0"], &[]];
    run(g, 1000, input, 0);
    assert_eq!(out.borrow().clone(), vec![(1000, vec![(1000, 5), (1000, 3)]), (2000, vec![])]);

    let (out, sink) = collector::<String>();
    let g = Graph::new().output(
        side('L')
            .transform_with(side('R'), |_t, l: Vec<(String, i64)>, r: Vec<(String, i64)>| {
                l.into_iter().filter(|(k, _)| !r.iter().any(|(rk, _)| rk == k)).map(|(k, _)| k).collect()
            })
            .foreach_batch(sink),
    );
    run(g, 1000, input, 0);
    assert_eq!(out.borrow().clone(), vec![(1000, vec![s("a"), s("a")]), (2000, vec![])]);
}

#[test]
fn reduce_by_key_and_window_inverse_with_a_slide_longer_than_the_window() {
    // ReducedWindowedDStream at T: previous window = the output at T - slide; leaving = the batches in
    // (T - slide - length, T - length], entering = those in (T - slide, T]. With a slide longer than the window
    // the two overlap, and a batch in both is subtracted and added. A key with no previous value gets the
    // entering values alone (the leaving ones are ignored), so the first window also counts the batches before
    // it (Spark's own arithmetic; the true window can be smaller). Counts, length 1 s, slide 3 s.
    let run_inv = |input: &[&[&str]]| {
        let (out, sink) = collector::<(String, i64)>();
        let g = Graph::new().output(
            pairs()
                .reduce_by_key_and_window_inv(
                    |a, b| a + b,
                    |a, b| a - b,
                    Duration(1000),
                    Duration(3000),
                    None::<fn(&(String, i64)) -> bool>,
                )
                .foreach_batch(sink),
        );
        run(g, 1000, input, 0);
        let got = out.borrow().clone();
        got
    };
    // (empty) | (empty) | a | a | (empty) | (empty): T=3: entering batches 1-3 -> a 1. T=6: 1 - leaving (3-5: 2)
    // + entering (4-6: 1) = 0.
    assert_eq!(
        run_inv(&[&[], &[], &["a"], &["a"], &[], &[]]),
        vec![(3000, vec![(s("a"), 1)]), (6000, vec![(s("a"), 0)])]
    );
    // a | (empty) x 5: T=3: no previous value, entering batches 1-3 -> a 1 (batch 1 is not in (2 s, 3 s]);
    // T=6: 1 - leaving (3-5: none) + entering (none) = 1.
    assert_eq!(run_inv(&[&["a"], &[], &[], &[], &[], &[]]), vec![(3000, vec![(s("a"), 1)]), (6000, vec![(s("a"), 1)])]);
}
