//! Record batches (format v2): an in-place parser for fetched bytes and an encoder for produced records.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
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

/// Why a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offset {offset}: {reason}")]
pub struct BatchError {
    /// Base offset of the batch.
    pub offset: i64,
    /// What was wrong.
    pub reason: String,
}

/// What a pass over fetched bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
}

/// Calls `f` for every record of every whole batch in `data` (a fetch response's record set), in log order.
/// A truncated trailing batch is ignored; control batches (transaction markers) are skipped but counted in
/// `next_offset`. Checksums are verified.
pub fn for_each_record(data: &Bytes, f: impl FnMut(RecordView<'_>)) -> Result<Scan, BatchError> {
    for_each_record_before(data, i64::MAX, f)
}

/// As [`for_each_record`], but stops before the first batch that starts at or after `until`; `rest` then points
/// at the first batch holding offsets at or after `until`, so that the bytes from there serve a later range.
pub fn for_each_record_before(data: &Bytes, until: i64, f: impl FnMut(RecordView<'_>)) -> Result<Scan, BatchError> {
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
    for_each_record_placed(data, until, &mut Each(f))
}

/// Takes records from [`for_each_record_placed`], by where they lie.
pub trait PlacedRecords<'a> {
    /// A record in the fetched bytes themselves (an uncompressed batch): valid as long as they are.
    fn in_place(&mut self, r: RecordView<'a>);
    /// A record in a compressed batch's decompressed records: valid during the call only.
    fn decompressed(&mut self, r: RecordView<'_>);
}

/// As [`for_each_record_before`], handing each record over by where it lies, so that a reader can keep records of
/// uncompressed batches (slices of `data`) beyond the call without copying them.
pub fn for_each_record_placed<'a>(
    data: &'a Bytes,
    until: i64,
    to: &mut impl PlacedRecords<'a>,
) -> Result<Scan, BatchError> {
    walk(data, until, true, |b| {
        if b.attributes & (1 << 5) != 0 {
            Ok(()) // a control batch (transaction marker) holds no records to read
        } else if b.attributes & 7 == 0 {
            let records: &'a [u8] = &data[b.pos + HEADER..b.end];
            parse_records(records, b.count, b.base_offset, b.base_ts, &mut |r| to.in_place(r))
        } else {
            read_compressed(data, b, &mut |r| to.decompressed(r))
        }
    })
}

/// What [`for_each_record_before`] reports for `data` and `until`, read from the batch headers alone: the same
/// [`Scan`] for sound batches, and the same errors for a bad length or record format; checksums, compression and
/// records are left to the pass that reads the records. Cheap: one look per batch.
pub fn scan_headers_before(data: &[u8], until: i64) -> Result<Scan, BatchError> {
    walk(data, until, false, |_| Ok(()))
}

/// One whole batch found by [`walk`]: where it lies in the data and what its header says.
struct BatchAt {
    pos: usize,
    end: usize,
    base_offset: i64,
    attributes: i16,
    base_ts: i64,
    count: i32,
}

/// Walks the whole batches of `data` before `until` (see [`for_each_record_before`]), checking lengths, the
/// record format and, if `checksums`, each batch's checksum, and calls `batch` for each one.
fn walk(
    data: &[u8],
    until: i64,
    checksums: bool,
    mut batch: impl FnMut(&BatchAt) -> Result<(), String>,
) -> Result<Scan, BatchError> {
    let mut pos = 0usize;
    let mut scan = Scan::default();
    while data.len() - pos >= 12 {
        let base_offset = i64::from_be_bytes(data[pos..pos + 8].try_into().expect("8 bytes"));
        let batch_len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let err = |reason: String| BatchError { offset: base_offset, reason };
        if base_offset >= until {
            break;
        }
        if batch_len < (HEADER - 12) as i32 {
            return Err(err(format!("batch length {batch_len} is too small")));
        }
        let end = pos + 12 + batch_len as usize;
        if end > data.len() {
            break; // truncated trailing batch: the next fetch starts at its offset
        }
        let b = &data[pos..end];
        let magic = b[16] as i8;
        if magic != 2 {
            return Err(err(format!("record format v{magic} is not supported (only v2)")));
        }
        if checksums {
            let crc = u32::from_be_bytes(b[17..21].try_into().expect("4 bytes"));
            if crc32c::crc32c(&b[21..]) != crc {
                return Err(err("checksum mismatch".into()));
            }
        }
        let last_delta = i32::from_be_bytes(b[23..27].try_into().expect("4 bytes"));
        batch(&BatchAt {
            pos,
            end,
            base_offset,
            attributes: i16::from_be_bytes(b[21..23].try_into().expect("2 bytes")),
            base_ts: i64::from_be_bytes(b[27..35].try_into().expect("8 bytes")),
            count: i32::from_be_bytes(b[57..61].try_into().expect("4 bytes")),
        })
        .map_err(err)?;
        let next = base_offset + last_delta as i64 + 1;
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

/// Reads the records of one compressed batch of `data`.
fn read_compressed(data: &Bytes, b: &BatchAt, f: &mut impl FnMut(RecordView<'_>)) -> Result<(), String> {
    let mut emit = |records: &[u8]| parse_records(records, b.count, b.base_offset, b.base_ts, &mut *f);
    let mut body = data.slice(b.pos + HEADER..b.end);
    match b.attributes & 7 {
        1 => Gzip::decompress(&mut body, |d: &mut Bytes| Ok(emit(d))).unwrap_or_else(|e| Err(e.to_string())),
        2 => Snappy::decompress(&mut body, |d: &mut Bytes| Ok(emit(d))).unwrap_or_else(|e| Err(e.to_string())),
        3 => Lz4::decompress(&mut body, |d: &mut Bytes| Ok(emit(d))).unwrap_or_else(|e| Err(e.to_string())),
        4 => Zstd::decompress(&mut body, |d: &mut Bytes| Ok(emit(d))).unwrap_or_else(|e| Err(e.to_string())),
        c => Err(format!("unknown compression codec {c}")),
    }
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

/// A zigzag varint; one- and two-byte values (lengths and deltas of small records: offset deltas up to 8191 in a
/// batch) take the short path.
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
            _ => varint_long(b, pos),
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

fn parse_records<'a>(
    b: &'a [u8],
    count: i32,
    base_offset: i64,
    base_ts: i64,
    f: &mut impl FnMut(RecordView<'a>),
) -> Result<(), String> {
    let mut pos = 0usize;
    for _ in 0..count {
        let len = varint(b, &mut pos)?;
        let end = pos.checked_add(len as usize).filter(|&e| len >= 0 && e <= b.len()).ok_or("bad record length")?;
        let r = &b[..end];
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
        f(RecordView { offset: base_offset + offset_delta, timestamp: base_ts + ts_delta, key, value });
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
            assert_eq!(scan, Scan { next_offset: Some(500), batches: 1, rest: one.len(), end: one.len() }, "{codec:?}");
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
            let scan = for_each_record_placed(&data, 200, &mut placed).unwrap();
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
        let scan = for_each_record_before(&two, 2, |r| got.push(r.offset)).unwrap();
        assert_eq!((got, scan.next_offset, scan.rest), (vec![0, 1, 2], Some(3), 0));
        // until at the batch boundary: the first batch is consumed, the second untouched.
        let mut got = vec![];
        let scan = for_each_record_before(&two, 3, |r| got.push(r.offset)).unwrap();
        assert_eq!((got, scan.next_offset, scan.rest), (vec![0, 1, 2], Some(3), a.len()));
        assert_eq!(first_base_offset(&two[scan.rest..]), Some(3));
        let mut got = vec![];
        let scan = for_each_record_before(&two.slice(scan.rest..), 5, |r| got.push(r.offset)).unwrap();
        assert_eq!((got, scan.next_offset, scan.rest), (vec![3, 4], Some(5), b.len()));
        // The header walk predicts every pass's next offset, for every cut and every until.
        for cut in 0..=two.len() {
            for until in 0..7 {
                let part = two.slice(..cut);
                let scan = for_each_record_before(&part, until, |_| {}).unwrap();
                assert_eq!(next_offset_before(&part, until), scan.next_offset, "cut {cut} until {until}");
                assert_eq!(scan_headers_before(&part, until), Ok(scan), "cut {cut} until {until}");
            }
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
