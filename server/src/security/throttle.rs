//! In-memory login backoff per account and per client address.

use std::collections::HashMap;
use std::sync::Mutex;

use domain::account::BackoffPolicy;
use domain::ports::LoginThrottle;
use time::{Duration, OffsetDateTime};

/// Entries quiet for this long are forgotten.
const FORGET_AFTER: Duration = Duration::hours(24);
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// Attempts begun and not yet finished; counted as failures until they finish.
    in_flight: u32,
    last: OffsetDateTime,
}

#[derive(Debug)]
pub struct MemoryLoginThrottle {
    account_policy: BackoffPolicy,
    ip_policy: BackoffPolicy,
    failures: Mutex<HashMap<String, Failures>>,
}

impl MemoryLoginThrottle {
    pub fn new(account_policy: BackoffPolicy, ip_policy: BackoffPolicy) -> Self {
        Self {
            account_policy,
            ip_policy,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn policy_for(&self, key: &str) -> BackoffPolicy {
        if key.starts_with("ip:") {
            self.ip_policy
        } else {
            self.account_policy
        }
    }
}

impl LoginThrottle for MemoryLoginThrottle {
    fn begin(&self, keys: &[String], now: OffsetDateTime) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = Duration::ZERO;
        for key in keys {
            if let Some(f) = failures
                .get(key)
                .filter(|f| f.in_flight > 0 || now - f.last < FORGET_AFTER)
            {
                let wait = self
                    .policy_for(key)
                    .wait_after(f.count.saturating_add(f.in_flight));
                // Within the free failures there is no wait at all. (`f.last` can be a moment
                // after `now`: a parallel attempt that read the clock later got here first.)
                if wait > Duration::ZERO {
                    longest = longest.max(f.last + wait - now);
                }
            }
        }
        if longest > Duration::ZERO {
            return Err(
                longest.whole_seconds().max(0) as u64 + u64::from(longest.subsec_nanoseconds() > 0)
            );
        }
        if failures.len() > MAX_ENTRIES {
            failures.retain(|_, f| f.in_flight > 0 || now - f.last < FORGET_AFTER);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                in_flight: 0,
                last: now,
            });
            if entry.in_flight == 0 && now - entry.last >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.in_flight = entry.in_flight.saturating_add(1);
            entry.last = entry.last.max(now);
        }
        Ok(())
    }

    fn finish(&self, keys: &[String], succeeded: bool, now: OffsetDateTime) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            let Some(entry) = failures.get_mut(key) else {
                continue;
            };
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if !succeeded {
                entry.count = entry.count.saturating_add(1);
                entry.last = now;
            } else if !key.starts_with("ip:") {
                entry.count = 0;
            }
            if entry.count == 0 && entry.in_flight == 0 {
                failures.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn throttle() -> MemoryLoginThrottle {
        let account = BackoffPolicy {
            free_failures: 3,
            max_wait: Duration::minutes(15),
        };
        let ip = BackoffPolicy {
            free_failures: 10,
            max_wait: Duration::minutes(15),
        };
        MemoryLoginThrottle::new(account, ip)
    }

    fn keys(account: &str) -> Vec<String> {
        vec![format!("account:{account}"), "ip:127.0.0.1".to_owned()]
    }

    fn fail(t: &MemoryLoginThrottle, keys: &[String], now: OffsetDateTime) {
        t.begin(keys, now).expect("allowed");
        t.finish(keys, false, now);
    }

    #[test]
    fn an_account_backs_off_after_its_free_failures_and_recovers_with_time() {
        let t = throttle();
        let now = datetime!(2026-11-23 12:00 UTC);
        let keys = keys("a@example.com");
        for _ in 0..3 {
            fail(&t, &keys, now);
        }
        assert_eq!(t.begin(&keys, now), Err(1));
        let later = now + Duration::seconds(1);
        fail(&t, &keys, later);
        assert_eq!(t.begin(&keys, later), Err(2));
    }

    #[test]
    fn parallel_attempts_count_before_their_outcome_is_known() {
        let t = throttle();
        let now = datetime!(2026-11-23 12:00 UTC);
        let keys = keys("b@example.com");
        let admitted = (0..10).filter(|_| t.begin(&keys, now).is_ok()).count();
        assert_eq!(admitted, 3, "only the free attempts may run at once");
        for _ in 0..admitted {
            t.finish(&keys, false, now);
        }
        assert!(t.begin(&keys, now).is_err());
    }

    /// Found by the benchmark's 64 logins at once from one address: an attempt that read the
    /// clock just before a parallel one, and reached the lock just after it, was told to wait
    /// a second although no failure had been counted at all.
    #[test]
    fn an_attempt_that_read_the_clock_before_a_parallel_one_is_not_held_back() {
        let t = throttle();
        let later = datetime!(2026-11-23 12:00:00.002 UTC);
        let earlier = datetime!(2026-11-23 12:00:00.001 UTC);
        let (a, b) = (keys("a@example.com"), keys("b@example.com"));
        t.begin(&a, later).expect("first attempt");
        assert_eq!(
            t.begin(&b, earlier),
            Ok(()),
            "same address, no failures yet"
        );
        t.finish(&a, true, later);
        t.finish(&b, true, earlier);
        // Backoff itself is unchanged: past the free failures, the wait counts from the latest.
        for _ in 0..3 {
            fail(&t, &a, later);
        }
        assert!(t.begin(&a, earlier).is_err());
    }

    #[test]
    fn a_success_clears_the_account_but_not_the_address() {
        let t = throttle();
        let now = datetime!(2026-11-23 12:00 UTC);
        for n in 0..10 {
            fail(&t, &keys(&format!("user{n}@example.com")), now);
        }
        // Ten failures from one address: another account from it is held back too.
        assert!(t.begin(&keys("new@example.com"), now).is_err());

        let t = throttle();
        let a = keys("a@example.com");
        fail(&t, &a, now);
        fail(&t, &a, now);
        t.begin(&a, now).expect("third attempt allowed");
        t.finish(&a, true, now);
        fail(&t, &a, now);
        fail(&t, &a, now);
        assert_eq!(
            t.begin(&a, now),
            Ok(()),
            "the success reset the account's count"
        );
    }
}
