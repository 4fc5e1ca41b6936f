//! Answers in the agent API's JSON shape. Errors take their kind, status and wording from
//! `app::error::AppError` (the one mapping from domain errors), so an agent is told what a
//! person would be, and an internal failure only by its request id.

use app::error::AppError;
use axum::response::{IntoResponse, Response};
use domain::audit::RequestMeta;
use domain::trading::TradingError;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use super::wire::{ErrorBody, Hold};

/// How much of a caller-supplied path or parser message a HOLD reason repeats.
const MAX_REASON_CHARS: usize = 300;

pub(super) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(super) fn unauthorized() -> Response {
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &ErrorBody {
            error: "unauthorized".into(),
            message: None,
        },
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// 429 with `Retry-After`, in the API's error shape.
pub(super) fn rate_limited(retry_after: u64) -> Response {
    let retry_after = retry_after.max(1);
    let mut response = failure(AppError::RateLimited(retry_after));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

pub(super) fn hold_body(status: StatusCode, reason: String) -> Response {
    json(
        status,
        &Hold {
            decision: "hold".into(),
            reason,
        },
    )
}

/// A trading use case's error for the request `meta`.
pub(super) fn trading_failure(err: TradingError, meta: &RequestMeta) -> Response {
    failure(AppError::from_trading(err, meta.request_id.clone()))
}

/// Any error, as `{ "error": kind, "message": ... }` with the status the server functions use.
pub(super) fn failure(err: AppError) -> Response {
    let kind = match &err {
        AppError::BadCredentials | AppError::Unauthenticated => return unauthorized(),
        AppError::Invalid(_) => "invalid_request",
        AppError::Forbidden | AppError::StepUpRequired(_) | AppError::OrderApprovalRequired(_) => {
            "forbidden"
        }
        AppError::NotFound => "not_found",
        AppError::Conflict(_) => "conflict",
        AppError::RateLimited(_) => "rate_limited",
        AppError::Unavailable(_) => "unavailable",
        AppError::Internal { .. } | AppError::Network => "internal",
    };
    let status =
        StatusCode::from_u16(err.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &ErrorBody {
            error: kind.into(),
            message: Some(err.to_string()),
        },
    )
}

/// A caller-supplied text cut to [`MAX_REASON_CHARS`] for a HOLD reason.
pub(super) fn truncate(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_REASON_CHARS).collect();
    if text.chars().nth(MAX_REASON_CHARS).is_some() {
        out.push('…');
    }
    out
}
