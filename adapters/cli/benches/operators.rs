//! Windowed counts and a join over 10,000,000 generated lab messages (letter a-z, value 0-25) in 100 batches of
//! 100,000 (1 s each), beside the lab job over the same batches in the same run.
//!
//! Run with `cargo bench -p dstream-cli --bench operators`. Figures go to stdout; README.md quotes them.

use dstream_cli::lab::{LabConfig, LabJob, LabParser};
use dstream_core::{
    input, BatchTimer, DStreamExt, Duration, Engine, Graph, Job, MalformedPolicy, ManualClock, RecordBatch, Time,
};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

const TOTAL: usize = 10_000_000;
const PER_BATCH: usize = 100_000;

#[path = "common/gen.rs"]
mod gen;
use gen::Gen;

/// Seconds to run `job` over the 100 batches (generation not counted).
fn time_job<J: Job>(job: J, batches: &mut [RecordBatch]) -> f64 {
    let interval = Duration::from_secs(1);
    let mut engine = Engine::new(job, BatchTimer::first_start(Time(0), interval));
    let start = Instant::now();
    for (i, batch) in batches.iter_mut().enumerate() {
        let t = Time((i as i64 + 1) * 1000);
        engine.run_batch(t, batch, &ManualClock::new(t)).expect("batch runs");
    }
    start.elapsed().as_secs_f64()
}

fn counter<T>() -> (Rc<Cell<usize>>, impl FnMut(Time, &[T])) {
    let n = Rc::new(Cell::new(0));
    let m = n.clone();
    (n, move |_t: Time, items: &[T]| m.set(m.get() + items.len()))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut gen = Gen(0x9E37_79B9_7F4A_7C15);
    let mut batches: Vec<RecordBatch> = (0..TOTAL / PER_BATCH)
        .map(|i| {
            let mut b = RecordBatch::new();
            gen.fill(&mut b, (i * PER_BATCH) as i64, PER_BATCH);
            b
        })
        .collect();
    let records = || input(LabParser, MalformedPolicy::Skip);
    let (l, s) = (Duration::from_secs(10), Duration::from_secs(1));
    let rate = |secs: f64| TOTAL as f64 / secs / 1e6;

    let lab = time_job(LabJob::new(LabConfig { print: None, ..LabConfig::default() }), &mut batches);

    let (n1, sink) = counter();
    let cbw = time_job(Graph::new().output(records().count_by_window(l, s).foreach_batch(sink)), &mut batches);

    let (n2, sink) = counter();
    let job = Graph::new().output(records().map(|(k, _)| k).count_by_value_and_window(l, s).foreach_batch(sink));
    let cbvw = time_job(job, &mut batches);

    // Each record joined with its key's largest value in the batch: one output per record.
    let (n3, sink) = counter();
    let shared = records().shared();
    let max = shared.consumer().reduce_by_key(|a: i64, b: i64| a.max(b));
    let job = Graph::new().output(shared.consumer().join(max).foreach_batch(sink));
    let join = time_job(job, &mut batches);

    println!("{TOTAL} lab messages in batches of {PER_BATCH}, 1 s batches, windows of 10 s sliding by 1 s");
    println!("  lab job (map_with_state)         : {:8.1} M records/s ({lab:.3} s)", rate(lab));
    println!("  count_by_window                  : {:8.1} M records/s ({cbw:.3} s, {} outputs)", rate(cbw), n1.get());
    println!("  count_by_value_and_window        : {:8.1} M records/s ({cbvw:.3} s, {} outputs)", rate(cbvw), n2.get());
    println!("  join with the batch's max per key: {:8.1} M records/s ({join:.3} s, {} outputs)", rate(join), n3.get());
}
