//! A local Apache Kafka (KRaft mode, no ZooKeeper) for tests: the broker's jars fetched from Maven Central with
//! `mvn dependency:copy-dependencies` into a cache folder on first use, storage formatted with Kafka's own storage
//! tool, one JVM per node on free loopback ports with a capped heap. Every JVM is killed when the cluster is
//! dropped, and also when the process that started it dies (the kernel's parent-death signal).

use super::{cache_dir, die_with_parent, spawn_tied, BrokerError};
use crate::kafka::conn::Timeouts;
use crate::kafka::{Client, ClientConfig};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The Apache Kafka version provisioned unless `DSTREAM_KAFKA_VERSION` says otherwise.
pub const DEFAULT_KAFKA_VERSION: &str = "4.4.0";

/// The topic created to tell that a cluster serves requests (its replication factor is the cluster's size).
pub const READY_TOPIC: &str = "__dstream_ready";

/// Each JVM's largest heap, in MiB.
pub const HEAP_MB: u32 = 512;

/// The Kafka version to provision: `$DSTREAM_KAFKA_VERSION` or [`DEFAULT_KAFKA_VERSION`].
pub fn kafka_version() -> String {
    std::env::var("DSTREAM_KAFKA_VERSION").ok().filter(|v| !v.is_empty()).unwrap_or(DEFAULT_KAFKA_VERSION.into())
}

/// The folder holding a Kafka version's jars: `~/.cache/dstream/kafka-VERSION/lib` (under `$XDG_CACHE_HOME` if set).
pub fn kafka_lib_dir(version: &str) -> Result<PathBuf, BrokerError> {
    Ok(install_dir(version)?.join("lib"))
}

fn install_dir(version: &str) -> Result<PathBuf, BrokerError> {
    Ok(cache_dir()?.parent().expect("cache dir has a parent").join(format!("kafka-{version}")))
}

fn broker_jar(dir: &Path, version: &str) -> PathBuf {
    dir.join("lib").join(format!("kafka_2.13-{version}.jar"))
}

/// The folder with the jars of `version`, fetching them with Maven first if they are not cached.
pub fn provision(version: &str) -> Result<PathBuf, BrokerError> {
    let dir = install_dir(version)?;
    if !broker_jar(&dir, version).is_file() {
        // One install at a time in this process; other processes are handled by the rename below.
        static INSTALLING: Mutex<()> = Mutex::new(());
        let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        if !broker_jar(&dir, version).is_file() {
            install(&dir, version)?;
        }
    }
    Ok(dir.join("lib"))
}

/// The pom whose runtime dependencies are the broker and a logger that writes to stderr.
fn pom(version: &str) -> String {
    format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dstream.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
"#
    )
}

fn install(dir: &Path, version: &str) -> Result<(), BrokerError> {
    let err = |reason: String| BrokerError::Maven { dir: dir.to_path_buf(), reason };
    let parent = dir.parent().expect("install dir has a parent");
    std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    let tmp = parent.join(format!("kafka-{version}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| err(e.to_string()))?;
    std::fs::write(tmp.join("pom.xml"), pom(version)).map_err(|e| err(e.to_string()))?;
    let out = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(tmp.join("pom.xml"))
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", tmp.join("lib").display()))
        .arg("-DincludeScope=runtime")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("cannot run mvn (Maven 3 must be installed): {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let line = text.lines().find(|l| l.contains("ERROR")).unwrap_or("mvn failed").trim().to_string();
        return Err(err(format!("mvn dependency:copy-dependencies of kafka_2.13 {version}: {line}")));
    }
    if !broker_jar(&tmp, version).is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err(format!("Maven brought no kafka_2.13-{version}.jar")));
    }
    if std::fs::rename(&tmp, dir).is_err() {
        // Another process installed it first.
        let _ = std::fs::remove_dir_all(&tmp);
        if !broker_jar(dir, version).is_file() {
            return Err(err("cannot move the install into place".into()));
        }
    }
    Ok(())
}

/// The folder that holds the data folders of running clusters, one per cluster, named PID-N.
fn runs_dir() -> PathBuf {
    std::env::temp_dir().join("dstream-kafka")
}

/// Removes data folders left by processes that are gone (a shared cluster is never dropped, only killed).
fn sweep_stale_runs() {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A fresh, empty data folder for one cluster.
fn new_run_dir() -> Result<PathBuf, BrokerError> {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    sweep_stale_runs();
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = runs_dir().join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| BrokerError::NotReady {
        addr: dir.display().to_string(),
        reason: format!("cannot create the data folder: {e}"),
    })?;
    Ok(dir)
}

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once while chosen, since a port just released may be
/// handed out again at once).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// One KRaft node (broker and controller in one JVM).
struct Node {
    id: i32,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Client listeners besides PLAINTEXT: (name, port, security protocol).
    extra: Vec<(String, u16, &'static str)>,
    /// Configuration lines of those listeners.
    extra_config: String,
}

/// A client listener with TLS or SASL of a [`KafkaCluster::start_secure`] node (inter-broker and controller
/// traffic stays on PLAINTEXT).
#[derive(Debug, Clone)]
pub struct SecureListener {
    /// The listener's name (upper case letters and `_`), e.g. `SASL_SSL` or `EXPIRED`.
    pub name: String,
    /// `SSL`, `SASL_SSL` or `SASL_PLAINTEXT`.
    pub protocol: &'static str,
    /// TLS: a PEM file holding the broker's unencrypted PKCS#8 private key and its certificate chain.
    pub keystore: Option<PathBuf>,
    /// TLS: require a client certificate signed by a CA of [`SecureConfig::truststore`].
    pub client_auth: bool,
    /// SASL: `connections.max.reauth.ms` of this listener (KIP-368), if any.
    pub reauth_ms: Option<u64>,
    /// TLS: the listener's `ssl.cipher.suites` (Java's names, comma-separated), if not the JVM's defaults.
    pub cipher_suites: Option<String>,
}

/// What [`KafkaCluster::start_secure`] sets up: listeners, the CA trusted for client certificates, users.
#[derive(Debug, Clone, Default)]
pub struct SecureConfig {
    /// The listeners.
    pub listeners: Vec<SecureListener>,
    /// PEM file of the CAs whose client certificates are trusted.
    pub truststore: Option<PathBuf>,
    /// SCRAM users created with Kafka's storage tool when formatting: (SCRAM-SHA-256 or SCRAM-SHA-512, user,
    /// password).
    pub scram_users: Vec<(&'static str, String, String)>,
    /// PLAIN users: (user, password).
    pub plain_users: Vec<(String, String)>,
    /// The JVM's optimizing compiler on (a slower start): Java's TLS is slow without it, which matters to
    /// benchmarks, not to tests.
    pub full_jit: bool,
}

impl SecureConfig {
    /// The configuration lines of the listeners.
    fn lines(&self) -> String {
        let mut out = String::new();
        let mechanisms = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER";
        for l in &self.listeners {
            let p = format!("listener.name.{}.", l.name.to_ascii_lowercase());
            if let Some(ks) = &l.keystore {
                out += &format!("{p}ssl.keystore.type=PEM\n{p}ssl.keystore.location={}\n", ks.display());
                if let Some(ts) = &self.truststore {
                    out += &format!("{p}ssl.truststore.type=PEM\n{p}ssl.truststore.location={}\n", ts.display());
                }
                out += &format!("{p}ssl.client.auth={}\n", if l.client_auth { "required" } else { "none" });
                if let Some(suites) = &l.cipher_suites {
                    out += &format!("{p}ssl.cipher.suites={suites}\n");
                }
            }
            if l.protocol.starts_with("SASL") {
                out += &format!("{p}sasl.enabled.mechanisms={mechanisms}\n");
                let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
                out +=
                    &format!("{p}scram-sha-256.sasl.jaas.config={scram}\n{p}scram-sha-512.sasl.jaas.config={scram}\n");
                // OAUTHBEARER with Kafka's default validator: unsecured JWTs (`alg` none) are accepted.
                out += &format!(
                    "{p}oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\n"
                );
                let users: String = self.plain_users.iter().map(|(u, pw)| format!(" user_{u}=\"{pw}\"")).collect();
                out += &format!(
                    "{p}plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{users};\n"
                );
                if let Some(ms) = l.reauth_ms {
                    for m in ["plain", "scram-sha-256", "scram-sha-512", "oauthbearer"] {
                        out += &format!("{p}{m}.connections.max.reauth.ms={ms}\n");
                    }
                }
            }
        }
        out
    }
}

impl Node {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    /// The node's configuration; `voters` is the whole quorum, `size` the number of nodes. A killed node is
    /// fenced within 4 s (its partitions get new leaders, it leaves their ISRs, and a restarted node may register
    /// again), and leadership returns to the preferred replicas within a second or two of any change.
    fn config(&self, voters: &str, size: usize) -> String {
        let (port, cport) = (self.port, self.controller_port);
        let extra: String = self.extra.iter().map(|(name, p, _)| format!(",{name}://127.0.0.1:{p}")).collect();
        let protocols: String = self.extra.iter().map(|(name, _, protocol)| format!(",{name}:{protocol}")).collect();
        let replication = size.min(3);
        let min_isr = if size >= 3 { 2 } else { 1 };
        format!(
            "process.roles=broker,controller\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}{extra}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}{extra}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}\n\
             log.dirs={logs}\n\
             auto.create.topics.enable=false\n\
             min.insync.replicas={min_isr}\n\
             offsets.topic.replication.factor={replication}\n\
             offsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor={replication}\n\
             transaction.state.log.min.isr={min_isr}\n\
             transaction.state.log.num.partitions=3\n\
             share.coordinator.state.topic.replication.factor={replication}\n\
             share.coordinator.state.topic.min.isr={min_isr}\n\
             group.initial.rebalance.delay.ms=0\n\
             num.network.threads=2\n\
             num.io.threads=2\n\
             num.recovery.threads.per.data.dir=1\n\
             log.cleaner.threads=1\n\
             log.cleaner.backoff.ms=1000\n\
             broker.heartbeat.interval.ms=500\n\
             broker.session.timeout.ms=4000\n\
             leader.imbalance.check.interval.seconds=1\n\
             leader.imbalance.per.broker.percentage=0\n{secure}",
            id = self.id,
            logs = self.dir.join("data").display(),
            secure = self.extra_config,
        )
    }
}

/// The `java` command with the capped heap and `lib/*` on the classpath.
fn java(lib: &Path, full_jit: bool) -> Command {
    let mut cmd = Command::new("java");
    cmd.arg(format!("-Xmx{HEAP_MB}m")).args(["-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]);
    if !full_jit {
        // A quicker start: the first tier of the JIT only.
        cmd.arg("-XX:TieredStopAtLevel=1");
    }
    cmd.args(["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.showDateTime=true"])
        .arg("-cp")
        .arg(lib.join("*"));
    cmd
}

/// A running Apache Kafka cluster of one or more KRaft nodes on loopback, every JVM killed on drop.
pub struct KafkaCluster {
    lib: PathBuf,
    version: String,
    dir: PathBuf,
    nodes: Vec<Node>,
    /// Arguments of the storage tool's format that add SCRAM users.
    scram_args: Vec<String>,
    /// The brokers' JVMs run the optimizing compiler too.
    full_jit: bool,
}

/// How long a cluster may take to answer after its JVMs start.
const READY_WITHIN: Duration = Duration::from_secs(90);

impl KafkaCluster {
    /// Provisions (on first use) and starts a cluster of `size` nodes of [`kafka_version`], each broker and
    /// controller, and waits until it serves requests. A cluster of 3 or more replicates internal topics 3 times
    /// with `min.insync.replicas=2`.
    pub fn start(size: usize) -> Result<KafkaCluster, BrokerError> {
        assert!(size >= 1, "a cluster has at least one node");
        let version = kafka_version();
        let lib = provision(&version)?;
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&lib, &version, size) {
                Ok(c) => return Ok(c),
                // Most likely a port taken between choosing it and binding it: new ports, new cluster.
                Err(e @ BrokerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    /// Provisions (on first use) and starts one node with the listeners of `secure` besides PLAINTEXT (which
    /// tells when it serves), and its SCRAM users created by Kafka's storage tool.
    pub fn start_secure(secure: &SecureConfig) -> Result<KafkaCluster, BrokerError> {
        Self::start_secure_cluster(1, secure)
    }

    /// As [`KafkaCluster::start_secure`], a cluster of `size` nodes, each with the listeners of `secure` (its
    /// metadata names every node's listener of the name a client connected to); replicated as
    /// [`KafkaCluster::start`]'s.
    pub fn start_secure_cluster(size: usize, secure: &SecureConfig) -> Result<KafkaCluster, BrokerError> {
        assert!(size >= 1, "a cluster has at least one node");
        let version = kafka_version();
        let lib = provision(&version)?;
        let mut last = None;
        for _ in 0..3 {
            match Self::start_with(&lib, &version, size, Some(secure)) {
                Ok(c) => return Ok(c),
                Err(e @ BrokerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    /// The address, HOST:PORT, of node `i`'s listener `name` (of [`SecureConfig::listeners`]).
    pub fn listener_addr(&self, i: usize, name: &str) -> Option<String> {
        self.nodes[i].extra.iter().find(|(n, _, _)| n == name).map(|(_, p, _)| format!("127.0.0.1:{p}"))
    }

    fn start_once(lib: &Path, version: &str, size: usize) -> Result<KafkaCluster, BrokerError> {
        Self::start_with(lib, version, size, None)
    }

    fn start_with(
        lib: &Path,
        version: &str,
        size: usize,
        secure: Option<&SecureConfig>,
    ) -> Result<KafkaCluster, BrokerError> {
        let dir = new_run_dir()?;
        let extra = secure.map_or(0, |s| s.listeners.len());
        let ports = free_ports((2 + extra) * size)
            .map_err(|e| BrokerError::NotReady { addr: "127.0.0.1".into(), reason: e.to_string() })?;
        let mut nodes = Vec::with_capacity(size);
        for (i, ports) in ports.chunks(2 + extra).enumerate() {
            let node_dir = dir.join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&node_dir)
                .map_err(|e| BrokerError::NotReady { addr: node_dir.display().to_string(), reason: e.to_string() })?;
            let listeners = secure.map_or(&[][..], |s| &s.listeners[..]);
            let extra = listeners.iter().zip(&ports[2..]).map(|(l, &p)| (l.name.clone(), p, l.protocol)).collect();
            let extra_config = secure.map_or(String::new(), SecureConfig::lines);
            nodes.push(Node {
                id: i as i32 + 1,
                port: ports[0],
                controller_port: ports[1],
                dir: node_dir,
                child: None,
                extra,
                extra_config,
            });
        }
        let voters: Vec<String> = nodes.iter().map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port)).collect();
        let voters = voters.join(",");
        let scram_args = secure
            .map(|s| {
                s.scram_users
                    .iter()
                    .flat_map(|(m, u, pw)| ["--add-scram".to_string(), format!("{m}=[name={u},password={pw}]")])
                    .collect()
            })
            .unwrap_or_default();
        let full_jit = secure.is_some_and(|s| s.full_jit);
        let mut cluster =
            KafkaCluster { lib: lib.to_path_buf(), version: version.to_string(), dir, nodes, scram_args, full_jit };
        for n in &cluster.nodes {
            std::fs::write(n.config_path(), n.config(&voters, size))
                .map_err(|e| BrokerError::NotReady { addr: n.addr(), reason: format!("cannot write config: {e}") })?;
        }
        cluster.format()?;
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(None, READY_WITHIN)?;
        Ok(cluster)
    }

    /// Formats every node's storage with Kafka's storage tool, under one cluster id.
    fn format(&self) -> Result<(), BrokerError> {
        // Any valid cluster id: 16 bytes in URL-safe base64 without padding.
        const CLUSTER_ID: &str = "ZHN0cmVhbS10ZXN0LWthZg";
        // All nodes at once: each is a JVM start.
        let mut running = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let mut cmd = java(&self.lib, false);
            cmd.args(["kafka.tools.StorageTool", "format", "--cluster-id", CLUSTER_ID, "--config"])
                .arg(n.config_path())
                .args(&self.scram_args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            die_with_parent(&mut cmd);
            running.push((n, spawn_tied(cmd).map_err(|source| BrokerError::Spawn { binary: "java".into(), source })?));
        }
        let mut first_err = None;
        for (n, child) in running {
            let out =
                child.wait_with_output().map_err(|source| BrokerError::Spawn { binary: "java".into(), source })?;
            if !out.status.success() && first_err.is_none() {
                let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
                let line = text.lines().find(|l| l.contains("Exception")).unwrap_or(text.trim()).to_string();
                first_err = Some(BrokerError::Format { dir: n.dir.clone(), reason: line });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Starts node `i`'s JVM (its storage already formatted).
    fn spawn(&mut self, i: usize) -> Result<(), BrokerError> {
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.log_path())
            .map_err(|e| BrokerError::NotReady { addr: n.addr(), reason: format!("cannot open the log: {e}") })?;
        let log2 = log.try_clone().map_err(|e| BrokerError::NotReady { addr: n.addr(), reason: e.to_string() })?;
        let mut cmd = java(&self.lib, self.full_jit);
        cmd.arg("kafka.Kafka").arg(n.config_path()).stdin(Stdio::null()).stdout(log).stderr(log2);
        die_with_parent(&mut cmd);
        let child = spawn_tied(cmd).map_err(|source| BrokerError::Spawn { binary: "java".into(), source })?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// The last lines of node `i`'s log, for error messages.
    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i].log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Waits until every node runs and the cluster creates (or already has) [`READY_TOPIC`] replicated on every
    /// node with a leader, asked through node `through` (else any); fails early if a JVM exits.
    fn wait_ready(&mut self, through: Option<usize>, within: Duration) -> Result<(), BrokerError> {
        let deadline = Instant::now() + within;
        let cfg = ClientConfig {
            timeouts: Timeouts { connect: Duration::from_secs(1), request: Duration::from_secs(10) },
            retry_for: Duration::from_secs(2),
            ..ClientConfig::default()
        };
        let replication = self.nodes.len() as i16;
        let mut last;
        loop {
            for i in 0..self.nodes.len() {
                let addr = self.nodes[i].addr();
                if let Some(child) = self.nodes[i].child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        let reason = format!("its JVM exited ({status}): {}", self.log_tail(i));
                        return Err(BrokerError::NotReady { addr, reason });
                    }
                }
            }
            let bootstrap = match through {
                Some(i) => vec![self.nodes[i].addr()],
                None => self.addrs(),
            };
            let attempt = Client::connect(&bootstrap, cfg.clone())
                .and_then(|mut c| c.create_topic(READY_TOPIC, 1, replication).map(|_| c));
            match attempt {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                let reason = format!("not serving within {} s: {last}", within.as_secs());
                return Err(BrokerError::NotReady { addr: self.bootstrap(), reason });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The Kafka version running.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The first node's address, HOST:PORT.
    pub fn addr(&self) -> String {
        self.nodes[0].addr()
    }

    /// Every node's address, HOST:PORT, by node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// Every node's address, comma-separated (what `--brokers` takes).
    pub fn bootstrap(&self) -> String {
        self.addrs().join(",")
    }

    /// Node `i`'s controller listener, HOST:PORT (KRaft's own protocol, not for clients).
    pub fn controller_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].controller_port)
    }

    /// The number of nodes.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// The Kafka node id of node `i` (0-based index): `i + 1`.
    pub fn node_id(&self, i: usize) -> i32 {
        self.nodes[i].id
    }

    /// The process id of node `i`'s JVM, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// The folder holding every node's configuration, data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills node `i`'s JVM (SIGKILL) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `i` the way an operator does (SIGTERM: Kafka's controlled shutdown moves its leaderships away
    /// first), killing it if it has not exited within `within`; then reaps it.
    pub fn stop(&mut self, i: usize, within: Duration) {
        let Some(mut child) = self.nodes[i].child.take() else { return };
        // SAFETY: signals the child this cluster started and has not reaped yet, so the pid is still its.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Starts node `i` again (after [`KafkaCluster::kill`] or [`KafkaCluster::stop`]) on its ports with its data, and waits until the
    /// cluster serves requests again.
    pub fn restart(&mut self, i: usize) -> Result<(), BrokerError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(Some(i), READY_WITHIN)
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
