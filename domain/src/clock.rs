//! Time is a parameter: policies take `now` from a [`Clock`] so tests never sleep. A leaf.

use std::sync::Arc;

use time::OffsetDateTime;

/// Time is a parameter: policies take `now` from here so tests never sleep.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Unix microseconds, rounded down (`i64::MAX` past the year 294,000).
pub fn unix_micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX)
}
