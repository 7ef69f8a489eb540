//! The filesystem checkpoint store: one self-checking file per checkpoint, written atomically, newest K kept.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! magic "DSTRMCKP" (8) | version u32 | meta length u64 | meta (postcard) | state length u64 | state (postcard) | crc32 u32
//! ```
//!
//! The CRC covers every byte before it. The meta section (job fingerprint, batch time, grid, next offsets,
//! pending batches) is decoded before the state, so a checkpoint of another job is reported as a fingerprint
//! mismatch, not as a decoding error. State and offsets live in the same file, so they can never disagree.
//!
//! Version 2 (this one): the state section is a job's [`JobState`], one frame per stateful operator (id, kind,
//! size, the operator's own encoding), and the fingerprint lists each stateful operator with the parameters
//! that define its state; the meta section ends with the topic's id (added within version 2, after the other
//! fields: files without it read as having none, and older readers ignore it). Version 1 files (the lab job
//! only, before any job could be checkpointed) are refused with a message naming the version.

use dstream_core::Time;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"DSTRMCKP";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// How many checkpoints are kept by default.
pub const DEFAULT_KEEP: usize = 10;

const FILE_PREFIX: &str = "checkpoint-";
/// The lock file a writing store holds (flock) for as long as it is open; it holds the holder's pid.
pub const LOCK_FILE: &str = ".lock";
const TEMP_PREFIX: &str = ".checkpoint-";
const TEMP_SUFFIX: &str = ".tmp";
const HEADER_LEN: usize = 8 + 4 + 8;

pub use dstream_core::checkpoint::{
    for_each_operator, Checkpoint, CheckpointMeta, Fingerprint, FingerprintDiff, JobState, NextOffset, OperatorState,
};

/// Why a checkpoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorruptCheckpoint {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// A symbolic link: checkpoints are regular files written here, and links are not followed.
    #[error("a symbolic link, not a checkpoint written here (links are not followed)")]
    Link,
    /// Shorter than the smallest possible checkpoint.
    #[error("truncated: {len} bytes")]
    TooShort {
        /// File length.
        len: usize,
    },
    /// The file does not start with the checkpoint magic.
    #[error("not a dstream checkpoint (bad magic)")]
    BadMagic,
    /// Written by a format version this code does not read.
    #[error("format version {found} is not supported (this dstream reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// A section length points past the end of the file.
    #[error("truncated: a section needs {needed} bytes, the file has {len}")]
    Truncated {
        /// Bytes the sections claim.
        needed: u64,
        /// File length.
        len: usize,
    },
    /// Bytes follow the checksum.
    #[error("{extra} unexpected bytes after the checksum")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The checksum does not match the content.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    Checksum {
        /// CRC in the file.
        stored: u32,
        /// CRC of the content.
        computed: u32,
    },
    /// The meta section decodes but holds values no run writes (see [`CheckpointMeta::check`]).
    #[error("invalid content: {0}")]
    Invalid(String),
    /// A section passed the checksum but does not decode.
    #[error("cannot decode the {section} section: {source}")]
    Decode {
        /// `meta` or `state`.
        section: &'static str,
        /// The decoder's error.
        source: postcard::Error,
    },
}

/// A corrupt checkpoint that was skipped in favour of an older one; the caller should print it.
#[derive(Debug, thiserror::Error)]
#[error("skipped checkpoint {}: {reason}", path.display())]
pub struct SkippedCheckpoint {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: CorruptCheckpoint,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The directory could not be created.
    #[error("cannot create checkpoint directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory exists but a file cannot be written in it.
    #[error("checkpoint directory {} is not writable: {source}", path.display())]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another process holds the directory's lock: a second writer would corrupt the first one's checkpoints.
    #[error(
        "checkpoint directory {} is in use by {holder} (it holds {}); stop that run or use another --checkpoint directory",
        path.display(), path.join(LOCK_FILE).display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Who holds the lock, e.g. `pid 1234 (dstream)`.
        holder: String,
    },
    /// The directory could not be listed.
    #[error("cannot list checkpoint directory {}: {source}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing, syncing or renaming a checkpoint failed; the previous checkpoints are untouched.
    #[error("cannot write checkpoint {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The state could not be encoded.
    #[error("cannot encode checkpoint: {0}")]
    Encode(#[from] postcard::Error),
    /// An operator's state could not be encoded.
    #[error("cannot encode checkpoint: {0}")]
    State(String),
    /// Checkpoint files exist but none can be used.
    #[error(
        "no valid checkpoint in {}: {} file(s), all unusable (newest {}: {}); pass --reset-checkpoint to start fresh",
        dir.display(), skipped.len(), skipped[0].path.display(), skipped[0].reason
    )]
    NoValidCheckpoint {
        /// The directory.
        dir: PathBuf,
        /// Every file tried, newest first, with why it failed (never empty).
        skipped: Vec<SkippedCheckpoint>,
    },
    /// The newest valid checkpoint belongs to another job or input.
    #[error(
        "checkpoint {} belongs to a different job: {}; use another --checkpoint directory or pass --reset-checkpoint",
        path.display(), differences.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
    )]
    FingerprintMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// What differs, field by field.
        differences: Vec<FingerprintDiff>,
    },
    /// The topic has another id than when the newest valid checkpoint was taken: it was deleted and re-created,
    /// or its broker lost its data, so the saved offsets point into a different log.
    #[error(
        "checkpoint {} was taken from topic {topic:?} with id {stored}, but the topic now has id {current} (it was \
         deleted and re-created, or its broker lost its data), so its saved offsets point into a different log; \
         pass --reset-checkpoint to start over on the new log, or use another --checkpoint directory",
        path.display()
    )]
    TopicReplaced {
        /// The checkpoint file.
        path: PathBuf,
        /// The topic.
        topic: String,
        /// The topic id in the checkpoint.
        stored: String,
        /// The topic id now.
        current: String,
    },
}

/// A checkpoint read from the store, with the newer files that had to be skipped.
#[derive(Debug)]
pub struct Loaded<S> {
    /// The checkpoint.
    pub checkpoint: Checkpoint<S>,
    /// Its file.
    pub path: PathBuf,
    /// Newer files that were corrupt or truncated, newest first (print each).
    pub skipped: Vec<SkippedCheckpoint>,
}

/// Encodes a checkpoint into the bytes of its file.
pub fn encode<S: Serialize>(cp: &Checkpoint<S>) -> Result<Vec<u8>, CheckpointError> {
    let mut meta = postcard::to_stdvec(&cp.meta)?;
    meta.extend_from_slice(&postcard::to_stdvec(&MetaExtension { topic_id: cp.meta.fingerprint.topic_id.clone() })?);
    meta.extend_from_slice(&postcard::to_stdvec(&EpochExtension { leader_epochs: cp.meta.leader_epochs.clone() })?);
    if !cp.meta.fingerprint.more_inputs.is_empty() {
        // Only a job of several inputs has it: a one-topic checkpoint's bytes are what they were.
        let more_inputs = cp.meta.fingerprint.more_inputs.clone();
        meta.extend_from_slice(&postcard::to_stdvec(&InputsExtension { more_inputs })?);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + meta.len() + 8 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta);
    // The state is encoded straight after its length, which is filled in once known (no copy of the state).
    let len_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut out = postcard::to_extend(&cp.state, out)?;
    let state_len = (out.len() - len_at - 8) as u64;
    out[len_at..len_at + 8].copy_from_slice(&state_len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks a file's framing and checksum; returns the meta and state sections.
fn sections(bytes: &[u8]) -> Result<(&[u8], &[u8]), CorruptCheckpoint> {
    let len = bytes.len();
    if len < HEADER_LEN + 8 + 4 {
        if len >= MAGIC.len() && &bytes[..MAGIC.len()] != MAGIC {
            return Err(CorruptCheckpoint::BadMagic);
        }
        return Err(CorruptCheckpoint::TooShort { len });
    }
    if &bytes[..8] != MAGIC {
        return Err(CorruptCheckpoint::BadMagic);
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let truncated = |needed: u64| CorruptCheckpoint::Truncated { needed, len };
    // Every length comes from the file: each sum is checked, and each offset against the file's length, before
    // anything is sliced or allocated. `needed` saturates, so a length near 2^64 is reported, never wrapped.
    let file_len = len as u64;
    let meta_len = u64_at(12);
    let state_len_at = (HEADER_LEN as u64).checked_add(meta_len);
    let state_len_at = match state_len_at.filter(|&e| e.checked_add(8 + 4).is_some_and(|n| n <= file_len)) {
        Some(at) => at as usize,
        None => return Err(truncated((HEADER_LEN as u64).saturating_add(meta_len).saturating_add(8 + 4))),
    };
    let state_len = u64_at(state_len_at);
    let state_at = state_len_at as u64 + 8;
    let end = match state_at.checked_add(state_len).filter(|&e| e.checked_add(4).is_some_and(|n| n <= file_len)) {
        Some(end) => end as usize,
        None => return Err(truncated(state_at.saturating_add(state_len).saturating_add(4))),
    };
    let stored = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(CorruptCheckpoint::Checksum { stored, computed });
    }
    // Version is checked after the CRC so a flipped version byte reads as corruption, not as a future format.
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(CorruptCheckpoint::UnsupportedVersion { found: version });
    }
    if end + 4 != len {
        return Err(CorruptCheckpoint::TrailingBytes { extra: len - end - 4 });
    }
    Ok((&bytes[HEADER_LEN..state_len_at], &bytes[state_len_at + 8..end]))
}

fn decode_section<T: DeserializeOwned>(bytes: &[u8], section: &'static str) -> Result<T, CorruptCheckpoint> {
    postcard::from_bytes(bytes).map_err(|source| CorruptCheckpoint::Decode { section, source })
}

/// What the meta section holds after the [`CheckpointMeta`] fields (added within version 2: a file written
/// without it reads as having none, and a reader that does not know it stops before it).
#[derive(Serialize, serde::Deserialize)]
struct MetaExtension {
    /// The topic's id, if the broker gave one.
    topic_id: Option<String>,
}

/// What the meta section holds after the [`MetaExtension`] (added within version 2, as it was).
#[derive(Serialize, serde::Deserialize)]
struct EpochExtension {
    /// Per partition, the leader epoch of the last batch fetched.
    leader_epochs: Vec<dstream_core::checkpoint::LeaderEpoch>,
}

/// What the meta section holds after the [`EpochExtension`] when a job reads several topics (added within
/// version 2): its inputs after the first.
#[derive(Serialize, serde::Deserialize)]
struct InputsExtension {
    more_inputs: Vec<dstream_core::checkpoint::InputPrint>,
}

/// Decodes the meta section: the [`CheckpointMeta`] fields, then the [`MetaExtension`], the [`EpochExtension`]
/// and the [`InputsExtension`] if the file has them.
fn decode_meta(bytes: &[u8]) -> Result<CheckpointMeta, CorruptCheckpoint> {
    let decoding = |source| CorruptCheckpoint::Decode { section: "meta", source };
    let (mut meta, rest): (CheckpointMeta, &[u8]) = postcard::take_from_bytes(bytes).map_err(decoding)?;
    if !rest.is_empty() {
        // Fields a later dstream may add after these are left alone, as this one's are by older readers.
        let (ext, rest): (MetaExtension, &[u8]) = postcard::take_from_bytes(rest).map_err(decoding)?;
        meta.fingerprint.topic_id = ext.topic_id;
        if !rest.is_empty() {
            let (ext, rest): (EpochExtension, &[u8]) = postcard::take_from_bytes(rest).map_err(decoding)?;
            meta.leader_epochs = ext.leader_epochs;
            if !rest.is_empty() {
                let (ext, _): (InputsExtension, &[u8]) = postcard::take_from_bytes(rest).map_err(decoding)?;
                meta.fingerprint.more_inputs = ext.more_inputs;
            }
        }
    }
    Ok(meta)
}

/// Decodes a whole checkpoint from its file's bytes (checksum verified).
pub fn decode<S: DeserializeOwned>(bytes: &[u8]) -> Result<Checkpoint<S>, CorruptCheckpoint> {
    let (meta, state) = sections(bytes)?;
    Ok(Checkpoint { meta: decode_meta(meta)?, state: decode_section(state, "state")? })
}

/// Reads and decodes one checkpoint file.
pub fn read_file<S: DeserializeOwned>(path: &Path) -> Result<Checkpoint<S>, CorruptCheckpoint> {
    decode(&fs::read(path)?)
}

/// The name of the checkpoint file for batch `time`.
pub fn file_name(time: Time) -> String {
    format!("{FILE_PREFIX}{}", time.0)
}

/// The name of the temporary file a checkpoint for batch `time` is written to before its rename.
pub fn temp_file_name(time: Time) -> String {
    format!("{TEMP_PREFIX}{}{TEMP_SUFFIX}", time.0)
}

fn parse_file_name(name: &str) -> Option<Time> {
    let digits = name.strip_prefix(FILE_PREFIX)?;
    let body = digits.strip_prefix('-').unwrap_or(digits);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Time)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A directory of checkpoint files, newest `keep` retained.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
    /// The directory's lock, held while any clone of a writing store lives (`None` when opened read-only).
    lock: Option<Arc<File>>,
    /// Temporary files of an interrupted write that `open` removed.
    removed: Vec<PathBuf>,
}

/// The lock of `dir` for this process: shared by every store of this process open on it (a process may reopen
/// its own directory), taken with [`lock_dir`] by the first.
fn held_lock(dir: &Path) -> Result<Arc<File>, CheckpointError> {
    static HELD: std::sync::Mutex<Vec<(PathBuf, std::sync::Weak<File>)>> = std::sync::Mutex::new(Vec::new());
    let key =
        fs::canonicalize(dir).map_err(|source| CheckpointError::NotWritable { path: dir.to_path_buf(), source })?;
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.retain(|(_, w)| w.strong_count() > 0);
    if let Some(lock) = held.iter().find(|(p, _)| *p == key).and_then(|(_, w)| w.upgrade()) {
        return Ok(lock);
    }
    let lock = Arc::new(lock_dir(dir)?);
    held.push((key, Arc::downgrade(&lock)));
    Ok(lock)
}

/// Takes an exclusive, non-blocking flock on the directory's lock file and writes this process's pid into it.
fn lock_dir(dir: &Path) -> Result<File, CheckpointError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let not_writable = |source| CheckpointError::NotWritable { path: dir.to_path_buf(), source };
    let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
    let file = file.map_err(not_writable)?;
    // SAFETY: flock(2) on a descriptor this function owns for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(not_writable(e));
        }
        let pid = fs::read_to_string(&path).unwrap_or_default().trim().to_string();
        let holder = match pid.parse::<u32>() {
            Ok(pid) => match fs::read_to_string(format!("/proc/{pid}/comm")) {
                Ok(name) => format!("another process, pid {pid} ({})", name.trim()),
                Err(_) => format!("another process, pid {pid}"),
            },
            Err(_) => "another process".to_string(),
        };
        return Err(CheckpointError::Locked { path: dir.to_path_buf(), holder });
    }
    Ok(file)
}

impl CheckpointStore {
    /// Opens (creating if needed) a checkpoint directory for writing: takes its lock (refused, naming the holder,
    /// while another process has it open), removes temporary files left by a write that did not finish (a crash,
    /// a full disk) and then checks that a file can be written there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        if let Ok(target) = fs::read_link(&dir) {
            if !dir.exists() {
                let source = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("it is a symbolic link to {}, which does not exist", target.display()),
                );
                return Err(CheckpointError::CreateDir { path: dir, source });
            }
        }
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::CreateDir { path: dir.clone(), source })?;
        let lock = held_lock(&dir)?;
        let mut store = CheckpointStore { dir, keep: DEFAULT_KEEP, lock: None, removed: Vec::new() };
        let not_writable = |source| CheckpointError::NotWritable { path: store.dir.clone(), source };
        // Leftovers first: after a full disk they may be what fills it.
        for entry in store.entries()? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path()).map_err(not_writable)?;
                store.removed.push(entry.path());
            }
        }
        if !store.removed.is_empty() {
            sync_dir(&store.dir).map_err(not_writable)?;
        }
        let probe = store.dir.join(format!("{TEMP_PREFIX}probe{TEMP_SUFFIX}"));
        File::create(&probe).and_then(|mut f| f.write_all(b"probe")).map_err(|e| {
            let _ = fs::remove_file(&probe);
            not_writable(e)
        })?;
        fs::remove_file(&probe).map_err(not_writable)?;
        let mut pid = &*lock;
        pid.set_len(0)
            .and_then(|_| pid.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(not_writable)?;
        store.lock = Some(lock);
        Ok(store)
    }

    /// A store over an existing directory, for reading only: nothing is created, locked, probed or removed.
    pub fn open_read_only(dir: impl Into<PathBuf>) -> Self {
        CheckpointStore { dir: dir.into(), keep: DEFAULT_KEEP, lock: None, removed: Vec::new() }
    }

    /// Temporary files of an interrupted write that [`open`](Self::open) removed (print them).
    pub fn removed_leftovers(&self) -> &[PathBuf] {
        &self.removed
    }

    /// Keeps the newest `keep` checkpoints (at least 1).
    pub fn with_keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many checkpoints are kept.
    pub fn keep(&self) -> usize {
        self.keep
    }

    fn entries(&self) -> Result<Vec<fs::DirEntry>, CheckpointError> {
        let list = |source| CheckpointError::List { path: self.dir.clone(), source };
        fs::read_dir(&self.dir).map_err(list)?.collect::<Result<Vec<_>, _>>().map_err(list)
    }

    /// Every checkpoint file (by name), newest first.
    pub fn list(&self) -> Result<Vec<(Time, PathBuf)>, CheckpointError> {
        Ok(self.candidates()?.into_iter().filter(|c| !c.2).map(|(t, p, _)| (t, p)).collect())
    }

    /// Regular files and symbolic links named as checkpoints, newest first, each with whether it is a link.
    fn candidates(&self) -> Result<Vec<(Time, PathBuf, bool)>, CheckpointError> {
        let mut files: Vec<(Time, PathBuf, bool)> = self
            .entries()?
            .into_iter()
            .filter_map(|e| {
                let t = parse_file_name(&e.file_name().to_string_lossy())?;
                let ft = e.file_type().ok()?;
                (ft.is_file() || ft.is_symlink()).then(|| (t, e.path(), ft.is_symlink()))
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(files)
    }

    /// Writes a checkpoint atomically: temporary file, fsync, rename into place, fsync of the directory; then
    /// deletes checkpoints beyond the newest `keep`. Returns the file's path.
    pub fn save<S: Serialize>(&self, cp: &Checkpoint<S>) -> Result<PathBuf, CheckpointError> {
        self.write_encoded(cp.meta.time, &encode(cp)?)
    }

    /// Writes the bytes of an encoded checkpoint of batch `time` as [`CheckpointStore::save`] does.
    pub fn write_encoded(&self, time: Time, bytes: &[u8]) -> Result<PathBuf, CheckpointError> {
        let path = self.dir.join(file_name(time));
        let temp = self.dir.join(temp_file_name(time));
        let write = |p: &Path| {
            let p = p.to_path_buf();
            move |source| CheckpointError::Write { path: p, source }
        };
        let written = File::create(&temp).and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()));
        if let Err(e) = written {
            // A partial file only takes space (on a full disk, the space the next write needs).
            let _ = fs::remove_file(&temp);
            return Err(write(&temp)(e));
        }
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(write(&path)(e));
        }
        sync_dir(&self.dir).map_err(write(&path))?;
        // Retention is best effort: the new checkpoint is already durable, and a file that cannot be listed or
        // removed only costs space.
        for (_, old) in self.list().unwrap_or_default().into_iter().skip(self.keep) {
            let _ = fs::remove_file(old);
        }
        Ok(path)
    }

    /// The newest checkpoint that reads back intact, skipping (and reporting) newer corrupt ones. `Ok(None)` when
    /// the directory holds no checkpoint; an error when files exist but none is valid, or when the newest valid
    /// one's fingerprint differs from `expected` (if given).
    pub fn load_latest<S: DeserializeOwned>(
        &self,
        expected: Option<&Fingerprint>,
    ) -> Result<Option<Loaded<S>>, CheckpointError> {
        let mut skipped = Vec::new();
        for (_, path, link) in self.candidates()? {
            if link {
                skipped.push(SkippedCheckpoint { path, reason: CorruptCheckpoint::Link });
                continue;
            }
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    skipped.push(SkippedCheckpoint { path, reason: e.into() });
                    continue;
                }
            };
            let (meta, state) = match sections(&bytes).and_then(|(m, s)| Ok((decode_meta(m)?, s))) {
                Ok(x) => x,
                Err(reason) => {
                    skipped.push(SkippedCheckpoint { path, reason });
                    continue;
                }
            };
            let meta: CheckpointMeta = meta;
            if let Err(e) = meta.check() {
                skipped.push(SkippedCheckpoint { path, reason: CorruptCheckpoint::Invalid(e) });
                continue;
            }
            if let Some(expected) = expected {
                let differences = meta.fingerprint.differences(expected);
                if !differences.is_empty() {
                    return Err(CheckpointError::FingerprintMismatch { path, differences });
                }
                if let Some((topic, stored, current)) = meta.fingerprint.replaced_topic(expected) {
                    let (topic, stored, current) = (topic.to_string(), stored.to_string(), current.to_string());
                    return Err(CheckpointError::TopicReplaced { path, topic, stored, current });
                }
            }
            match decode_section(state, "state") {
                Ok(state) => return Ok(Some(Loaded { checkpoint: Checkpoint { meta, state }, path, skipped })),
                Err(reason) => skipped.push(SkippedCheckpoint { path, reason }),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(CheckpointError::NoValidCheckpoint { dir: self.dir.clone(), skipped })
        }
    }

    /// Moves every checkpoint file (and link named as one) into a new subdirectory `discarded-N` (nothing is deleted), so the next run
    /// starts fresh; returns the subdirectory, or `None` if there was nothing to move.
    pub fn reset(&self) -> Result<Option<PathBuf>, CheckpointError> {
        let files: Vec<(Time, PathBuf)> = self.candidates()?.into_iter().map(|(t, p, _)| (t, p)).collect();
        if files.is_empty() {
            return Ok(None);
        }
        let mut n = 1;
        let aside = loop {
            let p = self.dir.join(format!("discarded-{n}"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        fs::create_dir(&aside).map_err(|source| CheckpointError::NotWritable { path: self.dir.clone(), source })?;
        // Oldest first: a crash part-way leaves the newest checkpoints in place, as if no reset had been asked.
        for (_, f) in files.into_iter().rev() {
            let to = aside.join(f.file_name().expect("a listed file has a name"));
            fs::rename(&f, &to).map_err(|source| CheckpointError::Write { path: f.clone(), source })?;
        }
        sync_dir(&self.dir).map_err(|source| CheckpointError::Write { path: self.dir.clone(), source })?;
        Ok(Some(aside))
    }
}
