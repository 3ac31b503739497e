//! The worker's notion of now. Tests shift it to simulate a worker whose clock is off.

use chrono::{DateTime, TimeDelta, Utc};

/// Wall-clock time plus a fixed offset (zero outside tests).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: TimeDelta,
}

impl Clock {
    /// A clock `offset_ms` milliseconds ahead of the system clock (behind when negative).
    pub fn with_offset_ms(offset_ms: i64) -> Self {
        Self {
            offset: TimeDelta::milliseconds(offset_ms),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// What this clock read when the system clock read `at`.
    pub fn of_system(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + self.offset
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// How long until `at` by this clock; zero when it has passed.
    pub fn until(&self, at: DateTime<Utc>) -> std::time::Duration {
        (at - self.now()).to_std().unwrap_or_default()
    }
}
