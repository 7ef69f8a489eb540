//! Compression bombs (CRC-valid batches inflating to far more than they take) fed to the record-batch parser:
//! each is refused as too large, and reading it costs no more memory than the bound on a decompressed batch.

mod common;

use dstream_adapters::kafka::records::{
    for_each_record, for_each_record_before, BatchProblem, DEFAULT_MAX_BATCH_BYTES,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the bytes each thread holds and the most it held.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = HELD.try_with(|h| {
        h.set(h.get() + delta);
        let _ = PEAK.try_with(|p| p.set(p.get().max(h.get())));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are thread-locals without destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most bytes this thread held beyond what it held before, while `f` ran.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    (out, (PEAK.with(Cell::get) - before).max(0) as usize)
}

/// Bytes every bomb inflates to (but snappy's, which only declares 4 GiB): twice the default bound.
const INFLATED: usize = 2 * DEFAULT_MAX_BATCH_BYTES;

#[test]
fn compression_bombs_are_too_large_and_cost_no_more_than_the_bound() {
    const LIMIT: usize = 4 << 20;
    for (codec, batch) in common::bombs(INFLATED) {
        assert!(batch.len() < 2 << 20, "{codec}: a bomb of {} bytes", batch.len());
        let mut records = 0;
        let (result, peak) = peak_during(|| for_each_record_before(&batch, i64::MAX, LIMIT, |_| records += 1));
        eprintln!("{codec}: {} bytes inflating to {INFLATED}: {peak} bytes held at most", batch.len());
        let err = result.expect_err("a bomb");
        assert_eq!((err.offset, err.last_offset, records), (0, 0, 0), "{codec}: {err}");
        assert_eq!(err.problem, BatchProblem::TooLarge { limit: LIMIT }, "{codec}: {err}");
        assert!(peak <= LIMIT + (1 << 20), "{codec}: {peak} bytes held at most, for a bound of {LIMIT}");
    }
}

#[test]
fn the_default_bound_holds_without_configuration() {
    for (codec, batch) in common::bombs(INFLATED) {
        let (result, peak) = peak_during(|| for_each_record(&batch, |_| {}));
        let err = result.expect_err("a bomb");
        assert!(err.to_string().contains(&format!("inflates to more than {DEFAULT_MAX_BATCH_BYTES} bytes")), "{err}");
        assert!(peak <= DEFAULT_MAX_BATCH_BYTES + (1 << 20), "{codec}: {peak} bytes held at most");
    }
}

/// Waits for the child `pid` to exit, at most `within`; returns its exit status (as `waitpid` gives it) and the
/// most memory it held (its peak resident set, in bytes).
fn wait_with_peak(pid: u32, within: std::time::Duration) -> (i32, u64) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain old data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, with valid pointers to locals.
        let got = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid as i32 {
            return (status, usage.ru_maxrss as u64 * 1024);
        }
        if std::time::Instant::now() >= deadline {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("dstream did not exit within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn dstream_run_reports_a_bomb_on_a_real_broker_and_holds_memory_to_the_bound() {
    use dstream_adapters::kafka::records::{encode_batch, Codec};
    use dstream_adapters::kafka::{Acks, Client, ClientConfig};
    use std::io::Read;
    let Some(broker) = common::broker() else { return };
    let addr = broker.addr().to_string();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).unwrap();
    let good: Vec<Vec<u8>> = (0..10).map(|i| format!("k{},{i}", i % 3).into_bytes()).collect();
    let good: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
    // Bombs inflating to 256 MiB, read with a bound of 16 MiB.
    for (codec, bomb) in common::bombs(256 << 20) {
        let topic = format!("bomb-{codec}");
        client.create_topic(&topic, 1, 1).unwrap();
        // Ten sound records, then the bomb, produced raw through the client's own Produce path.
        assert_eq!(client.produce(&topic, 0, encode_batch(&good, 1000, Codec::None).unwrap(), Acks::All).unwrap(), 0);
        assert_eq!(client.produce(&topic, 0, bomb, Acks::All).unwrap(), 10, "{codec}");
        // Reaped by wait4 in `wait_with_peak`, which also gives its peak memory.
        #[allow(clippy::zombie_processes)]
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dstream"))
            .args(["run", "--brokers", &addr, "--topic", &topic, "--starting-offsets", "earliest"])
            .args(["--batch-interval", "200ms", "--batches", "5", "--max-batch-mib", "16", "--on-malformed", "fail"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start dstream");
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (status, peak) = wait_with_peak(child.id(), std::time::Duration::from_secs(60));
        let stderr = reader.join().unwrap();
        eprintln!("{codec}: dstream held {} MiB at most; it said: {stderr}", peak >> 20);
        // An ordinary error exit (1), not an abort or a panic, with one line naming the batch.
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1, "{codec}: status {status}: {stderr}");
        let want = format!(
            "record batch in {topic}-0 at offsets 10..=10 is too large: it inflates to more than {} bytes",
            16 << 20
        );
        assert!(stderr.contains(&want), "{codec}: {stderr}");
        // Issue 14 item 11: the cause is said once, not once per error in the chain.
        assert_eq!(stderr.matches(&want).count(), 1, "{codec}: {stderr}");
        assert!(peak < 128 << 20, "{codec}: dstream held {peak} bytes for a batch bound of 16 MiB");
    }
}
