//! A batch fed to the engine in parts (`begin_batch`, `feed`..., `finish_batch`) gives exactly what `run_batch`
//! gives for the whole batch: the same report (printed text, malformed records, record count) and the same state,
//! for any split, under both timeout scans and both output orders, also when the job keeps only what it prints.

use dstream_cli::lab::{LabConfig, LabJob};
use dstream_core::{
    input, BatchTimer, DStreamExt, Duration, Engine, Graph, MalformedPolicy, ManualClock, OutputOrder, RecordBatch,
    RecordRef, StateSpecOptions, Time, TimeoutScan,
};
use proptest::prelude::*;

/// One batch: records as (partition, value), and where to cut it into parts (indices into the records).
type Batch = (Vec<(i32, String)>, Vec<usize>);

fn batches() -> impl Strategy<Value = Vec<Batch>> {
    let value = prop_oneof![
        8 => (prop::sample::select(vec!["a", "b", "c", "d", "e", "é", "key"]), -30i64..30)
            .prop_map(|(k, v)| format!("{k},{v}")),
        1 => prop::sample::select(vec!["", "a", ",1", "a,", "a,x"]).prop_map(String::from),
    ];
    let batch = (prop::collection::vec((0i32..3, value), 0..25), prop::collection::vec(0usize..25, 0..6));
    prop::collection::vec(batch, 1..12)
}

/// The records of one batch in (partition, offset) order; offsets continue from `next` per partition.
fn records(batch: &[(i32, String)], next: &mut [i64; 3]) -> Vec<(i32, i64, String)> {
    let mut recs: Vec<(i32, i64, String)> = Vec::new();
    for p in 0..3 {
        for (_, v) in batch.iter().filter(|(q, _)| *q == p) {
            recs.push((p, next[p as usize], v.clone()));
            next[p as usize] += 1;
        }
    }
    recs
}

fn push_all(out: &mut RecordBatch, recs: &[(i32, i64, String)]) {
    for (p, o, v) in recs {
        out.push(*p, *o, 7, None, v.as_bytes());
    }
}

/// Cut points, clamped and sorted, as part boundaries over `len` records (empty parts included).
fn parts(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut c: Vec<usize> = cuts.iter().map(|&x| x.min(len)).collect();
    c.sort();
    let mut bounds = vec![0];
    bounds.extend(c);
    bounds.push(len);
    bounds.windows(2).map(|w| (w[0], w[1])).collect()
}

fn lab_engine(config: &LabConfig) -> Engine<LabJob> {
    Engine::new(LabJob::new(config.clone()), BatchTimer::first_start(Time(0), Duration(1000)))
}

/// Runs every batch both ways and compares after each batch; with `printed_only` the job fed in parts keeps only
/// the elements `print` shows, which must not change what it prints.
fn check_lab(config: LabConfig, batches: &[Batch], printed_only: bool) -> Result<(), TestCaseError> {
    let clock = ManualClock::default();
    let (mut whole, mut split) = (lab_engine(&config), lab_engine(&config));
    if printed_only {
        split.job_mut().keep_printed_only();
    }
    let mut next = [0i64; 3];
    let mut buf = RecordBatch::new();
    for (i, (batch, cuts)) in batches.iter().enumerate() {
        let time = Time(1000 * (i as i64 + 1));
        let recs = records(batch, &mut next);
        buf.clear();
        push_all(&mut buf, &recs);
        let want = whole.run_batch(time, &mut buf, &clock);
        let mut open = split.begin_batch(time, &clock).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut fed = Ok(());
        for (a, b) in parts(recs.len(), cuts) {
            buf.clear();
            push_all(&mut buf, &recs[a..b]);
            fed = split.feed(&mut open, &mut buf);
            if fed.is_err() {
                break;
            }
        }
        let got = fed.and_then(|()| split.finish_batch(open, &clock));
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(split.job().snapshot(), whole.job().snapshot());
        prop_assert_eq!(split.totals(), whole.totals());
        if want.is_err() {
            break;
        }
    }
    Ok(())
}

fn options() -> impl Strategy<Value = StateSpecOptions> {
    (1usize..4, prop::option::of(1i64..4), prop::option::of(1i64..4), prop::bool::ANY, prop::bool::ANY).prop_map(
        |(num_partitions, timeout, checkpoint, every, spark_order)| StateSpecOptions {
            num_partitions,
            timeout: timeout.map(|t| Duration(t * 1000)),
            checkpoint_interval: checkpoint.map(|c| Duration(c * 1000)),
            timeout_scan: if every { TimeoutScan::EveryBatch } else { TimeoutScan::SparkCompatible },
            output_order: if spark_order { OutputOrder::SparkPartitions } else { OutputOrder::Arrival },
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn lab_job_fed_in_parts_matches_run_batch(
        b in batches(), state in options(), fail in prop::bool::ANY, print in prop::option::of(0usize..40),
        printed_only in prop::bool::ANY,
    ) {
        let malformed = if fail { MalformedPolicy::Fail } else { MalformedPolicy::Skip };
        check_lab(LabConfig { print, malformed, state }, &b, printed_only)?;
    }

    #[test]
    fn graph_job_fed_in_parts_matches_run_batch(b in batches()) {
        let graph = || {
            let parse = |r: RecordRef<'_>| Ok::<_, String>((r.partition, r.value.len() as i64));
            Graph::new()
                .output(input(parse, MalformedPolicy::Skip).print(100))
                .output(input(parse, MalformedPolicy::Skip).count().print(10))
        };
        let clock = ManualClock::default();
        let timer = BatchTimer::first_start(Time(0), Duration(1000));
        let (mut whole, mut split) = (Engine::new(graph(), timer.clone()), Engine::new(graph(), timer));
        let mut next = [0i64; 3];
        let mut buf = RecordBatch::new();
        for (i, (batch, cuts)) in b.iter().enumerate() {
            let time = Time(1000 * (i as i64 + 1));
            let recs = records(batch, &mut next);
            buf.clear();
            push_all(&mut buf, &recs);
            let want = whole.run_batch(time, &mut buf, &clock).unwrap();
            let mut open = split.begin_batch(time, &clock).unwrap();
            for (a, c) in parts(recs.len(), cuts) {
                buf.clear();
                push_all(&mut buf, &recs[a..c]);
                split.feed(&mut open, &mut buf).unwrap();
            }
            prop_assert_eq!(split.finish_batch(open, &clock).unwrap(), want);
        }
    }
}

/// A hand-checked case: keys in two state partitions, outputs grouped by partition over the whole batch (not per
/// part).
#[test]
fn spark_order_groups_the_whole_batch_not_each_part() {
    let state = StateSpecOptions { output_order: OutputOrder::SparkPartitions, ..StateSpecOptions::default() };
    let config = LabConfig { print: Some(100), malformed: MalformedPolicy::Skip, state };
    let clock = ManualClock::default();
    let mut whole = lab_engine(&config);
    let mut split = lab_engine(&config);
    let values = ["a,1", "b,2", "c,3", "d,4", "a,5", "b,6"];
    let mut all = RecordBatch::new();
    for (o, v) in values.iter().enumerate() {
        all.push(0, o as i64, 0, None, v.as_bytes());
    }
    let want = whole.run_batch(Time(1000), &mut all, &clock).unwrap();
    let mut open = split.begin_batch(Time(1000), &clock).unwrap();
    for pair in values.chunks(2).enumerate() {
        let mut part = RecordBatch::new();
        for (j, v) in pair.1.iter().enumerate() {
            part.push(0, (pair.0 * 2 + j) as i64, 0, None, v.as_bytes());
        }
        split.feed(&mut open, &mut part).unwrap();
    }
    let got = split.finish_batch(open, &clock).unwrap();
    assert_eq!(got, want);
    // Java's "a".hashCode() = 97, so mod 2: a and c are in state partition 1, b and d in 0. Spark concatenates
    // partition 0's outputs then partition 1's, each in arrival order, over the whole batch (grouping each part of
    // two records on its own would give b,a,d,c,b,a instead).
    let lines: Vec<&str> = got.printed.lines().filter(|l| l.starts_with('(')).collect();
    assert_eq!(lines, ["(b,2.0)", "(d,4.0)", "(b,4.0)", "(a,1.0)", "(c,3.0)", "(a,3.0)"]);
}
