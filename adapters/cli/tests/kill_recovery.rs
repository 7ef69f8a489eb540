//! `dstream run --checkpoint` against a real broker (tansu and Apache Kafka), killed with SIGKILL at random moments and restarted each time:
//! at the end the state holds every produced message exactly once. Set DSTREAM_KILL_SEED to replay a failure; the
//! seed and every kill moment are printed (shown by `cargo test` when the test fails).

#[macro_use]
mod common;

use common::{checkpoint_rows, dstream, generate, lab_messages, model_of, ok_stdout, TestBroker};
use dstream_adapters::checkpoint::JobState;
use dstream_adapters::checkpoint::{CheckpointStore, Loaded};
use dstream_cli::generate::SplitMix64;
use dstream_cli::lab::lab_state;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: u64 = 200_000;
const PARTITIONS: u64 = 2;
const KILLS: usize = 12;

/// `dstream run` on `topic` resuming from `dir`, at most `rate` records per partition per second (0: no limit).
fn spawn_run(addr: &str, topic: &str, dir: &Path, rate: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args([
            "run",
            "--brokers",
            addr,
            "--topic",
            topic,
            "--starting-offsets",
            "earliest",
            "--batch-interval",
            "100ms",
        ])
        .args(["--max-rate-per-partition", &rate.to_string(), "--print", "1", "--checkpoint"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dstream run")
}

fn latest(dir: &Path) -> Option<Loaded<JobState>> {
    CheckpointStore::open_read_only(dir).load_latest::<JobState>(None).expect("checkpoints stay readable")
}

/// Every checkpoint must count exactly the records before its next offsets, less those of its pending batches: all
/// produced messages are valid and the run starts at offset 0.
fn check_exactly_once(cp: &Loaded<JobState>, log: &mut String) -> u64 {
    let lab = lab_state(&cp.checkpoint.state).expect("the lab's one operator").expect("decodes");
    let counted: u64 = lab.state.entries.iter().map(|(_, e)| e.state.count()).sum();
    // Pending batches (generated, not completed) are not in the state yet: they run again after a restart.
    let pending: i64 = cp.checkpoint.meta.pending.iter().flat_map(|b| &b.ranges).map(|r| r.count()).sum();
    let consumed: i64 = cp.checkpoint.meta.next_offsets.iter().map(|n| n.offset).sum::<i64>() - pending;
    assert_eq!(counted as i64, consumed, "state and offsets disagree in {}\n{log}", cp.path.display());
    log.push_str(&format!(
        "  checkpoint {}: {counted} records, {} pending batches ({pending} records)\n",
        cp.path.display(),
        cp.checkpoint.meta.pending.len()
    ));
    counted
}

fn sigkill_at_random_moments_loses_nothing_and_counts_nothing_twice(broker: &TestBroker) {
    let (addr, topic) = (broker.addr(), &broker.topic("avg"));
    let seed: u64 = std::env::var("DSTREAM_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let mut log = format!("kill test seed {seed} (DSTREAM_KILL_SEED={seed} replays the kill moments)\n");
    let data_seed = 20_251_126;
    generate(addr, topic, MESSAGES, data_seed, &["--partitions", &PARTITIONS.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoints");
    let mut rng = SplitMix64::new(seed);
    let mut progress = 0;
    for kill in 1..=KILLS {
        // Moments from just after the start (connecting, loading, recomputing) to well into the run.
        let after = Duration::from_millis(50 + rng.below(700) as u64);
        let mut child = spawn_run(addr, topic, &ck, 7500);
        let started = Instant::now();
        while started.elapsed() < after {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("dstream run exited early ({status}) before kill {kill}: {err}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        log.push_str(&format!("kill {kill}: SIGKILL {} ms after start\n", after.as_millis()));
        if let Some(cp) = latest(&ck) {
            let counted = check_exactly_once(&cp, &mut log);
            assert!(counted >= progress, "a restart went backwards\n{log}");
            progress = counted;
        }
    }
    // 15,000 records/s at most: the kill phase (about 12 x 0.4 s) ends well before the 200,000th record.
    assert!(progress < MESSAGES, "the kills should interrupt the stream, not follow it\n{log}");

    // The last run goes to the end of the log, without a rate limit (not part of the job's fingerprint); every
    // checkpoint on the way must hold exactly its offsets.
    let mut child = spawn_run(addr, topic, &ck, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(cp) = latest(&ck) {
            if check_exactly_once(&cp, &mut log) >= MESSAGES {
                break;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dstream run exited ({status}) before reaching the end\n{log}");
        }
        assert!(Instant::now() < deadline, "no complete checkpoint within 180 s\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    // The final state, as `dstream checkpoint show` prints it, equals the model of everything produced.
    let show = dstream(&["checkpoint", "show", ck.to_str().unwrap()]);
    let table = ok_stdout(&show);
    let got = checkpoint_rows(&table);
    // The generator's messages in the order it made them (the sums do not depend on the order).
    let model = model_of(lab_messages(data_seed, MESSAGES, 1).iter().flatten());
    assert_eq!(got, model.sums(), "\n{log}");
    // The averages column is the model's average of each key, printed as the JVM prints doubles.
    for (line, (key, avg)) in table.lines().zip(model.averages()) {
        let printed: f64 = line.rsplit('\t').next().unwrap().parse().unwrap();
        assert_eq!((line.split('\t').next().unwrap(), printed), (key.as_str(), avg));
    }
    eprintln!("{log}");
}

/// Ctrl-C (SIGINT) at random moments, including while a batch's records are being fetched: each run finishes its
/// running batch and exits 0, and its last checkpoint holds exactly its offsets (issue 14, item 1: a stop that cut
/// a fetch short left the batch half applied to the state and also pending, so a restart counted it twice).
fn ctrl_c_at_random_moments_never_counts_a_batch_twice(b: &TestBroker) {
    let (addr, topic) = (b.addr(), &b.topic("avg"));
    let seed: u64 = std::env::var("DSTREAM_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let mut log = format!("ctrl-c test seed {seed} (DSTREAM_KILL_SEED={seed} replays the moments)\n");
    let data_seed = 20_251_201;
    let messages: u64 = 100_000;
    generate(addr, topic, messages, data_seed, &["--partitions", &PARTITIONS.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoints");
    let mut rng = SplitMix64::new(seed);
    for round in 1..=8 {
        let after = Duration::from_millis(100 + rng.below(600) as u64);
        // Large batches (up to 3,000 records a partition), so that a stop often lands while one is fetched.
        let mut child = spawn_run(addr, topic, &ck, 30_000);
        let started = Instant::now();
        while started.elapsed() < after {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("dstream run exited early ({status}) before Ctrl-C {round}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let status = common::exit_within(&mut child, Duration::from_secs(60));
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "Ctrl-C {round}: {status}\n{err}\n{log}");
        log.push_str(&format!("Ctrl-C {round}: {} ms after start\n", after.as_millis()));
        if let Some(cp) = latest(&ck) {
            check_exactly_once(&cp, &mut log);
        }
    }
    let mut child = spawn_run(addr, topic, &ck, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    while latest(&ck).is_none_or(|cp| check_exactly_once(&cp, &mut log) < messages) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dstream run exited ({status}) before reaching the end\n{log}");
        }
        assert!(Instant::now() < deadline, "no complete checkpoint within 180 s\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let got = checkpoint_rows(&ok_stdout(&dstream(&["checkpoint", "show", ck.to_str().unwrap()])));
    assert_eq!(got, model_of(lab_messages(data_seed, messages, 1).iter().flatten()).sums(), "\n{log}");
}

on_both_brokers!(
    sigkill_at_random_moments_loses_nothing_and_counts_nothing_twice,
    ctrl_c_at_random_moments_never_counts_a_batch_twice
);
