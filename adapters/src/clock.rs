//! The system clock, the only place dstream reads the time of day.

use dstream_core::{Clock, Time};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in ms since the Unix epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Time(d.as_millis() as i64)
    }
}

impl SystemClock {
    /// How long until the clock reads `target` (zero if it already does), to the nanosecond, so that a sleep
    /// ends at the tick rather than up to a millisecond after it.
    pub fn time_until(&self, target: Time) -> std::time::Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        std::time::Duration::from_millis(target.0.max(0) as u64).saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_until_a_tick_is_zero_once_it_passed_and_at_most_its_distance_before() {
        let c = SystemClock;
        assert!(c.time_until(Time(0)).is_zero());
        let ahead = c.now() + dstream_core::Duration(1000);
        let left = c.time_until(ahead);
        assert!(left > std::time::Duration::ZERO && left <= std::time::Duration::from_millis(1000), "{left:?}");
    }
}
