//! What the UI serves: the page and its assets (embedded at build time), the JSON API and `/metrics`.

use super::http::{Request, Response};
use super::{BatchRecord, UiData};
use dstream_core::Time;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Mutex;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

const JSON: &str = "application/json";
/// The Prometheus text exposition format, version 0.0.4.
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers a GET request.
pub(crate) fn route(req: &Request, data: &Mutex<UiData>) -> Response {
    let path = req.path.as_str();
    match path {
        "/" => return Response::new("text/html; charset=utf-8", INDEX),
        "/static/app.js" => return Response::new("text/javascript; charset=utf-8", APP_JS),
        "/static/style.css" => return Response::new("text/css; charset=utf-8", STYLE),
        _ => {}
    }
    if path.strip_prefix("/batches/").is_some_and(|t| t.parse::<i64>().is_ok()) {
        return Response::new("text/html; charset=utf-8", INDEX);
    }
    let lookup = |f: &dyn Fn(&UiData) -> Response| f(&data.lock().unwrap_or_else(|e| e.into_inner()));
    match path {
        "/metrics" => {
            let generated = generated(data);
            lookup(&|d| Response::new(METRICS, metrics(d, &waiting(d, &generated))))
        }
        "/api/v1/state" => {
            let generated = generated(data);
            lookup(&|d| json(&state(d, &waiting(d, &generated))))
        }
        "/api/v1/batches" => {
            let since = query_param(&req.query, "since").and_then(|s| s.parse::<i64>().ok());
            lookup(&|d| {
                let list: Vec<BatchSummary> = d
                    .batches
                    .iter()
                    .rev()
                    .take_while(|b| since.is_none_or(|s| b.time.0 > s))
                    .map(|b| BatchSummary::of(b, d.config.batch_interval.0))
                    .collect();
                json(&list)
            })
        }
        _ => match path.strip_prefix("/api/v1/batches/").map(str::parse::<i64>) {
            Some(Ok(t)) => lookup(&|d| match d.batches.iter().find(|b| b.time.0 == t) {
                Some(b) => json(&BatchDetail::of(b, d)),
                None => not_found(&format!("no batch {t} among the {} kept", d.batches.len())),
            }),
            Some(Err(_)) => not_found("a batch is named by its time in ms"),
            None => not_found("not found"),
        },
    }
}

/// The run's batches generated and not completed now, if it shares them (taken before the UI's lock, so that the
/// two locks are never held together).
fn generated(data: &Mutex<UiData>) -> Option<Vec<dstream_core::BatchInfo>> {
    let g = data.lock().unwrap_or_else(|e| e.into_inner()).generated.clone()?;
    Some(g.snapshot())
}

/// The waiting batches, (time, records), oldest first: those generated and neither running nor completed, live
/// when the run shares them, else as of the last completion.
fn waiting(d: &UiData, generated: &Option<Vec<dstream_core::BatchInfo>>) -> Vec<(Time, u64)> {
    let Some(g) = generated else { return d.waiting.clone() };
    let done = d.running.as_ref().map(|r| r.info.time).max(d.batches.back().map(|b| b.time));
    g.iter()
        .filter(|b| Some(b.time) > done)
        .map(|b| (b.time, b.ranges.iter().map(|r| r.count() as u64).sum()))
        .collect()
}

fn not_found(message: &str) -> Response {
    let mut r = json(&serde_json::json!({ "error": message }));
    r.status = 404;
    r.reason = "Not Found";
    r
}

fn json(v: &impl Serialize) -> Response {
    Response::new(JSON, serde_json::to_vec(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes()))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// A completed batch in `/api/v1/batches` (Spark's streaming REST API names, times in ms).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchSummary {
    batch_id: i64,
    batch_time: i64,
    status: &'static str,
    /// Why it failed (the run stopped there).
    error: Option<String>,
    batch_duration: i64,
    input_size: u64,
    malformed_records: u64,
    timed_out_keys: u64,
    scheduling_delay: i64,
    processing_time: i64,
    total_delay: i64,
    lag: i64,
    waiting_batches: usize,
    completed_at: i64,
    /// (partition, records) of the partitions with records.
    partitions: Vec<(i32, i64)>,
    /// (partition, lag when generated) of every partition; empty for a batch run again.
    partition_lags: Vec<(i32, i64)>,
}

impl BatchSummary {
    fn of(b: &BatchRecord, interval: i64) -> Self {
        BatchSummary {
            batch_id: b.time.0,
            batch_time: b.time.0,
            status: if b.error.is_some() { "FAILED" } else { "COMPLETED" },
            error: b.error.clone(),
            batch_duration: interval,
            input_size: b.records,
            malformed_records: b.malformed,
            timed_out_keys: b.timed_out,
            scheduling_delay: b.scheduling_delay.0,
            processing_time: b.processing_time.0,
            total_delay: b.total_delay().0,
            lag: b.lag,
            waiting_batches: b.waiting,
            completed_at: b.completed_at,
            partitions: b.ranges.iter().filter(|r| r.count() > 0).map(|r| (r.partition, r.count())).collect(),
            partition_lags: b.lags.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RangeView<'a> {
    topic: &'a str,
    partition: i32,
    from_offset: i64,
    until_offset: i64,
    count: i64,
    /// Records in the partition's log beyond this range when the batch was generated (none for a batch run
    /// again).
    lag: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MalformedView<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    reason: &'a str,
}

/// One batch in `/api/v1/batches/<time>`: the summary, every offset range, the malformed records kept.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchDetail<'a> {
    #[serde(flatten)]
    summary: BatchSummary,
    offset_ranges: Vec<RangeView<'a>>,
    malformed: Vec<MalformedView<'a>>,
    malformed_shown: usize,
    /// The start of what its `print` operations wrote.
    printed: &'a str,
    printed_bytes: usize,
    printed_truncated: bool,
}

impl<'a> BatchDetail<'a> {
    fn of(b: &'a BatchRecord, d: &'a UiData) -> Self {
        BatchDetail {
            summary: BatchSummary::of(b, d.config.batch_interval.0),
            offset_ranges: b
                .ranges
                .iter()
                .map(|r| RangeView {
                    topic: topic_of(&d.config.topic, r.partition).0,
                    partition: topic_of(&d.config.topic, r.partition).1,
                    from_offset: r.from,
                    until_offset: r.until,
                    count: r.count(),
                    lag: b.lags.iter().find(|l| l.0 == r.partition).map(|l| l.1),
                })
                .collect(),
            malformed: b
                .malformed_kept
                .iter()
                .map(|m| {
                    let (topic, partition) = topic_of(&d.config.topic, m.partition);
                    MalformedView { topic, partition, offset: m.offset, reason: &m.reason }
                })
                .collect(),
            malformed_shown: b.malformed_kept.len(),
            printed: &b.printed,
            printed_bytes: b.printed_len,
            printed_truncated: b.printed.len() < b.printed_len,
        }
    }
}

fn average(batches: &std::collections::VecDeque<BatchRecord>, f: impl Fn(&BatchRecord) -> f64) -> Option<f64> {
    (!batches.is_empty()).then(|| batches.iter().map(f).sum::<f64>() / batches.len() as f64)
}

/// `/api/v1/state`: the job as a whole (Spark's `/streaming/statistics` names where they exist), partitions,
/// state and checkpoints.
fn state(d: &UiData, waiting: &[(Time, u64)]) -> serde_json::Value {
    let interval = d.config.batch_interval.0.max(1) as f64;
    let c = &d.checkpoint;
    let now = super::wall_ms();
    let ms = |t: std::time::Duration| t.as_secs_f64() * 1000.0;
    let last_write = c.writes.last.as_ref().map(|w| {
        let at = epoch_ms(w.at);
        serde_json::json!({
            "batchTime": w.time.0, "path": w.path.display().to_string(), "sizeBytes": w.bytes,
            "durationMs": ms(w.took), "writtenAt": at, "ageMs": now - at,
        })
    });
    serde_json::json!({
        "topic": d.config.topic,
        "startTime": d.start_time,
        "uptime": d.started.elapsed().as_millis() as u64,
        "batchDuration": d.config.batch_interval.0,
        "numTotalCompletedBatches": d.completed,
        "numRetainedCompletedBatches": d.batches.len(),
        "retainedBatchesLimit": d.config.retained_batches,
        "numWaitingBatches": waiting.len(),
        "waitingBatches": waiting.iter().map(|(t, n)| serde_json::json!({
            "batchTime": t.0, "inputSize": n,
        })).collect::<Vec<_>>(),
        "runningBatch": d.running.as_ref().map(|r| serde_json::json!({
            "batchTime": r.info.time.0,
            "inputSize": r.info.ranges.iter().map(|r| r.count()).sum::<i64>(),
            "startedAt": r.started_at,
            "schedulingDelay": (r.started_at - r.info.time.0).max(0),
            "runningForMs": now - r.started_at,
        })),
        "failure": d.failure.as_ref().map(|(e, at)| serde_json::json!({ "error": e, "at": at })),
        "numProcessedRecords": d.records,
        "numMalformedRecords": d.malformed,
        "numTimedOutKeys": d.timed_out,
        "avgInputRate": average(&d.batches, |b| b.records as f64 * 1000.0 / interval),
        "avgSchedulingDelay": average(&d.batches, |b| b.scheduling_delay.0 as f64),
        "avgProcessingTime": average(&d.batches, |b| b.processing_time.0 as f64),
        "avgTotalDelay": average(&d.batches, |b| b.total_delay().0 as f64),
        "lag": d.last_lag,
        "partitions": d.partitions.iter().map(|(&p, t)| serde_json::json!({
            "topic": topic_of(&d.config.topic, p).0, "partition": topic_of(&d.config.topic, p).1,
            "records": t.records, "nextOffset": t.next_offset, "lag": t.lag,
        })).collect::<Vec<_>>(),
        "state": d.state.iter().map(|o| serde_json::json!({
            "operator": o.name, "kind": o.kind, "keys": o.keys,
            "timedOutLastBatch": o.timed_out, "timedOutTotal": o.timed_out_total,
            "bytes": o.bytes.map(|b| b.0), "bytesAtBatch": o.bytes.map(|b| b.1 .0),
        })).collect::<Vec<_>>(),
        "checkpoint": {
            "saved": c.saved,
            "lastBatchTime": c.last_batch.map(|t| t.0),
            "lastPath": c.last_path.as_ref().map(|p| p.display().to_string()),
            "lastSavedAt": c.last_at,
            "lastBatchPathMs": c.last_batch_path.map(ms),
            "written": c.writes.written,
            "lastWrite": last_write,
            "failures": c.failures,
            "lastFailure": c.last_failure.as_ref().map(|(e, at)| serde_json::json!({ "error": e, "at": at })),
            "restore": c.restored.as_ref().map(|r| serde_json::json!({
                "path": r.path.display().to_string(), "batchTime": r.batch.0, "pendingBatches": r.pending,
                "durationMs": ms(r.took),
            })),
        },
    })
}

/// One metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name} {value}");
}

/// A label value, escaped as the text format requires.
/// The topic and the topic's own partition number of engine partition `p`, `topics` being the job's topics,
/// comma-separated, in input order (see [`dstream_core::record::input_partition`]).
fn topic_of(topics: &str, p: i32) -> (&str, i32) {
    let (input, partition) = dstream_core::record::split_partition(p);
    (topics.split(',').nth(input).unwrap_or(topics), partition)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `/metrics`: names after Spark's `StreamingSource` gauges where one exists (named in each HELP), in seconds
/// and with `_total` on counters as Prometheus prefers.
fn metrics(d: &UiData, waiting: &[(Time, u64)]) -> String {
    let mut o = String::with_capacity(4096);
    let m = &mut o;
    family(m, "dstream_streaming_completed_batches", "counter", "Batches completed (Spark: totalCompletedBatches).");
    sample(m, "dstream_streaming_completed_batches_total", d.completed);
    family(m, "dstream_streaming_processed_records", "counter", "Records processed (Spark: totalProcessedRecords).");
    sample(m, "dstream_streaming_processed_records_total", d.records);
    family(m, "dstream_streaming_malformed_records", "counter", "Records skipped as malformed.");
    sample(m, "dstream_streaming_malformed_records_total", d.malformed);
    family(
        m,
        "dstream_streaming_waiting_batches",
        "gauge",
        "Batches generated (ranges fixed) and not yet processed (Spark: waitingBatches).",
    );
    sample(m, "dstream_streaming_waiting_batches", waiting.len());
    family(m, "dstream_streaming_running_batches", "gauge", "Batches being processed (Spark: runningBatches).");
    sample(m, "dstream_streaming_running_batches", u8::from(d.running.is_some()));
    family(m, "dstream_streaming_failed_batches", "counter", "Batches that failed (the run stops at the first).");
    sample(m, "dstream_streaming_failed_batches_total", d.batches.iter().filter(|b| b.error.is_some()).count());
    family(
        m,
        "dstream_streaming_retained_completed_batches",
        "gauge",
        "Completed batches the UI keeps (Spark: retainedCompletedBatches).",
    );
    sample(m, "dstream_streaming_retained_completed_batches", d.batches.len());
    family(m, "dstream_streaming_batch_interval_seconds", "gauge", "The batch interval.");
    sample(m, "dstream_streaming_batch_interval_seconds", secs(d.config.batch_interval.0));
    family(m, "dstream_streaming_start_time_seconds", "gauge", "When the job started, in seconds since the epoch.");
    sample(m, "dstream_streaming_start_time_seconds", secs(d.start_time));
    if let Some(b) = d.batches.back() {
        for (name, spark, v) in [
            ("processing_delay_seconds", "lastCompletedBatch_processingDelay", secs(b.processing_time.0)),
            ("scheduling_delay_seconds", "lastCompletedBatch_schedulingDelay", secs(b.scheduling_delay.0)),
            ("total_delay_seconds", "lastCompletedBatch_totalDelay", secs(b.total_delay().0)),
            ("time_seconds", "lastCompletedBatch_submissionTime", secs(b.time.0)),
        ] {
            let full = format!("dstream_streaming_last_completed_batch_{name}");
            family(m, &full, "gauge", &format!("Of the last completed batch (Spark: {spark})."));
            sample(m, &full, v);
        }
        family(
            m,
            "dstream_streaming_last_completed_batch_records",
            "gauge",
            "Records of the last completed batch (Spark: lastReceivedBatch_records).",
        );
        sample(m, "dstream_streaming_last_completed_batch_records", b.records);
        family(
            m,
            "dstream_streaming_last_completed_batch_timed_out_keys",
            "gauge",
            "Keys whose state timed out in the last completed batch.",
        );
        sample(m, "dstream_streaming_last_completed_batch_timed_out_keys", b.timed_out);
    }
    family(
        m,
        "dstream_streaming_lag_records",
        "gauge",
        "Records beyond the last completed batch's ranges when it was generated.",
    );
    sample(m, "dstream_streaming_lag_records", d.last_lag);
    let tp = |p: i32| {
        let (topic, partition) = topic_of(&d.config.topic, p);
        format!("topic=\"{}\",partition=\"{partition}\"", label(topic))
    };
    family(
        m,
        "dstream_partition_records",
        "counter",
        "Offsets in completed batches' ranges per partition (records, unless the log has gaps).",
    );
    for (p, t) in &d.partitions {
        let _ = writeln!(m, "dstream_partition_records_total{{{}}} {}", tp(*p), t.records);
    }
    family(m, "dstream_partition_next_offset", "gauge", "The next offset after the last completed batch.");
    for (p, t) in &d.partitions {
        let _ = writeln!(m, "dstream_partition_next_offset{{{}}} {}", tp(*p), t.next_offset);
    }
    family(
        m,
        "dstream_partition_lag_records",
        "gauge",
        "Records in a partition's log beyond the last completed batch's range when that batch was generated.",
    );
    for (p, t) in &d.partitions {
        if let Some(lag) = t.lag {
            let _ = writeln!(m, "dstream_partition_lag_records{{{}}} {lag}", tp(*p));
        }
    }
    family(m, "dstream_state_keys", "gauge", "Keys in a stateful operator's state after the last batch.");
    for s in &d.state {
        let _ =
            writeln!(m, "dstream_state_keys{{operator=\"{}\",kind=\"{}\"}} {}", label(&s.name), label(&s.kind), s.keys);
    }
    family(m, "dstream_state_timed_out_keys", "counter", "Keys whose idle timeout expired, per stateful operator.");
    for s in &d.state {
        let (name, kind) = (label(&s.name), label(&s.kind));
        let _ = writeln!(
            m,
            "dstream_state_timed_out_keys_total{{operator=\"{name}\",kind=\"{kind}\"}} {}",
            s.timed_out_total
        );
    }
    family(
        m,
        "dstream_state_bytes",
        "gauge",
        "Bytes of a stateful operator's state in the last checkpoint (measured when a checkpoint is saved).",
    );
    for s in &d.state {
        if let Some((n, _)) = s.bytes {
            let _ =
                writeln!(m, "dstream_state_bytes{{operator=\"{}\",kind=\"{}\"}} {n}", label(&s.name), label(&s.kind));
        }
    }
    let c = &d.checkpoint;
    family(m, "dstream_checkpoints_saved", "counter", "Checkpoints saved after a batch (handed to the writer).");
    sample(m, "dstream_checkpoints_saved_total", c.saved);
    family(m, "dstream_checkpoints_written", "counter", "Checkpoints durable on disk.");
    sample(m, "dstream_checkpoints_written_total", c.writes.written);
    family(m, "dstream_checkpoint_failures", "counter", "Checkpoints that could not be saved or written.");
    sample(m, "dstream_checkpoint_failures_total", c.failures.max(c.writes.failed));
    if let Some(t) = c.last_batch {
        family(m, "dstream_checkpoint_last_batch_time_seconds", "gauge", "Batch time of the last checkpoint.");
        sample(m, "dstream_checkpoint_last_batch_time_seconds", secs(t.0));
    }

    if let Some(t) = c.last_batch_path {
        family(
            m,
            "dstream_checkpoint_last_batch_path_seconds",
            "gauge",
            "Time the batch path spent on the last checkpoint (encoding; writing too when inline).",
        );
        sample(m, "dstream_checkpoint_last_batch_path_seconds", t.as_secs_f64());
    }
    if let Some(w) = &c.writes.last {
        let at = epoch_ms(w.at);
        family(m, "dstream_checkpoint_last_write_time_seconds", "gauge", "When the last checkpoint was durable.");
        sample(m, "dstream_checkpoint_last_write_time_seconds", secs(at));
        family(m, "dstream_checkpoint_last_write_age_seconds", "gauge", "Time since the last checkpoint was durable.");
        sample(m, "dstream_checkpoint_last_write_age_seconds", secs(super::wall_ms() - at));
        family(
            m,
            "dstream_checkpoint_last_write_duration_seconds",
            "gauge",
            "How long writing the last checkpoint took (file, fsync, rename, directory fsync; off the batch path).",
        );
        sample(m, "dstream_checkpoint_last_write_duration_seconds", w.took.as_secs_f64());
        family(m, "dstream_checkpoint_last_size_bytes", "gauge", "Size of the last checkpoint written.");
        sample(m, "dstream_checkpoint_last_size_bytes", w.bytes);
        family(
            m,
            "dstream_checkpoint_last_written_batch_time_seconds",
            "gauge",
            "Batch of the last checkpoint written.",
        );
        sample(m, "dstream_checkpoint_last_written_batch_time_seconds", secs(w.time.0));
    }
    if let Some(r) = &c.restored {
        family(m, "dstream_checkpoint_restore_seconds", "gauge", "How long restoring the checkpoint at start took.");
        sample(m, "dstream_checkpoint_restore_seconds", r.took.as_secs_f64());
    }
    o
}

fn epoch_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
