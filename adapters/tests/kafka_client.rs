//! The bare client against a real broker (tansu, started per test on a free port).

use dstream_adapters::broker::Tansu;
use dstream_adapters::kafka::records::{encode_batch, for_each_record, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig, KafkaError, OffsetSpec, PartitionFetch};
use std::time::{Duration, Instant};

fn broker() -> Option<Tansu> {
    if std::env::var_os("DSTREAM_NO_BROKER").is_some_and(|v| v == "1") {
        eprintln!("DSTREAM_NO_BROKER=1: skipping a real-broker test on purpose");
        return None;
    }
    Some(Tansu::start().expect("start tansu"))
}

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

#[test]
fn produce_and_fetch_every_codec() {
    let Some(b) = broker() else { return };
    let mut c = Client::connect(&[b.addr().to_string()], ClientConfig::default()).unwrap();
    assert!(matches!(c.partitions("avg"), Err(KafkaError::UnknownTopic { .. })), "no auto-creation");
    assert!(c.create_topic("avg", 1, 1).unwrap());
    assert!(!c.create_topic("avg", 1, 1).unwrap());
    assert_eq!(c.partitions("avg").unwrap(), vec![0]);
    let mut expected = vec![];
    for (i, codec) in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd].into_iter().enumerate() {
        let values: Vec<Vec<u8>> =
            (0..300).map(|j| format!("{},{}", (b'a' + (j % 26) as u8) as char, i * 1000 + j).into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let base = c.produce("avg", 0, encode_batch(&refs, 1, codec).unwrap(), Acks::All).unwrap();
        assert_eq!(base, 300 * i as i64, "{codec:?}");
        expected.extend(values);
    }
    let earliest = c.list_offsets("avg", &[0], OffsetSpec::Earliest).unwrap();
    assert_eq!(earliest, vec![(0, 0)]);
    let got = read_all(&mut c, "avg", 0, 0, 1500);
    assert_eq!(got.len(), 1500);
    for (i, (off, v)) in got.iter().enumerate() {
        assert_eq!(*off, i as i64);
        assert_eq!(v, &expected[i]);
    }
    // A range in the middle: exactly [from, until).
    let mid = read_all(&mut c, "avg", 0, 250, 610);
    assert_eq!(mid.first().unwrap().0, 250);
    assert_eq!(mid.last().unwrap().0, 609);
    assert_eq!(mid.len(), 360);
    // The log end: max(ListOffsets latest, high watermark) is 1500 on any broker.
    let latest = c.list_offsets("avg", &[0], OffsetSpec::Latest).unwrap()[0].1;
    let hw = c.fetch("avg", &[PartitionFetch { partition: 0, offset: 1500 }], Duration::from_millis(1)).unwrap()[0]
        .high_watermark;
    assert_eq!(latest.max(hw), 1500);
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
