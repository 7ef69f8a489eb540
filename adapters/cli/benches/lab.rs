//! The lab job over 10,000,000 generated messages in batches of 100,000, beside a hand-written loop doing
//! the same work, in the same run; then the memory held by a state of 1,000,000 distinct keys.
//!
//! Run with `cargo bench -p dstream-cli --bench lab`. Figures go to stdout; README.md quotes them.

use dstream_cli::lab::{parse_record, AverageFn, LabConfig, LabJob, LabParser};
use dstream_core::graph::GraphBuilder;
use dstream_core::{BatchTimer, Clock, Duration, Engine, Graph, Key, ManualClock, RecordBatch, StateSpec};
use rustc_hash::FxHashMap;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const TOTAL: usize = 10_000_000;
const PER_BATCH: usize = 100_000;

#[path = "common/gen.rs"]
mod gen;
use gen::Gen;

/// The same work written by hand: parse, hash-map update, push the average into a reused Vec.
fn hand_loop(batch: &RecordBatch, state: &mut FxHashMap<String, (i64, u64)>, out: &mut Vec<f64>) -> usize {
    out.clear();
    let mut bad = 0;
    for rec in batch.iter() {
        let Ok((k, v)) = parse_record(rec.value) else {
            bad += 1;
            continue;
        };
        let e = match state.get_mut(k) {
            Some(e) => e,
            None => state.entry(k.to_string()).or_insert((0, 0)),
        };
        e.0 += v;
        e.1 += 1;
        out.push(e.0 as f64 / e.1 as f64);
    }
    bad
}

/// The process's peak resident set size in MB (Linux), if known.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The hand loop again, materialising what the engine's mapped stream holds: (key, average) pairs with the same
/// inline key type, so the comparison separates the engine's overhead from the cost of its output.
fn hand_loop_pairs(batch: &RecordBatch, state: &mut FxHashMap<Key, (i64, u64)>, out: &mut Vec<(Key, f64)>) -> usize {
    out.clear();
    let mut bad = 0;
    for rec in batch.iter() {
        let Ok((k, v)) = parse_record(rec.value) else {
            bad += 1;
            continue;
        };
        let k = Key::new(k);
        let e = match state.get_mut(&k) {
            Some(e) => e,
            None => state.entry(k.clone()).or_insert((0, 0)),
        };
        e.0 += v;
        e.1 += 1;
        out.push((k, e.0 as f64 / e.1 as f64));
    }
    bad
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    if std::env::args().any(|a| a == "--memory-only") {
        memory();
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let total = if quick { TOTAL / 10 } else { TOTAL };
    let mut batch = RecordBatch::with_capacity(PER_BATCH, PER_BATCH * 5);

    // Engine.
    let mut clock = ManualClock::default();
    let interval = Duration::from_secs(2);
    let mut config = LabConfig { print: None, ..LabConfig::default() };
    if let Ok(n) = std::env::var("PARTS") {
        config.state.num_partitions = n.parse().unwrap();
    }
    let mut engine = Engine::new(LabJob::new(config.clone()), BatchTimer::first_start(clock.now(), interval));
    // The same job built on the public graph API (input, map_with_state, foreach_batch keeping every element).
    let (mut graph_engine, graph_last) = public_api_job(&config, &clock, interval);
    // The hand-written loop runs on the same batch right after the engine, so both see the same machine load.
    let mut gen = Gen(0x9E37_79B9_7F4A_7C15);
    let mut state: FxHashMap<String, (i64, u64)> = FxHashMap::default();
    let mut out = Vec::with_capacity(PER_BATCH);
    let mut pair_state: FxHashMap<Key, (i64, u64)> = FxHashMap::default();
    let mut pairs = Vec::with_capacity(PER_BATCH);
    let (mut engine_secs, mut hand_secs, mut pairs_secs, mut graph_secs) = (0.0, 0.0, 0.0, 0.0);
    let (mut checksum_engine, mut checksum_hand, mut checksum_pairs, mut checksum_graph) = (0.0, 0.0, 0.0, 0.0);
    for b in 0..total / PER_BATCH {
        gen.fill(&mut batch, (b * PER_BATCH) as i64, PER_BATCH);
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("due");
        let start = Instant::now();
        engine.run_batch(t, &mut batch, &clock).expect("batch runs");
        engine_secs += start.elapsed().as_secs_f64();
        checksum_engine += engine.job().last_element().map_or(0.0, |o| o.1);

        let start = Instant::now();
        graph_engine.run_batch(t, &mut batch, &clock).expect("batch runs");
        graph_secs += start.elapsed().as_secs_f64();
        checksum_graph += graph_last.get();

        let start = Instant::now();
        hand_loop(&batch, &mut state, &mut out);
        hand_secs += start.elapsed().as_secs_f64();
        checksum_hand += out.last().copied().unwrap_or(0.0);

        let start = Instant::now();
        hand_loop_pairs(&batch, &mut pair_state, &mut pairs);
        pairs_secs += start.elapsed().as_secs_f64();
        checksum_pairs += pairs.last().map_or(0.0, |p| p.1);
    }
    assert_eq!(checksum_engine, checksum_pairs, "engine and the pairs loop must agree");
    assert_eq!(checksum_engine, checksum_hand, "engine and hand loop must agree");
    assert_eq!(checksum_engine, checksum_graph, "the lab job and the public-API graph must agree");

    let engine_rate = total as f64 / engine_secs / 1e6;
    let hand_rate = total as f64 / hand_secs / 1e6;
    println!("lab job, {total} messages in batches of {PER_BATCH}");
    println!("  dstream engine : {engine_rate:8.1} M records/s ({engine_secs:.3} s)");
    println!("  hand-written   : {hand_rate:8.1} M records/s ({hand_secs:.3} s)");
    let pairs_rate = total as f64 / pairs_secs / 1e6;
    println!("  hand, pairs    : {pairs_rate:8.1} M records/s ({pairs_secs:.3} s)  (materialises (key, average))");
    let graph_rate = total as f64 / graph_secs / 1e6;
    println!(
        "  public API     : {graph_rate:8.1} M records/s ({graph_secs:.3} s)  (the same job as a GraphBuilder graph)"
    );
    println!("  engine / hand  : {:8.2} x the hand loop's time", engine_secs / hand_secs);
    println!("  graph / hand   : {:8.2} x the hand loop's time", graph_secs / hand_secs);
    println!("  engine / pairs : {:8.2} x the pairs loop's time", engine_secs / pairs_secs);

    if std::env::args().any(|a| a == "--no-memory") {
        return;
    }
    drop(engine);
    drop(graph_engine);
    drop(state);
    memory();
}

/// The lab's job on the public API: the records parsed by the lab's parser, its mapping function in
/// `map_with_state`, every element kept by `foreach_batch` (as `LabJob` keeps its mapped output); the last
/// element's average of each batch goes to the returned cell.
fn public_api_job(config: &LabConfig, clock: &ManualClock, interval: Duration) -> (Engine<Graph>, Rc<Cell<f64>>) {
    let g = GraphBuilder::new();
    let spec = StateSpec::with_mapping(AverageFn).options(config.state.clone());
    let averages = g.records().parse(LabParser).map_with_state(spec);
    let last = Rc::new(Cell::new(0.0));
    let l = last.clone();
    averages.foreach_batch(move |_, items| l.set(items.last().map_or(0.0, |o: &(Key, f64)| o.1)));
    (Engine::new(g.build(), BatchTimer::first_start(clock.now(), interval)), last)
}

/// Memory for 1,000,000 distinct keys: heap held and peak by the counting allocator, and the process's peak RSS.
fn memory() {
    let interval = Duration::from_secs(2);
    let mut batch = RecordBatch::with_capacity(PER_BATCH, PER_BATCH * 16);
    let keys = 1_000_000;
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut clock = ManualClock::default();
    let config = LabConfig { print: None, ..LabConfig::default() };
    let mut engine = Engine::new(LabJob::new(config.clone()), BatchTimer::first_start(clock.now(), interval));
    let mut line = String::new();
    for b in 0..keys / PER_BATCH {
        batch.clear();
        for i in 0..PER_BATCH {
            use std::fmt::Write;
            line.clear();
            let _ = write!(line, "key{:07},{}", b * PER_BATCH + i, i % 26);
            batch.push(0, (b * PER_BATCH + i) as i64, 0, None, line.as_bytes());
        }
        clock.advance(interval);
        let t = engine.poll_due(clock.now()).expect("due");
        engine.run_batch(t, &mut batch, &clock).expect("batch runs");
    }
    let held = CURRENT.load(Ordering::Relaxed) - base;
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert_eq!(engine.job().key_count(), keys);
    println!(
        "state of {keys} distinct keys: {:.1} MB held, {:.1} MB peak (heap, incl. batch buffers)",
        held as f64 / 1e6,
        peak as f64 / 1e6
    );
    if let Some(rss) = peak_rss_mb() {
        println!("  process peak RSS: {rss:.1} MB (the whole process: meaningful with --memory-only)");
    }
}
