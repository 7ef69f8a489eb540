//! Input streams that do not read the batch's records: a queue of batches (Spark's `queueStream`), any source
//! pulled once per batch (lines received from a socket), and a directory's new files (Spark's `textFileStream`).
//! What goes into a batch is decided here, purely; the adapters do the reading (`dstream_adapters::sources`).

use crate::record::SourceError;
use crate::stateful::{decode, encode_into, StateCodecError, StateVisit, Stateful};
use crate::stream::{BatchContext, DStream, JobError, Sink};
use crate::time::{Duration, Time};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::rc::Rc;

/// The queue behind a [`QueueStream`]: the program pushes batches of elements, the stream takes them (Spark's
/// `Queue[RDD[T]]`). Cloning gives another handle on the same queue.
pub struct Queue<T> {
    inner: Rc<RefCell<VecDeque<Vec<T>>>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { inner: self.inner.clone() }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { inner: Rc::default() }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("batches", &self.len()).finish()
    }
}

impl<T> Queue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends one batch's elements (Spark: `queue += rdd`).
    pub fn push(&self, batch: Vec<T>) {
        self.inner.borrow_mut().push_back(batch);
    }
    /// Number of batches waiting.
    pub fn len(&self) -> usize {
        self.inner.borrow().len()
    }
    /// True if no batch is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `queueStream(queue, oneAtATime, defaultRDD)`: at each batch, the next queued batch (`one_at_a_time`), or every
/// queued batch concatenated, oldest first; with none queued, the default batch if any, else nothing
/// (Spark's `QueueInputDStream`). Like Spark's, it is not checkpointed: a queue lives in the program.
pub struct QueueStream<T> {
    queue: Queue<T>,
    one_at_a_time: bool,
    default: Option<Vec<T>>,
    current: Vec<T>,
}

impl<T> QueueStream<T> {
    /// A stream taking its batches from `queue`.
    pub fn new(queue: &Queue<T>, one_at_a_time: bool, default: Option<Vec<T>>) -> Self {
        QueueStream { queue: queue.clone(), one_at_a_time, default, current: Vec::new() }
    }
}

impl<T: Clone> DStream for QueueStream<T> {
    type Item = T;
    /// Takes the batch's elements from the queue (Spark does it when it generates the batch).
    fn begin(&mut self, _ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.current.clear();
        let mut q = self.queue.inner.borrow_mut();
        if q.is_empty() {
            if let Some(d) = &self.default {
                self.current.extend(d.iter().cloned());
            }
        } else if self.one_at_a_time {
            self.current = q.pop_front().unwrap_or_default();
        } else {
            q.drain(..).for_each(|b| self.current.extend(b));
        }
        Ok(())
    }
    fn feed_each<G: Sink<T>>(&mut self, _ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        Ok(())
    }
    fn finish_each<G: Sink<T>>(&mut self, _ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        self.current.drain(..).for_each(|x| sink.push(x));
        Ok(true)
    }
    fn visit_state(&mut self, _visit: &mut StateVisit<'_>) {}
    fn slide(&self, batch: Duration) -> Duration {
        batch
    }
}

/// A stream whose batch is whatever `pull(batch time)` gives when the batch starts (e.g. the lines a socket
/// receiver has buffered since the last batch); an error fails the batch.
pub struct PullStream<F, T> {
    pull: F,
    current: Vec<T>,
}

impl<F, T> PullStream<F, T> {
    /// A stream pulling each batch from `pull`.
    pub fn new(pull: F) -> Self {
        PullStream { pull, current: Vec::new() }
    }
}

impl<T, F: FnMut(Time, &mut Vec<T>) -> Result<(), SourceError>> DStream for PullStream<F, T> {
    type Item = T;
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.current.clear();
        (self.pull)(ctx.time, &mut self.current).map_err(JobError::Source)
    }
    fn feed_each<G: Sink<T>>(&mut self, _ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        Ok(())
    }
    fn finish_each<G: Sink<T>>(&mut self, _ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        self.current.drain(..).for_each(|x| sink.push(x));
        Ok(true)
    }
    fn visit_state(&mut self, _visit: &mut StateVisit<'_>) {}
    fn slide(&self, batch: Duration) -> Duration {
        batch
    }
}

/// One file of a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Its name within the directory.
    pub name: String,
    /// Its modification time, in ms (the batch clock's scale).
    pub modified_ms: i64,
}

/// A directory a [`TextFileStream`] watches: the adapters implement it on the file system.
pub trait Directory {
    /// The regular files directly in the directory (not in subdirectories).
    fn list(&mut self) -> Result<Vec<FileEntry>, SourceError>;
    /// Appends the lines of the file `name` (without their `\n`, `\r\n` or `\r`) to `out`.
    fn read_lines(&mut self, name: &str, out: &mut Vec<String>) -> Result<(), SourceError>;
}

/// What a [`TextFileStream`] remembers: the files each recent batch selected, and the time before which files are
/// ignored (when the stream was created, for Spark's `newFilesOnly`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileSelection {
    /// Files whose modification time is at most this are never selected.
    pub ignore_until_ms: i64,
    /// Each remembered batch's time and the files it selected.
    pub batches: VecDeque<(Time, Vec<String>)>,
}

/// `textFileStream(directory)`: each batch at time T reads the lines of the files that appeared in the directory,
/// as Spark's `FileInputDStream` selects them: a file whose name does not start with `.`, modified after the
/// ignore threshold (the later of the stream's creation time and `T - remember`, where `remember` is the batch
/// interval times `ceil(60 s / interval)`) and at most at T, and not selected by a batch in the last `remember`.
/// Files come in order of modification time, then name (Spark: the file system's listing order). The selection
/// is checkpointed, so a restarted job does not read a file twice.
pub struct TextFileStream<D> {
    dir: D,
    name: Option<String>,
    selection: FileSelection,
    current: Vec<String>,
}

impl<D: Directory> TextFileStream<D> {
    /// A stream over `dir`, ignoring files modified at or before `created_ms` (Spark's `newFilesOnly`; 0 reads
    /// the files already there too).
    pub fn new(dir: D, created_ms: i64) -> Self {
        TextFileStream {
            dir,
            name: None,
            selection: FileSelection { ignore_until_ms: created_ms, batches: VecDeque::new() },
            current: Vec::new(),
        }
    }

    /// How long selected files are remembered (and older files ignored): `ceil(60 s / slide)` slides.
    pub fn remember(slide: Duration) -> Duration {
        let n = (60_000 + slide.0 - 1) / slide.0.max(1);
        Duration(slide.0 * n.max(1))
    }

    /// The files batch `time` selects from `listing`, in the order they are read; remembers them.
    pub fn select(&mut self, time: Time, slide: Duration, listing: Vec<FileEntry>) -> Vec<String> {
        let remember = Self::remember(slide);
        // Spark's clearMetadata: batches older than the remember window are forgotten.
        while self.selection.batches.front().is_some_and(|(t, _)| *t < time - remember) {
            self.selection.batches.pop_front();
        }
        let threshold = self.selection.ignore_until_ms.max((time - remember).0);
        let recent: BTreeSet<&str> =
            self.selection.batches.iter().flat_map(|(_, fs)| fs.iter().map(String::as_str)).collect();
        let mut new: Vec<(i64, String)> = listing
            .into_iter()
            .filter(|f| !f.name.starts_with('.'))
            .filter(|f| f.modified_ms > threshold && f.modified_ms <= time.0)
            .filter(|f| !recent.contains(f.name.as_str()))
            .map(|f| (f.modified_ms, f.name))
            .collect();
        new.sort();
        let names: Vec<String> = new.into_iter().map(|(_, n)| n).collect();
        self.selection.batches.push_back((time, names.clone()));
        names
    }

    /// What the stream remembers.
    pub fn selection(&self) -> &FileSelection {
        &self.selection
    }
}

impl<D: Directory> DStream for TextFileStream<D> {
    type Item = String;
    /// Selects the batch's files and reads their lines; a listing or reading error fails the batch (which a
    /// restart runs again), where Spark logs a listing error and selects nothing.
    fn begin(&mut self, ctx: &mut BatchContext<'_>) -> Result<(), JobError> {
        self.current.clear();
        let listing = self.dir.list()?;
        let files = self.select(ctx.time, ctx.interval, listing);
        for f in &files {
            if let Err(e) = self.dir.read_lines(f, &mut self.current) {
                // Not remembered as read: the batch fails and is run again.
                self.selection.batches.pop_back();
                return Err(JobError::Source(e));
            }
        }
        Ok(())
    }
    fn feed_each<G: Sink<String>>(&mut self, _ctx: &mut BatchContext<'_>, _sink: G) -> Result<(), JobError> {
        Ok(())
    }
    fn finish_each<G: Sink<String>>(&mut self, _ctx: &mut BatchContext<'_>, mut sink: G) -> Result<bool, JobError> {
        self.current.drain(..).for_each(|x| sink.push(x));
        Ok(true)
    }
    fn visit_state(&mut self, visit: &mut StateVisit<'_>) {
        visit.visit(self);
    }
    fn slide(&self, batch: Duration) -> Duration {
        batch
    }
}

impl<D> Stateful for TextFileStream<D> {
    fn kind(&self) -> &'static str {
        "text_file_stream"
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn set_name(&mut self, name: &str) {
        self.name = Some(name.to_string());
    }
    fn params(&self, _interval: Duration) -> Vec<(String, String)> {
        Vec::new()
    }
    fn save(&self, out: &mut Vec<u8>) -> Result<(), StateCodecError> {
        encode_into(&self.selection, out)
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateCodecError> {
        self.selection = decode(bytes)?;
        Ok(())
    }
    fn len(&self) -> usize {
        self.selection.batches.iter().map(|(_, f)| f.len()).sum()
    }
}
