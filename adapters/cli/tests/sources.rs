//! The text file stream on a real directory and the socket text stream on a real loopback socket. Expected
//! values are worked from Spark's FileInputDStream rules (a file is read by the first batch T with
//! threshold < modification time <= T, threshold = max(creation, T - remember), remember = 60 s here; names
//! starting with `.` and directories skipped; each file once) and from its socket receiver (lines at `\n`,
//! `\r\n`, `\r`; a closed connection made again).

use dstream_adapters::sources::{socket_text_stream, text_file_stream_since, SocketOptions};
use dstream_core::graph::{GraphBuilder, Stream};
use dstream_core::stateful::StateVisit;
use dstream_core::{BatchTimer, Clock, DStream, Duration, Engine, Graph, Job, ManualClock, RecordBatch, Time};
use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Instant, UNIX_EPOCH};

type Seen = Rc<RefCell<Vec<(i64, Vec<String>)>>>;

fn seen(s: &Stream<impl DStream<Item = String> + 'static>) -> Seen {
    let out: Seen = Rc::default();
    let o = out.clone();
    s.foreach_batch(move |t, items| o.borrow_mut().push((t.0, items.to_vec())));
    out
}

fn write(dir: &Path, name: &str, text: &[u8], modified_ms: u64) {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text).unwrap();
    f.set_modified(UNIX_EPOCH + std::time::Duration::from_millis(modified_ms)).unwrap();
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An engine on a manual clock starting at `start` ms, batches of 1 s.
fn engine(graph: Graph, start: i64) -> (Engine<Graph>, ManualClock) {
    let clock = ManualClock::new(Time(start));
    let e = Engine::new(graph, BatchTimer::first_start(clock.now(), Duration::from_secs(1)));
    (e, clock)
}

fn step(e: &mut Engine<Graph>, clock: &mut ManualClock) {
    clock.advance(Duration::from_secs(1));
    let t = e.poll_due(clock.now()).expect("a batch is due");
    e.run_batch(t, &mut RecordBatch::new(), clock).expect("the batch runs");
}

#[test]
fn text_file_stream_reads_each_new_file_once_as_spark_selects_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Created at 100 000 ms; batches at 101 000, 102 000, 103 000.
    write(d, "old.txt", b"old\n", 99_000); // before the stream: ignored (newFilesOnly)
    write(d, "at-creation.txt", b"x\n", 100_000); // mod time <= threshold: ignored
    write(d, "b.txt", b"b1\r\nb2", 100_600); // batch 101 000 (CRLF, no final break)
    write(d, "a.txt", b"a1\na2\n", 100_500); // batch 101 000, before b (older)
    write(d, ".hidden", b"h\n", 100_700); // hidden: ignored
    std::fs::create_dir(d.join("sub")).unwrap();
    write(&d.join("sub"), "inner.txt", b"i\n", 100_800); // in a subdirectory: ignored
    write(d, "later.txt", b"l\n", 102_500); // modified after batch 102 000: read at 103 000
    let g = GraphBuilder::new();
    let lines = text_file_stream_since(&g, d, 100_000);
    let out = seen(&lines);
    let (mut e, mut clock) = engine(g.build(), 100_000);
    step(&mut e, &mut clock);
    // A file that appears with an old modification time (inside the remember window) after its batch is still read
    // (threshold max(100 000, 102 000 - 60 000)); a.txt rewritten is not read again.
    write(d, "late.txt", b"late\n", 100_900);
    write(d, "a.txt", b"again\n", 101_500);
    step(&mut e, &mut clock);
    step(&mut e, &mut clock);
    let want: Vec<(i64, Vec<String>)> =
        vec![(101_000, strs(&["a1", "a2", "b1", "b2"])), (102_000, strs(&["late"])), (103_000, strs(&["l"]))];
    assert_eq!(*out.borrow(), want);
}

#[test]
fn text_file_stream_selection_is_checkpointed() {
    // After a restore the files already read are not read again; a new one is.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "one.txt", b"1\n", 100_500);
    let g = GraphBuilder::new();
    let out = seen(&text_file_stream_since(&g, d, 100_000));
    let (mut e, mut clock) = engine(g.build(), 100_000);
    step(&mut e, &mut clock);
    let mut saved = Vec::new();
    e.job_mut().visit_state(&mut StateVisit::new(&mut |op| {
        assert_eq!(op.kind(), "text_file_stream");
        op.save(&mut saved).unwrap();
    }));
    assert_eq!(*out.borrow(), vec![(101_000, strs(&["1"]))]);

    write(d, "two.txt", b"2\n", 101_500);
    let g = GraphBuilder::new();
    let out = seen(&text_file_stream_since(&g, d, 100_000));
    let mut graph = g.build();
    graph.visit_state(&mut StateVisit::new(&mut |op| op.restore(&saved).unwrap()));
    let (mut e, mut clock) = engine(graph, 101_000);
    step(&mut e, &mut clock);
    assert_eq!(*out.borrow(), vec![(102_000, strs(&["2"]))]);
}

#[test]
fn text_file_stream_fails_the_batch_when_the_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let g = GraphBuilder::new();
    let _ = seen(&text_file_stream_since(&g, &missing, 0));
    let (mut e, clock) = engine(g.build(), 0);
    let err = e.run_batch(Time(1000), &mut RecordBatch::new(), &clock).unwrap_err();
    assert!(err.to_string().contains("cannot list") && err.to_string().contains("nope"), "{err}");
}

#[test]
fn socket_text_stream_receives_lines_and_reconnects() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // First connection: three lines, the last without a break, then closed; the receiver connects again.
        let (mut c, _) = listener.accept().unwrap();
        c.write_all(b"a\nb\r\nc").unwrap();
        drop(c);
        let (mut c, _) = listener.accept().unwrap();
        c.write_all(b"d\n").unwrap();
        // Held open: the receiver keeps the connection.
        c
    });
    let g = GraphBuilder::new();
    let options = SocketOptions { restart_delay: std::time::Duration::from_millis(20), ..SocketOptions::default() };
    let out = seen(&socket_text_stream(&g, addr, options));
    let (mut e, mut clock) = engine(g.build(), 0);
    // Batches run until every line has come (the lines arrive while they run), for at most 30 s.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let all = |o: &Seen| o.borrow().iter().flat_map(|(_, l)| l.clone()).collect::<Vec<_>>();
    while all(&out).len() < 4 && Instant::now() < deadline {
        step(&mut e, &mut clock);
        std::thread::yield_now();
    }
    assert_eq!(all(&out), strs(&["a", "b", "c", "d"]));
    let conn = server.join().unwrap();
    // Dropping the job stops the receiver.
    drop(e);
    drop(conn);
}

#[test]
fn socket_text_stream_memory_stays_bounded_whatever_the_peer_sends() {
    // 100 000 bytes without a line break, 100-byte pieces at most, at most 1 000 bytes held: every batch holds at
    // most 1 000 bytes (plus one piece), and nothing is lost.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.write_all(&vec![b'x'; 100_000]).unwrap();
    });
    let g = GraphBuilder::new();
    let options = SocketOptions { max_buffered_bytes: 1000, max_line_bytes: 100, ..SocketOptions::default() };
    let out = seen(&socket_text_stream(&g, addr, options));
    let (mut e, mut clock) = engine(g.build(), 0);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let total = |o: &Seen| o.borrow().iter().flat_map(|(_, l)| l.iter().map(String::len)).sum::<usize>();
    while total(&out) < 100_000 && Instant::now() < deadline {
        step(&mut e, &mut clock);
        std::thread::yield_now();
    }
    assert_eq!(total(&out), 100_000);
    for (t, lines) in out.borrow().iter() {
        assert!(lines.iter().all(|l| l.len() <= 100 && l.bytes().all(|b| b == b'x')), "batch {t}");
        assert!(lines.iter().map(String::len).sum::<usize>() <= 1100, "batch {t}");
    }
    server.join().unwrap();
}
