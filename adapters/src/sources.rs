//! Sources beside Kafka, on the real world: a directory's new text files (Spark's `textFileStream`) and lines over
//! TCP (Spark's `socketTextStream`). What goes into each batch is decided in `dstream_core::sources`; this module
//! lists and reads files and runs the socket receiver.

use dstream_core::graph::{GraphBuilder, Stream};
use dstream_core::record::SourceError;
use dstream_core::sources::{Directory, FileEntry, PullStream, TextFileStream};
use dstream_core::Time;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A directory on disk, as a [`TextFileStream`] sees it.
#[derive(Debug, Clone)]
pub struct DiskDirectory {
    path: PathBuf,
}

impl DiskDirectory {
    /// The directory at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        DiskDirectory { path: path.as_ref().to_path_buf() }
    }
}

fn source_error(what: &str, path: &Path, e: std::io::Error) -> SourceError {
    SourceError { reason: format!("text file stream: cannot {what} {}: {e}", path.display()) }
}

impl Directory for DiskDirectory {
    fn list(&mut self) -> Result<Vec<FileEntry>, SourceError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(|e| source_error("list", &self.path, e))? {
            let entry = entry.map_err(|e| source_error("list", &self.path, e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Gone between the listing and now: not there.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(source_error("read the metadata of", &entry.path(), e)),
            };
            if !meta.is_file() {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else { continue };
            let modified =
                meta.modified().map_err(|e| source_error("read the modification time of", &entry.path(), e))?;
            let modified_ms = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            files.push(FileEntry { name, modified_ms });
        }
        Ok(files)
    }

    /// Lines as Hadoop's `LineRecordReader` splits them (`\n`, `\r\n` or `\r`; a last line without one counts),
    /// bytes that are not UTF-8 replaced by U+FFFD (Hadoop `Text.toString`).
    fn read_lines(&mut self, name: &str, out: &mut Vec<String>) -> Result<(), SourceError> {
        let path = self.path.join(name);
        let bytes = std::fs::read(&path).map_err(|e| source_error("read", &path, e))?;
        let mut lines = LineSplitter::default();
        lines.push(&bytes, &mut |l| out.push(l));
        lines.finish(&mut |l| out.push(l));
        Ok(())
    }
}

/// Splits bytes into lines at `\n`, `\r\n` or `\r` (Java's `BufferedReader.readLine`, Hadoop's line reader), a
/// `\r\n` split across two pushes included; a line longer than `max` bytes is handed on in pieces of `max`.
#[derive(Debug)]
struct LineSplitter {
    line: Vec<u8>,
    after_cr: bool,
    max: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter { line: Vec::new(), after_cr: false, max: usize::MAX }
    }
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(String)) {
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(i) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend(&bytes[..i], emit);
            emit(String::from_utf8_lossy(&self.line).into_owned());
            self.line.clear();
            let cr = bytes[i] == b'\r';
            bytes = &bytes[i + 1..];
            if cr {
                if bytes.is_empty() {
                    self.after_cr = true;
                } else if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                }
            }
        }
        self.extend(bytes, emit);
    }

    fn extend(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(String)) {
        while self.line.len() + bytes.len() > self.max {
            let room = self.max - self.line.len();
            self.line.extend_from_slice(&bytes[..room]);
            emit(String::from_utf8_lossy(&self.line).into_owned());
            self.line.clear();
            bytes = &bytes[room..];
        }
        self.line.extend_from_slice(bytes);
    }

    /// The last line, if the input did not end with a line break.
    fn finish(&mut self, emit: &mut dyn FnMut(String)) {
        if !self.line.is_empty() {
            emit(String::from_utf8_lossy(&self.line).into_owned());
            self.line.clear();
        }
        self.after_cr = false;
    }
}

/// `textFileStream(directory)`: the lines of the files that appear in `dir` from now on (files already there are
/// ignored, as Spark's `newFilesOnly`); see [`TextFileStream`] for which files a batch reads. Batch times and file
/// modification times are compared in ms since the epoch, so the job runs on the system clock.
pub fn text_file_stream(graph: &GraphBuilder, dir: impl AsRef<Path>) -> Stream<TextFileStream<DiskDirectory>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    text_file_stream_since(graph, dir, now)
}

/// As [`text_file_stream`], ignoring the files modified at or before `created_ms` (0: read those already there).
pub fn text_file_stream_since(
    graph: &GraphBuilder,
    dir: impl AsRef<Path>,
    created_ms: i64,
) -> Stream<TextFileStream<DiskDirectory>> {
    graph.text_file_stream_in(DiskDirectory::new(dir), created_ms)
}

/// How a socket receiver behaves.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Wait before connecting again after a connection ends or fails (Spark's `spark.streaming.receiverRestartDelay`,
    /// 2 s).
    pub restart_delay: Duration,
    /// Lines held for the next batch at most, in bytes: beyond it the receiver stops reading (the sender is held
    /// back by TCP), so memory stays bounded whatever the peer sends.
    pub max_buffered_bytes: usize,
    /// A longer line is handed on in pieces of this many bytes.
    pub max_line_bytes: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions { restart_delay: Duration::from_secs(2), max_buffered_bytes: 64 << 20, max_line_bytes: 1 << 20 }
    }
}

#[derive(Default)]
struct Buffer {
    lines: VecDeque<String>,
    bytes: usize,
    stopped: bool,
    /// Connections made so far (for tests and status).
    connections: u64,
}

struct Shared {
    buf: Mutex<Buffer>,
    changed: Condvar,
}

/// The receiver thread of a socket text stream; it stops (and is joined) when the stream is dropped with its
/// graph.
struct Receiver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(mut b) = self.shared.buf.lock() {
            b.stopped = true;
        }
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pull function of a socket text stream: each batch takes every line received since the last one.
pub struct SocketLines {
    receiver: Receiver,
}

impl SocketLines {
    /// Appends the lines received since the last call to `out`.
    pub fn take(&mut self, out: &mut Vec<String>) {
        let shared = &self.receiver.shared;
        let mut b = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(b.lines.drain(..));
        b.bytes = 0;
        drop(b);
        shared.changed.notify_all();
    }

    /// Number of connections the receiver has made so far.
    pub fn connections(&self) -> u64 {
        self.receiver.shared.buf.lock().map_or(0, |b| b.connections)
    }
}

/// What a socket text stream pulls each batch with.
pub type PullLines = Box<dyn FnMut(Time, &mut Vec<String>) -> Result<(), SourceError>>;

/// The stream type of [`socket_text_stream`].
pub type SocketTextStream = PullStream<PullLines, String>;

/// `socketTextStream(host, port)`: the lines received over TCP from `addr` (a loopback address in tests), each
/// batch taking those received since the previous batch (Spark's receiver stores them in blocks that the next
/// batch takes). A closed or failed connection is made again after [`SocketOptions::restart_delay`], as Spark's
/// receiver restarts. Lines split at `\n`, `\r\n` or `\r` (Java's `readLine`), decoded as UTF-8 with U+FFFD for
/// bad bytes. Like any receiver without a write-ahead log, what was received but not yet in a completed batch is
/// lost if the process dies (SPARK-SEMANTICS §7).
pub fn socket_text_stream(graph: &GraphBuilder, addr: SocketAddr, options: SocketOptions) -> Stream<SocketTextStream> {
    let mut lines = start_receiver(addr, options);
    let pull: PullLines = Box::new(move |_t, out| {
        lines.take(out);
        Ok(())
    });
    graph.pull_stream(pull)
}

/// Starts a receiver reading lines from `addr` (what [`socket_text_stream`] runs).
pub fn start_receiver(addr: SocketAddr, options: SocketOptions) -> SocketLines {
    let shared = Arc::new(Shared { buf: Mutex::new(Buffer::default()), changed: Condvar::new() });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("dstream-socket-receiver".into())
        .spawn(move || receive(&s, addr, &options))
        .expect("a thread can be started");
    SocketLines { receiver: Receiver { shared, thread: Some(thread) } }
}

fn stopped(shared: &Shared) -> bool {
    shared.buf.lock().map_or(true, |b| b.stopped)
}

/// Waits `d` unless the receiver is stopped first; false if it was.
fn pause(shared: &Shared, d: Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    let mut b = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
    while !b.stopped {
        let now = std::time::Instant::now();
        if now >= deadline {
            return true;
        }
        b = shared.changed.wait_timeout(b, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
    }
    false
}

fn receive(shared: &Shared, addr: SocketAddr, options: &SocketOptions) {
    while !stopped(shared) {
        if let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            if let Ok(mut b) = shared.buf.lock() {
                b.connections += 1;
            }
            read_lines(shared, &mut conn, options);
        }
        if !pause(shared, options.restart_delay) {
            return;
        }
    }
}

/// Reads one connection to its end (or until the receiver stops), queueing complete lines.
fn read_lines(shared: &Shared, conn: &mut TcpStream, options: &SocketOptions) {
    // A short read timeout lets the thread see a stop while the peer is silent.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let mut splitter = LineSplitter { max: options.max_line_bytes.max(1), ..LineSplitter::default() };
    let mut chunk = vec![0u8; 64 << 10];
    let mut ready: Vec<String> = Vec::new();
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if stopped(shared) {
                    return;
                }
                continue;
            }
            Err(_) => break,
        };
        splitter.push(&chunk[..n], &mut |l| ready.push(l));
        if !hand_over(shared, &mut ready, options.max_buffered_bytes) {
            return;
        }
    }
    // Spark's readLine gives the last line without a line break at the end of the stream.
    splitter.finish(&mut |l| ready.push(l));
    hand_over(shared, &mut ready, options.max_buffered_bytes);
}

/// Moves `ready` into the shared buffer, waiting while it is full; false if the receiver was stopped.
fn hand_over(shared: &Shared, ready: &mut Vec<String>, max_bytes: usize) -> bool {
    if ready.is_empty() {
        return !stopped(shared);
    }
    let mut b = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
    for line in ready.drain(..) {
        while b.bytes > 0 && b.bytes + line.len() > max_bytes && !b.stopped {
            b = shared.changed.wait(b).unwrap_or_else(|e| e.into_inner());
        }
        if b.stopped {
            return false;
        }
        b.bytes += line.len();
        b.lines.push_back(line);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(parts: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = LineSplitter { max, ..LineSplitter::default() };
        let mut out = Vec::new();
        for p in parts {
            s.push(p, &mut |l| out.push(l));
        }
        s.finish(&mut |l| out.push(l));
        out
    }

    #[test]
    fn lines_split_as_javas_read_line() {
        // \n, \r\n and \r each end a line; an empty line between two breaks counts; the last line needs none.
        assert_eq!(split(&[&b"a\nb\r\nc\rd"[..]], usize::MAX), ["a", "b", "c", "d"]);
        assert_eq!(split(&[&b"a\n\nb\n"[..]], usize::MAX), ["a", "", "b"]);
        // A \r\n split across two reads is one break.
        assert_eq!(split(&[&b"a\r"[..], &b"\nb"[..]], usize::MAX), ["a", "b"]);
        assert_eq!(split(&[&b"a\r"[..], &b"b"[..]], usize::MAX), ["a", "b"]);
        // Bad UTF-8 becomes U+FFFD.
        assert_eq!(split(&[&b"\xffx\n"[..]], usize::MAX), ["\u{fffd}x"]);
        // A line longer than the limit comes in pieces, nothing lost.
        assert_eq!(split(&[&b"abcdefg\nhi"[..]], 3), ["abc", "def", "g", "hi"]);
    }
}
