//! Exactly-once recovery, as a property: a run loop over an in-memory partitioned log, checkpointing into a real
//! directory, is crashed at arbitrary points (between batches, before its checkpoint, mid-write with a partial
//! temporary file, after the rename with the newest file then torn) and restarted each time. Its final state must
//! equal an uninterrupted run's, and the reference model's; every printed batch must equal the uninterrupted
//! run's batch of the same time (output is at-least-once: a batch may print twice, never differently).

use dstream_adapters::checkpoint::{encode, temp_file_name, Checkpoint, CheckpointMeta, CheckpointStore, NextOffset};
use dstream_adapters::recovery::{restore, Checkpointer, RecoveryError};
use dstream_cli::lab::{LabConfig, LabJob};
use dstream_cli::model::AverageModel;
use dstream_core::{BatchInfo, BatchTimer, Clock, Duration, Engine, ManualClock, OffsetRange, RecordBatch, Time};
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};
use std::fs;

const INTERVAL: Duration = Duration(1000);

/// A partitioned log, fully produced up front, and how many records each batch takes from each partition.
#[derive(Debug, Clone)]
struct Log {
    partitions: Vec<Vec<Vec<u8>>>,
    /// `plan[k - 1][p]`: records batch k takes from partition p.
    plan: Vec<Vec<usize>>,
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("range {0:?} is outside the log")]
    OutOfLog(OffsetRange),
    #[error("simulated crash")]
    Crash,
}

impl Log {
    fn fetch(&self, ranges: &[OffsetRange], batch: &mut RecordBatch) -> Result<(), FetchError> {
        for r in ranges {
            let part = self.partitions.get(r.partition as usize).ok_or(FetchError::OutOfLog(*r))?;
            let msgs = part.get(r.from as usize..r.until as usize).ok_or(FetchError::OutOfLog(*r))?;
            for (i, m) in msgs.iter().enumerate() {
                batch.push(r.partition, r.from + i as i64, 0, None, m);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashKind {
    /// After the batch ran, before its checkpoint was written.
    BeforeCheckpoint,
    /// As above, with the checkpoint's temporary file written up to this fraction (in 1/16ths) of its bytes.
    MidWrite(u8),
    /// After the checkpoint was renamed into place.
    AfterCheckpoint,
    /// After the rename, and the newest file is then torn (flipped byte or truncated), as by a lost disk write.
    TornNewest { truncate: bool },
}

/// A `dstream run`-like loop: generate up to `lookahead` batches ahead (ranges fixed at generation), run the
/// oldest, checkpoint with the others as pending.
struct Runner<'a> {
    log: &'a Log,
    lookahead: usize,
    checkpointer: Checkpointer,
    /// Crash after this many more processed batches, of this kind.
    crashes: VecDeque<(usize, CrashKind)>,
    processed: usize,
    printed: Vec<(Time, String)>,
}

enum Outcome {
    Finished(Box<Engine<LabJob>>),
    Crashed,
}

impl Runner<'_> {
    fn batches(&self) -> i64 {
        self.log.plan.len() as i64
    }

    fn crash_now(&mut self) -> Option<CrashKind> {
        match self.crashes.front() {
            Some(&(at, kind)) if at == self.processed => {
                self.crashes.pop_front();
                Some(kind)
            }
            _ => None,
        }
    }

    /// One incarnation of the process: start (fresh or from the newest checkpoint) and run until done or crashed.
    fn run_once(&mut self) -> Outcome {
        let mut clock = ManualClock::new(Time(0));
        let loaded = self.checkpointer.load().expect("a valid checkpoint always remains");
        let (mut engine, mut next) = match loaded {
            None => {
                let engine =
                    Engine::new(LabJob::new(LabConfig::default()), BatchTimer::first_start(clock.now(), INTERVAL));
                let next =
                    (0..self.log.partitions.len()).map(|p| NextOffset { partition: p as i32, offset: 0 }).collect();
                (engine, next)
            }
            Some(loaded) => {
                let mut resumed =
                    restore(loaded.checkpoint, LabJob::new(LabConfig::default()), INTERVAL, clock.now()).unwrap();
                let log = self.log;
                let crashes = &mut self.crashes;
                let processed = &mut self.processed;
                let printed = &mut self.printed;
                // A crash during catch-up: the fetch of the batch fails before it runs.
                let fetch = |r: &[OffsetRange], b: &mut RecordBatch| {
                    if crashes.front().is_some_and(|&(at, _)| at == *processed) {
                        crashes.pop_front();
                        return Err(FetchError::Crash);
                    }
                    *processed += 1;
                    log.fetch(r, b)
                };
                let on_report = |r: &dstream_core::BatchReport| printed.push((r.time, r.printed.clone()));
                match resumed.recompute(Some(&mut self.checkpointer), &clock, fetch, on_report) {
                    Ok(()) => {}
                    Err(RecoveryError::Fetch { source: FetchError::Crash, .. }) => return Outcome::Crashed,
                    Err(e) => panic!("recompute failed: {e}"),
                }
                (resumed.engine, resumed.next_offsets)
            }
        };
        let mut generated: VecDeque<BatchInfo> = VecDeque::new();
        let mut batch = RecordBatch::new();
        loop {
            // Generate ahead: each batch's ranges are fixed when its time comes.
            while generated.len() < self.lookahead {
                let t = engine.timer().next_time();
                let k = (t - engine.timer().zero()).millis() / INTERVAL.millis();
                if k > self.batches() {
                    break;
                }
                clock.set_time(t);
                assert_eq!(engine.poll_due(clock.now()), Some(t));
                let ranges = next
                    .iter_mut()
                    .map(|n| {
                        let from = n.offset;
                        n.offset += self.log.plan[k as usize - 1][n.partition as usize] as i64;
                        OffsetRange { partition: n.partition, from, until: n.offset }
                    })
                    .collect();
                generated.push_back(BatchInfo { time: t, ranges });
            }
            let Some(info) = generated.pop_front() else { return Outcome::Finished(Box::new(engine)) };
            batch.clear();
            self.log.fetch(&info.ranges, &mut batch).unwrap();
            let report = engine.run_batch(info.time, &mut batch, &clock).unwrap();
            self.printed.push((report.time, report.printed));
            self.processed += 1;
            let pending: Vec<BatchInfo> = generated.iter().cloned().collect();
            match self.crash_now() {
                None => {
                    self.checkpointer.after_batch(&mut engine, &next, &pending).unwrap();
                }
                Some(CrashKind::BeforeCheckpoint) => return Outcome::Crashed,
                Some(CrashKind::MidWrite(sixteenths)) => {
                    let due = engine
                        .last_completed()
                        .is_some_and(|t| self.checkpointer.is_due(t, engine.timer().zero(), engine.timer().interval()));
                    if due {
                        let t = engine.last_completed().unwrap();
                        let cp = Checkpoint {
                            meta: CheckpointMeta {
                                leader_epochs: Vec::new(),
                                fingerprint: self.checkpointer.fingerprint().clone(),
                                time: t,
                                zero: engine.timer().zero(),
                                interval: INTERVAL,
                                next_offsets: next.clone(),
                                pending,
                            },
                            state: dstream_adapters::recovery::save_state(engine.job_mut()).unwrap(),
                        };
                        let bytes = encode(&cp).unwrap();
                        let cut = bytes.len() * sixteenths as usize / 16;
                        fs::write(self.checkpointer.store().dir().join(temp_file_name(t)), &bytes[..cut]).unwrap();
                    }
                    return Outcome::Crashed;
                }
                Some(CrashKind::AfterCheckpoint) => {
                    self.checkpointer.after_batch(&mut engine, &next, &pending).unwrap();
                    return Outcome::Crashed;
                }
                Some(CrashKind::TornNewest { truncate }) => {
                    self.checkpointer.after_batch(&mut engine, &next, &pending).unwrap();
                    self.checkpointer.flush().unwrap();
                    let store = self.checkpointer.store();
                    let files = store.list().unwrap();
                    let all_valid = files.iter().all(|(_, p)| {
                        dstream_adapters::checkpoint::read_file::<dstream_adapters::checkpoint::JobState>(p).is_ok()
                    });
                    if files.len() >= 2 && all_valid {
                        let newest = &files[0].1;
                        let mut bytes = fs::read(newest).unwrap();
                        if truncate {
                            bytes.truncate(bytes.len() / 2);
                        } else {
                            let mid = bytes.len() / 2;
                            bytes[mid] ^= 0x20;
                        }
                        fs::write(newest, &bytes).unwrap();
                    }
                    return Outcome::Crashed;
                }
            }
        }
    }
}

fn message(key: u8, value: i8, malformed: bool) -> Vec<u8> {
    if malformed {
        format!("{},x{}", (b'a' + key) as char, value).into_bytes()
    } else {
        format!("{},{}", (b'a' + key) as char, value).into_bytes()
    }
}

fn log_strategy() -> impl Strategy<Value = Log> {
    (1usize..=3, 1usize..=10).prop_flat_map(|(parts, batches)| {
        proptest::collection::vec(proptest::collection::vec(0usize..=6, parts), batches).prop_flat_map(move |plan| {
            let sizes: Vec<usize> = (0..parts).map(|p| plan.iter().map(|b| b[p]).sum()).collect();
            let partitions = sizes
                .into_iter()
                .map(|n| {
                    proptest::collection::vec(
                        (0u8..5, any::<i8>(), proptest::bool::weighted(0.05))
                            .prop_map(|(k, v, bad)| message(k, v, bad)),
                        n,
                    )
                })
                .collect::<Vec<_>>();
            (partitions, Just(plan.clone())).prop_map(|(partitions, plan)| Log { partitions, plan })
        })
    })
}

fn crash_strategy() -> impl Strategy<Value = CrashKind> {
    prop_oneof![
        Just(CrashKind::BeforeCheckpoint),
        (0u8..=16).prop_map(CrashKind::MidWrite),
        Just(CrashKind::AfterCheckpoint),
        any::<bool>().prop_map(|truncate| CrashKind::TornNewest { truncate }),
    ]
}

fn run_to_end(
    log: &Log,
    lookahead: usize,
    every: u64,
    keep: usize,
    background: bool,
    crashes: Vec<(usize, CrashKind)>,
) -> (Engine<LabJob>, Vec<(Time, String)>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let fingerprint =
        dstream_cli::lab::fingerprint("avg", log.partitions.len() as u32, &LabConfig::default(), INTERVAL);
    let mut incarnations = 0;
    let mut runner = Runner {
        log,
        lookahead,
        checkpointer: Checkpointer::new(CheckpointStore::open(dir.path()).unwrap(), fingerprint.clone(), every),
        crashes: crashes.into(),
        processed: 0,
        printed: Vec::new(),
    };
    loop {
        incarnations += 1;
        // Each incarnation opens the directory afresh, as a restarted process does.
        // Writes handed to a background writer before the crash land (a real crash may lose the last one, which
        // is the same as crashing before it).
        runner.checkpointer.flush().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap().with_keep(keep);
        runner.checkpointer = Checkpointer::new(store, fingerprint.clone(), every);
        if background {
            runner.checkpointer = runner.checkpointer.in_background();
        }
        if let Outcome::Finished(engine) = runner.run_once() {
            runner.checkpointer.flush().unwrap();
            return (*engine, runner.printed, incarnations);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn crash_anywhere_then_restore_gives_the_uninterrupted_result(
        log in log_strategy(),
        lookahead in 1usize..=3,
        every in 1u64..=3,
        keep in 2usize..=4,
        background in any::<bool>(),
        crash_gaps in proptest::collection::vec((0usize..=4, crash_strategy()), 0..=6),
    ) {
        let (reference, reference_printed, _) = run_to_end(&log, lookahead, every, keep, false, vec![]);
        // Crash points as counts of processed batches, non-decreasing (several crashes may hit one point).
        let mut at = 0;
        let crashes: Vec<(usize, CrashKind)> = crash_gaps.iter().map(|&(gap, kind)| { at += gap; (at, kind) }).collect();
        let (engine, printed, incarnations) = run_to_end(&log, lookahead, every, keep, background, crashes.clone());
        prop_assert!(incarnations >= 1);

        // State: exactly the uninterrupted run's, stamps included.
        prop_assert_eq!(engine.job().checkpoint(), reference.job().checkpoint());
        // And the independent model's (sum, count) per key over everything in the log.
        let mut model = AverageModel::new();
        for part in &log.partitions {
            for m in part {
                model.feed(m);
            }
        }
        let got: Vec<(String, i128, u64)> =
            engine.job().snapshot().into_iter().map(|(k, a)| (k.to_string(), a.sum(), a.count())).collect();
        prop_assert_eq!(got, model.sums());

        // Output: every batch printed at least once, and each printing equals the uninterrupted run's.
        let want: BTreeMap<Time, String> = reference_printed.into_iter().collect();
        prop_assert_eq!(want.len(), log.plan.len());
        for (t, text) in &printed {
            prop_assert_eq!(Some(text), want.get(t), "batch {}", t);
        }
        let seen: std::collections::BTreeSet<Time> = printed.iter().map(|(t, _)| *t).collect();
        prop_assert_eq!(seen.len(), want.len());
    }
}

#[test]
fn a_crash_before_the_first_checkpoint_starts_over_from_the_beginning() {
    let log = Log { partitions: vec![vec![b"a,1".to_vec(), b"a,3".to_vec()]], plan: vec![vec![1], vec![1]] };
    let (engine, printed, incarnations) = run_to_end(&log, 1, 1, 2, false, vec![(1, CrashKind::BeforeCheckpoint)]);
    assert_eq!(incarnations, 2);
    assert_eq!(engine.job().averages(), vec![("a".into(), 2.0)]);
    // Batch 1000 printed twice (at-least-once output), batch 2000 once.
    let times: Vec<i64> = printed.iter().map(|(t, _)| t.0).collect();
    assert_eq!(times, vec![1000, 1000, 2000]);
}

#[test]
fn pending_batches_run_again_over_their_stored_ranges() {
    // Lookahead 3: when batch 1 completes, batches 2 and 3 are already generated and go into the checkpoint.
    let log = Log {
        partitions: vec![(1..=6).map(|v| format!("k,{v}").into_bytes()).collect()],
        plan: vec![vec![2], vec![2], vec![2]],
    };
    let (engine, printed, incarnations) = run_to_end(&log, 3, 1, 3, true, vec![(1, CrashKind::AfterCheckpoint)]);
    assert_eq!(incarnations, 2);
    assert_eq!(engine.job().averages(), vec![("k".into(), 3.5)]);
    let times: Vec<i64> = printed.iter().map(|(t, _)| t.0).collect();
    assert_eq!(times, vec![1000, 2000, 3000]);
}

#[test]
fn a_failed_background_write_is_reported_and_the_previous_checkpoint_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fingerprint = dstream_cli::lab::fingerprint("avg", 1, &LabConfig::default(), INTERVAL);
    let mut ck = Checkpointer::new(CheckpointStore::open(dir.path()).unwrap(), fingerprint, 1).in_background();
    let clock = ManualClock::new(Time(0));
    let mut engine = Engine::new(LabJob::new(LabConfig::default()), BatchTimer::first_start(Time(0), INTERVAL));
    let mut batch = RecordBatch::new();
    batch.push(0, 0, 0, None, b"a,4");
    engine.run_batch(Time(1000), &mut batch, &clock).unwrap();
    let next = [NextOffset { partition: 0, offset: 1 }];
    ck.after_batch(&mut engine, &next, &[]).unwrap();
    ck.flush().unwrap();
    // The next write cannot create its temporary file.
    fs::create_dir(dir.path().join(temp_file_name(Time(2000)))).unwrap();
    batch.clear();
    engine.run_batch(Time(2000), &mut batch, &clock).unwrap();
    ck.after_batch(&mut engine, &next, &[]).unwrap();
    let err = ck.flush().unwrap_err();
    assert!(err.to_string().contains(".checkpoint-2000.tmp"), "{err}");
    let loaded = ck.load().unwrap().unwrap();
    assert_eq!(loaded.checkpoint.meta.time, Time(1000));
}
