//! A timeline of the client's requests and of the reading of fetched bytes, on stderr, when the environment
//! variable `DSTREAM_TRACE_KAFKA` is set (to anything but empty or `0`): one line per request sent, per answer
//! read, per TLS session begun (its version and cipher suite) and per segment of a batch read, each with the
//! thread's name and the microseconds since the first event of the process. For finding where a batch's time
//! goes; off, it costs one relaxed load per request.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// 0: not looked up yet, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// The first event's time.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// True when tracing is on.
#[inline]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("DSTREAM_TRACE_KAFKA").is_ok_and(|v| !v.is_empty() && v != "0");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        s => s == 2,
    }
}

/// Microseconds since the first event of the process.
pub fn micros() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The calling thread's CPU time so far, in microseconds.
pub fn thread_cpu_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Writes one trace line (call only when [`enabled`]): `dstream-trace <µs> <thread> cpu <µs of the thread's
/// CPU time> <what>`.
pub fn line(what: std::fmt::Arguments<'_>) {
    let at = micros();
    let cpu = thread_cpu_micros();
    let thread = std::thread::current();
    eprintln!("dstream-trace {at:>9} {:<16} cpu {cpu:>8} {what}", thread.name().unwrap_or("?"));
}
