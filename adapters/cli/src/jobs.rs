//! Jobs a recording can name, built from the header's job name and text parameters.
//!
//! | job | what it prints | parameters |
//! |---|---|---|
//! | `average` | the lab job: `(key,running average)` per record | `print`, `on-malformed`, `state-partitions`, `timeout`, `timeout-scan`, `checkpoint-interval`, `output-order`, `initial` |
//! | `average-remove-on-zero` | as `average`, but a value 0 removes the key's state and emits nothing; then `stateSnapshots()` as `(key,sum,count)` | as `average` |
//! | `windowed-sum` | `reduceByKeyAndWindow(+, window, slide)` of the lab's pairs | `print`, `on-malformed`, `window`, `slide`, `inverse` |
//!
//! Values: `print` a number or `none`; `on-malformed` `skip` or `fail`; durations as `2s` or `500ms`;
//! `inverse` `true` or `false`; `timeout-scan` `spark` or `every-batch`; `output-order` `arrival` or `spark-partitions`; `initial` (repeatable) `KEY,SUM,COUNT`.

use crate::lab::{average, parse_record, Avg, LabConfig, LabJob, JOB_NAME};
use dstream_adapters::recording::{Recording, RecordingHeader};
use dstream_adapters::replay::{replay_frames, ReplayError, ReplaySummary};
use dstream_core::Malformed;
use dstream_core::{
    input, BatchContext, DStreamExt, Duration, Graph, Job, JobError, Key, MalformedPolicy, OutputOrder, RecordRef,
    State, StateError, StateSpec, Time, TimeoutScan,
};
use std::io::Write;

/// Name of the lab job variant whose function removes a key's state on value 0.
pub const REMOVE_ON_ZERO: &str = "average-remove-on-zero";
/// Name of the windowed-sum job.
pub const WINDOWED_SUM: &str = "windowed-sum";

/// Why a job could not be built from a name and parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    /// No job has this name.
    #[error("unknown job {0:?} (known: average, average-remove-on-zero, windowed-sum)")]
    UnknownJob(String),
    /// The job has no such parameter.
    #[error("job {job} has no parameter {name:?}")]
    UnknownParam {
        /// The job.
        job: String,
        /// The parameter.
        name: String,
    },
    /// A parameter's value is not valid.
    #[error("parameter {name} = {value:?}: {reason}")]
    BadValue {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A required parameter is missing.
    #[error("job {job} needs parameter {name}")]
    Missing {
        /// The job.
        job: String,
        /// The parameter.
        name: &'static str,
    },
}

fn bad(name: &str, value: &str, reason: impl ToString) -> JobSpecError {
    JobSpecError::BadValue { name: name.to_string(), value: value.to_string(), reason: reason.to_string() }
}

/// The text parameters describing a lab configuration (inverse of [`lab_config`]).
pub fn lab_params(config: &LabConfig) -> Vec<(String, String)> {
    let mut p = vec![
        ("print".to_string(), config.print.map_or("none".to_string(), |n| n.to_string())),
        (
            "on-malformed".to_string(),
            match config.malformed {
                MalformedPolicy::Skip => "skip",
                MalformedPolicy::Fail => "fail",
            }
            .to_string(),
        ),
        ("state-partitions".to_string(), config.state.num_partitions.to_string()),
    ];
    if let Some(t) = config.state.timeout {
        p.push(("timeout".to_string(), t.to_string()));
    }
    p.push((
        "timeout-scan".to_string(),
        match config.state.timeout_scan {
            TimeoutScan::SparkCompatible => "spark",
            TimeoutScan::EveryBatch => "every-batch",
        }
        .to_string(),
    ));
    if let Some(c) = config.state.checkpoint_interval {
        p.push(("checkpoint-interval".to_string(), c.to_string()));
    }
    p.push((
        "output-order".to_string(),
        match config.state.output_order {
            OutputOrder::Arrival => "arrival",
            OutputOrder::SparkPartitions => "spark-partitions",
        }
        .to_string(),
    ));
    p
}

/// The lab configuration and initial state described by `params` (defaults for what is absent).
pub fn lab_config(job: &str, params: &[(String, String)]) -> Result<(LabConfig, Vec<(Key, Avg)>), JobSpecError> {
    let mut config = LabConfig::default();
    let mut initial = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "print" | "on-malformed" => apply_common(&mut config, name, value)?,
            "state-partitions" => {
                let n: usize = value.parse().map_err(|e| bad(name, value, e))?;
                if n == 0 {
                    return Err(bad(name, value, "must be at least 1"));
                }
                config.state.num_partitions = n;
            }
            "timeout" => config.state.timeout = Some(value.parse().map_err(|e| bad(name, value, e))?),
            "checkpoint-interval" => {
                config.state.checkpoint_interval = Some(value.parse().map_err(|e| bad(name, value, e))?)
            }
            "timeout-scan" => {
                config.state.timeout_scan = match value.as_str() {
                    "spark" => TimeoutScan::SparkCompatible,
                    "every-batch" => TimeoutScan::EveryBatch,
                    _ => return Err(bad(name, value, "expected spark or every-batch")),
                }
            }
            "output-order" => {
                config.state.output_order = match value.as_str() {
                    "arrival" => OutputOrder::Arrival,
                    "spark-partitions" => OutputOrder::SparkPartitions,
                    _ => return Err(bad(name, value, "expected arrival or spark-partitions")),
                }
            }
            "initial" => initial.push(
                parse_initial(value).ok_or_else(|| bad(name, value, "expected KEY,SUM,COUNT with COUNT at least 1"))?,
            ),
            _ => return Err(JobSpecError::UnknownParam { job: job.to_string(), name: name.clone() }),
        }
    }
    Ok((config, initial))
}

fn apply_common(config: &mut LabConfig, name: &str, value: &str) -> Result<(), JobSpecError> {
    match name {
        "print" => {
            config.print = match value {
                "none" => None,
                n => Some(n.parse().map_err(|e| bad(name, value, e))?),
            }
        }
        _ => {
            config.malformed = match value {
                "skip" => MalformedPolicy::Skip,
                "fail" => MalformedPolicy::Fail,
                _ => return Err(bad(name, value, "expected skip or fail")),
            }
        }
    }
    Ok(())
}

fn parse_initial(value: &str) -> Option<(Key, Avg)> {
    let mut it = value.rsplitn(3, ',');
    let count: u64 = it.next()?.parse().ok()?;
    let sum: i128 = it.next()?.parse().ok()?;
    let key = it.next().filter(|k| !k.is_empty())?;
    // As a checkpoint's state: a count of at least 1 and a sum that many 64-bit values can have.
    let avg = Avg::new(sum, count);
    avg.check().ok()?;
    Some((Key::new(key), avg))
}

/// Any job behind one type, as a replay builds it from a recording's header.
pub struct AnyJob(Box<dyn Job>);

impl AnyJob {
    /// Wraps a job.
    pub fn new(job: impl Job + 'static) -> Self {
        AnyJob(Box::new(job))
    }
}

impl Job for AnyJob {
    fn begin_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.0.begin_batch(ctx)
    }
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.0.feed(ctx)
    }
    fn finish_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.0.finish_batch(ctx)
    }
    fn visit_state(&mut self, visit: &mut dstream_core::StateVisit<'_>) {
        self.0.visit_state(visit)
    }
}

fn parse_pair(r: RecordRef<'_>) -> Result<(Key, i64), crate::lab::LabParseError> {
    parse_record(r.value).map(|(k, v)| (Key::new(k), v))
}

/// The mapping function of `average-remove-on-zero`: a value 0 removes the state and emits nothing.
pub fn average_or_remove(
    _time: Time,
    key: &Key,
    value: Option<i64>,
    state: &mut State<Avg>,
) -> Result<Option<(Key, f64)>, StateError> {
    if value == Some(0) {
        state.remove()?;
        return Ok(None);
    }
    average(key, value, state).map(Some)
}

/// The `average-remove-on-zero` job: mapped stream printed, then `stateSnapshots()` as `(key,sum,count)`.
pub fn remove_on_zero_job(config: &LabConfig, initial: Vec<(Key, Avg)>) -> Graph {
    let spec = StateSpec::full(average_or_remove).options(config.state.clone()).initial_state(initial);
    let (mapped, snapshots) = input(parse_pair, config.malformed).map_with_state(spec).with_snapshots();
    let num = config.print.unwrap_or(0);
    let mut g = Graph::new();
    if config.print.is_some() {
        g = g.output(mapped.print(num)).output(snapshots.map(|(k, a): (Key, Avg)| (k, a.sum(), a.count())).print(num));
    }
    g
}

/// A filter on windowed (key, sum) pairs.
type PairFilter = fn(&(Key, i64)) -> bool;

/// The `windowed-sum` job: `reduceByKeyAndWindow(+, window, slide)` over the lab's pairs, printed.
///
/// Sums wrap on overflow as the JVM's `Long` addition does. With `inverse`, the window is maintained
/// incrementally (previous window minus the batches that left plus those that entered), keys stay in the
/// output with value 0 (Spark's WOS golden tables), and the output is sorted by key; without it, keys come
/// in order of first appearance. `print: None` registers no output operation.
pub fn windowed_sum_job(
    print: Option<usize>,
    malformed: MalformedPolicy,
    window: Duration,
    slide: Duration,
    inverse: bool,
) -> Graph {
    let Some(num) = print else { return Graph::new() };
    let pairs = input(parse_pair, malformed);
    let add = |a: i64, b: i64| a.wrapping_add(b);
    if inverse {
        let sub = |a: i64, b: i64| a.wrapping_sub(b);
        let no_filter: Option<PairFilter> = None;
        Graph::new().output(pairs.reduce_by_key_and_window_inv(add, sub, window, slide, no_filter).print(num))
    } else {
        Graph::new().output(pairs.reduce_by_key_and_window(add, window, slide).print(num))
    }
}

/// Builds the job a recording's header names.
pub fn build_job(header: &RecordingHeader) -> Result<AnyJob, JobSpecError> {
    build_named(&header.job, &header.params)
}

/// Builds a job from its name and parameters.
pub fn build_named(job: &str, params: &[(String, String)]) -> Result<AnyJob, JobSpecError> {
    match job {
        JOB_NAME => {
            let (config, initial) = lab_config(job, params)?;
            Ok(AnyJob::new(LabJob::with_initial_state(config, initial)))
        }
        REMOVE_ON_ZERO => {
            let (config, initial) = lab_config(job, params)?;
            Ok(AnyJob::new(remove_on_zero_job(&config, initial)))
        }
        WINDOWED_SUM => {
            let mut config = LabConfig::default();
            let (mut window, mut slide, mut inverse) = (None, None, false);
            for (name, value) in params {
                match name.as_str() {
                    "print" | "on-malformed" => apply_common(&mut config, name, value)?,
                    "window" => window = Some(value.parse::<Duration>().map_err(|e| bad(name, value, e))?),
                    "slide" => slide = Some(value.parse::<Duration>().map_err(|e| bad(name, value, e))?),
                    "inverse" => {
                        inverse = match value.as_str() {
                            "true" => true,
                            "false" => false,
                            _ => return Err(bad(name, value, "expected true or false")),
                        }
                    }
                    _ => return Err(JobSpecError::UnknownParam { job: job.to_string(), name: name.clone() }),
                }
            }
            let window = window.ok_or(JobSpecError::Missing { job: job.to_string(), name: "window" })?;
            let slide = slide.ok_or(JobSpecError::Missing { job: job.to_string(), name: "slide" })?;
            Ok(AnyJob::new(windowed_sum_job(config.print, config.malformed, window, slide, inverse)))
        }
        other => Err(JobSpecError::UnknownJob(other.to_string())),
    }
}

/// Replays a whole recording through the job its header names.
pub fn replay(
    recording: &Recording,
    out: &mut dyn Write,
    on_malformed: &mut dyn FnMut(&Malformed),
) -> Result<ReplaySummary, ReplayError> {
    let job = build_job(&recording.header).map_err(|e| ReplayError::Job(Box::new(e)))?;
    let frames = recording.frames.iter().cloned().map(Ok);
    replay_frames(job, &recording.header, frames, out, &mut |r| r.malformed.iter().for_each(&mut *on_malformed))
}

/// Replays a recording and returns everything it printed.
pub fn replay_to_string(recording: &Recording) -> Result<String, ReplayError> {
    let mut out = Vec::new();
    replay(recording, &mut out, &mut |_| {})?;
    Ok(String::from_utf8(out).expect("print output is built from Rust strings"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dstream_adapters::text::from_text;
    use dstream_core::EngineError;

    #[test]
    fn lab_params_round_trip() {
        let mut c = LabConfig::default();
        assert_eq!(lab_config(JOB_NAME, &lab_params(&c)).unwrap(), (c.clone(), vec![]));
        c.print = None;
        c.malformed = MalformedPolicy::Fail;
        c.state.num_partitions = 3;
        c.state.timeout = Some(Duration(6000));
        c.state.checkpoint_interval = Some(Duration(500));
        c.state.timeout_scan = TimeoutScan::EveryBatch;
        c.state.output_order = OutputOrder::SparkPartitions;
        assert_eq!(lab_config(JOB_NAME, &lab_params(&c)).unwrap(), (c, vec![]));
    }

    #[test]
    fn bad_params_are_named() {
        let p = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert!(matches!(lab_config("average", &p("colour", "red")), Err(JobSpecError::UnknownParam { .. })));
        assert!(matches!(lab_config("average", &p("timeout", "soon")), Err(JobSpecError::BadValue { .. })));
        assert!(matches!(lab_config("average", &p("initial", "a,1")), Err(JobSpecError::BadValue { .. })));
        assert_eq!(lab_config("average", &p("initial", "é,25,2")).unwrap().1, vec![(Key::new("é"), Avg::new(25, 2))]);
        assert!(matches!(build_named("nope", &[]), Err(JobSpecError::UnknownJob(_))));
        assert!(matches!(build_named(WINDOWED_SUM, &p("window", "4s")), Err(JobSpecError::Missing { .. })));
    }

    #[test]
    fn bad_headers_are_errors_not_panics() {
        let mut rec = from_text("dstream-recording 1\n--- batch\na,1\n").unwrap();
        rec.header.batch_interval = dstream_core::Duration(0);
        assert!(matches!(replay_to_string(&rec), Err(ReplayError::BadInterval(0))));
        rec.header.batch_interval = dstream_core::Duration(1000);
        rec.header.job = "nope".into();
        assert!(matches!(replay_to_string(&rec), Err(ReplayError::Job(_))));
    }

    /// Issue 14 item 8: times near 2^63 in a recording (header or frame) are refused; they wrapped the grid.
    #[test]
    fn times_out_of_range_are_errors_not_panics() {
        let mut rec = from_text("dstream-recording 1\n--- batch\na,1\n").unwrap();
        rec.header.zero = dstream_core::Time(i64::MAX - 10);
        let err = replay_to_string(&rec).unwrap_err();
        assert!(matches!(err, ReplayError::BadTime { what: "grid origin", .. }), "{err}");
        rec.header.zero = dstream_core::Time(0);
        rec.header.batch_interval = dstream_core::Duration(i64::MAX);
        assert!(matches!(replay_to_string(&rec), Err(ReplayError::BadInterval(i64::MAX))));
        rec.header.batch_interval = dstream_core::Duration(1000);
        rec.frames[0].time = dstream_core::Time(i64::MIN);
        let err = replay_to_string(&rec).unwrap_err();
        assert!(matches!(err, ReplayError::BadTime { what: "batch time", time: i64::MIN }), "{err}");
    }

    #[test]
    fn batches_out_of_order_stop_the_replay_after_the_good_ones() {
        let rec = from_text("dstream-recording 1\n--- batch 4000\na,1\n--- batch 2000\na,2\n").unwrap();
        let mut out = Vec::new();
        let err = replay(&rec, &mut out, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ReplayError::Engine(EngineError::OutOfOrder { .. })), "{err}");
        assert!(String::from_utf8(out).unwrap().contains("Time: 4000 ms\n"));
    }
}
