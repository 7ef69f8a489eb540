//! Stateful operators as a checkpoint sees them: what each keeps across batches, how it is identified, saved and
//! restored into a graph the program rebuilt (Spark's `getOrCreate`, without serialising code).
//!
//! A graph's stateful operators are visited in a fixed order (output operations in the order they were added,
//! each one's parents depth first, a shared stream once), so the same program gives the same list; each one's
//! id is its position in that order or the name the program gave it.

use crate::time::Duration;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// Why an operator's state could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateCodecError(pub String);

/// An operator that keeps state across batches (`map_with_state`, `update_state_by_key`, `window`,
/// `reduce_by_key_and_window`).
pub trait Stateful {
    /// The operator's kind, e.g. `map_with_state`.
    fn kind(&self) -> &'static str;
    /// The name the program gave it, if any (see [`Stateful::set_name`]).
    fn name(&self) -> Option<&str>;
    /// Names the operator, so that its checkpointed state follows it when the graph is reordered.
    fn set_name(&mut self, name: &str);
    /// The parameters that change what its state holds or means, as (name, value) pairs; `interval` is the
    /// batch interval.
    fn params(&self, interval: Duration) -> Vec<(String, String)>;
    /// Appends its state, encoded, to `out`.
    fn save(&self, out: &mut Vec<u8>) -> Result<(), StateCodecError>;
    /// Replaces its state with one [`save`](Self::save) wrote.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateCodecError>;
    /// Number of keys (or kept batches, for a plain window) it holds now.
    fn len(&self) -> usize;
    /// True if it holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keys whose idle timeout expired in the last batch it computed (0 for an operator without timeouts).
    fn timed_out(&self) -> u64 {
        0
    }
}

/// A walk over a graph's stateful operators: each is visited once, in the graph's order.
pub struct StateVisit<'a> {
    seen: Vec<usize>,
    f: &'a mut dyn FnMut(&mut dyn Stateful),
}

impl<'a> StateVisit<'a> {
    /// A walk calling `f` for each stateful operator.
    pub fn new(f: &'a mut dyn FnMut(&mut dyn Stateful)) -> Self {
        StateVisit { seen: Vec::new(), f }
    }
    /// Visits one stateful operator.
    pub fn visit(&mut self, op: &mut dyn Stateful) {
        (self.f)(op)
    }
    /// True the first time it is called with `id` (a shared stream's address): shared streams are walked once.
    pub fn first_time(&mut self, id: usize) -> bool {
        if self.seen.contains(&id) {
            false
        } else {
            self.seen.push(id);
            true
        }
    }
}

impl fmt::Debug for StateVisit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateVisit").field("seen", &self.seen.len()).finish()
    }
}

/// Appends `value` encoded (postcard) to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), StateCodecError> {
    let bytes = postcard::to_extend(value, std::mem::take(out)).map_err(|e| StateCodecError(e.to_string()))?;
    *out = bytes;
    Ok(())
}

/// Decodes a whole postcard value from `bytes` (trailing bytes are an error).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateCodecError> {
    let (v, rest) = postcard::take_from_bytes(bytes).map_err(|e| match e {
        // What a type's own check refused (postcard keeps no message).
        postcard::Error::SerdeDeCustom => StateCodecError("a stored value is invalid for its type".to_string()),
        e => StateCodecError(e.to_string()),
    })?;
    if !rest.is_empty() {
        return Err(StateCodecError(format!("{} bytes left after the state", rest.len())));
    }
    Ok(v)
}

/// The name of a type without module paths (`(String, i64)`, `Avg`), to tell state types apart in a fingerprint.
pub fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word.rsplit("::").next().unwrap_or(word));
        word.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name::<(String, i64)>(), "(String, i64)");
        assert_eq!(short_type_name::<Vec<Option<crate::time::Time>>>(), "Vec<Option<Time>>");
        assert_eq!(short_type_name::<u8>(), "u8");
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut b = Vec::new();
        encode_into(&(1u32, 2u32), &mut b).unwrap();
        assert_eq!(decode::<(u32, u32)>(&b), Ok((1, 2)));
        b.push(0);
        assert!(decode::<(u32, u32)>(&b).is_err());
    }
}
