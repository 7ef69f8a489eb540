//! A compacted topic on Apache Kafka: the log cleaner leaves offsets with gaps, some longer than a batch's range.
//! Ranges, record counts, status lines and a resumed run stay right: the final state equals what Kafka's own
//! consumer (confluent-kafka) reads, every surviving record counted once.

mod common;

use common::*;
use dstream_adapters::kafka::direct::RangeFetcher;
use dstream_adapters::kafka::{Client, ClientConfig};
use dstream_core::{OffsetRange, RecordBatch, RecordSource};
use std::path::Path;

/// Creates a compacted topic of one partition whose segments roll every 100 ms and get cleaned at once, writes the
/// records of argv[3] (JSON [[key, value], ...]) in rounds (a pause between rounds rolls the segment), then one
/// more record to roll the last round's segment, and waits until the cleaner has compacted everything but the
/// active segment: Kafka's consumer then reads exactly the last record of each key. Prints the surviving
/// [offset, value] pairs as JSON.
const COMPACTED: &str = r#"
import sys, json, time
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
addr, topic, rounds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
admin = AdminClient({"bootstrap.servers": addr})
config = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.001",
          "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000"}
for f in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
    f.result()
delivered = []
def report(err, msg):
    if err is not None:
        raise SystemExit("delivery failed: %s" % err)
    delivered.append((msg.offset(), msg.key().decode(), msg.value().decode()))
# One record per batch: the cleaner then removes whole batches, leaving gaps between batches (in rounds 0 and 2),
# besides the gaps inside the batches it keeps (rounds 1 and 3, batched).
batched = Producer({"bootstrap.servers": addr, "linger.ms": 5})
single = Producer({"bootstrap.servers": addr, "linger.ms": 0, "batch.num.messages": 1})
for i, records in enumerate(rounds + [[["roll", "z,0"]]]):
    time.sleep(0.2)  # older than segment.ms: this round's first record rolls the segment
    p = single if i % 2 == 0 else batched
    for k, v in records:
        p.produce(topic, v.encode(), k.encode(), partition=0, on_delivery=report)
    if p.flush(30) != 0:
        raise SystemExit("not delivered in time")
last = {}
for off, k, v in delivered:
    last[k] = off
want = sorted(last.values())
c = Consumer({"bootstrap.servers": addr, "group.id": "check-" + topic, "enable.auto.commit": False})
end = c.get_watermark_offsets(TopicPartition(topic, 0), 10)[1]
deadline = time.time() + 120
while True:
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    while not got or got[-1][0] < end - 1:
        m = c.poll(10)
        if m is None:
            raise SystemExit("no record within 10 s")
        if m.error():
            raise SystemExit(str(m.error()))
        got.append((m.offset(), m.value().decode()))
    if [g[0] for g in got] == want:
        break
    if time.time() > deadline:
        raise SystemExit("not compacted within 120 s: %d of %d offsets left, want %d" % (len(got), end, len(want)))
    time.sleep(0.2)
c.close()
print(json.dumps(got))
"#;

/// Rounds of (key, value): hot keys updated over and over, keys written once, and in rounds 0 and 2 a run of 60
/// updates of one key (a gap of 59 offsets once compacted); values are lab messages ("letter,n").
fn rounds(seed: u64) -> Vec<Vec<(String, String)>> {
    let mut gen = dstream_cli::generate::LabMessages::new(seed);
    let mut buf = vec![];
    let mut value = || {
        gen.next_into(&mut buf);
        String::from_utf8(buf.clone()).unwrap()
    };
    let mut rounds = vec![];
    let mut n = 0;
    for round in 0..4 {
        let mut records = vec![];
        for i in 0..150 {
            n += 1;
            let key = match i {
                _ if round % 2 == 0 && (20..80).contains(&i) => format!("run-{round}"),
                _ if i % 10 == 0 => format!("once-{n}"),
                _ => format!("hot-{}", i % 7),
            };
            records.push((key, value()));
        }
        rounds.push(records);
    }
    rounds
}

/// `dstream run` from the earliest offsets, 10 offsets per batch, checkpointing into `ck`.
fn run(addr: &str, topic: &str, ck: &Path, batches: u64) -> (String, String) {
    let batches = batches.to_string();
    let out = dstream(&[
        "run",
        "--brokers",
        addr,
        "--topic",
        topic,
        "--starting-offsets",
        "earliest",
        "--batches",
        &batches,
        "--batch-interval",
        "100ms",
        "--max-rate-per-partition",
        "100",
        "--print",
        "100000",
        "--ui",
        "off",
        "--checkpoint",
        ck.to_str().unwrap(),
    ]);
    let stdout = ok_stdout(&out);
    (stdout, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_compacted_topic_with_gaps_longer_than_a_range_is_read_once_across_a_restart() {
    let Some(b) = broker_of(Kind::Kafka) else { return };
    let t = &b.topic("compacted");
    let rounds = rounds(31);
    let plan: Vec<Vec<[&str; 2]>> =
        rounds.iter().map(|r| r.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect()).collect();
    let plan = serde_json::to_string(&plan).unwrap();
    let survivors: Vec<(i64, String)> = serde_json::from_str(&python(COMPACTED, &[b.addr(), t, &plan])).unwrap();
    let end = 4 * 150 + 1;
    assert_eq!(survivors.last().unwrap().0, end - 1);
    // Each key's last record: 48 keys written once, 7 hot keys, 2 runs, the last record.
    assert_eq!(survivors.len(), 58, "compacted: {} of {end} offsets hold records", survivors.len());
    // The run of one key left a gap longer than several batches' ranges.
    let longest = survivors.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(longest > 30, "longest gap {longest}");

    // 10 offsets per batch: 61 batches cover the log; stop after 25, resume from the checkpoint for the rest.
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let (out1, err1) = run(b.addr(), t, &ck, 25);
    let (out2, err2) = run(b.addr(), t, &ck, 40);
    let counts: Vec<u64> = batch_record_counts(&err1).into_iter().chain(batch_record_counts(&err2)).collect();
    assert_eq!(counts.len(), 65, "{err1}{err2}");
    assert_eq!(counts.iter().sum::<u64>(), survivors.len() as u64, "{err1}{err2}");
    assert!(counts.iter().all(|&c| c <= 10), "{counts:?}");
    // Batches whose whole range fell in a gap read nothing, and the run went on past them.
    assert!(counts[..61].iter().filter(|&&c| c == 0).count() >= 3, "{counts:?}");
    assert!(counts[61..].iter().all(|&c| c == 0), "{counts:?}");
    let status: Vec<&str> = err1.lines().chain(err2.lines()).filter(|l| l.starts_with("dstream: batch ")).collect();
    assert!(status.iter().all(|l| l.contains(" records, 0 malformed,")), "{err1}{err2}");
    let values: Vec<Vec<u8>> = survivors.iter().map(|s| s.1.clone().into_bytes()).collect();
    let model = model_of(values.iter());
    let finals: Vec<(String, f64)> = final_averages(&(out1 + &out2)).into_iter().collect();
    assert_eq!(finals, model.averages());
    let table = ok_stdout(&dstream(&["checkpoint", "show", ck.to_str().unwrap()]));
    assert_eq!(checkpoint_rows(&table), model.sums());

    // Stored batches run again after a restart read through the same gaps (into a batch, not in segments).
    let client = Client::connect(&[b.addr().to_string()], ClientConfig::default()).unwrap();
    let mut fetcher = RangeFetcher::new(client, t);
    let mut batch = RecordBatch::new();
    for from in (0..end).step_by(10) {
        let range = OffsetRange { partition: 0, from, until: (from + 10).min(end) };
        fetcher.fetch_ranges(&[range], &mut batch).unwrap();
    }
    let mut read = vec![];
    batch.for_each_record(&mut |r| read.push((r.offset, String::from_utf8(r.value.to_vec()).unwrap()))).unwrap();
    assert_eq!(read, survivors);
}
