//! Circuit breakers per exchange environment: after an outage, trading on that exchange pauses
//! (orders are held, not sent) until a cool-down passes; then one probe is let through and its
//! result closes or re-opens the breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use crate::keys::{ExchangeName, KeyEnvironment};

type Venue = (ExchangeName, KeyEnvironment);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    /// Failures in a row so far (below the trip count).
    Closed(u32),
    /// Tripped: nothing is sent before `until`.
    Open { until: OffsetDateTime, trips: u32 },
    /// One probe is on its way; everything else still waits.
    Probing { trips: u32 },
}

/// The longest an exchange's `Retry-After` keeps a venue paused: a longer (or absurd) answer is
/// honoured for an hour, then one probe asks again. Keeps the arithmetic on times in range, so
/// no answer from an exchange can make the trading job panic.
pub const MAX_REQUESTED_WAIT: Duration = Duration::hours(1);

/// Shared by every request and the retry job (one per server process).
#[derive(Debug, Clone)]
pub struct CircuitBreakers {
    inner: Arc<Mutex<HashMap<Venue, Breaker>>>,
    /// Consecutive outage answers that trip a breaker.
    trip_after: u32,
    /// First cool-down; doubles with each trip in a row, up to `max_cool_down`.
    cool_down: Duration,
    max_cool_down: Duration,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self::new(1, Duration::seconds(10), Duration::minutes(5))
    }
}

/// Whether an order may go to the exchange now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Paused until this time (the reason shown on held orders).
    Paused(OffsetDateTime),
}

impl CircuitBreakers {
    pub fn new(trip_after: u32, cool_down: Duration, max_cool_down: Duration) -> Self {
        Self {
            inner: Arc::default(),
            trip_after: trip_after.max(1),
            cool_down,
            max_cool_down,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Venue, Breaker>) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update; the map is still sound.
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    pub fn gate(&self, venue: Venue, now: OffsetDateTime) -> Gate {
        self.with(|map| {
            let state = map.entry(venue).or_insert(Breaker::Closed(0));
            match *state {
                Breaker::Closed(_) => Gate::Pass,
                Breaker::Open { until, trips } if now >= until => {
                    *state = Breaker::Probing { trips };
                    Gate::Pass
                }
                Breaker::Open { until, .. } => Gate::Paused(until),
                // The probe's answer decides; meanwhile others wait a moment.
                Breaker::Probing { .. } => Gate::Paused(now + Duration::seconds(1)),
            }
        })
    }

    /// Whether trading on the venue is paused right now (for banners), without probing.
    pub fn paused_until(&self, venue: Venue, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.with(|map| match map.get(&venue) {
            Some(Breaker::Open { until, .. }) if now < *until => Some(*until),
            Some(Breaker::Probing { .. }) => Some(now),
            _ => None,
        })
    }

    pub fn succeeded(&self, venue: Venue) {
        self.with(|map| {
            map.insert(venue, Breaker::Closed(0));
        });
    }

    /// The probe the gate let through was not sent after all (its order could not be claimed,
    /// or was cancelled at send time): the next order probes instead, rather than every order
    /// waiting for an answer that never comes.
    pub fn abandon_probe(&self, venue: Venue, now: OffsetDateTime) {
        self.with(|map| {
            if let Some(state) = map.get_mut(&venue)
                && let Breaker::Probing { trips } = *state
            {
                *state = Breaker::Open { until: now, trips };
            }
        });
    }

    /// Records an outage answer; returns when trading resumes if this tripped the breaker.
    pub fn failed(&self, venue: Venue, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.failed_waiting(venue, now, Duration::ZERO)
    }

    /// As `failed`, staying open at least `at_least` (an exchange's `Retry-After`).
    pub fn failed_waiting(
        &self,
        venue: Venue,
        now: OffsetDateTime,
        at_least: Duration,
    ) -> Option<OffsetDateTime> {
        self.with(|map| {
            let state = map.entry(venue).or_insert(Breaker::Closed(0));
            let trips = match *state {
                Breaker::Closed(n) if n + 1 < self.trip_after => {
                    *state = Breaker::Closed(n + 1);
                    return None;
                }
                Breaker::Closed(_) => 0,
                Breaker::Open { trips, .. } | Breaker::Probing { trips } => trips.saturating_add(1),
            };
            let factor = 1i32 << trips.min(10);
            let wait = self
                .cool_down
                .checked_mul(factor)
                .unwrap_or(self.max_cool_down)
                .min(self.max_cool_down)
                .max(at_least.min(MAX_REQUESTED_WAIT));
            // Out of the representable range only for absurd settings: then the longest wait
            // we allow at all.
            let until = now
                .checked_add(wait)
                .or_else(|| now.checked_add(MAX_REQUESTED_WAIT))
                .unwrap_or(now);
            *state = Breaker::Open { until, trips };
            Some(until)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const PAPER: Venue = (ExchangeName::Paper, KeyEnvironment::Paper);

    #[test]
    fn an_outage_pauses_the_venue_until_the_cool_down_passes_then_one_probe_goes() {
        let breakers = CircuitBreakers::new(1, Duration::seconds(10), Duration::minutes(5));
        let t0 = datetime!(2026-11-23 12:00 UTC);
        assert_eq!(breakers.gate(PAPER, t0), Gate::Pass);
        assert_eq!(breakers.failed(PAPER, t0), Some(t0 + Duration::seconds(10)));
        assert_eq!(
            breakers.gate(PAPER, t0 + Duration::seconds(9)),
            Gate::Paused(t0 + Duration::seconds(10))
        );
        assert_eq!(breakers.gate(PAPER, t0 + Duration::seconds(10)), Gate::Pass);
        // While the probe is out, others wait.
        assert!(matches!(
            breakers.gate(PAPER, t0 + Duration::seconds(10)),
            Gate::Paused(_)
        ));
        breakers.succeeded(PAPER);
        assert_eq!(breakers.gate(PAPER, t0 + Duration::seconds(11)), Gate::Pass);
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_the_cap() {
        let breakers = CircuitBreakers::new(1, Duration::seconds(10), Duration::seconds(30));
        let t0 = datetime!(2026-11-23 12:00 UTC);
        breakers.failed(PAPER, t0);
        let t1 = t0 + Duration::seconds(10);
        assert_eq!(breakers.gate(PAPER, t1), Gate::Pass);
        assert_eq!(breakers.failed(PAPER, t1), Some(t1 + Duration::seconds(20)));
        let t2 = t1 + Duration::seconds(20);
        assert_eq!(breakers.gate(PAPER, t2), Gate::Pass);
        assert_eq!(breakers.failed(PAPER, t2), Some(t2 + Duration::seconds(30)));
    }

    #[test]
    fn venues_trip_independently_and_the_trip_count_is_honoured() {
        let breakers = CircuitBreakers::new(2, Duration::seconds(10), Duration::minutes(5));
        let t0 = datetime!(2026-11-23 12:00 UTC);
        let testnet = (ExchangeName::Binance, KeyEnvironment::Testnet);
        assert_eq!(breakers.failed(testnet, t0), None);
        assert_eq!(breakers.gate(testnet, t0), Gate::Pass);
        assert!(breakers.failed(testnet, t0).is_some());
        assert!(matches!(breakers.gate(testnet, t0), Gate::Paused(_)));
        assert_eq!(breakers.gate(PAPER, t0), Gate::Pass);
        assert_eq!(breakers.paused_until(PAPER, t0), None);
        assert!(breakers.paused_until(testnet, t0).is_some());
    }

    #[test]
    fn an_exchange_that_asks_for_longer_is_left_alone_that_long() {
        let breakers = CircuitBreakers::new(1, Duration::seconds(10), Duration::minutes(5));
        let now = datetime!(2026-11-24 12:00 UTC);
        let until = breakers.failed_waiting(PAPER, now, Duration::minutes(30));
        assert_eq!(until, Some(now + Duration::minutes(30)));
        assert!(matches!(
            breakers.gate(PAPER, now + Duration::minutes(29)),
            Gate::Paused(_)
        ));
        // A shorter request than the cool-down does not shorten it.
        let other = (ExchangeName::Binance, KeyEnvironment::Testnet);
        let until = breakers.failed_waiting(other, now, Duration::seconds(1));
        assert_eq!(until, Some(now + Duration::seconds(10)));
    }

    #[test]
    fn an_absurd_retry_after_is_clamped_to_an_hour_and_does_not_panic() {
        let breakers = CircuitBreakers::new(1, Duration::seconds(10), Duration::minutes(5));
        let now = datetime!(2026-11-24 12:00 UTC);
        for asked in [
            Duration::seconds(i64::MAX),
            Duration::MAX,
            Duration::days(365),
        ] {
            let until = breakers.failed_waiting(PAPER, now, asked);
            assert_eq!(until, Some(now + MAX_REQUESTED_WAIT));
            breakers.succeeded(PAPER);
        }
        // Near the end of representable time, the wait is cut short rather than overflowing.
        let late = time::PrimitiveDateTime::MAX.assume_utc() - Duration::minutes(1);
        assert!(
            breakers
                .failed_waiting(PAPER, late, Duration::MAX)
                .is_some()
        );
        // Absurd settings cannot overflow either.
        let odd = CircuitBreakers::new(1, Duration::MAX, Duration::MAX);
        for _ in 0..12 {
            assert!(odd.failed(PAPER, now).is_some());
        }
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_order_probe_instead() {
        let breakers = CircuitBreakers::new(1, Duration::seconds(10), Duration::minutes(5));
        let t0 = datetime!(2026-11-23 12:00 UTC);
        breakers.failed(PAPER, t0);
        let later = t0 + Duration::seconds(10);
        assert_eq!(breakers.gate(PAPER, later), Gate::Pass);
        assert!(matches!(breakers.gate(PAPER, later), Gate::Paused(_)));
        breakers.abandon_probe(PAPER, later);
        assert_eq!(breakers.gate(PAPER, later), Gate::Pass);
        // Without a probe out, abandoning changes nothing.
        breakers.succeeded(PAPER);
        breakers.abandon_probe(PAPER, later);
        assert_eq!(breakers.gate(PAPER, later), Gate::Pass);
    }
}
