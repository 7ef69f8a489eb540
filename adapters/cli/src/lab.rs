//! The lab's job: `"KEY,VALUE"` messages, a running average per key with `mapWithState`, printed as Spark does.

use dstream_adapters::recording::RecordingHeader;
use dstream_core::checkpoint::{Fingerprint, JobState};
use dstream_core::graph::{GraphBuilder, InputStream};
use dstream_core::jvm::write_double;
use dstream_core::key::Key;
use dstream_core::print::write_batch;
use dstream_core::record::RecordRef;
use dstream_core::state::{State, StateError, StateSpecOptions};
use dstream_core::stateful::StateVisit;
use dstream_core::stream::{
    input, BatchContext, DStream, DStreamExt, Graph, Input, Job, JobError, MalformedPolicy, MapWithState,
    MapWithStateCheckpoint, MappingFunction, OutputOp, RecordParser, Shared, StateSpec,
};
use dstream_core::time::Duration;
use dstream_core::time::Time;
use dstream_core::StateCodecError;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;

/// The job's name, as recorded in checkpoints and recordings.
pub const JOB_NAME: &str = "average";

/// Why a message is not a lab record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabParseError {
    /// No comma in the value.
    #[error("no comma: expected KEY,VALUE")]
    NoComma,
    /// Nothing before the first comma.
    #[error("empty key")]
    EmptyKey,
    /// The key is not valid UTF-8.
    #[error("key is not valid UTF-8")]
    KeyNotUtf8,
    /// Nothing after the first comma.
    #[error("empty value")]
    EmptyValue,
    /// The value is not a decimal integer (optional sign, digits only).
    #[error("value is not a decimal integer")]
    NotAnInteger,
    /// The value does not fit in a 64-bit signed integer.
    #[error("value does not fit in a 64-bit integer")]
    OutOfRange,
}

/// Parses a message value as `KEY,VALUE`; the key borrows from the input.
#[inline]
pub fn parse_record(value: &[u8]) -> Result<(&str, i64), LabParseError> {
    let (key, rest) = split_record(value)?;
    let key = std::str::from_utf8(key).map_err(|_| LabParseError::KeyNotUtf8)?;
    Ok((key, parse_i64(rest)?))
}

/// Splits `KEY,VALUE` at the first comma into the (non-empty) key bytes and the value bytes.
#[inline]
fn split_record(value: &[u8]) -> Result<(&[u8], &[u8]), LabParseError> {
    let comma = value.iter().position(|&b| b == b',').ok_or(LabParseError::NoComma)?;
    let (key, rest) = (&value[..comma], &value[comma + 1..]);
    if key.is_empty() {
        return Err(LabParseError::EmptyKey);
    }
    Ok((key, rest))
}

/// Parses an optionally signed decimal integer with no spaces.
#[inline]
pub fn parse_i64(s: &[u8]) -> Result<i64, LabParseError> {
    let (neg, digits) = match s.first() {
        None => return Err(LabParseError::EmptyValue),
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
    };
    if digits.is_empty() {
        return Err(LabParseError::NotAnInteger);
    }
    // Accumulate negatively so i64::MIN parses.
    let mut acc: i64 = 0;
    let mut overflow = false;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(LabParseError::NotAnInteger);
        }
        match acc.checked_mul(10).and_then(|a| a.checked_sub(d as i64)) {
            Some(a) => acc = a,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(LabParseError::OutOfRange);
    }
    if neg {
        Ok(acc)
    } else {
        acc.checked_neg().ok_or(LabParseError::OutOfRange)
    }
}

/// A key's running sum and count; the sum is 128 bits wide (kept as two words, 8-byte aligned) so it never overflows.
///
/// Decoding refuses what no run can store: a count of 0, or a sum beyond what `count` 64-bit values can add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "AvgFields")]
pub struct Avg {
    sum_hi: i64,
    sum_lo: u64,
    count: u64,
}

/// `Avg` as it is encoded, before it is checked.
#[derive(Deserialize)]
struct AvgFields {
    sum_hi: i64,
    sum_lo: u64,
    count: u64,
}

/// Why a decoded running average is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAvg {
    /// A stored key has seen at least one value.
    #[error("a running average over 0 values")]
    ZeroCount,
    /// Each value is a 64-bit integer, so the sum's magnitude is at most `count * 2^63`.
    #[error("a sum of {sum} cannot come from {count} 64-bit values")]
    ImpossibleSum {
        /// The sum.
        sum: i128,
        /// The count.
        count: u64,
    },
}

impl TryFrom<AvgFields> for Avg {
    type Error = InvalidAvg;
    fn try_from(f: AvgFields) -> Result<Self, InvalidAvg> {
        let a = Avg { sum_hi: f.sum_hi, sum_lo: f.sum_lo, count: f.count };
        a.check()?;
        Ok(a)
    }
}

impl Avg {
    /// Checks that some `count` 64-bit values can have this sum, and that there is at least one.
    pub fn check(&self) -> Result<(), InvalidAvg> {
        if self.count == 0 {
            return Err(InvalidAvg::ZeroCount);
        }
        // count < 2^64, so count * 2^63 < 2^127 fits in u128.
        if self.sum().unsigned_abs() > (self.count as u128) << 63 {
            return Err(InvalidAvg::ImpossibleSum { sum: self.sum(), count: self.count });
        }
        Ok(())
    }
    /// A state with the given sum and count.
    pub fn new(sum: i128, count: u64) -> Self {
        Avg { sum_hi: (sum >> 64) as i64, sum_lo: sum as u64, count }
    }
    /// Sum of the values seen.
    #[inline]
    pub fn sum(&self) -> i128 {
        ((self.sum_hi as i128) << 64) | self.sum_lo as i128
    }
    /// Number of values seen.
    #[inline]
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Adds one value.
    #[inline]
    pub fn add(&mut self, v: i64) {
        let (lo, carry) = self.sum_lo.overflowing_add(v as u64);
        // Sign-extend v into the high word, plus the carry out of the low word.
        self.sum_hi = self.sum_hi.wrapping_add((v >> 63) + carry as i64);
        self.sum_lo = lo;
        self.count += 1;
    }
    /// The mean, correctly rounded to the nearest f64.
    #[inline]
    pub fn mean(&self) -> f64 {
        if self.sum_hi == 0 && self.sum_lo < (1 << 53) && self.count < (1 << 53) {
            return (self.sum_lo as i64) as f64 / (self.count as i64) as f64;
        }
        mean(self.sum(), self.count)
    }
}

/// `sum / count` rounded once to the nearest f64 (ties to even), exact for any sum and count.
pub fn mean(sum: i128, count: u64) -> f64 {
    if count == 0 {
        return f64::NAN;
    }
    if sum == 0 {
        return 0.0;
    }
    let neg = sum < 0;
    let n = sum.unsigned_abs();
    let d = count as u128;
    const EXACT: u128 = 1 << 53;
    let r = if n <= EXACT && d <= EXACT {
        n as f64 / d as f64
    } else {
        // Long division to at least 56 significant bits, remainder folded into a sticky bit.
        let mut shift = 0i32;
        let mut n2 = n;
        while n2 / d < (1u128 << 55) {
            n2 <<= 1;
            shift += 1;
        }
        let (q, rem) = (n2 / d, n2 % d);
        let q = if rem != 0 { q | 1 } else { q };
        (q as f64) * 2f64.powi(-shift)
    };
    if neg {
        -r
    } else {
        r
    }
}

/// How the lab job is configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    /// `print(num)`: elements printed per batch; `None` prints nothing.
    pub print: Option<usize>,
    /// What to do with malformed records.
    pub malformed: MalformedPolicy,
    /// `mapWithState` options.
    pub state: StateSpecOptions,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig { print: Some(10), malformed: MalformedPolicy::Skip, state: StateSpecOptions::default() }
    }
}

/// The mapped element: (key, running average).
pub type Output = (Key, f64);
type Stream = MapWithState<Input<LabParser>, AverageFn, Key, Avg, Output>;

/// The lab's record parser: `KEY,VALUE` into (key, value).
#[derive(Debug, Clone, Copy, Default)]
pub struct LabParser;

impl RecordParser for LabParser {
    type Item = (Key, i64);
    type Error = LabParseError;
    #[inline(always)]
    fn parse(&mut self, rec: RecordRef<'_>) -> Result<(Key, i64), LabParseError> {
        // As parse_record (same checks, same order), building the key straight from its bytes.
        let (key, rest) = split_record(rec.value)?;
        let key = Key::from_utf8(key).map_err(|_| LabParseError::KeyNotUtf8)?;
        Ok((key, parse_i64(rest)?))
    }
}

/// The lab's mapping function, [`average`], as a nameable type.
#[derive(Debug, Clone, Copy, Default)]
pub struct AverageFn;

impl MappingFunction<Key, i64, Avg> for AverageFn {
    type Output = Output;
    #[inline(always)]
    fn call(
        &mut self,
        _time: Time,
        key: &Key,
        value: Option<i64>,
        state: &mut State<'_, Avg>,
    ) -> Result<Option<Output>, StateError> {
        average(key, value, state).map(Some)
    }
    #[inline(always)]
    fn call_each(
        &mut self,
        _time: Time,
        key: &Key,
        value: Option<i64>,
        state: &mut State<'_, Avg>,
        sink: &mut impl FnMut(Output),
    ) -> Result<(), StateError> {
        sink(average(key, value, state)?);
        Ok(())
    }
}

/// The mapping function: add the value, emit the new average; a timing-out key emits its last average.
#[inline(always)]
pub fn average(key: &Key, value: Option<i64>, state: &mut State<'_, Avg>) -> Result<Output, StateError> {
    match value {
        Some(v) => {
            let mut a = state.get_option().copied().unwrap_or_default();
            a.add(v);
            state.update(a)?;
            Ok((key.clone(), a.mean()))
        }
        None => Ok((key.clone(), state.get()?.mean())),
    }
}

/// The lab's job: input -> mapWithState(average) -> print, as a graph; it also keeps each batch's mapped output
/// (all of it, or with [`keep_printed_only`](Self::keep_printed_only) what `print` shows).
pub struct LabJob {
    config: LabConfig,
    graph: Graph,
    stream: Shared<Stream>,
    out: Rc<RefCell<LabOut>>,
}

struct LabOut {
    items: Vec<Output>,
    keep: usize,
}

/// The lab's output operation: keeps the mapped output and prints it.
struct LabOutput {
    parent: Shared<Stream>,
    print: Option<usize>,
    out: Rc<RefCell<LabOut>>,
}

impl OutputOp for LabOutput {
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.out.borrow_mut().items.clear();
        self.parent.begin(ctx)
    }
    #[inline]
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let mut out = self.out.borrow_mut();
        let out = &mut *out;
        let keep = out.keep;
        // At most one output per record: size the buffer once per part rather than growing it record by record.
        if keep == usize::MAX {
            out.items.reserve(ctx.input.len_hint());
        }
        let items = &mut out.items;
        self.parent.feed_each(ctx, |x| {
            if items.len() < keep {
                items.push(x)
            }
        })
    }
    fn finish(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        let mut out = self.out.borrow_mut();
        let out = &mut *out;
        let keep = out.keep;
        let items = &mut out.items;
        let has = self.parent.finish_each(ctx, |x| {
            if items.len() < keep {
                items.push(x)
            }
        })?;
        if let (true, Some(num)) = (has, self.print) {
            write_batch(ctx.printed, ctx.time, &out.items, num);
        }
        Ok(())
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.parent.visit_state(visit)
    }
}

/// The lab job's checkpointable state.
pub type LabCheckpoint = MapWithStateCheckpoint<Key, Avg>;

impl LabJob {
    /// A job with the given configuration and no state.
    pub fn new(config: LabConfig) -> Self {
        Self::with_initial_state(config, Vec::new())
    }

    /// A job whose state starts from `initial` (stamped with the first batch's time).
    pub fn with_initial_state(config: LabConfig, initial: Vec<(Key, Avg)>) -> Self {
        let spec = StateSpec::with_mapping(AverageFn).options(config.state.clone()).initial_state(initial);
        let stream = Shared::new(input(LabParser, config.malformed).map_with_state(spec));
        let out = Rc::new(RefCell::new(LabOut { items: Vec::new(), keep: usize::MAX }));
        let graph = Graph::new().output(LabOutput { parent: stream.consumer(), print: config.print, out: out.clone() });
        LabJob { config, graph, stream, out }
    }

    /// Keeps of each batch's mapped output only what `print(num)` shows (its first `num + 1` elements), so that a
    /// batch's output needs no memory per record; the printed text is unchanged. [`last_output`](Self::last_output)
    /// then holds only those elements.
    pub fn keep_printed_only(&mut self) {
        self.out.borrow_mut().keep = self.config.print.map_or(0, |num| num.saturating_add(1));
    }

    /// The configuration.
    pub fn config(&self) -> &LabConfig {
        &self.config
    }
    /// The last batch's mapped output, in processing order.
    pub fn last_output(&self) -> Vec<Output> {
        self.out.borrow().items.clone()
    }
    /// The last element of the last batch's mapped output.
    pub fn last_element(&self) -> Option<Output> {
        self.out.borrow().items.last().cloned()
    }
    /// Every key's (sum, count), sorted by key.
    pub fn snapshot(&self) -> Vec<(Key, Avg)> {
        self.stream.with(|s| s.state().sorted_states())
    }
    /// Number of keys with state.
    pub fn key_count(&self) -> usize {
        self.stream.with(|s| s.state().len())
    }
    /// Every key's current average, sorted by key.
    pub fn averages(&self) -> Vec<(Key, f64)> {
        self.snapshot().into_iter().map(|(k, a)| (k, a.mean())).collect()
    }
    /// The state to checkpoint.
    pub fn checkpoint(&self) -> LabCheckpoint {
        self.stream.with(|s| s.checkpoint())
    }
    /// The state to checkpoint, encoded as `checkpoint()` serialises (entries unsorted; no copy of the state).
    pub fn checkpoint_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.stream.with(|s| dstream_core::stateful::encode_into(&s.checkpoint_ref(), &mut out)).expect("encodes");
        out
    }
    /// Restores state from a checkpoint; one that lists a key twice is refused.
    pub fn restore(&mut self, cp: LabCheckpoint) -> Result<(), dstream_core::stateful::StateCodecError> {
        self.stream.with_mut(|s| s.restore(cp))
    }
    /// Appends the JVM text of one output element to `s`.
    pub fn write_element(s: &mut String, e: &Output) {
        s.push('(');
        s.push_str(e.0.as_str());
        s.push(',');
        write_double(s, e.1);
        s.push(')');
    }
}

impl Job for LabJob {
    fn begin_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.graph.begin_batch(ctx)
    }
    fn feed(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.graph.feed(ctx)
    }
    fn finish_batch(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.graph.finish_batch(ctx)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        self.graph.visit_state(visit)
    }
}

/// The lab program on the graph API, as `dstream run` runs it: `messages` parsed as `KEY,VALUE` (the graph's
/// malformed policy applies), `map_with_state(average)` with `config.state`, and `print(config.print)` if any.
pub fn lab_program(messages: &InputStream, config: &LabConfig) {
    let spec = StateSpec::with_mapping(AverageFn).options(config.state.clone());
    let averages = messages.parse(LabParser).map_with_state(spec);
    if let Some(num) = config.print {
        averages.print(num);
    }
}

/// The lab job's fingerprint (see [`Fingerprint::of_job`]), that of [`lab_program`]: the state's types and
/// timeout; with no timeout the batch interval does not affect state either. [`LabJob`] has the same.
pub fn fingerprint(topic: &str, partitions: u32, config: &LabConfig, interval: Duration) -> Fingerprint {
    let g = GraphBuilder::new();
    lab_program(&g.records_of(topic), config);
    Fingerprint::of_job(topic, partitions, JOB_NAME, &mut g.build(), interval)
}

/// A recording header for the lab job with `config`, on a grid starting at `zero`.
pub fn recording_header(
    topic: &str,
    partitions: u32,
    batch_interval: Duration,
    zero: Time,
    config: &LabConfig,
) -> RecordingHeader {
    RecordingHeader {
        topic: topic.to_string(),
        partitions,
        batch_interval,
        zero,
        job: JOB_NAME.to_string(),
        params: crate::jobs::lab_params(config),
    }
}

/// The lab job's state in a checkpoint's job state (its one `map_with_state` operator), if it holds one.
pub fn lab_state(state: &JobState) -> Option<Result<LabCheckpoint, StateCodecError>> {
    match state.as_slice() {
        [op] if op.kind == "map_with_state" => Some(dstream_core::stateful::decode(&op.bytes)),
        _ => None,
    }
}

/// Writes a lab checkpoint's state as a table sorted by key, one `KEY<TAB>SUM<TAB>COUNT<TAB>AVERAGE` line per key
/// (the average as the JVM prints a double). A key's backslash, tab, newline and carriage return are written as
/// `\\`, `\t`, `\n` and `\r`, so every key is one line and one field. A state listing a key twice is refused
/// (`InvalidData`) before anything is written.
pub fn write_lab_state(state: &LabCheckpoint, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut entries: Vec<(&Key, &Avg)> = state.state.entries.iter().map(|(k, e)| (k, &e.state)).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        let msg = format!("key {:?} appears twice in the state", w[0].0.as_str());
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
    }
    let mut line = String::new();
    for (k, a) in entries {
        line.clear();
        for c in k.as_str().chars() {
            match c {
                '\\' => line.push_str("\\\\"),
                '\t' => line.push_str("\\t"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                c => line.push(c),
            }
        }
        line.push('\t');
        line.push_str(&a.sum().to_string());
        line.push('\t');
        line.push_str(&a.count().to_string());
        line.push('\t');
        dstream_core::jvm::write_double(&mut line, a.mean());
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_job_and_the_lab_program_have_one_fingerprint() {
        let mut config = LabConfig::default();
        for timeout in [None, Some(Duration(6000))] {
            config.state.timeout = timeout;
            let mut job = LabJob::new(config.clone());
            let of_job = Fingerprint::of_job("avg", 2, JOB_NAME, &mut job, Duration(2000));
            assert_eq!(fingerprint("avg", 2, &config, Duration(2000)), of_job);
        }
    }

    #[test]
    fn parser_accepts() {
        assert_eq!(parse_record(b"a,12"), Ok(("a", 12)));
        assert_eq!(parse_record(b"a,+12"), Ok(("a", 12)));
        assert_eq!(parse_record(b"a,-12"), Ok(("a", -12)));
        assert_eq!(parse_record(b"a,-0"), Ok(("a", 0)));
        assert_eq!(parse_record(b"a,007"), Ok(("a", 7)));
        assert_eq!(parse_record(b"key with space,1"), Ok(("key with space", 1)));
        assert_eq!(parse_record("é,1".as_bytes()), Ok(("é", 1)));
        assert_eq!(parse_record(b"a,9223372036854775807"), Ok(("a", i64::MAX)));
        assert_eq!(parse_record(b"a,-9223372036854775808"), Ok(("a", i64::MIN)));
    }

    #[test]
    fn parser_rejects() {
        use LabParseError::*;
        let cases: &[(&[u8], LabParseError)] = &[
            (b"", NoComma),
            (b"a", NoComma),
            (b"a 1", NoComma),
            (b",1", EmptyKey),
            (b"\xff,1", KeyNotUtf8),
            (b"a,", EmptyValue),
            (b"a,+", NotAnInteger),
            (b"a,-", NotAnInteger),
            (b"a, 1", NotAnInteger),
            (b"a,1 ", NotAnInteger),
            (b"a,1,2", NotAnInteger),
            (b"a,1.5", NotAnInteger),
            (b"a,1e3", NotAnInteger),
            (b"a,0x10", NotAnInteger),
            (b"a,--1", NotAnInteger),
            (b"a,1\r", NotAnInteger),
            ("a,١".as_bytes(), NotAnInteger),
            (b"a,9223372036854775808", OutOfRange),
            (b"a,-9223372036854775809", OutOfRange),
            (b"a,99999999999999999999999", OutOfRange),
        ];
        for (input, want) in cases {
            assert_eq!(parse_record(input), Err(*want), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn mean_is_correctly_rounded() {
        assert_eq!(mean(37, 3), 37.0 / 3.0);
        assert_eq!(mean(25, 2), 12.5);
        assert_eq!(mean(-7, 2), -3.5);
        // Sums beyond 2^53: compare with exact rational rounding done by hand.
        let big = i64::MAX as i128;
        assert_eq!(mean(big * 2, 2), 9_223_372_036_854_775_808.0); // 2^63 - 1 rounds to 2^63
        assert_eq!(mean(big, 1), 9_223_372_036_854_775_808.0);
        // (2^53 + 1) / 1 rounds to even: 2^53
        assert_eq!(mean((1i128 << 53) + 1, 1), 9007199254740992.0);
        // (2^53 + 3) / 1 rounds up to 2^53 + 4
        assert_eq!(mean((1i128 << 53) + 3, 1), 9007199254740996.0);
        // (2^54 + 2 + 1) / 2 = 2^53 + 1.5 -> nearest is 2^53 + 2
        assert_eq!(mean((1i128 << 54) + 3, 2), 9007199254740994.0);
        assert_eq!(mean(i64::MIN as i128, 1), -9_223_372_036_854_775_808.0);
        assert!(mean(1, 0).is_nan());
    }

    /// Issue 14 item 8: a loaded sum of 0 with a count beyond 2^53 once looped forever in the long division.
    #[test]
    fn mean_of_a_zero_sum_over_any_count_returns() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let got: Vec<f64> = [1u64 << 53, (1 << 53) + 1, 1 << 60, u64::MAX]
                .into_iter()
                .map(|n| Avg::new(0, n).mean())
                .chain([mean(0, u64::MAX), mean(1, u64::MAX), mean(-1, 1 << 54)])
                .collect();
            let _ = tx.send(got);
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("mean returns");
        assert_eq!(&got[..5], &[0.0; 5]);
        assert_eq!(got[5], 1.0 / u64::MAX as f64);
        assert_eq!(got[6], -(2f64.powi(-54)));
    }

    /// Issue 14 item 8: what no run can store is refused when decoded, and the refusal names what is wrong.
    #[test]
    fn decoding_refuses_a_zero_count_and_an_impossible_sum() {
        let round = |a: Avg| postcard::from_bytes::<Avg>(&postcard::to_stdvec(&a).unwrap());
        assert_eq!(round(Avg::new(5, 1)).unwrap(), Avg::new(5, 1));
        let min = Avg::new(i64::MIN as i128 * 3, 3);
        assert_eq!(round(min).unwrap(), min);
        assert!(round(Avg::new(0, 0)).is_err());
        assert!(round(Avg::new(7, 0)).is_err());
        assert!(round(Avg::new(i64::MIN as i128 * 3 - 1, 3)).is_err());
        assert!(round(Avg::new(i128::MAX, u64::MAX)).is_err());
        assert_eq!(Avg::new(1, 0).check(), Err(InvalidAvg::ZeroCount));
        assert_eq!(
            Avg::new(1 << 64, 1).check().unwrap_err().to_string(),
            format!("a sum of {} cannot come from 1 64-bit values", 1i128 << 64)
        );
    }

    /// Issue 14 item 8: a snapshot that lists a key twice is refused by name; the state is left as it was.
    #[test]
    fn a_snapshot_with_a_duplicate_key_is_refused() {
        use dstream_core::state::{StateEntry, StateSnapshot};
        let entry =
            |k: &str, n: u64| (Key::new(k), StateEntry { state: Avg::new(n as i128, n), updated_at: Time(1000) });
        let cp = |entries| LabCheckpoint { initialized: true, state: StateSnapshot { num_partitions: 2, entries } };
        let mut job = LabJob::new(LabConfig::default());
        job.restore(cp(vec![entry("a", 1), entry("b", 2)])).unwrap();
        let err = job.restore(cp(vec![entry("c", 1), entry("a", 1), entry("a", 2)])).unwrap_err();
        assert_eq!(err.to_string(), r#"key "a" appears twice in the snapshot"#);
        let mut keys: Vec<String> =
            job.checkpoint().state.entries.iter().map(|(k, _)| k.as_str().to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        // The same through the checkpoint's byte encoding, as a run restores it.
        let bytes = postcard::to_stdvec(&cp(vec![entry("x", 1), entry("x", 1)])).unwrap();
        let mut any = LabJob::new(LabConfig::default());
        let mut errs = Vec::new();
        any.visit_state(&mut StateVisit::new(&mut |op| errs.push(op.restore(&bytes).unwrap_err().to_string())));
        assert_eq!(errs, [r#"key "x" appears twice in the snapshot"#]);
    }
}

#[cfg(test)]
mod avg_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn avg_sum_matches_i128(values in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut a = Avg::default();
            let mut want: i128 = 0;
            for v in &values {
                a.add(*v);
                want += *v as i128;
                prop_assert_eq!(a.sum(), want);
            }
            prop_assert_eq!(a.count(), values.len() as u64);
            prop_assert_eq!(Avg::new(want, a.count()), a);
            if !values.is_empty() {
                prop_assert_eq!(a.mean(), mean(want, values.len() as u64));
            }
        }
    }
}
