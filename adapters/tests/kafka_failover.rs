//! A 3-node Apache Kafka cluster (replication factor 3, `min.insync.replicas=2`): partitions led by different
//! brokers, and the JVM leading a partition killed (SIGKILL) mid-run: dstream rides out the leader change and its
//! final state equals the producer's tally, nothing lost and nothing counted twice.

mod common;

use common::*;
use dstream_adapters::checkpoint::CheckpointStore;
use dstream_adapters::kafka::{Client, ClientConfig};
use dstream_core::lab::LabCheckpoint;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Records the latest checkpoint in `dir` has counted, if there is one.
fn counted(dir: &Path) -> Option<u64> {
    if !dir.exists() {
        return None;
    }
    let cp = CheckpointStore::open_read_only(dir).load_latest::<LabCheckpoint>(None).expect("checkpoints readable")?;
    Some(cp.checkpoint.state.state.entries.iter().map(|(_, e)| e.state.count()).sum())
}

/// Waits until the latest checkpoint in `dir` counts at least `n` records, at most `within`.
fn wait_counted(dir: &Path, n: u64, within: Duration, child: &mut std::process::Child) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let c = counted(dir).unwrap_or(0);
        if c >= n {
            return c;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("dstream run exited ({status}) with {c} of {n} records counted: {err}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{c} of {n} records counted after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_a_partition_leader_mid_run_loses_and_duplicates_nothing() {
    if broker_disabled() {
        return;
    }
    let started = Instant::now();
    let mut cluster = kafka_cluster(3);
    eprintln!("3-node Apache Kafka serving after {:.1} s", started.elapsed().as_secs_f64());
    let bootstrap = cluster.bootstrap();
    let addrs = cluster.addrs();
    let mut client = Client::connect(&addrs, ClientConfig::default()).unwrap();
    assert!(client.create_topic("avg", 6, 3).unwrap());
    // Partitions led by different brokers: Kafka places preferred leaders (not always one per broker) and elects
    // them again within a second or two if a node was slow to join.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leaders = loop {
        let leaders = client.leaders("avg").unwrap();
        let mut nodes: Vec<i32> = leaders.iter().map(|l| l.1).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() >= 2 && nodes[0] >= 0 {
            break leaders;
        }
        assert!(Instant::now() < deadline, "partitions not led by different brokers: {leaders:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    generate(&bootstrap, "avg", 3000, 31, &["--acks", "all"]);

    // 100 records per partition per 200 ms batch: the 500 per partition take five batches.
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoints");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", &bootstrap, "--starting-offsets", "earliest", "--batch-interval", "200ms"])
        .args(["--max-rate-per-partition", "500", "--print", "1", "--checkpoint"])
        .arg(&ck)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = wait_counted(&ck, 600, Duration::from_secs(60), &mut child);
    assert!(before < 3000, "the kill should come mid-run, not after it ({before} counted)");

    // SIGKILL the JVM leading partition 0 (broker and controller in one process).
    let victim = leaders.iter().find(|l| l.0 == 0).unwrap().1;
    let index = (0..cluster.size()).find(|&i| cluster.node_id(i) == victim).unwrap();
    cluster.kill(index);
    let killed = Instant::now();
    // More records while the cluster elects new leaders: the producer rides out the change too.
    generate(&bootstrap, "avg", 1500, 32, &["--acks", "all"]);
    let after = Client::connect(&addrs, ClientConfig::default()).unwrap().leaders("avg").unwrap();
    let new_leader = after.iter().find(|l| l.0 == 0).unwrap().1;
    assert!(new_leader >= 0 && new_leader != victim, "partition 0 still led by {new_leader}: {after:?}");

    let total = wait_counted(&ck, 4500, Duration::from_secs(120), &mut child);
    eprintln!(
        "node {victim} killed with {before} records counted; all 4500 counted {:.1} s later",
        killed.elapsed().as_secs_f64()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(total, 4500, "records counted twice");
    // The final state, as `dstream checkpoint show` prints it, equals the model of everything produced.
    let table = ok_stdout(&dstream(&["checkpoint", "show", ck.to_str().unwrap()]));
    let produced = [lab_messages(31, 3000, 1), lab_messages(32, 1500, 1)];
    let model = model_of(produced.iter().flatten().flatten());
    assert_eq!(checkpoint_rows(&table), model.sums());
}
