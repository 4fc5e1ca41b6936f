//! Who is calling: the bearer token behind a request, its scopes, and the HOLD that answers
//! (and records) anything the token may not do.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::response::Response;
use domain::audit::RequestMeta;
use domain::trading::agent::{looks_like_token, token_hash};
use domain::trading::{AgentScope, AgentToken, TradingError};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};

use super::AgentState;
use super::responses::{hold_body, rate_limited, trading_failure, unauthorized};

const MAX_USER_AGENT_CHARS: usize = 256;

/// The request's metadata as the request-context middleware recorded it; rebuilt from the
/// connection and headers if the router is served without that middleware.
pub(super) fn request_meta(parts: &Parts) -> RequestMeta {
    if let Some(meta) = parts.extensions.get::<RequestMeta>() {
        return meta.clone();
    }
    RequestMeta {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| crate::security::middleware::canonical_ip(c.0.ip()).to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        request_id: None,
    }
}

/// The bearer value of the `Authorization` header, if there is exactly one well-formed one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The live token behind the request, or the response to send (401 for a missing, unknown,
/// revoked or expired token, 429 over the token's own budget, or 5xx on an outage). The budget
/// is spent before the token is looked up: past it nothing is read or written (no use stamp,
/// no `agent.token_expired`, no HOLD), since writes one by one are what a flood would cost.
pub(super) async fn authenticate(
    state: &AgentState,
    parts: &Parts,
    meta: &RequestMeta,
) -> Result<AgentToken, Response> {
    let Some(secret) = bearer(&parts.headers) else {
        return Err(unauthorized());
    };
    // Only a value shaped like a token gets a budget: anything else could be no token, and
    // arbitrary strings would only grow the limiter's table.
    if !looks_like_token(secret) {
        return Err(unauthorized());
    }
    let hash = token_hash(secret);
    if let Err(retry_after) = state.limits.check_agent_token(&hash) {
        // A prefix of the stored hash names the token to whoever holds the table, never the
        // secret to whoever reads the log.
        tracing::warn!(target: "security", event = "agent.rate_limit_exceeded", token_hash_prefix = &hash[..12], retry_after);
        return Err(rate_limited(retry_after));
    }
    match state.trading.authenticate_agent(secret, meta).await {
        Ok(token) => Ok(token),
        Err(TradingError::NotFound) => Err(unauthorized()),
        Err(other) => Err(trading_failure(other, meta)),
    }
}

/// Records the refusal (`agent.signal_held`) and answers it. The refusal stands even if the
/// audit log cannot be written: nothing was done either way.
pub(super) async fn hold(
    state: &AgentState,
    token: &AgentToken,
    status: StatusCode,
    reason: String,
    meta: RequestMeta,
) -> Response {
    if let Err(e) = state.trading.agent_held(token, &reason, meta).await {
        tracing::error!(error = %e, token = %token.id, "could not record an agent's held signal");
    }
    hold_body(status, reason)
}

/// Authenticates and checks one scope; the token and the request's metadata, or the response
/// to send.
pub(super) async fn authorize(
    state: &AgentState,
    parts: &Parts,
    scope: AgentScope,
    what: &str,
) -> Result<(AgentToken, RequestMeta), Response> {
    let meta = request_meta(parts);
    let token = authenticate(state, parts, &meta).await?;
    if !token.allows(scope) {
        return Err(hold(
            state,
            &token,
            StatusCode::FORBIDDEN,
            format!(
                "this token may not {what} (it lacks the {} scope)",
                scope.as_str()
            ),
            meta,
        )
        .await);
    }
    Ok((token, meta))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn only_one_well_formed_bearer_header_counts() {
        assert_eq!(bearer(&headers(&["Bearer cpa_x"])), Some("cpa_x"));
        assert_eq!(bearer(&headers(&["bearer  cpa_x "])), Some("cpa_x"));
        assert_eq!(bearer(&headers(&[])), None);
        assert_eq!(bearer(&headers(&["Basic abc"])), None);
        assert_eq!(bearer(&headers(&["Bearer"])), None);
        assert_eq!(bearer(&headers(&["Bearer "])), None);
        assert_eq!(bearer(&headers(&["Bearer a", "Bearer b"])), None);
    }
}
