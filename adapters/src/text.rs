//! The text form of a recording, for hand-written fixtures; converts to and from [`Recording`] losslessly.
//!
//! ```text
//! # A comment: lines starting with '#' are ignored, and so are blank lines.
//! dstream-recording 1          <- required first line
//! topic avg                    <- header lines, all optional (defaults: avg, 1, 2s, 0, average)
//! partitions 2
//! batch-interval 2s
//! zero 0
//! job average
//! param print 10               <- job parameters, in order, names may repeat
//! --- batch                    <- a batch; its time defaults to the previous batch's + interval
//! a,1                          <- a record: partition 0, the next offset, timestamp 0, no key
//! [p=1] b,2                    <- attributes: p= partition, o= offset, ts= timestamp, key= key
//! [p=1 o=7 ts=1700 key=k] c,3
//! "#not a comment\n"           <- a quoted value: \\ \" \n \r \t \xHH
//! ""                           <- the empty value
//! --- batch 6000 ms ranges 0:2..2 1:8..8
//! ```
//!
//! Header lines come before the first `--- batch`; after it, every line that is not blank or a comment is a
//! record. Defaults: a record's offset is one past the previous record of its partition in the batch, starting
//! where the partition's previous range ended (or at its explicit range's `from`). A batch's ranges default
//! to `[end of previous range, max offset + 1)` for partitions `0..partitions`; `ranges` lists them all
//! explicitly. A value is written raw unless it is empty, starts with `#`, `[`, `"` or `---`, has leading or
//! trailing spaces, or holds control characters or bytes that are not UTF-8: then it is quoted.

use crate::recording::{Frame, Record, Recording, RecordingHeader, MAX_PARTITIONS};
use dstream_core::{Duration, OffsetRange, Time};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The required first line (after comments) of the text form.
pub const TEXT_MAGIC: &str = "dstream-recording 1";

/// The job a text recording names when it has no `job` line (the name the `dstream` command gives its lab job).
pub const DEFAULT_JOB: &str = "average";

/// A text recording that does not parse, with the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TextError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: TextErrorReason,
}

/// What is wrong with a line of a text recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextErrorReason {
    /// The first line is not `dstream-recording 1`.
    #[error("expected \"{TEXT_MAGIC}\" as the first line")]
    MissingMagic,
    /// An unknown header line.
    #[error("unknown header line {0:?} (expected topic, partitions, batch-interval, zero, job, param or --- batch)")]
    UnknownHeader(String),
    /// A number that does not parse.
    #[error("{what}: {text:?} is not a valid number")]
    BadNumber {
        /// What the number is.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A duration that does not parse.
    #[error("batch interval {0:?} is not a duration such as 2s or 500ms")]
    BadDuration(String),
    /// A quoted string is malformed.
    #[error("bad quoted string: {0}")]
    BadQuote(&'static str),
    /// Something follows a closing quote.
    #[error("unexpected text after the closing quote: {0:?}")]
    TrailingText(String),
    /// A record attribute is unknown or malformed.
    #[error("bad record attribute {0:?} (expected p=, o=, ts= or key=)")]
    BadAttribute(String),
    /// An attribute list has no closing `]`.
    #[error("record attributes without a closing ']'")]
    UnclosedAttributes,
    /// A range is not `P:FROM..UNTIL`.
    #[error("bad range {0:?}: expected PARTITION:FROM..UNTIL")]
    BadRange(String),
    /// A batch line has unexpected words.
    #[error("bad batch line: expected '--- batch [TIME [ms]] [ranges P:FROM..UNTIL ...]', found {0:?}")]
    BadBatchLine(String),
    /// A `param` line without a value.
    #[error("param line needs a name and a value")]
    BadParam,
}

fn err(line: usize, reason: TextErrorReason) -> TextError {
    TextError { line, reason }
}

// ---------------------------------------------------------------------------------------------
// Quoting

/// True if `s` can be written without quotes as a whole-line value.
fn raw_ok(s: &[u8]) -> bool {
    let Ok(t) = std::str::from_utf8(s) else { return false };
    !t.is_empty()
        && !t.starts_with(['#', '[', '"'])
        && !t.starts_with("---")
        && !t.starts_with(char::is_whitespace)
        && !t.ends_with(char::is_whitespace)
        && !t.chars().any(|c| c.is_control())
}

/// True if `s` can be written without quotes as a token (no spaces, `]` or `=`).
fn token_ok(s: &[u8]) -> bool {
    raw_ok(s) && !s.iter().any(|&b| b == b' ' || b == b']' || b == b'=')
}

/// Appends `s` quoted, escaping what needs it.
fn quote(out: &mut String, s: &[u8]) {
    out.push('"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
}

fn write_value(out: &mut String, s: &[u8]) {
    if raw_ok(s) {
        out.push_str(std::str::from_utf8(s).expect("raw_ok checked UTF-8"));
    } else {
        quote(out, s);
    }
}

fn write_token(out: &mut String, s: &[u8]) {
    if token_ok(s) {
        out.push_str(std::str::from_utf8(s).expect("token_ok checked UTF-8"));
    } else {
        quote(out, s);
    }
}

/// Parses a quoted string at the start of `s` (which starts with `"`); returns the bytes and the rest.
fn unquote(s: &str) -> Result<(Vec<u8>, &str), TextErrorReason> {
    let mut out = Vec::new();
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match it.next().map(|(_, c)| c) {
                Some('\\') => out.push(b'\\'),
                Some('"') => out.push(b'"'),
                Some('n') => out.push(b'\n'),
                Some('r') => out.push(b'\r'),
                Some('t') => out.push(b'\t'),
                Some('x') => {
                    let hi = it.next().and_then(|(_, c)| c.to_digit(16));
                    let lo = it.next().and_then(|(_, c)| c.to_digit(16));
                    match (hi, lo) {
                        (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                        _ => return Err(TextErrorReason::BadQuote("\\x needs two hex digits")),
                    }
                }
                _ => return Err(TextErrorReason::BadQuote("unknown escape (use \\\\ \\\" \\n \\r \\t \\xHH)")),
            },
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    Err(TextErrorReason::BadQuote("no closing quote"))
}

/// A whole-line value: quoted (nothing may follow) or raw.
fn parse_value(s: &str) -> Result<Vec<u8>, TextErrorReason> {
    if s.starts_with('"') {
        let (v, rest) = unquote(s)?;
        if !rest.trim().is_empty() {
            return Err(TextErrorReason::TrailingText(rest.to_string()));
        }
        Ok(v)
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

/// A token: quoted, or raw up to a space, `]` or end; returns the bytes and the rest.
fn parse_token(s: &str) -> Result<(Vec<u8>, &str), TextErrorReason> {
    if s.starts_with('"') {
        unquote(s)
    } else {
        let end = s.find([' ', ']']).unwrap_or(s.len());
        Ok((s.as_bytes()[..end].to_vec(), &s[end..]))
    }
}

fn utf8(v: Vec<u8>, line: usize) -> Result<String, TextError> {
    String::from_utf8(v).map_err(|_| err(line, TextErrorReason::BadQuote("header text must be UTF-8")))
}

// ---------------------------------------------------------------------------------------------
// Defaults shared by the parser and the printer, so that they agree byte for byte.

/// Per-partition position where the next batch's range starts.
#[derive(Default)]
struct Cursors(BTreeMap<i32, i64>);

impl Cursors {
    fn get(&self, p: i32) -> i64 {
        self.0.get(&p).copied().unwrap_or(0)
    }
    /// Start offsets for records of a batch: explicit ranges' `from`, else the cursors.
    fn starts(&self, explicit: Option<&[OffsetRange]>) -> BTreeMap<i32, i64> {
        let mut m = self.0.clone();
        if let Some(rs) = explicit {
            for r in rs {
                m.insert(r.partition, r.from);
            }
        }
        m
    }
    /// The ranges a batch gets when none are written.
    fn derive(&self, partitions: u32, records: &[Record]) -> Vec<OffsetRange> {
        (0..partitions.min(MAX_PARTITIONS) as i32)
            .map(|p| {
                let from = self.get(p);
                let max = records.iter().filter(|r| r.partition == p).map(|r| r.offset.saturating_add(1)).max();
                OffsetRange { partition: p, from, until: max.map_or(from, |m| m.max(from)) }
            })
            .collect()
    }
    fn advance(&mut self, ranges: &[OffsetRange]) {
        for r in ranges {
            self.0.insert(r.partition, r.until);
        }
    }
}

fn default_time(prev: Option<Time>, header: &RecordingHeader) -> Time {
    Time(prev.unwrap_or(header.zero).0.saturating_add(header.batch_interval.0))
}

// ---------------------------------------------------------------------------------------------
// Printing

/// The text form of a recording.
pub fn to_text(rec: &Recording) -> String {
    let h = &rec.header;
    let mut out = String::new();
    out.push_str(TEXT_MAGIC);
    out.push_str("\ntopic ");
    write_value(&mut out, h.topic.as_bytes());
    let _ = write!(out, "\npartitions {}\nbatch-interval {}\nzero {}\njob ", h.partitions, h.batch_interval, h.zero.0);
    write_value(&mut out, h.job.as_bytes());
    out.push('\n');
    for (name, value) in &h.params {
        out.push_str("param ");
        write_token(&mut out, name.as_bytes());
        out.push(' ');
        write_value(&mut out, value.as_bytes());
        out.push('\n');
    }
    let mut cursors = Cursors::default();
    for f in &rec.frames {
        let derived = cursors.derive(h.partitions, &f.records);
        let explicit = f.ranges != derived;
        let _ = write!(out, "--- batch {} ms", f.time.0);
        if explicit {
            out.push_str(" ranges");
            for r in &f.ranges {
                let _ = write!(out, " {}:{}..{}", r.partition, r.from, r.until);
            }
        }
        out.push('\n');
        let mut next = cursors.starts(explicit.then_some(&f.ranges[..]));
        for r in &f.records {
            let default_offset = next.get(&r.partition).copied().unwrap_or(0);
            let mut attrs = String::new();
            if r.partition != 0 {
                let _ = write!(attrs, " p={}", r.partition);
            }
            if r.offset != default_offset {
                let _ = write!(attrs, " o={}", r.offset);
            }
            if r.timestamp != 0 {
                let _ = write!(attrs, " ts={}", r.timestamp);
            }
            if let Some(k) = &r.key {
                attrs.push_str(" key=");
                write_token(&mut attrs, k);
            }
            if !attrs.is_empty() {
                out.push('[');
                out.push_str(&attrs[1..]);
                out.push_str("] ");
            }
            write_value(&mut out, &r.value);
            out.push('\n');
            next.insert(r.partition, r.offset.saturating_add(1));
        }
        cursors.advance(&f.ranges);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing

struct Open {
    time: Time,
    explicit: Option<Vec<OffsetRange>>,
    next: BTreeMap<i32, i64>,
    records: Vec<Record>,
}

/// Parses the text form.
pub fn from_text(text: &str) -> Result<Recording, TextError> {
    let mut header = RecordingHeader {
        topic: "avg".to_string(),
        partitions: 1,
        batch_interval: Duration::from_secs(2),
        zero: Time(0),
        job: DEFAULT_JOB.to_string(),
        params: Vec::new(),
    };
    let mut frames: Vec<Frame> = Vec::new();
    let mut cursors = Cursors::default();
    let mut open: Option<Open> = None;
    let mut seen_magic = false;
    let mut last_line = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        last_line = n;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !seen_magic {
            if line.trim_end() != TEXT_MAGIC {
                return Err(err(n, TextErrorReason::MissingMagic));
            }
            seen_magic = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("---") {
            if let Some(o) = open.take() {
                close(o, &header, &mut cursors, &mut frames);
            }
            let prev = frames.last().map(|f| f.time);
            open = Some(parse_batch_line(rest, n, &header, prev, &cursors)?);
            continue;
        }
        match open.as_mut() {
            None => parse_header_line(line, n, &mut header)?,
            Some(o) => {
                let r = parse_record(line, n, &mut o.next)?;
                o.records.push(r);
            }
        }
    }
    if !seen_magic {
        return Err(err(last_line.max(1), TextErrorReason::MissingMagic));
    }
    if let Some(o) = open.take() {
        close(o, &header, &mut cursors, &mut frames);
    }
    Ok(Recording { header, frames })
}

fn close(o: Open, header: &RecordingHeader, cursors: &mut Cursors, frames: &mut Vec<Frame>) {
    let ranges = o.explicit.unwrap_or_else(|| cursors.derive(header.partitions, &o.records));
    cursors.advance(&ranges);
    frames.push(Frame { time: o.time, ranges, records: o.records });
}

fn parse_i64(text: &str, what: &'static str, line: usize) -> Result<i64, TextError> {
    text.parse().map_err(|_| err(line, TextErrorReason::BadNumber { what, text: text.to_string() }))
}

fn parse_header_line(line: &str, n: usize, h: &mut RecordingHeader) -> Result<(), TextError> {
    let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
    let value = || parse_value(rest).map_err(|r| err(n, r));
    match key {
        "topic" => h.topic = utf8(value()?, n)?,
        "job" => h.job = utf8(value()?, n)?,
        "partitions" => {
            h.partitions = rest
                .trim()
                .parse()
                .ok()
                .filter(|&p| p <= MAX_PARTITIONS)
                .ok_or_else(|| err(n, TextErrorReason::BadNumber { what: "partitions", text: rest.to_string() }))?
        }
        "batch-interval" => {
            h.batch_interval =
                rest.trim().parse().map_err(|_| err(n, TextErrorReason::BadDuration(rest.to_string())))?
        }
        "zero" => h.zero = Time(parse_i64(rest.trim(), "zero", n)?),
        "param" => {
            if rest.is_empty() {
                return Err(err(n, TextErrorReason::BadParam));
            }
            let (name, after) = parse_token(rest).map_err(|r| err(n, r))?;
            let after = after.strip_prefix(' ').ok_or(err(n, TextErrorReason::BadParam))?;
            let v = parse_value(after).map_err(|r| err(n, r))?;
            h.params.push((utf8(name, n)?, utf8(v, n)?));
        }
        _ => return Err(err(n, TextErrorReason::UnknownHeader(line.to_string()))),
    }
    Ok(())
}

fn parse_batch_line(
    rest: &str,
    n: usize,
    header: &RecordingHeader,
    prev: Option<Time>,
    cursors: &Cursors,
) -> Result<Open, TextError> {
    let bad = || err(n, TextErrorReason::BadBatchLine(format!("---{rest}")));
    let mut words = rest.split_whitespace().peekable();
    if words.next() != Some("batch") {
        return Err(bad());
    }
    let mut time = default_time(prev, header);
    if let Some(w) = words.peek() {
        if *w != "ranges" {
            time = Time(parse_i64(w, "batch time", n)?);
            words.next();
            if words.peek() == Some(&"ms") {
                words.next();
            }
        }
    }
    let mut explicit = None;
    if let Some(w) = words.next() {
        if w != "ranges" {
            return Err(bad());
        }
        let mut rs = Vec::new();
        for r in words {
            rs.push(parse_range(r).ok_or_else(|| err(n, TextErrorReason::BadRange(r.to_string())))?);
        }
        explicit = Some(rs);
    }
    let next = cursors.starts(explicit.as_deref());
    Ok(Open { time, explicit, next, records: Vec::new() })
}

fn parse_range(s: &str) -> Option<OffsetRange> {
    let (p, fu) = s.split_once(':')?;
    let (f, u) = fu.split_once("..")?;
    Some(OffsetRange { partition: p.parse().ok()?, from: f.parse().ok()?, until: u.parse().ok()? })
}

fn parse_record(line: &str, n: usize, next: &mut BTreeMap<i32, i64>) -> Result<Record, TextError> {
    let (mut partition, mut offset, mut timestamp, mut key) = (0i32, None, 0i64, None);
    let mut rest = line;
    if let Some(attrs) = line.strip_prefix('[') {
        let mut s = attrs;
        loop {
            s = s.trim_start_matches(' ');
            if let Some(after) = s.strip_prefix(']') {
                rest = after.strip_prefix(' ').unwrap_or(after);
                break;
            }
            if s.is_empty() {
                return Err(err(n, TextErrorReason::UnclosedAttributes));
            }
            let (name, after) = s.split_once('=').ok_or_else(|| err(n, TextErrorReason::BadAttribute(s.into())))?;
            let (val, after) = parse_token(after).map_err(|r| err(n, r))?;
            let text = String::from_utf8_lossy(&val).into_owned();
            match name {
                "p" => partition = text.parse().map_err(|_| err(n, TextErrorReason::BadNumber { what: "p", text }))?,
                "o" => offset = Some(parse_i64(&text, "o", n)?),
                "ts" => timestamp = parse_i64(&text, "ts", n)?,
                "key" => key = Some(val),
                _ => return Err(err(n, TextErrorReason::BadAttribute(format!("{name}=")))),
            }
            s = after;
        }
    }
    let value = parse_value(rest).map_err(|r| err(n, r))?;
    let offset = offset.unwrap_or_else(|| next.get(&partition).copied().unwrap_or(0));
    next.insert(partition, offset.saturating_add(1));
    Ok(Record { partition, offset, timestamp, key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "# comment\n\
dstream-recording 1\n\
topic avg\n\
partitions 2\n\
batch-interval 2s\n\
job average\n\
param print 10\n\
\n\
--- batch\n\
a,1\n\
[p=1] b,2\n\
[p=1 o=7 ts=1700 key=k] c,3\n\
\"#not a comment\\n\"\n\
\"\"\n\
--- batch 6000 ms ranges 0:2..2 1:8..8\r\n\
--- batch\n\
[key=\"a b\"] x\n";

    #[test]
    fn example_parses_as_documented() {
        let rec = from_text(EXAMPLE).unwrap();
        assert_eq!(rec.header.partitions, 2);
        assert_eq!(rec.header.params, vec![("print".to_string(), "10".to_string())]);
        assert_eq!(rec.frames.len(), 3);
        let f = &rec.frames[0];
        assert_eq!(f.time, Time(2000));
        let pos: Vec<(i32, i64, i64)> = f.records.iter().map(|r| (r.partition, r.offset, r.timestamp)).collect();
        assert_eq!(pos, vec![(0, 0, 0), (1, 0, 0), (1, 7, 1700), (0, 1, 0), (0, 2, 0)]);
        assert_eq!(f.records[2].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(f.records[3].value, b"#not a comment\n");
        assert_eq!(f.records[4].value, b"");
        assert_eq!(
            f.ranges,
            vec![OffsetRange { partition: 0, from: 0, until: 3 }, OffsetRange { partition: 1, from: 0, until: 8 }]
        );
        assert_eq!(rec.frames[1].time, Time(6000));
        assert_eq!(rec.frames[2].time, Time(8000));
        assert_eq!(rec.frames[2].records[0].key.as_deref(), Some(&b"a b"[..]));
        assert_eq!(rec.frames[2].records[0].offset, 2);
        assert_eq!(from_text(&to_text(&rec)).unwrap(), rec);
    }

    #[test]
    fn readme_example_parses_as_described() {
        let readme = include_str!("../../harness/README.md");
        let section = &readme[readme.find("## The text form").expect("section")..];
        let start = section.find("```text\n").expect("example") + 8;
        let example = &section[start..start + section[start..].find("```").expect("end")];
        let rec = from_text(example).unwrap();
        assert_eq!(rec.header.params.len(), 2);
        assert_eq!(rec.frames.len(), 3);
        let f = &rec.frames[0];
        let values: Vec<&[u8]> = f.records.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, vec![&b"a,1"[..], b"b,2", b"c,3", b"#not a comment", b"a,1\r", b""]);
        assert_eq!(
            f.ranges,
            vec![OffsetRange { partition: 0, from: 0, until: 4 }, OffsetRange { partition: 1, from: 0, until: 8 }]
        );
        assert_eq!(rec.frames[1].time, Time(6000));
        let last = &rec.frames[2];
        assert_eq!((last.time, last.records[0].partition, last.records[0].offset), (Time(8000), 1, 8));
        assert_eq!(last.records[0].value, b"line\nbreak");
        assert_eq!(from_text(&to_text(&rec)).unwrap(), rec);
    }

    #[test]
    fn awkward_values_round_trip() {
        let values: Vec<&[u8]> = vec![
            b"",
            b" ",
            b"#",
            b"[x] y",
            b"\"q\"",
            b"---",
            b"--",
            b"a\r",
            b"\r\n",
            b"\xff\xfe,1",
            "é,1".as_bytes(),
            b"tab\there",
            b"\x00\x7f",
            b"back\\slash",
            b"trailing ",
            "\u{2003}".as_bytes(),
            "\u{85}x".as_bytes(),
        ];
        let frames = vec![Frame {
            time: Time(2000),
            ranges: vec![OffsetRange { partition: 0, from: 0, until: values.len() as i64 }],
            records: values
                .iter()
                .enumerate()
                .map(|(i, v)| Record {
                    partition: 0,
                    offset: i as i64,
                    timestamp: -(i as i64),
                    key: (i % 2 == 0).then(|| v.to_vec()),
                    value: v.to_vec(),
                })
                .collect(),
        }];
        let rec = Recording {
            header: RecordingHeader {
                topic: "t p\"".into(),
                partitions: 1,
                batch_interval: Duration(500),
                zero: Time(-3),
                job: "#job".into(),
                params: vec![("a b".into(), " v ".into()), ("=".into(), "".into())],
            },
            frames,
        };
        let text = to_text(&rec);
        assert_eq!(from_text(&text).unwrap(), rec, "{text}");
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize)] = &[
            ("nope\n", 1),
            ("# c\ndstream-recording 1\ncolour red\n", 3),
            ("dstream-recording 1\n--- batch\n\"open\n", 3),
            ("dstream-recording 1\n--- batch\n\"a\" b\n", 3),
            ("dstream-recording 1\n--- batch\n[p=x] a\n", 3),
            ("dstream-recording 1\n--- batch\n[p=1 a\n", 3),
            ("dstream-recording 1\n--- batch\n[q=1] a\n", 3),
            ("dstream-recording 1\n--- batch ranges 0:1\n", 2),
            ("dstream-recording 1\n--- bunch\n", 2),
            ("dstream-recording 1\nbatch-interval 0s\n", 2),
            ("dstream-recording 1\n--- batch\n\"\\q\"\n", 3),
            ("", 1),
        ];
        for (text, line) in cases {
            let e = from_text(text).expect_err(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
        }
    }
}
