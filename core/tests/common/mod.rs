//! Helpers shared by the core's integration tests: run a job over scripted batches with a manual clock.
#![allow(dead_code)]

use dstream_core::stream::Input;
use dstream_core::{
    input, BatchTimer, Clock, Duration, Engine, Graph, MalformedPolicy, ManualClock, RecordBatch, RecordRef, Time,
};
use std::cell::RefCell;
use std::rc::Rc;

/// Parses "key:value" (value an i64) or "key" (value 1).
pub fn pair(rec: RecordRef<'_>) -> Result<(String, i64), String> {
    let s = std::str::from_utf8(rec.value).map_err(|e| e.to_string())?;
    match s.split_once(':') {
        Some((k, v)) => Ok((k.to_string(), v.parse().map_err(|_| format!("bad value {v:?}"))?)),
        None => Ok((s.to_string(), 1)),
    }
}

/// The parser's type.
pub type PairFn = fn(RecordRef<'_>) -> Result<(String, i64), String>;

/// The input stream of "key:value" messages.
pub fn pairs() -> Input<PairFn> {
    input(pair as PairFn, MalformedPolicy::Fail)
}

/// Collected outputs: one entry per batch in which the stream had output.
pub type Collected<T> = Rc<RefCell<Vec<(i64, Vec<T>)>>>;

/// A sink that records each batch's elements.
pub fn collector<T: Clone>() -> (Collected<T>, impl FnMut(Time, &[T])) {
    let c: Collected<T> = Rc::new(RefCell::new(Vec::new()));
    let c2 = c.clone();
    (c, move |t: Time, items: &[T]| c2.borrow_mut().push((t.0, items.to_vec())))
}

/// Runs `graph` over `batches` (batch i at time (i+1) * interval, clock from 0), then `extra` empty batches;
/// returns the printed text.
pub fn run(graph: Graph, interval_ms: i64, batches: &[&[&str]], extra: usize) -> String {
    let interval = Duration(interval_ms);
    let mut clock = ManualClock::default();
    let mut engine = Engine::new(graph, BatchTimer::first_start(clock.now(), interval));
    let mut printed = String::new();
    let mut batch = RecordBatch::new();
    let mut offset = 0;
    for i in 0..batches.len() + extra {
        batch.clear();
        if let Some(values) = batches.get(i) {
            for v in values.iter() {
                batch.push(0, offset, 0, None, v.as_bytes());
                offset += 1;
            }
        }
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("one batch per interval");
        let report = engine.run_batch(t, &mut batch, &clock).expect("batch runs");
        printed.push_str(&report.printed);
    }
    printed
}

/// Runs `graph` over `batches` as [`run`] does, stopping at the first batch that fails: the printed text so
/// far and that batch's error, if any.
pub fn try_run(graph: Graph, interval_ms: i64, batches: &[&[&str]]) -> (String, Option<dstream_core::EngineError>) {
    let interval = Duration(interval_ms);
    let mut clock = ManualClock::default();
    let mut engine = Engine::new(graph, BatchTimer::first_start(clock.now(), interval));
    let mut printed = String::new();
    let mut offset = 0;
    for values in batches {
        let mut batch = RecordBatch::new();
        for v in values.iter() {
            batch.push(0, offset, 0, None, v.as_bytes());
            offset += 1;
        }
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("one batch per interval");
        match engine.run_batch(t, &mut batch, &clock) {
            Ok(report) => printed.push_str(&report.printed),
            Err(e) => return (printed, Some(e)),
        }
    }
    (printed, None)
}

/// A cogroup's element with its value lists as plain vectors.
pub fn unbuffer<K, V, W>(
    (k, (vs, ws)): (K, (dstream_core::jvm::CompactBuffer<V>, dstream_core::jvm::CompactBuffer<W>)),
) -> (K, (Vec<V>, Vec<W>)) {
    (k, (vs.0, ws.0))
}
