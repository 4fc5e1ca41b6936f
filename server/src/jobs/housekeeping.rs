//! Once a minute: forget stale rate-limit buckets; every ten minutes, delete expired sessions
//! and login back-off counts quiet for a day.

use std::time::Duration;

use crate::security::rate_limit::RateLimits;
use crate::storage::{SqlLoginThrottle, SqlSessionStore};

pub async fn run(sessions: SqlSessionStore, login_throttle: SqlLoginThrottle, limits: RateLimits) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut minutes = 0u64;
    loop {
        tick.tick().await;
        limits.prune();
        if minutes.is_multiple_of(10) {
            if let Err(e) = sessions.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
            if let Err(e) = login_throttle.forget_stale().await {
                tracing::warn!(error = %e, "could not forget stale login back-off counts");
            }
        }
        minutes += 1;
    }
}
