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
    fn check(&self, keys: &[String], now: OffsetDateTime) -> Result<(), u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = Duration::ZERO;
        for key in keys {
            if let Some(f) = failures.get(key) {
                let remaining = f.last + self.policy_for(key).wait_after(f.count) - now;
                longest = longest.max(remaining);
            }
        }
        if longest > Duration::ZERO {
            Err(longest.whole_seconds().max(0) as u64 + u64::from(longest.subsec_nanoseconds() > 0))
        } else {
            Ok(())
        }
    }

    fn record_failure(&self, keys: &[String], now: OffsetDateTime) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > MAX_ENTRIES {
            failures.retain(|_, f| now - f.last < FORGET_AFTER);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now - entry.last >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    fn record_success(&self, account_key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(account_key);
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

    #[test]
    fn an_account_backs_off_after_its_free_failures_and_recovers_with_time() {
        let t = throttle();
        let now = datetime!(2026-11-23 12:00 UTC);
        let keys = vec![
            "account:a@example.com".to_owned(),
            "ip:127.0.0.1".to_owned(),
        ];
        for _ in 0..3 {
            assert_eq!(t.check(&keys, now), Ok(()));
            t.record_failure(&keys, now);
        }
        assert_eq!(t.check(&keys, now), Err(1));
        assert_eq!(t.check(&keys, now + Duration::seconds(1)), Ok(()));
        t.record_failure(&keys, now + Duration::seconds(1));
        assert_eq!(t.check(&keys, now + Duration::seconds(1)), Err(2));
    }

    #[test]
    fn a_success_clears_the_account_but_not_the_address() {
        let t = throttle();
        let now = datetime!(2026-11-23 12:00 UTC);
        let keys = vec![
            "account:a@example.com".to_owned(),
            "ip:127.0.0.1".to_owned(),
        ];
        for _ in 0..12 {
            t.record_failure(&keys, now);
        }
        t.record_success("account:a@example.com");
        // Another account from the same address is still held back by the address counter.
        let other = vec![
            "account:b@example.com".to_owned(),
            "ip:127.0.0.1".to_owned(),
        ];
        assert!(t.check(&other, now).is_err());
        assert_eq!(t.check(&["account:a@example.com".to_owned()], now), Ok(()));
    }
}
