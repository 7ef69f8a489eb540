//! The examples' jobs in the test driver, without a broker: the same functions the examples run live, fed
//! records batch by batch on a manual clock, their output read per stream and their state per operator; a
//! driver checkpoint goes through the file store's format and restores into the job built anew.
// Each example includes the examples' shared argument parser.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/lab.rs"]
#[allow(dead_code)]
mod lab;
#[path = "../examples/sessions.rs"]
#[allow(dead_code)]
mod sessions;
#[path = "../examples/word_count.rs"]
#[allow(dead_code)]
mod word_count;

use dstream_adapters::checkpoint::{decode, encode};
use dstream_core::graph::GraphBuilder;
use dstream_core::stream::MapWithStateCheckpoint;
use dstream_core::{Duration, Time};
use dstream_harness::driver::{Driver, Output};

#[test]
fn lab_job_in_the_driver_with_a_checkpoint_round_trip() {
    let g = GraphBuilder::new();
    let out = Output::capture(&lab::averages(&g.records_of("avg")));
    let mut d = Driver::for_graph(&g, Duration::from_secs(2));
    d.pipe(0, b"a,10");
    d.pipe(1, b"b,3");
    d.pipe(0, b"a,15");
    d.pipe(0, b"no comma");
    let batch = d.advance(1).unwrap().remove(0);
    assert_eq!((batch.malformed.len(), batch.malformed[0].partition, batch.malformed[0].offset), (1, 0, 2));
    // Records are processed in (partition, offset) order.
    assert_eq!(out.read_values(), vec![("a".to_string(), 10.0), ("a".to_string(), 12.5), ("b".to_string(), 3.0)]);
    // The operator's state, decoded: (sum, count) per key.
    let state: MapWithStateCheckpoint<String, (i128, u64)> = d.state("map_with_state#0").unwrap();
    let mut entries: Vec<(String, (i128, u64))> = state.state.entries.into_iter().map(|(k, e)| (k, e.state)).collect();
    entries.sort();
    assert_eq!(entries, vec![("a".to_string(), (25, 2)), ("b".to_string(), (3, 1))]);

    // Checkpoint, through the file format, into a job built anew.
    let cp = d.checkpoint_as("avg", "lab").unwrap();
    let cp = decode(&encode(&cp).unwrap()).unwrap();
    let g2 = GraphBuilder::new();
    let out2 = Output::capture(&lab::averages(&g2.records_of("avg")));
    let mut d2 = Driver::from_checkpoint(&g2, &cp).unwrap();
    d2.pipe(0, b"a,20");
    let batch = d2.advance(1).unwrap().remove(0);
    assert_eq!(batch.time, Time(4000));
    assert_eq!(batch.frame.ranges[0].from, 3, "offsets continue where the checkpoint left them");
    assert_eq!(out2.read_values(), vec![("a".to_string(), 15.0)]);
}

#[test]
fn word_count_job_counts_per_batch_and_per_window() {
    let g = GraphBuilder::new();
    let (counts, windowed) = word_count::word_counts(&g.records_of("lines"));
    let (counts, windowed) = (Output::capture(&counts), Output::capture(&windowed));
    let mut d = Driver::for_graph(&g, Duration::from_secs(1));
    let lines: [&[&str]; 8] = [&["to be or", "not to be"], &["be"], &[], &[], &[], &["or"], &[], &[]];
    for batch in lines {
        batch.iter().for_each(|l| {
            d.pipe(0, l.as_bytes());
        });
        d.advance(1).unwrap();
    }
    let s = |w: &str, n: i64| (w.to_string(), n);
    let (t1, c1) = counts.read_batch().unwrap();
    assert_eq!((t1, c1), (Time(1000), vec![s("to", 2), s("be", 2), s("or", 1), s("not", 1)]));
    // Windows of 6 s every 2 s, sorted by key, keys whose count fell to 0 dropped.
    let w: Vec<(Time, Vec<(String, i64)>)> = std::iter::from_fn(|| windowed.read_batch()).collect();
    assert_eq!(
        w,
        vec![
            (Time(2000), vec![s("be", 3), s("not", 1), s("or", 1), s("to", 2)]),
            (Time(4000), vec![s("be", 3), s("not", 1), s("or", 1), s("to", 2)]),
            (Time(6000), vec![s("be", 3), s("not", 1), s("or", 2), s("to", 2)]),
            (Time(8000), vec![s("or", 1)]),
        ]
    );
}

#[test]
fn sessions_job_closes_a_session_after_its_timeout() {
    let g = GraphBuilder::new();
    let closed = Output::capture(&sessions::closed_sessions(&g.records_of("avg")));
    let mut d = Driver::for_graph(&g, Duration::from_secs(1));
    d.pipe(0, b"u,1");
    d.advance(1).unwrap();
    d.pipe(0, b"u,2");
    d.pipe(0, b"v,1");
    d.advance(1).unwrap();
    // Last events at 2 s; idle longer than 3 s by 6 s; timeouts are scanned every 10 x 1 s (Spark's default).
    d.advance(7).unwrap();
    assert!(closed.read_values().is_empty(), "no scan before 10 s");
    d.advance(1).unwrap();
    let mut got = closed.read_values();
    got.sort();
    assert_eq!(got, vec![("u".to_string(), 2, 1000), ("v".to_string(), 1, 0)]);
}
