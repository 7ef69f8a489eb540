//! (5) Random and bit-flipped recording bytes give a typed error, never a panic or a large allocation.
//!
//! This binary installs a counting allocator, so it holds only these tests: the largest single allocation
//! made while decoding is checked against the input's size.

use dstream_core::RecordBatch;
use dstream_harness::recording::{Recording, RecordingError, RecordingReader, FORMAT_VERSION, MAGIC};
use dstream_harness::strategies::recording;
use dstream_harness::text::from_text;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Tests in this binary measure one at a time.
static MEASURE: Mutex<()> = Mutex::new(());
thread_local! {
    /// True on the thread whose allocations are being measured (other test threads are ignored).
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as `GlobalAlloc::realloc` requires of its caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Decodes `bytes`, returning the result and the largest single allocation made meanwhile.
fn decode_measured(bytes: &[u8]) -> (Result<Recording, RecordingError>, usize) {
    let _one = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    LARGEST.store(0, Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    let r = Recording::from_bytes(bytes);
    // The replay path: frames decoded straight into a batch buffer. It must fail exactly where the other does.
    let mut batch = RecordBatch::new();
    let streamed = RecordingReader::from_bytes(bytes).and_then(|mut reader| {
        let mut n = 0usize;
        while reader.next_into(&mut batch)?.is_some() {
            n += 1;
        }
        Ok(n)
    });
    MEASURING.with(|m| m.set(false));
    match (&r, &streamed) {
        (Ok(rec), Ok(n)) => assert_eq!(rec.frames.len(), *n),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("whole-file and streaming decoding disagree: {a:?} vs {b:?}"),
    }
    (r, LARGEST.load(Ordering::SeqCst))
}

/// An allocation bound: a few times the input plus room for error messages and small fixed buffers.
fn bound(len: usize) -> usize {
    4 * len + 4096
}

fn preamble() -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    v
}

/// A frame with a correct length and CRC around arbitrary payload bytes, so decoding itself is exercised.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256), with_magic: bool) {
        let input = if with_magic { [preamble(), bytes].concat() } else { bytes };
        let (r, largest) = decode_measured(&input);
        prop_assert!(largest <= bound(input.len()), "allocated {} for {} bytes", largest, input.len());
        if let Ok(rec) = r {
            // Only possible if the random bytes happen to be a valid recording; then they must re-encode.
            prop_assert_eq!(rec.to_bytes().unwrap(), input);
        }
    }

    #[test]
    fn checksummed_garbage_is_a_decode_error(
        header in prop::collection::vec(any::<u8>(), 0..64),
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let mut input = preamble();
        input.extend(framed(&header));
        for f in &frames {
            input.extend(framed(f));
        }
        let (r, largest) = decode_measured(&input);
        prop_assert!(largest <= bound(input.len()), "allocated {} for {} bytes", largest, input.len());
        match r {
            Ok(rec) => prop_assert_eq!(rec.to_bytes().unwrap(), input),
            Err(e) => prop_assert!(matches!(e, RecordingError::Decode { .. }), "{}", e),
        }
    }

    #[test]
    fn bit_flips_are_detected(rec in recording(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let good = rec.to_bytes().unwrap();
        let mut bad = good.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        let (r, largest) = decode_measured(&bad);
        prop_assert!(largest <= bound(bad.len()), "allocated {} for {} bytes", largest, bad.len());
        // One flipped bit is always caught: by the magic, the version, a length (truncation or a misaligned
        // frame's checksum) or the CRC32, which detects every single-bit error.
        prop_assert!(r.is_err(), "flip of bit {} at byte {} went unnoticed", bit, i);
    }

    #[test]
    fn random_text_is_an_error_or_a_recording(text in ".{0,200}", lines in prop::collection::vec("[-#\\[\" a-z0-9=:.]{0,20}", 0..12)) {
        let _ = from_text(&text);
        let doc = format!("dstream-recording 1\n{}", lines.join("\n"));
        if let Ok(rec) = from_text(&doc) {
            prop_assert_eq!(from_text(&dstream_harness::text::to_text(&rec)).unwrap(), rec);
        }
    }
}

#[test]
fn a_huge_claimed_length_allocates_nothing_large() {
    let mut input = preamble();
    input.extend_from_slice(&(1u32 << 30).to_le_bytes());
    input.extend_from_slice(&[0; 4]);
    input.extend_from_slice(&[7; 100]);
    let (r, largest) = decode_measured(&input);
    assert!(matches!(r, Err(RecordingError::Truncated { .. })), "{r:?}");
    assert!(largest <= bound(input.len()), "allocated {largest}");
}
