//! `Key`: a string key that keeps up to 16 bytes inline, built and compared a machine word at a time.

use crate::jvm::{JvmDisplay, StableHash};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

const INLINE: usize = 16;

/// A UTF-8 string key; keys of up to 16 bytes live inline, so making, hashing and comparing them never allocates.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline(Word, u8),
    Heap(Box<str>),
}

/// The inline bytes, 8-byte aligned so they are built, copied and loaded as whole words (a misaligned array makes
/// the compiler copy keys in odd-sized pieces, and the next wide load stalls on them).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
struct Word([u8; INLINE]);

/// Up to 16 bytes as one little-endian word, zero-padded: assembled in a register and stored once, because
/// byte-wise stores followed by wide loads stall the CPU.
#[inline(always)]
fn word_of(b: &[u8]) -> u128 {
    let mut w: u128 = 0;
    for (i, &x) in b.iter().enumerate() {
        w |= (x as u128) << (8 * i);
    }
    w
}

impl Key {
    /// A key holding `s`.
    #[inline(always)]
    pub fn new(s: &str) -> Self {
        let b = s.as_bytes();
        if b.len() <= INLINE {
            Key(Repr::Inline(Word(word_of(b).to_le_bytes()), b.len() as u8))
        } else {
            Key(Repr::Heap(s.into()))
        }
    }

    /// A key holding `b` if it is UTF-8; an ASCII key of up to 16 bytes is built without a separate validation pass.
    #[inline(always)]
    pub fn from_utf8(b: &[u8]) -> Result<Self, std::str::Utf8Error> {
        if b.len() <= INLINE {
            let w = word_of(b);
            // ASCII (no byte with its top bit set) is always valid UTF-8.
            if w & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0 {
                return Ok(Key(Repr::Inline(Word(w.to_le_bytes()), b.len() as u8)));
            }
        }
        std::str::from_utf8(b).map(Key::new)
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(b, len) => &b.0[..*len as usize],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a &str, so always valid UTF-8.
            Repr::Inline(b, len) => std::str::from_utf8(&b.0[..*len as usize]).unwrap_or_default(),
            Repr::Heap(s) => s,
        }
    }
}

impl std::hash::Hash for Key {
    #[inline(always)]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Inline(b, len) => {
                // One word per key: the low half, and the high half with the length multiplied in (an odd
                // constant spreads each of its bits over the word, so that bytes of the two halves never cancel:
                // a plain xor made `key-0001000` and `key-0000001` alike, and keys of that shape collided by the
                // thousand).
                let w = u128::from_le_bytes(b.0);
                let (lo, hi) = (w as u64, (w >> 64) as u64);
                state.write_u64(lo ^ (hi ^ (*len as u64) << 56).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            }
            Repr::Heap(s) => s.hash(state),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::new(s)
    }
}
impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::new(&s)
    }
}
impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl JvmDisplay for Key {
    fn write_jvm(&self, out: &mut String) {
        out.push_str(self.as_str())
    }
}
impl StableHash for Key {
    #[inline]
    fn stable_hash(&self) -> i32 {
        match &self.0 {
            Repr::Inline(b, len) if b.0[..*len as usize].is_ascii() => {
                b.0[..*len as usize].iter().fold(0i32, |h, &c| h.wrapping_mul(31).wrapping_add(c as i32))
            }
            _ => self.as_str().stable_hash(),
        }
    }
}
impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Key::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_keys_behave_as_strings() {
        for s in
            ["", "a", "é", "exactly16bytes!!", "seventeen bytes!!", "a much longer key with spaces", "日本語のキー"]
        {
            let k = Key::new(s);
            assert_eq!(k.as_str(), s);
            assert_eq!(k, Key::from(s.to_string()));
            assert_eq!(k.stable_hash(), s.stable_hash());
            assert_eq!(format!("{k}"), s);
            assert_eq!(format!("{k:?}"), format!("{s:?}"));
        }
        assert!(Key::new("a") < Key::new("b"));
        assert!(Key::new("ab") > Key::new("a"));
        assert!(Key::new("zzzzzzzzzzzzzzzzzzzz") > Key::new("a"));
        assert_ne!(Key::new("a"), Key::new("a\0"));
        assert_eq!(std::mem::size_of::<Key>(), 24);
        // from_utf8 agrees with new on valid text (ASCII fast path or not) and refuses what str refuses.
        for s in ["", "a", "exactly16bytes!!", "seventeen bytes!!", "é", "\u{7f}x", "日本語のキー"] {
            assert_eq!(Key::from_utf8(s.as_bytes()), Ok(Key::new(s)));
        }
        for b in [&b"\xff"[..], b"ab\xc3", b"\x80abcdefghijklmnop", b"abc\xe6\x97"] {
            assert_eq!(Key::from_utf8(b).ok(), None, "{b:?}");
        }
    }
}
