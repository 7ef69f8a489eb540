//! The bare client against real brokers: tansu (started per test on a free port) and Apache Kafka (one broker
//! shared by the tests, each on topics of its own).

#[macro_use]
mod common;

use common::{broker, Kind, TestBroker};
use dstream_adapters::broker::Tansu;
use dstream_adapters::kafka::direct::{RangeFetcher, FIRST_FETCH_RECORDS};
use dstream_adapters::kafka::records::{encode_batch, for_each_record, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig, KafkaError, OffsetSpec, PartitionFetch};
use dstream_core::{OffsetRange, RecordBatch, RecordSource};
use std::time::{Duration, Instant};

/// Reads `[from, until)` of a partition with repeated fetches.
fn read_all(client: &mut Client, topic: &str, partition: i32, from: i64, until: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out = vec![];
    let mut next = from;
    let deadline = Instant::now() + Duration::from_secs(20);
    while next < until {
        assert!(Instant::now() < deadline, "stuck at {next} of {until}");
        let f = client.fetch(topic, &[PartitionFetch { partition, offset: next }], Duration::from_millis(100)).unwrap();
        for p in f {
            let scan = for_each_record(&p.records, |r| {
                if r.offset >= next && r.offset < until {
                    out.push((r.offset, r.value.to_vec()));
                }
            })
            .unwrap();
            if let Some(n) = scan.next_offset {
                next = next.max(n);
            }
        }
    }
    out
}

fn produce_and_fetch_every_codec(b: &TestBroker) {
    let t = &b.topic("avg");
    let mut c = Client::connect(&[b.addr().to_string()], ClientConfig::default()).unwrap();
    assert!(matches!(c.partitions(t), Err(KafkaError::UnknownTopic { .. })), "no auto-creation");
    assert!(c.create_topic(t, 1, 1).unwrap());
    assert!(!c.create_topic(t, 1, 1).unwrap());
    assert_eq!(c.partitions(t).unwrap(), vec![0]);
    let mut expected = vec![];
    for (i, codec) in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd].into_iter().enumerate() {
        let values: Vec<Vec<u8>> =
            (0..300).map(|j| format!("{},{}", (b'a' + (j % 26) as u8) as char, i * 1000 + j).into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let base = c.produce(t, 0, encode_batch(&refs, 1, codec).unwrap(), Acks::All).unwrap();
        assert_eq!(base, 300 * i as i64, "{codec:?}");
        expected.extend(values);
    }
    let earliest = c.list_offsets(t, &[0], OffsetSpec::Earliest).unwrap();
    assert_eq!(earliest, vec![(0, 0)]);
    let got = read_all(&mut c, t, 0, 0, 1500);
    assert_eq!(got.len(), 1500);
    for (i, (off, v)) in got.iter().enumerate() {
        assert_eq!(*off, i as i64);
        assert_eq!(v, &expected[i]);
    }
    // A range in the middle: exactly [from, until).
    let mid = read_all(&mut c, t, 0, 250, 610);
    assert_eq!(mid.first().unwrap().0, 250);
    assert_eq!(mid.last().unwrap().0, 609);
    assert_eq!(mid.len(), 360);
    // The log end: max(ListOffsets latest, high watermark) is 1500 on any broker.
    let latest = c.list_offsets(t, &[0], OffsetSpec::Latest).unwrap()[0].1;
    let hw = c.fetch(t, &[PartitionFetch { partition: 0, offset: 1500 }], Duration::from_millis(1)).unwrap()[0]
        .high_watermark;
    assert_eq!(latest.max(hw), 1500);
    // Apache Kafka's ListOffsets is the log end itself (tansu's is not: KAFKA.md).
    if b.kind() == Kind::Kafka {
        assert_eq!((latest, hw), (1500, 1500));
    }
}

#[test]
fn unreachable_broker_is_a_typed_error_quickly() {
    let port = dstream_adapters::broker::free_port().unwrap();
    let start = Instant::now();
    let err = Client::connect(&[format!("127.0.0.1:{port}")], ClientConfig::default()).err().expect("nothing listens");
    assert!(matches!(err, KafkaError::Unreachable { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = Client::connect(&["nonsense".to_string()], ClientConfig::default()).err().unwrap();
    assert!(matches!(err, KafkaError::BadAddress { .. }), "{err}");
}

#[test]
fn a_broker_that_wants_authentication_is_named_as_such() {
    if broker().is_none() {
        return;
    }
    let b = Tansu::start_with_args("memory://tansu/", &[], &["--authentication"]).unwrap();
    let err = Client::connect(&[b.addr().to_string()], ClientConfig::default()).err().expect("refused");
    assert!(matches!(err, KafkaError::AuthenticationRequired { .. }), "{err}");
}

/// Creates topic `t` with 3 partitions and writes `rounds` batches of 50 records to each; record i of partition p
/// has the value "p:i". Returns every partition's values in offset order.
fn produce_numbered(addr: &[String], t: &str, rounds: i64) -> Vec<Vec<Vec<u8>>> {
    let mut c = Client::connect(addr, ClientConfig::default()).unwrap();
    c.create_topic(t, 3, 1).unwrap();
    let mut expected: Vec<Vec<Vec<u8>>> = vec![vec![]; 3];
    for round in 0..rounds {
        for p in 0..3 {
            let values: Vec<Vec<u8>> = (0..50).map(|j| format!("{p}:{}", round * 50 + j).into_bytes()).collect();
            let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            c.produce(t, p, encode_batch(&refs, 7, Codec::None).unwrap(), Acks::Leader).unwrap();
            expected[p as usize].extend(values);
        }
    }
    expected
}

fn ranges_read_over_many_pipelined_fetches_are_exact(b: &TestBroker) {
    let t = &b.topic("avg");
    let addr = vec![b.addr().to_string()];
    let expected = produce_numbered(&addr, t, 40);
    let mut c = Client::connect(&addr, ClientConfig::default()).unwrap();
    // A tiny per-partition limit: every fetch brings about one batch per partition, so reading a range takes many
    // rounds, each asked for before the previous answer is read.
    let cfg = ClientConfig { partition_max_bytes: 600, fetch_max_bytes: 4000, ..ClientConfig::default() };
    let mut fetcher = RangeFetcher::new(Client::connect(&addr, cfg).unwrap(), t);
    let mut batch = RecordBatch::new();
    // Consecutive ranges that start and end inside batches, different per partition, one partition idle once.
    let cuts: [[i64; 3]; 4] = [[0, 0, 0], [275, 130, 0], [276, 1555, 1333], [2000, 2000, 2000]];
    for w in cuts.windows(2) {
        let ranges: Vec<OffsetRange> =
            (0..3).map(|p| OffsetRange { partition: p, from: w[0][p as usize], until: w[1][p as usize] }).collect();
        batch.clear();
        fetcher.fetch_ranges(&ranges, &mut batch).unwrap();
        batch.sort_by_position();
        let got: Vec<(i32, i64, Vec<u8>)> = batch.iter().map(|r| (r.partition, r.offset, r.value.to_vec())).collect();
        let want = records_of(&ranges, &expected);
        assert_eq!(got, want, "ranges {ranges:?}");
    }
    // A fetch sent and never read leaves the connection usable: its answer is skipped by the next request.
    let pending = c
        .fetch_send(t, &[PartitionFetch { partition: 0, offset: 0 }], Duration::from_millis(1), 1 << 20, 1 << 20)
        .unwrap();
    drop(pending);
    assert_eq!(c.list_offsets(t, &[1], OffsetSpec::Earliest).unwrap(), vec![(1, 0)]);
    let pending = c
        .fetch_send(t, &[PartitionFetch { partition: 2, offset: 1990 }], Duration::from_millis(1), 1 << 20, 1 << 20)
        .unwrap();
    let got = c.fetch_receive(pending).unwrap();
    assert_eq!((got.len(), got[0].partition, got[0].high_watermark), (1, 2, 2000));
}

/// Produces `batches` batches of 100 records to partition 0 of `t`, record `i`'s value `value(i)`.
fn produce_in_batches_of_100(c: &mut Client, t: &str, batches: usize, value: impl Fn(usize) -> Vec<u8>) {
    for batch in 0..batches {
        let values: Vec<Vec<u8>> = (0..100).map(|j| value(batch * 100 + j)).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        c.produce(t, 0, encode_batch(&refs, 7, Codec::None).unwrap(), Acks::Leader).unwrap();
    }
}

fn fetches_sized_from_a_wrong_first_guess_still_read_exact_ranges(b: &TestBroker) {
    let t = &b.topic("avg");
    let addr = vec![b.addr().to_string()];
    let mut c = Client::connect(&addr, ClientConfig::default()).unwrap();
    c.create_topic(t, 1, 1).unwrap();
    // 3,000 records of 3 KB (the fetcher's first guess is 16 bytes a record), in batches of 100.
    let value = |i: usize| format!("{i:08},{}", "x".repeat(3000)).into_bytes();
    produce_in_batches_of_100(&mut c, t, 30, value);
    let mut fetcher = RangeFetcher::new(Client::connect(&addr, ClientConfig::default()).unwrap(), t);
    let mut batch = RecordBatch::new();
    for (from, until) in [(0i64, 1234i64), (1234, 1250), (1250, 3000)] {
        batch.clear();
        fetcher.fetch_ranges(&[OffsetRange { partition: 0, from, until }], &mut batch).unwrap();
        let got: Vec<(i64, Vec<u8>)> = batch.iter().map(|r| (r.offset, r.value.to_vec())).collect();
        let want: Vec<(i64, Vec<u8>)> = (from..until).map(|o| (o, value(o as usize))).collect();
        assert!(got == want, "range {from}..{until}: {} records read, {} wanted", got.len(), want.len());
    }
}

/// (partition, offset, value) of a record.
type Rec = (i32, i64, Vec<u8>);

/// The records of `ranges` in range order, from `expected` (per partition, in offset order from 0).
fn records_of(ranges: &[OffsetRange], expected: &[Vec<Vec<u8>>]) -> Vec<Rec> {
    ranges
        .iter()
        .flat_map(|r| (r.from..r.until).map(move |o| (r.partition, o)))
        .map(|(p, o)| (p, o, expected[p as usize][o as usize].clone()))
        .collect()
}

/// Reads `ranges` in segments; returns the records each segment held and all records in the order handed over.
fn read_in_segments(fetcher: &mut RangeFetcher, ranges: &[OffsetRange]) -> (Vec<usize>, Vec<Rec>) {
    let mut segments = vec![];
    fetcher.fetch_ranges_in_segments(ranges, |s| segments.push(s)).unwrap();
    let (mut sizes, mut got) = (vec![], vec![]);
    for s in segments {
        let n = s.for_each_record(&mut |r| got.push((r.partition, r.offset, r.value.to_vec()))).unwrap();
        sizes.push(n);
    }
    (sizes, got)
}

fn segments_come_in_partition_then_offset_order_while_partitions_are_fetched_together(b: &TestBroker) {
    let t = &b.topic("avg");
    let addr = vec![b.addr().to_string()];
    let expected = produce_numbered(&addr, t, 20);
    // Every fetch brings about one batch of each partition: partitions 1 and 2 arrive long before their turn.
    let cfg = ClientConfig { partition_max_bytes: 600, fetch_max_bytes: 4000, ..ClientConfig::default() };
    let mut fetcher = RangeFetcher::new(Client::connect(&addr, cfg).unwrap(), t);
    let cuts: [[i64; 3]; 3] = [[0, 0, 0], [275, 0, 130], [1000, 555, 1000]];
    for w in cuts.windows(2) {
        let ranges: Vec<OffsetRange> =
            (0..3).map(|p| OffsetRange { partition: p, from: w[0][p as usize], until: w[1][p as usize] }).collect();
        let (sizes, got) = read_in_segments(&mut fetcher, &ranges);
        let want = records_of(&ranges, &expected);
        assert_eq!(got, want, "ranges {ranges:?}");
        assert!(sizes.len() >= 2 && sizes.iter().all(|&n| n > 0), "segments {sizes:?}");
    }
}

fn a_large_range_starts_with_a_short_fetch_and_is_handed_over_as_it_comes(b: &TestBroker) {
    let t = &b.topic("avg");
    let addr = vec![b.addr().to_string()];
    let mut c = Client::connect(&addr, ClientConfig::default()).unwrap();
    c.create_topic(t, 1, 1).unwrap();
    let n = 16 * FIRST_FETCH_RECORDS as usize + 1000;
    let value = |i: usize| format!("k,{i}").into_bytes();
    for start in (0..n).step_by(1000) {
        let values: Vec<Vec<u8>> = (start..(start + 1000).min(n)).map(value).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        c.produce(t, 0, encode_batch(&refs, 7, Codec::None).unwrap(), Acks::Leader).unwrap();
    }
    let mut fetcher = RangeFetcher::new(Client::connect(&addr, ClientConfig::default()).unwrap(), t);
    let (sizes, got) = read_in_segments(&mut fetcher, &[OffsetRange { partition: 0, from: 10, until: n as i64 }]);
    assert_eq!(got.len(), n - 10);
    assert!(got.iter().enumerate().all(|(i, r)| r == &(0, i as i64 + 10, value(i + 10))), "records differ");
    // The first fetch is sized for FIRST_FETCH_RECORDS records (at a guessed size per record), far short of the
    // range; the rest comes in several more.
    assert!(sizes.len() >= 3 && sizes[0] > 0 && sizes[0] < n / 2, "segments {sizes:?}");
}

fn a_prefetch_from_any_offset_never_changes_what_ranges_read(b: &TestBroker) {
    let t = &b.topic("avg");
    let addr = vec![b.addr().to_string()];
    let expected = produce_numbered(&addr, t, 20); // 1,000 records per partition, in batches of 50
    let mut fetcher = RangeFetcher::new(Client::connect(&addr, ClientConfig::default()).unwrap(), t);
    // Consecutive ranges of partitions 0 and 2, each after a prefetch: from where the range starts (the live case),
    // from a wrong offset, from a partition not read, or none; then the next range.
    let cuts = [0i64, 10, 75, 75, 300, 301, 620, 1000];
    let prefetches: [&[(i32, i64)]; 7] = [
        &[(0, 0), (2, 0)],
        &[(0, 500), (2, 3)],
        &[],
        &[(1, 0)],
        &[(0, 300), (2, 300)],
        &[(0, 301)],
        &[(0, 620), (2, 0)],
    ];
    for (w, from) in cuts.windows(2).zip(prefetches) {
        fetcher.prefetch(from);
        let ranges = [0, 2].map(|p| OffsetRange { partition: p, from: w[0], until: w[1] });
        let (_, got) = read_in_segments(&mut fetcher, &ranges);
        let want = records_of(&ranges, &expected);
        assert_eq!(got, want, "ranges {ranges:?} after a prefetch from {from:?}");
    }
}

/// Minor page faults of this thread so far (pages touched for the first time).
fn thread_page_faults() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt
}

fn answers_are_read_into_the_memory_of_answers_dropped_before(b: &TestBroker) {
    let t = &b.topic("avg");
    let addr = vec![b.addr().to_string()];
    let mut c = Client::connect(&addr, ClientConfig::default()).unwrap();
    c.create_topic(t, 1, 1).unwrap();
    // 4,000 records of 1 KB in batches of 100 (about 100 KB each).
    let value = |i: usize| format!("{i:08},{}", "y".repeat(1000)).into_bytes();
    produce_in_batches_of_100(&mut c, t, 40, value);
    // The records read in answers of about 512 KB (Kafka; tansu's may be larger) held at once, as a batch's are
    // until it is processed; their records checked.
    let round = |c: &mut Client| {
        let (mut answers, mut next) = (vec![], 0i64);
        let deadline = Instant::now() + Duration::from_secs(20);
        while next < 4000 {
            assert!(Instant::now() < deadline, "stuck at {next}");
            let at = [PartitionFetch { partition: 0, offset: next }];
            let f = c.fetch_sized(t, &at, Duration::from_millis(100), 512 << 10, 512 << 10).unwrap();
            let mut seen = 0;
            let scan = for_each_record(&f[0].records, |r| {
                if r.offset >= next {
                    assert_eq!(r.value, value(r.offset as usize), "offset {}", r.offset);
                    seen += 1;
                }
            })
            .unwrap();
            // tansu may answer with nothing while records it acknowledged are not yet visible: asked again.
            if seen > 0 {
                next = scan.next_offset.unwrap();
                answers.push(f);
            }
        }
        answers
    };
    drop(round(&mut c));
    let before = thread_page_faults();
    let answers = round(&mut c);
    let faults = thread_page_faults() - before;
    let pages: usize = answers.iter().map(|f| f[0].records.len()).sum::<usize>() / 4096;
    assert!(pages >= 800, "{pages} pages");
    // Fresh buffers would fault in every page of the answers; buffers used again, next to none.
    assert!(faults < pages as i64 / 8, "{faults} page faults reading {pages} pages of answers");
}

on_both_brokers!(
    answers_are_read_into_the_memory_of_answers_dropped_before,
    produce_and_fetch_every_codec,
    ranges_read_over_many_pipelined_fetches_are_exact,
    fetches_sized_from_a_wrong_first_guess_still_read_exact_ranges,
    segments_come_in_partition_then_offset_order_while_partitions_are_fetched_together,
    a_large_range_starts_with_a_short_fetch_and_is_handed_over_as_it_comes,
    a_prefetch_from_any_offset_never_changes_what_ranges_read,
);
