//! Batch time, durations, clocks and the recurring batch timer (SPARK-SEMANTICS §1).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A point in time in milliseconds; a batch is labelled by the end of the interval it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Time(pub i64);

/// A length of time in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Duration(pub i64);

/// The largest magnitude, in milliseconds, of a time or duration taken from a file or a flag: 2^53 ms (about
/// 285,000 years), so that adding a few of them can never wrap.
pub const MAX_MILLIS: i64 = 1 << 53;

impl Time {
    /// Milliseconds since the clock's origin.
    pub fn millis(self) -> i64 {
        self.0
    }
    /// True if the time is within [`MAX_MILLIS`] of the origin.
    pub fn in_range(self) -> bool {
        self.0.unsigned_abs() <= MAX_MILLIS as u64
    }
}

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Duration(ms)
    }
    /// A duration of `s` seconds.
    pub const fn from_secs(s: i64) -> Self {
        Duration(s * 1000)
    }
    /// Length in milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }
    /// True if `self` is a positive whole multiple of `other`.
    pub fn is_multiple_of(self, other: Duration) -> bool {
        other.0 > 0 && self.0 > 0 && self.0 % other.0 == 0
    }
}

// Time arithmetic saturates: a time near the ends of the range (from a file, say) sticks there instead of wrapping
// to the other end, so a grid never runs backwards (a repeated batch time is then refused as out of order).
impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.0))
    }
}
impl std::ops::Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(d.0))
    }
}
impl std::ops::Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, t: Time) -> Duration {
        Duration(self.0.saturating_sub(t.0))
    }
}
impl std::ops::Mul<i64> for Duration {
    type Output = Duration;
    fn mul(self, k: i64) -> Duration {
        Duration(self.0.saturating_mul(k))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 == 0 && self.0 != 0 {
            write!(f, "{}s", self.0 / 1000)
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a positive whole number with a unit, such as 2s, 500ms or 1m")]
pub struct DurationParseError {
    /// The text that was refused.
    pub input: String,
}

impl FromStr for Duration {
    type Err = DurationParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationParseError { input: s.to_string() };
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = s[..digits].parse().map_err(|_| err())?;
        let factor = match &s[digits..] {
            "ms" => 1,
            "s" => 1000,
            "m" | "min" => 60_000,
            _ => return Err(err()),
        };
        let ms = n.checked_mul(factor).filter(|&ms| ms > 0 && ms <= MAX_MILLIS).ok_or_else(err)?;
        Ok(Duration(ms))
    }
}

/// A source of the current time in milliseconds.
pub trait Clock {
    /// The time now.
    fn now(&self) -> Time;
}

/// A clock that moves only when told to; the clock of tests and replays.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Time,
}

impl ManualClock {
    /// A manual clock reading `start`.
    pub fn new(start: Time) -> Self {
        ManualClock { now: start }
    }
    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
    }
    /// Sets the clock to `t`.
    pub fn set_time(&mut self, t: Time) {
        self.now = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        self.now
    }
}

/// Generates batch times on the grid `zero + k * interval`, never skipping or merging a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTimer {
    zero: Time,
    interval: Duration,
    next: Time,
}

impl BatchTimer {
    /// A timer for a first start at `now`: the first tick is strictly after `now`, and zero is one interval before it.
    pub fn first_start(now: Time, interval: Duration) -> Self {
        assert!(interval.0 > 0, "batch interval must be positive");
        let first = Time(now.0.div_euclid(interval.0).saturating_add(1).saturating_mul(interval.0));
        BatchTimer { zero: first - interval, interval, next: first }
    }

    /// A timer resuming on an existing grid: the next tick is `after + interval`.
    pub fn resume(zero: Time, interval: Duration, after: Time) -> Self {
        assert!(interval.0 > 0, "batch interval must be positive");
        BatchTimer { zero, interval, next: after + interval }
    }

    /// The grid's origin: batch k has time `zero + k * interval`.
    pub fn zero(&self) -> Time {
        self.zero
    }
    /// The batch interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// The time of the next batch to be generated.
    pub fn next_time(&self) -> Time {
        self.next
    }

    /// The next due batch time if the clock reads at least it; call repeatedly to drain missed ticks in order.
    pub fn poll(&mut self, now: Time) -> Option<Time> {
        if now >= self.next {
            let t = self.next;
            self.next = self.next + self.interval;
            Some(t)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!("2s".parse::<Duration>().unwrap(), Duration(2000));
        assert_eq!("500ms".parse::<Duration>().unwrap(), Duration(500));
        assert_eq!("1m".parse::<Duration>().unwrap(), Duration(60_000));
        for bad in ["", "2", "s", "-2s", "0s", "2 s", "2h", "1.5s", "9007199254740993ms", "9223372036854775807ms"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn manual_clock_advance_by_k_intervals_gives_k_batches() {
        let mut clock = ManualClock::default();
        let b = Duration(1000);
        let mut timer = BatchTimer::first_start(clock.now(), b);
        assert_eq!(timer.zero(), Time(0));
        assert_eq!(timer.poll(clock.now()), None);
        clock.advance(b * 5);
        let mut got = vec![];
        while let Some(t) = timer.poll(clock.now()) {
            got.push(t.0);
        }
        assert_eq!(got, vec![1000, 2000, 3000, 4000, 5000]);
    }

    /// Issue 14 item 8: a grid resumed after a time near 2^63 never wraps to negative times.
    #[test]
    fn a_grid_near_the_end_of_time_does_not_wrap() {
        let mut t = BatchTimer::resume(Time(0), Duration(1000), Time(i64::MAX - 10));
        assert_eq!(t.next_time(), Time(i64::MAX));
        assert_eq!(t.poll(Time(i64::MAX)), Some(Time(i64::MAX)));
        assert_eq!(t.next_time(), Time(i64::MAX));
        let t = BatchTimer::first_start(Time(i64::MAX - 10), Duration(1000));
        assert!(t.next_time() > Time(i64::MAX - 10) || t.next_time() == Time(i64::MAX));
        assert_eq!(Time(i64::MIN) - Duration(1), Time(i64::MIN));
        assert_eq!(Time(i64::MIN) - Time(1), Duration(i64::MIN));
    }

    #[test]
    fn first_tick_is_strictly_after_now() {
        let t = BatchTimer::first_start(Time(4000), Duration(2000));
        assert_eq!(t.next_time(), Time(6000));
        assert_eq!(t.zero(), Time(4000));
        let t = BatchTimer::first_start(Time(4001), Duration(2000));
        assert_eq!(t.next_time(), Time(6000));
    }
}
