//! What the fuzz targets check, shared with the normal test suite (`adapters/cli/tests/fuzz_corpora.rs` replays the
//! committed corpora and regressions through the same functions). Each takes arbitrary bytes and panics only if
//! an invariant breaks.
// Each fuzz target uses one of these.
#![allow(dead_code)]

use bytes::Bytes;
use dstream_adapters::checkpoint::{decode, encode, JobState};
use dstream_adapters::kafka::direct::Segment;
use dstream_adapters::kafka::records::{for_each_record_before, scan_headers_before, scan_headers_skipping};
use dstream_adapters::recovery::restore;
use dstream_cli::lab::{lab_state, write_lab_state, LabConfig, LabJob};
use dstream_core::{Duration, RecordSource, Time};

/// The checkpoint reader: the bytes as they are, then with a valid checksum (the last 4 bytes replaced by the
/// CRC32 of the rest, so that the fuzzer reaches the lengths, the decoding and the checks behind the checksum).
/// Whatever reads re-encodes to a file that reads the same; loading it into the lab job (as a resume does) and
/// printing it (as `dstream checkpoint show` does) give a value or a typed error.
pub fn checkpoint_reader(data: &[u8]) {
    read_checkpoint(data);
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        let body = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
        read_checkpoint(&fixed);
    }
}

fn read_checkpoint(data: &[u8]) {
    let Ok(cp) = decode::<JobState>(data) else { return };
    let again = encode(&cp).expect("a checkpoint that reads encodes");
    assert_eq!(decode::<JobState>(&again).expect("its encoding reads"), cp);
    if let Some(Ok(lab)) = lab_state(&cp.state) {
        let _ = write_lab_state(&lab, &mut Vec::new());
    }
    let _ = cp.meta.check();
    let interval = cp.meta.interval;
    let _ = restore(cp, LabJob::new(LabConfig::default()), interval.max(Duration(1)), Time(0));
}

/// The record-batch parser. The first byte chooses: bit 0, fix every batch's checksum (so that the fuzzer reaches
/// the records and the decompression behind it); bit 1, read every offset, else only those below `byte >> 2`.
/// Reading that fails must fail the same way from the headers alone where the headers tell (the header scan
/// agrees with the full pass on sound data); reading that skips bad batches hands over what the failing pass
/// did when it succeeds, and reports skipped spans within the range; neither panics, loops or allocates beyond
/// the bound on a batch (64 KiB here, so that bombs are cheap to find).
pub fn record_batch(data: &[u8]) {
    const LIMIT: usize = 64 << 10;
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 != 0 {
        fix_batch_checksums(&mut bytes);
    }
    let until = if mode & 2 != 0 { i64::MAX } else { (mode >> 2) as i64 };
    let bytes = Bytes::from(bytes);

    let mut failing = Vec::new();
    let full =
        for_each_record_before(&bytes, until, LIMIT, |r| failing.push((r.offset, r.key.is_some(), r.value.len())));
    if let Ok(scan) = &full {
        assert_eq!(scan_headers_before(&bytes, until).as_ref(), Ok(scan), "the header scan disagrees");
        assert_eq!(scan_headers_skipping(&bytes, until).as_ref(), Ok(scan), "the skipping scan disagrees");
    }

    let mut s = Segment::new("t".into(), 0, 0, until, bytes, LIMIT);
    s.skip_bad_batches = true;
    let mut skipping = Vec::new();
    let read = s.for_each_record(&mut |r| skipping.push((r.offset, r.key.is_some(), r.value.len())));
    let mut spans = Vec::new();
    s.for_each_skipped(&mut |m| spans.push((m.offset, m.last_offset)));
    for &(first, last) in &spans {
        let last = last.expect("a skipped span has a last offset");
        assert!(0 <= first && first <= last && last < until, "span {first}..={last} outside [0, {until})");
    }
    if full.is_ok() {
        failing.retain(|r| r.0 >= 0 && r.0 < until);
        assert!(read.is_ok(), "skipping failed where failing did not: {read:?}");
        assert_eq!(skipping, failing, "skipping read other records than failing");
        assert!(spans.is_empty(), "skipping skipped where failing read all: {spans:?}");
    }
}

/// Sets each whole batch's CRC32C (as far as the batch lengths lead) to match its bytes.
fn fix_batch_checksums(b: &mut [u8]) {
    let mut pos = 0usize;
    while b.len() - pos >= 61 {
        let len = i32::from_be_bytes(b[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let Some(end) = usize::try_from(len).ok().and_then(|l| (pos + 12).checked_add(l)) else { return };
        if len < 49 || end > b.len() {
            return;
        }
        let crc = crc32c::crc32c(&b[pos + 21..end]);
        b[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
