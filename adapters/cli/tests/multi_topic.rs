//! Several topics in one streaming context, against a real tansu: one direct stream over two topics (Spark's
//! `Subscribe(topics)`), two direct streams in one program, each record carrying its own topic and partition,
//! exactly-once state across a stop and a resume from the checkpoint, a fingerprint that names the topics, and a
//! recording of a two-topic run replayed through the same program.

mod common;

use common::{broker, generate, lab_messages, Buf};
use dstream_adapters::kafka::direct::StartingOffsets;
use dstream_adapters::streaming::{BatchCompleted, KafkaParams, KafkaUtils, StreamingContext, StreamingListener};
use dstream_core::{Duration, State, StateError, StateSpec};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Stops the context once `at` records were seen in completed batches.
struct StopAt(dstream_adapters::streaming::StopHandle, usize, usize);

impl StreamingListener for StopAt {
    fn on_batch_completed(&mut self, b: &BatchCompleted<'_>) {
        self.2 += b.records;
        if self.2 >= self.1 {
            self.0.stop();
        }
    }
}

fn params(addr: &str) -> KafkaParams {
    KafkaParams::new(addr).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(2000)
}

/// A running sum per key.
fn sum(_k: &String, v: Option<i64>, s: &mut State<'_, i64>) -> Result<i64, StateError> {
    let n = s.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
    s.update(n)?;
    Ok(n)
}

/// `key,value` of a lab message.
fn pair(value: &[u8]) -> (String, i64) {
    let text = std::str::from_utf8(value).unwrap();
    let (k, v) = text.rsplit_once(',').unwrap();
    (k.to_string(), v.trim().parse().unwrap())
}

/// The sum per key of what `dstream generate --seed SEED --count COUNT --partitions P` wrote, by the test's own
/// reading of the messages (not dstream's).
fn expected_sums(seed: u64, count: u64, partitions: u64, prefix: &str) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for m in lab_messages(seed, count, partitions).iter().flatten() {
        let (k, v) = pair(m);
        *sums.entry(format!("{prefix}{k}")).or_insert(0) += v;
    }
    sums
}

#[test]
fn one_stream_of_two_topics_sees_each_record_once_with_its_topic_and_resumes_exactly() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "left", 900, 5, &["--partitions", "2"]);
    generate(b.addr(), "right", 700, 6, &["--partitions", "3"]);
    let dir = tempfile::tempdir().unwrap();
    // The program, as built at every start: one stream of both topics, summed per (topic, key); each record's
    // partition is checked against its topic's partition count.
    let run = |stop_at: Option<usize>| {
        let mut ssc = StreamingContext::new(Duration::from_millis(100));
        ssc.status_lines(false).print_to(Buf::default()).checkpoint(dir.path()).app_name("two-topics");
        let msgs = KafkaUtils::create_direct_stream_of(&mut ssc, params(b.addr()), &["left", "right"]);
        let bad = Rc::new(RefCell::new(Vec::new()));
        let bad_seen = bad.clone();
        let keyed = msgs.map(move |r| {
            let partitions = if r.topic == "left" { 2 } else { 3 };
            if !(0..partitions).contains(&r.partition) || !(r.topic == "left" || r.topic == "right") {
                bad_seen.borrow_mut().push((r.topic.to_string(), r.partition));
            }
            let (k, v) = pair(r.value);
            (format!("{}/{k}", r.topic), v)
        });
        let sums = keyed.map_with_state(StateSpec::function(sum));
        sums.print(2);
        if let Some(n) = stop_at {
            let h = ssc.stop_handle();
            ssc.add_listener(StopAt(h, n, 0));
        } else {
            ssc.stop_after_batches(4);
        }
        ssc.start().unwrap();
        ssc.await_termination().unwrap();
        let state: BTreeMap<String, i64> = sums.with_state(|m| m.iter().map(|(k, n, _)| (k.clone(), *n)).collect());
        let records = ssc.summary().records;
        assert!(bad.borrow().is_empty(), "records with a wrong topic or partition: {:?}", bad.borrow());
        (state, records)
    };
    let (_, first) = run(Some(600));
    assert!((600..1600).contains(&first), "stopped part way: {first}");
    let (state, second) = run(None);
    assert_eq!(first + second, 1600, "every record of both topics read once across the two runs");
    let mut expected = expected_sums(5, 900, 2, "left/");
    expected.extend(expected_sums(6, 700, 3, "right/"));
    assert_eq!(state, expected, "the state after the resume is that of one uninterrupted read of both topics");

    // `dstream checkpoint show` names each topic, and each next offset's topic.
    let shown = common::dstream(&["checkpoint", "show", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(shown.status.success(), "{stderr}");
    assert!(stderr.contains("job two-topics on topics left (2 partitions"), "{stderr}");
    assert!(stderr.contains("right (3 partitions"), "{stderr}");
    assert!(stderr.contains("next offsets left/0:450 left/1:450 right/0:234 right/1:233 right/2:233,"), "{stderr}");
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(stdout.starts_with("OPERATOR\tKIND\tKEYS\tBYTES\nmap_with_state#0\tmap_with_state\t"), "{stdout}");

    // The same program reading a third topic is another input: refused, naming the topics.
    generate(b.addr(), "third", 10, 7, &[]);
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    ssc.status_lines(false).checkpoint(dir.path()).app_name("two-topics");
    let msgs = KafkaUtils::create_direct_stream_of(&mut ssc, params(b.addr()), &["left", "right", "third"]);
    msgs.map(|r| (r.topic.to_string(), 1i64)).map_with_state(StateSpec::function(sum)).print(2);
    let err = ssc.start().unwrap_err().to_string();
    assert!(err.contains(r#"topic: checkpoint has "left,right", this run has "left,right,third""#), "{err}");
}

#[test]
fn two_direct_streams_each_read_their_own_topic_and_a_recording_replays_byte_identical() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "clicks", 500, 11, &["--partitions", "2"]);
    generate(b.addr(), "views", 800, 12, &["--partitions", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("run.dstrec");
    // Two streams, each summed on its own; their union counts records per topic.
    let program = |ssc: &mut StreamingContext, addr: &str| {
        let clicks = KafkaUtils::create_direct_stream(ssc, params(addr), "clicks");
        let views = KafkaUtils::create_direct_stream(ssc, params(addr), "views");
        let c = clicks.map(|r| (format!("{}:{}", r.topic, pair(r.value).0), pair(r.value).1));
        let v = views.map(|r| (format!("{}:{}", r.topic, pair(r.value).0), pair(r.value).1));
        let c_sums = c.map_with_state(StateSpec::function(sum));
        let v_sums = v.map_with_state(StateSpec::function(sum));
        c_sums.print(3);
        v_sums.print(3);
        let per_topic = clicks.map(|r| (r.topic.to_string(), 1i64)).union(&views.map(|r| (r.topic.to_string(), 1i64)));
        per_topic.reduce_by_key(|a, b| a + b).print(2);
        // A per-batch join of the two topics' keyed records (Spark's `join` of two direct streams).
        let by_key = |r: dstream_core::graph::ConsumerRecord<'_>| (pair(r.value).0, r.offset);
        clicks.map(by_key).join(&views.map(by_key)).count().print(1);
        (c_sums, v_sums)
    };
    let out = Buf::default();
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    ssc.status_lines(false).print_to(out.clone()).record_to(&recording).stop_after_batches(4);
    let (c_sums, v_sums) = program(&mut ssc, b.addr());
    ssc.start().unwrap();
    ssc.await_termination().unwrap();
    let clicks: BTreeMap<String, i64> =
        c_sums.with_state(|m| m.iter().map(|(k, n, _)| (k.replace("clicks:", ""), *n)).collect());
    let views: BTreeMap<String, i64> =
        v_sums.with_state(|m| m.iter().map(|(k, n, _)| (k.replace("views:", ""), *n)).collect());
    assert!(c_sums.with_state(|m| m.iter().all(|(k, _, _)| k.starts_with("clicks:"))), "clicks sees clicks only");
    assert!(v_sums.with_state(|m| m.iter().all(|(k, _, _)| k.starts_with("views:"))), "views sees views only");
    assert_eq!(clicks, expected_sums(11, 500, 2, ""));
    assert_eq!(views, expected_sums(12, 800, 2, ""));
    // The union's per-batch counts add up to each topic's records.
    let live = out.text();
    let printed = |topic: &str| -> i64 {
        let prefix = format!("({topic},");
        live.lines().filter_map(|l| l.strip_prefix(&prefix)?.strip_suffix(')')?.parse::<i64>().ok()).sum()
    };
    assert_eq!((printed("clicks"), printed("views")), (500, 800), "{live}");

    // Replayed through the same program: the same output, byte for byte.
    let replayed = Buf::default();
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    ssc.status_lines(false).print_to(replayed.clone()).replay_from(&recording);
    program(&mut ssc, b.addr());
    ssc.start().unwrap();
    ssc.await_termination().unwrap();
    assert_eq!(replayed.text(), live);
}

/// `GET path` of the web UI at `addr`: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect to the UI");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).expect("read the answer");
    let text = String::from_utf8(all).unwrap();
    text.split_once("\r\n\r\n").expect("a complete head").1.to_string()
}

#[test]
fn the_web_ui_names_each_topic_and_its_own_partitions() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "alpha", 300, 21, &["--partitions", "2"]);
    generate(b.addr(), "beta", 300, 22, &["--partitions", "3"]);
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    ssc.status_lines(false).print_to(Buf::default()).ui("127.0.0.1:0", 100);
    let msgs = KafkaUtils::create_direct_stream_of(&mut ssc, params(b.addr()), &["alpha", "beta"]);
    msgs.map(|r| r.offset).count().print(1);
    ssc.start().unwrap();
    let addr = ssc.ui_addr().expect("the UI runs").to_string();
    // Every record is in the first batch (200 per partition per batch at most); a few batches later the UI shows
    // them all.
    assert!(!ssc.await_termination_or_timeout(std::time::Duration::from_millis(800)).unwrap());
    let state: serde_json::Value = serde_json::from_str(&http_get(&addr, "/api/v1/state")).unwrap();
    assert_eq!(state["topic"], "alpha,beta");
    let mut parts: Vec<(String, i64, i64)> = state["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_string(),
                p["partition"].as_i64().unwrap(),
                p["nextOffset"].as_i64().unwrap(),
            )
        })
        .collect();
    parts.sort();
    let want: Vec<(String, i64, i64)> = vec![
        ("alpha".into(), 0, 150),
        ("alpha".into(), 1, 150),
        ("beta".into(), 0, 100),
        ("beta".into(), 1, 100),
        ("beta".into(), 2, 100),
    ];
    assert_eq!(parts, want, "{state}");
    let metrics = http_get(&addr, "/metrics");
    for (topic, partition, next) in &want {
        let line = format!("dstream_partition_next_offset{{topic=\"{topic}\",partition=\"{partition}\"}} {next}");
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    ssc.stop(true).unwrap();
}

#[test]
fn dstream_run_reads_several_topics_as_one_stream_and_resumes_them() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg1", 400, 41, &["--partitions", "2"]);
    generate(b.addr(), "avg2", 300, 42, &["--partitions", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let run = |batches: &str| {
        common::dstream(&[
            "run",
            "--brokers",
            b.addr(),
            "--topic",
            "avg1,avg2",
            "--starting-offsets",
            "earliest",
            "--batch-interval",
            "100ms",
            "--batches",
            batches,
            "--max-rate-per-partition",
            "1000",
            "--print",
            "1000",
            "--checkpoint",
            ck.to_str().unwrap(),
        ])
    };
    // 100 records per partition per batch: two batches read 600 of 700, the resumed run the rest.
    let first = run("2");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = run("3");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    let counts: u64 = common::batch_record_counts(&String::from_utf8_lossy(&first.stderr)).iter().sum::<u64>()
        + common::batch_record_counts(&stderr).iter().sum::<u64>();
    assert_eq!(counts, 700, "every record of both topics once");
    // The last averages printed are those of every message of both topics (keys print when updated).
    let mut printed = common::final_averages(&common::ok_stdout(&first));
    printed.extend(common::final_averages(&common::ok_stdout(&second)));
    let all: Vec<Vec<u8>> = lab_messages(41, 400, 2).into_iter().chain(lab_messages(42, 300, 1)).flatten().collect();
    let model = common::model_of(&all);
    let want: BTreeMap<String, f64> = model.averages().into_iter().collect();
    assert_eq!(printed, want);
    // Several topics without --brokers: one clear line.
    let out = common::dstream(&["run", "--topic", "a,b", "--batches", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading several topics needs --brokers"));
}
