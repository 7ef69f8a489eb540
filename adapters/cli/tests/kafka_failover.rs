//! A 3-node Apache Kafka cluster (replication factor 3, `min.insync.replicas=2`), partitions led by different
//! brokers: the JVM leading a partition killed (SIGKILL) mid-run, and a rolling restart of every node mid-run.
//! dstream rides out the leader changes and its final state equals the producers' tally, nothing lost and nothing
//! counted twice.

mod common;

use common::*;
use dstream_adapters::broker::kafka::KafkaCluster;
use dstream_adapters::kafka::{Client, ClientConfig};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Creates topic `avg` (6 partitions, replication factor 3) on `cluster` and waits until its partitions are led
/// by different brokers; returns the (partition, leader) pairs.
fn create_spread_topic(cluster: &KafkaCluster) -> Vec<(i32, i32)> {
    let mut client = Client::connect(&cluster.addrs(), ClientConfig::default()).unwrap();
    assert!(client.create_topic("avg", 6, 3).unwrap());
    // Kafka places preferred leaders (not always one per broker) and elects them again within a second or two if
    // a node was slow to join.
    // On a loaded machine the leaders can stay on one node for long; what dstream must survive (the leader of a
    // partition killed mid-run) is tested either way, so past the deadline the run goes on with what Kafka chose.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leaders = client.leaders("avg").unwrap();
        let mut nodes: Vec<i32> = leaders.iter().map(|l| l.1).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() >= 2 && nodes[0] >= 0 {
            return leaders;
        }
        if Instant::now() >= deadline && nodes.first().is_some_and(|&n| n >= 0) {
            eprintln!("partitions still led by one broker after 60 s: {leaders:?}; going on");
            return leaders;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `dstream run` over `avg` from the earliest offsets, checkpointing into `ck`: 100 records per partition per
/// 200 ms batch.
fn spawn_run(bootstrap: &str, ck: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", bootstrap, "--starting-offsets", "earliest", "--batch-interval", "200ms"])
        .args(["--max-rate-per-partition", "500", "--print", "1", "--checkpoint"])
        .arg(ck)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has counted all that the generator runs `produced` (seed, count) wrote, stops it, and
/// checks that its final state, as `dstream checkpoint show` prints it, equals the model of exactly that.
fn check_final_state(ck: &Path, mut child: Child, produced: &[(u64, u64)]) {
    let want: u64 = produced.iter().map(|p| p.1).sum();
    let total = wait_counted(ck, want, Duration::from_secs(120), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(total, want, "records counted twice");
    let table = ok_stdout(&dstream(&["checkpoint", "show", ck.to_str().unwrap()]));
    let messages: Vec<Vec<Vec<Vec<u8>>>> = produced.iter().map(|&(seed, n)| lab_messages(seed, n, 1)).collect();
    let model = model_of(messages.iter().flatten().flatten());
    assert_eq!(checkpoint_rows(&table), model.sums());
}

/// Waits until every partition of `avg` has a leader and all its replicas in sync.
fn wait_in_sync(cluster: &KafkaCluster, after: &str) {
    let mut client = Client::connect(&cluster.addrs(), ClientConfig::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = client.partition_states("avg").unwrap();
        if states.iter().all(|p| p.leader >= 0 && p.in_sync == p.replicas) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not back in sync {after}: {states:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One run over a failover and a rolling restart (one cluster and one run for both keeps the test's time down).
#[test]
fn a_leader_killed_mid_run_then_a_rolling_restart_lose_and_duplicate_nothing() {
    if broker_disabled() {
        return;
    }
    let started = Instant::now();
    let mut cluster = kafka_cluster(3);
    eprintln!("3-node Apache Kafka serving after {:.1} s", started.elapsed().as_secs_f64());
    let bootstrap = cluster.bootstrap();
    let leaders = create_spread_topic(&cluster);
    generate(&bootstrap, "avg", 3000, 31, &["--acks", "all"]);
    let mut produced = vec![(31, 3000)];
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoints");
    let mut child = spawn_run(&bootstrap, &ck);
    // The 500 records per partition take five batches.
    let before = wait_counted(&ck, 600, Duration::from_secs(60), &mut child);
    assert!(before < 3000, "the kill should come mid-run, not after it ({before} counted)");

    // SIGKILL the JVM leading partition 0 (broker and controller in one process).
    let victim = leaders.iter().find(|l| l.0 == 0).unwrap().1;
    let index = (0..cluster.size()).find(|&i| cluster.node_id(i) == victim).unwrap();
    cluster.kill(index);
    let killed = Instant::now();
    // More records while the cluster elects new leaders: the producer rides out the change too.
    generate(&bootstrap, "avg", 500, 32, &["--acks", "all"]);
    produced.push((32, 500));
    let after = Client::connect(&cluster.addrs(), ClientConfig::default()).unwrap().leaders("avg").unwrap();
    let new_leader = after.iter().find(|l| l.0 == 0).unwrap().1;
    assert!(new_leader >= 0 && new_leader != victim, "partition 0 still led by {new_leader}: {after:?}");
    cluster.restart(index).expect("restart the killed node");
    wait_in_sync(&cluster, "after the killed node came back");
    eprintln!("node {victim} killed and back in sync after {:.1} s", killed.elapsed().as_secs_f64());

    // A rolling restart of the other two: each stopped as an operator does, more records while it is down, and
    // the next one stopped only once every replica is in sync again.
    let rolling = Instant::now();
    for (k, i) in (0..cluster.size()).filter(|&i| i != index).enumerate() {
        cluster.stop(i, Duration::from_secs(30));
        let seed = 33 + k as u64;
        generate(&bootstrap, "avg", 500, seed, &["--acks", "all"]);
        produced.push((seed, 500));
        cluster.restart(i).expect("restart the node");
        wait_in_sync(&cluster, &format!("after node {} restarted", cluster.node_id(i)));
    }
    eprintln!("rolling restart of two nodes took {:.1} s", rolling.elapsed().as_secs_f64());
    check_final_state(&ck, child, &produced);
}
