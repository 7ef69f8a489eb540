//! proptest strategies for arbitrary streams, configurations and recordings.

use crate::recording::{Frame, Record, Recording, RecordingHeader};
use dstream_core::{Duration, OffsetRange, Time};
use proptest::collection::vec;
use proptest::prelude::*;

/// A key of a `KEY,VALUE` message: 1-3 characters, ASCII letters mixed with multi-byte UTF-8 (2, 3 and 4 bytes), never a comma.
pub fn key() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        6 => proptest::char::range('a', 'e'),
        1 => Just('é'),
        1 => Just('ß'),
        1 => Just('日'),
        1 => Just('🦀'),
        1 => Just(' '),
    ];
    vec(ch, 1..=3).prop_map(|cs| cs.into_iter().collect())
}

/// A value of a `KEY,VALUE` message: mostly 0..=25, sometimes signed or extreme.
pub fn value() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0i64..=25,
        1 => -1000i64..1000,
        1 => prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(0)],
    ]
}

/// A message that is not `KEY,VALUE` with an integer value.
pub fn malformed_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"".to_vec()),
        Just(b"a".to_vec()),
        Just(b",1".to_vec()),
        Just(b"a,".to_vec()),
        Just(b"a, 1".to_vec()),
        Just(b"a,1.5".to_vec()),
        Just(b"a,1,2".to_vec()),
        Just(b"\xff,1".to_vec()),
        Just(b"a,99999999999999999999".to_vec()),
        vec(any::<u8>(), 0..8).prop_filter("not a valid KEY,VALUE record", |v| !is_key_value(v)),
    ]
}

/// A message: usually a well-formed `KEY,VALUE`, sometimes malformed.
pub fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => (key(), value()).prop_map(|(k, v)| format!("{k},{v}").into_bytes()),
        1 => malformed_message(),
    ]
}

/// An arbitrary stream: a partition count (1-8) and messages, each with its partition.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Kafka partitions.
    pub partitions: u32,
    /// (partition, message value) in the order they are produced.
    pub messages: Vec<(i32, Vec<u8>)>,
}

/// A stream of up to `max` messages over 1-8 partitions.
pub fn stream(max: usize) -> impl Strategy<Value = Stream> {
    (1u32..=8).prop_flat_map(move |n| {
        vec((0..n as i32, message()), 0..=max).prop_map(move |messages| Stream { partitions: n, messages })
    })
}

/// Batch sizes that split `len` messages: any split, with empty batches, ending with 0-2 empty batches.
pub fn split(len: usize) -> impl Strategy<Value = Vec<usize>> {
    (vec(prop_oneof![2 => Just(0usize), 5 => 1usize..=4, 1 => 5usize..=12], 0..=len + 2), 0usize..=2).prop_map(
        move |(sizes, tail)| {
            let mut left = len;
            let mut out = Vec::new();
            for s in sizes {
                let s = s.min(left);
                out.push(s);
                left -= s;
            }
            if left > 0 {
                out.push(left);
            }
            out.extend(std::iter::repeat_n(0, tail));
            out
        },
    )
}

/// Batches of a stream: `sizes[i]` consecutive messages go into batch i.
pub fn batches(messages: &[(i32, Vec<u8>)], sizes: &[usize]) -> Vec<Vec<(i32, Vec<u8>)>> {
    let mut it = messages.iter().cloned();
    sizes.iter().map(|&s| it.by_ref().take(s).collect()).collect()
}

/// Restart points: for each of `batches` boundaries, whether to checkpoint and restart there.
pub fn restarts(batches: usize) -> impl Strategy<Value = Vec<bool>> {
    vec(prop::bool::weighted(0.3), batches)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..=max), ".{0,8}".prop_map(String::into_bytes), message(),]
}

/// An arbitrary recording (not necessarily consistent): any header text, records, ranges and times.
pub fn recording() -> impl Strategy<Value = Recording> {
    let header = (".{0,6}", 0u32..=8, 1i64..=100_000, any::<i64>(), ".{0,8}", vec((".{0,5}", ".{0,8}"), 0..4))
        .prop_map(|(topic, partitions, ms, zero, job, params)| RecordingHeader {
            topic,
            partitions,
            batch_interval: Duration(ms),
            zero: Time(zero),
            job,
            params,
        });
    let record = (any::<i32>(), any::<i64>(), any::<i64>(), prop::option::of(bytes(6)), bytes(12))
        .prop_map(|(partition, offset, timestamp, key, value)| Record { partition, offset, timestamp, key, value });
    let range = (0i32..10, any::<i64>(), any::<i64>()).prop_map(|(partition, from, until)| OffsetRange {
        partition,
        from,
        until,
    });
    let frame = (any::<i64>(), vec(range, 0..4), vec(record, 0..6)).prop_map(|(t, ranges, records)| Frame {
        time: Time(t),
        ranges,
        records,
    });
    (header, vec(frame, 0..5)).prop_map(|(header, frames)| Recording { header, frames })
}

/// Whether `v` is `KEY,VALUE` with a non-empty UTF-8 key and a decimal 64-bit integer value (optional sign), as
/// a running-average job reads it.
fn is_key_value(v: &[u8]) -> bool {
    let Some(comma) = v.iter().position(|&b| b == b',') else { return false };
    let (key, value) = (&v[..comma], &v[comma + 1..]);
    !key.is_empty()
        && std::str::from_utf8(key).is_ok()
        && std::str::from_utf8(value).is_ok_and(|s| s.parse::<i64>().is_ok())
}
