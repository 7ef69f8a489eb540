//! Consume 1,000,000 lab messages from one Apache Kafka over PLAINTEXT and over SASL_SSL (SCRAM-SHA-512, TLS 1.3),
//! same broker, same run: the bare client, then `dstream run` end to end; each figure the best of [`TRIES`], the
//! two protocols taking turns, after an untimed warm-up; the bare client's own CPU time is reported too (the
//! broker's share of TLS, encrypting in the JVM without zero-copy sends, is not dstream's). `cargo bench -p dstream-adapters --bench consume_secure` (figures for README.md).

use dstream_adapters::broker::kafka::{KafkaCluster, SecureConfig, SecureListener};
use dstream_adapters::kafka::records::DEFAULT_MAX_BATCH_BYTES;
use dstream_adapters::kafka::records::{first_base_offset, for_each_record_before, Codec};
use dstream_adapters::kafka::{Acks, Client, ClientConfig, PartitionFetch, Security, SecuritySettings};
use dstream_cli::generate::{generate, GenerateOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const N: i64 = 1_000_000;

/// Tries per protocol and side.
const TRIES: usize = 5;

const PASSWORD: &str = "bench-password";

/// A CA and a broker certificate for 127.0.0.1 in `dir`: ca.pem, broker.pem (key and chain).
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "bench CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("broker.pem"), key.serialize_pem() + &cert.pem() + &ca.pem()).unwrap();
}

/// The bare client's best time over TRIES to fetch and parse the first million records.
fn bare_pass(client: &mut Client) -> (f64, f64) {
    let cpu = cpu_secs();
    let t = Instant::now();
    let (mut next, mut count) = (0i64, 0i64);
    let mut record_bytes = 16.0f64;
    while next < N {
        let want = ((N - next) as f64 * record_bytes * 1.1) as i32 + (64 << 10);
        let at = [PartitionFetch { partition: 0, offset: next }];
        let f = client.fetch_sized("avg", &at, Duration::from_millis(100), want, want).unwrap();
        let scan = for_each_record_before(&f[0].records, N, DEFAULT_MAX_BATCH_BYTES, |r| {
            if r.offset >= next {
                count += 1;
            }
        })
        .unwrap();
        let n = scan.next_offset.unwrap_or(next).max(next);
        if n > next {
            record_bytes = scan.end as f64 / (n - first_base_offset(&f[0].records).unwrap_or(next)) as f64;
        }
        next = n;
    }
    assert_eq!(count, N);
    (t.elapsed().as_secs_f64(), cpu_secs() - cpu)
}

/// CPU seconds (user and system) this process has used.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// `dstream run` of TRIES batches of a million records from the earliest offset: each batch's tick to completion.
fn run_batches(addr: &str, config: Option<&Path>) -> Vec<i64> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dstream"));
    cmd.args(["run", "--brokers", addr, "--starting-offsets", "earliest", "--batches", &TRIES.to_string()])
        .args(["--batch-interval", "100ms", "--max-rate-per-partition", "10000000", "--ui", "off"])
        .env("BENCH_KAFKA_PASSWORD", PASSWORD);
    if let Some(c) = config {
        cmd.arg("--kafka-config").arg(c);
    }
    let out = cmd.output().expect("run dstream");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("dstream: batch ")).collect();
    assert_eq!(lines.len(), TRIES, "{stderr}");
    lines
        .iter()
        .map(|line| {
            assert!(line.contains(&format!(": {N} records")), "{line}");
            let num_after = |key: &str| -> i64 {
                let rest = &line[line.find(key).expect(key) + key.len()..];
                rest.split(' ').next().unwrap().parse().unwrap()
            };
            num_after("processing ") + num_after("scheduling delay ")
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let config = SecureConfig {
        listeners: vec![SecureListener {
            name: "SASL_SSL".into(),
            protocol: "SASL_SSL",
            keystore: Some(dir.path().join("broker.pem")),
            client_auth: false,
            reauth_ms: None,
        }],
        truststore: None,
        scram_users: vec![("SCRAM-SHA-512", "bench".into(), PASSWORD.into())],
        plain_users: vec![],
        full_jit: true,
    };
    let kafka = KafkaCluster::start_secure(&config).expect("start Apache Kafka");
    let plain_addr = kafka.addr();
    let secure_addr = kafka.listener_addr(0, "SASL_SSL").unwrap();
    let properties = dir.path().join("client.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=bench\n\
             sasl.password=${{env:BENCH_KAFKA_PASSWORD}}\nssl.ca.location={}\n",
            dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    std::env::set_var("BENCH_KAFKA_PASSWORD", PASSWORD);
    let security = Security::new(&SecuritySettings::from_file(&properties).unwrap()).unwrap();

    let mut plain = Client::connect(std::slice::from_ref(&plain_addr), ClientConfig::default()).expect("connect");
    plain.create_topic("avg", 1, 1).expect("create topic");
    let started = Instant::now();
    let opts = GenerateOptions {
        topic: "avg".into(),
        rate: 0,
        count: Some((N * TRIES as i64) as u64),
        seed: 1,
        partitions: 1,
        codec: Codec::None,
        acks: Acks::Leader,
    };
    let produced = generate(&mut plain, &opts, &AtomicBool::new(false)).expect("produce");
    println!("produced {produced} lab messages in {:.3} s", started.elapsed().as_secs_f64());

    let cfg = ClientConfig { security, ..ClientConfig::default() };
    let mut secure = Client::connect(std::slice::from_ref(&secure_addr), cfg).expect("connect over SASL_SSL");
    // Warm-up, untimed: the broker's JIT compiles its TLS path.
    for _ in 0..3 {
        bare_pass(&mut plain);
        bare_pass(&mut secure);
    }
    let (mut best_plain, mut best_secure) = (f64::MAX, f64::MAX);
    let (mut cpu_plain, mut cpu_secure) = (f64::MAX, f64::MAX);
    for _ in 0..TRIES {
        let (p, pc) = bare_pass(&mut plain);
        let (s, sc) = bare_pass(&mut secure);
        println!(
            "  bare client pass: PLAINTEXT {p:.3} s (client CPU {pc:.3} s), SASL_SSL {s:.3} s (client CPU {sc:.3} s)"
        );
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

    let (mut run_plain, mut run_secure) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        run_plain.extend(run_batches(&plain_addr, None));
        run_secure.extend(run_batches(&secure_addr, Some(&properties)));
    }
    println!("  dstream run batches, tick to completion: PLAINTEXT {run_plain:?} ms, SASL_SSL {run_secure:?} ms");
    let rate = |ms: &[i64]| N as f64 / (*ms.iter().min().unwrap()).max(1) as f64 * 1000.0;
    let (rp, rs) = (rate(&run_plain), rate(&run_secure));
    println!(
        "dstream run: PLAINTEXT {:.2} M records/s, SASL_SSL {:.2} M records/s: {:.2} of PLAINTEXT",
        rp / 1e6,
        rs / 1e6,
        rs / rp
    );
    drop(kafka);
}
