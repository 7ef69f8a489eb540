//! Java KeyStore (JKS) files as `keytool` writes them: trusted certificates, and private keys with their
//! certificate chains. The file's integrity is checked with the store's password (a SHA-1 over the password, the
//! words "Mighty Aphrodite" and the contents); a key is recovered with its own password as Sun's `KeyProtector`
//! protects it (a SHA-1 keystream, checked by a SHA-1 of the key). Bounds are checked everywhere: a corrupt or
//! hostile file is an error, never a panic or an allocation larger than the file.

use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1};

/// The first four bytes of a JKS file.
pub(super) const MAGIC: [u8; 4] = [0xfe, 0xed, 0xfe, 0xed];

/// The first four bytes of a JCEKS file (Java's other proprietary format, not read).
pub(super) const JCEKS_MAGIC: [u8; 4] = [0xce, 0xce, 0xce, 0xce];

/// The DER of Sun's key protection algorithm's OID, 1.3.6.1.4.1.42.2.17.1.1.
const KEY_PROTECTOR_OID: [u8; 10] = [0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];

/// A private key entry, still protected.
pub(super) struct KeyEntry {
    /// The `EncryptedPrivateKeyInfo` (DER) as stored.
    protected: Vec<u8>,
    /// The certificate chain (DER), leaf first.
    pub chain: Vec<Vec<u8>>,
}

/// What a JKS file holds.
#[derive(Default)]
pub(super) struct Jks {
    /// The trusted certificates (DER).
    pub trusted: Vec<Vec<u8>>,
    /// The private keys with their chains, in file order.
    pub keys: Vec<KeyEntry>,
}

/// Java's view of a password: its UTF-16 code units, big-endian.
fn password_bytes(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Reads the file's bytes, checking the integrity digest with `password` if one is given (Java, too, loads a
/// store without checking when no password is given).
pub(super) fn parse(bytes: &[u8], password: Option<&str>, password_key: &str) -> Result<Jks, String> {
    if bytes.len() < 12 + 20 || bytes[..4] != MAGIC {
        return Err("not a JKS file".into());
    }
    let (body, stored) = bytes.split_at(bytes.len() - 20);
    if let Some(password) = password {
        let mut ctx = Context::new(&SHA1);
        ctx.update(&password_bytes(password));
        ctx.update(b"Mighty Aphrodite");
        ctx.update(body);
        if ctx.finish().as_ref() != stored {
            return Err(format!("the integrity check failed: wrong {password_key} (or a corrupt file)"));
        }
    }
    let mut r = Reader { bytes: body, at: 4 };
    let version = r.u32()?;
    if version != 1 && version != 2 {
        return Err(format!("a JKS file of version {version}, not 1 or 2"));
    }
    let count = r.u32()?;
    let mut jks = Jks::default();
    for _ in 0..count {
        let tag = r.u32()?;
        r.utf()?; // the alias
        r.take(8)?; // the time it was made
        match tag {
            1 => {
                let len = r.u32()? as usize;
                let protected = r.take(len)?.to_vec();
                let certs = r.u32()?;
                let mut chain = Vec::new();
                for _ in 0..certs {
                    chain.push(r.certificate(version)?);
                }
                jks.keys.push(KeyEntry { protected, chain });
            }
            2 => jks.trusted.push(r.certificate(version)?),
            _ => return Err(format!("an entry of unknown kind {tag} (a corrupt file?)")),
        }
    }
    if r.at != body.len() {
        return Err("bytes after the last entry (a corrupt file?)".into());
    }
    Ok(jks)
}

impl KeyEntry {
    /// The private key (PKCS#8 DER), recovered with `password`.
    pub(super) fn recover(&self, password: &str, password_key: &str) -> Result<Vec<u8>, String> {
        let encrypted = protected_key(&self.protected)?;
        if encrypted.len() < 40 {
            return Err("a protected key too short to hold one (a corrupt file?)".into());
        }
        let (salt, rest) = encrypted.split_at(20);
        let (sealed, check) = rest.split_at(rest.len() - 20);
        let pw = password_bytes(password);
        let mut key = Vec::with_capacity(sealed.len());
        let mut block = salt.to_vec();
        for chunk in sealed.chunks(20) {
            let mut ctx = Context::new(&SHA1);
            ctx.update(&pw);
            ctx.update(&block);
            block = ctx.finish().as_ref().to_vec();
            key.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
        }
        let mut ctx = Context::new(&SHA1);
        ctx.update(&pw);
        ctx.update(&key);
        if ctx.finish().as_ref() != check {
            return Err(format!("cannot recover the private key: wrong {password_key}"));
        }
        Ok(key)
    }
}

/// The encrypted bytes of an `EncryptedPrivateKeyInfo` protected by Sun's `KeyProtector`.
fn protected_key(der: &[u8]) -> Result<&[u8], String> {
    let bad = || "a private key entry that is not an EncryptedPrivateKeyInfo (a corrupt file?)".to_string();
    let (info, _) = tlv(der, 0x30).ok_or_else(bad)?;
    let (algorithm, rest) = tlv(info, 0x30).ok_or_else(bad)?;
    let (oid, _) = tlv(algorithm, 0x06).ok_or_else(bad)?;
    if oid != KEY_PROTECTOR_OID {
        return Err("a private key protected otherwise than by Sun's KeyProtector (a JCEKS key?)".into());
    }
    let (encrypted, _) = tlv(rest, 0x04).ok_or_else(bad)?;
    Ok(encrypted)
}

/// One DER element of tag `tag` at the start of `der`: its content and what follows it.
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |l, &b| l << 8 | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Big-endian reads within the file, each checked against its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("the file ends inside an entry")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    /// A string as Java's `DataOutput.writeUTF` writes it (its length, then modified UTF-8).
    fn utf(&mut self) -> Result<&'a [u8], String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().unwrap()) as usize;
        self.take(len)
    }

    /// A certificate: (version 2) its type, which must be X.509, then its length and DER.
    fn certificate(&mut self, version: u32) -> Result<Vec<u8>, String> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != b"X.509" {
                return Err(format!("a certificate of type {:?}, not X.509", String::from_utf8_lossy(kind)));
            }
        }
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
}

/// A digest helper for the tests: SHA-1 of `data`.
#[cfg(test)]
fn sha1(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&SHA1, data).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JKS file written here as keytool lays one out: one trusted certificate and one key entry protected
    /// with `key_pw`, sealed with `store_pw`.
    fn file(store_pw: &str, key_pw: &str, key: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(2u32.to_be_bytes());
        out.extend(2u32.to_be_bytes());
        let utf = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u16).to_be_bytes());
            out.extend(s.as_bytes());
        };
        // A trusted certificate.
        out.extend(2u32.to_be_bytes());
        utf(&mut out, "ca");
        out.extend(0u64.to_be_bytes());
        utf(&mut out, "X.509");
        out.extend(3u32.to_be_bytes());
        out.extend(b"CA!");
        // A key entry: the key sealed with the keystream, as KeyProtector does.
        out.extend(1u32.to_be_bytes());
        utf(&mut out, "client");
        out.extend(0u64.to_be_bytes());
        let salt = [7u8; 20];
        let pw = password_bytes(key_pw);
        let mut sealed = salt.to_vec();
        let mut block = salt.to_vec();
        for chunk in key.chunks(20) {
            block = sha1(&[pw.clone(), block].concat());
            sealed.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
        }
        sealed.extend(sha1(&[pw, key.to_vec()].concat()));
        let mut algorithm = vec![0x06, KEY_PROTECTOR_OID.len() as u8];
        algorithm.extend(KEY_PROTECTOR_OID);
        algorithm.extend([0x05, 0x00]);
        let mut info = vec![0x30, algorithm.len() as u8];
        info.extend(algorithm);
        info.extend([0x04, 0x81, sealed.len() as u8]);
        info.extend(&sealed);
        let mut der = vec![0x30, 0x81, info.len() as u8];
        der.extend(info);
        out.extend((der.len() as u32).to_be_bytes());
        out.extend(&der);
        out.extend(1u32.to_be_bytes());
        utf(&mut out, "X.509");
        out.extend(4u32.to_be_bytes());
        out.extend(b"LEAF");
        let digest = sha1(&[password_bytes(store_pw), b"Mighty Aphrodite".to_vec(), out.clone()].concat());
        out.extend(digest);
        out
    }

    #[test]
    fn a_store_gives_its_certificates_and_its_key_with_the_right_passwords_only() {
        let key: Vec<u8> = (0..45u8).collect();
        let bytes = file("store-pw", "key-pw", &key);
        let jks = parse(&bytes, Some("store-pw"), "ssl.truststore.password").unwrap();
        assert_eq!(jks.trusted, [b"CA!".to_vec()]);
        assert_eq!(jks.keys.len(), 1);
        assert_eq!(jks.keys[0].chain, [b"LEAF".to_vec()]);
        assert_eq!(jks.keys[0].recover("key-pw", "ssl.key.password").unwrap(), key);
        let e = jks.keys[0].recover("store-pw", "ssl.key.password").unwrap_err();
        assert!(e.contains("wrong ssl.key.password"), "{e}");
        let e = parse(&bytes, Some("nope"), "ssl.truststore.password").err().unwrap();
        assert!(e.contains("wrong ssl.truststore.password"), "{e}");
        // Without a password the contents are read unchecked, as Java does.
        assert_eq!(parse(&bytes, None, "p").unwrap().trusted.len(), 1);
    }

    #[test]
    fn a_cut_or_altered_file_is_an_error_never_a_panic() {
        let bytes = file("pw", "pw", &[1, 2, 3]);
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n], None, "p").is_err() || n == bytes.len(), "cut at {n}");
        }
        for i in 4..bytes.len() - 20 {
            let mut bad = bytes.clone();
            bad[i] ^= 0x55;
            assert!(parse(&bad, Some("pw"), "p").is_err(), "byte {i} altered");
            // Unchecked, an altered length or tag must still fail cleanly or parse within bounds.
            if let Ok(jks) = parse(&bad, None, "p") {
                for k in &jks.keys {
                    let _ = k.recover("pw", "p");
                }
            }
        }
    }
}
