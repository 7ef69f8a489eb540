//! Cross-checks with a Kafka client no one in this project wrote: confluent-kafka (librdkafka) from PyPI, on tansu
//! and Apache Kafka.

#[macro_use]
mod common;

use common::*;

const PRODUCE: &str = r#"
import sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
addr, topic, n, codec = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
admin = AdminClient({"bootstrap.servers": addr})
for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
    f.result()
p = Producer({"bootstrap.servers": addr, "compression.type": codec, "linger.ms": 5, "enable.idempotence": False})
for i in range(n):
    p.produce(topic, value=("k%05d,%d" % (i, i % 26)).encode(), partition=0)
    if i % 1000 == 0:
        p.poll(0)
assert p.flush(30) == 0
"#;

const CONSUME: &str = r#"
import sys, time
from confluent_kafka import Consumer, TopicPartition
addr, topic, n, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Consumer({"bootstrap.servers": addr, "group.id": "check", "enable.auto.commit": False})
c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
got, deadline = [], time.time() + 30
while len(got) < n and time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    assert m.error() is None, m.error()
    got.append("%d %d %s" % (m.partition(), m.offset(), m.value().decode()))
# A little longer: nothing beyond what was produced.
end = time.time() + 0.5
while time.time() < end:
    m = c.poll(0.1)
    if m is not None and m.error() is None:
        got.append("%d %d %s" % (m.partition(), m.offset(), m.value().decode()))
c.close()
print("\n".join(got))
"#;

fn dstream_reads_a_third_party_stream_exactly_once_in_offset_order(b: &TestBroker) {
    for (topic, codec) in [("plain", "none"), ("zstd", "zstd"), ("gzip", "gzip"), ("snappy", "snappy"), ("lz4", "lz4")]
    {
        let topic = &b.topic(topic);
        python(PRODUCE, &[b.addr(), topic, "3000", codec]);
        let out = dstream(&[
            "run",
            "--brokers",
            b.addr(),
            "--topic",
            topic,
            "--starting-offsets",
            "earliest",
            "--batches",
            "2",
            "--batch-interval",
            "200ms",
            "--print",
            "100000",
        ]);
        let stdout = ok_stdout(&out);
        let keys: Vec<String> = printed_elements(&stdout).into_iter().map(|(k, _)| k).collect();
        let expected: Vec<String> = (0..3000).map(|i| format!("k{i:05}")).collect();
        assert_eq!(keys, expected, "{codec}");
        // Each key seen once: its average is its only value.
        for (i, (_, avg)) in printed_elements(&stdout).into_iter().enumerate() {
            assert_eq!(avg, (i % 26) as f64);
        }
    }
}

fn a_third_party_consumer_reads_back_everything_dstream_generated(b: &TestBroker) {
    for (topic, codec) in [("gen-none", "none"), ("gen-zstd", "zstd")] {
        let topic = &b.topic(topic);
        generate(b.addr(), topic, 3000, 9, &["--partitions", "2", "--compression", codec]);
        let text = python(CONSUME, &[b.addr(), topic, "3000", "2"]);
        let mut got: Vec<&str> = text.lines().collect();
        got.sort_by_key(|l| {
            let mut f = l.split(' ');
            (f.next().unwrap().parse::<i32>().unwrap(), f.next().unwrap().parse::<i64>().unwrap())
        });
        // "partition offset value", in (partition, offset) order.
        let expected: Vec<String> = lab_messages(9, 3000, 2)
            .iter()
            .enumerate()
            .flat_map(|(p, values)| {
                values.iter().enumerate().map(move |(o, v)| format!("{p} {o} {}", String::from_utf8_lossy(v)))
            })
            .collect();
        assert_eq!(got, expected, "{codec}");
    }
}

on_both_brokers!(
    dstream_reads_a_third_party_stream_exactly_once_in_offset_order,
    a_third_party_consumer_reads_back_everything_dstream_generated,
);
