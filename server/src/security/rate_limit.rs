//! Per-client-address rate limits (GCRA via `governor`): one for every route and a tighter one
//! for sign-up and login. Over the limit → 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, StatusCode, header};

use super::middleware::ClientIp;

/// Server function paths that create sessions or accounts.
const AUTH_PATHS: [&str; 2] = ["/api/auth/login", "/api/auth/signup"];

#[derive(Debug, Clone)]
pub struct RateLimits {
    all: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    auth: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub fn new(requests_per_minute: u32, auth_per_minute: u32) -> Self {
        Self {
            all: Arc::new(RateLimiter::keyed(per_minute(requests_per_minute))),
            auth: Arc::new(RateLimiter::keyed(per_minute(auth_per_minute))),
        }
    }

    /// Forgets addresses whose budget has fully refilled; run periodically to bound memory.
    pub fn prune(&self) {
        self.all.retain_recent();
        self.auth.retain_recent();
    }

    fn check(&self, ip: IpAddr, path: &str) -> Result<(), u64> {
        let clock = DefaultClock::default();
        let limiters: &[&DefaultKeyedRateLimiter<IpAddr>] = if AUTH_PATHS.contains(&path) {
            &[&self.all, &self.auth]
        } else {
            &[&self.all]
        };
        for limiter in limiters {
            if let Err(not_until) = limiter.check_key(&domain::account::client_network(ip)) {
                let wait = not_until.wait_time_from(clock.now());
                return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            }
        }
        Ok(())
    }
}

pub async fn enforce(State(limits): State<RateLimits>, request: Request, next: Next) -> Response {
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    if let Some(ip) = ip
        && let Err(retry_after) = limits.check(ip, request.uri().path())
    {
        tracing::warn!(target: "security", event = "api.rate_limit_exceeded", path = request.uri().path(), retry_after);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many requests. Try again in {retry_after} seconds.\n"),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        return response;
    }
    next.run(request).await
}
