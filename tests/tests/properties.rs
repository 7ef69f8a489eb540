//! Properties of the engine, the driver, recordings and checkpoints over arbitrary streams.

use dstream_cli::jobs::build_job;
use dstream_cli::jobs::replay_to_string;
use dstream_cli::lab::{LabCheckpoint, LabConfig, LabJob, Output};
use dstream_cli::model::AverageModel;
use dstream_cli::strategies::lab_config;
use dstream_core::{Duration, Key, OutputOrder, Time};
use dstream_harness::driver::{Batch, Driver, DriverCheckpoint};
use dstream_harness::recording::{Frame, Recording, RecordingReader};
use dstream_harness::replay::replay_reader;
use dstream_harness::strategies::{batches, recording, restarts, split, stream, Stream};
use dstream_harness::text::{from_text, to_text};
use proptest::prelude::*;

const INTERVAL: Duration = Duration(1000);

type Batches = Vec<Vec<(i32, Vec<u8>)>>;

/// Runs batches through a fresh driver; restarts from a checkpoint (through its bytes) after batch i if `restart[i]`.
fn run(config: &LabConfig, partitions: u32, bs: &Batches, restart: &[bool]) -> (Vec<Batch<LabJob>>, Driver<LabJob>) {
    let mut d = dstream_cli::driver::lab_driver(config.clone(), INTERVAL).with_partitions(partitions as usize);
    let mut outs = Vec::new();
    for (i, b) in bs.iter().enumerate() {
        for (p, v) in b {
            d.pipe(*p, v);
        }
        outs.extend(d.advance(1).expect("skip policy never fails"));
        if restart.get(i).copied().unwrap_or(false) {
            let bytes = d.checkpoint().to_bytes();
            let cp = DriverCheckpoint::<LabCheckpoint>::from_bytes(&bytes).expect("own checkpoint decodes");
            d = dstream_cli::driver::lab_driver_restore(config.clone(), INTERVAL, cp);
        }
    }
    (outs, d)
}

fn printed(outs: &[Batch<LabJob>]) -> String {
    outs.iter().map(|o| o.printed.as_str()).collect()
}

fn mapped(outs: &[Batch<LabJob>]) -> Vec<Output> {
    outs.iter().flat_map(|o| o.mapped.iter().cloned()).collect()
}

fn case() -> impl Strategy<Value = (Stream, Vec<usize>, LabConfig)> {
    stream(40).prop_flat_map(|s| {
        let n = s.messages.len();
        (Just(s), split(n), lab_config(INTERVAL))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// (1) A recording of a run, replayed (binary and text forms), prints exactly what the run printed.
    #[test]
    fn record_then_replay_prints_the_same((s, sizes, config) in case()) {
        let bs = batches(&s.messages, &sizes);
        let (outs, _) = run(&config, s.partitions, &bs, &[]);
        let header = dstream_cli::lab::recording_header("avg", s.partitions, INTERVAL, Time(0), &config);
        let rec = Recording { header, frames: outs.iter().map(|o| o.frame.clone()).collect() };
        let live = printed(&outs);
        let bytes = rec.to_bytes().unwrap();
        let from_binary = Recording::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&replay_to_string(&from_binary).unwrap(), &live);
        // The streaming path `dstream replay` takes: frames decoded straight into the batch buffer.
        let mut reader = RecordingReader::from_bytes(&bytes).unwrap();
        let job = build_job(reader.header()).unwrap();
        let mut streamed = Vec::new();
        replay_reader(job, &mut reader, &mut streamed, &mut |_| {}).unwrap();
        prop_assert_eq!(&String::from_utf8(streamed).unwrap(), &live);
        let from_text = from_text(&to_text(&rec)).unwrap();
        prop_assert_eq!(replay_to_string(&from_text).unwrap(), live);
    }

    /// (2) Checkpoint and restore at any batch boundaries: same outputs and final state as one run.
    #[test]
    fn restore_at_any_boundary_changes_nothing((s, sizes, config) in case(), seed in restarts(64)) {
        let bs = batches(&s.messages, &sizes);
        let (straight, d1) = run(&config, s.partitions, &bs, &[]);
        let (restarted, d2) = run(&config, s.partitions, &bs, &seed);
        prop_assert_eq!(printed(&straight), printed(&restarted));
        prop_assert_eq!(mapped(&straight), mapped(&restarted));
        let frames = |o: &[Batch<LabJob>]| o.iter().map(|b| b.frame.clone()).collect::<Vec<Frame>>();
        prop_assert_eq!(frames(&straight), frames(&restarted));
        // Everything else too: per-batch state snapshots, malformed reports.
        prop_assert_eq!(&straight, &restarted);
        prop_assert_eq!(d1.snapshot(), d2.snapshot());
        prop_assert_eq!(d1.checkpoint(), d2.checkpoint());
    }

    /// (3) Without timeouts, the final state does not depend on how the stream is split into batches, on the
    /// number of state partitions, or on the number of Kafka partitions; on one Kafka partition the mapped
    /// stream is the same sequence too.
    #[test]
    fn final_state_is_independent_of_splitting_and_partitioning(
        (s, sizes, config) in case(),
        other_sizes in split(40),
        state_parts in 1usize..=5,
    ) {
        let mut config = config;
        config.state.timeout = None;
        config.state.output_order = OutputOrder::Arrival;
        let mut other = config.clone();
        other.state.num_partitions = state_parts;
        let n = s.messages.len();
        let fix = |mut v: Vec<usize>| { let t: usize = v.iter().sum(); if t < n { v.push(n - t) } v };
        let (a_out, a) = run(&config, s.partitions, &batches(&s.messages, &sizes), &[]);
        let (b_out, b) = run(&other, s.partitions, &batches(&s.messages, &fix(other_sizes)), &[]);
        prop_assert_eq!(a.snapshot(), b.snapshot());
        // All on Kafka partition 0 (processing order = production order): identical mapped sequences.
        let one: Vec<(i32, Vec<u8>)> = s.messages.iter().map(|(_, v)| (0, v.clone())).collect();
        let (c_out, c) = run(&config, 1, &batches(&one, &sizes), &[]);
        prop_assert_eq!(c.snapshot(), a.snapshot());
        let (d_out, _) = run(&other, 1, &[one.clone()].to_vec(), &[]);
        prop_assert_eq!(mapped(&c_out), mapped(&d_out));
        let malformed = |o: &[Batch<LabJob>]| o.iter().map(|b| b.malformed.len()).sum::<usize>();
        prop_assert_eq!(malformed(&a_out), malformed(&b_out));
    }

    /// The running average after every record equals the independent reference model's.
    #[test]
    fn running_average_matches_the_model((s, sizes, config) in case()) {
        let mut config = config;
        config.state.timeout = None;
        config.state.output_order = OutputOrder::Arrival;
        let (outs, d) = run(&config, s.partitions, &batches(&s.messages, &sizes), &[]);
        let mut model = AverageModel::new();
        let mut want = Vec::new();
        for o in &outs {
            for r in &o.frame.records {
                if let Some((k, avg)) = model.feed(&r.value) {
                    want.push((Key::from(k), avg));
                }
            }
        }
        let got = mapped(&outs);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(&g.0, &w.0);
            prop_assert_eq!(g.1.to_bits(), w.1.to_bits(), "{:?} vs {:?}", g, w);
        }
        let sums: Vec<(String, i128, u64)> = d.snapshot().into_iter().map(|(k, a)| (k.to_string(), a.sum(), a.count())).collect();
        prop_assert_eq!(sums, model.sums());
    }

    /// (4) Arbitrary recordings round-trip through the binary and the text form.
    #[test]
    fn recordings_round_trip(rec in recording()) {
        prop_assert_eq!(&Recording::from_bytes(&rec.to_bytes().unwrap()).unwrap(), &rec);
        let text = to_text(&rec);
        prop_assert_eq!(&from_text(&text).unwrap(), &rec, "{}", text);
    }

    /// (4) Driver checkpoints taken at any point of any run round-trip through their bytes.
    #[test]
    fn checkpoints_round_trip((s, sizes, config) in case()) {
        let mut d = dstream_cli::driver::lab_driver(config, INTERVAL);
        for b in batches(&s.messages, &sizes) {
            for (p, v) in b {
                d.pipe(p, &v);
            }
            d.advance(1).unwrap();
            let cp = d.checkpoint();
            prop_assert_eq!(DriverCheckpoint::<LabCheckpoint>::from_bytes(&cp.to_bytes()).unwrap(), cp);
        }
    }
}
