//! TLS and SASL against Apache Kafka: one broker of this test binary's own with SASL_SSL, SSL with client
//! certificates required, an SSL listener with an expired certificate, an SSL listener with AES-256-GCM only and
//! a SASL_SSL listener with a short session lifetime (KIP-368), certificates made here with rcgen, SCRAM users
//! made by Kafka's storage tool.
//! The lab job reads and checkpoints as over plaintext; each misconfiguration is one clear line and a non-zero
//! exit within the connect timeout; no password shows anywhere.

mod common;

use common::{broker_disabled, checkpoint_rows, dstream, lab_messages, model_of, ok_stdout};
use dstream_adapters::broker::kafka::{KafkaCluster, SecureConfig, SecureListener};
use dstream_adapters::kafka::conn::{Connection, Timeouts};
use dstream_adapters::kafka::{Client, ClientConfig, Security, SecuritySettings};
use kafka_protocol::messages::MetadataRequest;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The SCRAM users' password: the tests grep every output for it.
const PASSWORD: &str = "Scram-pa55word-that-must-not-leak";
/// The PLAIN user's password.
const PLAIN_PASSWORD: &str = "Plain-pa55word-that-must-not-leak";
/// The session lifetime of the REAUTH listener, ms.
const REAUTH_MS: u64 = 2000;

/// Certificates and keys, as PEM files in a folder of their own.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A CA, a broker certificate for 127.0.0.1 and an expired one, a client certificate; a second CA that
    /// signed nothing the broker has, and a client certificate of its own.
    fn make() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, key, p)
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>, cn: &str, sans: Vec<SanType>, expired: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.subject_alt_names = sans;
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, issuer).unwrap();
            (cert, key)
        };
        let ip = SanType::IpAddress("127.0.0.1".parse().unwrap());
        let (ca_cert, ca_key, ca_params) = ca("dstream test CA");
        write("ca.pem", ca_cert.pem());
        let issuer = Issuer::new(ca_params, ca_key);
        let (broker, broker_key) = leaf(&issuer, "broker", vec![ip.clone()], false);
        write("broker.pem", broker_key.serialize_pem() + &broker.pem() + &ca_cert.pem());
        let (old, old_key) = leaf(&issuer, "broker", vec![ip.clone()], true);
        write("expired.pem", old_key.serialize_pem() + &old.pem());
        let (client, client_key) = leaf(&issuer, "client", vec![], false);
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        let (other_cert, other_key, other_params) = ca("another CA");
        write("other-ca.pem", other_cert.pem());
        let other = Issuer::new(other_params, other_key);
        let (stranger, stranger_key) = leaf(&other, "stranger", vec![], false);
        write("stranger.pem", stranger.pem());
        write("stranger.key", stranger_key.serialize_pem());
        Pki { dir }
    }
}

/// The broker of this test binary with its certificates; `None` if DSTREAM_NO_BROKER=1 says so on purpose.
fn secure_kafka() -> Option<&'static (Pki, KafkaCluster)> {
    static SHARED: OnceLock<(Pki, KafkaCluster)> = OnceLock::new();
    if broker_disabled() {
        return None;
    }
    Some(SHARED.get_or_init(|| {
        let pki = Pki::make();
        let listener = |name: &str, protocol, keystore: &str, client_auth, reauth_ms| SecureListener {
            name: name.into(),
            protocol,
            keystore: Some(pki.path(keystore)),
            client_auth,
            reauth_ms,
            cipher_suites: None,
        };
        let config = SecureConfig {
            listeners: vec![
                listener("SASL_SSL", "SASL_SSL", "broker.pem", false, None),
                listener("SSL", "SSL", "broker.pem", true, None),
                listener("EXPIRED", "SSL", "expired.pem", false, None),
                listener("REAUTH", "SASL_SSL", "broker.pem", false, Some(REAUTH_MS)),
                SecureListener {
                    cipher_suites: Some("TLS_AES_256_GCM_SHA384".into()),
                    ..listener("AES256", "SSL", "broker.pem", false, None)
                },
                SecureListener {
                    name: "SASL_PLAINTEXT".into(),
                    protocol: "SASL_PLAINTEXT",
                    keystore: None,
                    client_auth: false,
                    reauth_ms: None,
                    cipher_suites: None,
                },
            ],
            truststore: Some(pki.path("ca.pem")),
            scram_users: vec![
                ("SCRAM-SHA-256", "alice".into(), PASSWORD.into()),
                ("SCRAM-SHA-512", "alice".into(), PASSWORD.into()),
            ],
            plain_users: vec![("pat".into(), PLAIN_PASSWORD.into())],
            full_jit: false,
        };
        let cluster = KafkaCluster::start_secure(&config).unwrap_or_else(|e| panic!("start a secure Kafka: {e}"));
        (pki, cluster)
    }))
}

fn listener(k: &KafkaCluster, name: &str) -> String {
    k.listener_addr(0, name).unwrap()
}

/// A Kafka client properties file in `dir`.
fn config_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// SASL_SSL with SCRAM as alice, the password from the environment variable DSTREAM_TEST_KAFKA_PASSWORD.
fn scram_config(pki: &Pki, dir: &Path, mechanism: &str, user: &str) -> PathBuf {
    config_file(
        dir,
        &format!("scram-{mechanism}-{user}.properties"),
        &[
            "security.protocol=SASL_SSL".into(),
            format!("sasl.mechanism={mechanism}"),
            format!("sasl.username={user}"),
            "sasl.password=${env:DSTREAM_TEST_KAFKA_PASSWORD}".into(),
            format!("ssl.ca.location={}", pki.path("ca.pem").display()),
        ],
    )
}

/// SSL with the client certificate.
fn mtls_config(pki: &Pki, dir: &Path) -> PathBuf {
    config_file(
        dir,
        "mtls.properties",
        &[
            "security.protocol=SSL".into(),
            format!("ssl.ca.location={}", pki.path("ca.pem").display()),
            format!("ssl.certificate.location={}", pki.path("client.pem").display()),
            format!("ssl.key.location={}", pki.path("client.key").display()),
        ],
    )
}

/// An unsecured JWT (`alg` none, as Kafka's default OAUTHBEARER validator accepts) for `sub`, expiring
/// `valid_for` seconds from now (a negative number: expired).
fn unsecured_jwt(sub: &str, valid_for: i64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = format!(r#"{{"sub":"{sub}","iat":{},"exp":{}}}"#, now - 60, now + valid_for);
    format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(claims))
}

/// SASL_SSL with OAUTHBEARER, the token from the file `name`.token.
fn oauth_config(pki: &Pki, dir: &Path, name: &str, token: &str) -> PathBuf {
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, token).unwrap();
    config_file(
        dir,
        &format!("{name}.properties"),
        &[
            "security.protocol=SASL_SSL".into(),
            "sasl.mechanism=OAUTHBEARER".into(),
            format!("sasl.oauthbearer.token=${{file:{}}}", token_file.display()),
            format!("ssl.ca.location={}", pki.path("ca.pem").display()),
        ],
    )
}

/// Fails if the claims of `token` (its secret part) show in `bytes`.
fn assert_no_token(what: &str, token: &str, bytes: &[u8]) {
    let claims = token.split('.').nth(1).unwrap();
    assert!(!String::from_utf8_lossy(bytes).contains(claims), "{what} holds the token");
}

/// Runs dstream with `args` and the password in its environment.
fn dstream_env(args: &[&str], password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dstream"))
        .args(args)
        .env("DSTREAM_TEST_KAFKA_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run dstream")
}

/// Fails if a password shows in an output or a file under `dir`.
fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [PASSWORD, PLAIN_PASSWORD] {
        assert!(!text.contains(secret), "{what} holds a password: {text}");
    }
}

fn assert_no_secret_in_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_no_secret_in_files(&path);
        } else {
            assert_no_secret(&path.display().to_string(), &std::fs::read(&path).unwrap());
        }
    }
}

fn run_checkpointed(brokers: &str, config: Option<&Path>, topic: &str, checkpoint: &Path, recording: &Path) -> Output {
    let mut args = vec!["run", "--brokers", brokers, "--topic", topic, "--starting-offsets", "earliest"];
    args.extend(["--batch-interval", "300ms", "--batches", "2", "--ui", "off"]);
    args.extend(["--checkpoint", checkpoint.to_str().unwrap(), "--record", recording.to_str().unwrap()]);
    if let Some(c) = config {
        args.extend(["--kafka-config", c.to_str().unwrap()]);
    }
    dstream_env(&args, PASSWORD)
}

#[test]
fn the_lab_job_reads_and_checkpoints_over_sasl_ssl_and_mutual_tls_as_over_plaintext() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = "avg-secure";
    // Produced over SASL_SSL with PLAIN, the password read from a file.
    let pw_file = dir.path().join("plain-password");
    std::fs::write(&pw_file, format!("{PLAIN_PASSWORD}\n")).unwrap();
    let plain = config_file(
        dir.path(),
        "plain.properties",
        &[
            "security.protocol=SASL_SSL".into(),
            "sasl.mechanism=PLAIN".into(),
            format!(
                "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"pat\" \
                 password=\"${{file:{}}}\";",
                pw_file.display()
            ),
            format!("ssl.ca.location={}", pki.path("ca.pem").display()),
        ],
    );
    let sasl_ssl = listener(kafka, "SASL_SSL");
    let generated = dstream_env(
        &[
            "generate",
            "--brokers",
            &sasl_ssl,
            "--topic",
            topic,
            "--rate",
            "0",
            "--count",
            "3000",
            "--seed",
            "7",
            "--partitions",
            "2",
            "--kafka-config",
            plain.to_str().unwrap(),
        ],
        PASSWORD,
    );
    let _ = ok_stdout(&generated);
    assert_no_secret("generate's stderr", &generated.stderr);

    let sasl_plaintext = config_file(
        dir.path(),
        "sasl-plaintext.properties",
        &[
            "security.protocol=SASL_PLAINTEXT".into(),
            "sasl.mechanism=SCRAM-SHA-256".into(),
            "sasl.username=alice".into(),
            "sasl.password=${env:DSTREAM_TEST_KAFKA_PASSWORD}".into(),
        ],
    );
    let no_host_check = dir.path().join("no-host-check.properties");
    let scram = scram_config(pki, dir.path(), "SCRAM-SHA-256", "alice");
    std::fs::write(
        &no_host_check,
        std::fs::read_to_string(&scram).unwrap() + "ssl.endpoint.identification.algorithm=\n",
    )
    .unwrap();
    let token = unsecured_jwt("alice", 3600);
    let oauth = oauth_config(pki, dir.path(), "oauth", &token);
    let expected = model_of(lab_messages(7, 3000, 2).iter().flatten()).sums();
    let runs = [
        ("plaintext", kafka.addr(), None),
        ("scram-sha-256", sasl_ssl.clone(), Some(scram_config(pki, dir.path(), "SCRAM-SHA-256", "alice"))),
        ("scram-sha-512", sasl_ssl.clone(), Some(scram_config(pki, dir.path(), "SCRAM-SHA-512", "alice"))),
        ("mtls", listener(kafka, "SSL"), Some(mtls_config(pki, dir.path()))),
        ("sasl-plaintext", listener(kafka, "SASL_PLAINTEXT"), Some(sasl_plaintext)),
        ("oauthbearer", sasl_ssl.clone(), Some(oauth)),
        // Bootstrapped by a name the certificate does not hold (the brokers it names are 127.0.0.1, which it does).
        ("no-host-check", format!("localhost:{}", sasl_ssl.rsplit_once(':').unwrap().1), Some(no_host_check)),
    ];
    let mut recordings = Vec::new();
    for (name, brokers, config) in &runs {
        let cp = dir.path().join(format!("cp-{name}"));
        let rec = dir.path().join(format!("{name}.rec"));
        let out = run_checkpointed(brokers, config.as_deref(), topic, &cp, &rec);
        let stdout = ok_stdout(&out);
        assert!(stdout.contains("Time: "), "{name}: {stdout}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warned =
            stderr.lines().any(|l| l.starts_with("dstream: warning: ssl.endpoint.identification.algorithm is empty"));
        assert_eq!(warned, *name == "no-host-check", "{name}: {stderr}");
        assert_no_secret(&format!("{name}: stdout"), &out.stdout);
        assert_no_secret(&format!("{name}: stderr"), &out.stderr);
        assert_no_token(name, &token, &out.stderr);
        let shown = dstream(&["checkpoint", "show", cp.to_str().unwrap()]);
        assert_eq!(checkpoint_rows(&ok_stdout(&shown)), expected, "{name}");
        let dump = dstream(&["recording", "dump", rec.to_str().unwrap()]);
        recordings.push((name, ok_stdout(&dump)));
    }
    // The same records (with their timestamps) whichever way they came (batch times differ run to run).
    let records = |dump: &str| -> Vec<String> {
        let mut r: Vec<String> = dump.lines().filter(|l| l.starts_with("[ts=")).map(String::from).collect();
        r.sort();
        r
    };
    let plain_records = records(&recordings[0].1);
    assert!(!plain_records.is_empty(), "{}", recordings[0].1);
    for (name, dump) in &recordings[1..] {
        assert_eq!(records(dump), plain_records, "{name}");
    }
    assert_no_secret_in_files(dir.path().join("cp-scram-sha-512").as_path());
    for (name, _) in &recordings {
        assert_no_secret("recording", &std::fs::read(dir.path().join(format!("{name}.rec"))).unwrap());
    }
}

/// One failing run: its exit status, its stderr, how long it took.
fn failing_run(brokers: &str, config: Option<&Path>, password: &str) -> (Output, Duration) {
    let mut args = vec!["run", "--brokers", brokers, "--topic", "avg-secure-none", "--ui", "off", "--batches", "1"];
    if let Some(c) = config {
        args.extend(["--kafka-config", c.to_str().unwrap()]);
    }
    let start = Instant::now();
    let out = dstream_env(&args, password);
    (out, start.elapsed())
}

#[test]
fn the_tls_versions_and_cipher_suites_of_the_properties_file_are_the_ones_used() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scram = std::fs::read_to_string(scram_config(pki, dir.path(), "SCRAM-SHA-512", "alice")).unwrap();
    let sasl_ssl = listener(kafka, "SASL_SSL");
    // (extra lines, the session every connection must have): the broker (Java) picks among what is offered,
    // its own preference first, so AES-256 unless the client offers only others.
    let cases = [
        ("", "TLSv1_3 TLS13_AES_256_GCM_SHA384"),
        ("ssl.cipher.suites=TLS_AES_128_GCM_SHA256,TLS_CHACHA20_POLY1305_SHA256\n", "TLSv1_3 TLS13_AES_128_GCM_SHA256"),
        ("ssl.enabled.protocols=TLSv1.2\n", "TLSv1_2 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        (
            "ssl.protocol=TLSv1.2\nssl.cipher.suites=TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n",
            "TLSv1_2 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ];
    for (i, (extra, session)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("suites-{i}.properties"));
        std::fs::write(&config, format!("{scram}{extra}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
            .args(["generate", "--brokers", &sasl_ssl, "--topic", "avg-suites", "--rate", "0", "--count", "50"])
            .arg("--kafka-config")
            .arg(&config)
            .env("DSTREAM_TEST_KAFKA_PASSWORD", PASSWORD)
            .env("DSTREAM_TRACE_KAFKA", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra}: {stderr}");
        let sessions: Vec<&str> = stderr.lines().filter(|l| l.contains(" TLS with ")).collect();
        assert!(!sessions.is_empty(), "{extra}: no TLS session traced: {stderr}");
        for line in &sessions {
            assert!(line.ends_with(&format!(": {session}")), "{extra}: {line}");
        }
        assert_no_secret(extra, &out.stderr);
    }
}

#[test]
fn each_misconfiguration_is_one_clear_line_and_a_non_zero_exit_within_the_connect_timeout() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sasl_ssl = listener(kafka, "SASL_SSL");
    let port = sasl_ssl.rsplit_once(':').unwrap().1;
    let by_name = format!("localhost:{port}");
    let with_ca = |name: &str, protocol: &str, ca: &str| {
        config_file(
            d,
            name,
            &[format!("security.protocol={protocol}"), format!("ssl.ca.location={}", pki.path(ca).display())],
        )
    };
    let stranger = config_file(
        d,
        "stranger.properties",
        &[
            "security.protocol=SSL".into(),
            format!("ssl.ca.location={}", pki.path("ca.pem").display()),
            format!("ssl.certificate.location={}", pki.path("stranger.pem").display()),
            format!("ssl.key.location={}", pki.path("stranger.key").display()),
        ],
    );
    let scram = scram_config(pki, d, "SCRAM-SHA-256", "alice");
    let mallory = scram_config(pki, d, "SCRAM-SHA-512", "mallory");
    let untrusted = d.join("untrusted.properties");
    std::fs::write(&untrusted, std::fs::read_to_string(&scram).unwrap().replace("/ca.pem", "/other-ca.pem")).unwrap();
    let expired_token = unsecured_jwt("alice", -600);
    let expired_oauth = oauth_config(pki, d, "expired-token", &expired_token);
    let cases: Vec<(&str, String, Option<PathBuf>, &str, &str)> = vec![
        ("expired token", sasl_ssl.clone(), Some(expired_oauth), PASSWORD, "SASL OAUTHBEARER authentication"),
        (
            "wrong password",
            sasl_ssl.clone(),
            Some(scram.clone()),
            "not-the-password",
            "SASL SCRAM-SHA-256 authentication",
        ),
        ("unknown user", sasl_ssl.clone(), Some(mallory), PASSWORD, "SASL SCRAM-SHA-512 authentication"),
        ("untrusted CA", sasl_ssl.clone(), Some(untrusted), PASSWORD, "not signed by a trusted CA"),
        ("wrong host name", by_name, Some(scram.clone()), PASSWORD, "does not name the host"),
        (
            "expired certificate",
            listener(kafka, "EXPIRED"),
            Some(with_ca("ssl.properties", "SSL", "ca.pem")),
            PASSWORD,
            "has expired",
        ),
        (
            "no client certificate",
            listener(kafka, "SSL"),
            Some(with_ca("ssl2.properties", "SSL", "ca.pem")),
            PASSWORD,
            "client certificate",
        ),
        ("untrusted client certificate", listener(kafka, "SSL"), Some(stranger), PASSWORD, "client certificate"),
        ("plaintext client on the TLS port", listener(kafka, "SSL"), None, PASSWORD, "requires TLS or SASL"),
        ("plaintext client on the SASL port", sasl_ssl.clone(), None, PASSWORD, "requires TLS or SASL"),
        (
            "no cipher suite in common",
            listener(kafka, "AES256"),
            Some(config_file(
                d,
                "aes128.properties",
                &[
                    "security.protocol=SSL".into(),
                    format!("ssl.ca.location={}", pki.path("ca.pem").display()),
                    "ssl.cipher.suites=TLS_AES_128_GCM_SHA256".into(),
                ],
            )),
            PASSWORD,
            "no TLS version or cipher suite is acceptable to both",
        ),
        (
            "TLS client on the plaintext port",
            kafka.addr(),
            Some(with_ca("ssl3.properties", "SSL", "ca.pem")),
            PASSWORD,
            "plaintext listener",
        ),
    ];
    // The connect timeout (3 s) and a second for the process.
    let within = Duration::from_secs(4);
    let mut failures = Vec::new();
    for (what, brokers, config, password, expected) in &cases {
        let (out, took) = failing_run(brokers, config.as_deref(), password);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<&str> = stderr.lines().collect();
        let ok = !out.status.success()
            && lines.len() == 1
            && lines[0].starts_with("dstream: ")
            && lines[0].contains(expected)
            && took < within;
        if !ok {
            failures.push(format!("{what}: {} in {took:?}: {stderr}", out.status));
        }
        assert_no_secret(what, &out.stderr);
        assert_no_secret(what, &out.stdout);
        assert_no_token(what, &expired_token, &out.stderr);
        if *password != PASSWORD {
            assert!(!stderr.contains(password), "{what}: {stderr}");
        }
        eprintln!("{what}: {}", stderr.trim());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_connection_authenticates_again_before_its_session_lifetime_ends_and_keeps_serving() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let pairs = [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-256".into()),
        ("sasl.username", "alice".into()),
        ("sasl.password", PASSWORD.into()),
        ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
    ];
    let settings = SecuritySettings::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())), "test").unwrap();
    let security = Security::new(&settings).unwrap();
    let timeouts = Timeouts { connect: Duration::from_secs(3), request: Duration::from_secs(10) };
    let addr = listener(kafka, "REAUTH");
    let mut conn = Connection::connect_secure(&addr, "reauth-test", timeouts, Default::default(), &security).unwrap();
    let version = conn.version(kafka_protocol::messages::ApiKey::Metadata).unwrap();
    // Requests on the one connection for three and a half session lifetimes: without re-authentication the
    // broker closes it at the first request after the session ends.
    let end = Instant::now() + Duration::from_millis(REAUTH_MS * 7 / 2);
    let mut requests = 0;
    while Instant::now() < end {
        conn.request(&MetadataRequest::default(), version, Duration::ZERO)
            .unwrap_or_else(|e| panic!("request {requests} on one connection: {e}"));
        requests += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(conn.reauthentications() >= 3, "{} re-authentications in {requests} requests", conn.reauthentications());
    // The password went through PBKDF2 once: every re-authentication, and a second connection, used the keys
    // kept for the broker's salt and iteration count.
    let second = Connection::connect_secure(&addr, "reauth-test", timeouts, Default::default(), &security).unwrap();
    drop(second);
    assert_eq!(security.scram_keys().derivations(), 1);

    // The whole client, too: a run over several lifetimes keeps going.
    let cfg = ClientConfig { security, ..ClientConfig::default() };
    let mut client = Client::connect(std::slice::from_ref(&addr), cfg).unwrap();
    client.create_topic("avg-reauth", 1, 1).unwrap();
    drop(client);
    common::generate(&kafka.addr(), "avg-reauth", 2000, 3, &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = scram_config(pki, dir.path(), "SCRAM-SHA-256", "alice");
    let args = [
        "run",
        "--brokers",
        &addr,
        "--topic",
        "avg-reauth",
        "--starting-offsets",
        "earliest",
        "--batch-interval",
        "500ms",
        "--batches",
        "14",
        "--max-rate-per-partition",
        "300",
        "--ui",
        "off",
        "--kafka-config",
        config.to_str().unwrap(),
    ];
    let out = dstream_env(&args, PASSWORD);
    ok_stdout(&out);
    let counts = common::batch_record_counts(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(counts.len(), 14, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(counts.iter().sum::<u64>(), 2000, "{counts:?}");
    assert_no_secret("stderr", &out.stderr);
}

/// A TLS client's connection to a peer that accepts and then does `peer` with the socket.
fn tls_connect_to(peer: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
    let pki = Pki::make();
    let pairs =
        [("security.protocol", "SSL".to_string()), ("ssl.ca.location", pki.path("ca.pem").display().to_string())];
    let settings = SecuritySettings::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())), "test").unwrap();
    let security = Security::new(&settings).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || peer(listener.accept().unwrap().0));
    let timeouts = Timeouts { connect: Duration::from_millis(500), request: Duration::from_secs(10) };
    let start = Instant::now();
    let err = Connection::connect_secure(&addr, "t", timeouts, Default::default(), &security).err().expect("fails");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}: {err}", start.elapsed());
    server.join().unwrap();
    err.to_string()
}

#[test]
fn a_peer_that_answers_the_tls_handshake_with_garbage_or_silence_is_named_as_not_tls() {
    // An HTTP server, say: its answer is no TLS record.
    let garbage = tls_connect_to(|mut s| {
        use std::io::{Read, Write};
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).unwrap();
        s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        let _ = s.read(&mut hello);
    });
    assert!(garbage.contains("does not answer in TLS") && garbage.contains("plaintext listener"), "{garbage}");
    // A Kafka plaintext listener reads the ClientHello as the start of a request and waits for the rest.
    let silent = tls_connect_to(|mut s| {
        use std::io::Read;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    assert!(silent.contains("no TLS handshake answer in 0.5 s") && silent.contains("plaintext listener"), "{silent}");
}

#[test]
fn a_bad_kafka_config_file_is_one_line_naming_the_file_and_key_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let bad = config_file(dir.path(), "bad.properties", &["security.protocol=SSL".into(), "sasl.pasword=x".into()]);
    let missing = dir.path().join("missing.properties");
    let cases = [
        (bad.clone(), format!("dstream: {}:2: unknown Kafka client setting \"sasl.pasword\"", bad.display())),
        (missing.clone(), format!("dstream: cannot read the Kafka client configuration {}", missing.display())),
    ];
    for (file, expected) in &cases {
        let f = file.to_str().unwrap();
        // Port 1 on loopback: nothing listens there, so reaching for a broker would be a different error.
        for args in [
            vec!["run", "--brokers", "127.0.0.1:1", "--ui", "off", "--kafka-config", f],
            vec!["generate", "--brokers", "127.0.0.1:1", "--count", "1", "--kafka-config", f],
        ] {
            let out = dstream(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(stderr.starts_with(expected.as_str()), "{args:?}: {stderr}");
        }
    }
    // --kafka-config needs --brokers (without it, run would start a plaintext local broker).
    let out = dstream(&["run", "--kafka-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Without `ssl.ca.location` the system's CA certificates are trusted: the store rustls-native-certs reads,
/// which `SSL_CERT_FILE` replaces (as for OpenSSL). With the test's CA there, `generate` and `run` work over
/// SASL_SSL with the host checked; with another CA there, the broker's certificate is refused in one line.
#[test]
fn without_a_ca_file_the_system_roots_are_trusted() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        "security.protocol=SASL_SSL".to_string(),
        "sasl.mechanism=SCRAM-SHA-512".into(),
        "sasl.username=alice".into(),
        "sasl.password=${env:DSTREAM_TEST_KAFKA_PASSWORD}".into(),
    ];
    let config = config_file(dir.path(), "system-roots.properties", &lines);
    let addr = listener(kafka, "SASL_SSL");
    let with_roots = |roots: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dstream"))
            .args(args)
            .args(["--brokers", &addr, "--topic", "avg-system-roots", "--kafka-config"])
            .arg(&config)
            .env("SSL_CERT_FILE", pki.path(roots))
            .env_remove("SSL_CERT_DIR")
            .env("DSTREAM_TEST_KAFKA_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("run dstream")
    };
    ok_stdout(&with_roots("ca.pem", &["generate", "--count", "100", "--rate", "0", "--seed", "5"]));
    let out = with_roots("ca.pem", &["run", "--starting-offsets", "earliest", "--batches", "1", "--ui", "off"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(": 100 records, 0 malformed"), "{stderr}");
    assert_no_secret("run with the system roots", &out.stderr);

    let start = Instant::now();
    let out = with_roots("other-ca.pem", &["run", "--starting-offsets", "earliest", "--batches", "1", "--ui", "off"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a broker certificate from a CA not in the system's store was taken: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() == 1 && lines[0].contains("not signed by a trusted CA"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    assert_no_secret("run with other system roots", &out.stderr);
}

/// The password of the encrypted client keys made by [`stores`].
const KEY_PASSWORD: &str = "Key-pa55word-that-must-not-leak";
/// The password of the PKCS12 stores made by [`stores`].
const STORE_PASSWORD: &str = "Store-pa55word-that-must-not-leak";

/// Runs a tool (openssl, keytool) and fails the test unless it succeeds.
fn tool(program: &str, args: &[&str]) {
    let out =
        Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The client's key and certificate, and the CA, as the tools Kafka users have write them: encrypted PKCS#8
/// keys (openssl pkcs8 -topk8, PBKDF2 and scrypt), a PKCS12 keystore by openssl and the same converted by
/// Java's keytool to PKCS12 and to JKS (the key with a password of its own), PKCS12, JKS and JCEKS truststores by
/// keytool, a PEM keystore (encrypted key and chain).
fn stores(pki: &Pki, dir: &Path) {
    let p = |name: &str| pki.path(name).display().to_string();
    let d = |name: &str| dir.join(name).display().to_string();
    let key_pass = format!("pass:{KEY_PASSWORD}");
    let store_pass = format!("pass:{STORE_PASSWORD}");
    tool(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-in",
            &p("client.key"),
            "-out",
            &d("pbkdf2.key"),
            "-v2",
            "aes-256-cbc",
            "-passout",
            &key_pass,
        ],
    );
    tool(
        "openssl",
        &["pkcs8", "-topk8", "-in", &p("client.key"), "-out", &d("scrypt.key"), "-scrypt", "-passout", &key_pass],
    );
    let pem_store =
        std::fs::read_to_string(d("pbkdf2.key")).unwrap() + &std::fs::read_to_string(p("client.pem")).unwrap();
    std::fs::write(d("keystore.pem"), pem_store).unwrap();
    tool(
        "openssl",
        &[
            "pkcs12",
            "-export",
            "-in",
            &p("client.pem"),
            "-inkey",
            &p("client.key"),
            "-certfile",
            &p("ca.pem"),
            "-name",
            "client",
            "-out",
            &d("openssl.p12"),
            "-passout",
            &store_pass,
        ],
    );
    let keytool = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-noprompt", "-storepass", STORE_PASSWORD]);
        tool("keytool", &all);
    };
    // openssl's PKCS12 keystore converted by keytool: to PKCS12, and to JKS with a key password of its own.
    let source = d("openssl.p12");
    let convert = |to: &str, kind: &str, extra: &[&str]| {
        let mut args = vec!["-importkeystore", "-srckeystore", &source, "-srcstoretype", "PKCS12"];
        args.extend(["-srcstorepass", STORE_PASSWORD, "-destkeystore", to, "-deststoretype", kind]);
        args.extend(extra);
        keytool(&args);
    };
    convert(&d("keytool.p12"), "PKCS12", &[]);
    convert(&d("client.jks"), "JKS", &["-destkeypass", KEY_PASSWORD]);
    // keytool's truststores of the CA: PKCS12, JKS, and JCEKS (not read).
    for (file, kind) in [("trust.p12", "PKCS12"), ("trust.jks", "JKS"), ("trust.jceks", "JCEKS")] {
        keytool(&["-importcert", "-alias", "ca", "-file", &p("ca.pem"), "-keystore", &d(file), "-storetype", kind]);
    }
}

#[test]
fn client_keys_and_cas_come_from_encrypted_pem_pkcs12_and_jks_stores_as_openssl_and_keytool_write_them() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    stores(pki, d);
    let f = |name: &str| d.join(name).display().to_string();
    let ca = format!("ssl.ca.location={}", pki.path("ca.pem").display());
    let trust_p12 = vec![
        format!("ssl.truststore.location={}", f("trust.p12")),
        "ssl.truststore.type=PKCS12".into(),
        "ssl.truststore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
    ];
    let key_password = "ssl.key.password=${env:DSTREAM_TEST_KEY_PASSWORD}".to_string();
    let cert = format!("ssl.certificate.location={}", pki.path("client.pem").display());
    let with = |lines: Vec<String>| {
        let mut all = vec!["security.protocol=SSL".to_string()];
        all.extend(lines);
        all
    };
    let ok: Vec<(&str, Vec<String>)> = vec![
        (
            "encrypted PKCS#8 key (PBKDF2)",
            with(vec![ca.clone(), cert.clone(), format!("ssl.key.location={}", f("pbkdf2.key")), key_password.clone()]),
        ),
        (
            "encrypted PKCS#8 key (scrypt)",
            with(vec![ca.clone(), cert.clone(), format!("ssl.key.location={}", f("scrypt.key")), key_password.clone()]),
        ),
        (
            "PEM keystore",
            with(vec![
                ca.clone(),
                format!("ssl.keystore.location={}", f("keystore.pem")),
                "ssl.keystore.type=PEM".into(),
                key_password.clone(),
            ]),
        ),
        (
            "openssl's PKCS12 keystore, keytool's PKCS12 truststore",
            with(
                [
                    vec![
                        format!("ssl.keystore.location={}", f("openssl.p12")),
                        "ssl.keystore.type=PKCS12".into(),
                        "ssl.keystore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
                    ],
                    trust_p12.clone(),
                ]
                .concat(),
            ),
        ),
        (
            "keytool's PKCS12 keystore, types told by content",
            with(vec![
                ca.clone(),
                format!("ssl.keystore.location={}", f("keytool.p12")),
                "ssl.keystore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
            ]),
        ),
        (
            "keytool's JKS keystore and truststore, as Kafka's documentation makes them",
            with(vec![
                format!("ssl.keystore.location={}", f("client.jks")),
                "ssl.keystore.type=JKS".into(),
                "ssl.keystore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
                key_password.clone(),
                format!("ssl.truststore.location={}", f("trust.jks")),
                "ssl.truststore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
            ]),
        ),
        (
            "a JKS truststore typed PKCS12 (Java reads either type's files as both)",
            with(vec![
                cert.clone(),
                format!("ssl.key.location={}", pki.path("client.key").display()),
                format!("ssl.truststore.location={}", f("trust.jks")),
                "ssl.truststore.type=PKCS12".into(),
                "ssl.truststore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
            ]),
        ),
    ];
    let run = |name: &str, lines: &[String], key_pw: &str, store_pw: &str| {
        let config =
            config_file(d, &format!("{}.properties", name.replace([' ', '\'', ',', '(', ')', '#'], "-")), lines);
        let out = Command::new(env!("CARGO_BIN_EXE_dstream"))
            .args([
                "generate",
                "--brokers",
                &listener(kafka, "SSL"),
                "--topic",
                "avg-stores",
                "--rate",
                "0",
                "--count",
                "20",
            ])
            .arg("--kafka-config")
            .arg(&config)
            .env("DSTREAM_TEST_KEY_PASSWORD", key_pw)
            .env("DSTREAM_TEST_STORE_PASSWORD", store_pw)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        for bytes in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(bytes);
            for secret in [KEY_PASSWORD, STORE_PASSWORD, key_pw, store_pw] {
                assert!(!text.contains(secret), "{name}: an output holds a password: {text}");
            }
        }
        out
    };
    for (name, lines) in &ok {
        let out = run(name, lines, KEY_PASSWORD, STORE_PASSWORD);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Each failure: one line, exit 1, naming what is wrong.
    let bad: Vec<(&str, Vec<String>, &str, &str, &str)> = vec![
        ("wrong key password", ok[0].1.clone(), "not-the-key-password", STORE_PASSWORD, "wrong ssl.key.password"),
        (
            "encrypted key without its password",
            with(vec![ca.clone(), cert.clone(), format!("ssl.key.location={}", f("pbkdf2.key"))]),
            KEY_PASSWORD,
            STORE_PASSWORD,
            "give its password in ssl.key.password",
        ),
        (
            "wrong keystore password",
            ok[4].1.clone(),
            KEY_PASSWORD,
            "not-the-store-password",
            "wrong ssl.keystore.password",
        ),
        (
            "wrong truststore password",
            with(
                [
                    vec![cert.clone(), format!("ssl.key.location={}", pki.path("client.key").display())],
                    trust_p12.clone(),
                ]
                .concat(),
            ),
            KEY_PASSWORD,
            "not-the-store-password",
            "wrong ssl.truststore.password",
        ),
        (
            "JCEKS truststore",
            with(vec![
                format!("ssl.truststore.location={}", f("trust.jceks")),
                "ssl.truststore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
            ]),
            KEY_PASSWORD,
            STORE_PASSWORD,
            "-deststoretype PKCS12",
        ),
        ("wrong JKS key password", ok[5].1.clone(), "not-the-key-password", STORE_PASSWORD, "wrong ssl.key.password"),
        (
            "wrong JKS store password",
            with(vec![
                ca.clone(),
                format!("ssl.keystore.location={}", f("client.jks")),
                "ssl.keystore.password=${env:DSTREAM_TEST_STORE_PASSWORD}".into(),
                key_password.clone(),
            ]),
            KEY_PASSWORD,
            "not-the-store-password",
            "wrong ssl.keystore.password",
        ),
        (
            "PKCS12 keystore typed PEM",
            with(vec![
                ca.clone(),
                format!("ssl.keystore.location={}", f("keytool.p12")),
                "ssl.keystore.type=PEM".into(),
            ]),
            KEY_PASSWORD,
            STORE_PASSWORD,
            "the type is PEM but the file holds no PEM text",
        ),
    ];
    let mut failures = Vec::new();
    for (name, lines, key_pw, store_pw, expected) in &bad {
        let out = run(name, lines, key_pw, store_pw);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<&str> = stderr.lines().collect();
        if out.status.success()
            || lines.len() != 1
            || !lines[0].starts_with("dstream: ")
            || !lines[0].contains(expected)
        {
            failures.push(format!("{name}: {}: {stderr}", out.status));
        }
        eprintln!("{name}: {}", stderr.trim());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_oauthbearer_token_renewed_in_its_file_is_what_later_authentications_use() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The first token lives 4 s; the broker gives the session at most that (and at most REAUTH_MS).
    let config = oauth_config(pki, dir.path(), "renewed", &unsecured_jwt("alice", 4));
    let token_file = dir.path().join("renewed.token");
    let settings = SecuritySettings::from_file(&config).unwrap();
    let security = Security::new(&settings).unwrap();
    let timeouts = Timeouts { connect: Duration::from_secs(3), request: Duration::from_secs(10) };
    let addr = listener(kafka, "REAUTH");
    let mut conn = Connection::connect_secure(&addr, "renew-test", timeouts, Default::default(), &security).unwrap();
    let version = conn.version(kafka_protocol::messages::ApiKey::Metadata).unwrap();
    // A second after connecting, a token for 10 minutes replaces it in the file, written whole (a rename), as a
    // renewing sidecar would. Requests go on past the first token's end: each re-authentication reads the file,
    // so the connection keeps serving (with the first token it would fail once that token expired).
    let start = Instant::now();
    let mut renewed = false;
    let mut requests = 0;
    while start.elapsed() < Duration::from_secs(7) {
        if !renewed && start.elapsed() >= Duration::from_secs(1) {
            let fresh = dir.path().join("renewed.token.new");
            std::fs::write(&fresh, unsecured_jwt("alice", 600)).unwrap();
            std::fs::rename(&fresh, &token_file).unwrap();
            renewed = true;
        }
        conn.request(&MetadataRequest::default(), version, Duration::ZERO)
            .unwrap_or_else(|e| panic!("request {requests} at {:?}: {e}", start.elapsed()));
        requests += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(conn.reauthentications() >= 3, "{} re-authentications", conn.reauthentications());
    // A new connection, after the first token's end, authenticates with the renewed one too.
    Connection::connect_secure(&addr, "renew-test", timeouts, Default::default(), &security).unwrap();
    // A token file that is gone: the next authentication is one clear error, the token never in it.
    std::fs::remove_file(&token_file).unwrap();
    match Connection::connect_secure(&addr, "renew-test", timeouts, Default::default(), &security) {
        Ok(_) => panic!("authenticated without a token file"),
        Err(e) => assert!(e.to_string().contains("cannot read the token file"), "{e}"),
    }
}

#[test]
fn check_says_how_each_connection_is_secured_and_what_each_topic_has() {
    let Some((pki, kafka)) = secure_kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scram = scram_config(pki, dir.path(), "SCRAM-SHA-512", "alice");
    let sasl_ssl = listener(kafka, "SASL_SSL");
    let mut client = Client::connect(&[kafka.addr()], ClientConfig::default()).unwrap();
    client.create_topic("avg-check", 3, 1).unwrap();
    drop(client);
    let out = dstream_env(
        &["check", "--brokers", &sasl_ssl, "--kafka-config", scram.to_str().unwrap(), "--topic", "avg-check"],
        PASSWORD,
    );
    let stdout = ok_stdout(&out);
    eprintln!("{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], format!("cluster: 1 broker, controller node {}", kafka.node_id(0)));
    // The certificates the test makes end when rcgen's default says (far off): only the form is checked.
    let node = format!("node {} at {sasl_ssl}: SASL_SSL, TLSv1_3 TLS13_AES_256_GCM_SHA384, certificate \"CN=broker\" issued by \"CN=dstream test CA\", valid until ", kafka.node_id(0));
    assert!(lines[1].starts_with(&node), "{}", lines[1]);
    assert!(lines[1].contains(" days left), SASL SCRAM-SHA-512 as alice, "), "{}", lines[1]);
    assert!(lines[1].ends_with(" APIs offered"), "{}", lines[1]);
    let leader = kafka.node_id(0);
    assert_eq!(
        lines[2],
        format!("topic avg-check: 3 partitions, leaders {leader} {leader} {leader}, in sync 1/1 1/1 1/1")
    );
    assert_no_secret("check's stdout", &out.stdout);
    assert_no_secret("check's stderr", &out.stderr);
    // Over PLAINTEXT: no TLS, no SASL.
    let out = dstream_env(&["check", "--brokers", &kafka.addr()], PASSWORD);
    let stdout = ok_stdout(&out);
    assert!(
        stdout.lines().nth(1).unwrap().ends_with(&format!(
            "{}: PLAINTEXT, {}",
            kafka.addr(),
            lines[1].rsplit(", ").next().unwrap()
        )),
        "{stdout}"
    );
    // A wrong password: the one line every command gives.
    let out = dstream_env(&["check", "--brokers", &sasl_ssl, "--kafka-config", scram.to_str().unwrap()], "wrong");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.lines().count() == 1, "{stderr}");
    assert!(stderr.contains("SASL SCRAM-SHA-512 authentication"), "{stderr}");
}
