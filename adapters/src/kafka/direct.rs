//! The direct stream (SPARK-SEMANTICS §6): per batch, offset ranges `[from, until)` fixed at generation time,
//! then exactly those records fetched.

use super::client::{Client, OffsetSpec, PartitionFetch, PendingFetch};
use super::client::{FetchedPartition, IsolationLevel};
use super::error::{KafkaError, Result};
use super::records::{
    aborted_batches, first_base_offset, first_batch_span, for_each_record_placed, next_offset_before,
    scan_headers_before, scan_headers_skipping, BatchError, BatchProblem, PlacedRecords, RecordView, Scan,
};
use super::trace;
use bytes::Bytes;
use dstream_core::checkpoint::LeaderEpoch;
use dstream_core::{
    BatchInfo, Duration, Malformed, OffsetRange, RecordBatch, RecordRef, RecordSource, Run, SourceError, Time,
    RUN_RECORDS,
};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

/// Where to start when there is no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartingOffsets {
    /// The first offset still in the log.
    Earliest,
    /// The log end: only records produced from now on (Spark's default).
    #[default]
    Latest,
}

/// What to do when the next offset fell out of the log (retention deleted it, or the log was truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutOfRangePolicy {
    /// Fail the batch, as Spark does.
    #[default]
    Fail,
    /// Skip to the earliest offset still in the log, with a warning naming the records skipped.
    Earliest,
    /// Skip to the log end, with a warning naming the records skipped.
    Latest,
}

/// Offsets that were skipped because they fell out of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetReset {
    /// Partition.
    pub partition: i32,
    /// The offset the stream was at.
    pub from: i64,
    /// The offset it continues from.
    pub to: i64,
    /// The log's earliest offset when it was noticed.
    pub earliest: i64,
    /// The log's end when it was noticed.
    pub latest: i64,
}

/// One generated batch: its ranges, plus what the stream noticed while fixing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedBatch {
    /// Batch time and offset ranges.
    pub info: BatchInfo,
    /// Records in the log beyond the batch's ranges when it was generated (the lag).
    pub lag: i64,
    /// The lag of each partition: (partition, records in its log beyond its range), in the ranges' order.
    pub lags: Vec<(i32, i64)>,
    /// Offsets skipped by the out-of-range policy.
    pub resets: Vec<OffsetReset>,
}

/// How a direct stream reads one topic.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// The topic.
    pub topic: String,
    /// Start offsets without a checkpoint.
    pub starting_offsets: StartingOffsets,
    /// Largest number of records per partition per second (0 = unlimited).
    pub max_rate_per_partition: u64,
    /// The batch interval (for the rate limit).
    pub batch_interval: Duration,
    /// Offsets out of the log.
    pub on_out_of_range: OutOfRangePolicy,
}

/// A direct stream over one topic: the current offset of every partition, advanced batch by batch.
pub struct DirectStream {
    client: Client,
    cfg: DirectConfig,
    current: Vec<(i32, i64)>,
}

impl DirectStream {
    /// A stream starting at `from` (e.g. restored from a checkpoint), else at the configured starting offsets.
    /// Partitions the topic has beyond `from`'s, now or later, are read from their earliest offset.
    pub fn new(mut client: Client, cfg: DirectConfig, from: Option<Vec<(i32, i64)>>) -> Result<DirectStream> {
        let partitions = client.partitions(&cfg.topic)?;
        let current = match from {
            Some(mut offsets) => {
                let gone: Vec<i32> = offsets.iter().map(|o| o.0).filter(|p| !partitions.contains(p)).collect();
                if !gone.is_empty() {
                    return Err(KafkaError::PartitionsGone { topic: cfg.topic.clone(), missing: gone });
                }
                // Partitions added since the checkpoint start at the earliest offset.
                let missing: Vec<i32> =
                    partitions.iter().copied().filter(|p| !offsets.iter().any(|o| o.0 == *p)).collect();
                if !missing.is_empty() {
                    offsets.extend(client.list_offsets(&cfg.topic, &missing, OffsetSpec::Earliest)?);
                }
                offsets.sort_unstable();
                offsets
            }
            None => {
                let spec = match cfg.starting_offsets {
                    StartingOffsets::Earliest => OffsetSpec::Earliest,
                    StartingOffsets::Latest => OffsetSpec::Latest,
                };
                let mut start = client.list_offsets(&cfg.topic, &partitions, spec)?;
                if spec == OffsetSpec::Latest {
                    // tansu's ListOffsets(latest) can lag the log end; the high watermark does not.
                    let ends = Self::probe_ends(&mut client, &cfg.topic, &start)?;
                    for (s, e) in start.iter_mut().zip(ends) {
                        s.1 = s.1.max(e.end);
                    }
                }
                start
            }
        };
        Ok(DirectStream { client, cfg, current })
    }

    /// Checks that the log still holds what was read (`epochs`, e.g. from a checkpoint): for each partition, the
    /// records of the leader epoch read in must not end below the offset read up to. A broker without leader
    /// epochs (no OffsetForLeaderEpoch, or none in its batches) is not checked.
    pub fn check_leader_epochs(&mut self, epochs: &[LeaderEpoch]) -> Result<()> {
        let checks: Vec<&LeaderEpoch> =
            epochs.iter().filter(|e| e.epoch >= 0 && self.current.iter().any(|c| c.0 == e.partition)).collect();
        if checks.is_empty() {
            return Ok(());
        }
        let asks: Vec<(i32, i32)> = checks.iter().map(|e| (e.partition, e.epoch)).collect();
        let Some(ends) = self.client.epoch_end_offsets(&self.cfg.topic, &asks)? else { return Ok(()) };
        for (e, (_, _, end)) in checks.into_iter().zip(ends) {
            // A negative end: the leader knows no epoch at or below it (nothing to compare).
            if end >= 0 && end < e.offset {
                let (topic, partition, saved, epoch) = (self.cfg.topic.clone(), e.partition, e.offset, e.epoch);
                return Err(KafkaError::LogTruncated { topic, partition, saved, epoch, end });
            }
        }
        Ok(())
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.cfg.topic
    }

    /// The next offset of every partition, as (partition, offset), sorted by partition.
    pub fn current_offsets(&self) -> &[(i32, i64)] {
        &self.current
    }

    fn probe_ends(client: &mut Client, topic: &str, at: &[(i32, i64)]) -> Result<Vec<Probe>> {
        let isolation = client.config().isolation_level;
        let mut out = Vec::with_capacity(at.len());
        for &(partition, offset) in at {
            // One partition per probe, so an out-of-range answer names its partition.
            let at = [PartitionFetch { partition, offset }];
            // An answer without the partition is retried within the retry period, as a lost connection is.
            let probe =
                client.with_retry(|c| {
                    let fetched = c.fetch_sized(topic, &at, std::time::Duration::from_millis(1), 1, 1)?;
                    fetched.into_iter().find(|p| p.partition == partition).ok_or_else(|| {
                        KafkaError::PartitionNotAnswered { api: "Fetch", topic: topic.to_string(), partition }
                    })
                });
            match probe {
                Ok(p) => {
                    out.push(Probe {
                        out_of_range: false,
                        end: visible_end(&p, isolation),
                        log_start: p.log_start_offset,
                    });
                }
                // The answer's high watermark is the end for read_uncommitted; read_committed relies on
                // ListOffsets' last stable offset.
                Err(KafkaError::OffsetOutOfRange { earliest, latest, .. }) => out.push(Probe {
                    out_of_range: true,
                    end: if isolation == IsolationLevel::ReadUncommitted { latest } else { -1 },
                    log_start: earliest,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Takes up the partitions added to the topic since the stream last looked (from fresh metadata), from their
    /// earliest offset, as Spark's Kafka source does with partitions it discovers: records written to them before
    /// they were noticed are read too. A topic deleted meanwhile is [`KafkaError::TopicDeleted`].
    fn add_new_partitions(&mut self) -> Result<()> {
        let topic = &self.cfg.topic;
        let now = self.client.partition_states(topic)?;
        let new: Vec<i32> =
            now.iter().map(|p| p.partition).filter(|p| !self.current.iter().any(|c| c.0 == *p)).collect();
        if !new.is_empty() {
            self.current.extend(self.client.list_offsets(topic, &new, OffsetSpec::Earliest)?);
            self.current.sort_unstable();
        }
        Ok(())
    }

    /// Generates the batch at `time`: fixes `[current, min(end, current + max))` for every partition (partitions
    /// added to the topic since the last batch included, from their earliest offset) and advances.
    pub fn generate(&mut self, time: Time) -> Result<GeneratedBatch> {
        if trace::enabled() {
            trace::line(format_args!("generate the batch of {} ms", time.0));
        }
        self.add_new_partitions()?;
        let topic = self.cfg.topic.clone();
        let parts: Vec<i32> = self.current.iter().map(|c| c.0).collect();
        let latest = self.client.list_offsets(&topic, &parts, OffsetSpec::Latest)?;
        let probes = Self::probe_ends(&mut self.client, &topic, &self.current)?;
        let max = if self.cfg.max_rate_per_partition == 0 {
            i64::MAX
        } else {
            ((self.cfg.max_rate_per_partition as i128 * self.cfg.batch_interval.millis() as i128 / 1000) as i64).max(1)
        };
        let mut ranges = Vec::with_capacity(self.current.len());
        let mut resets = Vec::new();
        let mut lags = Vec::with_capacity(self.current.len());
        for (i, cur) in self.current.iter_mut().enumerate() {
            let probe = &probes[i];
            // The log end (read_committed: the last stable offset), as the newer of the two answers says.
            let end = latest[i].1.max(probe.end);
            let below = probe.log_start >= 0 && cur.1 < probe.log_start;
            if probe.out_of_range || below || cur.1 > end {
                // Kafka's out-of-range answer carries no log start (-1): ask for it.
                let earliest = match probe.log_start {
                    s if s >= 0 => s,
                    _ => self.client.list_offsets(&topic, &[cur.0], OffsetSpec::Earliest)?[0].1,
                };
                let latest_end = end;
                let to = match self.cfg.on_out_of_range {
                    OutOfRangePolicy::Fail => {
                        return Err(KafkaError::OffsetOutOfRange {
                            topic,
                            partition: cur.0,
                            requested: cur.1,
                            earliest,
                            latest: latest_end,
                        })
                    }
                    OutOfRangePolicy::Earliest => {
                        let e = self.client.list_offsets(&topic, &[cur.0], OffsetSpec::Earliest)?[0].1;
                        e.max(earliest)
                    }
                    OutOfRangePolicy::Latest => latest_end,
                };
                resets.push(OffsetReset { partition: cur.0, from: cur.1, to, earliest, latest: latest_end });
                cur.1 = to;
            }
            let until = end.min(cur.1.saturating_add(max)).max(cur.1);
            ranges.push(OffsetRange { partition: cur.0, from: cur.1, until });
            lags.push((cur.0, end - until));
            cur.1 = until;
        }
        let lag = lags.iter().map(|l| l.1).sum();
        Ok(GeneratedBatch { info: BatchInfo { time, ranges }, lag, lags, resets })
    }
}

/// Bytes per record assumed before the first fetch (small lab records take about 12 in a batch of many).
const FIRST_GUESS_RECORD_BYTES: f64 = 16.0;

/// Smallest byte limit per partition of a range fetch.
const MIN_FETCH_BYTES: i64 = 64 << 10;

/// Records per partition the first fetch of a range is sized for; each later fetch of the same call is sized for
/// `RAMP` times as many (up to what is left). A large range then reaches its reader after a short first fetch
/// rather than after the whole range came in one answer, so that reading overlaps fetching from the start.
pub const FIRST_FETCH_RECORDS: i64 = 1 << 15;

/// Growth of the record count a fetch is sized for, from one fetch to the next within one call.
const RAMP: i64 = 2;

/// Most records per partition a fetch is sized for: the last answer of a range then holds little, so that little is
/// left to read once the broker has sent everything.
pub const MAX_FETCH_RECORDS: i64 = 1 << 17;

/// Offsets left in the range of the partition of `at`, from `at`'s offset.
fn remaining(next: &[(i32, i64, i64)], at: &PartitionFetch) -> i64 {
    next.iter().find(|n| n.0 == at.partition).map_or(0, |n| (n.2 - at.offset).max(0))
}

/// How long a fetch for a range's records waits for data.
const WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Fetches the records of fixed offset ranges, on a connection of its own, so that fetching one batch never
/// delays fixing the next one's ranges. Bytes fetched beyond a range serve the next range of that partition.
pub struct RangeFetcher {
    client: Client,
    topic: String,
    /// Per partition: fetched bytes beyond the last range read, starting at a batch boundary.
    cache: Vec<(i32, Chunk)>,
    /// Bytes per record in the batches fetched last (a guess before the first fetch), to size fetches.
    record_bytes: f64,
    /// A fetch sent by [`RangeFetcher::prefetch`], not yet read.
    prefetched: Option<PendingFetch>,
    /// The most bytes a batch may take, decompressed (the client's `max_batch_bytes`).
    max_batch_bytes: usize,
    /// The client's isolation level: with read_committed, aborted transactions' records are dropped.
    isolation: IsolationLevel,
    /// Skip batches that cannot be read (reporting their offsets) rather than fail.
    skip_bad_batches: bool,
}

/// Fetched bytes of one partition, with the base offsets of their batches that belong to aborted transactions
/// (read_committed only; `None` when there are none).
#[derive(Debug, Clone)]
struct Chunk {
    bytes: Bytes,
    aborted: Option<Arc<[i64]>>,
}

impl Chunk {
    /// The bytes of a fetch answer, with its aborted batches if the fetch was read_committed.
    fn of(p: &FetchedPartition, isolation: IsolationLevel) -> Chunk {
        let aborted = match isolation {
            IsolationLevel::ReadCommitted if !p.aborted.is_empty() => {
                Some(aborted_batches(&p.records, &p.aborted)).filter(|a| !a.is_empty()).map(Arc::from)
            }
            _ => None,
        };
        Chunk { bytes: p.records.clone(), aborted }
    }

    /// The same aborted batches over other bytes of the same answer.
    fn with(&self, bytes: Bytes) -> Chunk {
        Chunk { bytes, aborted: self.aborted.clone() }
    }

    fn skip(&self) -> &[i64] {
        self.aborted.as_deref().unwrap_or(&[])
    }
}

/// The end of what a fetch at `isolation` may see of a partition, as its answer says: the high watermark, or with
/// read_committed the last stable offset (the high watermark if the broker gave none).
fn visible_end(p: &FetchedPartition, isolation: IsolationLevel) -> i64 {
    match isolation {
        IsolationLevel::ReadCommitted if p.last_stable_offset >= 0 => p.last_stable_offset,
        _ => p.high_watermark,
    }
}

impl RangeFetcher {
    /// A fetcher of `topic` over `client`.
    pub fn new(client: Client, topic: &str) -> Self {
        RangeFetcher {
            isolation: client.config().isolation_level,
            max_batch_bytes: client.config().max_batch_bytes,
            client,
            topic: topic.to_string(),
            cache: Vec::new(),
            record_bytes: FIRST_GUESS_RECORD_BYTES,
            prefetched: None,
            skip_bad_batches: false,
        }
    }

    /// With `skip`, a record batch that cannot be read (damaged, or beyond the bound on a batch) does not fail a
    /// fetch: its offsets within the range are skipped and reported as malformed records (see
    /// [`fetch_ranges`](Self::fetch_ranges) and [`RecordSource::for_each_skipped`] of the [`Segment`]s). Which
    /// offsets are skipped depends only on the log's bytes, never on how fetches cut them, so a batch run again
    /// after a restart skips the same ones.
    pub fn skip_bad_batches(mut self, skip: bool) -> Self {
        self.skip_bad_batches = skip;
        self
    }

    /// Byte limits (per partition, whole response) for fetching `remaining` offsets of each partition asked for:
    /// what they should take at the bytes per record seen so far plus a quarter, at least [`MIN_FETCH_BYTES`]
    /// per partition; the client lowers them to its configured maximums. A fetch sized to the range does not
    /// bring (and wait for) megabytes that belong to later batches.
    fn sizes(&self, remaining: impl Iterator<Item = i64>) -> (i32, i32) {
        let (mut per, mut total) = (0i64, 0i64);
        for n in remaining {
            let want = ((n as f64 * self.record_bytes * 1.25) as i64).saturating_add(MIN_FETCH_BYTES);
            per = per.max(want);
            total = total.saturating_add(want);
        }
        (per.min(i32::MAX as i64) as i32, total.min(i32::MAX as i64) as i32)
    }

    /// Learns the bytes per record from the whole batches of a fetched partition (a truncated batch at its end
    /// does not count).
    fn learn(&mut self, records: &[u8]) {
        let Ok(scan) = scan_headers_before(records, i64::MAX) else { return };
        if let (Some(first), Some(next)) = (first_base_offset(records), scan.next_offset) {
            if next > first {
                self.record_bytes = (scan.end as f64 / (next - first) as f64).max(1.0);
            }
        }
    }

    /// Fetches exactly the records of `ranges` into `out` (appending), in offset order per partition. Bytes
    /// fetched beyond a range are kept and serve the next range of that partition first. Returns the offsets
    /// skipped unread (only if [`skip_bad_batches`](Self::skip_bad_batches)) and the leader epochs seen.
    pub fn fetch_ranges(&mut self, ranges: &[OffsetRange], out: &mut RecordBatch) -> Result<RangesRead> {
        let mut dest = Collect { records: out, unread: Vec::new(), skip: self.skip_bad_batches, epochs: Vec::new() };
        self.fetch_into(ranges, &mut dest)?;
        Ok(RangesRead { unread: dest.unread, leader_epochs: dest.epochs })
    }

    /// Fetches the records of `ranges` as [`fetch_ranges`](Self::fetch_ranges) does, but hands the fetched bytes
    /// to `segment` as they arrive, unread, as [`Segment`]s: the caller reads the records in place (checksums,
    /// decompression, records), on its own thread, with no copy. Segments come in (partition, offset) order over
    /// all calls of `segment`: a partition's come once every lower partition's did (those of a later partition
    /// fetched earlier wait for their turn). Batch headers are checked here; the rest when a segment is read.
    pub fn fetch_ranges_in_segments(&mut self, ranges: &[OffsetRange], segment: impl FnMut(Segment)) -> Result<()> {
        let mut order: Vec<i32> = ranges.iter().filter(|r| r.until > r.from).map(|r| r.partition).collect();
        order.sort_unstable();
        order.dedup();
        let staged = order.iter().map(|_| Vec::new()).collect();
        let topic: Arc<str> = self.topic.as_str().into();
        let skip = self.skip_bad_batches;
        let mut dest = InOrder { topic, order, cursor: 0, staged, emit: segment, skip };
        self.fetch_into(ranges, &mut dest)
    }

    /// Asks for the first records of the next ranges, which start at `from` (each partition's next offset), without
    /// waiting for the answer: e.g. while the next batch's ends are being found. The next fetch uses the answer if
    /// it asks for the same offsets; records beyond the batch's ranges serve the next batch, as always.
    pub fn prefetch(&mut self, from: &[(i32, i64)]) {
        let asks: Vec<PartitionFetch> = from
            .iter()
            .map(|&(partition, offset)| {
                // Where the next fetch starts: after the bytes kept from the last one, if they hold `offset`.
                let kept = self.cache.iter().find(|c| c.0 == partition).map(|c| &c.1.bytes);
                let after = kept
                    .filter(|b| first_base_offset(b).is_some_and(|first| first <= offset))
                    .and_then(|b| next_offset_before(b, i64::MAX));
                PartitionFetch { partition, offset: after.map_or(offset, |n| n.max(offset)) }
            })
            .collect();
        let (pmax, max) = self.sizes(asks.iter().map(|_| FIRST_FETCH_RECORDS));
        // A short wait: if nothing new is there, the answer comes at once instead of holding the connection.
        let wait = std::time::Duration::from_millis(1);
        // A failed send only means no head start.
        self.prefetched = self.client.fetch_send(&self.topic, &asks, wait, pmax, max).ok();
    }

    fn fetch_into(&mut self, ranges: &[OffsetRange], dest: &mut dyn Dest) -> Result<()> {
        if trace::enabled() {
            trace::line(format_args!("fetch ranges {ranges:?}"));
        }
        let topic = self.topic.clone();
        let mut next: Vec<(i32, i64, i64)> =
            ranges.iter().filter(|r| r.until > r.from).map(|r| (r.partition, r.from, r.until)).collect();
        // First what earlier fetches brought beyond their ranges.
        for slot in next.iter_mut() {
            let Some(pos) = self.cache.iter().position(|c| c.0 == slot.0) else { continue };
            let chunk = self.cache.swap_remove(pos).1;
            if first_base_offset(&chunk.bytes).is_some_and(|b| b <= slot.1) {
                let read = dest.read(&topic, &chunk, slot, self.max_batch_bytes);
                if let Some(rest) = self.read_or_skip(dest, &topic, slot, read)? {
                    self.cache.push((slot.0, rest));
                }
            }
        }
        next.retain(|n| n.1 < n.2);
        dest.round(&next);
        let start = Instant::now();
        let mut one_at_a_time = false;
        let mut stalled_since: Option<Instant> = None;
        let mut prefetched: Option<PendingFetch> = self.prefetched.take();
        let mut ramp = FIRST_FETCH_RECORDS;
        while !next.is_empty() {
            let pending: Vec<PartitionFetch> =
                next.iter().map(|&(partition, offset, _)| PartitionFetch { partition, offset }).collect();
            let asks: Vec<&[PartitionFetch]> =
                if one_at_a_time { pending.chunks(1).collect() } else { vec![pending.as_slice()] };
            let mut progressed = false;
            for ask in asks {
                // The prefetched answer serves if it asked for the same offsets; its size only sets how much of
                // the range it brings.
                let fetched = match prefetched.take().filter(|p| p.parts() == ask).map(|p| self.client.fetch_receive(p))
                {
                    Some(Ok(f)) => f,
                    Some(Err(e)) if !e.is_retriable() => return Err(e),
                    // No answer asked for ahead, or it was lost: fetch now (with retries).
                    _ => {
                        let (pmax, max) = self.sizes(ask.iter().map(|a| remaining(&next, a).min(ramp)));
                        ramp = ramp.saturating_mul(RAMP).min(MAX_FETCH_RECORDS);
                        self.client.fetch_sized(&topic, ask, WAIT, pmax, max)?
                    }
                };
                for p in &fetched {
                    self.learn(&p.records);
                }
                // Ask for the bytes after these before reading them, so that the broker prepares the next answer
                // while this one is read. Where the next fetch starts is known from the batch headers.
                if !one_at_a_time {
                    let ahead: Vec<PartitionFetch> = next
                        .iter()
                        .filter_map(|&(partition, from, until)| {
                            let read = fetched.iter().find(|p| p.partition == partition);
                            let start = moved_to(from, until, read.and_then(|p| next_offset_before(&p.records, until)));
                            (start < until).then_some(PartitionFetch { partition, offset: start })
                        })
                        .collect();
                    if !ahead.is_empty() {
                        let (pmax, max) = self.sizes(ahead.iter().map(|a| remaining(&next, a).min(ramp)));
                        ramp = ramp.saturating_mul(RAMP).min(MAX_FETCH_RECORDS);
                        // A failed send only means no head start: the next round fetches as usual.
                        prefetched = self.client.fetch_send(&topic, &ahead, WAIT, pmax, max).ok();
                    }
                }
                for p in fetched {
                    let Some(slot) = next.iter_mut().find(|n| n.0 == p.partition) else { continue };
                    let before = slot.1;
                    let chunk = Chunk::of(&p, self.isolation);
                    let read = dest.read(&topic, &chunk, slot, self.max_batch_bytes);
                    if let Some(rest) = self.read_or_skip(dest, &topic, slot, read)? {
                        self.cache.retain(|c| c.0 != p.partition);
                        self.cache.push((p.partition, rest));
                    }
                    if slot.1 == before {
                        let too_large = too_large_first(&p.records, self.max_batch_bytes).map(|()| None);
                        self.read_or_skip(dest, &topic, slot, too_large)?;
                    }
                    progressed |= slot.1 > before;
                }
            }
            next.retain(|n| n.1 < n.2);
            dest.round(&next);
            if progressed {
                stalled_since = None;
                one_at_a_time = false;
            } else if !next.is_empty() {
                // A partition whose next batch did not fit beside the others' gets a fetch of its own;
                // nothing at all for longer than the retry deadline is an error.
                one_at_a_time = true;
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.client.config().retry_for || self.client.interrupted() {
                    let (partition, offset, end) = next[0];
                    return Err(KafkaError::MissingRecords { topic, partition, offset, end });
                }
                if start.elapsed() > std::time::Duration::from_millis(200) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        if trace::enabled() {
            trace::line(format_args!("ranges fetched"));
        }
        Ok(())
    }
}

/// Fails if the first batch of a partition's fetched `records`, which the fetch did not bring whole, declares a
/// length beyond `limit`: no fetch would ever bring it, and waiting for it would only end in
/// [`KafkaError::MissingRecords`].
fn too_large_first(records: &[u8], limit: usize) -> std::result::Result<(), BatchError> {
    match first_batch_span(records) {
        Some((offset, last_offset, len)) if len > limit as u64 && (records.len() as u64) < len => Err(BatchError {
            offset,
            last_offset,
            first_unread: offset,
            problem: BatchProblem::LongerThanBound { len, limit },
        }),
        _ => Ok(()),
    }
}

impl RangeFetcher {
    /// What came of reading fetched bytes for `slot`: a batch that could not be read fails the fetch, or, if bad
    /// batches are skipped, its offsets from the slot's next offset to its last (at least one, within the range)
    /// are reported to `dest` as skipped and the slot moves past them; the next fetch starts there.
    fn read_or_skip(
        &mut self,
        dest: &mut dyn Dest,
        topic: &str,
        slot: &mut (i32, i64, i64),
        read: std::result::Result<Option<Chunk>, BatchError>,
    ) -> Result<Option<Chunk>> {
        let (partition, from, until) = *slot;
        match read {
            Ok(rest) => Ok(rest),
            Err(e) if self.skip_bad_batches => {
                let first = e.offset.clamp(from, until - 1);
                let last = e.last_offset.clamp(first, until - 1);
                dest.unread(Malformed::skipped(partition, first, last, corrupt(topic, partition, e).to_string()));
                slot.1 = last + 1;
                self.cache.retain(|c| c.0 != partition);
                Ok(None)
            }
            Err(e) => Err(corrupt(topic, partition, e)),
        }
    }
}

/// What reading fixed ranges found besides their records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangesRead {
    /// Offsets skipped unread (bad batches, when they are skipped).
    pub unread: Vec<Malformed>,
    /// Per partition read, the leader epoch of the last batch read and the offset after it (within the range).
    pub leader_epochs: Vec<LeaderEpoch>,
}

/// The leader epoch of the last batch `scan` read of `partition`, if the broker gave one, and the offset after
/// it, within the range ending at `until`.
fn epoch_of(partition: i32, scan: &Scan, until: i64) -> Option<LeaderEpoch> {
    let next = scan.next_offset?;
    (scan.last_epoch >= 0).then(|| LeaderEpoch { partition, epoch: scan.last_epoch, offset: next.min(until) })
}

/// Puts `e` in `epochs` in place of the partition's earlier one.
pub fn note_epoch(epochs: &mut Vec<LeaderEpoch>, e: LeaderEpoch) {
    match epochs.iter_mut().find(|x| x.partition == e.partition) {
        Some(x) => *x = e,
        None => {
            epochs.push(e);
            epochs.sort_unstable();
        }
    }
}

/// The report of the offsets in `[from, until)` of a batch skipped unread (`e`), if any.
fn unread_in(topic: &str, partition: i32, from: i64, until: i64, e: &BatchError) -> Option<Malformed> {
    let (first, last) = (e.first_unread.max(from), e.last_offset.min(until - 1));
    (first <= last)
        .then(|| Malformed::skipped(partition, first, last, corrupt(topic, partition, e.clone()).to_string()))
}

/// Where a fetch puts the records it reads.
trait Dest {
    /// Takes the records of `slot` = (partition, next, until) from `bytes`, advancing `next` past the whole
    /// batches read; returns the bytes that hold offsets at or after `until`, if any. A batch may inflate to
    /// `max_batch_bytes`.
    fn read(
        &mut self,
        topic: &str,
        chunk: &Chunk,
        slot: &mut (i32, i64, i64),
        max_batch_bytes: usize,
    ) -> std::result::Result<Option<Chunk>, BatchError>;
    /// Offsets skipped unread, in order with the records read.
    fn unread(&mut self, m: Malformed);
    /// After a round of reads: `open` lists the ranges not complete yet.
    fn round(&mut self, _open: &[(i32, i64, i64)]) {}
}

/// Records read into a batch, and the offsets skipped unread.
struct Collect<'a> {
    records: &'a mut RecordBatch,
    unread: Vec<Malformed>,
    skip: bool,
    epochs: Vec<LeaderEpoch>,
}

impl Dest for Collect<'_> {
    fn read(
        &mut self,
        topic: &str,
        chunk: &Chunk,
        slot: &mut (i32, i64, i64),
        max_batch_bytes: usize,
    ) -> std::result::Result<Option<Chunk>, BatchError> {
        /// Every record of the range into the batch.
        struct Into<'c, 'b> {
            c: &'c mut Collect<'b>,
            topic: &'c str,
            slot: (i32, i64, i64),
        }
        impl Into<'_, '_> {
            fn push(&mut self, r: RecordView<'_>) {
                let (partition, from, until) = self.slot;
                if r.offset >= from && r.offset < until {
                    self.c.records.push(partition, r.offset, r.timestamp, r.key, r.value);
                }
            }
        }
        impl PlacedRecords<'_> for Into<'_, '_> {
            fn in_place(&mut self, r: RecordView<'_>) {
                self.push(r)
            }
            fn decompressed(&mut self, r: RecordView<'_>) {
                self.push(r)
            }
            fn skips_bad_batches(&self) -> bool {
                self.c.skip
            }
            fn skipped(&mut self, e: &BatchError) {
                let (partition, from, until) = self.slot;
                self.c.unread.extend(unread_in(self.topic, partition, from, until, e));
            }
        }
        let mut into = Into { c: self, topic, slot: *slot };
        let scan = for_each_record_placed(&chunk.bytes, slot.2, max_batch_bytes, chunk.skip(), &mut into)?;
        if let Some(e) = epoch_of(slot.0, &scan, slot.2) {
            note_epoch(&mut self.epochs, e);
        }
        Ok(advance(slot, &scan, chunk))
    }

    fn unread(&mut self, m: Malformed) {
        self.unread.push(m);
    }
}

/// After reading `chunk` for `slot`: moves its next offset past the whole batches read (within its range), or to
/// its end if the first batch not read starts at or after it (the offsets between hold no records: compacted
/// away), and returns the bytes that hold offsets at or after its end, if any, for the next range.
fn advance(slot: &mut (i32, i64, i64), scan: &Scan, chunk: &Chunk) -> Option<Chunk> {
    let bytes = &chunk.bytes;
    slot.1 = moved_to(slot.1, slot.2, scan.next_offset);
    // The fetched bytes are the log's batches from the fetched offset on, without holes: a batch starting at or
    // after the range's end leaves nothing of the range unread.
    if first_base_offset(&bytes[scan.rest.min(bytes.len())..]).is_some_and(|b| b >= slot.2) {
        slot.1 = slot.2;
    }
    (scan.rest + 12 <= bytes.len()).then(|| chunk.with(bytes.slice(scan.rest..)))
}

/// Where a range at `from` (ending at `until`) continues once whole batches up to `next` are read.
fn moved_to(from: i64, until: i64, next: Option<i64>) -> i64 {
    next.filter(|&n| n > from).map_or(from, |n| n.min(until))
}

/// Fetched bytes holding the records of one partition's offsets `[from, until)` (and perhaps records before and
/// after them, which reading skips), not yet read.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The topic (named in errors).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// First offset wanted.
    pub from: i64,
    /// First offset not wanted.
    pub until: i64,
    /// Whole record batches, as fetched.
    pub bytes: Bytes,
    /// The most bytes one of its batches may inflate to.
    pub max_batch_bytes: usize,
    /// Base offsets, ascending, of its batches that belong to aborted transactions (read_committed): their
    /// records are not handed over. `None`: none.
    pub aborted: Option<Arc<[i64]>>,
    /// Skip a batch that cannot be read, reporting its offsets (see [`RecordSource::for_each_skipped`]), rather
    /// than fail.
    pub skip_bad_batches: bool,
    /// Offsets the fetch skipped unread before these bytes (a batch whose length is bad, or too large to fetch).
    pub unread: Vec<Malformed>,
    /// Offsets the last read of the bytes skipped.
    found: RefCell<Vec<Malformed>>,
    /// The leader epoch of the last batch in the bytes, and the offset after it (within the range), if the broker
    /// gave one.
    pub leader_epoch: Option<LeaderEpoch>,
}

impl RecordSource for Segment {
    fn len_hint(&self) -> usize {
        // A record takes at least 7 bytes in a batch.
        ((self.until - self.from).max(0) as usize).min(self.bytes.len() / 7)
    }

    fn for_each_run(&self, f: &mut dyn FnMut(Run<'_>)) -> std::result::Result<usize, SourceError> {
        let mut found = self.found.borrow_mut();
        found.clear();
        if self.bytes.is_empty() {
            return Ok(0);
        }
        let (partition, from, until) = (self.partition, self.from, self.until);
        let skip = self.skip_bad_batches;
        let mut runs = Runs { partition, from, until, run: Vec::new(), n: 0, f, skip, bad: Vec::new() };
        runs.run.reserve(RUN_RECORDS);
        let aborted = self.aborted.as_deref().unwrap_or(&[]);
        if trace::enabled() {
            let n = self.bytes.len();
            trace::line(format_args!("read segment {}-{partition} [{from}, {until}): {n} bytes", self.topic));
        }
        for_each_record_placed(&self.bytes, self.until, self.max_batch_bytes, aborted, &mut runs)
            .map_err(|e| SourceError { reason: corrupt(&self.topic, self.partition, e).to_string() })?;
        runs.flush();
        if trace::enabled() {
            trace::line(format_args!("segment {}-{partition} read: {} records", self.topic, runs.n));
        }
        found.extend(runs.bad.iter().filter_map(|e| unread_in(&self.topic, partition, from, until, e)));
        Ok(runs.n)
    }

    fn for_each_skipped(&self, f: &mut dyn FnMut(&Malformed)) {
        self.unread.iter().chain(self.found.borrow().iter()).for_each(f)
    }
}

impl Segment {
    /// Bytes of `partition` holding the records of `[from, until)`, read as [`RangeFetcher`] reads them.
    pub fn new(topic: Arc<str>, partition: i32, from: i64, until: i64, bytes: Bytes, max_batch_bytes: usize) -> Self {
        let (skip_bad_batches, unread, found, leader_epoch) = (false, Vec::new(), RefCell::default(), None);
        let aborted = None;
        Segment {
            topic,
            partition,
            from,
            until,
            bytes,
            max_batch_bytes,
            aborted,
            skip_bad_batches,
            unread,
            found,
            leader_epoch,
        }
    }

    /// The same bytes as those of input `input` of a job of several topics: its partitions numbered as the
    /// engine numbers that input's (see [`dstream_core::record::input_partition`]).
    pub fn of_input(mut self, input: usize) -> Self {
        if input == 0 {
            return self;
        }
        let to = |p: i32| dstream_core::record::input_partition(input, p);
        self.partition = to(self.partition);
        self.unread.iter_mut().for_each(|m| m.partition = to(m.partition));
        self.found.get_mut().iter_mut().for_each(|m| m.partition = to(m.partition));
        if let Some(e) = self.leader_epoch.as_mut() {
            e.partition = to(e.partition);
        }
        self
    }

    /// The offsets after the last one this segment's reads skip unread, if they skip any: a later segment of the
    /// same range starts its records there (they were skipped with the bad batch).
    pub fn skipped_until(&self) -> Option<i64> {
        let last = self.unread.iter().chain(self.found.borrow().iter()).filter_map(|m| m.last_offset).max();
        last.map(|l| l + 1)
    }
}

/// Gathers a segment's records of `[from, until)` into runs for `f`.
struct Runs<'a, 'f> {
    partition: i32,
    from: i64,
    until: i64,
    run: Vec<RecordRef<'a>>,
    n: usize,
    f: &'f mut dyn FnMut(Run<'_>),
    skip: bool,
    bad: Vec<BatchError>,
}

impl Runs<'_, '_> {
    fn flush(&mut self) {
        if !self.run.is_empty() {
            (self.f)(Run::of_refs(&self.run));
            self.run.clear();
        }
    }
}

impl<'a> PlacedRecords<'a> for Runs<'a, '_> {
    /// Records of uncompressed batches borrow the segment's bytes: they wait in a run.
    #[inline(always)]
    fn in_place(&mut self, r: RecordView<'a>) {
        if r.offset >= self.from && r.offset < self.until {
            self.n += 1;
            let (partition, offset, timestamp) = (self.partition, r.offset, r.timestamp);
            self.run.push(RecordRef { partition, offset, timestamp, key: r.key, value: r.value });
            if self.run.len() == RUN_RECORDS {
                self.flush();
            }
        }
    }

    /// Decompressed records live only while their batch is read: handed over one at a time.
    fn decompressed(&mut self, r: RecordView<'_>) {
        if r.offset >= self.from && r.offset < self.until {
            self.n += 1;
            self.flush();
            let (partition, offset, timestamp) = (self.partition, r.offset, r.timestamp);
            (self.f)(Run::of_refs(&[RecordRef { partition, offset, timestamp, key: r.key, value: r.value }]));
        }
    }

    fn skips_bad_batches(&self) -> bool {
        self.skip
    }

    fn skipped(&mut self, e: &BatchError) {
        self.bad.push(e.clone());
    }
}

/// Hands fetched bytes over as [`Segment`]s in (partition, offset) order: the lowest partition not yet complete
/// (`order[cursor]`) goes out as it is fetched; later partitions' are staged until their turn.
struct InOrder<F> {
    topic: Arc<str>,
    order: Vec<i32>,
    cursor: usize,
    staged: Vec<Vec<Segment>>,
    emit: F,
    skip: bool,
}

impl<F: FnMut(Segment)> InOrder<F> {
    /// Hands `segment` over now if its partition's turn has come, else stages it.
    fn send(&mut self, segment: Segment) {
        match self.order.iter().position(|&p| p == segment.partition) {
            Some(i) if i == self.cursor => (self.emit)(segment),
            Some(i) => self.staged[i].push(segment),
            None => {}
        }
    }
}

impl<F: FnMut(Segment)> Dest for InOrder<F> {
    fn read(
        &mut self,
        _topic: &str,
        chunk: &Chunk,
        slot: &mut (i32, i64, i64),
        max_batch_bytes: usize,
    ) -> std::result::Result<Option<Chunk>, BatchError> {
        let (partition, from, until) = *slot;
        let bytes = &chunk.bytes;
        let scan = if self.skip { scan_headers_skipping(bytes, until)? } else { scan_headers_before(bytes, until)? };
        if scan.next_offset.is_some_and(|n| n > from) {
            let mut segment =
                Segment::new(self.topic.clone(), partition, from, until, bytes.slice(..scan.end), max_batch_bytes);
            segment.aborted = chunk.aborted.clone();
            segment.skip_bad_batches = self.skip;
            segment.leader_epoch = epoch_of(partition, &scan, until);
            self.send(segment);
        }
        Ok(advance(slot, &scan, chunk))
    }

    fn unread(&mut self, m: Malformed) {
        let (partition, from) = (m.partition, m.offset);
        let mut segment = Segment::new(self.topic.clone(), partition, from, from, Bytes::new(), 0);
        segment.unread.push(m);
        self.send(segment);
    }

    fn round(&mut self, open: &[(i32, i64, i64)]) {
        while self.cursor < self.order.len() {
            for segment in self.staged[self.cursor].drain(..) {
                (self.emit)(segment);
            }
            if open.iter().any(|o| o.0 == self.order[self.cursor]) {
                break;
            }
            self.cursor += 1;
        }
    }
}

/// The error for a damaged (or too large) batch of a partition.
fn corrupt(topic: &str, partition: i32, e: BatchError) -> KafkaError {
    // The topic's own partition number, whatever input of a job the topic is.
    let partition = dstream_core::record::split_partition(partition).1;
    let (topic, offset, last_offset) = (topic.to_string(), e.offset, e.last_offset);
    match e.problem {
        BatchProblem::Corrupt(reason) => KafkaError::CorruptBatch { topic, partition, offset, last_offset, reason },
        p @ (BatchProblem::TooLarge { .. } | BatchProblem::LongerThanBound { .. }) => {
            KafkaError::BatchTooLarge { topic, partition, offset, last_offset, reason: p.to_string() }
        }
    }
}

struct Probe {
    out_of_range: bool,
    /// The end of what the stream may read: the high watermark, or with read_committed the last stable offset.
    end: i64,
    log_start: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::records::{encode_batch, Codec};
    use dstream_core::{BatchTimer, Engine, ManualClock};

    fn segment(bytes: Bytes, from: i64, until: i64) -> Segment {
        Segment::new("avg".into(), 3, from, until, bytes, 1 << 20)
    }

    #[test]
    fn a_segment_hands_over_exactly_its_range_in_runs_for_every_codec() {
        let values: Vec<Vec<u8>> = (0..600).map(|i| format!("k,{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let s = segment(encode_batch(&refs, 5, codec).unwrap(), 7, 500);
            let (mut runs, mut got) = (0, vec![]);
            let n = s
                .for_each_run(&mut |run| {
                    runs += 1;
                    got.extend(run.iter().map(|r| (r.partition, r.offset, r.timestamp, r.value.to_vec())));
                })
                .unwrap();
            let want: Vec<(i32, i64, i64, Vec<u8>)> = (7..500).map(|o| (3, o, 5, values[o as usize].clone())).collect();
            assert_eq!((n, got), (want.len(), want), "{codec:?}");
            // Uncompressed records come in runs of up to RUN_RECORDS; decompressed ones one at a time.
            let expected_runs = if codec == Codec::None { 493usize.div_ceil(RUN_RECORDS) } else { 493 };
            assert_eq!(runs, expected_runs, "{codec:?}");
        }
    }

    /// `batch` with its header's record count replaced and its checksum made to match.
    fn with_count(batch: &Bytes, count: i32) -> Bytes {
        let mut b = batch.to_vec();
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    #[test]
    fn a_batch_counting_fewer_records_than_it_holds_fails_both_readers_naming_partition_and_offsets() {
        for codec in [Codec::None, Codec::Gzip, Codec::Zstd] {
            // Three records at offsets 0..=2 whose header counts one: the old parser read one, skipped two.
            let bad = with_count(&encode_batch(&[b"a,1", b"b,2", b"c,3"], 0, codec).unwrap(), 1);
            // Read in place by the processing thread (the live path).
            let (mut seen, s) = (0, segment(bad.clone(), 0, 3));
            let err = s.for_each_record(&mut |_| seen += 1).unwrap_err();
            let want = "corrupt record batch in avg-3 at offsets 0..=2: it holds more records than the 1 its header";
            assert!(err.reason.contains(want), "{codec:?}: {err}");
            // Read into a RecordBatch (catching up on pending batches): a typed error, the range not moved past it.
            let (mut batch, mut slot) = (RecordBatch::new(), (3, 0, 3));
            let chunk = Chunk { bytes: bad.clone(), aborted: None };
            let mut dest = Collect { records: &mut batch, unread: Vec::new(), skip: false, epochs: Vec::new() };
            let err = corrupt("avg", 3, Dest::read(&mut dest, "avg", &chunk, &mut slot, 1 << 20).unwrap_err());
            assert!(
                matches!(&err, KafkaError::CorruptBatch { partition: 3, offset: 0, last_offset: 2, reason, .. }
                    if reason.contains("more records than the 1")),
                "{codec:?}: {err}"
            );
            assert_eq!(slot, (3, 0, 3), "{codec:?}");
        }
    }

    #[test]
    fn a_batch_inflating_beyond_the_bound_fails_its_segment_naming_partition_and_offsets() {
        let values: Vec<Vec<u8>> = (0..1000).map(|i| format!("k,{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let mut s = segment(encode_batch(&refs, 5, Codec::Lz4).unwrap(), 0, 1000);
        s.max_batch_bytes = 1000;
        let err = s.for_each_record(&mut |_| {}).unwrap_err();
        let want = "record batch in avg-3 at offsets 0..=999 is too large: it inflates to more than 1000 bytes";
        assert!(err.reason.contains(want), "{err}");
    }

    #[test]
    fn a_batch_header_declaring_more_than_the_bound_is_too_large_at_once() {
        let one = encode_batch(&[b"a,1"], 0, Codec::None).unwrap();
        let mut huge = one.to_vec();
        huge[8..12].copy_from_slice(&(i32::MAX - 11).to_be_bytes()); // a batch of 2 GiB, cut off by the fetch
        let err = corrupt("avg", 3, too_large_first(&huge, 64 << 20).unwrap_err());
        let want = "record batch in avg-3 at offsets 0..=0 is too large: its header declares 2147483648 bytes, more \
                    than the bound on a batch (67108864 bytes)";
        assert_eq!(err.to_string(), want);
        // A batch merely cut off by the fetch's size, or one fetched whole, is no error.
        assert!(too_large_first(&one[..one.len() - 1], 64 << 20).is_ok());
        assert!(too_large_first(&one, 10).is_ok());
    }

    #[test]
    fn a_damaged_segment_fails_its_batch_naming_topic_partition_and_offset() {
        let good = encode_batch(&[b"a,1", b"b,2"], 0, Codec::None).unwrap();
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1; // inside the records: the checksum no longer matches
        let s = segment(Bytes::from(bad), 0, 2);
        let err = s.for_each_record(&mut |_| {}).unwrap_err();
        assert!(err.reason.contains("avg") && err.reason.contains('3') && err.reason.contains("checksum"), "{err}");
        let clock = ManualClock::default();
        let timer = BatchTimer::first_start(dstream_core::Time(0), dstream_core::Duration(1000));
        let lengths = dstream_core::input(
            |r: dstream_core::RecordRef<'_>| Ok::<_, std::fmt::Error>(r.value.len()),
            dstream_core::MalformedPolicy::Skip,
        );
        let mut engine =
            Engine::new(dstream_core::Graph::new().output(dstream_core::DStreamExt::print(lengths, 1)), timer);
        let mut open = engine.begin_batch(dstream_core::Time(1000), &clock).unwrap();
        let failed = engine.feed_source(&mut open, &s).unwrap_err();
        assert!(failed.to_string().contains("checksum"), "{failed}");
    }

    /// `batch` with one byte of its records flipped: its checksum no longer matches.
    fn damaged(batch: &Bytes) -> Bytes {
        let mut b = batch.to_vec();
        let last = b.len() - 1;
        b[last] ^= 1;
        Bytes::from(b)
    }

    /// Three batches at offsets 0..=2, 3..=5 and 6..=8; the middle one is `middle` applied to it.
    fn three_batches(codec: Codec, middle: impl Fn(&Bytes) -> Bytes) -> Bytes {
        let mut all = encode_batch(&[b"a,1", b"b,2", b"c,3"], 0, codec).unwrap().to_vec();
        let mut bad = middle(&encode_batch(&[b"a,4", b"b,5", b"c,6"], 0, codec).unwrap()).to_vec();
        bad[..8].copy_from_slice(&3i64.to_be_bytes());
        all.extend(bad);
        let mut last = encode_batch(&[b"a,7", b"b,8", b"c,9"], 0, codec).unwrap().to_vec();
        last[..8].copy_from_slice(&6i64.to_be_bytes());
        all.extend(last);
        Bytes::from(all)
    }

    /// Offsets read, and the spans skipped (first, last, reason).
    type Read = (Vec<i64>, Vec<(i64, Option<i64>, String)>);

    /// The offsets a segment over `bytes` hands over, and the spans it reports skipped.
    fn read_segment(bytes: Bytes, from: i64, until: i64) -> Read {
        let mut s = segment(bytes, from, until);
        s.skip_bad_batches = true;
        let mut got = vec![];
        s.for_each_record(&mut |r| got.push(r.offset)).unwrap();
        let mut skipped = vec![];
        s.for_each_skipped(&mut |m| skipped.push((m.offset, m.last_offset, m.reason.clone())));
        (got, skipped)
    }

    /// The offsets reading `bytes` into a batch (the path of batches run again) takes, and the spans it skips.
    fn read_collect(bytes: Bytes, from: i64, until: i64) -> Read {
        let mut batch = RecordBatch::new();
        let mut dest = Collect { records: &mut batch, unread: Vec::new(), skip: true, epochs: Vec::new() };
        let mut slot = (3, from, until);
        Dest::read(&mut dest, "avg", &Chunk { bytes, aborted: None }, &mut slot, 1 << 20).unwrap();
        let skipped = dest.unread.iter().map(|m| (m.offset, m.last_offset, m.reason.clone())).collect();
        (batch.iter().map(|r| r.offset).collect(), skipped)
    }

    #[test]
    fn a_damaged_batch_is_skipped_whole_and_reported_when_bad_batches_are_skipped() {
        for codec in [Codec::None, Codec::Gzip, Codec::Zstd] {
            let bytes = three_batches(codec, damaged);
            for read in [read_segment, read_collect] {
                let (got, skipped) = read(bytes.clone(), 0, 9);
                assert_eq!(got, [0, 1, 2, 6, 7, 8], "{codec:?}");
                assert_eq!(skipped.len(), 1, "{codec:?}: {skipped:?}");
                let (first, last, reason) = &skipped[0];
                assert_eq!((*first, *last), (3, Some(5)), "{codec:?}");
                assert_eq!(reason, "corrupt record batch in avg-3 at offsets 3..=5: checksum mismatch");
                // Only the range's offsets are reported.
                let (got, skipped) = read(bytes.clone(), 4, 5);
                assert_eq!((got, skipped[0].0, skipped[0].1), (vec![], 4, Some(4)), "{codec:?}");
            }
        }
        // Without skipping, the same bytes fail the segment, as before.
        let err = segment(three_batches(Codec::None, damaged), 0, 9).for_each_record(&mut |_| {}).unwrap_err();
        assert!(err.reason.contains("avg-3 at offsets 3..=5: checksum mismatch"), "{err}");
    }

    #[test]
    fn a_batch_bad_part_of_the_way_is_skipped_from_its_first_record_not_handed_over() {
        // The header counts one record of three: the first is read, the other two are reported unread.
        let bytes = three_batches(Codec::None, |b| with_count(b, 1));
        for read in [read_segment, read_collect] {
            let (got, skipped) = read(bytes.clone(), 0, 9);
            assert_eq!(got, [0, 1, 2, 3, 6, 7, 8]);
            assert_eq!((skipped[0].0, skipped[0].1), (4, Some(5)), "{skipped:?}");
            assert!(skipped[0].2.contains("more records than the 1 its header counts"), "{skipped:?}");
        }
    }

    #[test]
    fn a_damaged_batch_claiming_offsets_beyond_its_own_skips_them_whatever_follows_it() {
        // Damage in the header's last offset delta: the batch claims 3..=7, so the records at 6 and 7 of the next
        // batch are skipped with it, as they are when a later fetch starts at 8 (the path does not matter).
        let bytes = three_batches(Codec::None, |b| {
            let mut b = b.to_vec();
            b[23..27].copy_from_slice(&4i32.to_be_bytes());
            Bytes::from(b)
        });
        for read in [read_segment, read_collect] {
            let (got, skipped) = read(bytes.clone(), 0, 9);
            assert_eq!(got, [0, 1, 2, 8]);
            assert_eq!((skipped[0].0, skipped[0].1), (3, Some(7)), "{skipped:?}");
        }
    }
}
