//! The Kafka client's errors: each variant names the situation and carries what a person needs to act on it.

use kafka_protocol::ResponseError;

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A broker address is not of the form HOST:PORT.
    #[error("invalid broker address {addr:?}: expected HOST:PORT")]
    BadAddress {
        /// The address as given.
        addr: String,
    },
    /// Nothing accepted a connection at the address.
    #[error("no broker answers at {addr} ({source})")]
    Unreachable {
        /// The broker address.
        addr: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// An established connection failed (reset, closed, or timed out).
    #[error("connection to {addr} lost: {source}")]
    ConnectionLost {
        /// The broker address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The topic does not exist (it is never created implicitly).
    #[error("topic {topic:?} does not exist on the cluster at {addr}")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The broker that answered.
        addr: String,
    },
    /// A job was given more topics than it can number.
    #[error("a job reads at most {max} topics; this one was given {count}")]
    Inputs {
        /// Topics given.
        count: usize,
        /// The most a job reads.
        max: usize,
    },
    /// A topic has a partition beyond what a job of several topics can number.
    #[error("topic {topic:?} has partition {partition}; dstream reads partitions 0 to {max} only")]
    PartitionTooHigh {
        /// Topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The highest partition read.
        max: i32,
    },
    /// Saved offsets name partitions the topic no longer has.
    #[error("topic {topic:?} has no partition {missing:?}, which the saved offsets name (was it re-created?)")]
    PartitionsGone {
        /// Topic.
        topic: String,
        /// The partitions that are gone.
        missing: Vec<i32>,
    },
    /// A topic this client had read is gone from the cluster's metadata, or came back with another id: it was
    /// deleted (and perhaps created again) while being read.
    #[error("topic {topic:?} was deleted{} while dstream read it (as the cluster at {addr} says)", if *.recreated { " and created again" } else { "" })]
    TopicDeleted {
        /// The topic.
        topic: String,
        /// The broker that answered.
        addr: String,
        /// True if a topic of that name exists again, with another id.
        recreated: bool,
    },
    /// A broker did not answer a request, whole, by its deadline (the request timeout, or the end of the retry
    /// period if sooner).
    #[error("no answer from {addr} to {api} in {secs:.1} s{}", received_text(*.received))]
    Timeout {
        /// The broker address.
        addr: String,
        /// The API's name.
        api: &'static str,
        /// Seconds waited.
        secs: f64,
        /// Bytes of the answer that had come by then.
        received: usize,
    },
    /// The interrupt flag (Ctrl-C) ended a wait for a broker.
    #[error("interrupted while waiting for {addr} to answer {api}")]
    Interrupted {
        /// The broker address.
        addr: String,
        /// The API's name.
        api: &'static str,
    },
    /// The broker does not offer a version of an API that this client implements.
    #[error("broker {addr} does not support {api} versions {min}..={max} (it offers {offered})")]
    UnsupportedVersion {
        /// The broker address.
        addr: String,
        /// The API's name.
        api: &'static str,
        /// Lowest version this client implements.
        min: i16,
        /// Highest version this client implements.
        max: i16,
        /// What the broker offers, as text ("nothing" if absent).
        offered: String,
    },
    /// The broker wants TLS or SASL, and the connection was not configured for it.
    #[error(
        "broker {addr} requires TLS or SASL ({how}): set security.protocol and the rest in a Kafka client \
         configuration (--kafka-config FILE)"
    )]
    AuthenticationRequired {
        /// The broker address.
        addr: String,
        /// What gave it away.
        how: &'static str,
    },
    /// TLS with a broker failed: an untrusted or mismatched certificate, a refused handshake, or a listener
    /// that does not speak TLS.
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// The broker address.
        addr: String,
        /// What went wrong, and what to check.
        reason: String,
    },
    /// The TLS handshake got no answer in time, or the connection closed during it: most likely a plaintext
    /// listener (retried like a lost connection, since a broker going down does the same).
    #[error("TLS with {addr} failed: {what}: is this a plaintext listener? (check security.protocol)")]
    TlsHandshakeCut {
        /// The broker address.
        addr: String,
        /// What happened.
        what: String,
    },
    /// SASL authentication failed (wrong password, unknown user, mechanism not enabled). Never holds a secret.
    #[error("SASL {mechanism} authentication with {addr} failed: {reason}")]
    Authentication {
        /// The broker address.
        addr: String,
        /// The mechanism.
        mechanism: &'static str,
        /// The broker's words, or what was wrong with its answers.
        reason: String,
    },
    /// The broker refused an operation for lack of authorization.
    #[error("not authorized: {api} on {addr}: {error}")]
    NotAuthorized {
        /// The broker address.
        addr: String,
        /// The API's name.
        api: &'static str,
        /// The broker's error.
        error: ResponseError,
    },
    /// Requested offsets are no longer (or not yet) in the log.
    #[error("offset {requested} of {topic}-{partition} is out of range: the log holds [{earliest}, {latest})")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset asked for.
        requested: i64,
        /// First offset in the log.
        earliest: i64,
        /// Log end.
        latest: i64,
    },
    /// The broker answered an error code for a request.
    #[error("{api} failed on {addr} for {topic}-{partition}: {error}")]
    Broker {
        /// The broker address.
        addr: String,
        /// The API's name.
        api: &'static str,
        /// Topic.
        topic: String,
        /// Partition (-1 when not partition-specific).
        partition: i32,
        /// The broker's error.
        error: ResponseError,
    },
    /// A response could not be decoded or did not match the request.
    #[error("malformed {api} response from {addr}: {reason}")]
    Protocol {
        /// The broker address.
        addr: String,
        /// The API's name.
        api: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A fetched record batch failed its checksum or could not be parsed (its records were not read).
    #[error("corrupt record batch in {topic}-{partition} at offsets {offset}..={last_offset}: {reason}")]
    CorruptBatch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Base offset of the batch.
        offset: i64,
        /// Last offset of the batch, as its header says.
        last_offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// A fetched record batch is larger than dstream reads: compressed records that inflate beyond the bound on a
    /// decompressed batch, or a batch longer than the largest fetch answer (its records were not read).
    #[error("record batch in {topic}-{partition} at offsets {offset}..={last_offset} is too large: {reason}")]
    BatchTooLarge {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Base offset of the batch.
        offset: i64,
        /// Last offset of the batch, as its header says.
        last_offset: i64,
        /// How large, and the bound it passed.
        reason: String,
    },
    /// A retriable failure went on past the retry deadline.
    #[error("gave up after {attempts} attempt{} over {secs:.1} s: {last}", if *.attempts == 1 { "" } else { "s" })]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Seconds spent.
        secs: f64,
        /// The last failure.
        last: Box<KafkaError>,
    },
    /// A broker's answer left out a partition it was asked about (tansu does so, briefly, right after a restart):
    /// retried like a lost connection.
    #[error("the {api} answer holds no {topic}-{partition}, although it was asked for")]
    PartitionNotAnswered {
        /// The request.
        api: &'static str,
        /// Topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
    },
    /// The log was truncated in place below what a run had read: the records of the leader epoch it read up to an
    /// offset now end before it (an unclean leader election, or a broker that lost data), so the saved offsets
    /// and state belong to a log that is gone.
    #[error(
        "{topic}-{partition} was truncated: dstream read it up to offset {saved} in leader epoch {epoch}, but that \
         epoch's records now end at offset {end} (an unclean leader election, or a broker that lost data); the \
         saved offsets and state do not match the log: pass --reset-checkpoint to start over on it, or use another \
         --checkpoint directory"
    )]
    LogTruncated {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset after the last one read in the epoch.
        saved: i64,
        /// The leader epoch read in.
        epoch: i32,
        /// Where the log's records of that epoch (or the largest one the leader knows below it) end now.
        end: i64,
    },
    /// A fetch returned nothing where records had to be, for longer than the retry deadline.
    #[error("{topic}-{partition}: no records at offset {offset} although the log end is {end}")]
    MissingRecords {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// The end the range was fixed against.
        end: i64,
    },
}

impl KafkaError {
    /// True if trying again (after refreshing metadata and reconnecting) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            KafkaError::ConnectionLost { .. }
            | KafkaError::Unreachable { .. }
            | KafkaError::Timeout { .. }
            | KafkaError::TlsHandshakeCut { .. }
            | KafkaError::MissingRecords { .. }
            | KafkaError::PartitionNotAnswered { .. } => true,
            KafkaError::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }
}

/// How much of an answer had come when it timed out, for [`KafkaError::Timeout`]'s message.
fn received_text(received: usize) -> String {
    match received {
        0 => String::new(),
        n => format!(" (an answer had begun: {n} bytes came)"),
    }
}

/// Result with a [`KafkaError`].
pub type Result<T, E = KafkaError> = std::result::Result<T, E>;
