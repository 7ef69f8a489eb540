//! One TCP connection to one broker: framing, correlation ids, timeouts and API version negotiation.

use super::error::{KafkaError, Result};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The API versions this client implements: (api, lowest, highest). Chosen so that every Kafka since 2.1,
/// Kafka 4.x (which dropped the oldest versions) and tansu share a version with us.
pub const IMPLEMENTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Metadata, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Produce, 3, 9),
    (ApiKey::CreateTopics, 2, 7),
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

/// A connection to one broker with negotiated API versions.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    timeouts: Timeouts,
    correlation: i32,
    client_id: StrBytes,
    versions: Vec<(ApiKey, std::result::Result<i16, String>)>,
    out: BytesMut,
    /// A request sent with [`Connection::send`] whose response was not read yet: its correlation id.
    in_flight: Option<i32>,
}

/// A short name of an API for messages.
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Metadata => "Metadata",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Fetch => "Fetch",
        ApiKey::Produce => "Produce",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::ApiVersions => "ApiVersions",
        _ => "request",
    }
}

impl Connection {
    /// Connects to `addr` (HOST:PORT) and negotiates API versions.
    pub fn connect(addr: &str, client_id: &str, timeouts: Timeouts) -> Result<Connection> {
        let unreachable = |source| KafkaError::Unreachable { addr: addr.to_string(), source };
        if addr.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err(KafkaError::BadAddress { addr: addr.to_string() });
        }
        let sockaddrs: Vec<_> = addr.to_socket_addrs().map_err(unreachable)?.collect();
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the name resolved to no address");
        let mut stream = None;
        for sa in sockaddrs {
            match TcpStream::connect_timeout(&sa, timeouts.connect) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| unreachable(last))?;
        stream.set_nodelay(true).map_err(unreachable)?;
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            timeouts,
            correlation: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            versions: Vec::new(),
            out: BytesMut::with_capacity(4096),
            in_flight: None,
        };
        conn.negotiate()?;
        Ok(conn)
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
        let resp: ApiVersionsResponse = match self.exchange(ApiKey::ApiVersions, &req, 3, Duration::ZERO) {
            Ok(r) => r,
            // A broker older than ApiVersions v3 answers in the v0 format: ask again in v0.
            Err(KafkaError::Protocol { .. }) => {
                self.exchange(ApiKey::ApiVersions, &ApiVersionsRequest::default(), 0, Duration::ZERO)?
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
        let offered: Vec<(i16, i16, i16)> =
            resp.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        self.versions = choose_versions(&offered);
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
        self.read_response(key, version, correlation, extra_wait)
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
            self.read_frame(key, Duration::ZERO)?;
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
        self.write_request(key, req, version)?;
        self.read_response(key, version, self.correlation, extra_wait)
    }

    fn write_request<Q: Encodable>(&mut self, key: ApiKey, req: &Q, version: i16) -> Result<()> {
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

        let lost = |addr: &str, source: std::io::Error| KafkaError::ConnectionLost { addr: addr.to_string(), source };
        self.stream.set_write_timeout(Some(self.timeouts.request)).map_err(|e| lost(&self.addr, e))?;
        self.stream.write_all(&self.out).map_err(|e| lost(&self.addr, e))
    }

    /// Reads one length-prefixed response frame.
    fn read_frame(&mut self, key: ApiKey, extra_wait: Duration) -> Result<BytesMut> {
        let lost = |addr: &str, source: std::io::Error| KafkaError::ConnectionLost { addr: addr.to_string(), source };
        self.stream.set_read_timeout(Some(self.timeouts.request + extra_wait)).map_err(|e| lost(&self.addr, e))?;
        let mut len_buf = [0u8; 4];
        self.stream.read_exact(&mut len_buf).map_err(|e| lost(&self.addr, e))?;
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
        let mut body = BytesMut::zeroed(n as usize);
        self.stream.read_exact(&mut body).map_err(|e| lost(&self.addr, e))?;
        Ok(body)
    }

    fn read_response<S: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation: i32,
        extra_wait: Duration,
    ) -> Result<S> {
        let api = api_name(key);
        let protocol = |addr: &str, reason: String| KafkaError::Protocol { addr: addr.to_string(), api, reason };
        let mut body = self.read_frame(key, extra_wait)?.freeze();
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
            ]
        );
        let kafka4 = [(0, 3, 12), (1, 4, 17), (2, 1, 10), (3, 0, 13), (19, 2, 7)];
        assert!(choose_versions(&kafka4).iter().all(|(_, v)| v.is_ok()));
        let old = [(0, 0, 2), (1, 0, 3), (3, 0, 1)];
        let v = choose_versions(&old);
        assert_eq!(v[0], (ApiKey::Metadata, Err("0..=1".into())));
        assert_eq!(v[2], (ApiKey::Fetch, Err("0..=3".into())));
        assert_eq!(v[4], (ApiKey::CreateTopics, Err("nothing".into())));
    }
}
