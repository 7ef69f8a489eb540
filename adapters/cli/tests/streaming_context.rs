//! The streaming context as a program uses it, against a real tansu: start, await with a timeout and continue,
//! stop from a listener, resume from a checkpoint into a graph built anew, and the errors of a context used
//! wrongly.

mod common;

use common::{broker, generate, Buf};
use dstream_adapters::kafka::direct::StartingOffsets;
use dstream_adapters::streaming::{
    BatchCompleted, KafkaParams, KafkaUtils, StopHandle, StreamingContext, StreamingError, StreamingListener,
};
use dstream_core::{BatchInfo, Duration, State, StateError, StateSpec, Time};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Every completed batch's time and record count; stops the context once `stop_at` records were seen.
struct Batches {
    seen: Rc<RefCell<Vec<(Time, usize)>>>,
    started: Rc<Cell<usize>>,
    /// Every event in the order heard: (`'s'`ubmitted, `'b'`egan or `'c'`ompleted, batch time).
    events: Rc<RefCell<Vec<(char, Time)>>>,
    stop: Option<(StopHandle, usize)>,
}

impl StreamingListener for Batches {
    fn on_batch_submitted(&mut self, info: &BatchInfo) {
        self.events.borrow_mut().push(('s', info.time));
    }
    fn on_batch_started(&mut self, info: &BatchInfo) {
        self.started.set(self.started.get() + 1);
        self.events.borrow_mut().push(('b', info.time));
    }
    fn on_batch_completed(&mut self, b: &BatchCompleted<'_>) {
        self.events.borrow_mut().push(('c', b.info.time));
        self.seen.borrow_mut().push((b.info.time, b.records));
        if let Some((h, at)) = &self.stop {
            if self.seen.borrow().iter().map(|s| s.1).sum::<usize>() >= *at {
                h.stop();
            }
        }
    }
}

fn count(_k: &String, v: Option<i64>, s: &mut State<'_, i64>) -> Result<i64, StateError> {
    let n = s.get_option().copied().unwrap_or(0) + v.unwrap_or(0);
    s.update(n)?;
    Ok(n)
}

fn params(addr: &str) -> KafkaParams {
    KafkaParams::new(addr).starting_offsets(StartingOffsets::Earliest).max_rate_per_partition(1000)
}

#[test]
fn await_with_a_timeout_continues_where_it_stopped_and_a_graceful_stop_ends() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 600, 3, &[]);
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    let out = Buf::default();
    ssc.status_lines(false).print_to(out.clone());
    let msgs = KafkaUtils::create_direct_stream(&mut ssc, params(b.addr()), "avg");
    let counted = Rc::new(Cell::new(0usize));
    let c = counted.clone();
    let offsets = msgs.map(|r| r.offset);
    offsets.foreach_batch(move |_, items| c.set(c.get() + items.len()));
    offsets.count().print(1);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let started = Rc::new(Cell::new(0));
    let events = Rc::new(RefCell::new(Vec::new()));
    ssc.add_listener(Batches { seen: seen.clone(), started: started.clone(), events: events.clone(), stop: None });
    ssc.start().unwrap();
    assert!(!ssc.await_termination_or_timeout(std::time::Duration::from_millis(250)).unwrap());
    let first = counted.get();
    assert!(first < 600, "100 records a batch: the timeout came first ({first})");
    // Awaiting again continues; 600 records need 6 batches of 100 ms.
    assert!(!ssc.await_termination_or_timeout(std::time::Duration::from_secs(3)).unwrap());
    ssc.stop(true).unwrap();
    assert_eq!(counted.get(), 600, "every record once");
    let seen = seen.borrow();
    assert_eq!(seen.iter().map(|s| s.1).sum::<usize>(), 600);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "batch times strictly increase: {seen:?}");
    assert_eq!(started.get(), seen.len());
    // Each batch is heard submitted, then begun, then completed, once each; a graceful stop completes every
    // batch that was submitted.
    let events = events.borrow();
    for (t, _) in seen.iter() {
        let of_t: Vec<char> = events.iter().filter(|e| e.1 == *t).map(|e| e.0).collect();
        assert_eq!(of_t, vec!['s', 'b', 'c'], "batch {t}: {events:?}");
    }
    assert_eq!(events.iter().filter(|e| e.0 == 's').count(), seen.len(), "{events:?}");
    let printed = String::from_utf8(out.0.borrow().clone()).unwrap();
    assert_eq!(printed.matches("Time: ").count(), seen.len(), "one print per batch");
}

#[test]
fn a_listener_stops_the_context_and_a_new_one_resumes_from_the_checkpoint() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 600, 4, &[]);
    let dir = tempfile::tempdir().unwrap();
    // The program, as it would be built at every start.
    let run = |stop_at: Option<usize>| {
        let mut ssc = StreamingContext::new(Duration::from_millis(100));
        ssc.status_lines(false).print_to(Buf::default()).checkpoint(dir.path()).app_name("counts");
        let msgs = KafkaUtils::create_direct_stream(&mut ssc, params(b.addr()), "avg");
        let keys = msgs.map(|r| (String::from_utf8_lossy(r.value).split(',').next().unwrap().to_string(), 1i64));
        let counts = keys.map_with_state(StateSpec::function(count));
        counts.print(3);
        let seen = Rc::new(RefCell::new(Vec::new()));
        let stop = stop_at.map(|n| (ssc.stop_handle(), n));
        ssc.add_listener(Batches { seen: seen.clone(), started: Rc::default(), events: Rc::default(), stop });
        if stop_at.is_none() {
            ssc.stop_after_batches(4);
        }
        ssc.start().unwrap();
        ssc.await_termination().unwrap();
        let total: i64 = counts.with_state(|m| m.iter().map(|(_, n, _)| *n).sum());
        let records: usize = seen.borrow().iter().map(|s| s.1).sum();
        (total, records)
    };
    let (total1, records1) = run(Some(300));
    assert!((300..600).contains(&records1), "{records1}");
    assert_eq!(total1 as usize, records1);
    // A new context of the same program: the state comes back, the stream continues after its offsets (batches
    // generated but not completed before the stop run first).
    let (total2, records2) = run(None);
    assert_eq!(total2, 600, "every record counted once across both runs");
    assert_eq!(records1 + records2, 600, "a clean stop leaves nothing to run twice");

    // Another program (a window added) is refused, naming what differs.
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    ssc.status_lines(false).checkpoint(dir.path()).app_name("counts");
    let msgs = KafkaUtils::create_direct_stream(&mut ssc, params(b.addr()), "avg");
    let keys = msgs.map(|r| (String::from_utf8_lossy(r.value).into_owned(), 1i64));
    keys.map_with_state(StateSpec::function(count)).print(3);
    keys.window(Duration::from_millis(300), Duration::from_millis(100)).print(3);
    let err = ssc.start().unwrap_err().to_string();
    assert!(err.contains(r#"window#1: checkpoint has "(absent)", this run has "window""#), "{err}");
}

#[test]
fn a_context_without_kafka_runs_its_queue_stream_live_and_contacts_no_broker() {
    // Spark's queueStream word count: batch k takes the k-th queued batch of lines; no direct stream, so no
    // broker (the KafkaParams of no stream would point nowhere).
    let mut ssc = StreamingContext::new(Duration::from_millis(50));
    let out = Buf::default();
    ssc.status_lines(false).print_to(out.clone()).stop_after_batches(3);
    let queue = dstream_core::sources::Queue::new();
    queue.push(vec!["to be or".to_string(), "not to be".to_string()]);
    queue.push(vec!["be".to_string()]);
    let lines = ssc.graph().queue_stream(&queue, true);
    let words = lines.flat_map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>());
    words.map(|w| (w, 1i64)).reduce_by_key(|a, b| a + b).print(10);
    ssc.start().unwrap();
    ssc.await_termination().unwrap();
    assert_eq!(ssc.summary().batches, 3);
    let printed = out.text();
    let bodies: Vec<&str> = printed.split("-------------------------------------------\n").collect();
    // "---\nTime: t\n---\nbody\n" per batch: the bodies are every second piece after the first.
    let bodies: Vec<&str> = bodies.iter().skip(2).step_by(2).copied().collect();
    assert_eq!(bodies, vec!["(to,2)\n(be,2)\n(or,1)\n(not,1)\n\n", "(be,1)\n\n", "\n"], "{printed}");
}

#[test]
fn a_context_reading_only_a_directory_checkpoints_and_resumes_without_reading_a_file_twice() {
    let files = tempfile::tempdir().unwrap();
    let checkpoints = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("one.txt"), "a b a\n").unwrap();
    // The program: words of the directory's new files, counted across batches.
    let run = |batches: u64| {
        let mut ssc = StreamingContext::new(Duration::from_millis(50));
        let out = Buf::default();
        ssc.status_lines(false).print_to(out.clone()).checkpoint(checkpoints.path()).stop_after_batches(batches);
        let lines = dstream_adapters::sources::text_file_stream_since(ssc.graph(), files.path(), 0);
        let words = lines.flat_map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>());
        let totals = words
            .map(|w| (w, 1i64))
            .update_state_by_key(|new: &[i64], old: Option<i64>| Some(old.unwrap_or(0) + new.iter().sum::<i64>()));
        totals.print(10);
        ssc.start().unwrap();
        ssc.await_termination().unwrap();
        out.text()
    };
    let first = run(2);
    assert!(first.ends_with("(a,2)\n(b,1)\n\n"), "{first}");
    std::fs::write(files.path().join("two.txt"), "b c\n").unwrap();
    // Resumed: the state and the files already read come back; only the new file is read.
    let second = run(2);
    assert!(second.ends_with("(a,2)\n(b,2)\n(c,1)\n\n"), "{second}");
    let shown = common::dstream(&["checkpoint", "show", checkpoints.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(shown.status.success(), "{stderr}");
    assert!(stderr.contains("job dstream on no Kafka topic, batch "), "{stderr}");
    assert!(stderr.contains(", next offsets none, 0 pending batch(es)"), "{stderr}");
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(stdout.contains("text_file_stream#0\ttext_file_stream\t"), "{stdout}");
    assert!(stdout.contains("update_state_by_key#1\tupdate_state_by_key\t3\t"), "{stdout}");
}

/// What [`Inspect`] saw of a batch: its record count, its input's (partition, offset)s, the state's keys after it.
type Seen = (usize, Vec<(i32, i64)>, u64);

/// A listener of the full interface: each batch's input records and the job's state, as the recorder and the
/// checkpointer use them; it fails the run at batch `fail_at` (counted from 1) if set.
struct Inspect {
    seen: Rc<RefCell<Vec<Seen>>>,
    fail_at: Option<usize>,
}

impl StreamingListener for Inspect {
    fn needs_input(&self) -> bool {
        true
    }
    fn on_batch_completed_with_job(
        &mut self,
        b: &BatchCompleted<'_>,
        job: &mut dyn dstream_core::Job,
    ) -> Result<(), dstream_adapters::streaming::ListenerError> {
        let mut keys = 0;
        dstream_core::checkpoint::for_each_operator(job, &mut |_, op| keys += op.len() as u64);
        let positions = b.input.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(b.input.len(), b.records, "the input records kept are the batch's");
        self.seen.borrow_mut().push((b.records, positions, keys));
        if self.fail_at == Some(self.seen.borrow().len()) {
            return Err(format!("refused batch {}", b.info.time).into());
        }
        Ok(())
    }
}

#[test]
fn a_listener_reads_each_batchs_input_and_the_jobs_state_and_can_stop_the_run() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 600, 8, &["--partitions", "2"]);
    let program = |fail_at: Option<usize>| {
        let mut ssc = StreamingContext::new(Duration::from_millis(100));
        ssc.status_lines(false).print_to(Buf::default()).stop_after_batches(4);
        let msgs = KafkaUtils::create_direct_stream(&mut ssc, params(b.addr()), "avg");
        let keys = msgs.map(|r| (String::from_utf8_lossy(r.value).split(',').next().unwrap().to_string(), 1i64));
        let counts = keys.map_with_state(StateSpec::function(count));
        counts.print(1);
        let seen = Rc::new(RefCell::new(Vec::new()));
        ssc.add_listener(Inspect { seen: seen.clone(), fail_at });
        ssc.start().unwrap();
        let result = ssc.await_termination();
        let keys_now = counts.with_state(|m| m.len() as u64);
        (result, seen, keys_now)
    };
    let (result, seen, keys_now) = program(None);
    result.unwrap();
    let seen = seen.borrow();
    // 100 records per partition per batch: every record once, in (partition, offset) order within a batch, and
    // the state the listener saw after the last batch is the state the program holds.
    assert_eq!(seen.iter().map(|s| s.0).sum::<usize>(), 600);
    let mut all: Vec<(i32, i64)> = Vec::new();
    for (_, positions, _) in seen.iter() {
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        all.extend(positions);
    }
    all.sort();
    let want: Vec<(i32, i64)> = (0..2).flat_map(|p| (0..300).map(move |o| (p, o))).collect();
    assert_eq!(all, want);
    assert_eq!(seen.last().unwrap().2, keys_now);
    assert!(seen.windows(2).all(|w| w[0].2 <= w[1].2), "keys only grow without timeouts");

    let (result, seen, _) = program(Some(2));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("refused batch"), "{err}");
    assert_eq!(seen.borrow().len(), 2, "no batch completes after the failing listener");
}

/// Every output-operation and batch-completed event, in the order heard.
#[derive(Default)]
struct Ops(Rc<RefCell<Vec<String>>>);

impl StreamingListener for Ops {
    fn on_output_operation_started(&mut self, op: &dstream_core::OutputOperation) {
        self.0.borrow_mut().push(format!("started {} {}", op.id, op.name));
    }
    fn on_output_operation_completed(&mut self, op: &dstream_core::OutputOperation) {
        assert!(op.started <= op.completed, "{op:?}");
        self.0.borrow_mut().push(format!("completed {} {}", op.id, op.name));
    }
    fn on_batch_completed(&mut self, b: &BatchCompleted<'_>) {
        let within = b.output_operations.iter().all(|o| o.started >= b.info.time);
        self.0.borrow_mut().push(format!("batch {} {within}", b.output_operations.len()));
    }
}

#[test]
fn listeners_hear_each_output_operation_of_a_live_batch_before_the_batch() {
    let Some(b) = broker() else { return };
    generate(b.addr(), "avg", 100, 9, &[]);
    let mut ssc = StreamingContext::new(Duration::from_millis(100));
    ssc.status_lines(false).print_to(Buf::default()).stop_after_batches(2);
    let msgs = KafkaUtils::create_direct_stream(&mut ssc, params(b.addr()), "avg");
    let offsets = msgs.map(|r| r.offset);
    offsets.print(1);
    offsets.foreach_batch(|_, _| {});
    let heard = Rc::new(RefCell::new(Vec::new()));
    ssc.add_listener(Ops(heard.clone()));
    ssc.start().unwrap();
    ssc.await_termination().unwrap();
    let per_batch = [
        "started 0 print",
        "completed 0 print",
        "started 1 foreach_batch",
        "completed 1 foreach_batch",
        "batch 2 true",
    ];
    let want: Vec<String> = per_batch.iter().chain(&per_batch).map(|s| s.to_string()).collect();
    assert_eq!(*heard.borrow(), want);
}

#[test]
fn a_context_used_wrongly_says_so() {
    let mut ssc = StreamingContext::new(Duration::from_secs(1));
    let e = ssc.start().unwrap_err();
    assert!(matches!(e, StreamingError::Usage(_)), "{e}");
    assert!(e.to_string().contains("no output operations"), "{e}");
    let _records = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("127.0.0.1:1"), "t");
    let e = ssc.start().unwrap_err();
    assert!(e.to_string().contains("no output operations"), "{e}");
    let mut ssc = StreamingContext::new(Duration::from_secs(1));
    let a = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("127.0.0.1:1"), "a");
    let b = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("127.0.0.1:2"), "b");
    a.map(|r| r.offset).union(&b.map(|r| r.offset)).print(1);
    let e = ssc.start().unwrap_err();
    assert!(e.to_string().contains("use the same brokers and client settings"), "{e}");
    // One topic in two streams with different settings, and an input no direct stream reads.
    let mut ssc = StreamingContext::new(Duration::from_secs(1));
    let a = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("127.0.0.1:1"), "a");
    let again = KafkaParams::new("127.0.0.1:1").max_rate_per_partition(5);
    let b = KafkaUtils::create_direct_stream(&mut ssc, again, "a");
    a.map(|r| r.offset).union(&b.map(|r| r.offset)).print(1);
    let e = ssc.start().unwrap_err();
    assert!(e.to_string().contains(r#"topic "a" has two direct streams with different settings"#), "{e}");
    let mut ssc = StreamingContext::new(Duration::from_secs(1));
    let a = KafkaUtils::create_direct_stream(&mut ssc, KafkaParams::new("127.0.0.1:1"), "a");
    a.map(|r| r.offset).union(&ssc.graph().records_of("elsewhere").map(|r| r.offset)).print(1);
    let e = ssc.start().unwrap_err();
    assert!(e.to_string().contains(r#"input "elsewhere", which no direct stream"#), "{e}");
    let mut ssc = StreamingContext::new(Duration::from_secs(1));
    let e = ssc.await_termination().unwrap_err();
    assert!(e.to_string().contains("not started"), "{e}");
}
