//! A broker's TLS material and a SASL_SSL broker configuration, shared by the secure tests and benches
//! (`#[path]`-included by `benches/consume_secure.rs`).

use dstream_adapters::broker::kafka::{SecureConfig, SecureListener};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::path::{Path, PathBuf};

/// Writes `ca.pem` (a new CA named `ca_name`) and `broker.pem` (a key and a certificate for 127.0.0.1 signed by
/// it, then the CA's) into `dir`.
pub fn broker_certificates(dir: &Path, ca_name: &str) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "broker");
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("broker.pem"), key.serialize_pem() + &cert.pem() + &ca.pem()).unwrap();
}

/// One SASL_SSL listener named `SASL_SSL` with `dir/broker.pem` (see [`broker_certificates`]), no client
/// certificates, and the SCRAM-SHA-512 user `user`.
pub fn sasl_ssl_scram512(dir: &Path, user: &str, password: &str, full_jit: bool) -> SecureConfig {
    SecureConfig {
        listeners: vec![SecureListener {
            name: "SASL_SSL".into(),
            protocol: "SASL_SSL",
            keystore: Some(dir.join("broker.pem")),
            client_auth: false,
            reauth_ms: None,
            cipher_suites: None,
        }],
        truststore: None,
        scram_users: vec![("SCRAM-SHA-512", user.into(), password.into())],
        plain_users: vec![],
        full_jit,
    }
}

/// Writes `dir/client.properties` for SASL_SSL with SCRAM-SHA-512 as `user`, the password from the environment
/// variable `password_env`, trusting `dir/ca.pem`; returns its path.
pub fn scram512_properties(dir: &Path, user: &str, password_env: &str) -> PathBuf {
    let path = dir.join("client.properties");
    let text = format!(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username={user}\n\
         sasl.password=${{env:{password_env}}}\nssl.ca.location={}\n",
        dir.join("ca.pem").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}
