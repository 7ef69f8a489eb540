//! Input records, offset ranges and the reusable batch buffer that carries them into the engine.

use serde::{Deserialize, Serialize};

/// A record borrowed from a batch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The partition the record came from, as the engine numbers it: the Kafka partition of a job's first input,
    /// the input's index and the partition for others (see [`input_partition`]).
    pub partition: i32,
    /// Offset of the record within its partition.
    pub offset: i64,
    /// Record timestamp in ms (carried, never used for batching).
    pub timestamp: i64,
    /// Optional message key.
    pub key: Option<&'a [u8]>,
    /// Message value.
    pub value: &'a [u8],
}

/// Records handed over in (partition, offset) order in runs of consecutive records: a [`RecordBatch`], or records
/// read in place from where they arrived (e.g. fetched bytes), with no buffer of their own; a reader's loop over
/// a run is a tight one.
pub trait RecordSource {
    /// At least the number of records (to size buffers).
    fn len_hint(&self) -> usize;

    /// Calls `f` with every record, in runs, and returns how many there were; on an error, some of the records
    /// before it may have been handed over.
    fn for_each_run(&self, f: &mut dyn FnMut(Run<'_>)) -> Result<usize, SourceError>;

    /// Calls `f` for each span of offsets the last [`for_each_run`](Self::for_each_run) skipped unread (records
    /// that could not be read at all, e.g. a damaged record batch, under a policy that skips malformed input); the
    /// engine counts them as malformed records. None by default.
    fn for_each_skipped(&self, _f: &mut dyn FnMut(&crate::stream::Malformed)) {}

    /// Calls `f` for every record, as [`for_each_run`](Self::for_each_run) hands them over.
    fn for_each_record(&self, f: &mut dyn FnMut(RecordRef<'_>)) -> Result<usize, SourceError> {
        self.for_each_run(&mut |run| run.iter().for_each(&mut *f))
    }
}

/// Records a source gathers into one run of [`RecordRef`]s, at most (a buffer that stays in the CPU's cache).
pub const RUN_RECORDS: usize = 256;

/// Consecutive records a [`RecordSource`] hands over at once: records read into a slice, or a whole batch.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a>(RunOf<'a>);

#[derive(Debug, Clone, Copy)]
enum RunOf<'a> {
    Refs(&'a [RecordRef<'a>]),
    Batch(&'a RecordBatch),
}

impl<'a> Run<'a> {
    /// A run of records read into a slice.
    pub fn of_refs(refs: &'a [RecordRef<'a>]) -> Self {
        Run(RunOf::Refs(refs))
    }
    /// A whole batch as one run.
    pub fn of_batch(batch: &'a RecordBatch) -> Self {
        Run(RunOf::Batch(batch))
    }
    /// Number of records.
    pub fn len(&self) -> usize {
        match self.0 {
            RunOf::Refs(r) => r.len(),
            RunOf::Batch(b) => b.len(),
        }
    }
    /// True if the run holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The records in order.
    #[inline(always)]
    pub fn iter(&self) -> RunIter<'a> {
        RunIter(match self.0 {
            RunOf::Refs(r) => RunIterOf::Refs(r.iter()),
            RunOf::Batch(b) => RunIterOf::Batch(b.iter()),
        })
    }
}

/// The records of a [`Run`] in order.
pub struct RunIter<'a>(RunIterOf<'a>);

enum RunIterOf<'a> {
    Refs(std::slice::Iter<'a, RecordRef<'a>>),
    Batch(Iter<'a>),
}

impl<'a> Iterator for RunIter<'a> {
    type Item = RecordRef<'a>;
    #[inline(always)]
    fn next(&mut self) -> Option<RecordRef<'a>> {
        match &mut self.0 {
            RunIterOf::Refs(r) => r.next().copied(),
            RunIterOf::Batch(b) => b.next(),
        }
    }
}

/// Records could not be read from a [`RecordSource`] (e.g. damaged bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read records: {reason}")]
pub struct SourceError {
    /// What was wrong, naming where.
    pub reason: String,
}

impl RecordSource for RecordBatch {
    fn len_hint(&self) -> usize {
        self.len()
    }
    fn for_each_run(&self, f: &mut dyn FnMut(Run<'_>)) -> Result<usize, SourceError> {
        f(Run::of_batch(self));
        Ok(self.len())
    }
}

/// The bits of an engine partition number below the input's index: a job reading several inputs (e.g. several
/// Kafka topics) numbers partition `p` of its input `n` (counted from 0) as `n << INPUT_SHIFT | p`, so that the
/// first input's partitions keep their own numbers. See [`input_partition`].
pub const INPUT_SHIFT: u32 = 24;

/// The most inputs one job reads: their indices fit in the bits above [`INPUT_SHIFT`] of a non-negative `i32`.
pub const MAX_INPUTS: usize = 1 << (31 - INPUT_SHIFT);

/// The engine's number for partition `partition` of input `input` (its index among the job's inputs): the
/// partition itself for the first input. Partitions must be below `1 << INPUT_SHIFT` and `input` below
/// [`MAX_INPUTS`] (the adapters check both where they meet a topic).
///
/// ```
/// use dstream_core::record::{input_partition, split_partition};
/// assert_eq!(input_partition(0, 3), 3);
/// assert_eq!(split_partition(input_partition(2, 3)), (2, 3));
/// ```
#[inline(always)]
pub const fn input_partition(input: usize, partition: i32) -> i32 {
    ((input as i32) << INPUT_SHIFT) | partition
}

/// The input index and the input's own partition number of an engine partition number (see [`input_partition`]).
#[inline(always)]
pub const fn split_partition(p: i32) -> (usize, i32) {
    if p < 0 {
        // Not a partition of any input (e.g. a test's placeholder): the first input's, as it is.
        return (0, p);
    }
    ((p >> INPUT_SHIFT) as usize, p & ((1 << INPUT_SHIFT) - 1))
}

/// The half-open offset range `[from, until)` of one partition in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    /// Partition number (see [`input_partition`] for a job of several inputs).
    pub partition: i32,
    /// First offset included.
    pub from: i64,
    /// First offset not included.
    pub until: i64,
}

impl OffsetRange {
    /// Number of offsets in the range.
    pub fn count(&self) -> i64 {
        (self.until - self.from).max(0)
    }

    /// The index of the input (e.g. the topic among a job's topics) the range is of; 0 for a job's first input.
    pub fn input(&self) -> usize {
        split_partition(self.partition).0
    }

    /// The partition number within its input (the Kafka partition).
    pub fn input_partition(&self) -> i32 {
        split_partition(self.partition).1
    }
}

/// Where one record lives in the arena: 32 bytes, so a million records' entries fill 32 MB, not 40. A key is
/// stored right before its value, so its start needs no field of its own.
#[derive(Debug, Clone, Copy)]
struct Meta {
    offset: i64,
    timestamp: i64,
    partition: i32,
    key_len: u32, // u32::MAX: no key; else the key is the key_len bytes before the value
    value_start: u32,
    value_len: u32,
}

/// A reusable buffer of records for one batch: all bytes live in one arena, so filling it does not allocate per record.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    bytes: Vec<u8>,
    meta: Vec<Meta>,
    /// True while every push so far came in (partition, offset) order.
    sorted: bool,
}

impl Default for RecordBatch {
    fn default() -> Self {
        RecordBatch { bytes: Vec::new(), meta: Vec::new(), sorted: true }
    }
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `records` records of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        RecordBatch { bytes: Vec::with_capacity(bytes), meta: Vec::with_capacity(records), sorted: true }
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.meta.clear();
        self.sorted = true;
    }

    /// Appends one record.
    #[inline]
    pub fn push(&mut self, partition: i32, offset: i64, timestamp: i64, key: Option<&[u8]>, value: &[u8]) {
        let key_len = match key {
            Some(k) => {
                self.bytes.extend_from_slice(k);
                k.len() as u32
            }
            None => u32::MAX,
        };
        if let Some(last) = self.meta.last() {
            self.sorted &= (last.partition, last.offset) <= (partition, offset);
        }
        let value_start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.meta.push(Meta { offset, timestamp, partition, key_len, value_start, value_len: value.len() as u32 });
    }

    /// Appends every record of `other`, in its order (one copy of its bytes and entries).
    pub fn extend_from(&mut self, other: &RecordBatch) {
        if let (Some(last), Some(first)) = (self.meta.last(), other.meta.first()) {
            self.sorted &= (last.partition, last.offset) <= (first.partition, first.offset);
        }
        self.sorted &= other.sorted;
        let shift = self.bytes.len() as u32;
        self.bytes.extend_from_slice(&other.bytes);
        self.meta.extend(other.meta.iter().map(|m| Meta { value_start: m.value_start + shift, ..*m }));
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True if the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The record at index `i`.
    pub fn get(&self, i: usize) -> RecordRef<'_> {
        view(&self.bytes, &self.meta[i])
    }

    /// The records in the order they were pushed.
    pub fn iter(&self) -> Iter<'_> {
        Iter { bytes: &self.bytes, meta: self.meta.iter() }
    }

    /// Renumbers the partitions of the records from the `from`-th on as those of input `input` (see
    /// [`input_partition`]): records read from a job's `input`-th topic by a reader that knows only that topic.
    pub fn set_input(&mut self, from: usize, input: usize) {
        if input == 0 {
            return;
        }
        for m in self.meta.iter_mut().skip(from) {
            m.partition = input_partition(input, m.partition);
        }
        self.sorted = self.meta.windows(2).all(|w| (w[0].partition, w[0].offset) <= (w[1].partition, w[1].offset));
    }

    /// Sorts records by (partition, offset), the engine's documented processing order; stable and cheap when already sorted.
    pub fn sort_by_position(&mut self) {
        if !self.sorted {
            self.meta.sort_by_key(|m| (m.partition, m.offset));
            self.sorted = true;
        }
    }
}

/// The record `m` describes, its bytes in `bytes`.
#[inline(always)]
fn view<'a>(bytes: &'a [u8], m: &Meta) -> RecordRef<'a> {
    let start = m.value_start as usize;
    let key = if m.key_len == u32::MAX { None } else { Some(&bytes[start - m.key_len as usize..start]) };
    RecordRef {
        partition: m.partition,
        offset: m.offset,
        timestamp: m.timestamp,
        key,
        value: &bytes[start..start + m.value_len as usize],
    }
}

/// The records of a batch in the order they were pushed.
pub struct Iter<'a> {
    bytes: &'a [u8],
    meta: std::slice::Iter<'a, Meta>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = RecordRef<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<RecordRef<'a>> {
        self.meta.next().map(|m| view(self.bytes, m))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.meta.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut b = RecordBatch::new();
        b.push(1, 5, 10, Some(b"k"), b"a,1");
        b.push(0, 7, 11, None, b"");
        b.push(0, 6, 12, Some(b""), b"xy");
        b.push(2, 1, 13, Some(b"key"), b"");
        assert_eq!(b.len(), 4);
        let r = b.get(0);
        assert_eq!((r.partition, r.offset, r.timestamp, r.key, r.value), (1, 5, 10, Some(&b"k"[..]), &b"a,1"[..]));
        let r = b.get(1);
        assert_eq!((r.key, r.value), (None, &b""[..]));
        let r = b.get(2);
        assert_eq!((r.key, r.value), (Some(&b""[..]), &b"xy"[..]));
        let r = b.get(3);
        assert_eq!((r.key, r.value), (Some(&b"key"[..]), &b""[..]));
        b.sort_by_position();
        let order: Vec<RecordRef<'_>> = b.iter().collect();
        let rec = |partition, offset, timestamp, key, value| RecordRef { partition, offset, timestamp, key, value };
        assert_eq!(
            order,
            vec![
                rec(0, 6, 12, Some(&b""[..]), &b"xy"[..]),
                rec(0, 7, 11, None, &b""[..]),
                rec(1, 5, 10, Some(&b"k"[..]), &b"a,1"[..]),
                rec(2, 1, 13, Some(&b"key"[..]), &b""[..]),
            ]
        );
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn extend_from_appends_records_and_keeps_order_flag() {
        let mut a = RecordBatch::new();
        a.push(0, 1, 5, Some(b"k"), b"x");
        let mut b = RecordBatch::new();
        b.push(0, 2, 6, None, b"yz");
        b.push(1, 0, 7, Some(b"kk"), b"");
        a.extend_from(&b);
        let got: Vec<RecordRef<'_>> = a.iter().collect();
        let rec = |partition, offset, timestamp, key, value| RecordRef { partition, offset, timestamp, key, value };
        let want = vec![
            rec(0, 1, 5, Some(&b"k"[..]), &b"x"[..]),
            rec(0, 2, 6, None, &b"yz"[..]),
            rec(1, 0, 7, Some(&b"kk"[..]), &b""[..]),
        ];
        assert_eq!(got, want);
        // Appending a record before the last one makes the batch unsorted: sorting restores position order.
        let mut c = RecordBatch::new();
        c.push(0, 0, 8, None, b"w");
        a.extend_from(&c);
        a.sort_by_position();
        let offsets: Vec<(i32, i64)> = a.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(offsets, vec![(0, 0), (0, 1), (0, 2), (1, 0)]);
    }

    #[test]
    fn a_batch_as_a_source_hands_over_every_record_in_one_run() {
        let mut b = RecordBatch::new();
        let values: Vec<String> = (0..(2 * RUN_RECORDS + 7)).map(|i| format!("v{i}")).collect();
        for (i, v) in values.iter().enumerate() {
            b.push(0, i as i64, 0, None, v.as_bytes());
        }
        let (mut runs, mut seen) = (vec![], vec![]);
        let n = b
            .for_each_run(&mut |run| {
                runs.push(run.len());
                seen.extend(run.iter().map(|r| (r.offset, r.value.to_vec())));
            })
            .unwrap();
        assert_eq!(n, values.len());
        assert_eq!(runs, [values.len()]);
        // A run of records read into a slice reads the same.
        let refs: Vec<RecordRef<'_>> = b.iter().collect();
        let again: Vec<(i64, Vec<u8>)> = Run::of_refs(&refs).iter().map(|r| (r.offset, r.value.to_vec())).collect();
        assert_eq!(again, seen);
        let want: Vec<(i64, Vec<u8>)> =
            values.iter().enumerate().map(|(i, v)| (i as i64, v.clone().into_bytes())).collect();
        assert_eq!(seen, want);
        let mut count = 0;
        assert_eq!(RecordBatch::new().for_each_record(&mut |_| count += 1), Ok(0));
        assert_eq!(count, 0);
    }
}
