//! The web UI of a live `dstream run` on tansu: the JSON API and `/metrics` (parsed by Prometheus's own Python
//! parser) agree with the status lines and with what was produced, and a real Chromium (driven by Playwright's
//! core package from npm) renders the page, keeps it updated and shows a batch's offset ranges.

mod common;

use common::*;
use dstream_adapters::kafka::records::{encode_batch, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Partitions of the test topic; the last gets no records (its empty ranges are hidden on a batch's page).
const PARTITIONS: i32 = 3;
/// Records produced to partitions 0 and 1.
const PRODUCED: [usize; 2] = [600, 400];
/// Offsets of partition 1 holding malformed values, and the values.
const MALFORMED: [(i64, &str); 3] = [(17, "no comma"), (150, "b,not a number"), (399, ",5")];

/// Creates `avg` with 3 partitions and produces [`PRODUCED`] records, [`MALFORMED`] among them.
fn produce(addr: &str) {
    let mut c = Client::connect(&[addr.to_string()], ClientConfig::default()).unwrap();
    c.create_topic("avg", PARTITIONS, 1).unwrap();
    for (p, &n) in PRODUCED.iter().enumerate() {
        let values: Vec<Vec<u8>> = (0..n as i64)
            .map(|o| match MALFORMED.iter().find(|m| p == 1 && m.0 == o) {
                Some(m) => m.1.as_bytes().to_vec(),
                None => format!("{},{}", (b'a' + (o % 26) as u8) as char, o % 26).into_bytes(),
            })
            .collect();
        for chunk in values.chunks(100) {
            let refs: Vec<&[u8]> = chunk.iter().map(|v| v.as_slice()).collect();
            c.produce("avg", p as i32, encode_batch(&refs, 1000, Codec::None).unwrap(), Acks::All).unwrap();
        }
    }
}

/// A `dstream run` with its UI on a free loopback port; its stderr is collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    ui: String,
}

impl Running {
    fn start(broker: &str, extra: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dstream"))
            .args(["run", "--brokers", broker, "--starting-offsets", "earliest", "--batch-interval", "200ms"])
            .args(["--max-rate-per-partition", "500", "--ui", "127.0.0.1:0", "--print", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dstream");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("dstream: web UI at http://") {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
                let mut s = collected.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let ui = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ui) => ui,
            Err(_) => {
                let _ = child.kill();
                panic!("no web UI line within 60 s: {}", stderr.lock().unwrap());
            }
        };
        Running { child, stderr, ui }
    }

    fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        http_get(&self.ui, path)
    }

    fn json(&self, path: &str) -> Value {
        let (status, _, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)))
    }

    /// Polls `/api/v1/state` until `done` holds, at most `within`.
    fn wait_for(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let state = self.json("/api/v1/state");
            if done(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "not reached within {within:?}: {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it with Ctrl-C (SIGINT); its whole stderr.
    fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = exit_within(&mut self.child, Duration::from_secs(30));
        assert!(status.success(), "{status}: {}", self.stderr.lock().unwrap());
        // The reader thread sees the end of the pipe once the process is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stderr.lock().unwrap().contains("dstream: stopped after") {
            assert!(Instant::now() < deadline, "no final line: {}", self.stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = self.stderr.lock().unwrap().clone();
        s
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A GET on a fresh connection: status, head and body.
fn http_get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut c = TcpStream::connect(addr).expect("connect to the UI");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).expect("read the answer");
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("Content-Length").parse().unwrap();
    let body = all[end + 4..].to_vec();
    assert_eq!(body.len(), length, "{head}");
    (status, head, body)
}

/// True if an HTTP server answers a GET of `/api/v1/state` at `addr` (within 2 s).
fn answers_as_ui(addr: &str) -> bool {
    let Ok(mut c) = TcpStream::connect(addr) else { return false };
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if write!(c, "GET /api/v1/state HTTP/1.1\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// One status line: `dstream: batch T ms: R records, M malformed, processing P ms, scheduling delay S ms, lag L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Status {
    time: i64,
    records: u64,
    malformed: u64,
    processing: i64,
    scheduling: i64,
    lag: i64,
}

fn status_lines(stderr: &str) -> Vec<Status> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("dstream: batch "))
        .map(|l| {
            let n: Vec<i64> = l
                .split(|c: char| !c.is_ascii_digit() && c != '-')
                .filter(|w| !w.is_empty() && *w != "-")
                .map(|w| w.parse().unwrap())
                .collect();
            assert_eq!(n.len(), 6, "{l}");
            Status {
                time: n[0],
                records: n[1] as u64,
                malformed: n[2] as u64,
                processing: n[3],
                scheduling: n[4],
                lag: n[5],
            }
        })
        .collect()
}

/// The same batch as the API lists it.
fn status_of(b: &Value) -> Status {
    Status {
        time: b["batchTime"].as_i64().unwrap(),
        records: b["inputSize"].as_u64().unwrap(),
        malformed: b["malformedRecords"].as_u64().unwrap(),
        processing: b["processingTime"].as_i64().unwrap(),
        scheduling: b["schedulingDelay"].as_i64().unwrap(),
        lag: b["lag"].as_i64().unwrap(),
    }
}

/// A folder with the PyPI package `package` installed (cached in ~/.cache/dstream; installed on first use).
fn pip_lib(package: &str, module: &str) -> PathBuf {
    let dir = dstream_adapters::broker::cache_dir().unwrap().parent().unwrap().join(format!("pylib-{package}"));
    if dir.join(module).is_dir() {
        return dir;
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
        .arg(&tmp)
        .arg(package)
        .status()
        .expect("run pip");
    assert!(status.success(), "pip install {package} failed");
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(dir.join(module).is_dir());
    dir
}

/// `text` parsed by `prometheus_client.parser.text_string_to_metric_families`: per family (name, type, samples
/// as (name, labels, value)).
fn parse_metrics(text: &str) -> Value {
    let lib = pip_lib("prometheus-client", "prometheus_client");
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", lib)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused /metrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of sample `name` with `labels` (a subset).
fn sample(families: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.as_array().unwrap().iter().flat_map(|f| f["samples"].as_array().unwrap()).find_map(|s| {
        let matches = s[0] == name && labels.iter().all(|(k, v)| s[1][k] == *v);
        matches.then(|| s[2].as_f64().unwrap())
    })
}

fn total(lines: &[Status], f: impl Fn(&Status) -> u64) -> u64 {
    lines.iter().map(f).sum()
}

#[test]
fn api_and_metrics_agree_with_the_status_lines_and_the_log() {
    let Some(b) = broker() else { return };
    produce(b.addr());
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().to_str().unwrap();
    // Every checkpoint is kept, so that the files the answers name are still there when they are checked.
    let run = Running::start(b.addr(), &["--checkpoint", checkpoints, "--keep-checkpoints", "1000"]);
    let all: u64 = PRODUCED.iter().sum::<usize>() as u64;
    // Early, while partitions 0 and 1 still lag: /metrics names each partition's lag after the last batch.
    run.wait_for(Duration::from_secs(60), |s| s["numTotalCompletedBatches"].as_u64() >= Some(1));
    let early = parse_metrics(&String::from_utf8(run.get("/metrics").2).unwrap());
    // 100 records per partition per batch: everything within 6 batches; then a few empty ones.
    let state = run.wait_for(Duration::from_secs(60), |s| {
        s["numProcessedRecords"].as_u64() == Some(all)
            && s["numTotalCompletedBatches"].as_u64() >= Some(9)
            // The newest checkpoint is written by a background thread: its size is shown once it is there.
            && !s["checkpoint"]["lastWrite"].is_null()
    });
    let batches = run.json("/api/v1/batches");
    let (status, head, metrics) = run.get("/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let metrics = String::from_utf8(metrics).unwrap();
    let families = parse_metrics(&metrics);
    let mut details = vec![];
    for b in batches.as_array().unwrap() {
        details.push(run.json(&format!("/api/v1/batches/{}", b["batchTime"])));
    }
    let (missing, _, body) = run.get("/api/v1/batches/12");
    assert_eq!(missing, 404, "{}", String::from_utf8_lossy(&body));
    let stderr = run.stop();
    let lines = status_lines(&stderr);
    let show = dstream(&["checkpoint", "show", checkpoints]);
    let keys = checkpoint_rows(&ok_stdout(&show)).len();

    // The state view: as many batches and records as the first N status lines, and as produced.
    let n = state["numTotalCompletedBatches"].as_u64().unwrap() as usize;
    assert!(lines.len() >= n, "{stderr}");
    let first = &lines[..n];
    assert_eq!(state["numProcessedRecords"].as_u64().unwrap(), total(first, |s| s.records));
    assert_eq!(state["numMalformedRecords"].as_u64().unwrap(), total(first, |s| s.malformed));
    assert_eq!(state["numMalformedRecords"].as_u64().unwrap(), MALFORMED.len() as u64);
    assert_eq!(state["batchDuration"], 200);
    assert_eq!(state["waitingBatches"].as_array().unwrap().len() as u64, state["numWaitingBatches"].as_u64().unwrap());
    assert_eq!(state["topic"], "avg");
    let partitions: Vec<(i64, i64, u64)> = state["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_i64().unwrap(), p["nextOffset"].as_i64().unwrap(), p["records"].as_u64().unwrap()))
        .collect();
    assert_eq!(partitions, vec![(0, 600, 600), (1, 400, 400), (2, 0, 0)]);
    let lags: Vec<Value> = state["partitions"].as_array().unwrap().iter().map(|p| p["lag"].clone()).collect();
    assert_eq!(lags, vec![0, 0, 0], "everything consumed: {state}");
    assert_eq!(state["state"][0]["keys"], 26, "{state}");
    assert_eq!(keys, 26);
    // Checkpoints: one per batch (the default), the last of the newest batch; its file as the store has it.
    let c = &state["checkpoint"];
    assert_eq!(c["saved"].as_u64().unwrap() as usize, n, "{c}");
    assert_eq!(c["lastBatchTime"].as_i64(), Some(lines[n - 1].time), "{c}");
    let file = PathBuf::from(c["lastPath"].as_str().unwrap());
    assert_eq!(file.parent().unwrap(), dir.path());
    assert!(c["lastBatchPathMs"].as_f64().unwrap() >= 0.0, "{c}");
    // Written in the background: at most the newest two are still on their way (one written, one queued); the
    // last written is its batch's file, its size the file's, its write timed and dated within the run.
    let written = c["written"].as_u64().unwrap() as usize;
    assert!(written <= n && written + 2 >= n, "{c}");
    let w = &c["lastWrite"];
    let wfile = PathBuf::from(w["path"].as_str().unwrap());
    let wtime = w["batchTime"].as_i64().unwrap();
    assert_eq!(wfile, dir.path().join(dstream_adapters::checkpoint::file_name(dstream_core::Time(wtime))));
    assert!(wtime <= lines[n - 1].time && wtime >= lines[n.saturating_sub(3)].time, "{c}");
    assert_eq!(w["sizeBytes"].as_u64(), Some(std::fs::metadata(&wfile).unwrap().len()), "{c}");
    assert!(w["durationMs"].as_f64().unwrap() > 0.0, "{c}");
    let at = w["writtenAt"].as_i64().unwrap();
    assert!(at >= state["startTime"].as_i64().unwrap() && at <= wall_ms(), "{c}");
    assert!(w["ageMs"].as_i64().unwrap() >= 0, "{c}");
    assert_eq!((c["failures"].as_u64(), &c["lastFailure"], &c["restore"]), (Some(0), &Value::Null, &Value::Null));
    // State bytes: the operator's state as that checkpoint file holds it.
    let stored = |file: &std::path::Path| -> (String, u64) {
        let cp = dstream_adapters::checkpoint::read_file::<dstream_adapters::checkpoint::JobState>(file).unwrap();
        assert_eq!(cp.state.len(), 1);
        (cp.state[0].id.clone(), cp.state[0].bytes.len() as u64)
    };
    let (id, bytes) = stored(&file);
    assert_eq!(state["state"][0]["operator"], id.as_str());
    assert!(bytes > 26, "26 keys and their sums take more than a byte each: {bytes}");
    assert_eq!(state["state"][0]["bytes"].as_u64(), Some(bytes), "{state}");
    assert_eq!(state["state"][0]["bytesAtBatch"], c["lastBatchTime"], "{state}");

    // The batch list: newest first, each exactly its status line.
    let listed: Vec<Status> = batches.as_array().unwrap().iter().map(status_of).collect();
    assert!(listed.len() >= n, "{batches}");
    let mut expected: Vec<Status> = lines[..listed.len()].to_vec();
    expected.reverse();
    assert_eq!(listed, expected);

    // Batch pages: ranges per partition tile each partition's log from 0, and each batch's records add up; the
    // malformed records are exactly those produced, at their positions.
    // Each range's lag is what the log (all produced before the run) held beyond it, and they add up to the
    // batch's status line.
    let mut until = [0i64; PARTITIONS as usize];
    let log_end = [PRODUCED[0] as i64, PRODUCED[1] as i64, 0];
    let mut malformed = vec![];
    for d in details.iter().rev() {
        let ranges = d["offsetRanges"].as_array().unwrap();
        assert_eq!(ranges.len(), PARTITIONS as usize, "{d}");
        let mut count = 0;
        let mut lag = 0;
        for r in ranges {
            let p = r["partition"].as_u64().unwrap() as usize;
            assert_eq!(r["topic"], "avg");
            assert_eq!(r["fromOffset"].as_i64().unwrap(), until[p], "{d}");
            until[p] = r["untilOffset"].as_i64().unwrap();
            assert_eq!(r["count"].as_i64().unwrap(), until[p] - r["fromOffset"].as_i64().unwrap());
            assert_eq!(r["lag"].as_i64(), Some(log_end[p] - until[p]), "{d}");
            count += r["count"].as_u64().unwrap();
            lag += r["lag"].as_i64().unwrap();
        }
        assert_eq!(count, d["inputSize"].as_u64().unwrap(), "{d}");
        let t = d["batchTime"].as_i64().unwrap();
        assert_eq!(Some(lag), lines.iter().find(|s| s.time == t).map(|s| s.lag), "{d}");
        let by_partition: Vec<(i64, i64)> =
            ranges.iter().map(|r| (r["partition"].as_i64().unwrap(), r["lag"].as_i64().unwrap())).collect();
        assert_eq!(d["partitionLags"], serde_json::json!(by_partition), "{d}");
        // Its output operation: `print(1)`, Spark's header with the batch time first.
        let printed = d["printed"].as_str().unwrap();
        assert!(printed.contains(&format!("\nTime: {} ms\n", d["batchTime"])), "{d}");
        assert_eq!(d["printedBytes"].as_u64(), Some(printed.len() as u64));
        assert_eq!(d["printedTruncated"], false);
        for m in d["malformed"].as_array().unwrap() {
            assert!(!m["reason"].as_str().unwrap().is_empty());
            malformed.push((m["partition"].as_i64().unwrap(), m["offset"].as_i64().unwrap()));
        }
    }
    assert_eq!(until, [600, 400, 0]);
    assert_eq!(malformed, MALFORMED.iter().map(|m| (1, m.0)).collect::<Vec<_>>());

    // /metrics: the counters of the first N status lines, typed as Prometheus expects.
    let k = sample(&families, "dstream_streaming_completed_batches_total", &[]).unwrap() as usize;
    assert!(k >= n && lines.len() >= k, "{metrics}");
    let upto = &lines[..k];
    assert_eq!(sample(&families, "dstream_streaming_processed_records_total", &[]), Some(all as f64));
    assert_eq!(
        sample(&families, "dstream_streaming_processed_records_total", &[]),
        Some(total(upto, |s| s.records) as f64)
    );
    assert_eq!(
        sample(&families, "dstream_streaming_malformed_records_total", &[]),
        Some(total(upto, |s| s.malformed) as f64)
    );
    let last = upto.last().unwrap();
    assert_eq!(
        sample(&families, "dstream_streaming_last_completed_batch_processing_delay_seconds", &[]),
        Some(last.processing as f64 / 1000.0)
    );
    assert_eq!(
        sample(&families, "dstream_streaming_last_completed_batch_scheduling_delay_seconds", &[]),
        Some(last.scheduling as f64 / 1000.0)
    );
    assert_eq!(
        sample(&families, "dstream_streaming_last_completed_batch_total_delay_seconds", &[]),
        Some((last.processing + last.scheduling) as f64 / 1000.0)
    );
    assert_eq!(sample(&families, "dstream_streaming_last_completed_batch_records", &[]), Some(last.records as f64));
    assert_eq!(sample(&families, "dstream_streaming_batch_interval_seconds", &[]), Some(0.2));
    for (p, want) in [("0", 600.0), ("1", 400.0), ("2", 0.0)] {
        let labels = [("topic", "avg"), ("partition", p)];
        assert_eq!(sample(&families, "dstream_partition_records_total", &labels), Some(want), "{metrics}");
        assert_eq!(sample(&families, "dstream_partition_next_offset", &labels), Some(want), "{metrics}");
    }
    assert_eq!(sample(&families, "dstream_state_keys", &[("operator", "map_with_state#0")]), Some(26.0));
    // Lag per partition: none at the end; early on, what the log held beyond that batch's ranges.
    for p in ["0", "1", "2"] {
        let labels = [("topic", "avg"), ("partition", p)];
        assert_eq!(sample(&families, "dstream_partition_lag_records", &labels), Some(0.0), "{metrics}");
    }
    let k0 = sample(&early, "dstream_streaming_completed_batches_total", &[]).unwrap() as usize;
    let at = details.iter().find(|d| d["batchTime"].as_i64() == Some(lines[k0 - 1].time)).unwrap();
    let mut early_total = 0.0;
    for r in at["offsetRanges"].as_array().unwrap() {
        let p = r["partition"].as_u64().unwrap() as usize;
        let labels = [("topic", "avg"), ("partition", &*p.to_string())];
        let lag = sample(&early, "dstream_partition_lag_records", &labels);
        assert_eq!(lag, Some((log_end[p] - r["untilOffset"].as_i64().unwrap()) as f64), "{early}");
        early_total += lag.unwrap();
    }
    assert_eq!(early_total, lines[k0 - 1].lag as f64);
    assert_eq!(sample(&early, "dstream_streaming_lag_records", &[]), Some(early_total));
    assert_eq!(sample(&families, "dstream_checkpoints_saved_total", &[]), Some(k as f64));
    let written = sample(&families, "dstream_checkpoints_written_total", &[]).unwrap() as usize;
    assert!(written <= k && written + 2 >= k, "{metrics}");
    assert_eq!(sample(&families, "dstream_checkpoint_failures_total", &[]), Some(0.0));
    let wtime = sample(&families, "dstream_checkpoint_last_written_batch_time_seconds", &[]).unwrap();
    let wfile =
        dir.path().join(dstream_adapters::checkpoint::file_name(dstream_core::Time((wtime * 1000.0).round() as i64)));
    assert_eq!(
        sample(&families, "dstream_checkpoint_last_size_bytes", &[]),
        Some(std::fs::metadata(&wfile).unwrap().len() as f64)
    );
    assert!(sample(&families, "dstream_checkpoint_last_write_duration_seconds", &[]).unwrap() > 0.0);
    assert!(sample(&families, "dstream_checkpoint_last_write_age_seconds", &[]).unwrap() >= 0.0);
    assert_eq!(sample(&families, "dstream_checkpoint_restore_seconds", &[]), None, "a fresh start");
    assert_eq!(sample(&families, "dstream_checkpoint_last_batch_time_seconds", &[]), Some(last.time as f64 / 1000.0));
    let file = dir.path().join(dstream_adapters::checkpoint::file_name(dstream_core::Time(last.time)));
    let labels = [("operator", "map_with_state#0"), ("kind", "map_with_state")];
    assert_eq!(sample(&families, "dstream_state_bytes", &labels), Some(stored(&file).1 as f64), "{metrics}");
    let types: Vec<(&str, &str)> = families
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert!(types.contains(&("dstream_streaming_completed_batches", "counter")), "{types:?}");
    assert!(types.contains(&("dstream_streaming_waiting_batches", "gauge")), "{types:?}");
}

#[test]
fn bad_requests_get_clear_answers() {
    let Some(b) = broker() else { return };
    produce(b.addr());
    let run = Running::start(b.addr(), &[]);
    let (s, _, _) = run.get("/nope");
    assert_eq!(s, 404);
    let (s, _, _) = run.get("/api/v1/batches/abc");
    assert_eq!(s, 404);
    let mut c = TcpStream::connect(&run.ui).unwrap();
    write!(c, "GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let mut c = TcpStream::connect(&run.ui).unwrap();
    write!(c, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    // The page and its assets are served by the process itself.
    let (s, head, page) = run.get("/");
    assert_eq!(s, 200);
    assert!(head.contains("text/html"));
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("/static/app.js") && !page.contains("http://") && !page.contains("https://"));
    assert_eq!(run.get("/static/app.js").0, 200);
    assert_eq!(run.get("/static/style.css").0, 200);
    run.stop();
}

#[test]
fn a_non_loopback_address_is_refused_unless_asked() {
    let Some(b) = broker() else { return };
    produce(b.addr());
    let out = dstream(&["run", "--brokers", b.addr(), "--ui", "0.0.0.0:0", "--batches", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a loopback address"), "{err}");
}

#[test]
fn a_taken_port_falls_back_to_the_next() {
    let Some(b) = broker() else { return };
    produce(b.addr());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = dstream(&["run", "--brokers", b.addr(), "--ui", &format!("127.0.0.1:{port}"), "--batches", "1"]);
    ok_stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("dstream: web UI at http://127.0.0.1:")).expect("the UI line");
    let got: u16 = line.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(got, port, "{err}");
    let out = dstream(&["run", "--brokers", b.addr(), "--ui", "off", "--batches", "1"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("web UI"));
}

/// The Playwright core package used: the newest that still runs on Debian 12's Node.js 18.
const PLAYWRIGHT_CORE: &str = "playwright-core@1.57.0";

/// The folder of Playwright's core package from npm (no browser download: it drives the system Chromium),
/// installed on first use into ~/.cache/dstream.
fn playwright_core() -> PathBuf {
    let dir = dstream_adapters::broker::cache_dir().unwrap().parent().unwrap().join(PLAYWRIGHT_CORE.replace('@', "-"));
    if dir.join("node_modules/playwright-core/package.json").is_file() {
        return dir;
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let status = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(&tmp)
        .arg(PLAYWRIGHT_CORE)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .expect("run npm");
    assert!(status.success(), "npm install playwright-core failed");
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

/// Debian's Chromium; `.ci/run` installs it.
fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var_os("DSTREAM_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    assert!(path.is_file(), "{} is missing: apt-get install chromium (.ci/run does)", path.display());
    path
}

const BROWSER_SCRIPT: &str = r##"
const { chromium } = require(process.env.PLAYWRIGHT);
(async () => {
  const url = process.argv[1], shot = process.argv[2], batch = process.argv[3];
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelectorAll("#completed tbody tr").length >= 3, null, { timeout: 60000 });
  const rows = await page.$$eval("#completed tbody tr", (trs) => trs.map((tr) => ({
    time: Number(tr.dataset.time),
    records: tr.querySelector('[data-col="inputSize"]').textContent,
    href: tr.querySelector("a").getAttribute("href"),
  })));
  const header = {
    completed: await page.textContent("#completed-batches"),
    records: await page.textContent("#records"),
    interval: await page.textContent("#batch-interval"),
  };
  const charts = await page.$$eval("#charts svg.timeline polyline.line", (ls) => ls.map((l) => l.getAttribute("points").split(" ").length));
  // The state, partitions, active batches and checkpoint tables, with the API's state of the same poll.
  const tables = await page.evaluate(async () => {
    const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
    return {
      keys: text('#state tr[data-operator="map_with_state#0"] [data-col="keys"]'),
      bytes: text('#state tr[data-operator="map_with_state#0"] [data-col="bytes"]'),
      lags: [...document.querySelectorAll("#partitions tr[data-partition]")].map((tr) => tr.querySelector('[data-col="lag"]').textContent),
      active: document.querySelector("#active") != null,
      saved: text("#ck-saved"), restore: text("#ck-restore"), failures: text("#ck-failures"),
    };
  });
  const refLines = await page.$$eval("#charts svg.timeline line.ref", (ls) => ls.length);
  await page.screenshot({ path: shot, fullPage: true });
  // The page updates itself: more completed batches appear without a reload.
  const before = Number(await page.evaluate(() => document.body.dataset.completed));
  await page.waitForFunction((n) => Number(document.body.dataset.completed) > n, before, { timeout: 60000 });
  const after = Number(await page.evaluate(() => document.body.dataset.completed));
  await page.goto(new URL("/batches/" + batch, url).toString());
  await page.waitForFunction(() => document.body.dataset.loaded === "1", null, { timeout: 60000 });
  const ranges = await page.$$eval("#ranges tr[data-partition]", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  const hidden = await page.textContent("#hidden-ranges");
  const printed = await page.textContent("#printed");
  await browser.close();
  console.log(JSON.stringify({ errors, rows, header, charts, tables, refLines, before, after, ranges, hidden, printed }));
})().catch((e) => { console.error(e); process.exit(1); });
"##;

/// Runs `script` in node with Playwright's core package and Debian's Chromium, with `url` and `args` as its
/// arguments; its output, parsed.
fn browse(script: &str, url: &str, args: &[String]) -> Value {
    let chromium = chromium();
    let playwright = playwright_core();
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(url)
        .args(args)
        .env("PLAYWRIGHT", playwright.join("node_modules/playwright-core"))
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    assert!(out.status.success(), "the browser script failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const FAILED_SCRIPT: &str = r##"
const { chromium } = require(process.env.PLAYWRIGHT);
(async () => {
  const url = process.argv[1], batch = process.argv[2];
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelectorAll("#completed tbody tr").length >= 1, null, { timeout: 60000 });
  const row = `#completed tbody tr[data-time="${batch}"]`;
  const status = await page.textContent(row + ' [data-col="status"]');
  const error = await page.textContent(row + ' [data-col="error"]');
  const failure = await page.textContent("#failure");
  const failures = await page.textContent("#ck-failures");
  await page.goto(new URL("/batches/" + batch, url).toString());
  await page.waitForFunction(() => document.body.dataset.loaded === "1", null, { timeout: 60000 });
  const pageStatus = await page.textContent("#batch-status");
  const pageError = await page.textContent("#batch-error");
  await browser.close();
  console.log(JSON.stringify({ errors, status, error, failure, failures, pageStatus, pageError }));
})().catch((e) => { console.error(e); process.exit(1); });
"##;

#[test]
fn chromium_renders_the_page_and_a_batch() {
    let Some(b) = broker() else { return };
    // Installed first (on first use), so that the run's batches are not all done while npm works.
    chromium();
    playwright_core();
    produce(b.addr());
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(b.addr(), &["--checkpoint", dir.path().to_str().unwrap()]);
    run.wait_for(Duration::from_secs(60), |s| s["numTotalCompletedBatches"].as_u64() >= Some(3));
    // The oldest batch: records on partitions 0 and 1, none on 2.
    let oldest = run.json("/api/v1/batches").as_array().unwrap().last().unwrap()["batchTime"].as_i64().unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web_ui.png");
    let url = format!("http://{}/", run.ui);
    let seen = browse(BROWSER_SCRIPT, &url, &[shot.display().to_string(), oldest.to_string()]);
    let detail = run.json(&format!("/api/v1/batches/{oldest}"));
    let stderr = run.stop();
    let lines = status_lines(&stderr);
    eprintln!("screenshot: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    assert_eq!(seen["errors"], serde_json::json!([]), "console errors");
    assert_eq!(seen["header"]["interval"], "200 ms");
    // Every row the browser showed is its batch's status line (time and records).
    let rows = seen["rows"].as_array().unwrap();
    assert!(rows.len() >= 3);
    for r in rows {
        let t = r["time"].as_i64().unwrap();
        let line = lines.iter().find(|s| s.time == t).unwrap_or_else(|| panic!("no status line for {t}"));
        assert_eq!(r["records"].as_str().unwrap().replace(',', ""), line.records.to_string(), "{r}");
        assert_eq!(r["href"], format!("/batches/{t}"));
    }
    // The header's counts are those of as many status lines.
    let shown: usize = seen["header"]["completed"].as_str().unwrap().replace(',', "").parse().unwrap();
    let records: u64 = seen["header"]["records"].as_str().unwrap().replace(',', "").parse().unwrap();
    assert_eq!(records, total(&lines[..shown], |s| s.records));
    assert!(seen["after"].as_u64() > seen["before"].as_u64());
    // The tables: 26 keys from the first batch on, their bytes as a checkpoint holds them (all 26 keys in each),
    // a lag per partition, the active batches, checkpoints saved on a fresh start without failures.
    let t = &seen["tables"];
    assert_eq!(t["keys"], "26", "{t}");
    let bytes: u64 = t["bytes"].as_str().unwrap().replace(',', "").parse().unwrap_or_else(|_| panic!("{t}"));
    assert!(bytes > 26, "{t}");
    assert_eq!(t["lags"].as_array().unwrap().len(), 3, "{t}");
    assert_eq!(t["active"], true);
    assert!(t["saved"].as_str().unwrap().replace(',', "").parse::<u64>().unwrap() >= 3, "{t}");
    assert_eq!((t["restore"].as_str(), t["failures"].as_str()), (Some("no (fresh start)"), Some("0")), "{t}");
    // Five timelines (input rate, the three delays, lag), each a point per batch shown; the batch interval
    // drawn on processing time.
    let charts = seen["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 5);
    assert!(charts.iter().all(|c| c.as_u64() >= Some(3)), "{charts:?}");
    assert_eq!(seen["refLines"], 1);
    // The batch page: its non-empty ranges, as the API has them; the empty partition hidden.
    let want: Vec<Vec<String>> = detail["offsetRanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["count"].as_i64() > Some(0))
        .map(|r| {
            ["topic", "partition", "fromOffset", "untilOffset", "count", "lag"]
                .iter()
                .map(|k| r[k].to_string().trim_matches('"').to_string())
                .collect()
        })
        .collect();
    let got: Vec<Vec<String>> = serde_json::from_value(seen["ranges"].clone()).unwrap();
    assert_eq!(got, want);
    assert!(got.len() == 2 && got.iter().all(|r| r[1] != "2"), "{got:?}");
    assert_eq!(seen["hidden"], "1 empty range(s) hidden");
    assert_eq!(seen["printed"], detail["printed"]);
}

const TOPICS_SCRIPT: &str = r##"
const { chromium } = require(process.env.PLAYWRIGHT);
(async () => {
  const url = process.argv[1], batch = process.argv[2];
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelectorAll("#partitions tr[data-partition]").length >= 5, null, { timeout: 60000 });
  const partitions = await page.$$eval("#partitions tr[data-partition]", (trs) => trs.map((tr) => [tr.dataset.partition, tr.children[0].textContent]));
  await page.goto(new URL("/batches/" + batch, url).toString());
  await page.waitForFunction(() => document.body.dataset.loaded === "1", null, { timeout: 60000 });
  const ranges = await page.$$eval("#ranges tr[data-partition]", (trs) => trs.map((tr) => [tr.children[0].textContent, tr.children[1].textContent]));
  await browser.close();
  console.log(JSON.stringify({ errors, partitions, ranges }));
})().catch((e) => { console.error(e); process.exit(1); });
"##;

#[test]
fn chromium_names_each_topic_of_a_run_of_two() {
    let Some(b) = broker() else { return };
    chromium();
    playwright_core();
    for (topic, partitions) in [("alpha", "2"), ("beta", "3")] {
        let args = ["generate", "--brokers", b.addr(), "--topic", topic, "--rate", "0", "--count", "300"];
        ok_stdout(&dstream(&[&args[..], &["--partitions", partitions]].concat()));
    }
    let run = Running::start(b.addr(), &["--topic", "alpha,beta"]);
    run.wait_for(Duration::from_secs(60), |s| s["numTotalCompletedBatches"].as_u64() >= Some(2));
    let oldest = run.json("/api/v1/batches").as_array().unwrap().last().unwrap()["batchTime"].as_i64().unwrap();
    let seen = browse(TOPICS_SCRIPT, &format!("http://{}/", run.ui), &[oldest.to_string()]);
    run.stop();
    assert_eq!(seen["errors"], serde_json::json!([]), "console errors");
    // The partitions table: each topic's own partitions, named topic/partition.
    let names = ["alpha/0", "alpha/1", "beta/0", "beta/1", "beta/2"];
    let want: Vec<Vec<String>> = names.iter().map(|n| vec![n.to_string(), n.to_string()]).collect();
    let got: Vec<Vec<String>> = serde_json::from_value(seen["partitions"].clone()).unwrap();
    assert_eq!(got, want);
    // The first batch's ranges (every partition has records in it): topic and its own partition number.
    let got: Vec<Vec<String>> = serde_json::from_value(seen["ranges"].clone()).unwrap();
    let want: Vec<Vec<String>> = names.iter().map(|n| n.split('/').map(str::to_string).collect()).collect();
    assert_eq!(got, want);
}

/// A process's resident memory in KiB, threads and open files, from /proc.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    let rss = rss.trim().trim_end_matches(" kB").trim().parse().unwrap();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss, threads, files)
}

/// Connections to `port` that process `pid` has accepted (ESTABLISHED, its socket among its open files).
fn accepted(pid: u32, port: u16) -> usize {
    let owned: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[1].ends_with(&suffix) && f[3] == "01" && owned.contains(f[9])
        })
        .count()
}

/// Sends a request head a byte at a time, every 100 ms, until the server closes; how long that took.
fn slowloris(addr: &str) -> Duration {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let start = Instant::now();
    let _ = c.write_all(b"GET / HTTP/1.1\r\nX-Slow: ");
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(30) {
        if c.write_all(b"a").is_err() {
            return start.elapsed();
        }
        match c.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return start.elapsed(),
        }
    }
    panic!("a slow client was served for 30 s");
}

#[test]
fn hostile_clients_neither_stall_batches_nor_grow_memory() {
    let Some(b) = broker() else { return };
    // A thousand connections need more than the common soft limit of 1024 open files.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur = limit.rlim_max.min(8192);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    produce(b.addr());
    let run = Running::start(b.addr(), &[]);
    run.wait_for(Duration::from_secs(60), |s| s["numTotalCompletedBatches"].as_u64() >= Some(3));
    let pid = run.child.id();
    let before = footprint(pid);
    let batches_before = status_lines(&run.stderr.lock().unwrap()).len();

    // Slow headers, then (once the server holds them) a huge request line and a thousand idle connections.
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let ui = run.ui.clone();
            std::thread::spawn(move || slowloris(&ui))
        })
        .collect();
    let port: u16 = run.ui.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted(pid, port) < 8 {
        assert!(Instant::now() < deadline, "the slow clients were not accepted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let huge = {
        let ui = run.ui.clone();
        std::thread::spawn(move || {
            let mut c = TcpStream::connect(&ui).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(1 << 20));
            let _ = c.write_all(line.as_bytes());
            let mut answer = Vec::new();
            let _ = c.read_to_end(&mut answer);
            answer
        })
    };
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(&run.ui).unwrap()).collect();
    let during = footprint(pid);
    let took: Vec<Duration> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    let answer = huge.join().unwrap();
    let mid = footprint(pid);
    drop(idle);

    // The UI answers again once the attackers are gone.
    run.wait_for(Duration::from_secs(30), |_| true);
    let after = footprint(pid);
    let stderr = run.stop();
    let lines = status_lines(&stderr);

    // Slow clients are cut off by the head's deadline (5 s from being accepted), not served byte by byte.
    assert!(took.iter().all(|t| *t > Duration::from_secs(4) && *t < Duration::from_secs(10)), "{took:?}");
    // Once sent, the huge request line is refused (the connection may also be reset mid-send).
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // Batches went on as usual meanwhile: on the 200 ms grid, with small scheduling delays.
    let attack = &lines[batches_before..];
    assert!(attack.len() >= 15, "{} batches during the attack: {stderr}", attack.len());
    let worst = attack.iter().map(|s| s.scheduling).max().unwrap();
    assert!(worst < 2000, "scheduling delay {worst} ms during the attack");
    // Memory, threads and open files stay bounded: the UI's threads are fixed and idle connections beyond its
    // queue are closed at once.
    for (rss, threads, files) in [during, mid, after] {
        assert!(rss < before.0 + 20 * 1024, "RSS {} kB -> {rss} kB", before.0);
        assert_eq!(threads, before.1, "threads");
        assert!(files <= before.2 + 64 + 4 + 8, "open files {} -> {files}", before.2);
    }
    eprintln!("footprint (RSS kB, threads, files): before {before:?}, during {during:?}, after {after:?}; slow clients cut after {took:?}; {} batches during the attack, worst scheduling delay {worst} ms", attack.len());
}

#[test]
fn a_streaming_context_serves_the_ui_when_asked() {
    use dstream_adapters::kafka::direct::StartingOffsets;
    use dstream_adapters::streaming::{KafkaParams, KafkaUtils, StreamingContext};
    let Some(b) = broker() else { return };
    produce(b.addr());
    let params = KafkaParams::new(b.addr()).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(500);
    let mut ssc = StreamingContext::new(dstream_core::Duration::from_millis(200));
    let values = KafkaUtils::create_direct_stream(&mut ssc, params, "avg");
    values.map(|r| r.value.len() as i64).print(1);
    ssc.print_to(std::io::sink()).status_lines(false).stop_after_batches(5);
    ssc.start().unwrap();
    assert!(ssc.ui_addr().is_none(), "the UI is off unless asked for");
    ssc.stop(false).unwrap();

    let mut ssc = StreamingContext::new(dstream_core::Duration::from_millis(200));
    let params = KafkaParams::new(b.addr()).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(500);
    let values = KafkaUtils::create_direct_stream(&mut ssc, params, "avg");
    values.map(|r| r.value.len() as i64).print(1);
    ssc.print_to(std::io::sink()).status_lines(false).stop_after_batches(5).ui("127.0.0.1:0", 3);
    ssc.start().unwrap();
    let addr = ssc.ui_addr().expect("the UI's address").to_string();
    assert!(ssc.ui_addr().unwrap().ip().is_loopback());
    ssc.await_termination().unwrap();
    // Still served until the context is dropped: 5 batches of 100 records per partition (partition 1 has 400).
    let (status, _, body) = http_get(&addr, "/api/v1/state");
    assert_eq!(status, 200);
    let state: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(state["numTotalCompletedBatches"], 5, "{state}");
    assert_eq!(state["numProcessedRecords"], 900, "{state}");
    assert_eq!(state["numMalformedRecords"], 0, "{state}");
    assert_eq!(state["numRetainedCompletedBatches"], 3, "{state}");
    let (_, _, body) = http_get(&addr, "/api/v1/batches");
    let batches: Value = serde_json::from_slice(&body).unwrap();
    let records: Vec<u64> = batches.as_array().unwrap().iter().map(|b| b["inputSize"].as_u64().unwrap()).collect();
    assert_eq!(records, vec![100, 200, 200], "newest first: partition 1 ran out after 4 batches");
    drop(ssc);
    // Nothing of this UI answers there any more. (The freed port may be taken at once by a broker a parallel test
    // starts on a free port: then something accepts, but it is not this UI.)
    assert!(!answers_as_ui(&addr), "the UI stops with the context");
}

/// `(batchTime, field)` of each batch of a `/api/v1/batches` answer, oldest first.
fn per_batch(batches: &Value, field: &str) -> Vec<(i64, u64)> {
    let mut v: Vec<(i64, u64)> = batches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["batchTime"].as_i64().unwrap(), b[field].as_u64().unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_streaming_context_shows_timeouts_state_and_checkpoints() {
    use dstream_adapters::kafka::direct::StartingOffsets;
    use dstream_adapters::streaming::{KafkaParams, KafkaUtils, StreamingContext};
    use dstream_core::{State, StateError, StateSpec, TimeoutScan};
    let Some(b) = broker() else { return };
    // One record per 200 ms batch (5 records/s): batch k holds the k-th key of a, b, c, then a ten times.
    let keys = ["a", "b", "c", "a", "a", "a", "a", "a", "a", "a", "a", "a", "a"];
    let mut c = Client::connect(&[b.addr().to_string()], ClientConfig::default()).unwrap();
    c.create_topic("keys", 1, 1).unwrap();
    let values: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    c.produce("keys", 0, encode_batch(&values, 1000, Codec::None).unwrap(), Acks::All).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Idle keys time out after 400 ms, scanned every batch: a key last updated in batch k expires in batch k + 3
    // (T - 400 ms > T_k first holds at T_k + 600 ms). b (batch 2) expires in batch 5, c (batch 3) in batch 6; a
    // is refreshed until batch 13 and would expire in batch 16.
    let context = |batches: u64| {
        let params = KafkaParams::new(b.addr()).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(5);
        let mut ssc = StreamingContext::new(dstream_core::Duration::from_millis(200));
        let records = KafkaUtils::create_direct_stream(&mut ssc, params, "keys");
        let spec = StateSpec::function(|_k: &String, v: Option<i64>, s: &mut State<'_, i64>| {
            if v.is_some() {
                s.update(1)?;
            }
            Ok::<_, StateError>(1i64)
        })
        .timeout(dstream_core::Duration::from_millis(400))
        .timeout_scan(TimeoutScan::EveryBatch);
        records.map(|r| (String::from_utf8_lossy(r.value).into_owned(), 1i64)).map_with_state(spec).print(1);
        ssc.checkpoint(dir.path()).print_to(std::io::sink()).status_lines(false).stop_after_batches(batches);
        ssc.ui("127.0.0.1:0", 100);
        ssc.start().unwrap();
        let addr = ssc.ui_addr().unwrap().to_string();
        ssc.await_termination().unwrap();
        let get = |path: &str| -> Value {
            let (status, _, body) = http_get(&addr, path);
            assert_eq!(status, 200, "{path}");
            serde_json::from_slice(&body).unwrap()
        };
        let out = (get("/api/v1/state"), get("/api/v1/batches"));
        let families = parse_metrics(&String::from_utf8(http_get(&addr, "/metrics").2).unwrap());
        (out.0, out.1, families)
    };
    let (state, batches, families) = context(15);
    // Started again on that checkpoint: it restores batch 15's state, and the first batch after it (batch 16 of
    // the grid) times a out.
    let (again, again_batches, _) = context(1);

    let records = per_batch(&batches, "inputSize");
    assert_eq!(records.iter().map(|r| r.1).collect::<Vec<_>>(), [[1; 13].as_slice(), &[0, 0]].concat(), "{batches}");
    let timed_out = per_batch(&batches, "timedOutKeys");
    let expected: Vec<u64> = (1..=15).map(|k| u64::from(k == 5 || k == 6)).collect();
    assert_eq!(timed_out.iter().map(|t| t.1).collect::<Vec<_>>(), expected, "{batches}");
    assert_eq!(state["numTimedOutKeys"], 2, "{state}");
    let op = &state["state"][0];
    assert_eq!(
        (op["operator"].as_str(), op["keys"].as_u64(), op["timedOutTotal"].as_u64()),
        (Some("map_with_state#0"), Some(1), Some(2)),
        "{state}"
    );
    assert_eq!(op["timedOutLastBatch"], 0);
    let labels = [("operator", "map_with_state#0"), ("kind", "map_with_state")];
    assert_eq!(sample(&families, "dstream_state_timed_out_keys_total", &labels), Some(2.0));
    assert_eq!(sample(&families, "dstream_streaming_last_completed_batch_timed_out_keys", &[]), Some(0.0));
    // The context's UI has the checkpoint figures and state bytes as `dstream run`'s: one checkpoint per batch,
    // the last of batch 15, its operator state as the file holds it.
    let last = records.last().unwrap().0;
    let ck = &state["checkpoint"];
    assert_eq!((ck["saved"].as_u64(), ck["lastBatchTime"].as_i64()), (Some(15), Some(last)), "{ck}");
    // All durable by the end, and the run's end saves its last batch once more.
    assert_eq!((ck["written"].as_u64(), ck["lastWrite"]["batchTime"].as_i64()), (Some(16), Some(last)), "{ck}");
    let file = dir.path().join(dstream_adapters::checkpoint::file_name(dstream_core::Time(last)));
    assert_eq!(ck["lastPath"].as_str(), file.to_str());
    let cp = dstream_adapters::checkpoint::read_file::<dstream_adapters::checkpoint::JobState>(&file).unwrap();
    assert_eq!(op["bytes"].as_u64(), Some(cp.state[0].bytes.len() as u64), "{state}");
    assert_eq!(cp.state[0].len, 1);

    let r = &again["checkpoint"]["restore"];
    assert_eq!((r["batchTime"].as_i64(), r["path"].as_str()), (Some(last), file.to_str()), "{again}");
    assert!(r["durationMs"].as_f64().unwrap() > 0.0, "{again}");
    assert_eq!(per_batch(&again_batches, "timedOutKeys"), vec![(last + 200, 1)], "{again_batches}");
    assert_eq!((again["state"][0]["keys"].as_u64(), again["numTimedOutKeys"].as_u64()), (Some(0), Some(1)));
}

#[test]
fn a_restart_shows_its_restore() {
    let Some(b) = broker() else { return };
    produce(b.addr());
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().to_str().unwrap();
    let first = dstream(&[
        "run",
        "--brokers",
        b.addr(),
        "--starting-offsets",
        "earliest",
        "--batch-interval",
        "200ms",
        "--max-rate-per-partition",
        "500",
        "--batches",
        "3",
        "--ui",
        "off",
        "--checkpoint",
        checkpoints,
    ]);
    ok_stdout(&first);
    let lines = status_lines(&String::from_utf8_lossy(&first.stderr));
    assert_eq!(lines.len(), 3);
    let run = Running::start(b.addr(), &["--checkpoint", checkpoints]);
    let state = run.wait_for(Duration::from_secs(60), |s| s["numTotalCompletedBatches"].as_u64() >= Some(1));
    let families = parse_metrics(&String::from_utf8(run.get("/metrics").2).unwrap());
    let stderr = run.stop();
    // The first run ended after its third batch, all three checkpointed, nothing left pending: the second
    // restores that batch's checkpoint and goes on after its offsets.
    let r = &state["checkpoint"]["restore"];
    assert_eq!(r["batchTime"].as_i64(), Some(lines[2].time), "{state}");
    let file = dir.path().join(dstream_adapters::checkpoint::file_name(dstream_core::Time(lines[2].time)));
    assert_eq!(r["path"].as_str(), file.to_str(), "{state}");
    assert!(stderr.contains(&format!("dstream: resuming from {}", file.display())), "{stderr}");
    assert_eq!(r["pendingBatches"], 0, "{state}");
    let took = r["durationMs"].as_f64().unwrap();
    assert!(took > 0.0 && took < 60_000.0, "{state}");
    let secs = sample(&families, "dstream_checkpoint_restore_seconds", &[]).unwrap();
    assert!((secs - took / 1000.0).abs() < 1e-9, "{secs} s, {took} ms");
    let second = status_lines(&stderr);
    assert!(second[0].time > lines[2].time, "{stderr}");
}

#[test]
fn a_failed_checkpoint_shows_as_a_failed_batch() {
    use dstream_adapters::kafka::direct::StartingOffsets;
    use dstream_adapters::streaming::{BatchCompleted, KafkaParams, KafkaUtils, StreamingContext, StreamingListener};
    let Some(b) = broker() else { return };
    produce(b.addr());
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    /// Moves the checkpoint directory away after the third batch: a later checkpoint cannot be written.
    struct RemoveDir(PathBuf, u32);
    impl StreamingListener for RemoveDir {
        fn on_batch_completed(&mut self, _: &BatchCompleted<'_>) {
            self.1 += 1;
            if self.1 == 3 {
                std::fs::rename(&self.0, self.0.with_extension("gone")).unwrap();
            }
        }
    }
    let params = KafkaParams::new(b.addr()).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(500);
    let mut ssc = StreamingContext::new(dstream_core::Duration::from_millis(200));
    let values = KafkaUtils::create_direct_stream(&mut ssc, params, "avg");
    values.map(|r| (String::from_utf8_lossy(r.value).into_owned(), 1i64)).reduce_by_key(|a, b| a + b).print(1);
    ssc.checkpoint(&checkpoints).print_to(std::io::sink()).status_lines(false).stop_after_batches(20);
    ssc.add_listener(RemoveDir(checkpoints.clone(), 0)).ui("127.0.0.1:0", 100);
    ssc.start().unwrap();
    let addr = ssc.ui_addr().unwrap().to_string();
    let error = ssc.await_termination().expect_err("a checkpoint cannot be written").to_string();
    let get = |path: &str| -> Value { serde_json::from_slice(&http_get(&addr, path).2).unwrap() };
    let state = get("/api/v1/state");
    let batches = get("/api/v1/batches");
    let families = parse_metrics(&String::from_utf8(http_get(&addr, "/metrics").2).unwrap());
    let detail = get(&format!("/api/v1/batches/{}", batches[0]["batchTime"]));
    let seen = browse(FAILED_SCRIPT, &format!("http://{addr}/"), &[batches[0]["batchTime"].to_string()]);
    drop(ssc);

    assert!(error.contains(checkpoints.to_str().unwrap()), "{error}");
    assert_eq!(state["failure"]["error"], error.as_str(), "{state}");
    // The batch whose checkpoint failed is the newest row, failed with the run's error, after the completed ones.
    let rows = batches.as_array().unwrap();
    let failed = &rows[0];
    assert_eq!((failed["status"].as_str(), failed["error"].as_str()), (Some("FAILED"), Some(error.as_str())));
    assert!(rows[1..].iter().all(|r| r["status"] == "COMPLETED" && r["error"].is_null()), "{batches}");
    let completed = state["numTotalCompletedBatches"].as_u64().unwrap();
    assert_eq!(rows.len() as u64, completed + 1);
    assert!(completed >= 3, "{state}");
    assert_eq!(failed["batchTime"].as_i64().unwrap() - rows[1]["batchTime"].as_i64().unwrap(), 200);
    assert_eq!(detail["status"], "FAILED");
    let records: i64 = detail["offsetRanges"].as_array().unwrap().iter().map(|r| r["count"].as_i64().unwrap()).sum();
    assert_eq!(failed["inputSize"].as_i64(), Some(records));
    assert!(state["runningBatch"].is_null(), "{state}");
    let c = &state["checkpoint"];
    assert_eq!(c["failures"], 1, "{c}");
    assert!(error.contains(c["lastFailure"]["error"].as_str().unwrap()), "{c}");
    assert_eq!(sample(&families, "dstream_checkpoint_failures_total", &[]), Some(1.0));
    assert_eq!(sample(&families, "dstream_streaming_failed_batches_total", &[]), Some(1.0));
    // The page shows the failure, the failed row with its error, and the batch's own page says so too.
    assert_eq!(seen["errors"], serde_json::json!([]), "console errors");
    assert!(seen["failure"].as_str().unwrap().ends_with(&error), "{seen}");
    assert_eq!((seen["status"].as_str(), seen["error"].as_str()), (Some("FAILED"), Some(error.as_str())), "{seen}");
    assert_eq!((seen["pageStatus"].as_str(), seen["pageError"].as_str()), (Some("FAILED"), Some(error.as_str())));
    assert_eq!(seen["failures"], "1", "{seen}");
    assert_eq!(sample(&families, "dstream_streaming_running_batches", &[]), Some(0.0));
}

#[test]
fn a_running_batch_and_the_batches_waiting_for_it_are_shown_live() {
    use dstream_adapters::kafka::direct::StartingOffsets;
    use dstream_adapters::streaming::{KafkaParams, KafkaUtils, StreamingContext};
    let Some(b) = broker() else { return };
    produce(b.addr());
    let params = KafkaParams::new(b.addr()).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(500);
    let mut ssc = StreamingContext::new(dstream_core::Duration::from_millis(200));
    let values = KafkaUtils::create_direct_stream(&mut ssc, params, "avg");
    // The third batch's output waits until the test has looked at the UI.
    let (at_third, seen_third) = std::sync::mpsc::channel::<(i64, usize)>();
    let (go_on, release) = std::sync::mpsc::channel::<()>();
    let mut n = 0;
    values.map(|r| r.offset).foreach_batch(move |t, items| {
        n += 1;
        if n == 3 {
            at_third.send((t.millis(), items.len())).unwrap();
            release.recv_timeout(Duration::from_secs(60)).unwrap();
        }
    });
    ssc.print_to(std::io::sink()).status_lines(false).stop_after_batches(8).ui("127.0.0.1:0", 100);
    ssc.start().unwrap();
    let addr = ssc.ui_addr().unwrap().to_string();
    let watcher = std::thread::spawn(move || {
        let (time, records) = seen_third.recv_timeout(Duration::from_secs(60)).unwrap();
        // Ticks go on while it runs: wait for two batches generated behind it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let state = loop {
            let state: Value = serde_json::from_slice(&http_get(&addr, "/api/v1/state").2).unwrap();
            if state["numWaitingBatches"].as_u64() >= Some(2) {
                break state;
            }
            assert!(Instant::now() < deadline, "no batches waiting: {state}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let families = parse_metrics(&String::from_utf8(http_get(&addr, "/metrics").2).unwrap());
        let page = browse(ACTIVE_SCRIPT, &format!("http://{addr}/"), &[]);
        go_on.send(()).unwrap();
        (time, records, state, families, page)
    });
    ssc.await_termination().unwrap();
    let (time, records, state, families, page) = watcher.join().unwrap();

    let running = &state["runningBatch"];
    assert_eq!(running["batchTime"].as_i64(), Some(time), "{state}");
    assert_eq!(running["inputSize"].as_u64(), Some(records as u64), "{state}");
    assert_eq!(state["numTotalCompletedBatches"], 2, "{state}");
    let waiting: Vec<i64> =
        state["waitingBatches"].as_array().unwrap().iter().map(|w| w["batchTime"].as_i64().unwrap()).collect();
    assert_eq!(waiting[..2], [time + 200, time + 400], "{state}");
    assert_eq!(state["numWaitingBatches"].as_u64(), Some(waiting.len() as u64));
    assert_eq!(sample(&families, "dstream_streaming_running_batches", &[]), Some(1.0));
    assert!(sample(&families, "dstream_streaming_waiting_batches", &[]).unwrap() >= 2.0);
    // The page's active batches: the running one first, then those waiting, oldest first.
    assert_eq!(page["errors"], serde_json::json!([]), "console errors");
    let rows: Vec<(i64, String)> = serde_json::from_value(page["rows"].clone()).unwrap();
    assert!(rows.len() >= 3, "{page}");
    assert_eq!(rows[0], (time, "processing".to_string()));
    assert_eq!(rows[1..3], [(time + 200, "queued".to_string()), (time + 400, "queued".to_string())]);
}

const ACTIVE_SCRIPT: &str = r##"
const { chromium } = require(process.env.PLAYWRIGHT);
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(process.argv[1]);
  await page.waitForFunction(() => document.querySelectorAll("#active tr[data-status]").length >= 3, null, { timeout: 60000 });
  const rows = await page.$$eval("#active tr[data-status]", (trs) => trs.map((tr) => [Number(tr.dataset.time), tr.dataset.status]));
  await browser.close();
  console.log(JSON.stringify({ errors, rows }));
})().catch((e) => { console.error(e); process.exit(1); });
"##;
