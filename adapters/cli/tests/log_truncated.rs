//! A log truncated in place under a checkpoint (issue 14 item 2): a real Apache Kafka broker loses the tail of a
//! partition's log (its segment file cut short while it was down, as a disk or an unclean leader election loses
//! it) and then takes more records than it lost, at the same topic id. The offsets saved point past what the log
//! still holds of the epoch they were read in: the resume refuses, naming the partition, the offset and where the
//! epoch's records now end, instead of resuming mid-log over records it never read.

mod common;

use common::{checkpoint_rows, dstream, model_of};
use dstream_adapters::kafka::records::{encode_batch, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig};
use std::path::Path;

fn messages(from: usize, until: usize) -> Vec<Vec<u8>> {
    (from..until).map(|i| format!("k{},{i}", i % 3).into_bytes()).collect()
}

fn produce(client: &mut Client, topic: &str, msgs: &[Vec<u8>]) -> i64 {
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    client.produce(topic, 0, encode_batch(&refs, 1000, Codec::None).unwrap(), Acks::All).unwrap()
}

/// Cuts the partition's only segment after its first record batch and removes its indexes (rebuilt on start).
fn cut_after_first_batch(partition_dir: &Path) {
    let mut cut = false;
    for entry in std::fs::read_dir(partition_dir).unwrap() {
        let path = entry.unwrap().path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("log") => {
                let bytes = std::fs::read(&path).unwrap();
                let first = 12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as u64;
                assert!(first < bytes.len() as u64, "the segment holds more than one batch");
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(first).unwrap();
                cut = true;
            }
            Some("index" | "timeindex") => std::fs::remove_file(&path).unwrap(),
            _ => {}
        }
    }
    assert!(cut, "no segment in {}", partition_dir.display());
}

#[test]
fn a_resume_over_a_log_truncated_in_place_refuses_naming_partition_offset_and_the_epochs_end() {
    if common::broker_disabled() {
        return;
    }
    let mut kafka = common::kafka_cluster(1);
    let addr = kafka.addr();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).unwrap();
    let topic = "truncated";
    client.create_topic(topic, 1, 1).unwrap();
    assert_eq!(produce(&mut client, topic, &messages(0, 10)), 0);
    assert_eq!(produce(&mut client, topic, &messages(10, 20)), 10);
    drop(client);

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let ck = ck.to_str().unwrap();
    let run = |batches: &str| {
        dstream(&[
            "run",
            "--brokers",
            &addr,
            "--topic",
            topic,
            "--starting-offsets",
            "earliest",
            "--batch-interval",
            "200ms",
            "--batches",
            batches,
            "--checkpoint",
            ck,
            "--ui",
            "off",
            "--retry-for",
            "30s",
        ])
    };
    let out = run("2");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = checkpoint_rows(&common::ok_stdout(&dstream(&["checkpoint", "show", ck])));
    assert_eq!(rows, model_of(&messages(0, 20)).sums());

    // The broker loses offsets 10..20 while down, then takes 15 new records: its log ends at 25, past the 20 read.
    kafka.kill(0);
    cut_after_first_batch(&kafka.dir().join("node-1").join("data").join(format!("{topic}-0")));
    kafka.restart(0).unwrap();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).unwrap();
    let end = client.list_offsets(topic, &[0], dstream_adapters::kafka::OffsetSpec::Latest).unwrap()[0].1;
    assert_eq!(end, 10, "the broker kept the cut segment");
    assert_eq!(produce(&mut client, topic, &messages(100, 115)), 10);

    let out = run("1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{topic}-0 was truncated: dstream read it up to offset 20 in leader epoch 0, but that epoch's records now \
         end at offset 10"
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(stderr.contains("--reset-checkpoint"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.contains("was truncated")).count(), 1, "{stderr}");
    // The checkpoint is left as it was.
    let rows = checkpoint_rows(&common::ok_stdout(&dstream(&["checkpoint", "show", ck])));
    assert_eq!(rows, model_of(&messages(0, 20)).sums());
}
