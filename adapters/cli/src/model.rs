//! A reference model of the lab job, written independently of the engine: a map from key to all values seen.

use std::collections::BTreeMap;

/// The lab job as the simplest thing that could work: every value of every key, kept in a list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AverageModel {
    values: BTreeMap<String, Vec<i64>>,
}

impl AverageModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one message; returns the (key, average) the job must emit, or `None` for a malformed message.
    pub fn feed(&mut self, message: &[u8]) -> Option<(String, f64)> {
        let text = std::str::from_utf8(message).ok();
        // The key may be any UTF-8 without a comma; the value must be ASCII, so a non-UTF-8 value is malformed too.
        let (key, value) = match text {
            Some(t) => t.split_once(',')?,
            None => {
                let comma = message.iter().position(|&b| b == b',')?;
                let key = std::str::from_utf8(&message[..comma]).ok()?;
                let _ = std::str::from_utf8(&message[comma + 1..]).ok()?;
                (key, "")
            }
        };
        if key.is_empty() {
            return None;
        }
        let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: i64 = value.parse().ok()?;
        let list = self.values.entry(key.to_string()).or_default();
        list.push(v);
        Some((key.to_string(), exact_mean(list)))
    }

    /// Every key's average, sorted by key.
    pub fn averages(&self) -> Vec<(String, f64)> {
        self.values.iter().map(|(k, v)| (k.clone(), exact_mean(v))).collect()
    }

    /// Every key's (sum, count), sorted by key.
    pub fn sums(&self) -> Vec<(String, i128, u64)> {
        self.values.iter().map(|(k, v)| (k.clone(), v.iter().map(|&x| x as i128).sum(), v.len() as u64)).collect()
    }
}

/// The mean of integers rounded once to the nearest f64, computed by a different route than the engine:
/// decimal long division to 40 significant digits, then the standard library's correctly rounded parser.
pub fn exact_mean(values: &[i64]) -> f64 {
    let sum: i128 = values.iter().map(|&v| v as i128).sum();
    let count = values.len() as u128;
    let neg = sum < 0;
    let n = sum.unsigned_abs();
    let int = n / count;
    let mut rem = n % count;
    let mut s = format!("{}{}.", if neg { "-" } else { "" }, int);
    // 60 fractional digits make the decimal close enough that rounding it equals rounding the rational,
    // except in exact-tie cases, where the digits terminate and are exact anyway.
    for _ in 0..60 {
        rem *= 10;
        s.push(char::from(b'0' + (rem / count) as u8));
        rem %= count;
    }
    if rem != 0 {
        // A sticky digit keeps a value just above a tie from reading as the tie.
        s.push('1');
    }
    s.parse().expect("a decimal string parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_averages() {
        let mut m = AverageModel::new();
        assert_eq!(m.feed(b"a,10"), Some(("a".into(), 10.0)));
        assert_eq!(m.feed(b"a,15"), Some(("a".into(), 12.5)));
        assert_eq!(m.feed(b"a,12"), Some(("a".into(), 37.0 / 3.0)));
        assert_eq!(m.feed(b"a, 1"), None);
        assert_eq!(m.feed(b",1"), None);
        assert_eq!(m.feed(b"a,1,2"), None);
        assert_eq!(m.averages(), vec![("a".to_string(), 37.0 / 3.0)]);
    }
}
