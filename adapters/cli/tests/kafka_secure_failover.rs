//! TLS and SASL across a cluster: 3 Apache Kafka nodes, each with a SASL_SSL listener (SCRAM-SHA-512, a
//! certificate for 127.0.0.1 checked by host), partitions replicated 3 times and led by different nodes. The lab
//! job is produced and read over SASL_SSL only, so dstream reaches every leader through the address the
//! cluster's metadata gives for that listener; the JVM leading a partition is killed (SIGKILL) mid-run and
//! started again. The run rides out the leader change over TLS and its final state equals the producers'
//! tally, nothing lost and nothing counted twice; the password shows nowhere.

mod common;
#[path = "common/secure.rs"]
mod secure;

use common::{broker_disabled, checkpoint_rows, dstream, lab_messages, model_of, ok_stdout, wait_counted};
use dstream_adapters::broker::kafka::KafkaCluster;
use dstream_adapters::kafka::{Client, ClientConfig, Security};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Failover-pa55word-that-must-not-leak";

/// `dstream generate` over SASL_SSL.
fn generate_secure(bootstrap: &str, config: &Path, count: u64, seed: u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["generate", "--brokers", bootstrap, "--topic", "avg", "--rate", "0", "--acks", "all"])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string(), "--kafka-config"])
        .arg(config)
        .env("DSTREAM_TEST_KAFKA_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generate over SASL_SSL failed: {text}");
    assert!(!text.contains(PASSWORD), "the password in generate's output: {text}");
}

#[test]
fn a_leader_killed_mid_run_over_sasl_ssl_loses_and_duplicates_nothing() {
    if broker_disabled() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    secure::broker_certificates(dir.path(), "dstream failover CA");
    let config = secure::sasl_ssl_scram512(dir.path(), "alice", PASSWORD, false);
    let mut cluster = KafkaCluster::start_secure_cluster(3, &config).expect("start a secure 3-node Kafka");
    eprintln!("3-node Apache Kafka with SASL_SSL serving after {:.1} s", started.elapsed().as_secs_f64());
    let secure: Vec<String> = (0..3).map(|i| cluster.listener_addr(i, "SASL_SSL").unwrap()).collect();
    let properties = secure::scram512_properties(dir.path(), "alice", "DSTREAM_TEST_KAFKA_PASSWORD");

    // The topic is made over PLAINTEXT (the test's admin side), its partitions led by different nodes if Kafka
    // manages that within a minute (the kill below is of partition 0's leader either way).
    let mut admin = Client::connect(&cluster.addrs(), ClientConfig::default()).unwrap();
    assert!(admin.create_topic("avg", 6, 3).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let leaders = loop {
        let leaders = admin.leaders("avg").unwrap();
        let mut nodes: Vec<i32> = leaders.iter().map(|l| l.1).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes[0] >= 0 && (nodes.len() >= 2 || Instant::now() >= deadline) {
            break leaders;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(60), "partitions without a leader: {leaders:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Bootstrapped through one node's SASL_SSL listener only: the others are reached by the metadata's
    // addresses for that listener. That node must know the new topic's leaders first (its metadata can lag the
    // controller's by a moment).
    let bootstrap = secure[0].clone();
    std::env::set_var("DSTREAM_TEST_KAFKA_PASSWORD", PASSWORD);
    let security = Security::from_file(&properties).unwrap();
    // The cluster is ready once any node serves: this one may still be starting (refusing connections).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut over_tls = loop {
        let config = ClientConfig { security: security.clone(), ..ClientConfig::default() };
        match Client::connect(std::slice::from_ref(&bootstrap), config) {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "connect over SASL_SSL: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !over_tls.leaders("avg").is_ok_and(|l| l.len() == 6 && l.iter().all(|p| p.1 >= 0)) {
        assert!(Instant::now() < deadline, "node 1 does not know topic avg's leaders over SASL_SSL");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(over_tls);
    generate_secure(&bootstrap, &properties, 3000, 41);
    let mut produced = vec![(41u64, 3000u64)];

    let ck = dir.path().join("checkpoints");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", &bootstrap, "--starting-offsets", "earliest", "--batch-interval", "200ms"])
        .args(["--max-rate-per-partition", "500", "--print", "1", "--checkpoint"])
        .arg(&ck)
        .arg("--kafka-config")
        .arg(&properties)
        .env("DSTREAM_TEST_KAFKA_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 500 records per partition take five batches: the kill comes mid-run.
    let before = wait_counted(&ck, 600, Duration::from_secs(60), &mut child);
    assert!(before < 3000, "the kill should come mid-run, not after it ({before} counted)");

    let victim = leaders.iter().find(|l| l.0 == 0).unwrap().1;
    let index = (0..cluster.size()).find(|&i| cluster.node_id(i) == victim).unwrap();
    cluster.kill(index);
    eprintln!("node {victim} (leader of partition 0; leaders {leaders:?}) killed with {before} records counted");
    // More records, over SASL_SSL, while the cluster elects new leaders (bootstrapped through a living node).
    let living = secure[(index + 1) % 3].clone();
    generate_secure(&living, &properties, 500, 42);
    produced.push((42, 500));
    let after = Client::connect(&cluster.addrs(), ClientConfig::default()).unwrap().leaders("avg").unwrap();
    let new_leader = after.iter().find(|l| l.0 == 0).unwrap().1;
    assert!(new_leader >= 0 && new_leader != victim, "partition 0 still led by {new_leader}: {after:?}");
    cluster.restart(index).expect("restart the killed node");

    let want: u64 = produced.iter().map(|p| p.1).sum();
    let total = wait_counted(&ck, want, Duration::from_secs(120), &mut child);
    child.kill().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    child.wait().unwrap();
    assert_eq!(total, want, "records counted twice");
    assert!(!stderr.contains(PASSWORD), "the password in the run's stderr");
    let table = ok_stdout(&dstream(&["checkpoint", "show", ck.to_str().unwrap()]));
    let messages: Vec<Vec<Vec<Vec<u8>>>> = produced.iter().map(|&(seed, n)| lab_messages(seed, n, 1)).collect();
    assert_eq!(checkpoint_rows(&table), model_of(messages.iter().flatten().flatten()).sums());
    eprintln!("done after {:.1} s", started.elapsed().as_secs_f64());
}
