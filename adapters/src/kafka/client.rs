//! The client: bootstrap, metadata with per-partition leaders, one connection per broker, retries with backoff.

use super::conn::{Connection, Timeouts, WaitBounds};
use super::error::{KafkaError, Result};
use super::records::DEFAULT_MAX_BATCH_BYTES;
use super::security::Security;
use super::trace;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest, MetadataRequest,
    OffsetForLeaderEpochRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the client connects, waits and retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client id sent with every request.
    pub client_id: String,
    /// Connect and request timeouts.
    pub timeouts: Timeouts,
    /// How long retriable failures (lost connections, leader changes, a restarting broker) are retried; no
    /// request of a retried call waits beyond it (but each attempt gets at least a second).
    pub retry_for: Duration,
    /// First pause between retries; doubles up to `backoff_max`.
    pub backoff: Duration,
    /// Longest pause between retries.
    pub backoff_max: Duration,
    /// Largest fetch response asked for.
    pub fetch_max_bytes: i32,
    /// Largest amount of one partition's data in one fetch response.
    pub partition_max_bytes: i32,
    /// A flag that, once set, ends retries and every wait for a broker at once (e.g. Ctrl-C): the call fails with
    /// the last error, or [`KafkaError::Interrupted`] if it was waiting.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Most bytes one record batch may take once decompressed: a compressed batch inflating beyond it, or a
    /// batch not fetched whole whose header declares more, is refused with [`KafkaError::BatchTooLarge`], so that
    /// no peer can make dstream hold more for one batch. Default [`DEFAULT_MAX_BATCH_BYTES`]: 64 MiB, four times
    /// `partition_max_bytes`.
    pub max_batch_bytes: usize,
    /// Which records fetches and the log end see (Kafka's `isolation.level`); default
    /// [`IsolationLevel::ReadUncommitted`], the Kafka consumer's default and so Spark's.
    pub isolation_level: IsolationLevel,
    /// TLS and SASL (default PLAINTEXT), as `--kafka-config FILE` gives them.
    pub security: Security,
}

/// Which records of transactional producers a consumer sees (Kafka's `isolation.level`). Control records
/// (transaction markers) are never handed over at either level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, including those of open and aborted transactions; the log end is the high watermark.
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions and records written outside transactions; the log end is the last
    /// stable offset (the first offset of the oldest open transaction).
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value (0 or 1).
    fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

impl std::str::FromStr for IsolationLevel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read_committed" => Ok(IsolationLevel::ReadCommitted),
            _ => Err(format!("unknown isolation level {s:?}: read_committed or read_uncommitted")),
        }
    }
}

impl std::fmt::Display for IsolationLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IsolationLevel::ReadUncommitted => "read_uncommitted",
            IsolationLevel::ReadCommitted => "read_committed",
        })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "dstream".into(),
            timeouts: Timeouts { connect: Duration::from_secs(3), request: Duration::from_secs(30) },
            retry_for: Duration::from_secs(60),
            backoff: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            fetch_max_bytes: 64 << 20,
            partition_max_bytes: 16 << 20,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            interrupt: None,
            isolation_level: IsolationLevel::default(),
            security: Security::default(),
        }
    }
}

/// The shortest time an attempt of [`Client::with_retry`] may take, whatever the retry period.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// Which end of a partition's log to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still in the log.
    Earliest,
    /// The log end (the offset the next record will get).
    Latest,
}

/// Acknowledgements a produce request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// The leader has written the records.
    Leader,
    /// All in-sync replicas have written the records.
    All,
}

/// One partition's part of a fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFetch {
    /// Partition.
    pub partition: i32,
    /// First offset wanted.
    pub offset: i64,
}

/// One partition's part of a fetch response.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// Partition.
    pub partition: i32,
    /// The high watermark: the offset after the last committed record.
    pub high_watermark: i64,
    /// The first offset in the log (-1 if the broker did not say).
    pub log_start_offset: i64,
    /// The last stable offset: the first offset of the oldest open transaction, or the high watermark if none
    /// is open (-1 if the broker did not say).
    pub last_stable_offset: i64,
    /// With [`IsolationLevel::ReadCommitted`]: the aborted transactions among the records, as (producer id, first
    /// offset), for the reader to drop their records.
    pub aborted: Vec<(i64, i64)>,
    /// The raw record batches (the last one may be truncated).
    pub records: Bytes,
}

#[derive(Debug, Clone)]
struct PartitionMeta {
    partition: i32,
    leader: i32,
    replicas: usize,
    in_sync: usize,
}

/// One partition's leader and replicas, as the cluster's metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition.
    pub partition: i32,
    /// The leader's node id, or -1 if it has none.
    pub leader: i32,
    /// How many replicas it has.
    pub replicas: usize,
    /// How many of them are in sync.
    pub in_sync: usize,
}

/// A synchronous Kafka client.
pub struct Client {
    cfg: ClientConfig,
    bootstrap: Vec<String>,
    brokers: BTreeMap<i32, String>,
    controller: i32,
    conns: HashMap<String, Connection>,
    topics: HashMap<String, Vec<PartitionMeta>>,
    /// Each topic's id from the last metadata asked for it (`None` when the broker gave none).
    topic_ids: HashMap<String, Option<String>>,
    /// While retrying: when the retry period ends, which no request waits beyond.
    until: Option<Instant>,
}

impl Client {
    /// Connects to the first answering bootstrap broker and learns the cluster's brokers; fails fast (no retries)
    /// so that a wrong address is reported at once.
    pub fn connect(bootstrap: &[String], cfg: ClientConfig) -> Result<Client> {
        let mut client = Client {
            cfg,
            bootstrap: bootstrap.to_vec(),
            brokers: BTreeMap::new(),
            controller: -1,
            conns: HashMap::new(),
            topics: HashMap::new(),
            topic_ids: HashMap::new(),
            until: None,
        };
        if bootstrap.is_empty() {
            return Err(KafkaError::BadAddress { addr: String::new() });
        }
        // No broker is known yet: the first bootstrap address that answers.
        client.any_conn()?;
        match client.metadata(None) {
            Ok(()) => Ok(client),
            // A broker that completes the version handshake and then hangs up wants SASL first.
            Err(KafkaError::ConnectionLost { addr, source }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(KafkaError::AuthenticationRequired { addr, how: "it closed the connection after the handshake" })
            }
            Err(e) => Err(e),
        }
    }

    /// A flag that, once set, ends retries at once (the last error is returned), e.g. on Ctrl-C.
    /// As [`ClientConfig::interrupt`], from now on.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.cfg.interrupt = Some(flag);
    }

    /// True once the interrupt flag is set.
    pub fn interrupted(&self) -> bool {
        self.cfg.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// What ends a wait for a broker now, besides its answer.
    fn bounds(&self) -> WaitBounds {
        WaitBounds { interrupt: self.cfg.interrupt.clone(), until: self.until }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn any_conn(&mut self) -> Result<&mut Connection> {
        if self.conns.is_empty() {
            let mut candidates: Vec<String> = self.brokers.values().cloned().collect();
            candidates.extend(self.bootstrap.iter().cloned());
            let mut first_err = None;
            for addr in candidates {
                match Connection::connect_secure(
                    &addr,
                    &self.cfg.client_id,
                    self.cfg.timeouts,
                    self.bounds(),
                    &self.cfg.security,
                ) {
                    Ok(c) => {
                        self.conns.insert(addr, c);
                        break;
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err.filter(|_| self.conns.is_empty()) {
                return Err(e);
            }
        }
        let bounds = self.bounds();
        let conn = self.conns.values_mut().next().expect("a connection exists");
        conn.set_bounds(bounds);
        Ok(conn)
    }

    fn conn_to(&mut self, node: i32) -> Result<&mut Connection> {
        let addr = self.brokers.get(&node).cloned().ok_or_else(|| KafkaError::Broker {
            addr: format!("node {node}"),
            api: "Metadata",
            topic: String::new(),
            partition: -1,
            error: ResponseError::LeaderNotAvailable,
        })?;
        let bounds = self.bounds();
        if !self.conns.contains_key(&addr) {
            let c = Connection::connect_secure(
                &addr,
                &self.cfg.client_id,
                self.cfg.timeouts,
                bounds.clone(),
                &self.cfg.security,
            )?;
            self.conns.insert(addr.clone(), c);
        }
        let conn = self.conns.get_mut(&addr).expect("just inserted");
        conn.set_bounds(bounds);
        Ok(conn)
    }

    /// The cluster's brokers as its metadata names them: (node id, address), by node id.
    pub fn brokers(&self) -> Vec<(i32, String)> {
        self.brokers.iter().map(|(id, addr)| (*id, addr.clone())).collect()
    }

    /// The controller's node id as the metadata names it (-1 if none).
    pub fn controller(&self) -> i32 {
        self.controller
    }

    /// How the connection to broker `node` is secured and what it offers; connects if not connected yet.
    pub fn connection_info(&mut self, node: i32) -> Result<super::conn::ConnectionInfo> {
        Ok(self.conn_to(node)?.info())
    }

    /// Forgets connections and cached metadata after a failure, so the next attempt starts clean.
    fn reset_after(&mut self, e: &KafkaError) {
        // A connection whose answer was not read whole is out of step: it goes too.
        if let KafkaError::ConnectionLost { addr, .. }
        | KafkaError::Unreachable { addr, .. }
        | KafkaError::Timeout { addr, .. }
        | KafkaError::Interrupted { addr, .. } = e
        {
            self.conns.remove(addr);
        }
        self.topics.clear();
    }

    /// Runs `op`, retrying retriable failures with exponential backoff for up to `retry_for`; no request of an
    /// attempt waits beyond the end of that period.
    pub fn with_retry<T>(&mut self, op: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let start = Instant::now();
        // A retry inside a retry keeps the outer period's end. An attempt gets at least a second, even with no
        // retries.
        let outer = self.until;
        let end = start + self.cfg.retry_for.max(MIN_ATTEMPT);
        self.until = Some(outer.map_or(end, |u| u.min(end)));
        let result = self.retrying(start, op);
        self.until = outer;
        result
    }

    fn retrying<T>(&mut self, start: Instant, mut op: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let mut pause = self.cfg.backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match op(self) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() => {
                    self.reset_after(&e);
                    if self.interrupted() {
                        return Err(e);
                    }
                    if start.elapsed() + pause > self.cfg.retry_for {
                        return Err(KafkaError::RetriesExhausted {
                            attempts,
                            secs: start.elapsed().as_secs_f64(),
                            last: Box::new(e),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.cfg.backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks any broker for the cluster's brokers and, if given, one topic's partitions and leaders.
    fn metadata(&mut self, topic: Option<&str>) -> Result<()> {
        let conn = self.any_conn()?;
        let addr = conn.addr().to_string();
        let version = conn.version(ApiKey::Metadata)?;
        let mut req = MetadataRequest::default();
        req.topics = Some(
            topic
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.into())))))
                .into_iter()
                .collect(),
        );
        req.allow_auto_topic_creation = false;
        let resp = conn.request(&req, version, Duration::ZERO)?;
        self.brokers = resp.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
        self.controller = resp.controller_id.0;
        let Some(topic) = topic else { return Ok(()) };
        // A topic this client has seen before and no longer finds was deleted.
        let seen = self.topic_ids.contains_key(topic);
        let unknown = |addr: String| match seen {
            true => KafkaError::TopicDeleted { topic: topic.into(), addr, recreated: false },
            false => KafkaError::UnknownTopic { topic: topic.into(), addr },
        };
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
            .ok_or_else(|| unknown(addr.clone()))?;
        match ResponseError::try_from_code(t.error_code) {
            None => {}
            Some(ResponseError::UnknownTopicOrPartition) => return Err(unknown(addr)),
            Some(ResponseError::TopicAuthorizationFailed) => {
                return Err(KafkaError::NotAuthorized {
                    addr,
                    api: "Metadata",
                    error: ResponseError::TopicAuthorizationFailed,
                })
            }
            Some(error) => {
                return Err(KafkaError::Broker { addr, api: "Metadata", topic: topic.into(), partition: -1, error })
            }
        }
        if t.partitions.is_empty() {
            return Err(unknown(addr));
        }
        // Metadata before v10 has no topic ids: the field then reads as the nil id.
        let id = (!t.topic_id.is_nil()).then(|| t.topic_id.to_string());
        if let (Some(Some(before)), Some(now)) = (self.topic_ids.get(topic), &id) {
            if before != now {
                return Err(KafkaError::TopicDeleted { topic: topic.into(), addr, recreated: true });
            }
        }
        let mut parts: Vec<PartitionMeta> = t
            .partitions
            .iter()
            .map(|p| PartitionMeta {
                partition: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.len(),
                in_sync: p.isr_nodes.len(),
            })
            .collect();
        parts.sort_by_key(|p| p.partition);
        self.topics.insert(topic.to_string(), parts);
        self.topic_ids.insert(topic.to_string(), id);
        Ok(())
    }

    fn topic_meta(&mut self, topic: &str) -> Result<&[PartitionMeta]> {
        if !self.topics.contains_key(topic) {
            self.metadata(Some(topic))?;
        }
        Ok(&self.topics[topic])
    }

    /// The topic's partitions, sorted; `UnknownTopic` if it does not exist (it is never created implicitly).
    pub fn partitions(&mut self, topic: &str) -> Result<Vec<i32>> {
        self.with_retry(|c| Ok(c.topic_meta(topic)?.iter().map(|p| p.partition).collect()))
    }

    /// The topic's id, from metadata asked for now (`None` if the broker gives none: Metadata before v10); a
    /// topic deleted and re-created under the same name gets a new id.
    pub fn topic_id(&mut self, topic: &str) -> Result<Option<String>> {
        self.topics.remove(topic);
        self.with_retry(|c| {
            c.topic_meta(topic)?;
            Ok(c.topic_ids.get(topic).cloned().flatten())
        })
    }

    /// Each partition's leader and replicas, sorted by partition, from metadata asked for now.
    pub fn partition_states(&mut self, topic: &str) -> Result<Vec<PartitionState>> {
        self.topics.remove(topic);
        self.with_retry(|c| {
            Ok(c.topic_meta(topic)?
                .iter()
                .map(|p| PartitionState {
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas,
                    in_sync: p.in_sync,
                })
                .collect())
        })
    }

    /// Each partition's leader, as (partition, leader's node id or -1 if it has none), sorted by partition, from
    /// metadata asked for now.
    pub fn leaders(&mut self, topic: &str) -> Result<Vec<(i32, i32)>> {
        Ok(self.partition_states(topic)?.iter().map(|p| (p.partition, p.leader)).collect())
    }

    /// Groups partitions by their leader.
    fn by_leader(&mut self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, Vec<i32>>> {
        let meta = self.topic_meta(topic)?.to_vec();
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let m = meta.iter().find(|m| m.partition == p).ok_or_else(|| KafkaError::Broker {
                addr: String::new(),
                api: "Metadata",
                topic: topic.into(),
                partition: p,
                error: ResponseError::UnknownTopicOrPartition,
            })?;
            if m.leader < 0 {
                return Err(KafkaError::Broker {
                    addr: String::new(),
                    api: "Metadata",
                    topic: topic.into(),
                    partition: p,
                    error: ResponseError::LeaderNotAvailable,
                });
            }
            groups.entry(m.leader).or_default().push(p);
        }
        Ok(groups)
    }

    /// The earliest or latest offset of each partition, as (partition, offset), in the order asked.
    pub fn list_offsets(&mut self, topic: &str, partitions: &[i32], spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
        self.with_retry(|c| c.list_offsets_once(topic, partitions, spec))
    }

    fn list_offsets_once(&mut self, topic: &str, partitions: &[i32], spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
        };
        let mut out = Vec::with_capacity(partitions.len());
        let isolation = self.cfg.isolation_level.code();
        for (leader, parts) in self.by_leader(topic, partitions)? {
            let conn = self.conn_to(leader)?;
            let addr = conn.addr().to_string();
            let version = conn.version(ApiKey::ListOffsets)?;
            let mut req = ListOffsetsRequest::default();
            req.replica_id = BrokerId(-1);
            req.isolation_level = isolation;
            req.topics = vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(
                    parts
                        .iter()
                        .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp))
                        .collect(),
                )];
            let resp = conn.request(&req, version, Duration::ZERO)?;
            for t in &resp.topics {
                for p in &t.partitions {
                    if let Some(error) = ResponseError::try_from_code(p.error_code) {
                        return Err(KafkaError::Broker {
                            addr,
                            api: "ListOffsets",
                            topic: topic.into(),
                            partition: p.partition_index,
                            error,
                        });
                    }
                    out.push((p.partition_index, p.offset));
                }
            }
        }
        let mut ordered = Vec::with_capacity(partitions.len());
        for &p in partitions {
            // Retried (tansu leaves partitions out briefly, e.g. right after a restart).
            let found = out.iter().find(|o| o.0 == p).copied().ok_or_else(|| KafkaError::PartitionNotAnswered {
                api: "ListOffsets",
                topic: topic.to_string(),
                partition: p,
            })?;
            ordered.push(found);
        }
        Ok(ordered)
    }

    /// Where each asked (partition, leader epoch)'s records end in the log, as (partition, the largest epoch the
    /// leader knows at or below the one asked, its end offset: the first offset of the next epoch, or the log end),
    /// in the order asked; `None` if a leader does not offer OffsetForLeaderEpoch (tansu). A log truncated in
    /// place (an unclean leader election) ends an epoch below offsets once read in it.
    pub fn epoch_end_offsets(&mut self, topic: &str, asks: &[(i32, i32)]) -> Result<Option<Vec<(i32, i32, i64)>>> {
        self.with_retry(|c| c.epoch_end_offsets_once(topic, asks))
    }

    fn epoch_end_offsets_once(&mut self, topic: &str, asks: &[(i32, i32)]) -> Result<Option<Vec<(i32, i32, i64)>>> {
        let partitions: Vec<i32> = asks.iter().map(|a| a.0).collect();
        let mut out = Vec::with_capacity(asks.len());
        for (leader, parts) in self.by_leader(topic, &partitions)? {
            let conn = self.conn_to(leader)?;
            let addr = conn.addr().to_string();
            let version = match conn.version(ApiKey::OffsetForLeaderEpoch) {
                Ok(v) => v,
                Err(KafkaError::UnsupportedVersion { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut req = OffsetForLeaderEpochRequest::default();
            req.replica_id = BrokerId(-1); // a consumer: answered from the leader's log
            req.topics = vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(
                    asks.iter()
                        .filter(|a| parts.contains(&a.0))
                        .map(|&(p, epoch)| {
                            OffsetForLeaderPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(epoch)
                        })
                        .collect(),
                )];
            let resp = conn.request(&req, version, Duration::ZERO)?;
            for t in &resp.topics {
                for p in &t.partitions {
                    if let Some(error) = ResponseError::try_from_code(p.error_code) {
                        let (topic, partition) = (topic.into(), p.partition);
                        return Err(KafkaError::Broker { addr, api: "OffsetForLeaderEpoch", topic, partition, error });
                    }
                    out.push((p.partition, p.leader_epoch, p.end_offset));
                }
            }
        }
        let mut ordered = Vec::with_capacity(asks.len());
        for &(p, _) in asks {
            let found = out.iter().find(|o| o.0 == p).copied().ok_or_else(|| KafkaError::PartitionNotAnswered {
                api: "OffsetForLeaderEpoch",
                topic: topic.to_string(),
                partition: p,
            })?;
            ordered.push(found);
        }
        Ok(Some(ordered))
    }

    /// One fetch round: asks each partition's leader for records from the given offsets, waiting up to
    /// `max_wait` (at least 1 ms) for data, within the configured byte limits. Retries retriable failures.
    pub fn fetch(
        &mut self,
        topic: &str,
        parts: &[PartitionFetch],
        max_wait: Duration,
    ) -> Result<Vec<FetchedPartition>> {
        self.fetch_sized(topic, parts, max_wait, i32::MAX, i32::MAX)
    }

    /// As [`Client::fetch`] with a byte limit per partition and one for the whole response, e.g. sized to what a
    /// range needs (the broker still returns at least one batch; limits above the configured ones are lowered).
    pub fn fetch_sized(
        &mut self,
        topic: &str,
        parts: &[PartitionFetch],
        max_wait: Duration,
        partition_max_bytes: i32,
        max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>> {
        self.with_retry(|c| {
            let pending = c.fetch_send_once(topic, parts, max_wait, partition_max_bytes, max_bytes)?;
            c.fetch_receive_once(&pending)
        })
    }

    /// The byte limits a fetch asking for these actually uses: at least 1, at most the configured maximums.
    fn clamp_sizes(&self, partition_max_bytes: i32, max_bytes: i32) -> (i32, i32) {
        (
            partition_max_bytes.clamp(1, self.cfg.partition_max_bytes.max(1)),
            max_bytes.clamp(1, self.cfg.fetch_max_bytes.max(1)),
        )
    }

    /// Sends the fetch [`Client::fetch`] would make, without waiting for its answer, so that the caller can work
    /// (e.g. read the previous answer) while the brokers prepare it; [`Client::fetch_receive`] reads the answer.
    /// Byte limits as in [`Client::fetch_sized`]. No retries: on failure, fall back to [`Client::fetch`].
    pub fn fetch_send(
        &mut self,
        topic: &str,
        parts: &[PartitionFetch],
        max_wait: Duration,
        partition_max_bytes: i32,
        max_bytes: i32,
    ) -> Result<PendingFetch> {
        self.fetch_send_once(topic, parts, max_wait, partition_max_bytes, max_bytes)
            .inspect_err(|e| self.reset_after(e))
    }

    fn fetch_send_once(
        &mut self,
        topic: &str,
        parts: &[PartitionFetch],
        max_wait: Duration,
        partition_max_bytes: i32,
        max_bytes: i32,
    ) -> Result<PendingFetch> {
        let wait_ms = wait_millis(max_wait);
        let (partition_max_bytes, max_bytes) = self.clamp_sizes(partition_max_bytes, max_bytes);
        let partitions: Vec<i32> = parts.iter().map(|p| p.partition).collect();
        let mut sent = Vec::new();
        let isolation = self.cfg.isolation_level.code();
        for (leader, group) in self.by_leader(topic, &partitions)? {
            let conn = self.conn_to(leader)?;
            let version = conn.version(ApiKey::Fetch)?;
            let mut req = fetch_request(topic, parts, &group, wait_ms, partition_max_bytes, max_bytes);
            req.isolation_level = isolation;
            if trace::enabled() {
                let at: Vec<(i32, i64)> = parts.iter().map(|p| (p.partition, p.offset)).collect();
                trace::line(format_args!(
                    "fetch {topic} {at:?} max_wait {wait_ms} ms, partition_max_bytes {partition_max_bytes}, \
                     max_bytes {max_bytes}"
                ));
            }
            conn.send(&req, version)?;
            sent.push((conn.addr().to_string(), version));
        }
        Ok(PendingFetch { topic: topic.to_string(), parts: parts.to_vec(), wait_ms, sent })
    }

    /// Reads the answers to a fetch sent with [`Client::fetch_send`]. No retries: on a retriable failure, fetch
    /// again with [`Client::fetch`].
    pub fn fetch_receive(&mut self, pending: PendingFetch) -> Result<Vec<FetchedPartition>> {
        self.fetch_receive_once(&pending).inspect_err(|e| self.reset_after(e))
    }

    fn fetch_receive_once(&mut self, pending: &PendingFetch) -> Result<Vec<FetchedPartition>> {
        let mut out = Vec::with_capacity(pending.parts.len());
        for (addr, version) in &pending.sent {
            let conn = self.conns.get_mut(addr).ok_or_else(|| KafkaError::ConnectionLost {
                addr: addr.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotConnected, "closed while a fetch was waiting"),
            })?;
            conn.set_bounds(WaitBounds { interrupt: self.cfg.interrupt.clone(), until: self.until });
            let resp = conn.receive::<FetchRequest>(*version, Duration::from_millis(pending.wait_ms as u64))?;
            fetch_answer(&pending.topic, &pending.parts, addr, resp, &mut out)?;
        }
        Ok(out)
    }

    /// Appends one encoded record batch to a partition; returns the base offset the broker assigned.
    pub fn produce(&mut self, topic: &str, partition: i32, batch: Bytes, acks: Acks) -> Result<i64> {
        self.with_retry(|c| c.produce_once(topic, partition, batch.clone(), acks))
    }

    fn produce_once(&mut self, topic: &str, partition: i32, batch: Bytes, acks: Acks) -> Result<i64> {
        let leader = *self.by_leader(topic, &[partition])?.keys().next().expect("one partition");
        let timeout = self.cfg.timeouts.request;
        let conn = self.conn_to(leader)?;
        let addr = conn.addr().to_string();
        let version = conn.version(ApiKey::Produce)?;
        let mut req = ProduceRequest::default();
        req.acks = match acks {
            Acks::Leader => 1,
            Acks::All => -1,
        };
        req.timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        req.topic_data = vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])];
        let resp = conn.request(&req, version, Duration::ZERO)?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| KafkaError::Protocol {
                addr: addr.clone(),
                api: "Produce",
                reason: format!("no answer for partition {partition}"),
            })?;
        if let Some(error) = ResponseError::try_from_code(p.error_code) {
            return Err(KafkaError::Broker { addr, api: "Produce", topic: topic.into(), partition, error });
        }
        Ok(p.base_offset)
    }

    /// Creates a topic; returns false if it already existed. Waits until every partition has a leader.
    pub fn create_topic(&mut self, topic: &str, partitions: i32, replication: i16) -> Result<bool> {
        let created = self.with_retry(|c| c.create_topic_once(topic, partitions, replication))?;
        // Wait until the metadata shows the topic with leaders (creation is asynchronous on Kafka).
        let deadline = Instant::now() + self.cfg.retry_for;
        loop {
            self.topics.remove(topic);
            let ready = match self.metadata(Some(topic)) {
                Ok(()) => self.topics[topic].iter().all(|p| p.leader >= 0),
                Err(KafkaError::UnknownTopic { .. }) => false,
                Err(e) if e.is_retriable() => false,
                Err(e) => return Err(e),
            };
            if ready {
                return Ok(created);
            }
            if Instant::now() > deadline {
                return Err(KafkaError::UnknownTopic { topic: topic.into(), addr: "the cluster".into() });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn create_topic_once(&mut self, topic: &str, partitions: i32, replication: i16) -> Result<bool> {
        let timeout = self.cfg.timeouts.request;
        let conn = if self.brokers.contains_key(&self.controller) {
            let node = self.controller;
            self.conn_to(node)?
        } else {
            self.any_conn()?
        };
        let addr = conn.addr().to_string();
        let version = conn.version(ApiKey::CreateTopics)?;
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        req.topics = vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)];
        let resp = conn.request(&req, version, Duration::ZERO)?;
        let t = resp.topics.first().ok_or_else(|| KafkaError::Protocol {
            addr: addr.clone(),
            api: "CreateTopics",
            reason: "no answer for the topic".into(),
        })?;
        match ResponseError::try_from_code(t.error_code) {
            None => Ok(true),
            Some(ResponseError::TopicAlreadyExists) => Ok(false),
            Some(error @ (ResponseError::TopicAuthorizationFailed | ResponseError::ClusterAuthorizationFailed)) => {
                Err(KafkaError::NotAuthorized { addr, api: "CreateTopics", error })
            }
            Some(error) => {
                Err(KafkaError::Broker { addr, api: "CreateTopics", topic: topic.into(), partition: -1, error })
            }
        }
    }
}

/// A fetch sent by [`Client::fetch_send`] and not yet read.
#[derive(Debug)]
pub struct PendingFetch {
    topic: String,
    parts: Vec<PartitionFetch>,
    wait_ms: i32,
    /// (broker address, request version) of every request sent.
    sent: Vec<(String, i16)>,
}

impl PendingFetch {
    /// The partitions and offsets asked for.
    pub fn parts(&self) -> &[PartitionFetch] {
        &self.parts
    }
}

/// A fetch's wait in ms: at least 1, since tansu answers a fetch with max_wait_ms = 0 with no partitions at all.
fn wait_millis(max_wait: Duration) -> i32 {
    max_wait.as_millis().clamp(1, i32::MAX as u128) as i32
}

/// The fetch request for the partitions `group` (all led by one broker) at their offsets in `parts`.
fn fetch_request(
    topic: &str,
    parts: &[PartitionFetch],
    group: &[i32],
    wait_ms: i32,
    partition_max_bytes: i32,
    max_bytes: i32,
) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.max_wait_ms = wait_ms;
    req.min_bytes = 1;
    req.max_bytes = max_bytes;
    req.topics =
        vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(
            group
                .iter()
                .map(|&p| {
                    let offset = parts.iter().find(|x| x.partition == p).expect("asked for").offset;
                    FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max_bytes)
                })
                .collect(),
        )];
    req
}

/// Checks one broker's fetch answer for errors and appends its partitions to `out`.
fn fetch_answer(
    topic: &str,
    parts: &[PartitionFetch],
    addr: &str,
    resp: FetchResponse,
    out: &mut Vec<FetchedPartition>,
) -> Result<()> {
    if let Some(error) = ResponseError::try_from_code(resp.error_code) {
        return Err(KafkaError::Broker { addr: addr.into(), api: "Fetch", topic: topic.into(), partition: -1, error });
    }
    for t in resp.responses {
        for p in t.partitions {
            match ResponseError::try_from_code(p.error_code) {
                None => {}
                Some(ResponseError::OffsetOutOfRange) => {
                    let requested = parts.iter().find(|x| x.partition == p.partition_index).map_or(-1, |x| x.offset);
                    return Err(KafkaError::OffsetOutOfRange {
                        topic: topic.into(),
                        partition: p.partition_index,
                        requested,
                        earliest: p.log_start_offset,
                        latest: p.high_watermark,
                    });
                }
                Some(error) => {
                    return Err(KafkaError::Broker {
                        addr: addr.into(),
                        api: "Fetch",
                        topic: topic.into(),
                        partition: p.partition_index,
                        error,
                    })
                }
            }
            if trace::enabled() {
                let (n, hw) = (p.records.as_ref().map_or(0, |r| r.len()), p.high_watermark);
                let first = p.records.as_deref().and_then(super::records::first_base_offset);
                let next = p.records.as_deref().and_then(|r| super::records::next_offset_before(r, i64::MAX));
                trace::line(format_args!(
                    "fetched {topic}-{}: {n} bytes, offsets {first:?}..{next:?}, high watermark {hw}",
                    p.partition_index
                ));
            }
            out.push(FetchedPartition {
                partition: p.partition_index,
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                last_stable_offset: p.last_stable_offset,
                aborted: p
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect(),
                records: p.records.unwrap_or_default(),
            });
        }
    }
    Ok(())
}
