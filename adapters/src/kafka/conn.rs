//! One connection to one broker, over TCP or TLS: framing, correlation ids, timeouts, API version negotiation
//! and SASL authentication (with re-authentication before the broker's session lifetime ends, KIP-368).

use super::error::{KafkaError, Result};
use super::pool::{BufferPool, MAX_IDLE_BYTES, MIN_POOLED};
use super::sasl::{oauthbearer_message, plain_message, Scram};
use super::security::{Mechanism, SaslCredentials, Security};
use super::tls::{Handshake, TlsStream};
use super::trace;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The API versions this client implements: (api, lowest, highest). Chosen so that every Kafka since 2.1,
/// Kafka 4.x (which dropped the oldest versions) and tansu share a version with us.
pub const IMPLEMENTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Metadata, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Produce, 3, 9),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
];

/// For each implemented API, the highest version both sides support, or what the broker offers as text.
/// `offered` holds (api key, min, max) as the broker's ApiVersions answer lists them.
pub fn choose_versions(offered: &[(i16, i16, i16)]) -> Vec<(ApiKey, std::result::Result<i16, String>)> {
    IMPLEMENTED
        .iter()
        .map(|&(key, min, max)| {
            let v = match offered.iter().find(|o| o.0 == key as i16) {
                Some(&(_, bmin, bmax)) if max.min(bmax) >= min.max(bmin) => Ok(max.min(bmax)),
                Some(&(_, bmin, bmax)) => Err(format!("{bmin}..={bmax}")),
                None => Err("nothing".to_string()),
            };
            (key, v)
        })
        .collect()
}

/// Largest response this client accepts (a sanity bound against garbage length prefixes).
const MAX_RESPONSE: usize = 512 << 20;

/// Timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// Waiting for a response beyond any wait the request itself asks for.
    pub request: Duration,
}

/// What ends a wait for a broker besides its answer: a flag (e.g. set by Ctrl-C) and a point in time that caps
/// every request's own deadline (e.g. the end of a retry period).
#[derive(Debug, Clone, Default)]
pub struct WaitBounds {
    /// Once set, a request that has waited for the broker for a second or more fails with
    /// [`KafkaError::Interrupted`] (within 50 ms).
    pub interrupt: Option<Arc<AtomicBool>>,
    /// No request waits beyond this.
    pub until: Option<Instant>,
}

impl WaitBounds {
    fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// How often a wait for a broker looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(50);

/// How long an exchange may go on after the interrupt flag is set before it is cut short: a healthy broker has
/// answered by then.
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

/// The byte stream to a broker: TCP, or TLS over TCP. An enum, so that the plaintext path stays a direct call.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.tcp,
        }
    }

    /// Reads what is there (TLS: decrypting records as they come); WouldBlock/TimedOut when the socket's timeout
    /// passed first.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read_with(buf.len(), &mut |p| buf[..p.len()].copy_from_slice(p)),
        }
    }

    /// Writes some of `buf` (TLS: encrypts it all into the session's buffer, sent by [`Stream::flush_some`]).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    /// True while encrypted bytes wait to be sent.
    fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.wants_write(),
        }
    }

    /// Sends some of the encrypted bytes waiting.
    fn flush_some(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.flush_some(),
        }
    }
}

/// A connection to one broker with negotiated API versions, authenticated if SASL is on.
pub struct Connection {
    addr: String,
    stream: Stream,
    timeouts: Timeouts,
    bounds: WaitBounds,
    /// The socket's read and write timeouts as last set (setting them is a system call).
    socket_timeouts: (Option<Duration>, Option<Duration>),
    correlation: i32,
    client_id: StrBytes,
    versions: Vec<(ApiKey, std::result::Result<i16, String>)>,
    out: BytesMut,
    /// A request sent with [`Connection::send`] whose response was not read yet: its correlation id.
    in_flight: Option<i32>,
    /// Every (api key, min, max) the broker's ApiVersions answer offers.
    offered: Vec<(i16, i16, i16)>,
    security: Security,
    /// When to authenticate again (SASL with a session lifetime): somewhat before the broker's session ends.
    reauth_at: Option<Instant>,
    /// Times this connection authenticated again.
    reauthentications: u64,
    /// Buffers for large answers, used again once an answer's records are dropped.
    pool: Arc<BufferPool>,
}

/// A short name of an API for messages.
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Metadata => "Metadata",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Fetch => "Fetch",
        ApiKey::Produce => "Produce",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        _ => "request",
    }
}

impl Connection {
    /// Connects to `addr` (HOST:PORT) in plaintext and negotiates API versions, within `bounds`.
    pub fn connect(addr: &str, client_id: &str, timeouts: Timeouts, bounds: WaitBounds) -> Result<Connection> {
        Self::connect_secure(addr, client_id, timeouts, bounds, &Security::default())
    }

    /// Connects to `addr` (HOST:PORT), with TLS and SASL as `security` says, and negotiates API versions, within
    /// `bounds`. The TLS handshake must be done within the connect timeout.
    pub fn connect_secure(
        addr: &str,
        client_id: &str,
        timeouts: Timeouts,
        bounds: WaitBounds,
        security: &Security,
    ) -> Result<Connection> {
        let unreachable = |source| KafkaError::Unreachable { addr: addr.to_string(), source };
        if addr.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err(KafkaError::BadAddress { addr: addr.to_string() });
        }
        let sockaddrs: Vec<_> = addr.to_socket_addrs().map_err(unreachable)?.collect();
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the name resolved to no address");
        let mut stream = None;
        for sa in sockaddrs {
            let left = bounds.until.map_or(timeouts.connect, |u| u.saturating_duration_since(Instant::now()));
            match TcpStream::connect_timeout(&sa, timeouts.connect.min(left).max(Duration::from_millis(1))) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| unreachable(last))?;
        stream.set_nodelay(true).map_err(unreachable)?;
        let stream = match security.tls() {
            None => Stream::Plain(stream),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| KafkaError::Tls {
                    addr: addr.to_string(),
                    reason: format!("{host:?} is not a host name a certificate can be checked against"),
                })?;
                let tls = TlsStream::new(stream, config.clone(), name)
                    .map_err(|e| KafkaError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
                Stream::Tls(Box::new(tls))
            }
        };
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            timeouts,
            bounds,
            socket_timeouts: (None, None),
            correlation: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            versions: Vec::new(),
            out: BytesMut::with_capacity(4096),
            in_flight: None,
            offered: Vec::new(),
            security: security.clone(),
            reauth_at: None,
            reauthentications: 0,
            pool: BufferPool::new(MAX_IDLE_BYTES),
        };
        conn.handshake()?;
        conn.negotiate()?;
        conn.authenticate()?;
        Ok(conn)
    }

    /// The TLS handshake, if TLS is on, within the connect timeout.
    fn handshake(&mut self) -> Result<()> {
        let start = Instant::now();
        let own = start + self.timeouts.connect;
        let deadline = Deadline { start, at: self.bounds.until.map_or(own, |u| u.min(own)) };
        loop {
            let Stream::Tls(t) = &mut self.stream else { return Ok(()) };
            let writing = match t.handshake() {
                Ok(Handshake::Done) => {
                    if trace::enabled() {
                        trace::line(format_args!("TLS with {}: {}", self.addr, t.negotiated()));
                    }
                    return Ok(());
                }
                Ok(Handshake::Send) => true,
                Ok(Handshake::Receive) => false,
                Err(e) => return Err(self.handshake_failure(e)),
            };
            if let Err(e) = self.arm(ApiKey::ApiVersions, &deadline, !writing, 0) {
                return Err(match e {
                    KafkaError::Timeout { secs, .. } => KafkaError::TlsHandshakeCut {
                        addr: self.addr.clone(),
                        what: format!("no TLS handshake answer in {secs:.1} s"),
                    },
                    e => e,
                });
            }
            let Stream::Tls(t) = &mut self.stream else { return Ok(()) };
            let step = if writing {
                t.flush_some()
            } else {
                t.receive().and_then(|n| match n {
                    0 => Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed")),
                    _ => Ok(()),
                })
            };
            match step {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(self.handshake_failure(e)),
            }
        }
    }

    /// A failure during the TLS handshake as an error.
    fn handshake_failure(&self, e: std::io::Error) -> KafkaError {
        if e.kind() == ErrorKind::UnexpectedEof {
            return KafkaError::TlsHandshakeCut {
                addr: self.addr.clone(),
                what: "the broker closed the connection during the TLS handshake".into(),
            };
        }
        self.io_failure(e)
    }

    /// An I/O failure as an error: a TLS failure in words, else a lost connection.
    fn io_failure(&self, source: std::io::Error) -> KafkaError {
        match source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(e) => KafkaError::Tls { addr: self.addr.clone(), reason: tls_reason(e) },
            None => KafkaError::ConnectionLost { addr: self.addr.clone(), source },
        }
    }

    /// The highest version of `key` within `min..=max` that the broker offers.
    fn offered_version(&self, key: ApiKey, min: i16, max: i16) -> Result<i16> {
        match self.offered.iter().find(|o| o.0 == key as i16) {
            Some(&(_, bmin, bmax)) if max.min(bmax) >= min.max(bmin) => Ok(max.min(bmax)),
            found => Err(KafkaError::UnsupportedVersion {
                addr: self.addr.clone(),
                api: api_name(key),
                min,
                max,
                offered: found.map_or("nothing".into(), |&(_, a, b)| format!("{a}..={b}")),
            }),
        }
    }

    /// Authenticates with SASL, if SASL is on: SaslHandshake v1, then SaslAuthenticate with the mechanism's
    /// messages. Notes when to authenticate again if the broker gives the session a lifetime.
    fn authenticate(&mut self) -> Result<()> {
        let Some(creds) = self.security.sasl().cloned() else { return Ok(()) };
        let started = Instant::now();
        let fail = |addr: &str, reason: String| KafkaError::Authentication {
            addr: addr.to_string(),
            mechanism: creds.mechanism.name(),
            reason,
        };
        let handshake_v = self.offered_version(ApiKey::SaslHandshake, 1, 1)?;
        let authenticate_v = self.offered_version(ApiKey::SaslAuthenticate, 0, 2)?;
        let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(creds.mechanism.name()));
        let resp: SaslHandshakeResponse =
            self.exchange_now(ApiKey::SaslHandshake, &req, handshake_v, Duration::ZERO)?;
        match ResponseError::try_from_code(resp.error_code) {
            None => {}
            Some(ResponseError::UnsupportedSaslMechanism) => {
                let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
                return Err(fail(
                    &self.addr,
                    format!("the broker does not enable it (it enables {})", enabled.join(", ")),
                ));
            }
            Some(e) => return Err(fail(&self.addr, format!("the broker refused the handshake: {e}"))),
        }
        let last = match creds.mechanism {
            Mechanism::Plain => self.sasl_step(&creds, authenticate_v, plain_message(&creds))?,
            Mechanism::OAuthBearer => {
                let token = creds.current_token().map_err(|reason| fail(&self.addr, reason))?;
                let resp = self.sasl_step(&creds, authenticate_v, oauthbearer_message(token.expose()))?;
                if !resp.auth_bytes.is_empty() {
                    // A refusal comes as a JSON status first (RFC 7628 3.2.2); the client answers 0x01 and the
                    // broker then fails the exchange.
                    let status = String::from_utf8_lossy(&resp.auth_bytes).into_owned();
                    let reason = match self.sasl_step(&creds, authenticate_v, vec![1]) {
                        Err(KafkaError::Authentication { reason, .. }) => reason,
                        Err(e) => return Err(e),
                        Ok(_) => String::new(),
                    };
                    let reason = if reason.contains(&status) { reason } else { format!("{status}: {reason}") };
                    return Err(fail(&self.addr, format!("the broker refused the token: {reason}")));
                }
                resp
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut scram =
                    Scram::new(&creds).map_err(|r| fail(&self.addr, r))?.with_keys(self.security.scram_keys().clone());
                let first = self.sasl_step(&creds, authenticate_v, scram.client_first())?;
                let client_final = scram.client_final(&first.auth_bytes).map_err(|r| fail(&self.addr, r))?;
                let last = self.sasl_step(&creds, authenticate_v, client_final)?;
                scram.verify_server_final(&last.auth_bytes).map_err(|r| fail(&self.addr, r))?;
                last
            }
        };
        // Again when 85% of the lifetime has passed (as Kafka's own client, which picks 85-95%).
        self.reauth_at = (last.session_lifetime_ms > 0)
            .then(|| started + Duration::from_millis(last.session_lifetime_ms as u64 * 85 / 100));
        Ok(())
    }

    /// One SaslAuthenticate exchange; the request's bytes are wiped from the send buffer after it.
    fn sasl_step(&mut self, creds: &SaslCredentials, version: i16, bytes: Vec<u8>) -> Result<SaslAuthenticateResponse> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let resp =
            self.exchange_now::<_, SaslAuthenticateResponse>(ApiKey::SaslAuthenticate, &req, version, Duration::ZERO);
        self.out.iter_mut().for_each(|b| *b = 0);
        let resp = resp?;
        if resp.error_code != 0 {
            let error = ResponseError::try_from_code(resp.error_code)
                .map_or_else(|| format!("error code {}", resp.error_code), |e| e.to_string());
            let reason = match resp.error_message.as_ref().map(|m| m.as_str()).filter(|m| !m.is_empty()) {
                Some(m) => format!("{m} ({error})"),
                None => error,
            };
            return Err(KafkaError::Authentication {
                addr: self.addr.clone(),
                mechanism: creds.mechanism.name(),
                reason,
            });
        }
        Ok(resp)
    }

    /// Authenticates again if the session's re-authentication time has come (no request is in flight then).
    fn reauthenticate_if_due(&mut self) -> Result<()> {
        match self.reauth_at {
            Some(at) if Instant::now() >= at => {
                self.reauth_at = None;
                self.authenticate()?;
                self.reauthentications += 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// How this connection is secured and what the broker offers on it.
    pub fn info(&self) -> ConnectionInfo {
        let (tls, certificate) = match &self.stream {
            Stream::Tls(t) => (Some(t.negotiated()), t.peer_certificate().and_then(CertificateInfo::of)),
            Stream::Plain(_) => (None, None),
        };
        ConnectionInfo {
            addr: self.addr.clone(),
            protocol: self.security.protocol().name(),
            tls,
            certificate,
            sasl: self.security.sasl().map(|s| (s.mechanism.name(), s.username.clone())),
            apis: self.offered.len(),
        }
    }

    /// How many times this connection authenticated again (KIP-368) since it was opened.
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications
    }

    /// Sets what ends the waits of the requests from now on besides their own deadlines.
    pub fn set_bounds(&mut self, bounds: WaitBounds) {
        self.bounds = bounds;
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The negotiated version of `key`, or `UnsupportedVersion`.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        let (min, max) = IMPLEMENTED.iter().find(|i| i.0 == key).map(|i| (i.1, i.2)).unwrap_or((0, -1));
        match self.versions.iter().find(|v| v.0 == key) {
            Some((_, Ok(v))) => Ok(*v),
            Some((_, Err(offered))) => Err(KafkaError::UnsupportedVersion {
                addr: self.addr.clone(),
                api: api_name(key),
                min,
                max,
                offered: offered.clone(),
            }),
            None => Err(KafkaError::UnsupportedVersion {
                addr: self.addr.clone(),
                api: api_name(key),
                min,
                max,
                offered: "nothing".into(),
            }),
        }
    }

    fn negotiate(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("dstream"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = match self.exchange_now(ApiKey::ApiVersions, &req, 3, Duration::ZERO) {
            Ok(r) => r,
            // A broker older than ApiVersions v3 answers in the v0 format: ask again in v0.
            Err(KafkaError::Protocol { .. }) => {
                self.exchange_now(ApiKey::ApiVersions, &ApiVersionsRequest::default(), 0, Duration::ZERO)?
            }
            Err(e) => return Err(e),
        };
        if resp.error_code != 0 {
            return Err(KafkaError::Protocol {
                addr: self.addr.clone(),
                api: "ApiVersions",
                reason: format!("error code {}", resp.error_code),
            });
        }
        self.offered = resp.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        self.versions = choose_versions(&self.offered);
        Ok(())
    }

    /// Sends `req` at the negotiated `version` and waits for its response, at most the request timeout plus
    /// `extra_wait` (the time the request itself asks the broker to wait).
    pub fn request<R: Request>(&mut self, req: &R, version: i16, extra_wait: Duration) -> Result<R::Response> {
        let key = Self::key_of::<R>(&self.addr)?;
        self.exchange(key, req, version, extra_wait)
    }

    /// Sends `req` at the negotiated `version` without waiting; [`Connection::receive`] reads its response. Lets
    /// the caller work while the broker prepares the answer. A response never read is skipped by the next request.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        let key = Self::key_of::<R>(&self.addr)?;
        self.skip_in_flight(key)?;
        self.reauthenticate_if_due()?;
        self.write_request(key, req, version)?;
        self.in_flight = Some(self.correlation);
        Ok(())
    }

    /// Reads the response to the request [`Connection::send`] sent, waiting at most the request timeout plus
    /// `extra_wait`.
    pub fn receive<R: Request>(&mut self, version: i16, extra_wait: Duration) -> Result<R::Response> {
        let key = Self::key_of::<R>(&self.addr)?;
        let correlation = self.in_flight.take().ok_or_else(|| KafkaError::Protocol {
            addr: self.addr.clone(),
            api: api_name(key),
            reason: "no request is waiting for its response".into(),
        })?;
        let deadline = self.deadline(extra_wait);
        self.read_response_by(key, version, correlation, deadline)
    }

    fn key_of<R: Request>(addr: &str) -> Result<ApiKey> {
        ApiKey::try_from(R::KEY).map_err(|_| KafkaError::Protocol {
            addr: addr.to_string(),
            api: "request",
            reason: format!("unknown api key {}", R::KEY),
        })
    }

    /// Reads and drops the response of a request sent but never received, so the next response read is ours.
    fn skip_in_flight(&mut self, key: ApiKey) -> Result<()> {
        if self.in_flight.take().is_some() {
            let deadline = self.deadline(Duration::ZERO);
            self.read_frame(key, &deadline)?;
        }
        Ok(())
    }

    fn exchange<Q: Encodable, S: Decodable>(
        &mut self,
        key: ApiKey,
        req: &Q,
        version: i16,
        extra_wait: Duration,
    ) -> Result<S> {
        self.skip_in_flight(key)?;
        self.reauthenticate_if_due()?;
        self.exchange_now(key, req, version, extra_wait)
    }

    /// As [`Connection::exchange`], with nothing in flight and no re-authentication first.
    fn exchange_now<Q: Encodable, S: Decodable>(
        &mut self,
        key: ApiKey,
        req: &Q,
        version: i16,
        extra_wait: Duration,
    ) -> Result<S> {
        // One deadline for the whole exchange: sending the request and receiving all of its answer.
        let deadline = self.deadline(extra_wait);
        self.write_request_by(key, req, version, deadline)?;
        self.read_response_by(key, version, self.correlation, deadline)
    }

    /// When a request sent now must be answered: the request timeout plus `extra_wait` from now, or the bounds'
    /// end if that comes first.
    fn deadline(&self, extra_wait: Duration) -> Deadline {
        let start = Instant::now();
        let own = start + self.timeouts.request + extra_wait;
        let at = self.bounds.until.map_or(own, |u| u.min(own));
        Deadline { start, at }
    }

    /// Waits until the socket may be read or written (`read`) or the deadline passed or the interrupt flag is set:
    /// sets the socket's timeout to what is left, in slices of [`POLL`] so that the flag is seen.
    fn arm(&mut self, key: ApiKey, deadline: &Deadline, read: bool, received: usize) -> Result<()> {
        // A stop request lets an exchange being answered finish (a running batch's fetch completes): it ends
        // only a wait that has gone on for a while.
        if self.bounds.interrupted() && deadline.start.elapsed() >= INTERRUPT_GRACE {
            return Err(KafkaError::Interrupted { addr: self.addr.clone(), api: api_name(key) });
        }
        let left = deadline.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KafkaError::Timeout {
                addr: self.addr.clone(),
                api: api_name(key),
                secs: (deadline.at - deadline.start).as_secs_f64(),
                received,
            });
        }
        // Polling only matters with a flag to look at.
        let slice = if self.bounds.interrupt.is_some() { left.min(POLL) } else { left };
        // Timeouts are set in whole milliseconds, rounded up (a zero timeout means none).
        let slice = Some(Duration::from_millis(slice.as_millis().max(1) as u64));
        let current = if read { &mut self.socket_timeouts.0 } else { &mut self.socket_timeouts.1 };
        if *current != slice {
            let tcp = self.stream.tcp();
            let set = if read { tcp.set_read_timeout(slice) } else { tcp.set_write_timeout(slice) };
            set.map_err(|source| KafkaError::ConnectionLost { addr: self.addr.clone(), source })?;
            *current = slice;
        }
        Ok(())
    }

    /// Fills `buf` from the socket by the deadline; `before` bytes of the answer came earlier (for messages).
    fn read_by(&mut self, key: ApiKey, buf: &mut [u8], deadline: &Deadline, before: usize) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            self.arm(key, deadline, true, before + filled)?;
            let read = self.stream.read(&mut buf[filled..]);
            filled += self.read_outcome(read)?;
        }
        Ok(())
    }

    fn write_request<Q: Encodable>(&mut self, key: ApiKey, req: &Q, version: i16) -> Result<()> {
        let deadline = self.deadline(Duration::ZERO);
        self.write_request_by(key, req, version, deadline)
    }

    fn write_request_by<Q: Encodable>(&mut self, key: ApiKey, req: &Q, version: i16, deadline: Deadline) -> Result<()> {
        let api = api_name(key);
        let protocol = |addr: &str, reason: String| KafkaError::Protocol { addr: addr.to_string(), api, reason };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        self.out.clear();
        self.out.put_i32(0);
        header
            .encode(&mut self.out, key.request_header_version(version))
            .and_then(|_| req.encode(&mut self.out, version))
            .map_err(|e| protocol(&self.addr, format!("cannot encode request v{version}: {e}")))?;
        let len = (self.out.len() - 4) as i32;
        self.out[..4].copy_from_slice(&len.to_be_bytes());

        let mut written = 0;
        while written < self.out.len() {
            self.arm(key, &deadline, false, 0)?;
            match self.stream.write(&self.out[written..]) {
                Ok(0) => {
                    let source = std::io::Error::new(ErrorKind::WriteZero, "the broker takes no more bytes");
                    return Err(KafkaError::ConnectionLost { addr: self.addr.clone(), source });
                }
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(source) => return Err(self.io_failure(source)),
            }
        }
        // TLS: the encrypted request still has to go out.
        while self.stream.wants_write() {
            self.arm(key, &deadline, false, 0)?;
            match self.stream.flush_some() {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(source) => return Err(self.io_failure(source)),
            }
        }
        if trace::enabled() {
            let (addr, n, c) = (&self.addr, self.out.len(), self.correlation);
            trace::line(format_args!("sent {api} v{version} #{c} to {addr}: {n} bytes"));
        }
        Ok(())
    }

    /// Reads one length-prefixed response frame, whole, by the deadline.
    fn read_frame(&mut self, key: ApiKey, deadline: &Deadline) -> Result<Bytes> {
        if trace::enabled() {
            trace::line(format_args!("wait for the answer of {} from {}", api_name(key), self.addr));
        }
        let mut len_buf = [0u8; 4];
        self.read_by(key, &mut len_buf, deadline, 0)?;
        if len_buf[0] == 0x15 && len_buf[1] == 0x03 {
            return Err(KafkaError::AuthenticationRequired {
                addr: self.addr.clone(),
                how: "it answered with a TLS alert",
            });
        }
        let n = i32::from_be_bytes(len_buf);
        if n < 4 || n as usize > MAX_RESPONSE {
            return Err(KafkaError::Protocol {
                addr: self.addr.clone(),
                api: api_name(key),
                reason: format!("response length {n} out of bounds"),
            });
        }
        if trace::enabled() {
            trace::line(format_args!("answer of {} from {} begins: {n} bytes", api_name(key), self.addr));
        }
        let n = n as usize;
        let body = if let Stream::Tls(_) = &self.stream {
            // TLS: each record's plaintext put where it belongs (in a buffer used again, for a large answer), the
            // buffer not zeroed first.
            if n >= MIN_POOLED {
                let mut buf = self.pool.take(n);
                let mut at = 0;
                while at < n {
                    self.arm(key, deadline, true, 4 + at)?;
                    let Stream::Tls(t) = &mut self.stream else { unreachable!("the stream does not change") };
                    let slice = buf.as_mut_slice();
                    let read = t.read_with(n - at, &mut |p| {
                        slice[at..at + p.len()].copy_from_slice(p);
                        at += p.len();
                    });
                    self.read_outcome(read)?;
                }
                buf.freeze()
            } else {
                let mut body = BytesMut::with_capacity(n);
                while body.len() < n {
                    self.arm(key, deadline, true, 4 + body.len())?;
                    let Stream::Tls(t) = &mut self.stream else { unreachable!("the stream does not change") };
                    let read = t.read_with(n - body.len(), &mut |p| body.extend_from_slice(p));
                    self.read_outcome(read)?;
                }
                body.freeze()
            }
        } else if n >= MIN_POOLED {
            // Large answers (fetched records) in a buffer used again once the records are done with.
            let mut buf = self.pool.take(n);
            self.read_by(key, buf.as_mut_slice(), deadline, 4)?;
            buf.freeze()
        } else {
            let mut body = BytesMut::zeroed(n);
            self.read_by(key, &mut body, deadline, 4)?;
            body.freeze()
        };
        if trace::enabled() {
            trace::line(format_args!("answer of {} from {} read", api_name(key), self.addr));
        }
        Ok(body)
    }

    /// What one read from the socket came to: the bytes read (0 if its timeout passed first), or the failure.
    fn read_outcome(&self, read: std::io::Result<usize>) -> Result<usize> {
        match read {
            Ok(0) => {
                let source = std::io::Error::new(ErrorKind::UnexpectedEof, "the broker closed the connection");
                Err(KafkaError::ConnectionLost { addr: self.addr.clone(), source })
            }
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => Ok(0),
            Err(source) => Err(self.io_failure(source)),
        }
    }

    fn read_response_by<S: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation: i32,
        deadline: Deadline,
    ) -> Result<S> {
        let api = api_name(key);
        let protocol = |addr: &str, reason: String| KafkaError::Protocol { addr: addr.to_string(), api, reason };
        let mut body = self.read_frame(key, &deadline)?;
        let rh = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| protocol(&self.addr, format!("bad header: {e}")))?;
        if rh.correlation_id != correlation {
            return Err(protocol(
                &self.addr,
                format!("correlation id {} where {} was expected", rh.correlation_id, correlation),
            ));
        }
        S::decode(&mut body, version).map_err(|e| protocol(&self.addr, format!("cannot decode v{version}: {e}")))
    }
}

/// How a connection is secured and what the broker offers on it ([`Connection::info`]); no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The broker's address.
    pub addr: String,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: &'static str,
    /// TLS: the version and cipher suite agreed, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384`.
    pub tls: Option<String>,
    /// TLS: the broker's certificate.
    pub certificate: Option<CertificateInfo>,
    /// SASL: the mechanism and the user authenticated as (empty for OAUTHBEARER).
    pub sasl: Option<(&'static str, String)>,
    /// How many APIs the broker offers (its ApiVersions answer).
    pub apis: usize,
}

/// A certificate's names and end of validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject, e.g. `CN=broker`.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
    /// The end of its validity, seconds since 1970 (UTC).
    pub not_after: i64,
}

impl CertificateInfo {
    /// The names and validity of a DER certificate; `None` if it cannot be parsed.
    pub fn of(der: &[u8]) -> Option<CertificateInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(CertificateInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// A TLS failure in words a person can act on.
fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => "the broker's certificate is not signed by a trusted CA (give its \
                                                    CA's PEM file in ssl.ca.location)"
            .into(),
        E::InvalidCertificate(c @ (C::NotValidForName | C::NotValidForNameContext { .. })) => format!(
            "the broker's certificate does not name the host connected to ({}; fix the broker address, or, \
             insecurely, set ssl.endpoint.identification.algorithm= to skip the check)",
            E::InvalidCertificate(c.clone())
        ),
        E::InvalidCertificate(c @ (C::Expired | C::ExpiredContext { .. })) => {
            format!("the broker's certificate has expired ({})", E::InvalidCertificate(c.clone()))
        }
        E::InvalidCertificate(c @ (C::NotValidYet | C::NotValidYetContext { .. })) => {
            format!("the broker's certificate is not valid yet ({})", E::InvalidCertificate(c.clone()))
        }
        E::InvalidCertificate(c) => {
            format!("the broker's certificate is refused: {}", E::InvalidCertificate(c.clone()))
        }
        E::AlertReceived(
            a @ (A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::AccessDenied),
        ) => format!(
            "the broker refused the TLS handshake ({a:?} alert): it wants a client certificate it trusts \
             (ssl.certificate.location, ssl.key.location)"
        ),
        E::AlertReceived(a @ (A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity)) => format!(
            "the broker refused the TLS handshake ({a:?} alert): most likely no TLS version or cipher suite is \
             acceptable to both (compare ssl.enabled.protocols, ssl.protocol and ssl.cipher.suites with the broker's)"
        ),
        E::AlertReceived(a) => format!("the broker refused the TLS handshake ({a:?} alert)"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            format!("the broker does not answer in TLS ({e}): is this a plaintext listener? (check security.protocol)")
        }
        e => format!("TLS failed: {e}"),
    }
}

/// When an exchange started and when it must be done.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    start: Instant,
    at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_highest_both_support() {
        // tansu's offer, a Kafka 4 offer (old versions removed), and a broker too old for us.
        let tansu = [(0, 0, 11), (1, 0, 17), (2, 0, 9), (3, 0, 12), (19, 0, 7)];
        let v = choose_versions(&tansu);
        assert_eq!(
            v,
            vec![
                (ApiKey::Metadata, Ok(12)),
                (ApiKey::ListOffsets, Ok(7)),
                (ApiKey::Fetch, Ok(12)),
                (ApiKey::Produce, Ok(9)),
                (ApiKey::CreateTopics, Ok(7)),
                (ApiKey::OffsetForLeaderEpoch, Err("nothing".into())),
            ]
        );
        let kafka4 = [(0, 3, 12), (1, 4, 17), (2, 1, 10), (3, 0, 13), (19, 2, 7), (23, 2, 4)];
        assert!(choose_versions(&kafka4).iter().all(|(_, v)| v.is_ok()));
        let old = [(0, 0, 2), (1, 0, 3), (3, 0, 1)];
        let v = choose_versions(&old);
        assert_eq!(v[0], (ApiKey::Metadata, Err("0..=1".into())));
        assert_eq!(v[2], (ApiKey::Fetch, Err("0..=3".into())));
        assert_eq!(v[4], (ApiKey::CreateTopics, Err("nothing".into())));
    }
}
