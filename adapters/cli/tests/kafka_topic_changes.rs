//! A topic changed under a running `dstream run` on Apache Kafka: partitions added (CreatePartitions) are read from
//! their earliest offsets and the checkpoint holds them, also when added while dstream was stopped; the topic
//! deleted mid-run stops the run with one clear line, a non-zero exit and the last completed batch's checkpoint
//! intact.

mod common;

use common::*;
use dstream_adapters::checkpoint::{CheckpointStore, JobState};
use dstream_adapters::kafka::{Client, ClientConfig};
use dstream_cli::lab::lab_state;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs an admin operation through confluent-kafka: `partitions TOPIC N` (CreatePartitions up to N in all) or
/// `delete TOPIC`.
const ADMIN: &str = r#"
import sys
from confluent_kafka.admin import AdminClient, NewPartitions
addr, op, topic = sys.argv[1], sys.argv[2], sys.argv[3]
admin = AdminClient({"bootstrap.servers": addr})
if op == "partitions":
    futures = admin.create_partitions([NewPartitions(topic, int(sys.argv[4]))])
else:
    futures = admin.delete_topics([topic])
for f in futures.values():
    f.result()
print("ok")
"#;

/// The newest checkpoint in `dir`: (records counted, next offsets, partitions of its fingerprint, pending batches'
/// ranges as (partition, from)).
struct Latest {
    counted: u64,
    next: Vec<(i32, i64)>,
    partitions: u32,
    pending_from: Vec<(i32, i64)>,
}

fn latest(dir: &Path) -> Option<Latest> {
    if !dir.exists() {
        return None;
    }
    let cp = CheckpointStore::open_read_only(dir).load_latest::<JobState>(None).expect("checkpoints readable")?;
    let lab = lab_state(&cp.checkpoint.state).expect("the lab's one operator").expect("decodes");
    let meta = &cp.checkpoint.meta;
    Some(Latest {
        counted: lab.state.entries.iter().map(|(_, e)| e.state.count()).sum(),
        next: meta.next_offsets.iter().map(|n| (n.partition, n.offset)).collect(),
        partitions: meta.fingerprint.partitions,
        pending_from: meta.pending.iter().flat_map(|b| b.ranges.iter().map(|r| (r.partition, r.from))).collect(),
    })
}

/// Waits until the newest checkpoint in `dir` counts at least `n` records, at most `within`.
fn wait_counted(dir: &Path, n: u64, within: Duration, child: &mut Child) -> Latest {
    wait_until_counted(n, within, child, || latest(dir).map(|l| (l.counted, l)))
}

/// `dstream run` from the earliest offsets, 100 records per partition per 200 ms batch, checkpointing into `ck`.
fn spawn_run(addr: &str, topic: &str, ck: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", addr, "--topic", topic, "--starting-offsets", "earliest"])
        .args(["--batch-interval", "200ms", "--max-rate-per-partition", "500", "--print", "1", "--ui", "off"])
        .arg("--checkpoint")
        .arg(ck)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Adds partitions to `topic` up to `n` in all and waits until the cluster's metadata shows them (Kafka's brokers
/// learn of them shortly after the controller answers).
fn add_partitions(addr: &str, topic: &str, n: usize) {
    assert_eq!(python(ADMIN, &[addr, "partitions", topic, &n.to_string()]).trim(), "ok");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Client::connect(&[addr.to_string()], ClientConfig::default()).unwrap();
        let now = c.partition_states(topic).unwrap();
        if now.len() == n && now.iter().all(|p| p.leader >= 0) {
            return;
        }
        assert!(Instant::now() < deadline, "{topic} has {now:?} after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The (key, sum, count) rows `dstream checkpoint show` prints for `dir`.
fn shown(dir: &Path) -> Vec<(String, i128, u64)> {
    checkpoint_rows(&ok_stdout(&dstream(&["checkpoint", "show", dir.to_str().unwrap()])))
}

#[test]
fn partitions_added_while_running_or_stopped_are_read_from_their_earliest_offsets_and_checkpointed() {
    let Some(b) = broker_of(Kind::Kafka) else { return };
    let (addr, t) = (b.addr(), &b.topic("grown"));
    generate(addr, t, 600, 41, &[]);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let mut child = spawn_run(addr, t, &ck);
    wait_counted(&ck, 200, Duration::from_secs(60), &mut child);
    // Two partitions more while it runs, and records on all three (message i to partition i mod 3).
    add_partitions(addr, t, 3);
    generate(addr, t, 900, 42, &[]);
    let l = wait_counted(&ck, 1500, Duration::from_secs(60), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(l.counted, 1500, "records counted twice");
    assert_eq!((l.next, l.partitions), (vec![(0, 900), (1, 300), (2, 300)], 3));
    let mut produced: Vec<Vec<u8>> = lab_messages(41, 600, 1).concat();
    produced.extend(lab_messages(42, 900, 3).concat());
    assert_eq!(shown(&ck), model_of(produced.iter()).sums());

    // One more while it is stopped: the restart resumes the checkpoint and reads the new partition from 0.
    add_partitions(addr, t, 4);
    generate(addr, t, 400, 43, &[]);
    let mut child = spawn_run(addr, t, &ck);
    let l = wait_counted(&ck, 1900, Duration::from_secs(60), &mut child);
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dstream: resuming from"), "{stderr}");
    assert_eq!(l.counted, 1900, "records counted twice");
    assert_eq!((l.next, l.partitions), (vec![(0, 1000), (1, 400), (2, 400), (3, 100)], 4));
    produced.extend(lab_messages(43, 400, 4).concat());
    assert_eq!(shown(&ck), model_of(produced.iter()).sums());
}

#[test]
fn a_topic_deleted_mid_run_stops_it_with_one_line_and_the_checkpoint_intact() {
    let Some(b) = broker_of(Kind::Kafka) else { return };
    let (addr, t) = (b.addr(), &b.topic("deleted"));
    generate(addr, t, 3000, 44, &["--partitions", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let mut child = spawn_run(addr, t, &ck);
    wait_counted(&ck, 400, Duration::from_secs(60), &mut child);
    assert_eq!(python(ADMIN, &[addr, "delete", t]).trim(), "ok");
    let status = exit_within(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let others: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("dstream: batch ") && !l.starts_with("dstream: no checkpoint in"))
        .collect();
    assert_eq!(others.len(), 1, "{stderr}");
    assert!(others[0].contains(&format!("topic \"{t}\" was deleted while dstream read it")), "{stderr}");
    // The newest checkpoint is whole and holds exactly the batches completed before it: the records below its
    // next offsets, less those of the batches it lists as pending.
    let l = latest(&ck).expect("a checkpoint");
    assert!(l.counted >= 400 && l.counted < 3000, "{}", l.counted);
    let messages = lab_messages(44, 3000, 2);
    let done: Vec<Vec<u8>> = l
        .next
        .iter()
        .flat_map(|&(p, next)| {
            let upto = l.pending_from.iter().filter(|r| r.0 == p).map(|r| r.1).min().unwrap_or(next);
            messages[p as usize][..upto as usize].to_vec()
        })
        .collect();
    assert_eq!(done.len() as u64, l.counted);
    assert_eq!(shown(&ck), model_of(done.iter()).sums());
}
