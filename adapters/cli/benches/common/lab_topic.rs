//! The consume benches' topic: lab messages in one partition of `avg`, and the bare client's pass over them.

use dstream_adapters::kafka::records::{first_base_offset, for_each_record_before, Codec, DEFAULT_MAX_BATCH_BYTES};
use dstream_adapters::kafka::{Acks, Client, PartitionFetch};
use dstream_cli::generate::{generate, GenerateOptions};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Creates `avg` with one partition and produces `count` lab messages into it (seed 1, uncompressed), saying
/// how long it took.
pub fn produce(client: &mut Client, count: u64) {
    client.create_topic("avg", 1, 1).expect("create topic");
    let started = Instant::now();
    let opts = GenerateOptions {
        topic: "avg".into(),
        rate: 0,
        count: Some(count),
        seed: 1,
        partitions: 1,
        codec: Codec::None,
        acks: Acks::Leader,
    };
    let produced = generate(client, &opts, &AtomicBool::new(false)).expect("produce");
    println!("produced {produced} lab messages in {:.3} s", started.elapsed().as_secs_f64());
}

/// The bare client: fetches and parses the first `n` records of `avg` in place; returns the bytes of their
/// values. Each fetch asks for what is left of the `n` (at the bytes per record seen so far) and the parse stops
/// at the `n`-th, so that records after it cost nothing however many the topic holds.
pub fn read_first(client: &mut Client, n: i64) -> usize {
    let (mut next, mut count, mut bytes) = (0i64, 0i64, 0usize);
    let mut record_bytes = 16.0f64;
    while next < n {
        let want = ((n - next) as f64 * record_bytes * 1.1) as i32 + (64 << 10);
        let at = [PartitionFetch { partition: 0, offset: next }];
        let f = client.fetch_sized("avg", &at, Duration::from_millis(100), want, want).unwrap();
        let scan = for_each_record_before(&f[0].records, n, DEFAULT_MAX_BATCH_BYTES, |r| {
            if r.offset >= next {
                count += 1;
                bytes += r.value.len();
            }
        })
        .unwrap();
        let after = scan.next_offset.unwrap_or(next).max(next);
        if after > next {
            record_bytes = scan.end as f64 / (after - first_base_offset(&f[0].records).unwrap_or(next)) as f64;
        }
        next = after;
    }
    assert_eq!(count, n);
    bytes
}
