//! The binary recording format: a header, then one checksummed frame per batch (STYLE §5).
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic     8 bytes  "\x89dstrec\n"
//! version   u16      FORMAT_VERSION
//! header    frame    postcard(RecordingHeader)
//! batch 0   frame    postcard(Frame)
//! batch 1   frame    ...
//! frame  =  len: u32, crc32(payload): u32, payload: len bytes
//! ```
//!
//! The reader checks every length against the bytes that are actually there before allocating, and
//! every payload against its CRC32, so truncation and corruption come back as a typed error naming the
//! frame and the byte offset; it never panics on input.

use dstream_core::{BatchInfo, Duration, OffsetRange, RecordBatch, Time};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The first eight bytes of every binary recording (the high byte catches 7-bit transfers, `\n` text-mode ones).
pub const MAGIC: [u8; 8] = *b"\x89dstrec\n";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before each frame's payload: length and CRC32.
pub const FRAME_PREFIX: u64 = 8;
/// The most partitions a header may declare (far above any real topic; bounds per-partition work).
pub const MAX_PARTITIONS: u32 = 1 << 16;
/// The largest frame payload accepted (a sanity bound beside the file-size check).
pub const MAX_FRAME: u64 = 1 << 30;

/// Deserialisation that never pre-allocates from a length the input claims: vectors grow only as elements
/// actually decode, and byte strings are copied from bytes the decoder has already bounds-checked.
mod cautious {
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct VecVisitor<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for VecVisitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::new();
            while let Some(x) = seq.next_element()? {
                v.push(x);
            }
            Ok(v)
        }
    }

    /// A `Vec<T>` without trusting the encoded length for capacity.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(VecVisitor(PhantomData))
    }

    struct BytesVisitor;
    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<u8>, A::Error> {
            VecVisitor(PhantomData).visit_seq(seq)
        }
    }

    /// Byte strings, encoded as postcard's bytes (a varint length and the raw bytes).
    pub mod bytes {
        use serde::{Deserializer, Serializer};

        /// Encodes bytes.
        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        /// Decodes bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            d.deserialize_byte_buf(super::BytesVisitor)
        }
    }

    /// Optional byte strings.
    pub mod opt_bytes {
        use serde::de::{Deserializer, Visitor};
        use serde::{Serialize, Serializer};
        use std::fmt;

        struct Wrap<'a>(&'a [u8]);
        impl Serialize for Wrap<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        /// Encodes optional bytes.
        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&Wrap(b)),
                None => s.serialize_none(),
            }
        }
        struct OptVisitor;
        impl<'de> Visitor<'de> for OptVisitor {
            type Value = Option<Vec<u8>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("optional bytes")
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::bytes::deserialize(d).map(Some)
            }
        }
        /// Decodes optional bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            d.deserialize_option(OptVisitor)
        }
    }
}

/// What a recording is of: the input's shape and the job that consumed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// Kafka topic the records came from.
    pub topic: String,
    /// Number of partitions of the topic (every frame has one range per partition).
    pub partitions: u32,
    /// Batch interval.
    pub batch_interval: Duration,
    /// The batch grid's origin: batch k is at `zero + k * interval` (0 under a fresh manual clock).
    pub zero: Time,
    /// The job's name, as the program that recorded it calls it (`dstream` names the lab job `average`).
    pub job: String,
    /// The job's parameters as (name, value) text pairs, in order; names may repeat.
    #[serde(deserialize_with = "cautious::vec")]
    pub params: Vec<(String, String)>,
}

/// One input record as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Record timestamp in ms.
    pub timestamp: i64,
    /// Optional key bytes.
    #[serde(with = "cautious::opt_bytes")]
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    #[serde(with = "cautious::bytes")]
    pub value: Vec<u8>,
}

/// One batch: its time, the offset range of every partition, and the records it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Frame {
    /// Batch time.
    pub time: Time,
    /// `[from, until)` of every partition.
    #[serde(deserialize_with = "cautious::vec")]
    pub ranges: Vec<OffsetRange>,
    /// The records, in the order they were read.
    #[serde(deserialize_with = "cautious::vec")]
    pub records: Vec<Record>,
}

impl Frame {
    /// Fills `batch` with this frame's records (clearing it first).
    pub fn fill(&self, batch: &mut RecordBatch) {
        batch.clear();
        for r in &self.records {
            batch.push(r.partition, r.offset, r.timestamp, r.key.as_deref(), &r.value);
        }
    }

    /// A frame copied from an engine batch.
    pub fn from_batch(time: Time, ranges: &[OffsetRange], batch: &RecordBatch) -> Self {
        let records = batch
            .iter()
            .map(|r| Record {
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.to_vec(),
            })
            .collect();
        Frame { time, ranges: ranges.to_vec(), records }
    }
}

/// A whole recording in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// The header.
    pub header: RecordingHeader,
    /// One frame per batch, in batch order.
    #[serde(deserialize_with = "cautious::vec")]
    pub frames: Vec<Frame>,
}

/// Which part of a recording an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The magic bytes and version.
    Preamble,
    /// The header frame.
    Header,
    /// The batch frame with this index (0-based).
    Batch(u64),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Preamble => f.write_str("preamble"),
            Section::Header => f.write_str("header frame"),
            Section::Batch(i) => write!(f, "batch frame {i}"),
        }
    }
}

/// Why a recording could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// An I/O error other than running out of bytes.
    #[error("{path}: {source}")]
    Io {
        /// The file (or `<stream>`).
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not start with the recording magic.
    #[error("not a dstream recording: the first bytes are {found:02x?}, expected {MAGIC:02x?}")]
    BadMagic {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// The file was written by a format version this code does not read.
    #[error("recording format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The file ends inside a frame.
    #[error("truncated recording: {section} at byte {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Where.
        section: Section,
        /// Byte offset of the frame (or preamble) start.
        offset: u64,
        /// Bytes the frame needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A frame's length is beyond any sane bound.
    #[error("corrupt recording: {section} at byte {offset} claims {len} bytes (limit {MAX_FRAME})")]
    FrameTooLarge {
        /// Where.
        section: Section,
        /// Byte offset of the frame start.
        offset: u64,
        /// The claimed length.
        len: u64,
    },
    /// A frame's payload does not match its CRC32.
    #[error("corrupt recording: {section} at byte {offset} fails its checksum (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Where.
        section: Section,
        /// Byte offset of the frame start.
        offset: u64,
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// A frame's payload passed its checksum but does not decode (or has bytes left over).
    #[error("corrupt recording: {section} at byte {offset} does not decode: {reason}")]
    Decode {
        /// Where.
        section: Section,
        /// Byte offset of the frame start.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },
    /// Encoding a value failed (only on write).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io { path: path.to_path_buf(), source }
}

fn encode_frame<T: Serialize>(value: &T, scratch: &mut Vec<u8>, what: &'static str) -> Result<(), RecordingError> {
    scratch.clear();
    scratch.extend_from_slice(&[0u8; FRAME_PREFIX as usize]);
    let mut buf = std::mem::take(scratch);
    buf = postcard::to_extend(value, buf).map_err(|e| RecordingError::Encode { what, reason: e.to_string() })?;
    let len = buf.len() as u64 - FRAME_PREFIX;
    if len > MAX_FRAME {
        *scratch = buf;
        return Err(RecordingError::Encode { what, reason: format!("{len} bytes exceed the frame limit {MAX_FRAME}") });
    }
    let crc = crc32fast::hash(&buf[FRAME_PREFIX as usize..]);
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    *scratch = buf;
    Ok(())
}

/// Serialises a frame straight from an engine batch, without copying records into a `Frame`.
struct BatchFrame<'a> {
    time: Time,
    ranges: &'a [OffsetRange],
    batch: &'a RecordBatch,
}

struct BatchRecords<'a>(&'a RecordBatch);

impl Serialize for BatchFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Frame", 3)?;
        st.serialize_field("time", &self.time)?;
        st.serialize_field("ranges", self.ranges)?;
        st.serialize_field("records", &BatchRecords(self.batch))?;
        st.end()
    }
}

impl Serialize for BatchRecords<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct Rec<'b>(dstream_core::RecordRef<'b>);
        struct Bytes<'b>(&'b [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        impl Serialize for Rec<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let r = &self.0;
                let mut st = s.serialize_struct("Record", 5)?;
                st.serialize_field("partition", &r.partition)?;
                st.serialize_field("offset", &r.offset)?;
                st.serialize_field("timestamp", &r.timestamp)?;
                st.serialize_field("key", &r.key.map(Bytes))?;
                st.serialize_field("value", &Bytes(r.value))?;
                st.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0.iter() {
            seq.serialize_element(&Rec(r))?;
        }
        seq.end()
    }
}

/// Writes a recording frame by frame, as batches complete; `sync` makes what was written durable.
pub struct RecordingWriter<W: Write = BufWriter<File>> {
    out: W,
    file: Option<File>,
    /// The file's directory, fsynced once (at the first `sync`) so the new file's name is durable too.
    dir_to_sync: Option<PathBuf>,
    path: PathBuf,
    scratch: Vec<u8>,
    frames: u64,
}

impl RecordingWriter<BufWriter<File>> {
    /// Creates (or truncates) `path` and writes the preamble and header.
    pub fn create(path: impl AsRef<Path>, header: &RecordingHeader) -> Result<Self, RecordingError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(io_err(path))?;
        let sync_handle = file.try_clone().map_err(io_err(path))?;
        let mut w = RecordingWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            file: Some(sync_handle),
            dir_to_sync: Some(parent_dir(path)),
            path: path.to_path_buf(),
            scratch: Vec::new(),
            frames: 0,
        };
        w.write_preamble(header)?;
        Ok(w)
    }
}

impl<W: Write> RecordingWriter<W> {
    /// A writer over any byte sink (no fsync); writes the preamble and header.
    pub fn new(out: W, header: &RecordingHeader) -> Result<Self, RecordingError> {
        let mut w = RecordingWriter {
            out,
            file: None,
            dir_to_sync: None,
            path: PathBuf::from("<stream>"),
            scratch: Vec::new(),
            frames: 0,
        };
        w.write_preamble(header)?;
        Ok(w)
    }

    fn write_preamble(&mut self, header: &RecordingHeader) -> Result<(), RecordingError> {
        let path = self.path.clone();
        self.out.write_all(&MAGIC).map_err(io_err(&path))?;
        self.out.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(io_err(&path))?;
        encode_frame(header, &mut self.scratch, "recording header")?;
        self.out.write_all(&self.scratch).map_err(io_err(&path))
    }

    /// Appends one batch frame.
    pub fn write_frame(&mut self, frame: &Frame) -> Result<(), RecordingError> {
        encode_frame(frame, &mut self.scratch, "batch frame")?;
        self.out.write_all(&self.scratch).map_err(io_err(&self.path))?;
        self.frames += 1;
        Ok(())
    }

    /// Appends one batch frame straight from the engine's batch buffer (same encoding as `write_frame`).
    pub fn write_batch(
        &mut self,
        time: Time,
        ranges: &[OffsetRange],
        batch: &RecordBatch,
    ) -> Result<(), RecordingError> {
        encode_frame(&BatchFrame { time, ranges, batch }, &mut self.scratch, "batch frame")?;
        self.out.write_all(&self.scratch).map_err(io_err(&self.path))?;
        self.frames += 1;
        Ok(())
    }

    /// Number of batch frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Pushes buffered bytes to the operating system.
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        self.out.flush().map_err(io_err(&self.path))
    }

    /// Flushes and, for a file, fsyncs so every frame written so far survives a crash.
    pub fn sync(&mut self) -> Result<(), RecordingError> {
        self.flush()?;
        if let Some(f) = &self.file {
            f.sync_data().map_err(io_err(&self.path))?;
        }
        if let Some(dir) = self.dir_to_sync.take() {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Syncs and returns the sink.
    pub fn finish(mut self) -> Result<W, RecordingError> {
        self.sync()?;
        Ok(self.out)
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a directory's entries (a created or renamed file's name) durable.
fn sync_dir(dir: &Path) -> Result<(), RecordingError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Reads a recording frame by frame; every error names the frame and byte offset.
pub struct RecordingReader<R: Read = BufReader<File>> {
    input: R,
    path: PathBuf,
    header: RecordingHeader,
    /// Bytes consumed so far.
    pos: u64,
    /// Total length of the input when known (files and slices), for allocation checks.
    len: Option<u64>,
    next_frame: u64,
    buf: Vec<u8>,
    failed: bool,
}

impl RecordingReader<BufReader<File>> {
    /// Opens a recording file and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RecordingError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        Self::with_len(BufReader::with_capacity(1 << 16, file), path.to_path_buf(), Some(len))
    }
}

impl<'a> RecordingReader<&'a [u8]> {
    /// A reader over bytes in memory.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, RecordingError> {
        Self::with_len(bytes, PathBuf::from("<bytes>"), Some(bytes.len() as u64))
    }
}

impl<R: Read> RecordingReader<R> {
    /// A reader over any byte source of unknown length (allocation then grows only as bytes arrive).
    pub fn new(input: R) -> Result<Self, RecordingError> {
        Self::with_len(input, PathBuf::from("<stream>"), None)
    }

    fn with_len(input: R, path: PathBuf, len: Option<u64>) -> Result<Self, RecordingError> {
        let mut r = RecordingReader {
            input,
            path,
            header: RecordingHeader {
                topic: String::new(),
                partitions: 0,
                batch_interval: Duration(0),
                zero: Time(0),
                job: String::new(),
                params: Vec::new(),
            },
            pos: 0,
            len,
            next_frame: 0,
            buf: Vec::new(),
            failed: false,
        };
        let mut pre = [0u8; 10];
        let got = r.read_up_to(&mut pre)?;
        if got < MAGIC.len() || pre[..8] != MAGIC {
            return Err(RecordingError::BadMagic { found: pre[..got.min(8)].to_vec() });
        }
        if got < pre.len() {
            return Err(RecordingError::Truncated {
                section: Section::Preamble,
                offset: 0,
                needed: pre.len() as u64,
                available: got as u64,
            });
        }
        let version = u16::from_le_bytes([pre[8], pre[9]]);
        if version != FORMAT_VERSION {
            return Err(RecordingError::UnsupportedVersion { found: version });
        }
        match r.read_frame(Section::Header)? {
            None => {
                return Err(RecordingError::Truncated {
                    section: Section::Header,
                    offset: r.pos,
                    needed: FRAME_PREFIX,
                    available: 0,
                })
            }
            Some(offset) => {
                let header: RecordingHeader = decode(&r.buf, Section::Header, offset)?;
                if header.partitions > MAX_PARTITIONS {
                    return Err(RecordingError::Decode {
                        section: Section::Header,
                        offset,
                        reason: format!("{} partitions exceed the limit {MAX_PARTITIONS}", header.partitions),
                    });
                }
                r.header = header;
            }
        }
        Ok(r)
    }

    /// The recording's header.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// Byte offset of the next frame.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads until `buf` is full or the input ends; returns the number of bytes read.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, RecordingError> {
        let mut n = 0;
        while n < buf.len() {
            match self.input.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecordingError::Io { path: self.path.clone(), source: e }),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads one frame's payload into `self.buf`; `None` at a clean end of input. Returns the frame's start offset.
    fn read_frame(&mut self, section: Section) -> Result<Option<u64>, RecordingError> {
        let start = self.pos;
        let mut prefix = [0u8; FRAME_PREFIX as usize];
        let got = self.read_up_to(&mut prefix)?;
        if got == 0 {
            return Ok(None);
        }
        let available = |s: &Self, read: u64| s.len.map_or(read, |l| l.saturating_sub(start));
        if got < prefix.len() {
            return Err(RecordingError::Truncated {
                section,
                offset: start,
                needed: FRAME_PREFIX,
                available: available(self, got as u64),
            });
        }
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as u64;
        let stored = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        if len > MAX_FRAME {
            return Err(RecordingError::FrameTooLarge { section, offset: start, len });
        }
        if let Some(total) = self.len {
            let left = total.saturating_sub(self.pos);
            if len > left {
                return Err(RecordingError::Truncated {
                    section,
                    offset: start,
                    needed: FRAME_PREFIX + len,
                    available: FRAME_PREFIX + left,
                });
            }
        }
        // `take` + `read_to_end` grows the buffer only as bytes actually arrive.
        self.buf.clear();
        let read = (&mut self.input)
            .take(len)
            .read_to_end(&mut self.buf)
            .map_err(|e| RecordingError::Io { path: self.path.clone(), source: e })? as u64;
        self.pos += read;
        if read < len {
            return Err(RecordingError::Truncated {
                section,
                offset: start,
                needed: FRAME_PREFIX + len,
                available: FRAME_PREFIX + read,
            });
        }
        let computed = crc32fast::hash(&self.buf);
        if computed != stored {
            return Err(RecordingError::Checksum { section, offset: start, stored, computed });
        }
        Ok(Some(start))
    }

    /// The next batch frame, `Ok(None)` at the end of the recording.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, RecordingError> {
        if self.failed {
            return Ok(None);
        }
        let section = Section::Batch(self.next_frame);
        let res = match self.read_frame(section) {
            Ok(None) => return Ok(None),
            Ok(Some(offset)) => decode::<Frame>(&self.buf, section, offset),
            Err(e) => Err(e),
        };
        match res {
            Ok(f) => {
                self.next_frame += 1;
                Ok(Some(f))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// The next batch frame decoded straight into `batch` (cleared first), its records borrowed from the
    /// read buffer rather than copied into per-record vectors; returns the batch time and ranges, or `Ok(None)`
    /// at the end of the recording. Replay uses this: it allocates nothing per record.
    pub fn next_into(&mut self, batch: &mut RecordBatch) -> Result<Option<BatchInfo>, RecordingError> {
        if self.failed {
            return Ok(None);
        }
        let section = Section::Batch(self.next_frame);
        let res = match self.read_frame(section) {
            Ok(None) => return Ok(None),
            Ok(Some(offset)) => decode_into(&self.buf, batch, section, offset),
            Err(e) => Err(e),
        };
        match res {
            Ok(info) => {
                self.next_frame += 1;
                Ok(Some(info))
            }
            Err(e) => {
                batch.clear();
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Reads every remaining frame into a `Recording`.
    pub fn read_all(mut self) -> Result<Recording, RecordingError> {
        let mut frames = Vec::new();
        while let Some(f) = self.next_frame()? {
            frames.push(f);
        }
        Ok(Recording { header: self.header, frames })
    }
}

impl<R: Read> Iterator for RecordingReader<R> {
    type Item = Result<Frame, RecordingError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Decodes a batch frame's payload into `batch`, borrowing record bytes from `buf`.
fn decode_into(
    buf: &[u8],
    batch: &mut RecordBatch,
    section: Section,
    offset: u64,
) -> Result<BatchInfo, RecordingError> {
    use serde::de::DeserializeSeed;
    batch.clear();
    let mut de = postcard::Deserializer::from_bytes(buf);
    let info = FrameInto { batch }.deserialize(&mut de).map_err(|e| RecordingError::Decode {
        section,
        offset,
        reason: e.to_string(),
    })?;
    match de.finalize() {
        Ok([]) => Ok(info),
        Ok(rest) => Err(RecordingError::Decode {
            section,
            offset,
            reason: format!("{} bytes left over after the value", rest.len()),
        }),
        Err(e) => Err(RecordingError::Decode { section, offset, reason: e.to_string() }),
    }
}

/// A record as it lies in the read buffer.
#[derive(Deserialize)]
struct RecordView<'a> {
    partition: i32,
    offset: i64,
    timestamp: i64,
    #[serde(borrow)]
    key: Option<&'a [u8]>,
    value: &'a [u8],
}

/// Seeds decoding a `Frame` whose records go straight into a `RecordBatch`.
struct FrameInto<'b> {
    batch: &'b mut RecordBatch,
}

struct RecordsInto<'b> {
    batch: &'b mut RecordBatch,
}

#[derive(Deserialize)]
struct Ranges(#[serde(deserialize_with = "cautious::vec")] Vec<OffsetRange>);

impl<'de> serde::de::DeserializeSeed<'de> for FrameInto<'_> {
    type Value = BatchInfo;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<BatchInfo, D::Error> {
        struct V<'b>(&'b mut RecordBatch);
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = BatchInfo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a batch frame")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<BatchInfo, A::Error> {
                use serde::de::Error;
                let time: Time = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let ranges: Ranges = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
                seq.next_element_seed(RecordsInto { batch: self.0 })?
                    .ok_or_else(|| A::Error::custom("a batch frame needs its records"))?;
                Ok(BatchInfo { time, ranges: ranges.0 })
            }
        }
        d.deserialize_struct("Frame", &["time", "ranges", "records"], V(self.batch))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for RecordsInto<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V<'b>(&'b mut RecordBatch);
        impl<'de> serde::de::Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("records")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(r) = seq.next_element::<RecordView<'de>>()? {
                    self.0.push(r.partition, r.offset, r.timestamp, r.key, r.value);
                }
                Ok(())
            }
        }
        d.deserialize_seq(V(self.batch))
    }
}

fn decode<T: serde::de::DeserializeOwned>(buf: &[u8], section: Section, offset: u64) -> Result<T, RecordingError> {
    match postcard::take_from_bytes::<T>(buf) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(RecordingError::Decode {
            section,
            offset,
            reason: format!("{} bytes left over after the value", rest.len()),
        }),
        Err(e) => Err(RecordingError::Decode { section, offset, reason: e.to_string() }),
    }
}

impl Recording {
    /// The recording in its binary form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordingError> {
        let mut w = RecordingWriter::new(Vec::new(), &self.header)?;
        for f in &self.frames {
            w.write_frame(f)?;
        }
        w.finish()
    }

    /// Parses a binary recording held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordingError> {
        RecordingReader::from_bytes(bytes)?.read_all()
    }

    /// Reads a binary recording file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, RecordingError> {
        RecordingReader::open(path)?.read_all()
    }

    /// Writes the binary form to `path` durably: a temporary file, fsync, then an atomic rename.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), RecordingError> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut w = RecordingWriter::create(&tmp, &self.header)?;
        for f in &self.frames {
            w.write_frame(f)?;
        }
        w.finish()?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(&parent_dir(path))
    }
}

/// True if `bytes` start like a binary recording.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Recording {
        Recording {
            header: RecordingHeader {
                topic: "avg".into(),
                partitions: 2,
                batch_interval: Duration(2000),
                zero: Time(0),
                job: "average".into(),
                params: vec![("print".into(), "10".into())],
            },
            frames: vec![
                Frame {
                    time: Time(2000),
                    ranges: vec![
                        OffsetRange { partition: 0, from: 0, until: 2 },
                        OffsetRange { partition: 1, from: 0, until: 1 },
                    ],
                    records: vec![
                        Record { partition: 0, offset: 0, timestamp: 5, key: None, value: b"a,1".to_vec() },
                        Record {
                            partition: 0,
                            offset: 1,
                            timestamp: 6,
                            key: Some(b"k".to_vec()),
                            value: b"b,2".to_vec(),
                        },
                        Record { partition: 1, offset: 0, timestamp: 7, key: Some(vec![]), value: vec![] },
                    ],
                },
                Frame {
                    time: Time(4000),
                    ranges: vec![
                        OffsetRange { partition: 0, from: 2, until: 2 },
                        OffsetRange { partition: 1, from: 1, until: 1 },
                    ],
                    records: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trips_in_memory_and_on_disk() {
        let rec = sample();
        let bytes = rec.to_bytes().unwrap();
        assert!(is_binary(&bytes));
        assert_eq!(Recording::from_bytes(&bytes).unwrap(), rec);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dsrec");
        rec.write(&path).unwrap();
        assert_eq!(Recording::read(&path).unwrap(), rec);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn batch_encoding_equals_frame_encoding() {
        let rec = sample();
        let mut a = RecordingWriter::new(Vec::new(), &rec.header).unwrap();
        let mut b = RecordingWriter::new(Vec::new(), &rec.header).unwrap();
        let mut batch = RecordBatch::new();
        for f in &rec.frames {
            a.write_frame(f).unwrap();
            f.fill(&mut batch);
            b.write_batch(f.time, &f.ranges, &batch).unwrap();
        }
        assert_eq!(a.finish().unwrap(), b.finish().unwrap());
    }

    #[test]
    fn every_truncation_is_reported_with_its_frame() {
        let rec = sample();
        let bytes = rec.to_bytes().unwrap();
        // Frame ends: a cut exactly there is a shorter, valid recording.
        let mut ends = vec![];
        let mut w = RecordingWriter::new(Vec::new(), &rec.header).unwrap();
        ends.push(w.out.len());
        for f in &rec.frames {
            w.write_frame(f).unwrap();
            ends.push(w.out.len());
        }
        assert_eq!(*ends.last().unwrap(), bytes.len());
        for cut in 0..bytes.len() {
            let res = Recording::from_bytes(&bytes[..cut]);
            if let Some(i) = ends.iter().position(|&e| e == cut) {
                assert_eq!(res.unwrap().frames, rec.frames[..i].to_vec());
                continue;
            }
            match res.expect_err("a recording cut inside a frame never reads as complete") {
                RecordingError::BadMagic { .. } => assert!(cut < 8),
                RecordingError::Truncated { offset, available, needed, section } => {
                    assert!(offset <= cut as u64, "cut {cut}: offset {offset}");
                    assert!(available < needed);
                    let want = match ends.iter().position(|&e| e > cut) {
                        _ if cut < 10 => Section::Preamble,
                        Some(0) => Section::Header,
                        Some(i) => Section::Batch(i as u64 - 1),
                        None => unreachable!("cut is inside the file"),
                    };
                    assert_eq!(section, want, "cut {cut}");
                }
                other => panic!("cut at {cut}: unexpected {other}"),
            }
        }
    }

    #[test]
    fn corrupt_byte_is_a_checksum_error_naming_the_frame() {
        let rec = sample();
        let bytes = rec.to_bytes().unwrap();
        let header_len = RecordingWriter::new(Vec::new(), &rec.header).unwrap().finish().unwrap().len();
        // Flip one payload byte of batch frame 1 (the last frame).
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        let err = Recording::from_bytes(&bad).unwrap_err();
        match err {
            RecordingError::Checksum { section: Section::Batch(1), offset, .. } => assert!(offset > header_len as u64),
            other => panic!("unexpected {other}"),
        }
        // A huge claimed length is refused before any allocation.
        let mut huge = bytes[..header_len].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(matches!(
            Recording::from_bytes(&huge),
            Err(RecordingError::FrameTooLarge { section: Section::Batch(0), .. })
        ));
        let mut long = bytes[..header_len].to_vec();
        long.extend_from_slice(&1000u32.to_le_bytes());
        long.extend_from_slice(&[0; 4]); // CRC
        long.extend_from_slice(&[0; 10]); // 10 of the 1000 payload bytes
        match Recording::from_bytes(&long) {
            Err(RecordingError::Truncated { section: Section::Batch(0), offset, needed: 1008, available: 18 }) => {
                assert_eq!(offset, header_len as u64)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn streaming_reader_of_unknown_length_reads_the_same_and_names_truncation() {
        let rec = sample();
        let bytes = rec.to_bytes().unwrap();
        let r = RecordingReader::new(std::io::Cursor::new(bytes.clone())).unwrap();
        assert_eq!(r.header(), &rec.header);
        assert_eq!(r.collect::<Result<Vec<_>, _>>().unwrap(), rec.frames);
        let cut = &bytes[..bytes.len() - 2];
        let mut r = RecordingReader::new(std::io::Cursor::new(cut.to_vec())).unwrap();
        assert_eq!(r.next_frame().unwrap().as_ref(), Some(&rec.frames[0]));
        match r.next_frame() {
            Err(RecordingError::Truncated { section: Section::Batch(1), needed, available, .. }) => {
                assert_eq!(needed - available, 2)
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(r.next().is_none(), "a reader stops after an error");
    }

    #[test]
    fn decoding_into_a_batch_equals_decoding_frames() {
        let rec = sample();
        let bytes = rec.to_bytes().unwrap();
        let mut r = RecordingReader::from_bytes(&bytes).unwrap();
        let mut batch = RecordBatch::new();
        for f in &rec.frames {
            let info = r.next_into(&mut batch).unwrap().unwrap();
            assert_eq!((info.time, &info.ranges), (f.time, &f.ranges));
            assert_eq!(&Frame::from_batch(info.time, &info.ranges, &batch), f);
        }
        assert!(r.next_into(&mut batch).unwrap().is_none());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut r = RecordingReader::from_bytes(&bad).unwrap();
        r.next_into(&mut batch).unwrap().unwrap();
        assert!(matches!(r.next_into(&mut batch), Err(RecordingError::Checksum { section: Section::Batch(1), .. })));
        assert!(batch.is_empty());
    }

    #[test]
    fn writer_appends_frames_readable_after_each_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.dsrec");
        let rec = sample();
        let mut w = RecordingWriter::create(&path, &rec.header).unwrap();
        for (i, f) in rec.frames.iter().enumerate() {
            w.write_frame(f).unwrap();
            w.sync().unwrap();
            assert_eq!(Recording::read(&path).unwrap().frames, rec.frames[..=i].to_vec());
        }
        assert_eq!(w.frames(), 2);
    }

    #[test]
    fn absurd_partition_count_is_refused() {
        let mut rec = sample();
        rec.header.partitions = MAX_PARTITIONS + 1;
        let bytes = rec.to_bytes().unwrap();
        assert!(matches!(
            Recording::from_bytes(&bytes),
            Err(RecordingError::Decode { section: Section::Header, offset: 10, .. })
        ));
    }

    #[test]
    fn wrong_version_and_magic_are_named() {
        let mut bytes = sample().to_bytes().unwrap();
        bytes[8] = 9;
        assert!(matches!(Recording::from_bytes(&bytes), Err(RecordingError::UnsupportedVersion { found: 9 })));
        assert!(matches!(Recording::from_bytes(b"dstream-recording 1\n"), Err(RecordingError::BadMagic { .. })));
    }
}
