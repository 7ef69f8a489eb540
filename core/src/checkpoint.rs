//! What a checkpoint holds, whatever stores it: the job's fingerprint, where the stream stands, and the state
//! of every stateful operator, one frame each. The file store (in the adapters) and the test driver (in the
//! harness) write and read these same types.

use crate::engine::BatchInfo;
use crate::stateful::{StateCodecError, StateVisit, Stateful};
use crate::stream::Job;
use crate::time::{Duration, Time, MAX_MILLIS};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a checkpoint belongs to: a checkpoint is only resumed by the same job over the same input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Kafka topic (or source name).
    pub topic: String,
    /// Number of partitions of the topic.
    pub partitions: u32,
    /// The job's name.
    pub job: String,
    /// Parameters that affect the job's state, as (name, value) pairs sorted by name.
    pub params: Vec<(String, String)>,
    /// The topic's id (Kafka gives one from Metadata v10 on; a deleted and re-created topic gets a new one), if
    /// known. Not part of this struct's encoding: a store keeps it beside the rest (the file store after the meta
    /// section's other fields), so checkpoints written without it still read.
    #[serde(skip)]
    pub topic_id: Option<String>,
    /// The job's other inputs, when it reads several topics: input 1 on (input 0 is `topic`). Not part of this
    /// struct's encoding either (the file store keeps them after the topic's id), so that a one-topic
    /// checkpoint's bytes stay what they were.
    #[serde(skip)]
    pub more_inputs: Vec<InputPrint>,
}

/// One more input of a job that reads several topics: what [`Fingerprint`]'s `topic`, `partitions` and `topic_id`
/// say of the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPrint {
    /// The topic.
    pub topic: String,
    /// Its number of partitions.
    pub partitions: u32,
    /// Its id, if known.
    pub topic_id: Option<String>,
}

impl Fingerprint {
    /// A fingerprint with the given parameters (sorted by name here).
    pub fn new(topic: &str, partitions: u32, job: &str, mut params: Vec<(String, String)>) -> Self {
        params.sort();
        let (topic, job) = (topic.to_string(), job.to_string());
        Fingerprint { topic, partitions, job, params, topic_id: None, more_inputs: Vec::new() }
    }

    /// The same fingerprint reading `more` besides its first topic (inputs 1, 2, ...).
    pub fn with_more_inputs(mut self, more: Vec<InputPrint>) -> Self {
        self.more_inputs = more;
        self
    }

    /// Every input's topic, partition count and id, by input index.
    pub fn inputs(&self) -> Vec<InputPrint> {
        let first =
            InputPrint { topic: self.topic.clone(), partitions: self.partitions, topic_id: self.topic_id.clone() };
        std::iter::once(first).chain(self.more_inputs.iter().cloned()).collect()
    }

    /// The topics, comma-separated (as a program names them: Kafka topic names have no commas).
    pub fn topics(&self) -> String {
        std::iter::once(self.topic.as_str())
            .chain(self.more_inputs.iter().map(|i| i.topic.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Raises each input's partition count to the partitions `next` names (partitions added to a topic while
    /// running are read, so a checkpoint's input has them too).
    pub fn grow_to(&mut self, next: &[NextOffset]) {
        for n in next {
            let (input, p) = crate::record::split_partition(n.partition);
            let count = u32::try_from(p).map_or(0, |p| p.saturating_add(1));
            match input {
                0 => self.partitions = self.partitions.max(count),
                i => {
                    if let Some(more) = self.more_inputs.get_mut(i - 1) {
                        more.partitions = more.partitions.max(count);
                    }
                }
            }
        }
    }

    /// The same fingerprint with the topic's id (`None`: unknown, e.g. a broker without topic ids).
    pub fn with_topic_id(mut self, topic_id: Option<String>) -> Self {
        self.topic_id = topic_id;
        self
    }

    /// The first topic whose stored and current ids are both known and differ, with both ids: the topic was replaced (deleted and
    /// re-created, or its broker lost its data), so stored offsets point into a different log.
    pub fn replaced_topic<'a>(&'a self, current: &'a Fingerprint) -> Option<(&'a str, &'a str, &'a str)> {
        let first = (self.topic.as_str(), &self.topic_id, &current.topic_id);
        let more = self
            .more_inputs
            .iter()
            .zip(&current.more_inputs)
            .map(|(s, c)| (s.topic.as_str(), &s.topic_id, &c.topic_id));
        std::iter::once(first).chain(more).find_map(|(topic, stored, now)| match (stored, now) {
            (Some(stored), Some(now)) if stored != now => Some((topic, stored.as_str(), now.as_str())),
            _ => None,
        })
    }

    /// The fingerprint of `job` named `name` reading `topic`: each stateful operator (by id) with its kind and the
    /// parameters that define its state. What does not change state (a `print` count, a closure) does not count.
    pub fn of_job<J: Job + ?Sized>(topic: &str, partitions: u32, name: &str, job: &mut J, interval: Duration) -> Self {
        let mut params = Vec::new();
        for_each_operator(job, &mut |id, op| {
            params.push((id.to_string(), op.kind().to_string()));
            for (k, v) in op.params(interval) {
                params.push((format!("{id}.{k}"), v));
            }
        });
        Fingerprint::new(topic, partitions, name, params)
    }

    /// Every field where `self` (stored) and `current` differ, in a fixed order. A partition count grown since is
    /// no difference.
    pub fn differences(&self, current: &Fingerprint) -> Vec<FingerprintDiff> {
        let mut d = Vec::new();
        let mut field = |name: &str, stored: String, now: String| {
            if stored != now {
                d.push(FingerprintDiff { field: name.to_string(), stored, current: now });
            }
        };
        field("topic", self.topics(), current.topics());
        // A topic with more partitions than the checkpoint's is the same input grown (Kafka adds partitions, never
        // removes them): the new ones are read from their earliest offsets. Fewer is another input.
        if current.partitions < self.partitions {
            field("partitions", self.partitions.to_string(), current.partitions.to_string());
        }
        for (s, c) in self.more_inputs.iter().zip(&current.more_inputs) {
            if c.partitions < s.partitions && c.topic == s.topic {
                field(&format!("partitions of {}", s.topic), s.partitions.to_string(), c.partitions.to_string());
            }
        }
        field("job", self.job.clone(), current.job.clone());
        let mut names: Vec<&String> = self.params.iter().chain(&current.params).map(|(k, _)| k).collect();
        names.sort();
        names.dedup();
        let get = |p: &[(String, String)], name: &str| {
            p.iter().find(|(k, _)| k == name).map_or("(absent)".to_string(), |(_, v)| v.clone())
        };
        for name in names {
            field(name, get(&self.params, name), get(&current.params, name));
        }
        d
    }
}

/// One field in which a stored fingerprint differs from the current job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintDiff {
    /// The field's name, e.g. `topic` or `state.timeout`.
    pub field: String,
    /// Its value in the checkpoint.
    pub stored: String,
    /// Its value in the current job.
    pub current: String,
}

impl fmt::Display for FingerprintDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: checkpoint has {:?}, this run has {:?}", self.field, self.stored, self.current)
    }
}

/// Calls `f` with every stateful operator of `job` and its id: the name the program gave it, or its kind and
/// position among the job's stateful operators (`map_with_state#0`), in the job's fixed order.
pub fn for_each_operator<J: Job + ?Sized>(job: &mut J, f: &mut dyn FnMut(&str, &mut dyn Stateful)) {
    let mut position = 0usize;
    let mut each = |op: &mut dyn Stateful| {
        let id = match op.name() {
            Some(name) => name.to_string(),
            None => format!("{}#{position}", op.kind()),
        };
        position += 1;
        f(&id, op);
    };
    job.visit_state(&mut StateVisit::new(&mut each));
}

/// One stateful operator's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator's id (see [`for_each_operator`]).
    pub id: String,
    /// Its kind, e.g. `map_with_state`.
    pub kind: String,
    /// Keys (or kept batches) it held.
    pub len: u64,
    /// Its state, in the operator's own encoding.
    #[serde(with = "byte_string")]
    pub bytes: Vec<u8>,
}

/// A byte vector as one byte string: the same bytes on the wire as a sequence of `u8` (postcard writes both as a
/// length and the bytes), decoded with one copy rather than one call per byte.
mod byte_string {
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// A job's state in a checkpoint: one entry per stateful operator, in the job's order.
pub type JobState = Vec<OperatorState>;

/// Where a partition's stream continues: the first offset not yet assigned to any batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NextOffset {
    /// Partition number.
    pub partition: i32,
    /// First offset not covered by any generated batch.
    pub offset: i64,
}

/// What a run saw of a partition's log: it held offset `offset - 1` in leader epoch `epoch` (the epoch of the last
/// record batch fetched up to there). If the log's records of that epoch later end below `offset`, the log was
/// truncated in place (an unclean leader election, a broker that lost data) and the offsets saved no longer
/// point into the log that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaderEpoch {
    /// Partition number.
    pub partition: i32,
    /// The leader epoch of the batch holding `offset - 1`.
    pub epoch: i32,
    /// The offset after the last one read in that epoch.
    pub offset: i64,
}

/// Everything in a checkpoint but the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The job and input this checkpoint belongs to.
    pub fingerprint: Fingerprint,
    /// The last completed batch, whose result the state holds.
    pub time: Time,
    /// The batch grid's origin.
    pub zero: Time,
    /// The batch interval.
    pub interval: Duration,
    /// Where each partition continues after the last generated batch.
    pub next_offsets: Vec<NextOffset>,
    /// Batches generated (ranges fixed) but not completed, oldest first; they run again on restore.
    pub pending: Vec<BatchInfo>,
    /// Per partition, the leader epoch of the last batch fetched and where it was (none if the broker gives no
    /// epochs). Not part of this struct's encoding: a store keeps it beside the rest (the file store after the
    /// meta section's other fields), so checkpoints written without it still read.
    #[serde(skip)]
    pub leader_epochs: Vec<LeaderEpoch>,
}

impl CheckpointMeta {
    /// Checks what the file's checksum cannot; the first problem, described. Every time is within [`MAX_MILLIS`]
    /// of the origin and the interval positive and as bounded (no arithmetic on the grid can wrap); the next
    /// offsets name every partition of the fingerprint once, none negative; pending batches come after the
    /// checkpoint's batch, in order, with ranges `0 <= from <= until <= next offset` of partitions of the input.
    pub fn check(&self) -> Result<(), String> {
        let interval = self.interval.millis();
        if interval <= 0 || interval > MAX_MILLIS {
            return Err(format!("batch interval {interval} ms is not within 1..={MAX_MILLIS} ms"));
        }
        let times = [("batch time", self.time), ("grid origin", self.zero)];
        let pending = self.pending.iter().map(|b| ("pending batch time", b.time));
        for (what, t) in times.into_iter().chain(pending) {
            if !t.in_range() {
                return Err(format!("{what} {} ms is out of range (at most {MAX_MILLIS} ms either side of 0)", t.0));
            }
        }
        // Offsets: every partition of every input exactly once, none negative; a partition left out would start
        // afresh under a state that already counts it, one listed twice would be read twice.
        let counts: Vec<usize> = std::iter::once(self.fingerprint.partitions)
            .chain(self.fingerprint.more_inputs.iter().map(|i| i.partitions))
            .map(|n| n as usize)
            .collect();
        let label = |p: i32| crate::stream::PartitionLabel(p);
        if counts.iter().fold(0usize, |a, &n| a.saturating_add(n)) > self.next_offsets.len() {
            // Fewer offsets than partitions: one is left out. Found without sizing anything by the partition
            // counts, which come from the file (a count near 2^32 would ask for tens of GiB).
            for (input, &n) in counts.iter().enumerate() {
                let mut listed = vec![false; self.next_offsets.len().min(n) + 1];
                for o in &self.next_offsets {
                    let (i, p) = crate::record::split_partition(o.partition);
                    if let Some(l) = usize::try_from(p).ok().filter(|_| i == input).and_then(|p| listed.get_mut(p)) {
                        *l = true;
                    }
                }
                if let Some(p) = listed.iter().take(n).position(|l| !l) {
                    let p = crate::record::input_partition(input, p as i32);
                    return Err(format!("next offsets leave out partition {}", label(p)));
                }
            }
        }
        let mut next: Vec<Vec<Option<i64>>> = counts.iter().map(|&n| vec![None; n]).collect();
        for n in &self.next_offsets {
            let (input, p) = crate::record::split_partition(n.partition);
            let slot = next.get_mut(input).and_then(|v| usize::try_from(p).ok().and_then(|p| v.get_mut(p)));
            let Some(slot) = slot else {
                let has = counts.get(input).copied().unwrap_or(0);
                return Err(format!("next offsets name partition {}, the input has {has}", label(n.partition)));
            };
            if slot.is_some() {
                return Err(format!("next offsets list partition {} twice", label(n.partition)));
            }
            if n.offset < 0 {
                return Err(format!("next offset {} of partition {} is negative", n.offset, label(n.partition)));
            }
            *slot = Some(n.offset);
        }
        for (input, v) in next.iter().enumerate() {
            if let Some(p) = v.iter().position(Option::is_none) {
                let p = crate::record::input_partition(input, p as i32);
                return Err(format!("next offsets leave out partition {}", label(p)));
            }
        }
        // Pending batches: after the checkpoint's batch and in order, each range within what was generated.
        let mut after = self.time;
        for b in &self.pending {
            if b.time <= after {
                return Err(format!("pending batch time {} ms is not after {} ms", b.time.0, after.0));
            }
            after = b.time;
            for r in &b.ranges {
                let (input, p) = crate::record::split_partition(r.partition);
                let until =
                    next.get(input).and_then(|v| usize::try_from(p).ok().and_then(|p| v.get(p).copied().flatten()));
                let Some(next) = until else {
                    return Err(format!("pending batch {} ms names partition {}", b.time.0, label(r.partition)));
                };
                if !(0 <= r.from && r.from <= r.until && r.until <= next) {
                    return Err(format!(
                        "pending batch {} ms has range [{}, {}) of partition {}, outside [0, {next})",
                        b.time.0,
                        r.from,
                        r.until,
                        label(r.partition)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A whole checkpoint: metadata and the job's state, saved and loaded together.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint<S> {
    /// Fingerprint, time, grid, offsets and pending batches.
    pub meta: CheckpointMeta,
    /// The job's state after batch `meta.time`.
    pub state: S,
}

/// The state of every stateful operator of `job`, as a checkpoint stores it.
pub fn save_state<J: Job + ?Sized>(job: &mut J) -> Result<JobState, RestoreError> {
    let mut ops = Vec::new();
    let mut failed = None;
    for_each_operator(job, &mut |id, op| {
        let mut bytes = Vec::new();
        match op.save(&mut bytes) {
            Ok(()) => {
                ops.push(OperatorState { id: id.to_string(), kind: op.kind().to_string(), len: op.len() as u64, bytes })
            }
            Err(source) => {
                failed.get_or_insert(RestoreError::Codec { id: id.to_string(), source });
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(ops),
    }
}

/// Restores every stateful operator of `job` (rebuilt by the program) from a checkpoint's state, by id.
pub fn restore_state<J: Job + ?Sized>(job: &mut J, state: &JobState) -> Result<(), RestoreError> {
    let mut failed = None;
    let mut used = 0;
    for_each_operator(job, &mut |id, op| {
        if failed.is_some() {
            return;
        }
        match state.iter().find(|s| s.id == id) {
            None => failed = Some(RestoreError::Missing { id: id.to_string() }),
            Some(s) if s.kind != op.kind() => {
                failed = Some(RestoreError::Kind { id: id.to_string(), stored: s.kind.clone(), current: op.kind() })
            }
            Some(s) => {
                used += 1;
                if let Err(source) = op.restore(&s.bytes) {
                    failed = Some(RestoreError::Codec { id: id.to_string(), source });
                }
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if used != state.len() {
        let ids: Vec<&str> = state.iter().map(|s| s.id.as_str()).collect();
        return Err(RestoreError::Extra { stored: ids.join(", ") });
    }
    Ok(())
}

/// Why a job's state could not be saved or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// An operator's state did not encode or decode.
    #[error("state of operator {id}: {source}")]
    Codec {
        /// The operator.
        id: String,
        /// What went wrong.
        source: StateCodecError,
    },
    /// The job has a stateful operator the checkpoint has no state for.
    #[error("the checkpoint holds no state for operator {id}")]
    Missing {
        /// The operator.
        id: String,
    },
    /// The checkpoint's operator of this id is of another kind.
    #[error("operator {id} is a {current} in this job but a {stored} in the checkpoint")]
    Kind {
        /// The operator.
        id: String,
        /// Its kind in the checkpoint.
        stored: String,
        /// Its kind now.
        current: &'static str,
    },
    /// The checkpoint's times or interval are out of range (see [`CheckpointMeta::check`]).
    #[error("the checkpoint's {0}")]
    Invalid(String),
    /// The checkpoint holds state for operators this job does not have.
    #[error("the checkpoint holds state for operators this job does not have (it has {stored})")]
    Extra {
        /// The checkpoint's operators.
        stored: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_partition_count_is_no_difference_and_a_shrunk_one_is() {
        let at = |partitions| Fingerprint::new("avg", partitions, "lab", vec![]);
        assert!(at(2).differences(&at(5)).is_empty());
        let d: Vec<String> = at(5).differences(&at(2)).iter().map(|d| d.to_string()).collect();
        assert_eq!(d, vec![r#"partitions: checkpoint has "5", this run has "2""#]);
    }
}
