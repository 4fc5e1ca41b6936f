//! Per-client-address rate limits (GCRA via `governor`): one for every route and a tighter one
//! for sign-up and login. Over the limit → 429 with `Retry-After`. The agent API adds one per
//! token (keyed by the token's hash, checked before the token is even looked up), so a leaked
//! token spread over many addresses still cannot flood the audit log with refusals.
//!
//! A refused request's body is read and dropped (up to a small bound) before the answer goes
//! out: a response sent over an unread body ends its connection, and a keep-alive client's next
//! request on it would be reset rather than answered. A body too large (or too slow) to drain
//! gets `Connection: close`, so the client knows not to reuse the connection.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, StatusCode, header};

use super::middleware::ClientIp;

/// Server function paths that create sessions or accounts.
const AUTH_PATHS: [&str; 2] = ["/api/auth/login", "/api/auth/signup"];

/// The most of a refused request's body read (and dropped) to keep its connection alive, and
/// how long that may take.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct RateLimits {
    all: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    auth: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    agent_token: Arc<DefaultKeyedRateLimiter<String>>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub fn new(requests_per_minute: u32, auth_per_minute: u32, agent_per_minute: u32) -> Self {
        Self {
            all: Arc::new(RateLimiter::keyed(per_minute(requests_per_minute))),
            auth: Arc::new(RateLimiter::keyed(per_minute(auth_per_minute))),
            agent_token: Arc::new(RateLimiter::keyed(per_minute(agent_per_minute))),
        }
    }

    /// Spends one of the agent token's requests (by the hash of the bearer value, whether or
    /// not it is a live token); `Err(seconds to wait)` over its budget.
    pub fn check_agent_token(&self, token_hash: &str) -> Result<(), u64> {
        whole_seconds_to_wait(&self.agent_token, &token_hash.to_owned())
    }

    /// Forgets addresses whose budget has fully refilled; run periodically to bound memory.
    pub fn prune(&self) {
        self.all.retain_recent();
        self.auth.retain_recent();
        self.agent_token.retain_recent();
    }

    fn check(&self, ip: IpAddr, path: &str) -> Result<(), u64> {
        let limiters: &[&DefaultKeyedRateLimiter<IpAddr>] = if AUTH_PATHS.contains(&path) {
            &[&self.all, &self.auth]
        } else {
            &[&self.all]
        };
        let network = domain::account::client_network(ip);
        for limiter in limiters {
            whole_seconds_to_wait(limiter, &network)?;
        }
        Ok(())
    }
}

fn whole_seconds_to_wait<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), u64> {
    limiter.check_key(key).map_err(|not_until| {
        // The limiter's own clock: building a new one calibrates it, on every request.
        let wait = not_until.wait_time_from(limiter.clock().now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}

pub async fn enforce(State(limits): State<RateLimits>, request: Request, next: Next) -> Response {
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    if let Some(ip) = ip
        && let Err(retry_after) = limits.check(ip, request.uri().path())
    {
        tracing::warn!(target: "security", event = "api.rate_limit_exceeded", path = request.uri().path(), retry_after);
        let drained = drain(request).await;
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many requests. Try again in {retry_after} seconds.\n"),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        if !drained {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    }
    next.run(request).await
}

/// Reads and drops the request's body if it is small and arrives promptly; `false` if it was
/// not read to its end (the connection must then close).
async fn drain(request: Request) -> bool {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT_BYTES as u64) {
        return false;
    }
    let body = request.into_body();
    matches!(
        tokio::time::timeout(
            DRAIN_DEADLINE,
            axum::body::to_bytes(body, DRAIN_LIMIT_BYTES)
        )
        .await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_the_wait_is_whole_seconds_within_the_quota_period() {
        let limits = RateLimits::new(1, 1, 1);
        let client = IpAddr::from([192, 0, 2, 7]);
        assert_eq!(limits.check(client, "/login"), Ok(()));
        let wait = limits
            .check(client, "/login")
            .expect_err("second request refused");
        assert!((1..=60).contains(&wait), "retry after {wait} s");
        // Another client has its own budget.
        assert_eq!(limits.check(IpAddr::from([192, 0, 2, 8]), "/login"), Ok(()));
    }

    #[test]
    fn sign_in_paths_also_spend_the_tighter_auth_budget() {
        let limits = RateLimits::new(100, 1, 1);
        let client = IpAddr::from([192, 0, 2, 9]);
        assert_eq!(limits.check(client, "/api/auth/login"), Ok(()));
        assert!(limits.check(client, "/api/auth/login").is_err());
        assert_eq!(limits.check(client, "/trade"), Ok(()));
    }

    #[test]
    fn each_agent_token_has_its_own_budget() {
        let limits = RateLimits::new(100, 100, 1);
        let (leaked, other) = ("a1b2", "c3d4");
        assert_eq!(limits.check_agent_token(leaked), Ok(()));
        assert!(limits.check_agent_token(leaked).is_err());
        assert_eq!(limits.check_agent_token(other), Ok(()));
    }
}
