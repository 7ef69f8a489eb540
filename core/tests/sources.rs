//! Input streams beside the records: queue streams (Spark's `queueStream`) alone and with a second input, worked
//! from Spark's `QueueInputDStream.compute`: one queued batch per batch with `oneAtATime`, else every queued batch
//! at once; an empty queue gives the default batch, or an empty one.

use dstream_core::graph::GraphBuilder;
use dstream_core::sources::Queue;
use dstream_core::{BatchTimer, Clock, Duration, Engine, ManualClock, RecordBatch};
use std::cell::RefCell;
use std::rc::Rc;

type Seen<T> = Rc<RefCell<Vec<(i64, Vec<T>)>>>;

fn seen<T: Clone + 'static>(
    s: &dstream_core::graph::Stream<impl dstream_core::DStream<Item = T> + 'static>,
) -> Seen<T> {
    let out: Seen<T> = Rc::default();
    let o = out.clone();
    s.foreach_batch(move |t, items| o.borrow_mut().push((t.0, items.to_vec())));
    out
}

/// Runs `batches` batches; before batch i (from 0), `before(i)` may push to queues; `records(i)` are its records.
fn run(g: &GraphBuilder, batches: usize, mut before: impl FnMut(usize), records: impl Fn(usize) -> Vec<&'static str>) {
    let interval = Duration::from_secs(1);
    let mut clock = ManualClock::default();
    let mut engine = Engine::new(g.build(), BatchTimer::first_start(clock.now(), interval));
    let mut offset = 0;
    for i in 0..batches {
        before(i);
        let mut batch = RecordBatch::new();
        for r in records(i) {
            batch.push(0, offset, 0, None, r.as_bytes());
            offset += 1;
        }
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("a batch is due");
        engine.run_batch(t, &mut batch, &clock).expect("the batch runs");
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn one_at_a_time_takes_one_queued_batch_per_batch() {
    // Queue [a b], [c]: batch 1 gives a b, batch 2 c, batch 3 nothing (an empty RDD: the batch still runs);
    // d pushed before batch 4 comes in batch 4.
    let g = GraphBuilder::new();
    let q = Queue::new();
    q.push(strs(&["a", "b"]));
    q.push(strs(&["c"]));
    let out = seen(&g.queue_stream(&q, true));
    let q2 = q.clone();
    run(
        &g,
        4,
        |i| {
            if i == 3 {
                q2.push(strs(&["d"]))
            }
        },
        |_| vec![],
    );
    let want: Vec<(i64, Vec<String>)> =
        vec![(1000, strs(&["a", "b"])), (2000, strs(&["c"])), (3000, vec![]), (4000, strs(&["d"]))];
    assert_eq!(*out.borrow(), want);
    assert!(q.is_empty());
}

#[test]
fn all_at_once_takes_every_queued_batch_and_the_default_when_empty() {
    // Not one at a time: batch 1 unions [a b] and [c] (oldest first); batch 2 finds the queue empty and gives the
    // default [z]; [x] and [y] pushed before batch 3 come together.
    let g = GraphBuilder::new();
    let q = Queue::new();
    q.push(strs(&["a", "b"]));
    q.push(strs(&["c"]));
    let all = seen(&g.queue_stream_or(&q, false, strs(&["z"])));
    let q2 = q.clone();
    run(
        &g,
        3,
        |i| {
            if i == 2 {
                q2.push(strs(&["x"]));
                q2.push(strs(&["y"]));
            }
        },
        |_| vec![],
    );
    let want: Vec<(i64, Vec<String>)> =
        vec![(1000, strs(&["a", "b", "c"])), (2000, strs(&["z"])), (3000, strs(&["x", "y"]))];
    assert_eq!(*all.borrow(), want);
}

#[test]
fn a_job_with_two_inputs_joins_and_unions_them() {
    // The records (k=v) and a queue of (k, w) pairs, one queued batch per batch. Batch 1: records a=1 b=2, queue
    // (a,10) (c,30): join gives (a,(1,10)); union of the keys gives a b then a c. Batch 2: records a=5, queue empty:
    // join nothing, union a.
    let g = GraphBuilder::new();
    let kv = g.records().map(|r| {
        let s = String::from_utf8_lossy(r.value).into_owned();
        let (k, v) = s.split_once('=').expect("k=v");
        (k.to_string(), v.parse::<i64>().expect("a number"))
    });
    let q: Queue<(String, i64)> = Queue::new();
    q.push(vec![("a".into(), 10), ("c".into(), 30)]);
    let other = g.queue_stream(&q, true);
    let joined = seen(&kv.join(&other));
    let keys = seen(&kv.map(|(k, _)| k).union(&other.map(|(k, _)| k)));
    run(&g, 2, |_| {}, |i| if i == 0 { vec!["a=1", "b=2"] } else { vec!["a=5"] });
    assert_eq!(*joined.borrow(), vec![(1000, vec![("a".to_string(), (1, 10))]), (2000, vec![])]);
    assert_eq!(*keys.borrow(), vec![(1000, strs(&["a", "b", "a", "c"])), (2000, strs(&["a"]))]);
}

#[test]
fn a_queue_stream_feeds_stateful_operators() {
    // Running counts over two queued batches [x y x], [y]: (x,2) (y,1), then (x,2) (y,2).
    let g = GraphBuilder::new();
    let q = Queue::new();
    q.push(strs(&["x", "y", "x"]));
    q.push(strs(&["y"]));
    let counts = g
        .queue_stream(&q, true)
        .map(|w| (w, 1i64))
        .update_state_by_key(|vs: &[i64], s: Option<i64>| Some(s.unwrap_or(0) + vs.iter().sum::<i64>()));
    let out = seen(&counts);
    run(&g, 2, |_| {}, |_| vec![]);
    let p = |k: &str, n: i64| (k.to_string(), n);
    assert_eq!(*out.borrow(), vec![(1000, vec![p("x", 2), p("y", 1)]), (2000, vec![p("x", 2), p("y", 2)])]);
}
