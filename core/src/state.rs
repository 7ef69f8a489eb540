//! `mapWithState`'s pieces: the `State` handle, its errors, the `StateSpec` and the partitioned state map (SPARK-SEMANTICS §2).

use crate::jvm::{partition_of, StableHash};
use crate::time::{Duration, Time};
use hashbrown::HashTable;
use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::hash::Hasher;

/// Misuse of a `State` handle, as Spark's exceptions in the table of §2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// `get()` on a state that is not set (Spark: NoSuchElementException).
    #[error("state is not set (NoSuchElementException)")]
    NotSet,
    /// `update()` after `remove()` in the same call (Spark: IllegalArgumentException).
    #[error("cannot update the state after it has been removed (IllegalArgumentException)")]
    UpdateAfterRemove,
    /// `update()` on a key that is timing out (Spark: IllegalArgumentException).
    #[error("cannot update the state of a key that is timing out (IllegalArgumentException)")]
    UpdateWhileTimingOut,
    /// `remove()` after `remove()` in the same call (Spark: IllegalArgumentException).
    #[error("cannot remove the state twice (IllegalArgumentException)")]
    RemoveAfterRemove,
    /// `remove()` on a key that is timing out (Spark: IllegalArgumentException).
    #[error("cannot remove the state of a key that is timing out (IllegalArgumentException)")]
    RemoveWhileTimingOut,
}

/// The per-key state handle given to a `mapWithState` function; it lends the stored value, never copies it.
#[derive(Debug, PartialEq)]
pub struct State<'a, S> {
    stored: Option<&'a mut S>,
    owned: Option<S>,
    updated: bool,
    removed: bool,
    timing_out: bool,
}

impl<'a, S> State<'a, S> {
    /// A handle owning its value (or none); `timing_out` marks the call for an expired key.
    pub fn wrap(value: Option<S>, timing_out: bool) -> Self {
        State { stored: None, owned: value, updated: false, removed: false, timing_out }
    }
    /// A handle over a value stored in the state map.
    pub(crate) fn lend(stored: &'a mut S) -> Self {
        State { stored: Some(stored), owned: None, updated: false, removed: false, timing_out: false }
    }
    /// True if the state is set.
    pub fn exists(&self) -> bool {
        !self.removed && (self.stored.is_some() || self.owned.is_some())
    }
    /// The state, or `StateError::NotSet`.
    pub fn get(&self) -> Result<&S, StateError> {
        self.get_option().ok_or(StateError::NotSet)
    }
    /// The state if set.
    pub fn get_option(&self) -> Option<&S> {
        if self.removed {
            return None;
        }
        match &self.stored {
            Some(s) => Some(&**s),
            None => self.owned.as_ref(),
        }
    }
    /// Sets the state.
    pub fn update(&mut self, s: S) -> Result<(), StateError> {
        if self.removed {
            return Err(StateError::UpdateAfterRemove);
        }
        if self.timing_out {
            return Err(StateError::UpdateWhileTimingOut);
        }
        match &mut self.stored {
            Some(slot) => **slot = s,
            None => self.owned = Some(s),
        }
        self.updated = true;
        Ok(())
    }
    /// Removes the state (allowed when unset).
    pub fn remove(&mut self) -> Result<(), StateError> {
        if self.removed {
            return Err(StateError::RemoveAfterRemove);
        }
        if self.timing_out {
            return Err(StateError::RemoveWhileTimingOut);
        }
        self.removed = true;
        Ok(())
    }
    /// True during the call made for a key whose idle timeout expired.
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }
    /// True if `update` was called.
    pub fn is_updated(&self) -> bool {
        self.updated
    }
    /// True if `remove` was called.
    pub fn is_removed(&self) -> bool {
        self.removed
    }
    /// The value set by `update` on a key that had none (the stored value is updated in place).
    pub fn into_owned(self) -> Option<S> {
        if self.removed {
            None
        } else {
            self.owned
        }
    }
}

impl<S: fmt::Display> fmt::Display for State<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get_option() {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("<state not set>"),
        }
    }
}

/// When idle keys are scanned for timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TimeoutScan {
    /// As Spark: only on batches whose state is checkpointed (every checkpoint interval, 10 batches by default),
    /// so expiry lags by up to `timeout + checkpoint interval`.
    #[default]
    SparkCompatible,
    /// Every batch: a key expires in the first batch where it has been idle longer than the timeout.
    EveryBatch,
}

/// The order of a `mapWithState` stream's outputs within a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OutputOrder {
    /// dstream's default: records in (Kafka partition, offset) order, then timed-out keys.
    #[default]
    Arrival,
    /// As Spark concatenates partitions: grouped by state partition (JVM `hashCode` mod partitions), arrival
    /// order within each; then timed-out keys. Under `local[2]` the lab prints b, d, ..., z before a, c, ..., y.
    SparkPartitions,
}

/// The options of a `mapWithState` stream beside its function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSpecOptions {
    /// Number of state partitions (Spark's `HashPartitioner(n)`); 2 as under `local[2]`.
    pub num_partitions: usize,
    /// Idle timeout; `None` means keys never time out.
    pub timeout: Option<Duration>,
    /// Interval of state checkpoints; `None` means 10 x the batch interval.
    pub checkpoint_interval: Option<Duration>,
    /// When timeouts are scanned.
    pub timeout_scan: TimeoutScan,
    /// Order of the mapped outputs within a batch.
    pub output_order: OutputOrder,
}

impl Default for StateSpecOptions {
    fn default() -> Self {
        StateSpecOptions {
            num_partitions: 2,
            timeout: None,
            checkpoint_interval: None,
            timeout_scan: TimeoutScan::SparkCompatible,
            output_order: OutputOrder::Arrival,
        }
    }
}

/// One stored state with the batch time of its last update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEntry<S> {
    /// The state.
    pub state: S,
    /// Batch time of the last update (or refresh, when a timeout is set).
    pub updated_at: Time,
}

/// Serialisable content of a state map: every live key with its state and stamp, sorted by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot<K, S> {
    /// Number of partitions the map had.
    pub num_partitions: usize,
    /// Entries sorted by key.
    pub entries: Vec<(K, StateEntry<S>)>,
}

/// A borrowed view of a state map that serialises exactly as its `StateSnapshot`, without copying or sorting:
/// entries come in partition then insertion order (decode into `StateSnapshot`; order does not matter on restore).
pub struct StateSnapshotRef<'a, K, S> {
    map: &'a StateMap<K, S>,
}

#[derive(Serialize)]
struct StateEntryRef<'a, S> {
    state: &'a S,
    updated_at: Time,
}

struct EntriesRef<'a, K, S>(&'a StateMap<K, S>);

impl<K: Serialize + Hash + Eq + StableHash, S: Serialize> Serialize for EntriesRef<'_, K, S> {
    fn serialize<Z: serde::Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = z.serialize_seq(Some(self.0.len()))?;
        for (k, state, updated_at) in self.0.iter() {
            seq.serialize_element(&(k, StateEntryRef { state, updated_at }))?;
        }
        seq.end()
    }
}

impl<K: Serialize + Hash + Eq + StableHash, S: Serialize> Serialize for StateSnapshotRef<'_, K, S> {
    fn serialize<Z: serde::Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeStruct;
        let mut st = z.serialize_struct("StateSnapshot", 2)?;
        st.serialize_field("num_partitions", &self.map.num_partitions())?;
        st.serialize_field("entries", &EntriesRef(self.map))?;
        st.end()
    }
}

/// A stored state with the batch time of its last update.
#[derive(Debug, Clone)]
pub(crate) struct Slot<S> {
    pub(crate) value: S,
    pub(crate) updated_at: Time,
}

/// One state partition: entries kept densely in a vector, found through a table of 4-byte indices, so a key
/// costs its entry plus a few bytes of index (about half of a plain hash map of the same entries).
#[derive(Debug, Clone)]
pub(crate) struct Partition<K, S> {
    index: HashTable<u32>,
    entries: Vec<(K, Slot<S>)>,
}

impl<K, S> Default for Partition<K, S> {
    fn default() -> Self {
        Partition { index: HashTable::new(), entries: Vec::new() }
    }
}

#[inline(always)]
fn hash_of<Q: Hash + ?Sized>(k: &Q) -> u64 {
    // By hand rather than `BuildHasher::hash_one`, which the compiler left as a call on the per-record path.
    let mut h = FxHasher::default();
    k.hash(&mut h);
    h.finish()
}

impl<K: Hash + Eq, S> Partition<K, S> {
    #[inline(always)]
    fn position<Q>(&self, key: &Q, hash: u64) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let entries = &self.entries;
        self.index.find(hash, |&i| entries[i as usize].0.borrow() == key).map(|&i| i as usize)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The slot of a key.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&Slot<S>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key, hash_of(key)).map(|i| &self.entries[i].1)
    }

    /// The slot of a key, mutably.
    #[inline(always)]
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut Slot<S>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key, hash_of(key)).map(|i| &mut self.entries[i].1)
    }

    /// Sets a key's slot.
    pub(crate) fn insert(&mut self, key: K, slot: Slot<S>) {
        let hash = hash_of(&key);
        match self.position(&key, hash) {
            Some(i) => self.entries[i].1 = slot,
            None => self.push(key, slot, hash),
        }
    }

    /// Appends an absent key whose hash is `hash`.
    fn push(&mut self, key: K, slot: Slot<S>, hash: u64) {
        let i = self.entries.len() as u32;
        self.entries.push((key, slot));
        let entries = &self.entries;
        self.index.insert_unique(hash, i, |&j| hash_of(&entries[j as usize].0));
    }

    /// Appends a key unless it is present (then it is handed back): one probe of the index for both.
    fn push_new(&mut self, key: K, slot: Slot<S>) -> Result<(), K> {
        let hash = hash_of(&key);
        let i = self.entries.len() as u32;
        let entries = &self.entries;
        match self.index.entry(hash, |&j| entries[j as usize].0 == key, |&j| hash_of(&entries[j as usize].0)) {
            hashbrown::hash_table::Entry::Occupied(_) => Err(key),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(i);
                self.entries.push((key, slot));
                Ok(())
            }
        }
    }

    /// Removes a key, moving the last entry into its place.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<Slot<S>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = hash_of(key);
        let entries = &self.entries;
        let found = self.index.find_entry(hash, |&i| entries[i as usize].0.borrow() == key).ok()?;
        let (i, _) = found.remove();
        let i = i as usize;
        let last = self.entries.len() - 1;
        let (_, slot) = self.entries.swap_remove(i);
        if i != last {
            let moved = hash_of(&self.entries[i].0);
            if let Some(p) = self.index.find_mut(moved, |&j| j as usize == last) {
                *p = i as u32;
            }
        }
        Some(slot)
    }

    /// Makes room for `n` more keys.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        let entries = &self.entries;
        self.index.reserve(n, |&j| hash_of(&entries[j as usize].0));
    }

    /// All entries, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &Slot<S>)> {
        self.entries.iter().map(|(k, s)| (k, s))
    }
}

/// Keyed state split over stable hash partitions.
#[derive(Debug, Clone)]
pub struct StateMap<K, S> {
    pub(crate) parts: Vec<Partition<K, S>>,
}

impl<K: Hash + Eq + StableHash, S> StateMap<K, S> {
    /// An empty map with `n` partitions (at least one).
    pub fn new(n: usize) -> Self {
        StateMap { parts: (0..n.max(1)).map(|_| Partition::default()).collect() }
    }
    /// Number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.parts.len()
    }
    /// The partition a key belongs to.
    pub fn partition_of<Q: StableHash + ?Sized>(&self, key: &Q) -> usize {
        partition_of(key, self.parts.len())
    }
    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    /// True if no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The state of a key and the time of its last update.
    pub fn get<Q>(&self, key: &Q) -> Option<(&S, Time)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + StableHash + ?Sized,
    {
        let slot = self.parts[self.partition_of(key)].get(key)?;
        Some((&slot.value, slot.updated_at))
    }
    /// The state of a key.
    pub fn get_state<Q>(&self, key: &Q) -> Option<&S>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + StableHash + ?Sized,
    {
        self.get(key).map(|e| e.0)
    }
    /// Sets a key's state and stamp.
    pub fn insert(&mut self, key: K, state: S, updated_at: Time) {
        let p = self.partition_of(&key);
        self.parts[p].insert(key, Slot { value: state, updated_at });
    }
    /// Removes a key's state, returning it.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<S>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + StableHash + ?Sized,
    {
        let p = self.partition_of(key);
        self.parts[p].remove(key).map(|s| s.value)
    }
    /// All (key, state, last update), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &S, Time)> {
        self.parts.iter().flat_map(|p| p.iter().map(|(k, s)| (k, &s.value, s.updated_at)))
    }
}

impl<K: Hash + Eq + StableHash + Ord + Clone, S: Clone> StateMap<K, S> {
    /// Every live (key, state), sorted by key.
    pub fn sorted_states(&self) -> Vec<(K, S)> {
        let mut v: Vec<(K, S)> = self.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    /// The serialisable content of the map.
    pub fn snapshot(&self) -> StateSnapshot<K, S> {
        let mut entries: Vec<(K, StateEntry<S>)> =
            self.iter().map(|(k, v, t)| (k.clone(), StateEntry { state: v.clone(), updated_at: t })).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        StateSnapshot { num_partitions: self.num_partitions(), entries }
    }
    /// Every entry in the map's own order, as a checkpoint file holds them: a map rebuilt from it
    /// ([`from_snapshot`](Self::from_snapshot)) lists its entries in the same order, so an order that depends on
    /// it (Spark's, for keys of one batch) survives a restore.
    pub fn snapshot_in_order(&self) -> StateSnapshot<K, S> {
        let entries: Vec<(K, StateEntry<S>)> =
            self.iter().map(|(k, v, t)| (k.clone(), StateEntry { state: v.clone(), updated_at: t })).collect();
        StateSnapshot { num_partitions: self.num_partitions(), entries }
    }
}

impl<K: Hash + Eq + StableHash, S> StateMap<K, S> {
    /// A view that serialises as `snapshot()` would, without copying (entries unsorted).
    pub fn snapshot_ref(&self) -> StateSnapshotRef<'_, K, S> {
        StateSnapshotRef { map: self }
    }
    /// A map rebuilt from a snapshot; `Err` holds a key the snapshot lists twice.
    pub fn from_snapshot(snap: StateSnapshot<K, S>) -> Result<Self, K> {
        Self::from_entries(snap.num_partitions, snap.entries)
    }
    /// A map of `n` partitions holding `entries` (any order), each partition sized once up front; `Err` holds a
    /// key listed twice (a snapshot read from a file is not trusted to come from a map).
    pub fn from_entries(n: usize, entries: Vec<(K, StateEntry<S>)>) -> Result<Self, K> {
        let mut m = StateMap::new(n);
        let n = m.parts.len();
        let parts: Vec<u32> = entries.iter().map(|(k, _)| partition_of(k, n) as u32).collect();
        let mut sizes = vec![0usize; n];
        parts.iter().for_each(|&p| sizes[p as usize] += 1);
        for (part, size) in m.parts.iter_mut().zip(sizes) {
            part.reserve(size);
        }
        for ((k, e), p) in entries.into_iter().zip(parts) {
            // Snapshot keys come from a map, so a key twice means a damaged checkpoint.
            m.parts[p as usize].push_new(k, Slot { value: e.state, updated_at: e.updated_at })?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every row of SPARK-SEMANTICS §2.1's table.
    #[test]
    fn state_table_normal_record() {
        let mut s: State<'_, i32> = State::wrap(None, false);
        assert!(!s.exists());
        assert_eq!(s.get(), Err(StateError::NotSet));
        assert_eq!(s.get_option(), None);
        assert!(!s.is_timing_out());
        s.update(3).unwrap();
        assert!(s.exists());
        assert_eq!(s.get(), Ok(&3));
        assert_eq!(s.get_option(), Some(&3));
        assert!(s.is_updated());
        assert_eq!(s.to_string(), "3");
        s.remove().unwrap();
        assert!(s.is_removed());
        assert_eq!(s.to_string(), "<state not set>");
        // A lent value is updated in place.
        let mut stored = 5;
        let mut l = State::lend(&mut stored);
        assert_eq!(l.get(), Ok(&5));
        l.update(6).unwrap();
        assert_eq!(l.get(), Ok(&6));
        assert_eq!(l.into_owned(), None);
        assert_eq!(stored, 6);
        // update then remove leaves the key removed
        let mut stored = 5;
        let mut l = State::lend(&mut stored);
        l.update(7).unwrap();
        l.remove().unwrap();
        assert!(!l.exists());
        assert_eq!(l.get(), Err(StateError::NotSet));
    }

    #[test]
    fn state_table_after_remove() {
        let mut s: State<i32> = State::wrap(Some(1), false);
        s.remove().unwrap();
        assert!(!s.exists());
        assert_eq!(s.get(), Err(StateError::NotSet));
        assert_eq!(s.get_option(), None);
        assert_eq!(s.update(2), Err(StateError::UpdateAfterRemove));
        assert_eq!(s.remove(), Err(StateError::RemoveAfterRemove));
        assert!(!s.is_timing_out());
        // remove on an unset state is allowed
        let mut u: State<i32> = State::wrap(None, false);
        assert_eq!(u.remove(), Ok(()));
    }

    #[test]
    fn state_table_timing_out() {
        let mut s: State<i32> = State::wrap(Some(7), true);
        assert!(s.exists());
        assert_eq!(s.get(), Ok(&7));
        assert_eq!(s.get_option(), Some(&7));
        assert!(s.is_timing_out());
        assert_eq!(s.update(2), Err(StateError::UpdateWhileTimingOut));
        assert_eq!(s.remove(), Err(StateError::RemoveWhileTimingOut));
        assert_eq!(s.get(), Ok(&7));
    }
}

#[cfg(test)]
mod map_props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        // Every put/remove sequence agrees with a BTreeMap, whatever the partition count (StateMapSuite's idea).
        #[test]
        fn state_map_matches_a_btree_map(
            ops in prop::collection::vec((0u32..40, prop::option::of(any::<i32>())), 0..300), n in 1usize..5,
        ) {
            let mut m: StateMap<u32, i32> = StateMap::new(n);
            let mut want: BTreeMap<u32, i32> = BTreeMap::new();
            for (i, (k, v)) in ops.iter().enumerate() {
                match v {
                    Some(v) => {
                        m.insert(*k, *v, Time(i as i64));
                        want.insert(*k, *v);
                    }
                    None => prop_assert_eq!(m.remove(k), want.remove(k)),
                }
                prop_assert_eq!(m.len(), want.len());
            }
            for k in 0..40u32 {
                prop_assert_eq!(m.get_state(&k), want.get(&k));
            }
            let snap = m.snapshot();
            let restored = StateMap::from_snapshot(snap.clone()).unwrap();
            prop_assert_eq!(restored.snapshot(), snap);
        }
    }
}
