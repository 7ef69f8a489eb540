//! The harness's test driver checkpointed through the real checkpoint store: a run crashed at any batch boundary
//! (before the save, mid-write, after the rename, with the newest file torn) and restored from the store ends with
//! exactly the state and per-batch output of an uninterrupted run, and the reference model's sums.

use dstream_adapters::checkpoint::{
    encode, temp_file_name, Checkpoint, CheckpointMeta, CheckpointStore, Fingerprint, NextOffset,
};
use dstream_cli::lab::{LabCheckpoint, LabConfig};
use dstream_cli::model::AverageModel;
use dstream_core::{Duration, Time};
use dstream_harness::driver::{Driver, DriverCheckpoint};
use proptest::prelude::*;
use std::collections::BTreeMap;

const INTERVAL: Duration = Duration(1000);

/// Batches of (partition, message).
type Batches = Vec<Vec<(usize, Vec<u8>)>>;

#[derive(Debug, Clone, Copy)]
enum Crash {
    BeforeSave,
    MidWrite(u8),
    AfterSave,
    TornNewest,
}

fn to_store(d: &Driver<dstream_cli::lab::LabJob>, fingerprint: &Fingerprint) -> Checkpoint<LabCheckpoint> {
    let cp = d.checkpoint();
    Checkpoint {
        meta: CheckpointMeta {
            leader_epochs: Vec::new(),
            fingerprint: fingerprint.clone(),
            time: cp.time,
            zero: cp.zero,
            interval: INTERVAL,
            next_offsets: cp
                .next_offsets
                .iter()
                .enumerate()
                .map(|(p, &offset)| NextOffset { partition: p as i32, offset })
                .collect(),
            pending: vec![],
        },
        state: cp.job,
    }
}

fn from_store(cp: Checkpoint<LabCheckpoint>) -> Driver<dstream_cli::lab::LabJob> {
    let next_offsets = cp.meta.next_offsets.iter().map(|n| n.offset).collect();
    let dc = DriverCheckpoint { time: cp.meta.time, zero: cp.meta.zero, next_offsets, job: cp.state };
    dstream_cli::driver::lab_driver_restore(LabConfig::default(), cp.meta.interval, dc)
}

/// Runs `batches` (each a list of (partition, message)), crashing at the boundaries in `crashes` the first time
/// each is reached; returns the final driver and every printed batch, re-runs included.
fn run(
    parts: usize,
    batches: &[Vec<(usize, Vec<u8>)>],
    crashes: &BTreeMap<usize, Crash>,
) -> (Driver<dstream_cli::lab::LabJob>, Vec<(Time, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let fingerprint = dstream_cli::lab::fingerprint("avg", parts as u32, &LabConfig::default(), INTERVAL);
    // The log: each partition's messages in offset order; batch i covers offsets [ends[i-1], ends[i]).
    let mut log: Vec<Vec<Vec<u8>>> = vec![vec![]; parts];
    let mut ends: Vec<Vec<i64>> = vec![];
    for b in batches {
        for (p, m) in b {
            log[*p].push(m.clone());
        }
        ends.push(log.iter().map(|l| l.len() as i64).collect());
    }
    let mut crashes = crashes.clone();
    let mut printed = vec![];
    let mut store = CheckpointStore::open(dir.path()).unwrap().with_keep(3);
    let mut driver = dstream_cli::driver::lab_driver(LabConfig::default(), INTERVAL).with_partitions(parts);
    let mut i = 0;
    while i < batches.len() {
        // Batch i: pipe the log from where the driver stands (after a restore, its checkpoint's offsets).
        let from: Vec<i64> = if i == 0 { vec![0; parts] } else { ends[i - 1].clone() };
        for (p, part) in log.iter().enumerate() {
            for m in &part[from[p] as usize..ends[i][p] as usize] {
                driver.pipe(p as i32, m);
            }
        }
        let out = driver.advance(1).unwrap();
        printed.extend(out.into_iter().map(|o| (o.time, o.printed)));
        let cp = to_store(&driver, &fingerprint);
        let crash = crashes.remove(&i);
        match crash {
            None => {
                store.save(&cp).unwrap();
                i += 1;
                continue;
            }
            Some(Crash::BeforeSave) => {}
            Some(Crash::MidWrite(sixteenths)) => {
                let bytes = encode(&cp).unwrap();
                let cut = bytes.len() * sixteenths as usize / 16;
                std::fs::write(dir.path().join(temp_file_name(cp.meta.time)), &bytes[..cut]).unwrap();
            }
            Some(Crash::AfterSave) => {
                store.save(&cp).unwrap();
            }
            Some(Crash::TornNewest) => {
                store.save(&cp).unwrap();
                let files = store.list().unwrap();
                if files.len() >= 2 {
                    let mut bytes = std::fs::read(&files[0].1).unwrap();
                    bytes.truncate(bytes.len() - 1);
                    std::fs::write(&files[0].1, &bytes).unwrap();
                }
            }
        }
        // The crash: the process is gone; a new one opens the directory and resumes.
        store = CheckpointStore::open(dir.path()).unwrap().with_keep(3);
        match store.load_latest::<LabCheckpoint>(Some(&fingerprint)).unwrap() {
            None => {
                driver = dstream_cli::driver::lab_driver(LabConfig::default(), INTERVAL).with_partitions(parts);
                i = 0;
            }
            Some(loaded) => {
                let t = loaded.checkpoint.meta.time;
                let offsets: Vec<i64> = loaded.checkpoint.meta.next_offsets.iter().map(|n| n.offset).collect();
                i = (t.millis() / INTERVAL.millis()) as usize;
                assert_eq!(offsets, ends[i - 1], "a checkpoint's offsets are those after its batch");
                driver = from_store(loaded.checkpoint);
            }
        }
    }
    (driver, printed)
}

fn batches_strategy() -> impl Strategy<Value = (usize, Batches)> {
    (1usize..=3).prop_flat_map(|parts| {
        let msg = (0..parts, 0u8..4, -50i32..50)
            .prop_map(|(p, k, v)| (p, format!("{},{v}", (b'a' + k) as char).into_bytes()));
        (Just(parts), proptest::collection::vec(proptest::collection::vec(msg, 0..6), 1..10))
    })
}

fn crash_strategy() -> impl Strategy<Value = Crash> {
    prop_oneof![
        Just(Crash::BeforeSave),
        (0u8..=16).prop_map(Crash::MidWrite),
        Just(Crash::AfterSave),
        Just(Crash::TornNewest),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn driver_crashed_anywhere_and_restored_from_files_matches_the_uninterrupted_run(
        (parts, batches) in batches_strategy(),
        crashes in proptest::collection::btree_map(0usize..10, crash_strategy(), 0..6),
    ) {
        let (reference, reference_printed) = run(parts, &batches, &BTreeMap::new());
        let (driver, printed) = run(parts, &batches, &crashes);
        prop_assert_eq!(driver.job().checkpoint(), reference.job().checkpoint());
        prop_assert_eq!(driver.snapshot(), reference.snapshot());
        let mut model = AverageModel::new();
        for m in batches.iter().flatten() {
            model.feed(&m.1);
        }
        let sums: Vec<(String, i128, u64)> =
            driver.snapshot().into_iter().map(|(k, a)| (k.to_string(), a.sum(), a.count())).collect();
        prop_assert_eq!(sums, model.sums());
        // Every batch printed at least once; every printing equal to the uninterrupted run's.
        let want: BTreeMap<Time, String> = reference_printed.into_iter().collect();
        prop_assert_eq!(want.len(), batches.len());
        for (t, text) in &printed {
            prop_assert_eq!(Some(text), want.get(t));
        }
    }
}
