//! Several topics read as one job's inputs: one [`DirectStream`] and one [`RangeFetcher`] per topic, their
//! partitions numbered as the engine numbers a job's inputs ([`input_partition`]: topic `n`'s partition `p` is
//! `n << 24 | p`, so that the first topic's partitions keep their numbers).

use super::client::Client;
use super::direct::{DirectConfig, DirectStream, GeneratedBatch, RangeFetcher, RangesRead, Segment};
use super::error::{KafkaError, Result};
use dstream_core::checkpoint::LeaderEpoch;
use dstream_core::record::{input_partition, split_partition, INPUT_SHIFT, MAX_INPUTS};
use dstream_core::{BatchInfo, OffsetRange, RecordBatch, Time};

/// The partitions of one topic the engine can number beside others'.
const MAX_PARTITION: i32 = 1 << INPUT_SHIFT;

/// The direct streams of a job's topics, generating one batch over all of them.
pub struct DirectStreams {
    streams: Vec<DirectStream>,
}

impl DirectStreams {
    /// One direct stream per configuration (input `n` reads `configs[n]`'s topic), each on a client from
    /// `connect`, starting at `from` (engine partitions, e.g. from a checkpoint) or the configured offsets. No
    /// configuration: batches of no Kafka records (a job whose input is elsewhere), and no connection.
    pub fn new(
        mut connect: impl FnMut() -> Result<Client>,
        configs: Vec<DirectConfig>,
        from: Option<Vec<(i32, i64)>>,
    ) -> Result<Self> {
        if configs.len() > MAX_INPUTS {
            return Err(KafkaError::Inputs { count: configs.len(), max: MAX_INPUTS });
        }
        let mut streams = Vec::with_capacity(configs.len());
        for (input, cfg) in configs.into_iter().enumerate() {
            let own = from.as_ref().map(|all| of_input(all.iter().map(|&(p, o)| (p, o)), input));
            let stream = DirectStream::new(connect()?, cfg, own)?;
            check_partitions(stream.topic(), stream.current_offsets())?;
            streams.push(stream);
        }
        Ok(DirectStreams { streams })
    }

    /// Checks every topic's log against the leader epochs read in (see [`DirectStream::check_leader_epochs`]).
    pub fn check_leader_epochs(&mut self, epochs: &[LeaderEpoch]) -> Result<()> {
        for (input, s) in self.streams.iter_mut().enumerate() {
            let own: Vec<LeaderEpoch> = epochs
                .iter()
                .filter_map(|e| match split_partition(e.partition) {
                    (i, partition) if i == input => Some(LeaderEpoch { partition, ..*e }),
                    _ => None,
                })
                .collect();
            s.check_leader_epochs(&own)?;
        }
        Ok(())
    }

    /// The next offset of every partition of every topic, as (engine partition, offset), sorted.
    pub fn current_offsets(&self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (input, s) in self.streams.iter().enumerate() {
            out.extend(s.current_offsets().iter().map(|&(p, o)| (input_partition(input, p), o)));
        }
        out
    }

    /// Generates the batch at `time` over every topic (see [`DirectStream::generate`]), in input order.
    pub fn generate(&mut self, time: Time) -> Result<GeneratedBatch> {
        if self.streams.len() == 1 {
            let b = self.streams[0].generate(time)?;
            check_partitions(self.streams[0].topic(), &b.lags)?;
            return Ok(b);
        }
        let mut all = GeneratedBatch {
            info: BatchInfo { time, ranges: Vec::new() },
            lag: 0,
            lags: Vec::new(),
            resets: Vec::new(),
        };
        for (input, s) in self.streams.iter_mut().enumerate() {
            let b = s.generate(time)?;
            check_partitions(s.topic(), &b.lags)?;
            let to = |p: i32| input_partition(input, p);
            all.info.ranges.extend(b.info.ranges.iter().map(|r| OffsetRange { partition: to(r.partition), ..*r }));
            all.lags.extend(b.lags.iter().map(|&(p, l)| (to(p), l)));
            all.resets.extend(b.resets.iter().map(|r| super::direct::OffsetReset { partition: to(r.partition), ..*r }));
            all.lag += b.lag;
        }
        Ok(all)
    }
}

/// The (partition, _) pairs of input `input`, numbered as the topic numbers them.
fn of_input<T>(all: impl Iterator<Item = (i32, T)>, input: usize) -> Vec<(i32, T)> {
    all.filter_map(|(p, x)| match split_partition(p) {
        (i, p) if i == input => Some((p, x)),
        _ => None,
    })
    .collect()
}

/// Fails if a topic has a partition the engine cannot number beside other topics' (at or above 2^24).
fn check_partitions<T>(topic: &str, parts: &[(i32, T)]) -> Result<()> {
    match parts.iter().find(|p| p.0 >= MAX_PARTITION) {
        Some(p) => {
            Err(KafkaError::PartitionTooHigh { topic: topic.to_string(), partition: p.0, max: MAX_PARTITION - 1 })
        }
        None => Ok(()),
    }
}

/// The range fetchers of a job's topics (input `n` fetched by fetcher `n`, on a connection of its own).
pub struct RangeFetchers {
    fetchers: Vec<RangeFetcher>,
}

impl RangeFetchers {
    /// Fetchers by input index.
    pub fn new(fetchers: Vec<RangeFetcher>) -> Self {
        RangeFetchers { fetchers }
    }

    /// Fetches exactly the records of `ranges` (engine partitions) into `out`, as [`RangeFetcher::fetch_ranges`]
    /// does, topic by topic in input order; the records, skipped offsets and epochs carry engine partitions.
    pub fn fetch_ranges(&mut self, ranges: &[OffsetRange], out: &mut RecordBatch) -> Result<RangesRead> {
        let mut read = RangesRead::default();
        for (input, f) in self.fetchers.iter_mut().enumerate() {
            let own = own_ranges(ranges, input);
            if own.is_empty() {
                continue;
            }
            let start = out.len();
            let r = f.fetch_ranges(&own, out)?;
            out.set_input(start, input);
            read.unread.extend(r.unread.into_iter().map(|mut m| {
                m.partition = input_partition(input, m.partition);
                m
            }));
            read.leader_epochs.extend(
                r.leader_epochs
                    .into_iter()
                    .map(|e| LeaderEpoch { partition: input_partition(input, e.partition), ..e }),
            );
        }
        Ok(read)
    }

    /// Fetches the records of `ranges` as [`RangeFetcher::fetch_ranges_in_segments`] does, topic by topic in input
    /// order; segments carry engine partitions.
    pub fn fetch_ranges_in_segments(&mut self, ranges: &[OffsetRange], mut segment: impl FnMut(Segment)) -> Result<()> {
        for (input, f) in self.fetchers.iter_mut().enumerate() {
            let own = own_ranges(ranges, input);
            if own.is_empty() {
                continue;
            }
            f.fetch_ranges_in_segments(&own, |s| segment(s.of_input(input)))?;
        }
        Ok(())
    }

    /// Asks each topic for the first records of its next ranges (see [`RangeFetcher::prefetch`]).
    pub fn prefetch(&mut self, from: &[(i32, i64)]) {
        for (input, f) in self.fetchers.iter_mut().enumerate() {
            f.prefetch(&of_input(from.iter().copied(), input));
        }
    }
}

/// The ranges of input `input`, numbered as its topic numbers them.
fn own_ranges(ranges: &[OffsetRange], input: usize) -> Vec<OffsetRange> {
    ranges
        .iter()
        .filter_map(|r| match split_partition(r.partition) {
            (i, partition) if i == input => Some(OffsetRange { partition, ..*r }),
            _ => None,
        })
        .collect()
}
