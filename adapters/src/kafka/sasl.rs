//! The client side of SASL PLAIN (RFC 4616), SCRAM-SHA-256/512 (RFC 5802, RFC 7677) and OAUTHBEARER (RFC 7628,
//! a static token) messages; the Kafka
//! exchange that carries them (SaslHandshake, SaslAuthenticate) is in [`super::conn`].

use super::security::{Mechanism, SaslCredentials};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The most PBKDF2 iterations a server may ask for: a hostile broker must not make the client spin for minutes
/// (Kafka itself allows at most 16,384).
pub const MAX_ITERATIONS: u32 = 1 << 20;

/// PLAIN's one message: no authorization id, the user name, the password.
pub fn plain_message(c: &SaslCredentials) -> Vec<u8> {
    let mut m = Vec::with_capacity(c.username.len() + c.password.expose().len() + 2);
    m.push(0);
    m.extend_from_slice(c.username.as_bytes());
    m.push(0);
    m.extend_from_slice(c.password.expose().as_bytes());
    m
}

/// OAUTHBEARER's client message (RFC 7628): no authorization id, the bearer token, no extensions.
pub fn oauthbearer_message(token: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(token.len() + 20);
    m.extend_from_slice(b"n,,\x01auth=Bearer ");
    m.extend_from_slice(token.as_bytes());
    m.extend_from_slice(b"\x01\x01");
    m
}

/// The keys a SCRAM password gives for one salt and iteration count (RFC 5802's ClientKey and ServerKey), kept
/// so that the next connection with the same credentials skips PBKDF2's thousands of iterations (RFC 5802
/// section 5.1 allows a client to cache them). Shared by the connections of one [`super::Security`].
#[derive(Default)]
pub struct ScramKeys {
    keys: Mutex<Option<Derived>>,
    derivations: AtomicU64,
}

impl ScramKeys {
    /// How many times a password went through PBKDF2 (the rest of the conversations used the kept keys).
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }
}

/// Keys derived for one salt and iteration count.
struct Derived {
    sha512: bool,
    salt: Vec<u8>,
    iterations: u32,
    client_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Drop for Derived {
    fn drop(&mut self) {
        self.client_key.iter_mut().chain(self.server_key.iter_mut()).for_each(|b| *b = 0);
    }
}

/// One SCRAM conversation of the client: [`Scram::client_first`], then [`Scram::client_final`] with the
/// server's first message, then [`Scram::verify_server_final`] with its last, which proves the server knows the
/// password too.
pub struct Scram {
    sha512: bool,
    password: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
    server_signature: Option<Vec<u8>>,
    keys: Option<Arc<ScramKeys>>,
}

impl Drop for Scram {
    fn drop(&mut self) {
        self.password.iter_mut().for_each(|b| *b = 0);
    }
}

impl Scram {
    /// A conversation with a fresh random nonce.
    pub fn new(c: &SaslCredentials) -> Result<Scram, String> {
        let mut raw = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .map_err(|_| "no random numbers from the system".to_string())?;
        Ok(Scram::with_nonce(c, &B64.encode(raw)))
    }

    /// A conversation with the given client nonce (printable, no ','), for tests against published examples.
    pub fn with_nonce(c: &SaslCredentials, nonce: &str) -> Scram {
        let name = c.username.replace('=', "=3D").replace(',', "=2C");
        Scram {
            sha512: c.mechanism == Mechanism::ScramSha512,
            password: c.password.expose().as_bytes().to_vec(),
            client_first_bare: format!("n={name},r={nonce}"),
            client_nonce: nonce.to_string(),
            server_signature: None,
            keys: None,
        }
    }

    /// Uses and keeps the keys in `keys` (for the same password, salt and iteration count).
    pub fn with_keys(mut self, keys: Arc<ScramKeys>) -> Scram {
        self.keys = Some(keys);
        self
    }

    /// ClientKey and ServerKey for `salt` and `iterations`: kept ones, or derived (and kept).
    fn client_and_server_keys(&self, salt: &[u8], iterations: NonZeroU32) -> (Vec<u8>, Vec<u8>) {
        let kept = self.keys.as_ref().map(|k| k.keys.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(d) = kept.as_ref().and_then(|k| k.as_ref()) {
            if d.sha512 == self.sha512 && d.iterations == iterations.get() && d.salt == salt {
                return (d.client_key.clone(), d.server_key.clone());
            }
        }
        let (alg, len) = if self.sha512 {
            (pbkdf2::PBKDF2_HMAC_SHA512, digest::SHA512_OUTPUT_LEN)
        } else {
            (pbkdf2::PBKDF2_HMAC_SHA256, digest::SHA256_OUTPUT_LEN)
        };
        let mut salted = vec![0u8; len];
        pbkdf2::derive(alg, iterations, salt, &self.password, &mut salted);
        let client_key = self.hmac(&salted, b"Client Key");
        let server_key = self.hmac(&salted, b"Server Key");
        salted.iter_mut().for_each(|b| *b = 0);
        if let (Some(keys), Some(mut kept)) = (&self.keys, kept) {
            keys.derivations.fetch_add(1, Ordering::Relaxed);
            *kept = Some(Derived {
                sha512: self.sha512,
                salt: salt.to_vec(),
                iterations: iterations.get(),
                client_key: client_key.clone(),
                server_key: server_key.clone(),
            });
        }
        (client_key, server_key)
    }

    /// The client's first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let alg = if self.sha512 { hmac::HMAC_SHA512 } else { hmac::HMAC_SHA256 };
        hmac::sign(&hmac::Key::new(alg, key), data).as_ref().to_vec()
    }

    /// The client's final message (with its proof) for the server's first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| "the server's first SCRAM message is not UTF-8")?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(B64.decode(v).map_err(|_| "the server's salt is not base64")?),
                Some(("i", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|_| "the server's iteration count is not a number")?)
                }
                Some(("m", _)) => return Err("the server requires a SCRAM extension dstream does not know".into()),
                Some(("e", v)) => return Err(format!("the server refused: {v}")),
                _ => {}
            }
        }
        let nonce = nonce.ok_or("the server's first SCRAM message has no nonce")?;
        let salt = salt.ok_or("the server's first SCRAM message has no salt")?;
        let iterations = iterations.ok_or("the server's first SCRAM message has no iteration count")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err("the server's nonce does not extend the client's".into());
        }
        if iterations > MAX_ITERATIONS {
            return Err(format!("the server asks for {iterations} iterations, more than {MAX_ITERATIONS}"));
        }
        let iterations = NonZeroU32::new(iterations).ok_or("the server asks for 0 iterations")?;
        let (mut client_key, mut server_key) = self.client_and_server_keys(&salt, iterations);
        let stored_key = digest::digest(if self.sha512 { &digest::SHA512 } else { &digest::SHA256 }, &client_key);
        // "biws" is base64 of the GS2 header "n,,": no channel binding, no authorization id.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = self.hmac(stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        self.server_signature = Some(self.hmac(&server_key, auth_message.as_bytes()));
        client_key.iter_mut().chain(server_key.iter_mut()).for_each(|b| *b = 0);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: its signature proves it holds the user's credentials.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "the server's final SCRAM message is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused: {e}"));
        }
        let v = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or("the server's final SCRAM message has no signature")?;
        let v = B64.decode(v).map_err(|_| "the server's signature is not base64")?;
        let expected = self.server_signature.as_ref().ok_or("the conversation is not at its end")?;
        // Compared in constant time.
        let differ = v.len() != expected.len() || v.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        if differ {
            return Err("the server's signature is wrong: it does not know the credentials (is it the broker?)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::security::Secret;

    fn creds(mechanism: Mechanism, user: &str, pw: &str) -> SaslCredentials {
        SaslCredentials { mechanism, username: user.into(), password: Secret::new(pw), token_file: None }
    }

    /// The SCRAM-SHA-256 example of RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut s = Scram::with_nonce(&creds(Mechanism::ScramSha256, "user", "pencil"), "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = s.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
        let e = s.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap_err();
        assert!(e.contains("signature is wrong"), "{e}");
        let e = s.verify_server_final(b"e=invalid-proof").unwrap_err();
        assert!(e.contains("invalid-proof"), "{e}");
    }

    /// Connections after the first skip PBKDF2: the kept keys give the same proof and check the same server
    /// signature (RFC 7677's example twice); another salt or iteration count is derived again.
    #[test]
    fn scram_keys_are_derived_once_per_salt_and_iteration_count() {
        let keys = Arc::new(ScramKeys::default());
        let c = creds(Mechanism::ScramSha256, "user", "pencil");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        for _ in 0..3 {
            let mut s = Scram::with_nonce(&c, "rOprNGfwEbeRWgbNEkqO").with_keys(keys.clone());
            let client_final = String::from_utf8(s.client_final(server_first).unwrap()).unwrap();
            assert!(client_final.ends_with(",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="), "{client_final}");
            s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
        }
        assert_eq!(keys.derivations(), 1);
        let other_salt = b"r=rOprNGfwEbeRWgbNEkqOxyz,s=AAAAaJ0SNY7soEsUEjb6gQ==,i=4096";
        let other_count = b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4097";
        for (msg, derivations) in [(&other_salt[..], 2), (&other_count[..], 3), (&server_first[..], 4)] {
            let mut s = Scram::with_nonce(&c, "rOprNGfwEbeRWgbNEkqO").with_keys(keys.clone());
            s.client_final(msg).unwrap();
            assert_eq!(keys.derivations(), derivations);
        }
        // SCRAM-SHA-512 with the same salt and count is not SCRAM-SHA-256's keys.
        let c512 = creds(Mechanism::ScramSha512, "user", "pencil");
        Scram::with_nonce(&c512, "rOprNGfwEbeRWgbNEkqO").with_keys(keys.clone()).client_final(server_first).unwrap();
        assert_eq!(keys.derivations(), 5);
    }

    #[test]
    fn a_hostile_server_first_message_is_refused() {
        let c = creds(Mechanism::ScramSha512, "a,b=c", "pw");
        let mut s = Scram::with_nonce(&c, "abc");
        assert_eq!(s.client_first(), b"n,,n=a=2Cb=3Dc,r=abc");
        for (msg, why) in [
            ("r=xyz1,s=AAAA,i=4096", "does not extend"),
            ("r=abc,s=AAAA,i=4096", "does not extend"),
            ("r=abcd,s=AAAA,i=4294967295", "iterations"),
            ("r=abcd,s=AAAA,i=0", "0 iterations"),
            ("r=abcd,i=4096", "no salt"),
            ("m=ext,r=abcd,s=AAAA,i=4096", "extension"),
        ] {
            let e = s.client_final(msg.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{msg}: {e}");
        }
    }

    /// RFC 7628 section 3.1: the GS2 header, then `auth=Bearer TOKEN` between 0x01 separators.
    #[test]
    fn oauthbearer_is_the_gs2_header_and_the_bearer_token() {
        assert_eq!(oauthbearer_message("vF9dft4qmT"), b"n,,\x01auth=Bearer vF9dft4qmT\x01\x01");
    }

    #[test]
    fn plain_is_nul_user_nul_password() {
        assert_eq!(plain_message(&creds(Mechanism::Plain, "u", "p")), b"\0u\0p");
    }
}
