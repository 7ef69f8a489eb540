//! API version negotiation against real brokers: the highest version both sides implement, and a clear
//! UnsupportedVersion error from a real Kafka listener that does not offer what dstream needs.

#[macro_use]
mod common;

use common::*;
use dstream_adapters::kafka::conn::{Connection, Timeouts, IMPLEMENTED};
use dstream_adapters::kafka::{Client, ClientConfig, KafkaError};
use kafka_protocol::messages::ApiKey;
use std::time::Duration;

const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(3), request: Duration::from_secs(10) };

/// Both brokers offer at least the newest version dstream implements of each API it uses, but tansu, which
/// offers no OffsetForLeaderEpoch (the leader-epoch check of a resume is then left out, as documented).
fn every_api_at_the_newest_version_dstream_implements(b: &TestBroker) {
    let conn = Connection::connect(b.addr(), "dstream-test", TIMEOUTS, Default::default()).unwrap();
    for &(api, _, max) in IMPLEMENTED {
        if api == ApiKey::OffsetForLeaderEpoch && b.kind() == Kind::Tansu {
            let err = conn.version(api).unwrap_err();
            assert!(matches!(&err, KafkaError::UnsupportedVersion { offered, .. } if offered == "nothing"), "{err}");
            continue;
        }
        assert_eq!(conn.version(api).unwrap(), max, "{api:?} on {:?}", b.kind());
    }
}

on_both_brokers!(every_api_at_the_newest_version_dstream_implements);

#[test]
fn a_kafka_listener_without_metadata_is_an_unsupported_version_in_one_line() {
    if broker_disabled() {
        return;
    }
    // A KRaft controller's listener answers ApiVersions but offers only the controller's APIs: no Metadata,
    // ListOffsets or Produce.
    let controller = shared_kafka().controller_addr(0);
    let err =
        Client::connect(std::slice::from_ref(&controller), ClientConfig::default()).err().expect("no Metadata there");
    match &err {
        KafkaError::UnsupportedVersion { addr, api, min, max, offered } => {
            assert_eq!((addr.as_str(), *api, offered.as_str()), (controller.as_str(), "Metadata", "nothing"), "{err}");
            assert_eq!((*min, *max), (4, 12));
        }
        other => panic!("expected UnsupportedVersion, got {other}"),
    }
    let out = dstream(&["run", "--brokers", &controller, "--batches", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("broker {controller} does not support Metadata versions 4..=12")), "{stderr}");
}
