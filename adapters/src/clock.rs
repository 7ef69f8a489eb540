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
    /// Sleeps until the clock reads at least `target` (in slices, as Spark's SystemClock).
    pub fn wait_till(&self, target: Time) -> Time {
        loop {
            let now = self.now();
            if now >= target {
                return now;
            }
            let remaining = (target - now).millis();
            let slice = remaining.min((remaining / 10).max(25));
            std::thread::sleep(std::time::Duration::from_millis(slice as u64));
        }
    }
}
