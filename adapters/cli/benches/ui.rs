//! What the web UI costs a live job: `dstream run` over the same records with `--ui off`, and with the UI on and
//! a client polling it every 100 ms (the page's requests, `/api/v1/state` and `/api/v1/batches?since=`, plus
//! `/metrics`), alternately in one process. `cargo bench -p dstream-cli --bench ui` (figures for README.md).
//!
//! Wall-clock throughput on a shared machine varies by tens of percent from run to run, so the UI's own cost is
//! also measured directly: the CPU time of its threads (`dstream-ui-*`, from /proc's schedstat, in ns) against the
//! whole process's, sampled after each poll; and first, what feeding it costs the batch path per batch, timed
//! alone over many batches while a client polls it.
//!
//! Wall clock cannot resolve a few percent here, so `cargo bench -p dstream-cli --bench ui -- instructions` (also
//! run at the end of the whole bench) counts instructions instead, which noise does not change: the same run
//! under valgrind's callgrind, each thread counted apart, with the UI off and on (polled twice per batch, as
//! every 100 ms does on the 200 ms grid), for the processing thread (the main thread, which runs the batches and
//! feeds the UI) and for all threads.
//!
//! Each run processes [`BATCHES`] batches of [`PER_BATCH`] records on a [`INTERVAL_MS`] ms grid from the earliest
//! offset; its throughput is its records over the sum of its batches' time from tick to completion (scheduling
//! delay plus processing time), so the grid's idle time does not count.

#[path = "common/callgrind.rs"]
mod callgrind;
#[path = "common/cpu.rs"]
mod cpu;

use dstream_adapters::broker::Tansu;
use dstream_adapters::kafka::records::Codec;
use dstream_adapters::kafka::{Acks, Client, ClientConfig};
use dstream_cli::generate::{generate, GenerateOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCHES: usize = 15;
const PER_BATCH: usize = 200_000;
const INTERVAL_MS: usize = 200;
/// Runs per side, alternating.
const TRIES: usize = 8;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let only_instructions = std::env::args().any(|a| a == "instructions");
    if !only_instructions {
        feed_cost();
    }
    let broker = Tansu::start().expect("start tansu");
    let addr = broker.addr().to_string();
    let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default()).expect("connect");
    client.create_topic("avg", 1, 1).expect("create topic");
    let opts = GenerateOptions {
        topic: "avg".into(),
        rate: 0,
        count: Some((BATCHES * PER_BATCH) as u64),
        seed: 1,
        partitions: 1,
        codec: Codec::None,
        acks: Acks::Leader,
    };
    let produced = generate(&mut client, &opts, &AtomicBool::new(false)).expect("produce");
    println!("produced {produced} lab messages");
    if !only_instructions {
        wall_clock(&addr);
    }
    instructions(&addr);
    drop(broker);
}

/// Throughput and the UI threads' CPU time, UI on and off, TRIES runs each, alternating.
fn wall_clock(addr: &str) {
    let (mut off, mut on, mut ui_cpu) = (vec![], vec![], vec![]);
    for i in 0..2 * TRIES {
        let ui = i % 2 == 1;
        let (rate, polls, cpu) = run(addr, ui);
        println!("  UI {}: {:.2} M records/s{}", if ui { "on " } else { "off" }, rate / 1e6, polls_text(polls, cpu));
        if let Some((u, all)) = cpu {
            ui_cpu.push((u, all));
        }
        if ui {
            on.push(rate)
        } else {
            off.push(rate)
        }
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    println!(
        "UI on and polled every 100 ms / UI off: best {:.3} ({:.2} / {:.2} M records/s), median {:.3}",
        best(&on) / best(&off),
        best(&on) / 1e6,
        best(&off) / 1e6,
        median(&mut on.clone()) / median(&mut off.clone())
    );
    let (u, all) = ui_cpu.iter().fold((0, 0), |(a, b), (u, all)| (a + u, b + all));
    println!(
        "UI threads' CPU time: {:.1} ms of {:.1} ms for the whole process over {} runs = {:.3}%",
        u as f64 / 1e6 / ui_cpu.len() as f64,
        all as f64 / 1e6 / ui_cpu.len() as f64,
        ui_cpu.len(),
        100.0 * u as f64 / all.max(1) as f64
    );
}

/// Instructions executed by one run's threads, as callgrind counted them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// The main thread: it runs the batches and feeds the UI.
    processing: u64,
    /// The UI server's threads (accepting and answering).
    ui: u64,
    /// Every thread.
    all: u64,
    /// Polls answered (each: the page's two requests and `/metrics`).
    polls: u64,
}

/// The same run twice with the UI off and twice with it on, under callgrind; prints the ratios.
fn instructions(addr: &str) {
    callgrind::require_valgrind();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut off = vec![];
    let mut on = vec![];
    for i in 0..4 {
        let ui = i % 2 == 1;
        let c = run_counted(addr, ui, dir.path());
        println!(
            "  callgrind, UI {}: processing thread {} instructions, UI threads {}, all threads {}{}",
            if ui { "on " } else { "off" },
            c.processing,
            c.ui,
            c.all,
            if ui { format!(", {} polls answered", c.polls) } else { String::new() }
        );
        if ui {
            on.push(c)
        } else {
            off.push(c)
        }
    }
    let mean = |v: &[Counts], f: fn(&Counts) -> u64| v.iter().map(|c| f(c) as f64).sum::<f64>() / v.len() as f64;
    let (p_on, p_off) = (mean(&on, |c| c.processing), mean(&off, |c| c.processing));
    let (a_on, a_off) = (mean(&on, |c| c.all), mean(&off, |c| c.all));
    let records = (BATCHES * PER_BATCH) as f64;
    println!(
        "instructions, UI on and polled twice per batch / UI off: processing thread {:.4} ({:.1} / {:.1} per \
         record), all threads {:.4} ({:.1} / {:.1} per record); the UI's threads {:.0} instructions per poll",
        p_on / p_off,
        p_on / records,
        p_off / records,
        a_on / a_off,
        a_on / records,
        a_off / records,
        mean(&on, |c| c.ui) / mean(&on, |c| c.polls.max(1)),
    );
    println!(
        "as throughput (instructions per record of UI off / UI on): processing thread {:.4}, all threads {:.4}",
        p_off / p_on,
        a_off / a_on
    );
}

/// `cmd` (dstream, or valgrind running it) as one `dstream run` of the bench: BATCHES batches of PER_BATCH records
/// from the earliest offset, the UI on a free port or off, stdout dropped, stderr piped.
fn run_args(mut cmd: Command, addr: &str, ui: bool) -> Command {
    cmd.args(["run", "--brokers", addr, "--starting-offsets", "earliest", "--batches", &BATCHES.to_string()])
        .args(["--batch-interval", &format!("{INTERVAL_MS}ms")])
        .args(["--max-rate-per-partition", &(PER_BATCH * 1000 / INTERVAL_MS).to_string()])
        .args(["--ui", if ui { "127.0.0.1:0" } else { "off" }])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// One `dstream run` under callgrind, each thread counted apart; with the UI, polled twice after each batch's
/// status line.
fn run_counted(addr: &str, ui: bool, dir: &std::path::Path) -> Counts {
    let mut child = run_args(callgrind::command(env!("CARGO_BIN_EXE_dstream"), dir), addr, ui)
        .spawn()
        .expect("run dstream under valgrind");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut stderr, mut url, mut polls, mut since, mut batches) = (String::new(), None::<String>, 0, 0i64, 0);
    for l in lines {
        let l = l.unwrap();
        stderr.push_str(&l);
        stderr.push('\n');
        if let Some(u) = l.strip_prefix("dstream: web UI at http://") {
            url = Some(u.trim_end_matches('/').to_string());
        }
        if l.starts_with("dstream: batch ") {
            batches += 1;
            // The last batch's polls could race the end of the run: the UI stops with it.
            if let Some(url) = url.as_ref().filter(|_| batches < BATCHES) {
                for _ in 0..2 {
                    let ok = get(url, "/api/v1/state").is_some()
                        && get(url, "/metrics").is_some()
                        && get(url, &format!("/api/v1/batches?since={since}")).is_some_and(|b| {
                            since = since.max(newest(&b).unwrap_or(0));
                            true
                        });
                    polls += ok as u64;
                }
            }
        }
    }
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert_eq!(batches, BATCHES, "{stderr}");
    assert!(
        stderr
            .lines()
            .filter(|l| l.starts_with("dstream: batch "))
            .all(|l| l.contains(&format!(": {PER_BATCH} records"))),
        "{stderr}"
    );
    if ui {
        assert_eq!(polls, 2 * (BATCHES as u64 - 1), "every poll answered\n{stderr}");
    }
    let mut c = Counts { polls, ..Counts::default() };
    for t in callgrind::threads(dir) {
        c.all += t.instructions;
        if t.id == 1 {
            c.processing += t.instructions;
        } else if t.ran("dstream_adapters::ui::http::") {
            c.ui += t.instructions;
        }
    }
    c
}

/// What feeding the UI costs the batch path, alone: a batch's start and completion as the run's hooks report
/// them (one partition, one stateful operator, 1 KiB of printed output), while a client polls the server every
/// 100 ms, timed over many batches.
fn feed_cost() {
    use dstream_adapters::streaming::BatchCompleted;
    use dstream_adapters::ui::{StateSize, UiCollector, UiConfig};
    use dstream_core::{BatchInfo, Duration as Dur, OffsetRange, Time};
    const N: usize = 200_000;
    let ui = UiCollector::new(UiConfig { topic: "avg".into(), batch_interval: Dur(200), retained_batches: 1000 });
    let server = ui.serve("127.0.0.1:0", false).expect("serve");
    let url = server.addr().to_string();
    let done = Arc::new(AtomicBool::new(false));
    let poll_done = done.clone();
    let poller = std::thread::spawn(move || {
        while !poll_done.load(Ordering::Relaxed) {
            let _ = (get(&url, "/api/v1/state"), get(&url, "/metrics"), get(&url, "/api/v1/batches?since=0"));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let printed = "x".repeat(1024);
    let no_input = dstream_core::RecordBatch::new();
    let state = [StateSize { operator: "map_with_state#0", kind: "map_with_state", keys: 26, timed_out: 0 }];
    let start = Instant::now();
    for i in 0..N as i64 {
        let info = BatchInfo {
            time: Time(i * 200),
            ranges: vec![OffsetRange { partition: 0, from: i * PER_BATCH as i64, until: (i + 1) * PER_BATCH as i64 }],
        };
        ui.batch_started(&info);
        let b = BatchCompleted {
            info: &info,
            records: PER_BATCH,
            malformed: &[],
            scheduling_delay: Dur(3),
            processing_time: Dur(20),
            lag: 0,
            lags: &[(0, 0)],
            pending: &[],
            printed: &printed,
            input: &no_input,
            next_offsets: &[],
            leader_epochs: &[],
            zero: Time(0),
            interval: Dur(INTERVAL_MS as i64),
            output_operations: &[],
        };
        ui.batch_completed(&b, &state, None, None);
    }
    let per_batch = start.elapsed() / N as u32;
    done.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    println!(
        "feeding the UI: {:.2} us per batch (start and completion, {N} batches, polled every 100 ms) = {:.4}% of a \
         {INTERVAL_MS} ms batch",
        per_batch.as_secs_f64() * 1e6,
        100.0 * per_batch.as_secs_f64() / (INTERVAL_MS as f64 / 1000.0)
    );
}

fn polls_text(polls: Option<u64>, cpu: Option<(u64, u64)>) -> String {
    match (polls, cpu) {
        (Some(n), Some((u, all))) => {
            format!(", {n} polls answered, UI threads {:.2} ms of {:.0} ms CPU", u as f64 / 1e6, all as f64 / 1e6)
        }
        _ => String::new(),
    }
}

/// CPU time in ns of the process `pid`'s UI threads and of all its threads.
fn cpu_ns(pid: u32) -> Option<(u64, u64)> {
    let threads = cpu::threads_ns(pid)?;
    let ui = threads.iter().filter(|(comm, _)| comm.starts_with("dstream-ui")).map(|t| t.1).sum();
    Some((ui, threads.iter().map(|t| t.1).sum()))
}

/// One `dstream run`; its throughput and, with the UI, the polls answered and the CPU time of the UI's threads and
/// of the whole process (as of the last poll).
fn run(addr: &str, ui: bool) -> (f64, Option<u64>, Option<(u64, u64)>) {
    let mut child = run_args(Command::new(env!("CARGO_BIN_EXE_dstream")), addr, ui).spawn().expect("run dstream");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let done = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let cpu = Arc::new(std::sync::Mutex::new(None));
    let pid = child.id();
    let mut poller = None;
    let mut stderr = String::new();
    if ui {
        let url = loop {
            let l = lines.next().expect("the UI line").unwrap();
            stderr.push_str(&l);
            stderr.push('\n');
            if let Some(u) = l.strip_prefix("dstream: web UI at http://") {
                break u.trim_end_matches('/').to_string();
            }
        };
        let (done, polls, cpu) = (done.clone(), polls.clone(), cpu.clone());
        poller = Some(std::thread::spawn(move || {
            let mut since = 0i64;
            while !done.load(Ordering::Relaxed) {
                let next = Instant::now() + Duration::from_millis(100);
                let ok = get(&url, "/api/v1/state").is_some()
                    && get(&url, "/metrics").is_some()
                    && get(&url, &format!("/api/v1/batches?since={since}")).is_some_and(|b| {
                        if let Some(t) = newest(&b) {
                            since = since.max(t);
                        }
                        true
                    });
                if ok {
                    polls.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(c) = cpu_ns(pid) {
                    *cpu.lock().unwrap() = Some(c);
                }
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }));
    }
    for l in lines {
        let l = l.unwrap();
        stderr.push_str(&l);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    done.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        p.join().unwrap();
    }
    assert!(status.success(), "{stderr}");
    let field = |line: &str, key: &str| -> i64 {
        let rest = &line[line.find(key).expect(key) + key.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let batch: Vec<&str> = stderr.lines().filter(|l| l.starts_with("dstream: batch ")).collect();
    assert_eq!(batch.len(), BATCHES, "{stderr}");
    assert!(batch.iter().all(|l| l.contains(&format!(": {PER_BATCH} records"))), "{stderr}");
    let ms: i64 = batch.iter().map(|l| field(l, "processing ") + field(l, "scheduling delay ")).sum();
    let rate = (BATCHES * PER_BATCH) as f64 / (ms.max(1) as f64 / 1000.0);
    let cpu = *cpu.lock().unwrap();
    (rate, ui.then(|| polls.load(Ordering::Relaxed)), cpu)
}

/// The newest batch time in a `/api/v1/batches` answer (newest first).
fn newest(body: &str) -> Option<i64> {
    let at = body.find("\"batchTime\":")? + "\"batchTime\":".len();
    body[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A GET; the body if the answer was 200.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut all = String::new();
    c.read_to_string(&mut all).ok()?;
    let (head, body) = all.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200 ").then(|| body.to_string())
}
