//! Each output operation of a batch is reported with its kind and when its last step ran, on the batch's clock
//! (Spark's `OutputOperationInfo`).

use dstream_core::graph::GraphBuilder;
use dstream_core::{BatchTimer, Clock, Duration, Engine, OutputOperation, RecordBatch, Time};
use std::cell::Cell;
use std::rc::Rc;

/// A clock the program itself moves (as a slow output would take time).
#[derive(Clone, Default)]
struct SharedClock(Rc<Cell<Time>>);

impl Clock for SharedClock {
    fn now(&self) -> Time {
        self.0.get()
    }
}

#[test]
fn each_output_operation_is_timed_in_order() {
    let clock = SharedClock::default();
    let g = GraphBuilder::new();
    let lengths = g.records().map(|r| r.value.len() as i64);
    lengths.print(1);
    let slow = clock.clone();
    // The closure takes 7 ms of the batch's clock; the reduce's result is computed in the step of the first
    // operation that reads it.
    lengths.foreach_batch(move |_, _| slow.0.set(slow.0.get() + Duration(7)));
    lengths.map(|n| (n, 1i64)).reduce_by_key(|a, b| a + b).print(2);
    let mut engine = Engine::new(g.build(), BatchTimer::first_start(Time(0), Duration(1000)));
    let mut batch = RecordBatch::new();
    batch.push(0, 0, 0, None, b"abc");
    clock.0.set(Time(1000));
    let report = engine.run_batch(Time(1000), &mut batch, &clock).unwrap();
    let op = |id, name: &'static str, started, completed| OutputOperation {
        id,
        name,
        started: Time(started),
        completed: Time(completed),
    };
    assert_eq!(
        report.output_operations,
        vec![op(0, "print", 1000, 1000), op(1, "foreach_batch", 1000, 1007), op(2, "print", 1007, 1007)]
    );
    assert_eq!(report.processing_time, Duration(7));
    // A job that is not a graph of output operations reports none; a batch with nothing in it still runs them.
    clock.0.set(Time(2000));
    let report = engine.run_batch(Time(2000), &mut RecordBatch::new(), &clock).unwrap();
    assert_eq!(report.output_operations.len(), 3);
    assert_eq!(report.output_operations[1], op(1, "foreach_batch", 2000, 2007));
}
