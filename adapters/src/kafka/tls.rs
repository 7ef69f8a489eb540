//! TLS over one TCP connection with rustls's unbuffered API: encrypted bytes are read from the socket straight
//! into one large buffer (a system call brings many TLS records), decrypted there in place, and each record's
//! plaintext is handed to the reader, which appends it where it wants it (a response's body, never zeroed
//! first). rustls 0.23 copies each record's plaintext once on the way; the buffered API also copied every byte
//! into its own read buffer and out of it again. Timeouts are the socket's, set by the caller; a read or write
//! that times out can be repeated.

use rustls::client::UnbufferedClientConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// Encrypted bytes one read from the socket may bring (many TLS records of at most about 16 KiB each).
const READ_BUFFER: usize = 256 << 10;

/// Room kept free at the end of the read buffer before reading: less, and what is left is moved to the front.
const MIN_READ: usize = 32 << 10;

/// A TLS session over its TCP connection.
pub(super) struct TlsStream {
    pub(super) tcp: TcpStream,
    conn: UnbufferedClientConnection,
    /// Encrypted bytes received: `incoming[start..end]` are not processed yet.
    incoming: Box<[u8]>,
    start: usize,
    end: usize,
    /// Encrypted bytes to send: `outgoing[sent..]` are not sent yet.
    outgoing: Vec<u8>,
    sent: usize,
    /// Plaintext received beyond what a read asked for: `pending[taken..]` is still to be read.
    pending: Vec<u8>,
    taken: usize,
}

/// Where the handshake stands.
pub(super) enum Handshake {
    /// Done: application data may be sent.
    Done,
    /// Encrypted bytes wait to be sent ([`TlsStream::flush_some`]).
    Send,
    /// The peer's next message must be read ([`TlsStream::receive`]).
    Receive,
}

/// What one step of the connection's state machine came to.
enum Step {
    /// A record's plaintext: this many bytes went to the reader (the rest, if any, is pending).
    Data(usize),
    /// Bytes to send were added to the outgoing buffer.
    Send,
    /// More encrypted bytes must be read (handshake blocked, or nothing left to decrypt).
    Receive,
    /// The handshake is done and nothing is left to decrypt; the data given to send, if any, was encrypted.
    Writable,
    /// The peer closed the session.
    Closed,
}

fn invalid(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// A session to `name` over `tcp`, before its handshake.
    pub(super) fn new(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream {
            tcp,
            conn: UnbufferedClientConnection::new(config, name)?,
            incoming: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            outgoing: Vec::new(),
            sent: 0,
            pending: Vec::new(),
            taken: 0,
        })
    }

    /// One step: processes what was received until the state machine wants something. Plaintext goes to
    /// `sink`, at most `max` bytes of it (the rest is kept for the next read); `send` is encrypted once the
    /// session allows it.
    fn step(&mut self, max: usize, sink: &mut dyn FnMut(&[u8]), send: Option<&[u8]>) -> std::io::Result<Step> {
        let TlsStream { conn, incoming, start, end, outgoing, pending, taken, .. } = self;
        let status = conn.process_tls_records(&mut incoming[*start..*end]);
        let mut discard = status.discard;
        let step = match status.state {
            Ok(ConnectionState::ReadTraffic(mut traffic)) => match traffic.next_record() {
                Some(Ok(record)) => {
                    discard += record.discard;
                    let payload = record.payload;
                    let n = payload.len().min(max);
                    sink(&payload[..n]);
                    if n < payload.len() {
                        if *taken == pending.len() {
                            pending.clear();
                            *taken = 0;
                        }
                        pending.extend_from_slice(&payload[n..]);
                    }
                    Ok(Step::Data(n))
                }
                Some(Err(e)) => Err(e),
                None => Ok(Step::Data(0)),
            },
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                let at = outgoing.len();
                outgoing.resize(at + 4096, 0);
                let r = match encode.encode(&mut outgoing[at..]) {
                    Err(EncodeError::InsufficientSize(s)) => {
                        outgoing.resize(at + s.required_size, 0);
                        encode.encode(&mut outgoing[at..])
                    }
                    r => r,
                };
                outgoing.truncate(at + r.unwrap_or(0));
                Ok(Step::Send)
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // The bytes are in `outgoing`, sent before anything is waited for.
                transmit.done();
                Ok(Step::Send)
            }
            Ok(ConnectionState::BlockedHandshake) => Ok(Step::Receive),
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match send {
                None => Ok(Step::Writable),
                Some(data) => {
                    let at = outgoing.len();
                    // A record's header and tag for each 16 KiB, and some.
                    outgoing.resize(at + data.len() + data.len() / 512 + 256, 0);
                    let r = match traffic.encrypt(data, &mut outgoing[at..]) {
                        Err(EncryptError::InsufficientSize(s)) => {
                            outgoing.resize(at + s.required_size, 0);
                            traffic.encrypt(data, &mut outgoing[at..])
                        }
                        r => r,
                    };
                    match r {
                        Ok(n) => {
                            outgoing.truncate(at + n);
                            Ok(Step::Writable)
                        }
                        Err(e) => {
                            outgoing.truncate(at);
                            Err(rustls::Error::General(format!("cannot encrypt: {e}")))
                        }
                    }
                }
            },
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Ok(Step::Closed),
            Ok(_) => Err(rustls::Error::General("unexpected TLS state".into())),
            Err(e) => Err(e),
        };
        *start += discard;
        if *start == *end {
            (*start, *end) = (0, 0);
        }
        step.map_err(|e| {
            self.send_alert();
            invalid(e)
        })
    }

    /// After a failure: sends the alert rustls queued, if it can at once (the peer learns why).
    fn send_alert(&mut self) {
        let status = self.conn.process_tls_records(&mut self.incoming[self.start..self.end]);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            let mut alert = [0u8; 256];
            if let Ok(n) = encode.encode(&mut alert) {
                self.outgoing.extend_from_slice(&alert[..n]);
            }
        }
        let _ = self.flush_some();
    }

    /// Advances the handshake as far as it goes without waiting for the socket.
    pub(super) fn handshake(&mut self) -> std::io::Result<Handshake> {
        loop {
            if self.wants_write() {
                return Ok(Handshake::Send);
            }
            match self.step(0, &mut |_| {}, None)? {
                Step::Send | Step::Data(_) => {}
                Step::Receive => return Ok(Handshake::Receive),
                Step::Writable => return Ok(Handshake::Done),
                Step::Closed => return Err(ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// The TLS version and cipher suite agreed, once the handshake is done (e.g. `TLSv1_3 TLS13_AES_128_GCM_SHA256`).
    pub(super) fn negotiated(&self) -> String {
        match (self.conn.protocol_version(), self.conn.negotiated_cipher_suite()) {
            (Some(v), Some(s)) => format!("{v:?} {:?}", s.suite()),
            _ => "nothing yet".into(),
        }
    }

    /// The broker's certificate (DER), the first of the chain it sent, once the handshake is done.
    pub(super) fn peer_certificate(&self) -> Option<&[u8]> {
        self.conn.peer_certificates()?.first().map(|c| c.as_ref())
    }

    /// Reads encrypted bytes from the socket; `Ok(0)` at its end.
    pub(super) fn receive(&mut self) -> std::io::Result<usize> {
        if self.start > 0 && self.incoming.len() - self.end < MIN_READ {
            self.incoming.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = self.tcp.read(&mut self.incoming[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads plaintext: hands at most `max` bytes (at least one, unless the session ended: `Ok(0)`) to `sink`,
    /// reading the socket as needed; WouldBlock/TimedOut when the socket's timeout passed first.
    pub(super) fn read_with(&mut self, max: usize, sink: &mut dyn FnMut(&[u8])) -> std::io::Result<usize> {
        if self.taken < self.pending.len() {
            let n = (self.pending.len() - self.taken).min(max);
            sink(&self.pending[self.taken..self.taken + n]);
            self.taken += n;
            return Ok(n);
        }
        loop {
            match self.step(max, sink, None)? {
                Step::Data(0) => {}
                Step::Data(n) => return Ok(n),
                // Alerts or an answer to a key update: sent now if the socket takes them, else with the next
                // request.
                Step::Send => {
                    let _ = self.flush_some();
                }
                Step::Receive | Step::Writable => {
                    if self.receive()? == 0 {
                        return Ok(0);
                    }
                }
                Step::Closed => return Ok(0),
            }
        }
    }

    /// Encrypts all of `data` into the outgoing buffer (sent by [`TlsStream::flush_some`]).
    pub(super) fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        loop {
            // Plaintext that arrives first (none is expected) is kept for the next read.
            match self.step(0, &mut |_| {}, Some(data))? {
                Step::Writable => return Ok(data.len()),
                Step::Data(_) | Step::Send => {}
                Step::Receive => {
                    if self.receive()? == 0 {
                        return Err(ErrorKind::UnexpectedEof.into());
                    }
                }
                Step::Closed => return Err(ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// True while encrypted bytes wait to be sent.
    pub(super) fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// Sends some of the encrypted bytes waiting.
    pub(super) fn flush_some(&mut self) -> std::io::Result<()> {
        if !self.wants_write() {
            return Ok(());
        }
        let n = self.tcp.write(&self.outgoing[self.sent..])?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::WriteZero, "the broker takes no more bytes"));
        }
        self.sent += n;
        if self.sent == self.outgoing.len() {
            self.outgoing.clear();
            self.sent = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A server config with a self-signed certificate for 127.0.0.1, and a client config that trusts it.
    fn configs(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A rustls server on loopback (one connection) that reads a request of `request_len` bytes, then answers with `answer`
    /// written in pieces of the given sizes (each piece one write, so records of those sizes), a key update
    /// after the first piece (TLS 1.3), and closes the session; the request, when done.
    fn serve(
        server: Arc<rustls::ServerConfig>,
        request_len: usize,
        answer: Vec<u8>,
        pieces: Vec<usize>,
    ) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(server).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut request = vec![0u8; request_len];
            s.read_exact(&mut request).unwrap();
            let mut at = 0;
            for (i, &n) in pieces.iter().enumerate() {
                s.write_all(&answer[at..at + n]).unwrap();
                s.flush().unwrap();
                at += n;
                if i == 0 && s.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                    s.conn.refresh_traffic_keys().unwrap();
                }
            }
            s.write_all(&answer[at..]).unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
            request
        });
        (addr, handle)
    }

    fn connect(addr: &str, config: Arc<rustls::ClientConfig>) -> TlsStream {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut t = TlsStream::new(tcp, config, ServerName::try_from("127.0.0.1").unwrap().to_owned()).unwrap();
        loop {
            match t.handshake().unwrap() {
                Handshake::Done => return t,
                Handshake::Send => t.flush_some().unwrap(),
                Handshake::Receive => assert!(t.receive().unwrap() > 0, "the server closed the handshake"),
            }
        }
    }

    /// Reads exactly `n` bytes in reads of at most `max`, appended.
    fn read_exactly(t: &mut TlsStream, n: usize, max: usize, out: &mut Vec<u8>) {
        let end = out.len() + n;
        while out.len() < end {
            let want = max.min(end - out.len());
            let got = t.read_with(want, &mut |p| out.extend_from_slice(p)).unwrap();
            assert!(got > 0 && got <= want, "read {got} of {want}");
        }
    }

    #[test]
    fn a_large_request_and_an_answer_read_in_pieces_of_any_size_arrive_whole_over_tls_1_2_and_1_3() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            // More than the read buffer holds, in records of many sizes (1 byte to the 16 KiB maximum).
            let answer: Vec<u8> = (0..700_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
            let pieces = vec![4, 1, 16_384, 3, 100_000, 17, 20_000, 5, 300_000, 1];
            let (server_config, config) = configs(version);
            let (addr, server) = serve(server_config, 1_000_000, answer.clone(), pieces);
            let mut t = connect(&addr, config);
            // A request larger than a TLS record, as a big Produce is, and a small one after it.
            let request: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            assert_eq!(t.write(&request[..999_995]).unwrap(), 999_995);
            assert_eq!(t.write(&request[999_995..]).unwrap(), 5);
            while t.wants_write() {
                t.flush_some().unwrap();
            }
            // A frame's length first (4 bytes), then reads that end inside records and across them.
            let mut got = Vec::new();
            read_exactly(&mut t, 4, 4, &mut got);
            read_exactly(&mut t, 10, 3, &mut got);
            read_exactly(&mut t, 200_000, 200_000, &mut got);
            read_exactly(&mut t, 99_986, 1000, &mut got);
            read_exactly(&mut t, answer.len() - got.len(), usize::MAX, &mut got);
            assert!(got == answer, "the plaintext differs ({version:?})");
            // The server closed the session cleanly: the end, not an error.
            assert_eq!(t.read_with(10, &mut |_| panic!("no more data")).unwrap(), 0);
            assert!(server.join().unwrap() == request, "the server read another request");
        }
    }

    #[test]
    fn a_peer_that_is_not_tls_fails_the_handshake_with_rustls_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut hello = [0u8; 5];
            tcp.read_exact(&mut hello).unwrap();
            tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
            // Whatever the client sends next (its alert), then the end.
            let _ = tcp.read(&mut [0u8; 64]);
        });
        let (_, config) = configs(&rustls::version::TLS13);
        let tcp = TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut t = TlsStream::new(tcp, config, ServerName::try_from("127.0.0.1").unwrap().to_owned()).unwrap();
        let err = loop {
            match t.handshake() {
                Ok(Handshake::Done) => panic!("a handshake with a non-TLS peer"),
                Ok(Handshake::Send) => t.flush_some().unwrap(),
                Ok(Handshake::Receive) => {
                    if let Err(e) = t.receive() {
                        break e;
                    }
                }
                Err(e) => break e,
            }
        };
        assert!(err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).is_some(), "{err}");
        peer.join().unwrap();
    }
}
