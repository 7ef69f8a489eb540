//! Consume lab messages from one Apache Kafka over PLAINTEXT and over SASL_SSL (SCRAM-SHA-512, TLS 1.3), same
//! broker, same run, the two protocols taking turns after an untimed warm-up that brings the broker to the steady
//! state of one that has served for a while ([`WARM_PASSES`], [`WARM_RUNS`]): the bare client's best of [`TRIES`]
//! passes over 1,000,000 records (with its own CPU time and the broker's: the broker's share of TLS, encrypting in
//! the JVM without zero-copy sends, is not dstream's), then [`ROUNDS`] `dstream run`s per variant (PLAINTEXT,
//! SASL_SSL, and SASL_SSL with `ssl.cipher.suites=TLS_AES_128_GCM_SHA256`, since the broker picks AES-256 when
//! offered it) of [`TRIES`] batches of a million records each: best and median batch, the per-round ratio of
//! medians, the dstream process's own CPU time and the broker's CPU time during each run.
//! `cargo bench -p dstream-cli --bench consume_secure` (figures for README.md); `-- wall-clock` for the timed
//! part alone, `-- instructions` for the instruction counts alone.

#[path = "common/callgrind.rs"]
mod callgrind;
#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/lab_topic.rs"]
mod lab_topic;
#[path = "../tests/common/secure.rs"]
mod secure;

use dstream_adapters::broker::kafka::KafkaCluster;
use dstream_adapters::kafka::{Client, ClientConfig, Security, SecuritySettings};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const N: i64 = 1_000_000;

/// Tries per protocol and side: the bare client's passes, and the batches of one `dstream run`.
const TRIES: usize = 5;

/// `dstream run`s per variant, taking turns.
const ROUNDS: usize = 8;

/// Untimed bare passes per protocol before anything is timed.
const WARM_PASSES: usize = 20;

/// Untimed `dstream run`s per protocol after those passes.
const WARM_RUNS: usize = 2;

const PASSWORD: &str = "bench-password";

/// The bare client's best time over TRIES to fetch and parse the first million records.
fn bare_pass(client: &mut Client) -> (f64, f64) {
    let cpu = cpu_secs();
    let t = Instant::now();
    lab_topic::read_first(client, N);
    (t.elapsed().as_secs_f64(), cpu_secs() - cpu)
}

/// CPU seconds (user and system) this process has used.
fn cpu_secs() -> f64 {
    cpu::rusage_secs(libc::RUSAGE_SELF)
}

/// CPU seconds (user and system) of this process's children that have ended and were waited for.
fn children_cpu_secs() -> f64 {
    cpu::rusage_secs(libc::RUSAGE_CHILDREN)
}

/// CPU seconds the process `pid` has used so far, its threads' time on a CPU (threads that ended in between are
/// not counted).
fn pid_cpu_secs(pid: u32) -> f64 {
    let threads = cpu::threads_ns(pid).expect("the broker's /proc/PID/task");
    threads.iter().map(|t| t.1).sum::<u64>() as f64 / 1e9
}

/// One `dstream run`.
struct RunFigures {
    /// Each batch's tick to completion, ms.
    batches: Vec<i64>,
    /// CPU seconds of the whole dstream process (user and system, start to exit).
    process_cpu: f64,
    /// CPU seconds the broker used while the run ran.
    broker_cpu: f64,
}

/// One `dstream run` of TRIES batches of a million records from the earliest offset.
/// Under callgrind if `profiles` is given (the directory its profiles go to).
fn run_batches(addr: &str, config: Option<&Path>, profiles: Option<&Path>, broker: u32) -> RunFigures {
    let dstream = env!("CARGO_BIN_EXE_dstream");
    let mut cmd = profiles.map_or_else(|| Command::new(dstream), |dir| callgrind::command(dstream, dir));
    cmd.args(["run", "--brokers", addr, "--starting-offsets", "earliest", "--batches", &TRIES.to_string()])
        .args(["--batch-interval", "100ms", "--max-rate-per-partition", "10000000", "--ui", "off"])
        .env("BENCH_KAFKA_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(c) = config {
        cmd.arg("--kafka-config").arg(c);
    }
    // The broker is a child too, but still running: only dstream's use is added when it has been waited for.
    let cpu = children_cpu_secs();
    let broker_before = pid_cpu_secs(broker);
    let mut child = cmd.spawn().expect("run dstream");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).expect("dstream's stderr");
    let status = child.wait().unwrap();
    let process_cpu = children_cpu_secs() - cpu;
    let broker_cpu = pid_cpu_secs(broker) - broker_before;
    assert!(status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("dstream: batch ")).collect();
    assert_eq!(lines.len(), TRIES, "{stderr}");
    let batches = lines
        .iter()
        .map(|line| {
            assert!(line.contains(&format!(": {N} records")), "{line}");
            let num_after = |key: &str| -> i64 {
                let rest = &line[line.find(key).expect(key) + key.len()..];
                rest.split(' ').next().unwrap().parse().unwrap()
            };
            num_after("processing ") + num_after("scheduling delay ")
        })
        .collect();
    RunFigures { batches, process_cpu, broker_cpu }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let dir = tempfile::tempdir().unwrap();
    secure::broker_certificates(dir.path(), "bench CA");
    let config = secure::sasl_ssl_scram512(dir.path(), "bench", PASSWORD, true);
    let kafka = KafkaCluster::start_secure(&config).expect("start Apache Kafka");
    let broker = kafka.pid(0).expect("the broker's process");
    let plain_addr = kafka.addr();
    let secure_addr = kafka.listener_addr(0, "SASL_SSL").unwrap();
    let properties = secure::scram512_properties(dir.path(), "bench", "BENCH_KAFKA_PASSWORD");
    std::env::set_var("BENCH_KAFKA_PASSWORD", PASSWORD);
    let security = Security::new(&SecuritySettings::from_file(&properties).unwrap()).unwrap();

    let mut plain = Client::connect(std::slice::from_ref(&plain_addr), ClientConfig::default()).expect("connect");
    lab_topic::produce(&mut plain, (N * TRIES as i64) as u64);
    if !std::env::args().any(|a| a == "instructions") {
        wall_clock(&plain_addr, &secure_addr, &properties, security, broker);
    }
    if !std::env::args().any(|a| a == "wall-clock") {
        instructions(&plain_addr, &secure_addr, &properties, broker);
    }
    drop(kafka);
}

/// The bare client's passes and `dstream run`'s batches, PLAINTEXT and SASL_SSL taking turns, on the clock.
fn wall_clock(plain_addr: &str, secure_addr: &str, properties: &Path, security: Security, broker: u32) {
    let mut plain = Client::connect(&[plain_addr.to_string()], ClientConfig::default()).expect("connect");

    let cfg = ClientConfig { security, ..ClientConfig::default() };
    let mut secure = Client::connect(&[secure_addr.to_string()], cfg).expect("connect over SASL_SSL");
    // Warm-up, untimed, until the broker runs as a broker that has served for a while does: its JIT compiles
    // its TLS path (its CPU per SASL_SSL pass falls from about 170 ms to about 25 ms over the first few passes,
    // and per `dstream run` it kept falling over the first four runs when the warm-up was 3 passes).
    for _ in 0..WARM_PASSES {
        bare_pass(&mut plain);
        bare_pass(&mut secure);
    }
    for _ in 0..WARM_RUNS {
        run_batches(plain_addr, None, None, broker);
        run_batches(secure_addr, Some(properties), None, broker);
    }
    let (mut best_plain, mut best_secure) = (f64::MAX, f64::MAX);
    let (mut cpu_plain, mut cpu_secure) = (f64::MAX, f64::MAX);
    let (mut broker_plain, mut broker_secure) = (f64::MAX, f64::MAX);
    for _ in 0..TRIES {
        let b = pid_cpu_secs(broker);
        let (p, pc) = bare_pass(&mut plain);
        let bpc = pid_cpu_secs(broker) - b;
        let (s, sc) = bare_pass(&mut secure);
        let bsc = pid_cpu_secs(broker) - b - bpc;
        println!(
            "  bare client pass: PLAINTEXT {p:.3} s (client CPU {pc:.3} s, broker's {bpc:.3} s), SASL_SSL {s:.3} s \
             (client CPU {sc:.3} s, broker's {bsc:.3} s)"
        );
        broker_plain = broker_plain.min(bpc);
        broker_secure = broker_secure.min(bsc);
        best_plain = best_plain.min(p);
        best_secure = best_secure.min(s);
        cpu_plain = cpu_plain.min(pc);
        cpu_secure = cpu_secure.min(sc);
    }
    let (bp, bs) = (N as f64 / best_plain, N as f64 / best_secure);
    println!(
        "bare client: PLAINTEXT {:.2} M records/s, SASL_SSL {:.2} M records/s: {:.2} of PLAINTEXT",
        bp / 1e6,
        bs / 1e6,
        bs / bp
    );
    println!(
        "bare client CPU per million records: PLAINTEXT {:.1} ms, SASL_SSL {:.1} ms: {:.2} of PLAINTEXT's rate",
        cpu_plain * 1e3,
        cpu_secure * 1e3,
        cpu_plain / cpu_secure
    );
    println!(
        "the broker's CPU per bare pass over a million records, least of {TRIES}: PLAINTEXT {:.1} ms, SASL_SSL \
         {:.1} ms: {:.2} x",
        broker_plain * 1e3,
        broker_secure * 1e3,
        broker_secure / broker_plain
    );

    // `dstream run`, ROUNDS runs per variant, taking turns: each run's batches, its CPU time and the broker's.
    let aes128 = properties.with_file_name("client-aes128.properties");
    let text = std::fs::read_to_string(properties).expect("the client properties");
    std::fs::write(&aes128, format!("{text}ssl.cipher.suites=TLS_AES_128_GCM_SHA256\n")).expect("write properties");
    let variants: [(&str, &str, Option<&Path>); 3] = [
        ("PLAINTEXT", plain_addr, None),
        ("SASL_SSL", secure_addr, Some(properties)),
        ("SASL_SSL offering AES-128 only", secure_addr, Some(&aes128)),
    ];
    let mut runs: Vec<Vec<RunFigures>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (v, (name, addr, config)) in variants.iter().enumerate() {
            let r = run_batches(addr, *config, None, broker);
            println!(
                "  dstream run {round}, {name}: batches {:?} ms, CPU {:.0} ms, broker's {:.0} ms",
                r.batches,
                r.process_cpu * 1e3,
                r.broker_cpu * 1e3
            );
            runs[v].push(r);
        }
    }
    let ms = |r: &RunFigures| r.batches.iter().map(|&m| m as f64).collect::<Vec<_>>();
    let batches = |v: usize| runs[v].iter().flat_map(ms).collect::<Vec<f64>>();
    let best = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    let cpu = |v: usize, f: fn(&RunFigures) -> f64| median(&runs[v].iter().map(f).collect::<Vec<_>>()) * 1e3;
    let plain = batches(0);
    println!(
        "PLAINTEXT, {} batches of 1M records: best {:.0} ms, median {:.0} ms; per run: dstream's CPU (user + \
         system, the whole process: start, connections, authentication and {TRIES}M records) {:.0} ms, the broker's \
         {:.0} ms (medians of {ROUNDS} runs)",
        plain.len(),
        best(&plain),
        median(&plain),
        cpu(0, |r| r.process_cpu),
        cpu(0, |r| r.broker_cpu),
    );
    for (v, (name, _, _)) in variants.iter().enumerate().skip(1) {
        let secure = batches(v);
        let paired: Vec<f64> = runs[0].iter().zip(&runs[v]).map(|(p, s)| median(&ms(p)) / median(&ms(s))).collect();
        println!(
            "{name}: best batch {:.0} ms: {:.2} of PLAINTEXT's rate; median batch {:.0} ms: {:.2}; per round \
             (median / median) {:.2}-{:.2}, median {:.2}; dstream's CPU per run {:.0} ms: {:.2} of PLAINTEXT's \
             rate; the broker's {:.0} ms: {:.2} x PLAINTEXT's",
            best(&secure),
            best(&plain) / best(&secure),
            median(&secure),
            median(&plain) / median(&secure),
            best(&paired),
            paired.iter().cloned().fold(0.0, f64::max),
            median(&paired),
            cpu(v, |r| r.process_cpu),
            cpu(0, |r| r.process_cpu) / cpu(v, |r| r.process_cpu),
            cpu(v, |r| r.broker_cpu),
            cpu(v, |r| r.broker_cpu) / cpu(0, |r| r.broker_cpu),
        );
    }
}

/// `dstream run` under callgrind, once per protocol: the instructions each thread executed per record.
fn instructions(plain_addr: &str, secure_addr: &str, properties: &Path, broker: u32) {
    callgrind::require_valgrind();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut counts = Vec::new();
    for (name, addr, config) in [("PLAINTEXT", plain_addr, None), ("SASL_SSL", secure_addr, Some(properties))] {
        run_batches(addr, config, Some(dir.path()), broker);
        let threads = callgrind::threads(dir.path());
        let all: u64 = threads.iter().map(|t| t.instructions).sum();
        let main = threads.iter().filter(|t| t.id == 1).map(|t| t.instructions).sum::<u64>();
        let fetch = threads.iter().filter(|t| t.ran("dstream_adapters::run::fetch_loop")).map(|t| t.instructions).sum();
        let per = |n: u64| n as f64 / (N * TRIES as i64) as f64;
        println!(
            "  callgrind, {name}: all threads {all} instructions ({:.1} per record), processing thread {:.1}, fetch \
             thread {:.1}, others {:.1}",
            per(all),
            per(main),
            per(fetch),
            per(all - main - fetch)
        );
        counts.push((all, fetch));
    }
    let (plain, secure) = (counts[0], counts[1]);
    let records = (N * TRIES as i64) as f64;
    println!(
        "instructions, SASL_SSL / PLAINTEXT, {TRIES}M records: all threads {:.3} (so dstream's own work runs at {:.2} \
         of PLAINTEXT's rate); TLS adds {:.1} instructions per record, {:.1} of them on the fetch thread (reading \
         and decrypting)",
        secure.0 as f64 / plain.0 as f64,
        plain.0 as f64 / secure.0 as f64,
        (secure.0 as f64 - plain.0 as f64) / records,
        (secure.1 as f64 - plain.1 as f64) / records,
    );
}
