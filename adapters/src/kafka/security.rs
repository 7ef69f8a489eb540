//! How the client secures its connections: TLS and SASL settings with Kafka's own keys, read from a client
//! properties file (`--kafka-config FILE`) or given in the library, and the secrets they hold, which never show.
//!
//! Keys as in Kafka's client configuration: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
//! `sasl.mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER), `sasl.username` and `sasl.password` or
//! `sasl.jaas.config`, `sasl.oauthbearer.token` (dstream's own key: an OAUTHBEARER token, its file read again at
//! every authentication), `ssl.ca.location` or `ssl.truststore.location`/`type`/`password` (PEM, PKCS12 or JKS),
//! `ssl.certificate.location` and `ssl.key.location` (PEM; an encrypted PKCS#8 key with `ssl.key.password`) or
//! `ssl.keystore.location`/`type`/`password` (the client's key and chain in one PEM, PKCS12 or JKS file; a JKS
//! key's own password in `ssl.key.password`), `ssl.endpoint.identification.algorithm` (`https`, the default, or
//! empty for no host name check), `ssl.enabled.protocols` and `ssl.protocol` (the TLS versions),
//! `ssl.cipher.suites` (the cipher suites offered, in order of preference). A value may be `${env:NAME}` (the
//! environment variable NAME) or `${file:PATH}` (the file's contents without the trailing line break), so that no
//! secret needs to be on a command line or in the properties file itself; so may the `username` and `password`
//! options of a `sasl.jaas.config`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A secret value (a password): its Debug and Display show `***`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// No TLS, no SASL.
    #[default]
    Plaintext,
    /// TLS, no SASL.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl Protocol {
    /// Kafka's name of it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    /// True for SSL and SASL_SSL.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    /// True for SASL_PLAINTEXT and SASL_SSL.
    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// Kafka's `sasl.mechanism` (those dstream speaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: user name and password, in the clear (use it over TLS).
    Plain,
    /// RFC 5802/7677 with SHA-256.
    ScramSha256,
    /// RFC 5802 with SHA-512.
    ScramSha512,
    /// RFC 7628 with a static bearer token (`sasl.oauthbearer.token`; no token refresh).
    OAuthBearer,
}

impl Mechanism {
    /// Kafka's name of it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// SASL credentials: a mechanism, a user and a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user name (empty for OAUTHBEARER).
    pub username: String,
    /// The password; for OAUTHBEARER, the token.
    pub password: Secret,
    /// OAUTHBEARER with `sasl.oauthbearer.token=${file:PATH}`: the file, read again at every authentication
    /// (each new connection and each re-authentication), so that a token renewed in the file is used from then
    /// on; `password` holds what it held at start.
    pub token_file: Option<PathBuf>,
}

impl SaslCredentials {
    /// The OAUTHBEARER token to authenticate with now: the token file's content if there is one, else the token
    /// given. The error says why the file cannot be used (never its content).
    pub fn current_token(&self) -> Result<Secret, String> {
        let Some(path) = &self.token_file else { return Ok(self.password.clone()) };
        let text =
            read_value_file(path).map_err(|e| format!("cannot read the token file {} again: {e}", path.display()))?;
        if text.is_empty() {
            return Err(format!("the token file {} is empty", path.display()));
        }
        Ok(Secret(text))
    }
}

/// What went wrong reading security settings. Messages name the setting, the file or the variable, never a
/// secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The properties file cannot be read.
    #[error("cannot read the Kafka client configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key dstream does not know.
    #[error("{at}: unknown Kafka client setting {key:?} (dstream knows {})", KNOWN_KEYS.join(", "))]
    UnknownKey {
        /// Where: file and line, or "settings".
        at: String,
        /// The key.
        key: String,
    },
    /// A setting's value is wrong, or settings do not fit together.
    #[error("{at}: {reason}")]
    Invalid {
        /// Where: file and line, or the key.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A PEM file (CA, certificate or key) cannot be read or holds nothing usable.
    #[error("{key} {path}: {reason}")]
    Pem {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The keys dstream reads.
pub const KNOWN_KEYS: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
    "sasl.oauthbearer.token",
    "ssl.ca.location",
    "ssl.truststore.location",
    "ssl.truststore.type",
    "ssl.truststore.password",
    "ssl.keystore.location",
    "ssl.keystore.type",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "ssl.enabled.protocols",
    "ssl.protocol",
    "ssl.cipher.suites",
];

/// The format of a keystore or truststore file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    /// PEM text: certificates, and for a keystore a PKCS#8 private key (encrypted or not).
    Pem,
    /// PKCS#12 (what `keytool` and `openssl pkcs12 -export` write), opened with the store's password.
    Pkcs12,
    /// Java's own KeyStore format (`keytool -storetype JKS`), checked with the store's password; a key in it
    /// has its own password (`ssl.key.password`, else the store's).
    Jks,
}

impl StoreType {
    /// Kafka's name: `PEM`, `PKCS12`, `JKS`.
    pub fn name(self) -> &'static str {
        match self {
            StoreType::Pem => "PEM",
            StoreType::Pkcs12 => "PKCS12",
            StoreType::Jks => "JKS",
        }
    }

    /// The type a store's `type` key names; JCEKS and others are refused with what to do.
    fn parse(value: &str, key: &str, at: &str) -> Result<StoreType, SecurityError> {
        match value.to_ascii_uppercase().as_str() {
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" => Ok(StoreType::Pkcs12),
            "JKS" => Ok(StoreType::Jks),
            "JCEKS" => Err(invalid(at, format!("{key} JCEKS: {JCEKS_HINT}"))),
            _ => Err(invalid(at, format!("{key} {value:?}: expected PEM, PKCS12 or JKS"))),
        }
    }

    /// The format of a file's content: PEM text, JKS, or else PKCS#12's DER; JCEKS is refused.
    fn of_content(bytes: &[u8]) -> Result<StoreType, String> {
        if bytes.starts_with(&super::jks::MAGIC) {
            return Ok(StoreType::Jks);
        }
        if bytes.starts_with(&super::jks::JCEKS_MAGIC) {
            return Err(format!("a JCEKS file: {JCEKS_HINT}"));
        }
        let start: Vec<u8> = bytes.iter().skip_while(|b| b.is_ascii_whitespace()).take(11).copied().collect();
        Ok(if start == b"-----BEGIN " { StoreType::Pem } else { StoreType::Pkcs12 })
    }
}

/// What to do with a JCEKS store.
const JCEKS_HINT: &str = "dstream reads PEM, PKCS12 and JKS stores, not JCEKS: convert it with keytool \
                          -importkeystore -srckeystore FILE -srcstoretype JCEKS -destkeystore FILE.p12 \
                          -deststoretype PKCS12";

/// A keystore given by Kafka's `ssl.keystore.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The file.
    pub path: PathBuf,
    /// Its format as given by `ssl.keystore.type`; `None`: told by its content (PEM text, JKS or PKCS#12).
    pub kind: Option<StoreType>,
    /// The store's password (PKCS12 and JKS).
    pub password: Option<Secret>,
}

/// Both TLS versions dstream speaks, oldest first.
const BOTH_VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

/// A TLS version dstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (`TLSv1.2`).
    Tls12,
    /// TLS 1.3 (`TLSv1.3`).
    Tls13,
}

impl TlsVersion {
    /// Kafka's (Java's) name: `TLSv1.2`, `TLSv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    fn parse(value: &str) -> Option<TlsVersion> {
        match value.to_ascii_lowercase().as_str() {
            "tlsv1.2" => Some(TlsVersion::Tls12),
            "tlsv1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// The cipher suites dstream can offer, by their IANA (and Java's) names, e.g. `TLS_AES_128_GCM_SHA256` or
/// `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`, in rustls's order of preference.
pub fn cipher_suite_names() -> Vec<String> {
    rustls::crypto::ring::default_provider().cipher_suites.iter().map(|s| suite_name(*s)).collect()
}

/// A suite's IANA name.
fn suite_name(s: rustls::SupportedCipherSuite) -> String {
    iana_name(&format!("{:?}", s.suite()))
}

/// A suite name as IANA (and Java) spell it: rustls calls the TLS 1.3 suites `TLS13_...`, IANA `TLS_...`.
fn iana_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    match upper.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => upper,
    }
}

/// Security settings as given (before any file is read): what [`Security::new`] builds from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecuritySettings {
    /// `security.protocol`.
    pub protocol: Protocol,
    /// `sasl.mechanism` with `sasl.username`/`sasl.password` (or `sasl.jaas.config`).
    pub sasl: Option<SaslCredentials>,
    /// `ssl.ca.location` (or `ssl.truststore.location`): the file of the CA certificates to trust (PEM, PKCS12
    /// or JKS); none: the system's roots.
    pub ca: Option<PathBuf>,
    /// `ssl.truststore.type`: the format of `ca`; `None`: told by its content.
    pub truststore_type: Option<StoreType>,
    /// `ssl.truststore.password`: a PKCS12 or JKS truststore's password.
    pub truststore_password: Option<Secret>,
    /// `ssl.keystore.location`, `ssl.keystore.type`, `ssl.keystore.password`: the client's key and certificate
    /// chain in one file (PEM, PKCS12 or JKS), instead of `certificate` and `key`.
    pub keystore: Option<Store>,
    /// `ssl.key.password`: the password of an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY` in PEM) or of the
    /// key in a JKS keystore (else the store's password is tried).
    pub key_password: Option<Secret>,
    /// `ssl.certificate.location`: PEM file of the client's certificate chain (mutual TLS).
    pub certificate: Option<PathBuf>,
    /// `ssl.key.location`: PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1; an encrypted
    /// PKCS#8 key with `key_password`).
    pub key: Option<PathBuf>,
    /// False when `ssl.endpoint.identification.algorithm` is empty: the broker's certificate is then not checked
    /// against its host name (a warning says so at every start).
    pub verify_host: bool,
    /// The TLS versions to use (`ssl.enabled.protocols`, capped by `ssl.protocol`); empty: TLS 1.2 and 1.3.
    pub tls_versions: Vec<TlsVersion>,
    /// `ssl.cipher.suites`: the suites to offer by IANA name, most preferred first (the broker has the last word
    /// among them); empty: rustls's safe defaults (see [`cipher_suite_names`]).
    pub cipher_suites: Vec<String>,
}

impl SecuritySettings {
    /// Settings from `key=value` pairs with Kafka's keys; `${env:NAME}` and `${file:PATH}` values are resolved.
    /// `at` names where they come from, for messages.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        at: &str,
    ) -> Result<SecuritySettings, SecurityError> {
        let mut p = Pending::default();
        for (key, value) in pairs {
            p.set(key.trim(), value.trim(), at)?;
        }
        p.finish(at)
    }

    /// Settings from the text of a Java-style properties file (`key=value`, `key: value` or `key value` lines,
    /// `#` and `!` comments, `\` line continuations); `origin` names it in messages.
    pub fn from_properties(text: &str, origin: &str) -> Result<SecuritySettings, SecurityError> {
        let mut p = Pending::default();
        for (line_no, line) in logical_lines(text) {
            let at = format!("{origin}:{line_no}");
            let (key, value) = split_property(&line);
            p.set(key, value, &at)?;
        }
        p.finish(origin)
    }

    /// Settings from a properties file.
    pub fn from_file(path: &Path) -> Result<SecuritySettings, SecurityError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SecurityError::Read { path: path.to_path_buf(), source })?;
        Self::from_properties(&text, &path.display().to_string())
    }
}

/// Settings being read: each key once.
#[derive(Default)]
struct Pending {
    protocol: Option<Protocol>,
    mechanism: Option<Mechanism>,
    username: Option<String>,
    password: Option<Secret>,
    jaas: Option<(String, Secret)>,
    token: Option<Secret>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    truststore_type: Option<StoreType>,
    truststore_password: Option<Secret>,
    keystore_location: Option<PathBuf>,
    keystore_type: Option<StoreType>,
    keystore_password: Option<Secret>,
    key_password: Option<Secret>,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    verify_host: Option<bool>,
    enabled_protocols: Option<Vec<TlsVersion>>,
    /// `ssl.protocol=TLSv1.2`: no TLS 1.3.
    at_most: Option<TlsVersion>,
    cipher_suites: Option<Vec<String>>,
}

fn invalid(at: &str, reason: impl Into<String>) -> SecurityError {
    SecurityError::Invalid { at: at.to_string(), reason: reason.into() }
}

impl Pending {
    fn set(&mut self, key: &str, raw: &str, at: &str) -> Result<(), SecurityError> {
        let secret_key = matches!(
            key,
            "sasl.password"
                | "sasl.jaas.config"
                | "sasl.oauthbearer.token"
                | "ssl.key.password"
                | "ssl.keystore.password"
                | "ssl.truststore.password"
        );
        let value = resolve(raw, key, at, secret_key)?;
        let once = |taken: bool| if taken { Err(invalid(at, format!("{key} is set twice"))) } else { Ok(()) };
        match key {
            "security.protocol" => {
                once(self.protocol.is_some())?;
                self.protocol = Some(match value.to_ascii_uppercase().as_str() {
                    "PLAINTEXT" => Protocol::Plaintext,
                    "SSL" => Protocol::Ssl,
                    "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
                    "SASL_SSL" => Protocol::SaslSsl,
                    _ => {
                        return Err(invalid(
                            at,
                            format!("security.protocol {value:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
                        ))
                    }
                });
            }
            "sasl.mechanism" => {
                once(self.mechanism.is_some())?;
                self.mechanism = Some(match value.to_ascii_uppercase().as_str() {
                    "PLAIN" => Mechanism::Plain,
                    "SCRAM-SHA-256" => Mechanism::ScramSha256,
                    "SCRAM-SHA-512" => Mechanism::ScramSha512,
                    "OAUTHBEARER" => Mechanism::OAuthBearer,
                    _ => {
                        return Err(invalid(
                            at,
                            format!(
                                "sasl.mechanism {value:?}: dstream speaks PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and \
                                 OAUTHBEARER with a static token (not GSSAPI)"
                            ),
                        ))
                    }
                });
            }
            "sasl.username" => {
                once(self.username.is_some())?;
                self.username = Some(value);
            }
            "sasl.password" => {
                once(self.password.is_some())?;
                self.password = Some(Secret(value));
            }
            "sasl.oauthbearer.token" => {
                once(self.token.is_some())?;
                if value.is_empty() {
                    return Err(invalid(at, "sasl.oauthbearer.token is empty"));
                }
                self.token = Some(Secret(value));
                self.token_file = file_reference(raw).map(PathBuf::from);
            }
            "sasl.jaas.config" => {
                once(self.jaas.is_some())?;
                self.jaas = Some(parse_jaas(&value, at)?);
            }
            "ssl.ca.location" | "ssl.truststore.location" => {
                if self.ca.is_some() {
                    return Err(invalid(at, "give one of ssl.ca.location and ssl.truststore.location"));
                }
                self.ca = Some(non_empty_path(&value, key, at)?);
            }
            "ssl.truststore.type" => {
                once(self.truststore_type.is_some())?;
                self.truststore_type = Some(StoreType::parse(&value, key, at)?);
            }
            "ssl.truststore.password" => {
                once(self.truststore_password.is_some())?;
                self.truststore_password = Some(Secret(value));
            }
            "ssl.keystore.location" => {
                once(self.keystore_location.is_some())?;
                self.keystore_location = Some(non_empty_path(&value, key, at)?);
            }
            "ssl.keystore.type" => {
                once(self.keystore_type.is_some())?;
                self.keystore_type = Some(StoreType::parse(&value, key, at)?);
            }
            "ssl.keystore.password" => {
                once(self.keystore_password.is_some())?;
                self.keystore_password = Some(Secret(value));
            }
            "ssl.key.password" => {
                once(self.key_password.is_some())?;
                self.key_password = Some(Secret(value));
            }
            "ssl.certificate.location" => {
                once(self.certificate.is_some())?;
                self.certificate = Some(non_empty_path(&value, key, at)?);
            }
            "ssl.key.location" => {
                once(self.key.is_some())?;
                self.key = Some(non_empty_path(&value, key, at)?);
            }
            "ssl.endpoint.identification.algorithm" => {
                once(self.verify_host.is_some())?;
                self.verify_host = Some(match value.to_ascii_lowercase().as_str() {
                    "https" => true,
                    "" => false,
                    _ => {
                        return Err(invalid(
                            at,
                            format!("ssl.endpoint.identification.algorithm {value:?}: expected https or nothing"),
                        ))
                    }
                });
            }
            "ssl.enabled.protocols" => {
                once(self.enabled_protocols.is_some())?;
                let mut versions = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let v = TlsVersion::parse(name).ok_or_else(|| {
                        invalid(at, format!("ssl.enabled.protocols: {name:?}: dstream speaks TLSv1.2 and TLSv1.3"))
                    })?;
                    if !versions.contains(&v) {
                        versions.push(v);
                    }
                }
                if versions.is_empty() {
                    return Err(invalid(at, "ssl.enabled.protocols is empty: give TLSv1.2, TLSv1.3 or both"));
                }
                self.enabled_protocols = Some(versions);
            }
            "ssl.protocol" => {
                once(self.at_most.is_some())?;
                // Java's SSLContext protocol: TLSv1.3 (Kafka's default) enables 1.2 and 1.3, TLSv1.2 only 1.2.
                self.at_most = Some(match value.to_ascii_lowercase().as_str() {
                    "tls" | "tlsv1.3" => TlsVersion::Tls13,
                    "tlsv1.2" => TlsVersion::Tls12,
                    _ => return Err(invalid(at, format!("ssl.protocol {value:?}: expected TLSv1.3, TLSv1.2 or TLS"))),
                });
            }
            "ssl.cipher.suites" => {
                once(self.cipher_suites.is_some())?;
                let known = cipher_suite_names();
                let mut suites: Vec<String> = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let upper = iana_name(name);
                    if !known.contains(&upper) {
                        return Err(invalid(
                            at,
                            format!("ssl.cipher.suites: {name:?} is not a suite dstream offers ({})", known.join(", ")),
                        ));
                    }
                    if !suites.contains(&upper) {
                        suites.push(upper);
                    }
                }
                if suites.is_empty() {
                    return Err(invalid(at, "ssl.cipher.suites is empty: leave it out for the defaults"));
                }
                self.cipher_suites = Some(suites);
            }
            _ => {
                return Err(match unsupported_hint(key) {
                    Some(hint) => invalid(at, format!("{key} is not read by dstream: {hint}")),
                    None => SecurityError::UnknownKey { at: at.to_string(), key: key.to_string() },
                })
            }
        }
        Ok(())
    }

    fn finish(self, at: &str) -> Result<SecuritySettings, SecurityError> {
        let protocol = self.protocol.unwrap_or_default();
        let sasl = if protocol.sasl() && self.mechanism == Some(Mechanism::OAuthBearer) {
            if self.jaas.is_some() || self.username.is_some() || self.password.is_some() {
                return Err(invalid(
                    at,
                    "OAUTHBEARER takes its token from sasl.oauthbearer.token, not sasl.username, sasl.password or \
                     sasl.jaas.config",
                ));
            }
            let token =
                self.token.ok_or_else(|| invalid(at, "sasl.mechanism OAUTHBEARER needs sasl.oauthbearer.token"))?;
            Some(SaslCredentials {
                mechanism: Mechanism::OAuthBearer,
                username: String::new(),
                password: token,
                token_file: self.token_file,
            })
        } else if protocol.sasl() {
            let mechanism = self.mechanism.unwrap_or(Mechanism::Plain);
            if self.token.is_some() {
                return Err(invalid(at, "sasl.oauthbearer.token is set but sasl.mechanism is not OAUTHBEARER"));
            }
            let (username, password) = match (self.jaas, self.username, self.password) {
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                    return Err(invalid(at, "give sasl.jaas.config or sasl.username/sasl.password, not both"))
                }
                (Some((u, p)), None, None) => (u, p),
                (None, Some(u), Some(p)) => (u, p),
                (None, None, _) => {
                    return Err(invalid(
                        at,
                        format!("security.protocol {} needs sasl.username (or sasl.jaas.config)", protocol.name()),
                    ))
                }
                (None, Some(_), None) => {
                    return Err(invalid(
                        at,
                        format!("security.protocol {} needs sasl.password (or sasl.jaas.config)", protocol.name()),
                    ))
                }
            };
            Some(SaslCredentials { mechanism, username, password, token_file: None })
        } else {
            let set = [
                ("sasl.mechanism", self.mechanism.is_some()),
                ("sasl.username", self.username.is_some()),
                ("sasl.password", self.password.is_some()),
                ("sasl.jaas.config", self.jaas.is_some()),
                ("sasl.oauthbearer.token", self.token.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|s| s.1) {
                return Err(invalid(
                    at,
                    format!(
                        "{key} is set but security.protocol is {}: use SASL_SSL or SASL_PLAINTEXT",
                        protocol.name()
                    ),
                ));
            }
            None
        };
        if !protocol.tls() {
            let set = [
                ("ssl.ca.location", self.ca.is_some()),
                ("ssl.certificate.location", self.certificate.is_some()),
                ("ssl.key.location", self.key.is_some()),
                ("ssl.enabled.protocols", self.enabled_protocols.is_some()),
                ("ssl.protocol", self.at_most.is_some()),
                ("ssl.cipher.suites", self.cipher_suites.is_some()),
                ("ssl.truststore.type", self.truststore_type.is_some()),
                ("ssl.truststore.password", self.truststore_password.is_some()),
                ("ssl.keystore.location", self.keystore_location.is_some()),
                ("ssl.keystore.type", self.keystore_type.is_some()),
                ("ssl.keystore.password", self.keystore_password.is_some()),
                ("ssl.key.password", self.key_password.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|s| s.1) {
                return Err(invalid(
                    at,
                    format!("{key} is set but security.protocol is {}: use SSL or SASL_SSL", protocol.name()),
                ));
            }
        }
        if self.keystore_location.is_some() && (self.certificate.is_some() || self.key.is_some()) {
            return Err(invalid(
                at,
                "give the client's key in ssl.keystore.location or in ssl.certificate.location and ssl.key.location, \
                 not both",
            ));
        }
        if self.certificate.is_some() != self.key.is_some() {
            return Err(invalid(at, "a client certificate needs both ssl.certificate.location and ssl.key.location"));
        }
        if self.keystore_location.is_none() && (self.keystore_type.is_some() || self.keystore_password.is_some()) {
            return Err(invalid(at, "ssl.keystore.type or ssl.keystore.password is set without ssl.keystore.location"));
        }
        if self.keystore_type == Some(StoreType::Pem) && self.keystore_password.is_some() {
            return Err(invalid(
                at,
                "a PEM keystore has no store password: drop ssl.keystore.password (an encrypted key's password is \
                 ssl.key.password)",
            ));
        }
        if self.truststore_type == Some(StoreType::Pem) && self.truststore_password.is_some() {
            return Err(invalid(at, "a PEM truststore needs no password: drop ssl.truststore.password"));
        }
        if self.truststore_password.is_some() && self.ca.is_none() {
            return Err(invalid(at, "ssl.truststore.password is set without ssl.truststore.location"));
        }
        if self.key_password.is_some() && self.key.is_none() && self.keystore_location.is_none() {
            return Err(invalid(
                at,
                "ssl.key.password is set but no key is given (ssl.key.location or ssl.keystore.location)",
            ));
        }
        let mut tls_versions = self.enabled_protocols.unwrap_or_default();
        if let Some(max) = self.at_most {
            if tls_versions.is_empty() {
                tls_versions = BOTH_VERSIONS.to_vec();
            }
            tls_versions.retain(|v| *v <= max);
            if tls_versions.is_empty() {
                return Err(invalid(at, "ssl.protocol=TLSv1.2 leaves none of ssl.enabled.protocols (TLSv1.3)"));
            }
        }
        let cipher_suites = self.cipher_suites.unwrap_or_default();
        if !cipher_suites.is_empty() {
            let versions: &[TlsVersion] = if tls_versions.is_empty() { &BOTH_VERSIONS } else { &tls_versions };
            let usable = rustls::crypto::ring::default_provider()
                .cipher_suites
                .iter()
                .any(|s| cipher_suites.contains(&suite_name(*s)) && versions.iter().any(|v| s.version() == v.rustls()));
            if !usable {
                let names: Vec<&str> = versions.iter().map(|v| v.name()).collect();
                return Err(invalid(
                    at,
                    format!(
                        "none of ssl.cipher.suites is a suite of {}: no TLS session could start",
                        names.join(" or ")
                    ),
                ));
            }
        }
        Ok(SecuritySettings {
            protocol,
            sasl,
            ca: self.ca,
            certificate: self.certificate,
            key: self.key,
            verify_host: self.verify_host.unwrap_or(true),
            truststore_type: self.truststore_type,
            truststore_password: self.truststore_password,
            keystore: self.keystore_location.map(|path| Store {
                path,
                kind: self.keystore_type,
                password: self.keystore_password,
            }),
            key_password: self.key_password,
            tls_versions,
            cipher_suites,
        })
    }
}

/// What to do instead, for Kafka client settings that are common in properties files but not dstream's.
fn unsupported_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "bootstrap.servers" => "give the brokers with --brokers (KafkaParams::new in the library)",
        _ => return None,
    })
}

fn non_empty_path(value: &str, key: &str, at: &str) -> Result<PathBuf, SecurityError> {
    if value.is_empty() {
        return Err(invalid(at, format!("{key} is empty")));
    }
    Ok(PathBuf::from(value))
}

/// The PATH of a `${file:PATH}` value.
fn file_reference(raw: &str) -> Option<&str> {
    raw.strip_prefix("${file:")?.strip_suffix('}')
}

/// A `${file:PATH}` value: the file's contents without the trailing line break.
fn read_value_file(path: &Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Resolves `${env:NAME}` and `${file:PATH}` (the whole value); any other value is itself.
fn resolve(raw: &str, key: &str, at: &str, secret: bool) -> Result<String, SecurityError> {
    let Some(inner) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return Ok(raw.to_string());
    };
    if let Some(name) = inner.strip_prefix("env:") {
        return std::env::var(name).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set",
                std::env::VarError::NotUnicode(_) => "is not UTF-8",
            };
            invalid(at, format!("{key}: the environment variable {name} {why}"))
        });
    }
    if let Some(path) = inner.strip_prefix("file:") {
        return read_value_file(Path::new(path)).map_err(|e| invalid(at, format!("{key}: cannot read {path}: {e}")));
    }
    let shown = if secret { "${...}".to_string() } else { raw.to_string() };
    Err(invalid(at, format!("{key}: {shown} is neither ${{env:NAME}} nor ${{file:PATH}}")))
}

/// The user name and password of a `sasl.jaas.config` for PLAIN or SCRAM:
/// `org.apache.kafka.common.security.(plain.PlainLoginModule|scram.ScramLoginModule) required username="U"
/// password="P";`. Messages never quote the value.
fn parse_jaas(value: &str, at: &str) -> Result<(String, Secret), SecurityError> {
    let bad = |why: &str| invalid(at, format!("sasl.jaas.config: {why}"));
    let text = value.trim();
    let text = text.strip_suffix(';').ok_or_else(|| bad("it must end with ';'"))?.trim_end();
    let (module, rest) = text.split_once(char::is_whitespace).ok_or_else(|| bad("expected MODULE required ..."))?;
    if !matches!(
        module,
        "org.apache.kafka.common.security.plain.PlainLoginModule"
            | "org.apache.kafka.common.security.scram.ScramLoginModule"
    ) {
        return Err(bad("dstream reads the PlainLoginModule and ScramLoginModule only"));
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("required").ok_or_else(|| bad("expected 'required' after the module"))?;
    let (mut username, mut password) = (None, None);
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let (name, after) = s.split_once('=').ok_or_else(|| bad("expected name=\"value\" options"))?;
        let name = name.trim();
        let after = after.trim_start();
        let (val, after) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => out.push(c),
                        None => return Err(bad("an option's value is not closed with '\"'")),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => out.push(c),
                    None => return Err(bad("an option's value is not closed with '\"'")),
                }
            };
            (out, &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        // An option's value may be `${env:NAME}` or `${file:PATH}` too.
        let val = resolve(&val, "sasl.jaas.config", at, true)?;
        match name {
            "username" => username = Some(val),
            "password" => password = Some(Secret(val)),
            _ => {} // other options of the module (e.g. tokenauth) are not dstream's business
        }
        s = after.trim_start();
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, p)),
        (None, _) => Err(bad("no username=\"...\" option")),
        (_, None) => Err(bad("no password=\"...\" option")),
    }
}

/// The logical lines of a properties file with their first physical line's number: comments and blank lines
/// dropped, `\`-continued lines joined.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if current.is_none() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        // An odd number of trailing backslashes continues the line.
        let trailing = line.len() - line.trim_end_matches('\\').len();
        let (body, more) = if trailing % 2 == 1 { (&line[..line.len() - 1], true) } else { (line, false) };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push_str(body);
        if !more {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// A logical line's key and value: split at the first unescaped `=`, `:` or white space.
fn split_property(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (line[..i].trim(), line[i + 1..].trim()),
            b' ' | b'\t' => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                return (line[..i].trim(), rest.trim());
            }
            _ => i += 1,
        }
    }
    (line.trim(), "")
}

/// Security settings ready to connect with: the TLS configuration built (files read, keys parsed) once, shared
/// by every connection. Cheap to clone. The default is PLAINTEXT. Debug shows no secret.
#[derive(Clone, Default)]
pub struct Security {
    protocol: Protocol,
    sasl: Option<Arc<SaslCredentials>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    verify_host: bool,
    /// SCRAM's keys as derived for the first connection, for the others (shared by the clones).
    scram_keys: Arc<super::sasl::ScramKeys>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("sasl", &self.sasl.as_ref().map(|s| (s.mechanism, &s.username)))
            .field("verify_host", &self.verify_host)
            .finish()
    }
}

impl Security {
    /// Builds the settings: reads the CA, certificate and key files (or the system's roots without a CA).
    pub fn new(settings: &SecuritySettings) -> Result<Security, SecurityError> {
        let tls = if settings.protocol.tls() { Some(Arc::new(tls_config(settings)?)) } else { None };
        Ok(Security {
            protocol: settings.protocol,
            sasl: settings.sasl.clone().map(Arc::new),
            tls,
            verify_host: settings.verify_host,
            scram_keys: Arc::default(),
        })
    }

    /// Reads a Kafka client properties file (`--kafka-config FILE`) and builds it.
    pub fn from_file(path: &Path) -> Result<Security, SecurityError> {
        Security::new(&SecuritySettings::from_file(path)?)
    }

    /// What `--kafka-config FILE` gives: the file's settings, or PLAINTEXT without the flag.
    pub fn from_flag(path: Option<&Path>) -> Result<Security, SecurityError> {
        path.map_or_else(|| Ok(Security::default()), Security::from_file)
    }

    /// PLAINTEXT: no TLS, no SASL.
    pub fn plaintext() -> Security {
        Security::default()
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The SASL credentials, if SASL is on.
    pub fn sasl(&self) -> Option<&SaslCredentials> {
        self.sasl.as_deref()
    }

    /// SCRAM's keys derived from the password, shared by every connection made with these settings.
    pub fn scram_keys(&self) -> &Arc<super::sasl::ScramKeys> {
        &self.scram_keys
    }

    /// The TLS configuration, if TLS is on.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// A warning to print at start when TLS is on without the host name check; `None` otherwise.
    pub fn warning(&self) -> Option<&'static str> {
        (self.tls.is_some() && !self.verify_host).then_some(
            "warning: ssl.endpoint.identification.algorithm is empty: broker certificates are NOT checked against \
             the broker's host name, so anyone with a certificate from a trusted CA can pose as the broker",
        )
    }
}

/// The crypto provider: ring (no aws-lc build), offering `suites` in their order if any are given.
fn provider(suites: &[String]) -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    if !suites.is_empty() {
        let all = std::mem::take(&mut p.cipher_suites);
        p.cipher_suites =
            suites.iter().filter_map(|name| all.iter().find(|s| suite_name(**s) == *name).copied()).collect();
    }
    Arc::new(p)
}

fn tls_config(s: &SecuritySettings) -> Result<rustls::ClientConfig, SecurityError> {
    let mut roots = RootCertStore::empty();
    match &s.ca {
        Some(path) => {
            let java_style = s.truststore_type.is_some() || s.truststore_password.is_some();
            let key = if java_style { "ssl.truststore.location" } else { "ssl.ca.location" };
            let err = |reason: String| SecurityError::Pem { key, path: path.clone(), reason };
            let certs = match store_file(path, s.truststore_type).map_err(err)? {
                (StoreType::Pem, bytes) => pem_certificates(&bytes).map_err(err)?,
                (StoreType::Pkcs12, bytes) => {
                    let password = s.truststore_password.as_ref().map_or("", |p| p.expose());
                    let archive = pkcs12(&bytes, password, "ssl.truststore.password").map_err(err)?;
                    // A truststore's certificates are those of no key (keytool marks them trusted; openssl
                    // writes them unmarked); a keystore given as truststore lends its whole chain.
                    let unkeyed: Vec<_> = archive.certs.iter().filter(|c| c.local_key_id.is_none()).collect();
                    let chosen = if unkeyed.is_empty() { archive.certs.iter().collect() } else { unkeyed };
                    chosen.into_iter().map(|c| CertificateDer::from(c.cert.as_der().to_vec())).collect()
                }
                (StoreType::Jks, bytes) => {
                    let password = s.truststore_password.as_ref().map(Secret::expose);
                    let jks = super::jks::parse(&bytes, password, "ssl.truststore.password").map_err(err)?;
                    // Its trusted certificates; a keystore given as truststore lends its chains.
                    let certs = if jks.trusted.is_empty() {
                        jks.keys.into_iter().flat_map(|k| k.chain).collect()
                    } else {
                        jks.trusted
                    };
                    certs.into_iter().map(CertificateDer::from).collect()
                }
            };
            if certs.is_empty() {
                return Err(err("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(SecurityError::Invalid {
                    at: "ssl.ca.location".into(),
                    reason: "not set, and the system has no CA certificates: give the CA's PEM file".into(),
                });
            }
        }
    }
    let provider = provider(&s.cipher_suites);
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| invalid("ssl.ca.location", format!("cannot use the CA certificates: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> =
        if s.verify_host { webpki } else { Arc::new(AnyHostName { inner: webpki }) };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = if s.tls_versions.is_empty() {
        rustls::DEFAULT_VERSIONS.to_vec()
    } else {
        s.tls_versions.iter().map(|v| v.rustls()).collect()
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("ssl.cipher.suites", format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let key_password = s.key_password.as_ref().map(Secret::expose);
    let (chain, private, key, path) = match (&s.certificate, &s.key, &s.keystore) {
        (Some(cert), Some(key), _) => {
            let cert_err =
                |reason: String| SecurityError::Pem { key: "ssl.certificate.location", path: cert.clone(), reason };
            let chain = pem_certificates(&read(cert).map_err(cert_err)?).map_err(cert_err)?;
            if chain.is_empty() {
                return Err(cert_err("no CERTIFICATE in the file".into()));
            }
            let key_err = |reason: String| SecurityError::Pem { key: "ssl.key.location", path: key.clone(), reason };
            let private = pem_key(&read(key).map_err(key_err)?, key_password).map_err(key_err)?;
            (chain, private, "ssl.key.location", key.clone())
        }
        (_, _, Some(store)) => {
            let err =
                |reason: String| SecurityError::Pem { key: "ssl.keystore.location", path: store.path.clone(), reason };
            let (chain, private) = match store_file(&store.path, store.kind).map_err(err)? {
                (StoreType::Pem, bytes) => {
                    (pem_certificates(&bytes).map_err(err)?, pem_key(&bytes, key_password).map_err(err)?)
                }
                (StoreType::Pkcs12, bytes) => {
                    let password = match (store.password.as_ref().map(Secret::expose), key_password) {
                        (Some(p), Some(k)) if p != k => {
                            return Err(err(
                                "a PKCS12 keystore has one password for the store and its key (as keytool \
                                 writes them): ssl.key.password differs from ssl.keystore.password"
                                    .into(),
                            ))
                        }
                        (Some(p), _) | (None, Some(p)) => p,
                        (None, None) => "",
                    };
                    pkcs12_key_chain(&bytes, password).map_err(err)?
                }
                (StoreType::Jks, bytes) => {
                    let store_password = store.password.as_ref().map(Secret::expose);
                    let jks = super::jks::parse(&bytes, store_password, "ssl.keystore.password").map_err(err)?;
                    let entry = jks.keys.first().ok_or_else(|| err("no private key in the keystore".into()))?;
                    let (password, which) = match (key_password, store_password) {
                        (Some(k), _) => (k, "ssl.key.password"),
                        (None, Some(p)) => (p, "ssl.keystore.password (no ssl.key.password is given)"),
                        (None, None) => ("", "ssl.key.password (none is given)"),
                    };
                    let key = entry.recover(password, which).map_err(err)?;
                    let chain = entry.chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
                    (chain, PrivateKeyDer::Pkcs8(key.into()))
                }
            };
            if chain.is_empty() {
                return Err(err("no certificate in the keystore".into()));
            }
            (chain, private, "ssl.keystore.location", store.path.clone())
        }
        _ => return Ok(builder.with_no_client_auth()),
    };
    builder.with_client_auth_cert(chain, private).map_err(|e| SecurityError::Pem {
        key,
        path,
        reason: format!("the key does not fit the certificate or is not usable: {e}"),
    })
}

/// A file's bytes, or why not.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| e.to_string())
}

/// A store file's bytes and format: told by the content, checked against `kind` if given. PKCS12 and JKS stand
/// for each other, as in Java (whose keystores of either type load files of both).
fn store_file(path: &Path, kind: Option<StoreType>) -> Result<(StoreType, Vec<u8>), String> {
    let bytes = read(path)?;
    let found = StoreType::of_content(&bytes)?;
    match kind {
        Some(k) if (k == StoreType::Pem) != (found == StoreType::Pem) => Err(format!(
            "the type is {} but the file holds {}",
            k.name(),
            if found == StoreType::Pem { "PEM text" } else { "no PEM text" }
        )),
        _ => Ok((found, bytes)),
    }
}

/// The certificates of PEM text, in order.
fn pem_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(bytes).collect::<Result<_, _>>().map_err(pem_error)
}

/// The private key of PEM text: PKCS#8, PKCS#1 or SEC1, or an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`,
/// PBES2 as `openssl pkcs8 -topk8` writes it) decrypted with `password`.
fn pem_key(bytes: &[u8], password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(bytes);
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    if let Some(start) = text.find(BEGIN) {
        let end = text[start..]
            .find(END)
            .map(|e| start + e + END.len())
            .ok_or("an ENCRYPTED PRIVATE KEY without its end line")?;
        let password = password.ok_or("the key is encrypted: give its password in ssl.key.password")?;
        let (_, der) = pkcs8::der::pem::decode_vec(text[start..end].as_bytes())
            .map_err(|e| format!("an ENCRYPTED PRIVATE KEY that is not valid PEM: {e}"))?;
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| format!("not a valid encrypted PKCS#8 key: {e}"))?;
        let plain = info.decrypt(password).map_err(|_| {
            "cannot decrypt the key: wrong ssl.key.password, or an encryption dstream does not read (it reads PBES2 \
             with PBKDF2 or scrypt and AES-CBC, as openssl pkcs8 -topk8 writes)"
                .to_string()
        })?;
        return Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err("an OpenSSL traditional encrypted key: convert it to PKCS#8 (openssl pkcs8 -topk8 -in KEY -out \
                    KEY.p8), encrypted or not"
            .into());
    }
    PrivateKeyDer::from_pem_slice(bytes).map_err(pem_error)
}

/// A PKCS#12 file opened with `password`, or why not (a wrong password named by `password_key`).
fn pkcs12(bytes: &[u8], password: &str, password_key: &str) -> Result<p12_keystore::Pkcs12Archive, String> {
    p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password).map_err(|e| pkcs12_error(e, password_key))
}

/// The private key of a PKCS#12 keystore and its certificate chain, leaf first.
fn pkcs12_key_chain(
    bytes: &[u8],
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, password, p12_keystore::Pkcs12ImportPolicy::Strict)
        .map_err(|e| pkcs12_error(e, "ssl.keystore.password"))?;
    let (_, chain) = store.private_key_chain().ok_or("no private key with its certificate in the keystore")?;
    let certs = chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    Ok((certs, PrivateKeyDer::Pkcs8(chain.key().as_der().to_vec().into())))
}

/// A PKCS#12 reading error in words.
fn pkcs12_error(e: p12_keystore::error::Error, password_key: &str) -> String {
    use p12_keystore::error::Error as E;
    match e {
        E::MacError(_) => format!("the integrity check failed: wrong {password_key}"),
        E::Pkcs5Error(_) | E::UnpadError => format!("cannot decrypt the store: wrong {password_key}"),
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm => {
            format!("a PKCS12 file with an encryption or MAC dstream does not read ({e})")
        }
        e => format!("not a valid PKCS12 file ({e})"),
    }
}

/// A PEM reading error in words (never the file's content).
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "no PEM item of the kind needed in the file".into(),
        Error::Io(e) => e.to_string(),
        _ => "not a valid PEM file".into(),
    }
}

/// The standard verification without the host name check (`ssl.endpoint.identification.algorithm=`): the chain,
/// its validity dates and the handshake signatures are still checked.
#[derive(Debug)]
struct AnyHostName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, after the chain and the dates: a name mismatch means all else passed.
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_properties_file_gives_the_settings() {
        let text = "# a comment\n\
                    security.protocol = SASL_SSL\n\
                    sasl.mechanism: SCRAM-SHA-512\n\
                    ! another comment\n\
                    sasl.username alice\n\
                    sasl.password=s3cr=t:x\n\
                    ssl.ca.location=/etc/ca.pem\n\
                    ssl.endpoint.identification.algorithm=\n";
        let s = SecuritySettings::from_properties(text, "client.properties").unwrap();
        assert_eq!(s.protocol, Protocol::SaslSsl);
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.mechanism, Mechanism::ScramSha512);
        assert_eq!(sasl.username, "alice");
        assert_eq!(sasl.password.expose(), "s3cr=t:x");
        assert_eq!(s.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!s.verify_host);
    }

    #[test]
    fn continued_lines_join_and_a_jaas_config_gives_user_and_password() {
        let text = "security.protocol=SASL_PLAINTEXT\n\
                    sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n\
                    \x20   username=\"bob\" \\\n\
                    \x20   password=\"p\\\"w d\";\n";
        let s = SecuritySettings::from_properties(text, "f").unwrap();
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.mechanism, Mechanism::Plain, "sasl.mechanism defaults to PLAIN, as Kafka's");
        assert_eq!(sasl.username, "bob");
        assert_eq!(sasl.password.expose(), "p\"w d");
        assert!(s.verify_host);
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it_and_its_line() {
        let e = SecuritySettings::from_properties("security.protocol=SSL\nssl.keystroe.location=/x\n", "c.properties")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.properties:2: unknown Kafka client setting \"ssl.keystroe.location\""), "{e}");
        // Common keys that dstream does not read say what to do instead.
        let e =
            SecuritySettings::from_properties("bootstrap.servers=k:9092\n", "c.properties").unwrap_err().to_string();
        assert!(
            e.starts_with("c.properties:1: bootstrap.servers is not read by dstream: give the brokers with --brokers"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-a-file\n").unwrap();
        std::env::set_var("DSTREAM_TEST_SECURITY_PW", "from-the-env");
        let pairs = [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.username", "u"),
            ("sasl.password", "${env:DSTREAM_TEST_SECURITY_PW}"),
        ];
        let s = SecuritySettings::from_pairs(pairs, "settings").unwrap();
        assert_eq!(s.sasl.as_ref().unwrap().password.expose(), "from-the-env");
        let debug = format!("{s:?} {:?}", Security::new(&s).unwrap());
        assert!(!debug.contains("from-the-env"), "{debug}");
        let path = format!("${{file:{}}}", file.display());
        let pairs = [("security.protocol", "SASL_PLAINTEXT"), ("sasl.username", "u"), ("sasl.password", &path)];
        let s = SecuritySettings::from_pairs(pairs, "settings").unwrap();
        assert_eq!(s.sasl.as_ref().unwrap().password.expose(), "from-a-file");

        let pairs = [("sasl.password", "${env:DSTREAM_TEST_SECURITY_UNSET}")];
        let e = SecuritySettings::from_pairs(pairs, "settings").unwrap_err().to_string();
        assert!(e.contains("DSTREAM_TEST_SECURITY_UNSET is not set"), "{e}");
        let pairs = [("sasl.password", "${vault:hunter2}")];
        let e = SecuritySettings::from_pairs(pairs, "settings").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let bad_jaas = [
            ("security.protocol", "SASL_SSL"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"hunter2\"",
            ),
        ];
        let e = SecuritySettings::from_pairs(bad_jaas, "settings").unwrap_err().to_string();
        assert!(e.contains("must end with ';'") && !e.contains("hunter2"), "{e}");
        let jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" \
                    password=\"${env:DSTREAM_TEST_SECURITY_PW}\";";
        let s =
            SecuritySettings::from_pairs([("security.protocol", "SASL_SSL"), ("sasl.jaas.config", jaas)], "s").unwrap();
        assert_eq!(s.sasl.as_ref().unwrap().password.expose(), "from-the-env");
    }

    #[test]
    fn settings_that_do_not_fit_together_are_refused() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("security.protocol", "SASL_SSL"), ("sasl.username", "u")], "needs sasl.password"),
            (
                &[("security.protocol", "SSL"), ("sasl.username", "u")],
                "sasl.username is set but security.protocol is SSL",
            ),
            (&[("ssl.ca.location", "/ca.pem")], "ssl.ca.location is set but security.protocol is PLAINTEXT"),
            (&[("security.protocol", "SSL"), ("ssl.key.location", "/k.pem")], "needs both"),
            (&[("security.protocol", "TLS")], "expected PLAINTEXT, SSL"),
            (&[("security.protocol", "SASL_SSL"), ("sasl.mechanism", "GSSAPI")], "not GSSAPI"),
            (&[("security.protocol", "SASL_SSL"), ("sasl.mechanism", "OAUTHBEARER")], "needs sasl.oauthbearer.token"),
            (
                &[("security.protocol", "SASL_SSL"), ("sasl.oauthbearer.token", "t"), ("sasl.username", "u")],
                "not OAUTHBEARER",
            ),
            (&[("security.protocol", "SSL"), ("security.protocol", "SSL")], "set twice"),
            (&[("security.protocol", "SSL"), ("ssl.truststore.type", "JCEKS")], "-deststoretype PKCS12"),
            (&[("security.protocol", "SSL"), ("ssl.keystore.type", "jceks")], "ssl.keystore.type JCEKS: dstream reads"),
            (&[("security.protocol", "SSL"), ("ssl.truststore.type", "BCFKS")], "expected PEM, PKCS12 or JKS"),
            (
                &[("security.protocol", "SSL"), ("ssl.keystore.location", "/k.p12"), ("ssl.key.location", "/k.pem")],
                "not both",
            ),
            (&[("security.protocol", "SSL"), ("ssl.keystore.password", "p")], "without ssl.keystore.location"),
            (
                &[
                    ("security.protocol", "SSL"),
                    ("ssl.keystore.location", "/k.pem"),
                    ("ssl.keystore.type", "PEM"),
                    ("ssl.keystore.password", "p"),
                ],
                "a PEM keystore has no store password",
            ),
            (
                &[
                    ("security.protocol", "SSL"),
                    ("ssl.truststore.location", "/t.pem"),
                    ("ssl.truststore.type", "PEM"),
                    ("ssl.truststore.password", "p"),
                ],
                "a PEM truststore needs no password",
            ),
            (&[("security.protocol", "SSL"), ("ssl.truststore.password", "p")], "without ssl.truststore.location"),
            (&[("security.protocol", "SSL"), ("ssl.key.password", "p")], "no key is given"),
            (&[("ssl.key.password", "p")], "ssl.key.password is set but security.protocol is PLAINTEXT"),
            (&[("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256")], "ssl.cipher.suites is set but security.protocol"),
            (&[("security.protocol", "SSL"), ("ssl.enabled.protocols", "TLSv1.1")], "\"TLSv1.1\": dstream speaks"),
            (&[("security.protocol", "SSL"), ("ssl.enabled.protocols", " , ")], "ssl.enabled.protocols is empty"),
            (&[("security.protocol", "SSL"), ("ssl.protocol", "SSL")], "expected TLSv1.3, TLSv1.2 or TLS"),
            (
                &[("security.protocol", "SSL"), ("ssl.protocol", "TLSv1.2"), ("ssl.enabled.protocols", "TLSv1.3")],
                "leaves none of ssl.enabled.protocols",
            ),
            (
                &[("security.protocol", "SSL"), ("ssl.cipher.suites", "TLS_RSA_WITH_AES_128_CBC_SHA")],
                "\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not a suite dstream offers (TLS_AES_256_GCM_SHA384, ",
            ),
            (
                &[
                    ("security.protocol", "SSL"),
                    ("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256"),
                    ("ssl.enabled.protocols", "TLSv1.2"),
                ],
                "none of ssl.cipher.suites is a suite of TLSv1.2",
            ),
        ];
        for (pairs, expected) in cases {
            let e = SecuritySettings::from_pairs(pairs.iter().copied(), "settings").unwrap_err().to_string();
            assert!(e.contains(expected), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn tls_versions_and_cipher_suites_are_read_as_kafka_names_them() {
        let s = SecuritySettings::from_pairs(
            [
                ("security.protocol", "SSL"),
                ("ssl.enabled.protocols", "TLSv1.3, tlsv1.2,TLSv1.3"),
                (
                    "ssl.cipher.suites",
                    "TLS_AES_128_GCM_SHA256,TLS13_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                ),
            ],
            "s",
        )
        .unwrap();
        assert_eq!(s.tls_versions, [TlsVersion::Tls13, TlsVersion::Tls12]);
        assert_eq!(
            s.cipher_suites,
            ["TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]
        );
        // The offered suites are the ones given, in their order.
        let offered: Vec<String> = provider(&s.cipher_suites).cipher_suites.iter().map(|c| suite_name(*c)).collect();
        assert_eq!(offered, s.cipher_suites);
        // Kafka's default ssl.protocol (TLSv1.3) allows both versions; TLSv1.2 caps them.
        let both = SecuritySettings::from_pairs([("security.protocol", "SSL"), ("ssl.protocol", "TLSv1.3")], "s");
        assert_eq!(both.unwrap().tls_versions, [TlsVersion::Tls12, TlsVersion::Tls13]);
        let capped = SecuritySettings::from_pairs([("security.protocol", "SSL"), ("ssl.protocol", "TLSv1.2")], "s");
        assert_eq!(capped.unwrap().tls_versions, [TlsVersion::Tls12]);
        let default = SecuritySettings::from_pairs([("security.protocol", "SSL")], "s").unwrap();
        assert!(default.tls_versions.is_empty() && default.cipher_suites.is_empty());
        // The names are IANA's, as Java's: TLS 1.3 suites without rustls's TLS13_ prefix.
        let names = cipher_suite_names();
        assert!(names.contains(&"TLS_AES_256_GCM_SHA384".to_string()), "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("TLS_")), "{names:?}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let pairs = [("security.protocol", "SSL"), ("ssl.ca.location", "/nonexistent/ca.pem")];
        let s = SecuritySettings::from_pairs(pairs, "settings").unwrap();
        let e = Security::new(&s).unwrap_err().to_string();
        assert!(e.starts_with("ssl.ca.location /nonexistent/ca.pem: "), "{e}");
    }
}
