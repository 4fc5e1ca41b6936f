//! The agent API: a small JSON API for trading bots, authenticated by a bearer token the trader
//! created (`Authorization: Bearer cpa_...`), never by a session cookie.
//!
//! An agent may read prices, read its trader's portfolio and propose trades, each only with the
//! matching scope. Everything else under `/api/agent/v1` (placing, cancelling, withdrawing,
//! reading keys, approving its own proposals, ...) is refused with a HOLD that is recorded in
//! the audit log. A malformed proposal is a HOLD too: nothing is queued, nothing is placed.
//!
//! Rooms: `request` (what the API reads, its parsers and their schema), `wire` (the JSON
//! types it writes and the OpenAPI document), `auth` (bearer token, scope, HOLD),
//! `handlers` (parse -> one use case -> map), `responses` (errors in the API's JSON shape, with
//! the kinds and wording of `app::error`).
//!
//! The OpenAPI document is served, without a token, at [`OPENAPI_PATH`].

mod auth;
mod handlers;
mod request;
mod responses;
mod wire;

use axum::Router;
use axum::routing::{any, get, post};
use domain::trading::TradingService;

use crate::security::rate_limit::RateLimits;

pub use wire::ApiDoc;

/// Where the agent API is mounted.
pub const PREFIX: &str = "/api/agent/v1";
/// Where its OpenAPI document is served (public).
pub const OPENAPI_PATH: &str = "/api/agent/openapi.json";

pub use request::MAX_SYMBOLS;

#[derive(Debug, Clone)]
struct AgentState {
    trading: TradingService,
    /// Its per-token budget (the per-address ones apply to every route already).
    limits: RateLimits,
}

/// The agent API's routes, with their own state. Mount it outside the session and same-origin
/// (CSRF) layers: agents send no cookies and no `Origin`, and the bearer token is the only
/// credential these routes look at.
pub fn router(trading: TradingService, limits: RateLimits) -> Router {
    Router::new()
        .route(OPENAPI_PATH, get(wire::openapi_json))
        .route(
            "/api/agent/v1/prices",
            get(handlers::prices).fallback(handlers::refuse_operation),
        )
        .route(
            "/api/agent/v1/portfolio",
            get(handlers::portfolio).fallback(handlers::refuse_operation),
        )
        .route(
            "/api/agent/v1/proposals",
            post(handlers::propose).fallback(handlers::refuse_operation),
        )
        .route(PREFIX, any(handlers::refuse_operation))
        .route("/api/agent/v1/", any(handlers::refuse_operation))
        .route("/api/agent/v1/{*rest}", any(handlers::refuse_operation))
        .with_state(AgentState { trading, limits })
}
