//! Chaos (issue 14): for a while a producer writes while `dstream run --checkpoint` is SIGKILLed, stopped with
//! Ctrl-C at random moments and restarted, and the broker (tansu on SeaweedFS S3, so its log survives) is
//! SIGKILLed and restarted. At the end the state equals the tally of the log the producer left: every record
//! counted once. Every checkpoint seen on the way holds exactly its offsets. DSTREAM_CHAOS_SEED replays the moments.

mod common;

use common::{checkpoint_rows, dstream, model_of, ok_stdout};
use dstream_adapters::broker::{SeaweedS3, Tansu};
use dstream_adapters::checkpoint::{CheckpointStore, JobState, Loaded};
use dstream_adapters::kafka::direct::RangeFetcher;
use dstream_adapters::kafka::records::{encode_batch, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig, OffsetSpec, PartitionFetch};
use dstream_cli::generate::SplitMix64;
use dstream_cli::lab::lab_state;
use dstream_core::{OffsetRange, RecordBatch, RecordSource};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the faults go on.
const CHAOS: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 2;

/// `dstream run` resuming from `dir`; its stderr goes to the file `err`.
fn spawn_run(addr: &str, dir: &Path, err: &Path) -> Child {
    let err = std::fs::OpenOptions::new().create(true).append(true).open(err).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", addr, "--topic", "chaos", "--starting-offsets", "earliest"])
        .args(["--batch-interval", "100ms", "--max-rate-per-partition", "5000", "--print", "1", "--ui", "off"])
        .args(["--retry-for", "60s", "--checkpoint"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("start dstream run")
}

fn latest(dir: &Path) -> Option<Loaded<JobState>> {
    CheckpointStore::open_read_only(dir).load_latest::<JobState>(None).expect("checkpoints stay readable")
}

/// What a checkpoint claims: the records its state counts, and the offset ranges they must be (every offset
/// before its next offsets but those of its pending batches).
struct Seen {
    path: String,
    counted: u64,
    consumed: Vec<OffsetRange>,
}

fn seen(cp: &Loaded<JobState>) -> Seen {
    let lab = lab_state(&cp.checkpoint.state).expect("the lab's one operator").expect("decodes");
    let counted: u64 = lab.state.entries.iter().map(|(_, e)| e.state.count()).sum();
    let meta = &cp.checkpoint.meta;
    let consumed = meta
        .next_offsets
        .iter()
        .map(|n| {
            // Pending batches are the last ranges before the next offsets, in order.
            let from = meta.pending.iter().flat_map(|b| &b.ranges).filter(|r| r.partition == n.partition);
            let until = from.map(|r| r.from).min().unwrap_or(n.offset);
            OffsetRange { partition: n.partition, from: 0, until }
        })
        .collect();
    Seen { path: cp.path.display().to_string(), counted, consumed }
}

/// Writes batches of lab records to both partitions until `stop`, riding out the broker's outages (a batch whose
/// answer was lost may be in the log or not, or twice: the tally is taken from the log at the end). While `pause`
/// is set it writes nothing and says so in `paused`: tansu on S3 SIGKILLed during a write can leave a hole in its
/// log (offsets given out, no records there, ever), which no reader gets past; the broker is killed between writes.
fn producer(addr: String, stop: Arc<AtomicBool>, pause: Arc<AtomicBool>, paused: Arc<AtomicBool>) -> u64 {
    let cfg = ClientConfig { retry_for: Duration::from_secs(2), ..ClientConfig::default() };
    let mut client: Option<Client> = None;
    let (mut i, mut acked) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        if pause.load(Ordering::SeqCst) {
            paused.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        paused.store(false, Ordering::SeqCst);
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(std::slice::from_ref(&addr), cfg.clone()) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let values: Vec<Vec<u8>> = (i..i + 50).map(|n| format!("key-{},{}", n % 97, n % 1000).into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = encode_batch(&refs, 1000, Codec::None).expect("encodes");
        match c.produce("chaos", (i / 50 % PARTITIONS as u64) as i32, batch, Acks::All) {
            Ok(_) => {
                acked += 50;
                i += 50;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => client = None,
        }
    }
    acked
}

/// Every (partition, offset, value) in the topic's log, read back in full.
fn log_contents(addr: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let mut client = Client::connect(&[addr.to_string()], ClientConfig::default()).unwrap();
    let parts: Vec<i32> = (0..PARTITIONS).collect();
    let start = client.list_offsets("chaos", &parts, OffsetSpec::Earliest).unwrap();
    // tansu's ListOffsets(latest) can lag the log end; the high watermark of a fetch does not.
    let latest = client.list_offsets("chaos", &parts, OffsetSpec::Latest).unwrap();
    let ranges: Vec<OffsetRange> = start
        .iter()
        .zip(&latest)
        .map(|(s, l)| {
            let at = [PartitionFetch { partition: s.0, offset: s.1 }];
            let fetched = client.fetch("chaos", &at, Duration::from_millis(1)).unwrap();
            let hw = fetched.iter().find(|f| f.partition == s.0).map_or(-1, |f| f.high_watermark);
            OffsetRange { partition: s.0, from: s.1, until: l.1.max(hw) }
        })
        .collect();
    let mut batch = RecordBatch::new();
    RangeFetcher::new(client, "chaos").fetch_ranges(&ranges, &mut batch).unwrap();
    let mut records = Vec::new();
    batch.for_each_record(&mut |r| records.push((r.partition, r.offset, r.value.to_vec()))).unwrap();
    records
}

/// Waits for `child` to exit by itself after Ctrl-C; it must exit normally (0, or 1 with a message if the broker
/// was down), never by a panic or a signal.
fn wait_after_ctrl_c(child: &mut Child, errs: &Path, log: &str) {
    let status = common::exit_within(child, Duration::from_secs(90));
    let err = std::fs::read_to_string(errs).unwrap_or_default();
    assert!(matches!(status.code(), Some(0 | 1)) && !err.contains("panicked"), "Ctrl-C: {status}\n{err}\n{log}");
}

#[test]
fn chaos_of_kills_ctrl_c_and_broker_restarts_counts_every_record_once() {
    if common::broker().is_none() {
        return;
    }
    let seed: u64 = std::env::var("DSTREAM_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let mut log = format!("chaos seed {seed} (DSTREAM_CHAOS_SEED={seed} replays the moments)\n");
    let data = tempfile::tempdir().unwrap();
    let s3 = SeaweedS3::start(data.path()).expect("start SeaweedFS");
    let env = s3.tansu_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut tansu = Tansu::start_with("s3://tansu/", &env).expect("start tansu on S3");
    let addr = tansu.addr().to_string();
    Client::connect(std::slice::from_ref(&addr), ClientConfig::default())
        .unwrap()
        .create_topic("chaos", PARTITIONS, 1)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (pause, paused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let producing = {
        let (addr, stop, pause, paused) = (addr.clone(), stop.clone(), pause.clone(), paused.clone());
        std::thread::spawn(move || producer(addr, stop, pause, paused))
    };
    let ck = data.path().join("checkpoints");
    let mut rng = SplitMix64::new(seed);
    let errs = data.path().join("dstream-stderr");
    let mut run = spawn_run(&addr, &ck, &errs);
    let (mut progress, began) = (0u64, Instant::now());
    let mut checkpoints: Vec<Seen> = Vec::new();
    let (mut kills, mut stops, mut outages) = (0, 0, 0);
    while began.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(200 + rng.below(1800) as u64));
        let at = began.elapsed().as_millis();
        match rng.below(3) {
            0 => {
                run.kill().expect("SIGKILL");
                run.wait().unwrap();
                kills += 1;
                log.push_str(&format!("{at} ms: SIGKILL dstream\n"));
                run = spawn_run(&addr, &ck, &errs);
            }
            1 => {
                let sent = Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap();
                assert!(sent.success());
                wait_after_ctrl_c(&mut run, &errs, &log);
                stops += 1;
                log.push_str(&format!("{at} ms: Ctrl-C dstream\n"));
                run = spawn_run(&addr, &ck, &errs);
            }
            _ => {
                pause.store(true, Ordering::SeqCst);
                let asked = Instant::now();
                while !paused.load(Ordering::SeqCst) {
                    assert!(asked.elapsed() < Duration::from_secs(30), "the producer did not pause\n{log}");
                    std::thread::sleep(Duration::from_millis(1));
                }
                tansu.kill();
                let down = 200 + rng.below(1300) as u64;
                std::thread::sleep(Duration::from_millis(down));
                tansu.restart().expect("restart tansu");
                pause.store(false, Ordering::SeqCst);
                outages += 1;
                log.push_str(&format!("{at} ms: SIGKILL tansu, down {down} ms\n"));
            }
        }
        if let Some(status) = run.try_wait().unwrap() {
            let err = std::fs::read_to_string(&errs).unwrap_or_default();
            panic!("dstream run exited by itself ({status}): {err}\n{log}");
        }
        if let Some(cp) = latest(&ck) {
            let s = seen(&cp);
            assert!(s.counted >= progress, "a restart went backwards\n{log}");
            progress = s.counted;
            checkpoints.push(s);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let acked = producing.join().unwrap();
    let produced = log_contents(&addr);
    log.push_str(&format!(
        "{kills} kills, {stops} Ctrl-C, {outages} broker restarts; {acked} records acknowledged, {} in the log, {progress} \
         counted by the end of the chaos\n",
        produced.len()
    ));
    assert!(produced.len() as u64 >= acked, "the log lost acknowledged records\n{log}");
    // Every checkpoint seen counted exactly the records of the log in its consumed ranges.
    for s in &checkpoints {
        let inside = produced
            .iter()
            .filter(|(p, o, _)| s.consumed.iter().any(|r| r.partition == *p && *o >= r.from && *o < r.until))
            .count() as u64;
        let err = std::fs::read_to_string(&errs).unwrap_or_default();
        let skipped: Vec<&str> = err.lines().filter(|l| l.contains("skipped") || l.contains("warning")).collect();
        assert_eq!(s.counted, inside, "{} counts other records than its offsets say: {skipped:?}\n{log}", s.path);
    }

    // The last run catches up to the end of the log; its checkpoint then counts every record once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while latest(&ck).is_none_or(|cp| seen(&cp).counted < produced.len() as u64) {
        if let Some(status) = run.try_wait().unwrap() {
            panic!("dstream run exited ({status}) before reaching the end\n{log}");
        }
        assert!(Instant::now() < deadline, "no complete checkpoint within 60 s\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    run.kill().expect("SIGKILL");
    run.wait().unwrap();
    let got = checkpoint_rows(&ok_stdout(&dstream(&["checkpoint", "show", ck.to_str().unwrap()])));
    let values: Vec<Vec<u8>> = produced.into_iter().map(|r| r.2).collect();
    assert_eq!(got, model_of(&values).sums(), "\n{log}");
    eprintln!("{log}");
    drop(tansu);
    drop(s3);
}
