//! Fuzz the recording readers: any bytes must give a recording or a typed error, never a panic; whatever
//! reads must re-encode to the same bytes (binary) or the same recording (text).
#![no_main]

use dstream_core::RecordBatch;
use dstream_harness::recording::{Recording, RecordingReader};
use dstream_harness::text::{from_text, to_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // In memory, with the length known.
    if let Ok(rec) = Recording::from_bytes(data) {
        assert_eq!(rec.to_bytes().expect("a read recording re-encodes"), data);
    }
    // Streaming, length unknown: the same frames until the first error.
    if let Ok(reader) = RecordingReader::new(data) {
        for frame in reader {
            if frame.is_err() {
                break;
            }
        }
    }
    // The replay path: frames decoded straight into a batch buffer.
    if let Ok(mut reader) = RecordingReader::from_bytes(data) {
        let mut batch = RecordBatch::new();
        while let Ok(Some(_)) = reader.next_into(&mut batch) {}
    }
    // The text form.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(rec) = from_text(text) {
            assert_eq!(from_text(&to_text(&rec)).expect("printed text parses"), rec);
        }
    }
});
