//! A small HTTP/1.1 server on `std::net`: one thread accepts, a few answer; every connection carries one request
//! and is closed after the answer. Requests are bounded: [`MAX_HEAD`] bytes of request line and headers,
//! [`MAX_HEADERS`] headers, [`HEAD_TIMEOUT`] from being accepted to send them (waiting for a worker included),
//! [`WRITE_TIMEOUT`] to take the answer; what follows the head is drained for at most a second (64 KiB) before
//! closing. Connections beyond what the workers and their queue hold are closed at once.

use super::render;
use super::UiData;
use crossbeam_channel::{bounded, Receiver, TrySendError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes of request line and headers.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most header lines.
pub(crate) const MAX_HEADERS: usize = 64;
/// Time a client has, from when it was accepted, to send the request line and headers.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, and how many bytes, a closing connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// Threads answering requests.
const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; more are closed at once.
const QUEUE: usize = 64;

/// Starts the accepting thread and the workers.
pub(crate) fn spawn(
    listener: TcpListener,
    data: Arc<Mutex<UiData>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let (tx, rx) = bounded::<(TcpStream, Instant)>(QUEUE);
    for i in 0..WORKERS {
        let rx = rx.clone();
        let data = data.clone();
        std::thread::Builder::new().name(format!("dstream-ui-{i}")).spawn(move || worker(rx, data))?;
    }
    std::thread::Builder::new().name("dstream-ui-accept".into()).spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            match tx.try_send((conn, Instant::now() + HEAD_TIMEOUT)) {
                Ok(()) => {}
                // Too many connections waiting: this one is closed (dropped) unanswered.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
    })
}

fn worker(rx: Receiver<(TcpStream, Instant)>, data: Arc<Mutex<UiData>>) {
    for (mut conn, deadline) in rx {
        let _ = serve_one(&mut conn, deadline, &data);
    }
}

/// A request's method and target.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
}

/// Why a request was refused before routing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadRequest {
    /// The connection closed, failed or timed out before the headers ended: nothing is answered.
    Gone,
    /// Answered with this status.
    Status(u16, &'static str),
}

/// Reads a request line and headers from `conn`, within the limits, by `deadline`.
pub(crate) fn read_request(conn: &mut impl ReadTimeout, deadline: Instant) -> Result<Request, BadRequest> {
    let mut buf = [0u8; MAX_HEAD];
    let mut len = 0;
    let end = loop {
        if let Some(i) = find_end(&buf[..len]) {
            break i;
        }
        if len == buf.len() {
            return Err(BadRequest::Status(431, "Request Header Fields Too Large"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BadRequest::Gone);
        }
        conn.set_timeout(left).map_err(|_| BadRequest::Gone)?;
        match conn.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return Err(BadRequest::Gone),
            Ok(n) => len += n,
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| BadRequest::Status(400, "Bad Request"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    if lines.count() > MAX_HEADERS {
        return Err(BadRequest::Status(431, "Request Header Fields Too Large"));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Status(400, "Bad Request"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(BadRequest::Status(400, "Bad Request"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request { method: method.to_string(), path: path.to_string(), query: query.to_string() })
}

/// Where the head ends (the index of its blank line).
fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// A stream whose read timeout can be set.
pub(crate) trait ReadTimeout: Read {
    /// Sets the read timeout.
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// An answer.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response { status: 200, reason: "OK", content_type, body: body.into() }
    }
    pub(crate) fn error(status: u16, reason: &'static str) -> Self {
        Response { status, reason, content_type: "text/plain; charset=utf-8", body: format!("{reason}\n").into() }
    }
}

fn serve_one(conn: &mut TcpStream, deadline: Instant, data: &Mutex<UiData>) -> std::io::Result<()> {
    let response = match read_request(conn, deadline) {
        Err(BadRequest::Gone) => return Ok(()),
        Err(BadRequest::Status(status, reason)) => Response::error(status, reason),
        Ok(req) if req.method != "GET" && req.method != "HEAD" => Response::error(405, "Method Not Allowed"),
        // Rendered under the lock, written after it is released.
        Ok(req) => {
            let mut r = render::route(&req, data);
            if req.method == "HEAD" {
                r.body.clear();
            }
            r
        }
    };
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        response.reason,
        response.content_type,
        response.body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(&response.body)?;
    conn.flush()?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    linger(conn);
    Ok(())
}

/// Reads and drops what the client still sends (a refused request's rest), for a moment, so that closing does not
/// reset the connection before the client has read the answer.
fn linger(conn: &mut TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || conn.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chunks(Vec<Vec<u8>>);
    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let mut c = self.0.remove(0);
            let n = c.len().min(buf.len());
            if n < c.len() {
                self.0.insert(0, c.split_off(n));
            }
            buf[..n].copy_from_slice(&c[..n]);
            Ok(n)
        }
    }
    impl ReadTimeout for Chunks {
        fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn parse(chunks: &[&[u8]]) -> Result<Request, BadRequest> {
        read_request(&mut Chunks(chunks.iter().map(|c| c.to_vec()).collect()), Instant::now() + HEAD_TIMEOUT)
    }

    #[test]
    fn a_request_in_pieces() {
        let r = parse(&[b"GET /api/v1/batch", b"es?since=5 HTTP/1.1\r\nHost: x\r", b"\n\r\n"]).unwrap();
        assert_eq!(r, Request { method: "GET".into(), path: "/api/v1/batches".into(), query: "since=5".into() });
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&[long.as_bytes()]), Err(BadRequest::Status(431, "Request Header Fields Too Large")));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse(&[many.as_bytes()]), Err(BadRequest::Status(431, "Request Header Fields Too Large")));
        let enough = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS - 1));
        assert!(parse(&[enough.as_bytes()]).is_ok());
        assert_eq!(parse(&[b"GET / HTTP/1.1\r\nHost"]), Err(BadRequest::Gone));
        assert_eq!(parse(&[b"GET /\r\n\r\n"]), Err(BadRequest::Status(400, "Bad Request")));
        assert_eq!(parse(&[b"GET x HTTP/1.1\r\n\r\n"]), Err(BadRequest::Status(400, "Bad Request")));
        assert_eq!(parse(&[b"\xff\xfe HTTP/1.1\r\n\r\n"]), Err(BadRequest::Status(400, "Bad Request")));
    }
}
