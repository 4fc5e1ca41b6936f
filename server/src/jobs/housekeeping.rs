//! Once a minute: forget stale rate-limit buckets; every ten minutes, delete expired sessions.

use std::time::Duration;

use crate::security::rate_limit::RateLimits;
use crate::storage::SqlSessionStore;

pub async fn run(sessions: SqlSessionStore, limits: RateLimits) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut minutes = 0u64;
    loop {
        tick.tick().await;
        limits.prune();
        if minutes.is_multiple_of(10)
            && let Err(e) = sessions.delete_expired().await
        {
            tracing::warn!(error = %e, "could not delete expired sessions");
        }
        minutes += 1;
    }
}
