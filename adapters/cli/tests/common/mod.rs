//! Shared helpers of the real-broker tests: a broker per test, the dstream binary, output parsing, and a
//! third-party Kafka client (confluent-kafka from PyPI) for cross-checks.
#![allow(dead_code)]

use dstream_adapters::broker::kafka::KafkaCluster;
use dstream_adapters::broker::Tansu;
use dstream_cli::generate::LabMessages;
use dstream_cli::model::AverageModel;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// True if DSTREAM_NO_BROKER=1 says on purpose that no broker may run (CI never sets it).
pub fn broker_disabled() -> bool {
    let off = std::env::var_os("DSTREAM_NO_BROKER").is_some_and(|v| v == "1");
    if off {
        eprintln!("DSTREAM_NO_BROKER=1: skipping a real-broker test on purpose");
    }
    off
}

/// A fresh tansu on a free port, or `None` if DSTREAM_NO_BROKER=1 is set on purpose.
pub fn broker() -> Option<Tansu> {
    if broker_disabled() {
        return None;
    }
    Some(Tansu::start().expect("start tansu"))
}

/// A new Apache Kafka cluster of `size` KRaft nodes of its own (provisioned on first use); panics if it cannot start.
pub fn kafka_cluster(size: usize) -> KafkaCluster {
    KafkaCluster::start(size).unwrap_or_else(|e| panic!("start Apache Kafka ({size} nodes): {e}"))
}

/// The single-node Apache Kafka shared by this test binary's tests, started on first use; it runs until the
/// process ends (its JVM dies with the process). Tests keep apart by topic name ([`TestBroker::topic`]).
pub fn shared_kafka() -> &'static KafkaCluster {
    static SHARED: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    match SHARED.get_or_init(|| KafkaCluster::start(1).map_err(|e| e.to_string())) {
        Ok(c) => c,
        Err(e) => panic!("start the shared Apache Kafka: {e}"),
    }
}

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tansu of the test's own.
    Tansu,
    /// The test binary's shared Apache Kafka.
    Kafka,
}

/// The broker one test runs against.
pub struct TestBroker {
    kind: Kind,
    _tansu: Option<Tansu>,
    addr: String,
    id: u64,
}

impl TestBroker {
    /// The broker's address, HOST:PORT.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Which broker this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A topic name of this test's own: `base` and a number unique in the process (a Kafka broker is shared).
    pub fn topic(&self, base: &str) -> String {
        format!("{base}-{}", self.id)
    }
}

/// The broker of `kind` for one test, or `None` if DSTREAM_NO_BROKER=1 is set on purpose.
pub fn broker_of(kind: Kind) -> Option<TestBroker> {
    static TESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if broker_disabled() {
        return None;
    }
    let id = TESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(match kind {
        Kind::Tansu => {
            let t = Tansu::start().expect("start tansu");
            TestBroker { kind, addr: t.addr().to_string(), _tansu: Some(t), id }
        }
        Kind::Kafka => TestBroker { kind, addr: shared_kafka().addr(), _tansu: None, id },
    })
}

/// Declares each named `fn NAME(b: &TestBroker)` as two tests, `tansu::NAME` and `kafka::NAME`, one per broker.
#[macro_export]
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod tansu {
            $(
                #[test]
                fn $name() {
                    if let Some(b) = $crate::common::broker_of($crate::common::Kind::Tansu) {
                        super::$name(&b)
                    }
                }
            )*
        }
        mod kafka {
            $(
                #[test]
                fn $name() {
                    if let Some(b) = $crate::common::broker_of($crate::common::Kind::Kafka) {
                        super::$name(&b)
                    }
                }
            )*
        }
    };
}

/// Runs the dstream binary with `args` to completion.
pub fn dstream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dstream")).args(args).stdin(Stdio::null()).output().expect("run dstream")
}

/// Asserts success and returns stdout as text.
pub fn ok_stdout(out: &Output) -> String {
    assert!(out.status.success(), "dstream failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// Waits for `child` to exit, at most `within`; past that it is killed and the test fails.
pub fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for dstream") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("dstream did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `dstream generate --brokers ADDR --topic TOPIC --rate 0 --count COUNT --seed SEED` and `extra` (e.g.
/// `--partitions 2`), which must succeed.
pub fn generate(addr: &str, topic: &str, count: u64, seed: u64, extra: &[&str]) {
    let (count, seed) = (count.to_string(), seed.to_string());
    let mut args =
        vec!["generate", "--brokers", addr, "--topic", topic, "--rate", "0", "--count", &count, "--seed", &seed];
    args.extend_from_slice(extra);
    ok_stdout(&dstream(&args));
}

/// What `dstream generate --seed SEED --count COUNT --partitions PARTITIONS` produces: per partition, in offset
/// order (message i goes to partition i mod PARTITIONS).
pub fn lab_messages(seed: u64, count: u64, partitions: u64) -> Vec<Vec<Vec<u8>>> {
    let mut m = LabMessages::new(seed);
    let mut out = vec![Vec::new(); partitions as usize];
    let mut buf = vec![];
    for i in 0..count {
        m.next_into(&mut buf);
        out[(i % partitions) as usize].push(buf.clone());
    }
    out
}

/// The reference model fed `messages` in order.
pub fn model_of<'a>(messages: impl IntoIterator<Item = &'a Vec<u8>>) -> AverageModel {
    let mut model = AverageModel::new();
    for m in messages {
        model.feed(m).expect("lab messages are well-formed");
    }
    model
}

/// The `(key, sum, count)` rows of `dstream checkpoint show`'s table (key, sum, count, average per line).
pub fn checkpoint_rows(table: &str) -> Vec<(String, i128, u64)> {
    table
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            (f[0].to_string(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

/// The printed elements `(key,average)` in print order, across all batches.
pub fn printed_elements(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix('(')?.strip_suffix(')'))
        .map(|e| {
            let (k, v) = e.rsplit_once(',').expect("key,average");
            (k.to_string(), v.parse::<f64>().expect("a number"))
        })
        .collect()
}

/// Each key's last printed average: the final averages when every element was printed.
pub fn final_averages(stdout: &str) -> BTreeMap<String, f64> {
    printed_elements(stdout).into_iter().collect()
}

/// The record counts of the status lines, one per batch.
pub fn batch_record_counts(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|l| l.starts_with("dstream: batch "))
        .map(|l| {
            let after = l.split(": ").nth(2).expect("status fields");
            after.split(' ').next().unwrap().parse().expect("record count")
        })
        .collect()
}

/// A folder with the PyPI package confluent-kafka installed (cached; installed on first use).
pub fn confluent_kafka() -> PathBuf {
    let dir = dstream_adapters::broker::cache_dir().unwrap().parent().unwrap().join("pylib-confluent-kafka");
    if dir.join("confluent_kafka").is_dir() {
        return dir;
    }
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.with_extension(format!("tmp-{}-{call}", std::process::id()));
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
        .arg(&tmp)
        .arg("confluent-kafka")
        .status()
        .expect("run pip");
    assert!(status.success(), "pip install confluent-kafka failed");
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(dir.join("confluent_kafka").is_dir());
    dir
}

/// Runs a Python script with confluent-kafka importable; returns stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let lib = confluent_kafka();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", lib)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A CRC-valid v2 record batch at offset 0 whose records are `body` as given (compressed by `codec`, the
/// attributes' codec bits), with the header's record count and last offset delta as given: input a producer would
/// not write.
pub fn raw_batch(codec: i16, count: i32, last_delta: i32, body: &[u8]) -> bytes::Bytes {
    let mut b = Vec::with_capacity(61 + body.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&(49 + body.len() as i32).to_be_bytes()); // batch length
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&codec.to_be_bytes()); // attributes
    b.extend_from_slice(&last_delta.to_be_bytes());
    b.extend_from_slice(&1000i64.to_be_bytes()); // base timestamp
    b.extend_from_slice(&1000i64.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes::Bytes::from(b)
}

/// Compression bombs: CRC-valid batches of one record whose records inflate to `inflated` bytes of zeros (gzip,
/// lz4, zstd), or declare as raw snappy that they inflate to 4 GiB; as (codec, batch).
pub fn bombs(inflated: usize) -> Vec<(&'static str, bytes::Bytes)> {
    use std::io::Write;
    let zeros = vec![0u8; 1 << 20];
    let fill = |w: &mut dyn Write| (0..inflated >> 20).for_each(|_| w.write_all(&zeros).expect("in memory"));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    fill(&mut gzip);
    let gzip = gzip.finish().expect("in memory");
    // A raw snappy block declaring 2^32 - 2 bytes, holding one literal byte.
    let snappy = [0xfe, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00];
    let mut lz4 = lz4::EncoderBuilder::new().level(1).build(Vec::new()).expect("lz4 encoder");
    fill(&mut lz4);
    let (lz4, done) = lz4.finish();
    done.expect("in memory");
    let mut zstd = zstd::stream::Encoder::new(Vec::new(), 3).expect("zstd encoder");
    fill(&mut zstd);
    let zstd = zstd.finish().expect("in memory");
    vec![
        ("gzip", raw_batch(1, 1, 0, &gzip)),
        ("snappy", raw_batch(2, 1, 0, &snappy)),
        ("lz4", raw_batch(3, 1, 0, &lz4)),
        ("zstd", raw_batch(4, 1, 0, &zstd)),
    ]
}

/// Records the latest checkpoint in `dir` has counted, if there is one.
pub fn counted(dir: &std::path::Path) -> Option<u64> {
    if !dir.exists() {
        return None;
    }
    let cp = dstream_adapters::checkpoint::CheckpointStore::open_read_only(dir)
        .load_latest::<dstream_adapters::checkpoint::JobState>(None)
        .expect("checkpoints readable")?;
    let lab = dstream_cli::lab::lab_state(&cp.checkpoint.state).expect("the lab's one operator").expect("decodes");
    Some(lab.state.entries.iter().map(|(_, e)| e.state.count()).sum())
}

/// Waits until the latest checkpoint in `dir` counts at least `n` records, at most `within`.
pub fn wait_counted(dir: &std::path::Path, n: u64, within: Duration, child: &mut Child) -> u64 {
    wait_until_counted(n, within, child, || counted(dir).map(|c| (c, c)))
}

/// Waits until `probe` (the newest checkpoint's count of records, with what the caller reads of it; `None`
/// while there is none) counts at least `n`, at most `within`; fails at once if `child` (the run) exits first.
pub fn wait_until_counted<T>(n: u64, within: Duration, child: &mut Child, probe: impl Fn() -> Option<(u64, T)>) -> T {
    let deadline = Instant::now() + within;
    loop {
        let got = probe();
        let c = got.as_ref().map_or(0, |g| g.0);
        if let Some((_, t)) = got.filter(|g| g.0 >= n) {
            return t;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("dstream run exited ({status}) with {c} of {n} records counted: {err}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{c} of {n} records counted after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Output written to memory (what a test's `print_to` reads back).
#[derive(Clone, Default)]
pub struct Buf(pub std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Buf {
    /// Everything written, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.borrow().clone()).unwrap()
    }
}

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
