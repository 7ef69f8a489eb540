//! The client against hostile fake brokers (loopback listeners written here, speaking just enough of the protocol):
//! no wait for a broker outlasts its deadline whatever the broker sends, the interrupt flag (Ctrl-C) ends a wait,
//! and a retried call ends with its retry period.

mod common;

use bytes::BytesMut;
use dstream_adapters::kafka::conn::Timeouts;
use dstream_adapters::kafka::direct::{DirectConfig, DirectStream, RangeFetcher, StartingOffsets};
use dstream_adapters::kafka::records::{encode_batch, Codec};
use dstream_adapters::kafka::{Client, ClientConfig, KafkaError, OffsetSpec};
use dstream_core::{OffsetRange, RecordBatch};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchResponse, ListOffsetsResponse, MetadataResponse, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// A request as the fake broker read it.
struct Request {
    key: i16,
    version: i16,
    correlation: i32,
}

fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Request {
        key: i16::from_be_bytes([body[0], body[1]]),
        version: i16::from_be_bytes([body[2], body[3]]),
        correlation: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
    })
}

fn answer(s: &mut TcpStream, req: &Request, body: &impl Encodable) -> std::io::Result<()> {
    let key = ApiKey::try_from(req.key).expect("a known api");
    let mut buf = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(req.correlation);
    header.encode(&mut buf, key.response_header_version(req.version)).expect("header encodes");
    body.encode(&mut buf, req.version).expect("body encodes");
    s.write_all(&(buf.len() as i32).to_be_bytes())?;
    s.write_all(&buf)
}

/// Starts a fake broker on a free loopback port; each connection is served by `serve` on a thread of its own.
fn fake(serve: impl Fn(TcpStream, &str) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().unwrap().to_string();
    let serve = Arc::new(serve);
    let at = addr.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (serve, at) = (serve.clone(), at.clone());
            std::thread::spawn(move || serve(conn, &at));
        }
    });
    addr
}

/// Answers a request by the byte: a length prefix announcing a large answer, then one byte every 100 ms, each in
/// time for any per-read timeout, until the client hangs up; sets `after_10` once ten bytes went out.
fn trickle(s: &mut TcpStream, after_10: Option<&AtomicBool>) {
    if s.write_all(&(1i32 << 20).to_be_bytes()).is_err() {
        return;
    }
    for sent in 4.. {
        if sent == 10 {
            after_10.inspect(|f| f.store(true, Ordering::SeqCst));
        }
        // The hostile broker's pace (the test waits on the client's answer, never on a clock).
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(&[0]).is_err() {
            return;
        }
    }
}

/// Runs `f` on a thread of its own and waits for its answer for at most `within`: a wait without an end fails the
/// test instead of hanging it.
fn within<T: Send + 'static>(within: Duration, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let got = rx.recv_timeout(within).unwrap_or_else(|_| panic!("still waiting for the broker after {within:?}"));
    (got, start.elapsed())
}

fn config(request: Duration) -> ClientConfig {
    ClientConfig { timeouts: Timeouts { connect: Duration::from_secs(3), request }, ..ClientConfig::default() }
}

#[test]
fn a_broker_trickling_its_answer_byte_by_byte_times_out_by_the_request_deadline() {
    let addr = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            trickle(&mut s, None);
        }
    });
    let cfg = config(Duration::from_secs(2));
    let target = addr.clone();
    let (err, took) = within(Duration::from_secs(60), move || Client::connect(&[target], cfg).err());
    let err = err.expect("a trickle is no answer");
    assert!(matches!(err, KafkaError::Timeout { received, .. } if received >= 5), "{err}");
    let want = format!("no answer from {addr} to ApiVersions in 2.0 s (an answer had begun: ");
    assert!(err.to_string().starts_with(&want), "{err}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn the_interrupt_flag_ends_a_wait_for_a_trickling_broker() {
    let flag = Arc::new(AtomicBool::new(false));
    let set_by_broker = flag.clone();
    let addr = fake(move |mut s, _| {
        if read_request(&mut s).is_some() {
            trickle(&mut s, Some(&set_by_broker));
        }
    });
    // A request deadline far beyond the test's patience: only the flag can end the wait in time.
    let cfg = ClientConfig { interrupt: Some(flag.clone()), ..config(Duration::from_secs(600)) };
    let (err, took) = within(Duration::from_secs(60), move || Client::connect(&[addr], cfg).err());
    let err = err.expect("interrupted");
    assert!(flag.load(Ordering::SeqCst));
    assert!(matches!(err, KafkaError::Interrupted { api: "ApiVersions", .. }), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// A broker that answers ApiVersions and Metadata (topic `t`, one partition it leads) and then nothing at all.
fn silent_after_metadata(s: TcpStream, addr: &str) {
    metadata_then(s, addr, None)
}

/// As [`silent_after_metadata`], but every fetch is answered with `records` (log end 10).
fn metadata_then(s: TcpStream, addr: &str, records: Option<bytes::Bytes>) {
    let fetch = records.map(|r| move || Some(fetch_answer(Some(r.clone()))));
    scripted(s, addr, fetch.as_ref().map(|f| f as &dyn Fn() -> Option<FetchResponse>), &AtomicUsize::new(0))
}

/// The answer to a fetch of `t`-0 (log 0..10) bringing `records`.
fn fetch_answer(records: Option<bytes::Bytes>) -> FetchResponse {
    let mut r = FetchResponse::default();
    r.responses = vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(10)
            .with_log_start_offset(0)
            .with_records(records)])];
    r
}

/// A broker with topic `t` (one partition it leads, log 0..10): ApiVersions and Metadata answered; with `fetch`,
/// ListOffsets too (10; the first `list_left_out` answers without the partition) and each fetch with what
/// `fetch` gives (`None`: not answered); else nothing more.
fn scripted(
    mut s: TcpStream,
    addr: &str,
    fetch: Option<&dyn Fn() -> Option<FetchResponse>>,
    list_left_out: &AtomicUsize,
) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    while let Some(req) = read_request(&mut s) {
        let sent = match ApiKey::try_from(req.key) {
            Ok(ApiKey::ApiVersions) => {
                let keys = [(ApiKey::Metadata, 4, 12), (ApiKey::ListOffsets, 1, 7), (ApiKey::Fetch, 4, 12)];
                let mut r = ApiVersionsResponse::default();
                r.api_keys = keys
                    .iter()
                    .map(|&(k, min, max)| {
                        ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                    })
                    .collect();
                answer(&mut s, &req, &r)
            }
            Ok(ApiKey::Metadata) => {
                let mut r = MetadataResponse::default();
                r.brokers = vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port.parse().unwrap())];
                r.controller_id = BrokerId(0);
                r.topics = vec![MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                    .with_partitions(vec![MetadataResponsePartition::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(0))])];
                answer(&mut s, &req, &r)
            }
            Ok(ApiKey::ListOffsets) if fetch.is_some() => {
                let omit = list_left_out.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let partitions = match omit {
                    true => vec![],
                    false => vec![ListOffsetsPartitionResponse::default().with_partition_index(0).with_offset(10)],
                };
                let mut r = ListOffsetsResponse::default();
                r.topics = vec![ListOffsetsTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(partitions)];
                answer(&mut s, &req, &r)
            }
            Ok(ApiKey::Fetch) => match fetch.and_then(|f| f()) {
                Some(r) => answer(&mut s, &req, &r),
                None => Ok(()),
            },
            // Anything else: read, never answered (the connection stays open until the client hangs up).
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

#[test]
fn a_retried_call_ends_with_its_retry_period_and_counts_its_attempts() {
    let addr = fake(silent_after_metadata);
    // A request timeout far beyond the retry period: the period must cap each attempt.
    let cfg = ClientConfig { retry_for: Duration::from_secs(3), ..config(Duration::from_secs(30)) };
    let mut client = Client::connect(std::slice::from_ref(&addr), cfg).expect("the fake broker handshakes");
    let (err, took) = within(Duration::from_secs(60), move || client.list_offsets("t", &[0], OffsetSpec::Latest));
    let err = err.expect_err("never answered");
    let KafkaError::RetriesExhausted { attempts, secs, last } = &err else { panic!("{err}") };
    assert!(matches!(**last, KafkaError::Timeout { api: "ListOffsets", .. }), "{err}");
    assert!((3.0..4.5).contains(secs) && took < Duration::from_secs(10), "{err} ({took:?})");
    // Each attempt waited until the period's end or its own: one attempt, as the message says.
    assert_eq!(*attempts, 1, "{err}");
    let want = format!("gave up after 1 attempt over {secs:.1} s: no answer from {addr} to ListOffsets in ");
    assert!(err.to_string().starts_with(&want), "{err}");
}

#[test]
fn a_fetched_batch_whose_header_claims_2_gib_is_too_large_at_once_not_missing_records() {
    // Ten records whose header claims a batch of 2 GiB, cut off where the answer ends.
    let values: Vec<Vec<u8>> = (0..10).map(|i| format!("a,{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let mut batch = encode_batch(&refs, 1000, Codec::None).unwrap().to_vec();
    batch[8..12].copy_from_slice(&(i32::MAX - 11).to_be_bytes());
    let records = bytes::Bytes::from(batch);
    let addr = fake(move |s, at| metadata_then(s, at, Some(records.clone())));
    // A retry period beyond the test's patience: only recognising the batch ends the read in time.
    let cfg = ClientConfig { retry_for: Duration::from_secs(600), ..config(Duration::from_secs(30)) };
    let client = Client::connect(&[addr], cfg).expect("the fake broker handshakes");
    let mut fetcher = RangeFetcher::new(client, "t");
    let (err, _) = within(Duration::from_secs(60), move || {
        fetcher.fetch_ranges(&[OffsetRange { partition: 0, from: 0, until: 10 }], &mut RecordBatch::new())
    });
    let err = err.expect_err("no records can be read");
    let want = "record batch in t-0 at offsets 0..=9 is too large: its header declares 2147483648 bytes, more than \
                the bound on a batch (67108864 bytes)";
    assert_eq!(err.to_string(), want);
}

/// A fetch answer naming the topic but not the partition asked for, as tansu sends right after a restart.
fn without_the_partition() -> FetchResponse {
    let mut r = FetchResponse::default();
    r.responses = vec![FetchableTopicResponse::default().with_topic(TopicName(StrBytes::from_static_str("t")))];
    r
}

/// A stream starting at the log end of topic `t`, which finds that end by probing each partition with a fetch.
fn start_at_latest(addr: String, retry_for: Duration) -> Result<Vec<(i32, i64)>, KafkaError> {
    let cfg = ClientConfig { retry_for, ..config(Duration::from_secs(10)) };
    let client = Client::connect(&[addr], cfg)?;
    let stream_cfg = DirectConfig {
        topic: "t".into(),
        starting_offsets: StartingOffsets::Latest,
        max_rate_per_partition: 0,
        batch_interval: dstream_core::Duration::from_millis(1000),
        on_out_of_range: Default::default(),
    };
    Ok(DirectStream::new(client, stream_cfg, None)?.current_offsets().to_vec())
}

#[test]
fn answers_without_the_partition_are_retried_not_fatal() {
    // The first three probes (fetches) and the first three ListOffsets answers leave the partition out.
    let (left_out, list_left_out) = (Arc::new(AtomicUsize::new(3)), Arc::new(AtomicUsize::new(3)));
    let (counter, list_counter) = (left_out.clone(), list_left_out.clone());
    let addr = fake(move |s, at| {
        let counter = counter.clone();
        let fetch = move || {
            let omit = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            Some(if omit { without_the_partition() } else { fetch_answer(None) })
        };
        scripted(s, at, Some(&fetch), &list_counter)
    });
    let (got, _) = within(Duration::from_secs(60), move || start_at_latest(addr, Duration::from_secs(30)));
    assert_eq!(got.expect("retried until the partition is answered"), vec![(0, 10)]);
    assert_eq!((left_out.load(Ordering::SeqCst), list_left_out.load(Ordering::SeqCst)), (0, 0));
}

#[test]
fn a_partition_never_answered_ends_with_the_retry_period_naming_it() {
    let addr = fake(|s, at| scripted(s, at, Some(&|| Some(without_the_partition())), &AtomicUsize::new(0)));
    let (got, took) = within(Duration::from_secs(60), move || start_at_latest(addr, Duration::from_secs(2)));
    let err = got.expect_err("never answered");
    assert!(matches!(&err, KafkaError::RetriesExhausted { attempts, .. } if *attempts > 1), "{err}");
    assert!(err.to_string().ends_with(": the Fetch answer holds no t-0, although it was asked for"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn ctrl_c_stops_dstream_run_waiting_for_a_trickling_broker() {
    let (asked, asked_rx) = mpsc::channel();
    let asked = std::sync::Mutex::new(asked);
    let addr = fake(move |mut s, _| {
        if read_request(&mut s).is_some() {
            let _ = asked.lock().unwrap().send(());
            trickle(&mut s, None);
        }
    });
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(["run", "--brokers", &addr, "--batches", "1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start dstream");
    asked_rx.recv_timeout(Duration::from_secs(30)).expect("dstream asks the broker for its versions");
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // One Ctrl-C is acted on: dstream stops long before the 30 s request deadline.
    let status = common::exit_within(&mut child, Duration::from_secs(15));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("dstream: interrupted while waiting for {addr} to answer ApiVersions\n"));
}
