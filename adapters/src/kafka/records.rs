//! Record batches (format v2): an in-place parser for fetched bytes and an encoder for produced records.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// Size of the v2 batch header up to and including the record count.
const HEADER: usize = 61;

/// One record, borrowed from the fetched (or decompressed) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Value (a null value reads as empty).
    pub value: &'a [u8],
}

/// Most bytes one compressed batch may inflate to when no other bound is given (see
/// [`crate::kafka::ClientConfig::max_batch_bytes`]): a peer cannot make a reader hold more for one batch.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 64 << 20;

/// Why a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offsets {offset}..={last_offset}: {problem}")]
pub struct BatchError {
    /// Base offset of the batch.
    pub offset: i64,
    /// Last offset of the batch as its header says (the base offset if the header was not read that far, or is
    /// not sound).
    pub last_offset: i64,
    /// The first offset of the batch whose record was not handed over (records before it were: a batch whose
    /// records turn out bad part of the way); the base offset if none was.
    pub first_unread: i64,
    /// What was wrong.
    pub problem: BatchProblem,
}

/// What was wrong with a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchProblem {
    /// The batch is damaged or inconsistent (checksum, lengths, record count, records).
    #[error("{0}")]
    Corrupt(String),
    /// The batch's records inflate to more than the bound on a decompressed batch.
    #[error("it inflates to more than {limit} bytes, the bound on a decompressed batch")]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
    /// The batch's header declares a length beyond the bound on a batch: no fetch brings it whole.
    #[error("its header declares {len} bytes, more than the bound on a batch ({limit} bytes)")]
    LongerThanBound {
        /// The length declared, with the batch's overhead.
        len: u64,
        /// The bound, in bytes.
        limit: usize,
    },
}

/// What a pass over fetched bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// The offset after the last whole batch read (`None` if no whole batch was read).
    pub next_offset: Option<i64>,
    /// Whole batches read.
    pub batches: usize,
    /// Byte position of the first batch not read to its end (a batch reaching `until` or beyond, or a
    /// truncated one): where a later pass continues.
    pub rest: usize,
    /// Byte position after the last whole batch read: the records read all lie before it.
    pub end: usize,
    /// The partition leader epoch the last whole batch read was written in (its header's; -1 if none was read or
    /// the broker gives none).
    pub last_epoch: i32,
}

/// Calls `f` for every record of every whole batch in `data` (a fetch response's record set), in log order.
/// A truncated trailing batch is ignored; control batches (transaction markers) are skipped but counted in
/// `next_offset`. Checksums are verified, and a batch's records must be exactly as many as its header counts; a
/// compressed batch may inflate to [`DEFAULT_MAX_BATCH_BYTES`].
pub fn for_each_record(data: &Bytes, f: impl FnMut(RecordView<'_>)) -> Result<Scan, BatchError> {
    for_each_record_before(data, i64::MAX, DEFAULT_MAX_BATCH_BYTES, f)
}

/// As [`for_each_record`], but stops before the first batch that starts at or after `until`; `rest` then points
/// at the first batch holding offsets at or after `until`, so that the bytes from there serve a later range. A
/// compressed batch may inflate to `max_batch_bytes`.
pub fn for_each_record_before(
    data: &Bytes,
    until: i64,
    max_batch_bytes: usize,
    f: impl FnMut(RecordView<'_>),
) -> Result<Scan, BatchError> {
    /// Every record alike, wherever it lies.
    struct Each<F>(F);
    impl<F: FnMut(RecordView<'_>)> PlacedRecords<'_> for Each<F> {
        fn in_place(&mut self, r: RecordView<'_>) {
            (self.0)(r)
        }
        fn decompressed(&mut self, r: RecordView<'_>) {
            (self.0)(r)
        }
    }
    for_each_record_placed(data, until, max_batch_bytes, &[], &mut Each(f))
}

/// Takes records from [`for_each_record_placed`], by where they lie.
pub trait PlacedRecords<'a> {
    /// A record in the fetched bytes themselves (an uncompressed batch): valid as long as they are.
    fn in_place(&mut self, r: RecordView<'a>);
    /// A record in a compressed batch's decompressed records: valid during the call only.
    fn decompressed(&mut self, r: RecordView<'_>);
    /// True if a batch that cannot be read is to be skipped (handed to [`skipped`](Self::skipped)) and reading
    /// to go on after it, rather than to fail the pass.
    fn skips_bad_batches(&self) -> bool {
        false
    }
    /// A batch skipped unread (if [`skips_bad_batches`](Self::skips_bad_batches)): its records from
    /// `e.first_unread` to `e.last_offset` were not handed over, nor will those of any later batch in the data up to
    /// `e.last_offset` be.
    fn skipped(&mut self, _e: &BatchError) {}
}

/// As [`for_each_record_before`], handing each record over by where it lies, so that a reader can keep records of
/// uncompressed batches (slices of `data`) beyond the call without copying them. The batches whose base offsets
/// are in `skip` (ascending; e.g. [`aborted_batches`]) are passed over as control batches are: their offsets
/// count in `next_offset`, their records are not handed over.
pub fn for_each_record_placed<'a>(
    data: &'a Bytes,
    until: i64,
    max_batch_bytes: usize,
    skip: &[i64],
    to: &mut impl PlacedRecords<'a>,
) -> Result<Scan, BatchError> {
    let skip_bad = to.skips_bad_batches();
    let mut bad: Vec<BatchError> = Vec::new();
    let scan = walk(data, until, true, skip_bad.then_some(&mut bad), |b| {
        let floor = b.floor;
        if b.attributes & CONTROL != 0 || (!skip.is_empty() && skip.binary_search(&b.base_offset).is_ok()) {
            Ok(()) // a control batch (transaction marker) holds no records to read; an aborted one none to keep
        } else if b.attributes & 7 == 0 {
            let records: &'a [u8] = &data[b.pos + HEADER..b.end];
            if b.base_offset >= floor {
                parse_records(records, b, &mut |r| to.in_place(r))
            } else {
                parse_records(records, b, &mut |r| {
                    if r.offset >= floor {
                        to.in_place(r)
                    }
                })
            }
        } else if b.base_offset >= floor {
            read_compressed(&data[b.pos + HEADER..b.end], b, max_batch_bytes, &mut |r| to.decompressed(r))
        } else {
            let each = &mut |r: RecordView<'_>| {
                if r.offset >= floor {
                    to.decompressed(r)
                }
            };
            read_compressed(&data[b.pos + HEADER..b.end], b, max_batch_bytes, each)
        }
    });
    bad.iter().for_each(|e| to.skipped(e));
    scan
}

/// Attribute bit of a transactional batch.
const TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit of a control batch (a transaction marker).
const CONTROL: i16 = 1 << 5;

/// The base offsets, ascending, of the whole batches in `data` (a fetch answer's records) that belong to the
/// aborted transactions `aborted` (the fetch answer's list, as (producer id, first offset)): the records a
/// read_committed consumer drops. As Kafka's consumer reads it: a transactional batch of a producer is aborted if
/// one of that producer's aborted transactions starts at or before the batch's last offset and no control batch
/// (its abort marker) of that producer came between. A batch whose header is bad is passed over (the read
/// reports it, or skips it and reads on); a bad length ends the list there.
pub fn aborted_batches(data: &[u8], aborted: &[(i64, i64)]) -> Vec<i64> {
    let mut out = Vec::new();
    if aborted.is_empty() {
        return out;
    }
    let mut starts = aborted.to_vec();
    starts.sort_unstable_by_key(|a| a.1);
    let (mut next, mut open) = (0usize, Vec::<i64>::new());
    // Past a batch whose header is bad, as a read that skips bad batches goes on after it.
    let _ = walk(data, i64::MAX, false, Some(&mut Vec::new()), |b| {
        while next < starts.len() && starts[next].1 <= b.base_offset.saturating_add(b.last_delta as i64) {
            open.push(starts[next].0);
            next += 1;
        }
        if b.attributes & CONTROL != 0 {
            open.retain(|&p| p != b.producer_id);
        } else if b.attributes & TRANSACTIONAL != 0 && open.contains(&b.producer_id) {
            out.push(b.base_offset);
        }
        Ok(())
    });
    out
}

/// What [`for_each_record_before`] reports for `data` and `until`, read from the batch headers alone: the same
/// [`Scan`] for sound batches, and the same errors for a bad length, record format or record count; checksums,
/// compression and records are left to the pass that reads the records. Cheap: one look per batch.
pub fn scan_headers_before(data: &[u8], until: i64) -> Result<Scan, BatchError> {
    walk(data, until, false, None, |_| Ok(()))
}

/// As [`scan_headers_before`] for a pass that skips bad batches ([`PlacedRecords::skips_bad_batches`]): the
/// [`Scan`] that pass reports, as far as headers tell (a batch with a bad record format or count is passed over;
/// reading stops before a batch whose length is bad, unless it is the first, which fails).
pub fn scan_headers_skipping(data: &[u8], until: i64) -> Result<Scan, BatchError> {
    walk(data, until, false, Some(&mut Vec::new()), |_| Ok(()))
}

/// One whole batch found by [`walk`]: where it lies in the data and what its header says.
struct BatchAt {
    pos: usize,
    end: usize,
    base_offset: i64,
    last_delta: i32,
    attributes: i16,
    base_ts: i64,
    producer_id: i64,
    count: i32,
    /// Records below this offset are not to be handed over: they lie among offsets skipped with a bad batch
    /// before this one (`i64::MIN` if none).
    floor: i64,
}

/// Why the records of a batch could not be read, and the first offset not handed over (records before it were).
struct Failed {
    problem: BatchProblem,
    first_unread: i64,
}

/// Walks the whole batches of `data` before `until` (see [`for_each_record_before`]), checking lengths, the
/// record format, the record count against the offsets the batch spans and, if `checksums`, each batch's
/// checksum, and calls `batch` for each one. With `skipped`, a batch that fails a check (or `batch`) is put there
/// and the walk goes on after it, passing over the offsets up to its last; a batch whose length is bad still fails
/// the walk if it comes first, and ends it (as a batch cut short does) otherwise.
fn walk(
    data: &[u8],
    until: i64,
    checksums: bool,
    mut skipped: Option<&mut Vec<BatchError>>,
    mut batch: impl FnMut(&BatchAt) -> Result<(), Failed>,
) -> Result<Scan, BatchError> {
    let mut pos = 0usize;
    let mut scan = Scan { next_offset: None, batches: 0, rest: 0, end: 0, last_epoch: -1 };
    let mut floor = i64::MIN;
    while data.len() - pos >= 12 {
        let base_offset = i64::from_be_bytes(data[pos..pos + 8].try_into().expect("8 bytes"));
        let batch_len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if base_offset >= until {
            break;
        }
        if batch_len < (HEADER - 12) as i32 {
            if pos > 0 && skipped.is_some() {
                break; // where the next batch starts is unknown: a later pass starts at this one's offset
            }
            let problem = BatchProblem::Corrupt(format!("batch length {batch_len} is too small"));
            return Err(BatchError {
                offset: base_offset,
                last_offset: base_offset,
                first_unread: base_offset,
                problem,
            });
        }
        let end = pos + 12 + batch_len as usize;
        if end > data.len() {
            break; // truncated trailing batch: the next fetch starts at its offset
        }
        let b = &data[pos..end];
        let magic = b[16] as i8;
        let last_delta = i32::from_be_bytes(b[23..27].try_into().expect("4 bytes"));
        let delta_ok = last_delta >= 0 && base_offset.checked_add(last_delta as i64 + 1).is_some();
        let last_offset = if magic == 2 && delta_ok { base_offset + last_delta as i64 } else { base_offset };
        if last_offset < floor {
            // Wholly among offsets skipped with a bad batch before it: passed over unread.
            scan.batches += 1;
            scan.end = end;
            pos = end;
            continue;
        }
        let corrupt = |reason: String| Failed { problem: BatchProblem::Corrupt(reason), first_unread: base_offset };
        let count = i32::from_be_bytes(b[57..61].try_into().expect("4 bytes"));
        let checked = if magic != 2 {
            Err(corrupt(format!("record format v{magic} is not supported (only v2)")))
        } else if checksums && crc32c::crc32c(&b[21..]) != u32::from_be_bytes(b[17..21].try_into().expect("4 bytes")) {
            Err(corrupt("checksum mismatch".into()))
        } else if !delta_ok {
            Err(corrupt(format!("its header gives a last offset delta of {last_delta}")))
        } else if count < 0 || count as i64 > last_delta as i64 + 1 {
            let span = last_delta as i64 + 1;
            Err(corrupt(format!("its header counts {count} records in a span of {span} offsets")))
        } else {
            Ok(())
        };
        let read = checked.and_then(|()| {
            batch(&BatchAt {
                pos,
                end,
                base_offset,
                last_delta,
                attributes: i16::from_be_bytes(b[21..23].try_into().expect("2 bytes")),
                base_ts: i64::from_be_bytes(b[27..35].try_into().expect("8 bytes")),
                producer_id: i64::from_be_bytes(b[43..51].try_into().expect("8 bytes")),
                count,
                floor,
            })
        });
        if read.is_ok() {
            scan.last_epoch = i32::from_be_bytes(b[12..16].try_into().expect("4 bytes"));
        }
        if let Err(f) = read {
            let first_unread = f.first_unread.max(floor);
            let e = BatchError { offset: base_offset, last_offset, first_unread, problem: f.problem };
            match skipped.as_deref_mut() {
                Some(list) => {
                    list.push(e);
                    floor = last_offset + 1;
                }
                None => return Err(e),
            }
        }
        let next = (last_offset + 1).max(scan.next_offset.unwrap_or(i64::MIN));
        scan.next_offset = Some(next);
        scan.batches += 1;
        scan.end = end;
        if next > until {
            // This batch reaches past `until`: a later range starts inside it.
            break;
        }
        pos = end;
    }
    scan.rest = pos;
    Ok(scan)
}

/// Where the first batch in `data` lies and how long it is, as its header declares: (base offset, last offset,
/// length with its overhead), if `data` holds that much of its header. E.g. to tell a batch that no fetch brings
/// whole from one merely cut off at the end of a fetch.
pub fn first_batch_span(data: &[u8]) -> Option<(i64, i64, u64)> {
    let base = i64::from_be_bytes(data.get(..8)?.try_into().expect("8 bytes"));
    let len = i32::from_be_bytes(data.get(8..12)?.try_into().expect("4 bytes"));
    let last_delta = i32::from_be_bytes(data.get(23..27)?.try_into().expect("4 bytes"));
    Some((base, base.saturating_add(last_delta.max(0) as i64), len.max(0) as u64 + 12))
}

thread_local! {
    /// The buffer compressed batches are inflated into, kept between batches (unless it grew large).
    static INFLATED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest inflate buffer kept for the next batch; a larger one is freed after its batch.
const KEEP_INFLATED: usize = 8 << 20;

/// Reads the records of one compressed batch, whose compressed records are `body`, inflating them to at most
/// `limit` bytes.
fn read_compressed(body: &[u8], b: &BatchAt, limit: usize, f: &mut impl FnMut(RecordView<'_>)) -> Result<(), Failed> {
    let mut buf = INFLATED.take();
    let result = inflate(b.attributes & 7, body, limit, &mut buf)
        .map_err(|problem| Failed { problem, first_unread: b.base_offset })
        .and_then(|n| parse_records(&buf[..n], b, f));
    if buf.capacity() <= KEEP_INFLATED {
        INFLATED.set(buf);
    }
    result
}

/// Inflates `body`, compressed with `codec` (the batch attributes' codec bits), into `buf`, writing at most `limit`
/// bytes, as the data comes (never sized by what the data declares); returns the length inflated. `buf` is used
/// from its start; its length is what was ever zeroed, so that a reused buffer is not zeroed again.
fn inflate(codec: i16, body: &[u8], limit: usize, buf: &mut Vec<u8>) -> Result<usize, BatchProblem> {
    let corrupt = |codec: &str, e: std::io::Error| BatchProblem::Corrupt(format!("cannot decompress {codec}: {e}"));
    match codec {
        1 => {
            read_bounded(&mut flate2::bufread::MultiGzDecoder::new(body), limit, buf).map_err(|e| e.or(corrupt, "gzip"))
        }
        2 => snappy(body, limit, buf),
        3 => {
            let mut d = lz4::Decoder::new(body).map_err(|e| corrupt("lz4", e))?;
            let n = read_bounded(&mut d, limit, buf).map_err(|e| e.or(corrupt, "lz4"))?;
            d.finish().1.map_err(|_| BatchProblem::Corrupt("cannot decompress lz4: the frame is cut short".into()))?;
            Ok(n)
        }
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(|e| corrupt("zstd", e))?;
            // A window beyond the bound is never needed: refuse frames that ask for more memory, but allow the
            // 8 MiB windows producers use at high levels whatever the bound (27 is zstd's own default limit).
            let window_log = (usize::BITS - limit.leading_zeros()).clamp(23, 27);
            d.window_log_max(window_log).map_err(|e| corrupt("zstd", e))?;
            read_bounded(&mut d, limit, buf).map_err(|e| e.or(corrupt, "zstd"))
        }
        c => Err(BatchProblem::Corrupt(format!("unknown compression codec {c}"))),
    }
}

/// Why [`read_bounded`] stopped.
enum Bounded {
    Over(usize),
    Io(std::io::Error),
}

impl Bounded {
    fn or(self, corrupt: impl Fn(&str, std::io::Error) -> BatchProblem, codec: &str) -> BatchProblem {
        match self {
            Bounded::Over(limit) => BatchProblem::TooLarge { limit },
            Bounded::Io(e) => corrupt(codec, e),
        }
    }
}

/// Bytes a decoder is given room for at a time, at least.
const INFLATE_STEP: usize = 64 << 10;

/// Reads `r` to its end into `buf` (see [`inflate`]), failing as soon as it yields more than `limit` bytes.
fn read_bounded(r: &mut impl std::io::Read, limit: usize, buf: &mut Vec<u8>) -> Result<usize, Bounded> {
    let room = limit.saturating_add(1);
    let mut filled = 0usize;
    loop {
        let end = buf.len().min(room);
        if filled == end {
            if filled > limit {
                return Err(Bounded::Over(limit));
            }
            // Room grows with what came so far (doubling), never beyond one byte over the limit.
            let grown = filled + filled.max(INFLATE_STEP).min(room - filled);
            buf.reserve_exact(grown - buf.len());
            buf.resize(grown, 0);
            continue;
        }
        match r.read(&mut buf[filled..end]) {
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Bounded::Io(e)),
        }
    }
}

/// The xerial framing Kafka's Java client writes around snappy blocks: magic, then version and compatible version.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

/// Inflates snappy (xerial-framed blocks, or one raw block), checking each block's declared length against what is
/// left of `limit` before making room for it.
fn snappy(body: &[u8], limit: usize, buf: &mut Vec<u8>) -> Result<usize, BatchProblem> {
    let corrupt = |e: String| BatchProblem::Corrupt(format!("cannot decompress snappy: {e}"));
    let mut filled = 0usize;
    let mut block = |raw: &[u8], buf: &mut Vec<u8>| -> Result<(), BatchProblem> {
        let len = snap::raw::decompress_len(raw).map_err(|e| corrupt(e.to_string()))?;
        if len > limit - filled {
            return Err(BatchProblem::TooLarge { limit });
        }
        if buf.len() < filled + len {
            buf.reserve_exact(filled + len - buf.len());
            buf.resize(filled + len, 0);
        }
        let n = snap::raw::Decoder::new()
            .decompress(raw, &mut buf[filled..filled + len])
            .map_err(|e| corrupt(e.to_string()))?;
        filled += n;
        Ok(())
    };
    if body.starts_with(XERIAL_MAGIC) {
        let mut rest = body.get(16..).ok_or_else(|| corrupt("the stream header is cut short".into()))?;
        while !rest.is_empty() {
            let n = rest.get(..4).map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize);
            let raw = n.and_then(|n| rest.get(4..4 + n)).ok_or_else(|| corrupt("a block is cut short".into()))?;
            block(raw, buf)?;
            rest = &rest[4 + raw.len()..];
        }
    } else {
        block(body, buf)?;
    }
    Ok(filled)
}

/// The `next_offset` that [`for_each_record_before`] will report for `data` and `until`, found from the batch
/// headers alone (no checksums, no records): lets a reader ask for the next bytes before reading these.
pub fn next_offset_before(data: &[u8], until: i64) -> Option<i64> {
    scan_headers_before(data, until).ok().and_then(|s| s.next_offset)
}

/// The base offset of the first batch in `data`, if it holds a batch header.
pub fn first_base_offset(data: &[u8]) -> Option<i64> {
    data.get(..8).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// A zigzag varint; values of up to three bytes (lengths and deltas of small records: offset deltas up to about a
/// million in a batch) take the short path.
#[inline(always)]
fn varint(b: &[u8], pos: &mut usize) -> Result<i64, String> {
    match b.get(*pos) {
        Some(&byte) if byte < 0x80 => {
            *pos += 1;
            Ok((byte >> 1) as i64 ^ -((byte & 1) as i64))
        }
        Some(&low) => match b.get(*pos + 1) {
            Some(&high) if high < 0x80 => {
                *pos += 2;
                let v = (low & 0x7f) as u64 | (high as u64) << 7;
                Ok((v >> 1) as i64 ^ -((v & 1) as i64))
            }
            Some(&mid) => match b.get(*pos + 2) {
                Some(&high) if high < 0x80 => {
                    *pos += 3;
                    let v = (low & 0x7f) as u64 | ((mid & 0x7f) as u64) << 7 | (high as u64) << 14;
                    Ok((v >> 1) as i64 ^ -((v & 1) as i64))
                }
                _ => varint_long(b, pos),
            },
            None => varint_long(b, pos),
        },
        None => varint_long(b, pos),
    }
}

#[inline(never)]
fn varint_long(b: &[u8], pos: &mut usize) -> Result<i64, String> {
    let mut shift = 0u32;
    let mut acc = 0u64;
    loop {
        let byte = *b.get(*pos).ok_or("record runs past the end of its batch")?;
        *pos += 1;
        acc |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok((acc >> 1) as i64 ^ -((acc & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err("varint too long".into());
        }
    }
}

#[inline(always)]
fn bytes_field<'a>(b: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, String> {
    let len = varint(b, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let end = pos.checked_add(len as usize).filter(|&e| e <= b.len()).ok_or("field runs past the end of its batch")?;
    let s = &b[*pos..end];
    *pos = end;
    Ok(Some(s))
}

/// Reads the records of batch `b` from `records` (its record bytes, decompressed if need be): exactly as many as
/// the header counts, filling `records` exactly, at offsets rising within the batch's span.
fn parse_records<'a>(records: &'a [u8], b: &BatchAt, f: &mut impl FnMut(RecordView<'a>)) -> Result<(), Failed> {
    let mut prev_delta = -1i64;
    parse_records_from(records, b, &mut prev_delta, f).map_err(|reason| Failed {
        problem: BatchProblem::Corrupt(reason),
        first_unread: b.base_offset + (prev_delta + 1),
    })
}

/// [`parse_records`], keeping the offset delta of the last record handed over in `prev_delta`.
#[inline(always)]
fn parse_records_from<'a>(
    records: &'a [u8],
    b: &BatchAt,
    prev_delta: &mut i64,
    f: &mut impl FnMut(RecordView<'a>),
) -> Result<(), String> {
    let (count, last_delta) = (b.count, b.last_delta as i64);
    let mut pos = 0usize;
    for i in 0..count {
        if pos == records.len() {
            return Err(format!("its header counts {count} records but it holds {i}"));
        }
        let len = varint(records, &mut pos)?;
        let end =
            pos.checked_add(len as usize).filter(|&e| len >= 0 && e <= records.len()).ok_or("bad record length")?;
        let r = &records[..end];
        pos += 1; // attributes
        let ts_delta = varint(r, &mut pos)?;
        let offset_delta = varint(r, &mut pos)?;
        let key = bytes_field(r, &mut pos)?;
        let value = bytes_field(r, &mut pos)?.unwrap_or(&[]);
        let headers = varint(r, &mut pos)?;
        for _ in 0..headers {
            bytes_field(r, &mut pos)?;
            bytes_field(r, &mut pos)?;
        }
        if pos != end {
            return Err("record length does not match its fields".into());
        }
        if offset_delta <= *prev_delta || offset_delta > last_delta {
            return Err(format!(
                "record {i} has offset delta {offset_delta}, where one above {prev_delta} and at most {last_delta} \
                 was expected"
            ));
        }
        *prev_delta = offset_delta;
        let offset = b.base_offset + offset_delta;
        f(RecordView { offset, timestamp: b.base_ts.wrapping_add(ts_delta), key, value });
    }
    if pos != records.len() {
        let left = records.len() - pos;
        return Err(format!("it holds more records than the {count} its header counts ({left} bytes left over)"));
    }
    Ok(())
}

/// Compression of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// A record batch could not be encoded (the codec failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode a record batch: {reason}")]
pub struct EncodeError {
    /// What the encoder said.
    pub reason: String,
}

/// Encodes `values` (no keys) as one v2 record batch with consecutive sequence numbers, timestamp `now_ms`.
pub fn encode_batch(values: &[&[u8]], now_ms: i64, codec: Codec) -> Result<Bytes, EncodeError> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Consecutive sequences keep the encoder from starting a new batch per record.
            sequence: i as i32,
            timestamp: now_ms,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let compression = match codec {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| EncodeError { reason: e.to_string() })?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &Bytes) -> (Vec<(i64, Vec<u8>)>, Scan) {
        let mut got = vec![];
        let scan = for_each_record(data, |r| got.push((r.offset, r.value.to_vec()))).unwrap();
        (got, scan)
    }

    #[test]
    fn round_trip_every_codec_and_truncation() {
        let values: Vec<Vec<u8>> =
            (0..500).map(|i| format!("{},{}", (b'a' + (i % 26) as u8) as char, i % 26).into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let one = encode_batch(&refs, 1000, codec).unwrap();
            let (got, scan) = collect(&one);
            assert_eq!(
                scan,
                Scan {
                    next_offset: Some(500),
                    batches: 1,
                    rest: one.len(),
                    end: one.len(),
                    last_epoch: scan.last_epoch
                },
                "{codec:?}"
            );
            assert_eq!(scan_headers_before(&one, i64::MAX), Ok(scan));
            assert_eq!(got.len(), 500);
            for (i, (off, v)) in got.iter().enumerate() {
                assert_eq!((*off, v.as_slice()), (i as i64, refs[i]));
            }
            // Every strict prefix of a single batch holds no whole batch.
            for cut in [0, 11, 12, 61, one.len() - 1] {
                let (got, scan) = collect(&one.slice(..cut));
                assert!(got.is_empty() && scan.next_offset.is_none(), "{codec:?} cut {cut}");
            }
        }
    }

    /// `batch` with its header's record count and last offset delta replaced and its checksum made to match.
    pub(crate) fn with_header(batch: &Bytes, count: i32, last_delta: i32) -> Bytes {
        let mut b = batch.to_vec();
        b[23..27].copy_from_slice(&last_delta.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    #[test]
    fn a_bad_batch_at_the_lowest_offset_is_an_error_not_an_overflow() {
        // Found by fuzzing (fuzz/regressions/record_batch): the first offset not handed over was computed as
        // base - 1 + 1, which overflows at i64::MIN.
        let mut b = with_header(&encode_batch(&[b"a,1", b"b,2", b"c,3"], 0, Codec::None).unwrap(), 1, 2).to_vec();
        b[..8].copy_from_slice(&i64::MIN.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut with_first_record_bad = b.clone();
        with_first_record_bad[61] = 0x7f; // the first record's length: past the end of the batch
        for bytes in [b, with_first_record_bad] {
            let crc = crc32c::crc32c(&bytes[21..]);
            let mut bytes = bytes;
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            let err = for_each_record(&Bytes::from(bytes), |_| {}).unwrap_err();
            assert_eq!(err.offset, i64::MIN, "{err}");
            assert!(err.first_unread == i64::MIN || err.first_unread == i64::MIN + 1, "{err:?}");
        }
    }

    #[test]
    fn a_record_count_that_disagrees_with_the_records_is_a_corrupt_batch_never_a_silent_skip() {
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            // Three records at offsets 0, 1, 2 (last offset delta 2).
            let good = encode_batch(&[b"a,1", b"b,2", b"c,3"], 0, codec).unwrap();
            let cases: [(i32, i32, &str); 6] = [
                (1, 2, "it holds more records than the 1 its header counts"),
                (0, 2, "it holds more records than the 0 its header counts"),
                (5, 9, "its header counts 5 records but it holds 3"),
                (4, 2, "its header counts 4 records in a span of 3 offsets"),
                (-1, 2, "its header counts -1 records"),
                (3, -1, "last offset delta of -1"),
            ];
            for (count, last_delta, says) in cases {
                let bad = with_header(&good, count, last_delta);
                let err = for_each_record(&bad, |_| {}).unwrap_err();
                let last = if last_delta < 0 { 0 } else { last_delta as i64 };
                assert_eq!((err.offset, err.last_offset), (0, last), "{codec:?} count {count}: {err}");
                assert!(matches!(&err.problem, BatchProblem::Corrupt(r) if r.contains(says)), "{codec:?}: {err}");
                // The header walk sees what a header alone shows, and never passes a batch the full pass fails.
                if let Ok(scan) = scan_headers_before(&bad, i64::MAX) {
                    assert!(count >= 0 && count <= last_delta + 1, "{codec:?} count {count}: {scan:?}");
                }
            }
            // The header's count, exact: all three.
            let (got, _) = collect(&with_header(&good, 3, 2));
            assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 1, 2], "{codec:?}");
            // A span wider than the records (offsets removed by compaction) is sound.
            let (got, scan) = collect(&with_header(&good, 3, 9));
            assert_eq!((got.len(), scan.next_offset), (3, Some(10)), "{codec:?}");
        }
    }

    #[test]
    fn a_compressed_batch_inflating_beyond_the_bound_is_too_large_and_one_within_it_reads() {
        let values: Vec<Vec<u8>> = (0..2000).map(|i| format!("key{},{}", i % 7, i).into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        // The records' bytes, which every codec inflates to.
        let inflated = encode_batch(&refs, 0, Codec::None).unwrap().len() - HEADER;
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let batch = encode_batch(&refs, 0, codec).unwrap();
            assert!(batch.len() < inflated, "{codec:?} compresses");
            let mut n = 0;
            let scan = for_each_record_before(&batch, i64::MAX, inflated, |_| n += 1).unwrap();
            assert_eq!((n, scan.next_offset), (2000, Some(2000)), "{codec:?}");
            for limit in [inflated - 1, inflated / 3, 0] {
                let mut n = 0;
                let err = for_each_record_before(&batch, i64::MAX, limit, |_| n += 1).unwrap_err();
                assert_eq!((err.offset, err.last_offset, n), (0, 1999, 0), "{codec:?}");
                assert_eq!(err.problem, BatchProblem::TooLarge { limit }, "{codec:?}");
            }
        }
        // An uncompressed batch is as large as it came: no bound applies.
        let plain = encode_batch(&refs, 0, Codec::None).unwrap();
        assert!(for_each_record_before(&plain, i64::MAX, 0, |_| {}).is_ok());
    }

    /// Records by where they were found: (in place?, offset, value).
    struct Placements(Vec<(bool, i64, Vec<u8>)>);
    impl<'a> PlacedRecords<'a> for Placements {
        fn in_place(&mut self, r: RecordView<'a>) {
            self.0.push((true, r.offset, r.value.to_vec()));
        }
        fn decompressed(&mut self, r: RecordView<'_>) {
            self.0.push((false, r.offset, r.value.to_vec()));
        }
    }

    #[test]
    fn records_are_placed_in_place_exactly_when_their_batch_is_not_compressed() {
        let values: Vec<Vec<u8>> = (0..300).map(|i| format!("k,{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let data = encode_batch(&refs, 0, codec).unwrap();
            let mut placed = Placements(vec![]);
            let scan = for_each_record_placed(&data, 200, DEFAULT_MAX_BATCH_BYTES, &[], &mut placed).unwrap();
            let (want, want_scan) = collect(&data.slice(..));
            assert_eq!(scan.next_offset, want_scan.next_offset, "{codec:?}");
            let in_place = codec == Codec::None;
            let want: Vec<(bool, i64, Vec<u8>)> = want.into_iter().map(|(o, v)| (in_place, o, v)).collect();
            assert_eq!(placed.0, want, "{codec:?}");
        }
    }

    #[test]
    fn a_pass_stops_where_a_later_range_begins() {
        let a = encode_batch(&[b"a,1", b"b,2", b"c,3"], 0, Codec::None).unwrap(); // offsets 0..3
        let mut two = a.to_vec();
        let mut b = encode_batch(&[b"d,4", b"e,5"], 0, Codec::None).unwrap().to_vec(); // offsets 3..5
        b[..8].copy_from_slice(&3i64.to_be_bytes());
        two.extend_from_slice(&b);
        let two = Bytes::from(two);
        // until inside the first batch: it is read, and kept for later.
        let mut got = vec![];
        let scan = for_each_record_before(&two, 2, DEFAULT_MAX_BATCH_BYTES, |r| got.push(r.offset)).unwrap();
        assert_eq!((got, scan.next_offset, scan.rest), (vec![0, 1, 2], Some(3), 0));
        // until at the batch boundary: the first batch is consumed, the second untouched.
        let mut got = vec![];
        let scan = for_each_record_before(&two, 3, DEFAULT_MAX_BATCH_BYTES, |r| got.push(r.offset)).unwrap();
        assert_eq!((got, scan.next_offset, scan.rest), (vec![0, 1, 2], Some(3), a.len()));
        assert_eq!(first_base_offset(&two[scan.rest..]), Some(3));
        let mut got = vec![];
        let scan = for_each_record_before(&two.slice(scan.rest..), 5, DEFAULT_MAX_BATCH_BYTES, |r| got.push(r.offset))
            .unwrap();
        assert_eq!((got, scan.next_offset, scan.rest), (vec![3, 4], Some(5), b.len()));
        // The header walk predicts every pass's next offset, for every cut and every until.
        for cut in 0..=two.len() {
            for until in 0..7 {
                let part = two.slice(..cut);
                let scan = for_each_record_before(&part, until, DEFAULT_MAX_BATCH_BYTES, |_| {}).unwrap();
                assert_eq!(next_offset_before(&part, until), scan.next_offset, "cut {cut} until {until}");
                assert_eq!(scan_headers_before(&part, until), Ok(scan), "cut {cut} until {until}");
            }
        }
    }

    /// A batch of `n` records at `base` with the given producer id and attributes (transactional, control).
    fn batch_at(base: i64, n: usize, producer: i64, attributes: i16) -> Vec<u8> {
        let values: Vec<&[u8]> = vec![b"k,1"; n];
        let mut b = encode_batch(&values, 0, Codec::None).unwrap().to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[43..51].copy_from_slice(&producer.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn aborted_batches_are_those_of_aborted_producers_up_to_their_markers_and_are_skipped() {
        let (tx, ctl) = (TRANSACTIONAL, TRANSACTIONAL | CONTROL);
        // Producer 7 aborts [0, 4) (marker at 4), commits [6, 8) (marker at 8); producer 9 aborts [2, 3) (marker
        // at 5); plain records at 3 and 9; producer 7 opens an aborted transaction again at 10.
        let mut data = vec![];
        for b in [
            batch_at(0, 2, 7, tx),
            batch_at(2, 1, 9, tx),
            batch_at(3, 1, -1, 0),
            batch_at(4, 1, 7, ctl),
            batch_at(5, 1, 9, ctl),
            batch_at(6, 2, 7, tx),
            batch_at(8, 1, 7, ctl),
            batch_at(9, 1, -1, 0),
            batch_at(10, 2, 7, tx),
        ] {
            data.extend(b);
        }
        let data = Bytes::from(data);
        let aborted = [(7, 0), (9, 2), (7, 10)];
        assert_eq!(aborted_batches(&data, &aborted), vec![0, 2, 10]);
        // In any order, as the broker's list need not be sorted.
        assert_eq!(aborted_batches(&data, &[(7, 10), (9, 2), (7, 0)]), vec![0, 2, 10]);
        assert!(aborted_batches(&data, &[]).is_empty());
        let skip = aborted_batches(&data, &aborted);
        let mut placed = Placements(vec![]);
        let scan = for_each_record_placed(&data, i64::MAX, DEFAULT_MAX_BATCH_BYTES, &skip, &mut placed).unwrap();
        // Markers and aborted records are not handed over; their offsets are passed all the same.
        assert_eq!(placed.0.iter().map(|p| p.1).collect::<Vec<_>>(), vec![3, 6, 7, 9]);
        assert_eq!(scan.next_offset, Some(12));
    }

    #[test]
    fn aborted_batches_after_a_bad_batch_are_still_dropped_when_bad_batches_are_skipped() {
        /// Placements that skip bad batches.
        struct Skipping(Placements, Vec<i64>);
        impl<'a> PlacedRecords<'a> for Skipping {
            fn in_place(&mut self, r: RecordView<'a>) {
                self.0.in_place(r)
            }
            fn decompressed(&mut self, r: RecordView<'_>) {
                self.0.decompressed(r)
            }
            fn skips_bad_batches(&self) -> bool {
                true
            }
            fn skipped(&mut self, e: &BatchError) {
                self.1.push(e.offset)
            }
        }
        let tx = TRANSACTIONAL;
        // A plain batch at 0 whose header counts 2 records in a span of 1 (bad from its header alone), then
        // producer 7's aborted transaction at 1..=2 (marker at 3), then a plain record at 4.
        let mut bad = with_header(&Bytes::from(batch_at(0, 1, -1, 0)), 2, 0).to_vec();
        bad.extend(batch_at(1, 2, 7, tx));
        bad.extend(batch_at(3, 1, 7, tx | CONTROL));
        bad.extend(batch_at(4, 1, -1, 0));
        let data = Bytes::from(bad);
        let skip = aborted_batches(&data, &[(7, 1)]);
        assert_eq!(skip, vec![1]);
        let mut placed = Skipping(Placements(vec![]), vec![]);
        let scan = for_each_record_placed(&data, i64::MAX, DEFAULT_MAX_BATCH_BYTES, &skip, &mut placed).unwrap();
        assert_eq!(placed.1, vec![0], "the bad batch is skipped");
        assert_eq!(placed.0 .0.iter().map(|p| p.1).collect::<Vec<_>>(), vec![4], "aborted records are not read");
        assert_eq!(scan.next_offset, Some(5));
    }

    #[test]
    fn short_varints_read_as_the_general_path_reads_them() {
        // Zigzag values around each byte-length boundary, encoded, read by both paths, whole and cut short.
        for v in [0i64, -1, 1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 1 << 20, -(1 << 20), (1 << 20) + 1, i64::MAX]
        {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            let mut enc = vec![];
            loop {
                if z < 0x80 {
                    enc.push(z as u8);
                    break;
                }
                enc.push((z as u8 & 0x7f) | 0x80);
                z >>= 7;
            }
            for cut in 0..=enc.len() {
                let (mut a, mut b) = (0usize, 0usize);
                assert_eq!(varint(&enc[..cut], &mut a), varint_long(&enc[..cut], &mut b), "{v} cut to {cut}");
                assert_eq!(a, b, "{v} cut to {cut}");
            }
            let mut pos = 0;
            assert_eq!((varint(&enc, &mut pos), pos), (Ok(v), enc.len()));
        }
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let one = encode_batch(&[b"a,1", b"b,2"], 0, Codec::None).unwrap();
        // Bytes 12..16 (partition leader epoch) are outside the checksum, as in Kafka.
        for i in 16..one.len() {
            let mut bad = one.to_vec();
            bad[i] ^= 0x40;
            let r = for_each_record(&Bytes::from(bad), |_| {});
            // Any flipped bit after the length is caught by the checksum, the magic check or the parser.
            assert!(r.is_err(), "flip at {i} went unnoticed");
        }
        let mut tiny = one.to_vec();
        tiny[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(for_each_record(&Bytes::from(tiny), |_| {}).is_err());
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn codec() -> impl Strategy<Value = Codec> {
            prop_oneof![Just(Codec::None), Just(Codec::Gzip), Just(Codec::Snappy), Just(Codec::Lz4), Just(Codec::Zstd)]
        }

        proptest! {
            // Whatever a broker sends, the parser answers with records or an error, never a panic.
            #[test]
            fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                let _ = for_each_record(&Bytes::from(bytes), |_| {});
            }

            #[test]
            fn damaged_batches_never_panic(
                values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..8),
                codec in codec(),
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                cut in any::<prop::sample::Index>(),
            ) {
                let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                let good = encode_batch(&refs, 7, codec).unwrap();
                let mut seen = Vec::new();
                for_each_record(&good, |r| seen.push((r.offset, r.value.to_vec()))).unwrap();
                let want: Vec<(i64, Vec<u8>)> = values.iter().enumerate().map(|(i, v)| (i as i64, v.clone())).collect();
                prop_assert_eq!(seen, want);
                let mut bad = good.to_vec();
                for (at, byte) in &edits {
                    let i = at.index(bad.len());
                    bad[i] = *byte;
                }
                let _ = for_each_record(&Bytes::from(bad.clone()), |_| {});
                bad.truncate(cut.index(bad.len() + 1));
                let full = for_each_record(&Bytes::from(bad.clone()), |_| {});
                // The header walk agrees with every pass that succeeds, and fails only where the pass fails.
                let headers = scan_headers_before(&bad, i64::MAX);
                if full.is_ok() {
                    prop_assert_eq!(&headers, &full);
                }
                if headers.is_err() {
                    prop_assert!(full.is_err());
                }
            }
        }
    }
}
