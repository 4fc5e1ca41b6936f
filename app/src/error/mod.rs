//! The one error type of every server function. Its messages are written for the person using
//! the app; internal details never cross the wire (they are logged with the request id).
//!
//! Every domain error is turned into it here, one file per area (`account`, `stepup`, `keys`,
//! `trading`): the only place that words them.

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

#[cfg(feature = "ssr")]
mod account;
#[cfg(feature = "ssr")]
mod keys;
#[cfg(feature = "ssr")]
mod stepup;
#[cfg(feature = "ssr")]
mod trading;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    #[error("Invalid email or password.")]
    BadCredentials,
    #[error("Too many attempts. Try again in {0} seconds.")]
    RateLimited(u64),
    #[error("Please sign in to continue.")]
    Unauthenticated,
    #[error("You do not have permission to do that.")]
    Forbidden,
    #[error("Not found.")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// A dependency (KMS, exchange, audit log) is down; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "Something went wrong on our side. If it keeps happening, quote request id {request_id}."
    )]
    Internal { request_id: String },
    /// The action needs a fresh step-up of at least this strength; nothing was changed.
    #[error("{}", .0.message())]
    StepUpRequired(crate::api::stepup::StepUpNeed),
    /// The order needs a step-up approval bound to it (the reasons say why); nothing was placed.
    #[error("This order needs your approval: {}", .0.join(" "))]
    OrderApprovalRequired(Vec<String>),
    /// Only ever built in the browser, when the server could not be reached.
    #[error("Could not reach the server. Check your connection and try again.")]
    Network,
}

impl AppError {
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::Invalid(_) => 400,
            AppError::BadCredentials | AppError::Unauthenticated => 401,
            AppError::Forbidden
            | AppError::StepUpRequired(_)
            | AppError::OrderApprovalRequired(_) => 403,
            AppError::NotFound => 404,
            AppError::Conflict(_) => 409,
            AppError::RateLimited(_) => 429,
            AppError::Internal { .. } => 500,
            AppError::Unavailable(_) => 503,
            AppError::Network => 502,
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::RateLimited(secs) => Some((*secs).max(1)),
            _ => None,
        }
    }

    /// Logs `detail` with the current request id and returns the opaque error for the client.
    #[cfg(feature = "ssr")]
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::internal_for(crate::api::context::request_meta().request_id, detail)
    }

    /// [`AppError::internal`] for a request outside a server function (the agent API).
    #[cfg(feature = "ssr")]
    pub fn internal_for(request_id: Option<String>, detail: impl std::fmt::Display) -> Self {
        let request_id = request_id.unwrap_or_default();
        tracing::error!(request_id = %request_id, error = %detail, "internal error");
        AppError::Internal { request_id }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => {
                AppError::Invalid("The form was incomplete or malformed.".into())
            }
            // On the server, an undecodable request body arrives as `Deserialization`.
            #[cfg(feature = "ssr")]
            ServerFnErrorErr::Deserialization(_) => {
                AppError::Invalid("The form was incomplete or malformed.".into())
            }
            #[cfg(feature = "ssr")]
            ServerFnErrorErr::Request(_) => AppError::Network,
            #[cfg(not(feature = "ssr"))]
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Deserialization(_) => {
                AppError::Network
            }
            #[cfg(feature = "ssr")]
            other => AppError::internal(other),
            #[cfg(not(feature = "ssr"))]
            _ => AppError::Internal {
                request_id: String::new(),
            },
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::audit::checkpoints::CheckpointError> for AppError {
    fn from(error: domain::audit::checkpoints::CheckpointError) -> Self {
        use domain::audit::checkpoints::CheckpointError;
        match error {
            CheckpointError::EmptyChain => {
                AppError::Conflict("The audit log has no events yet: nothing to sign.".into())
            }
            CheckpointError::ChainBroken(error) => AppError::Conflict(format!(
                "No checkpoint was signed: the audit chain no longer extends the latest checkpoint \
                 (seq {}: {}). Run \"Verify chain\" and escalate.",
                error.seq, error.kind
            )),
            CheckpointError::Store(error) => error.into(),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::ports::StoreError> for AppError {
    fn from(err: domain::ports::StoreError) -> Self {
        match err {
            domain::ports::StoreError::NotFound => AppError::NotFound,
            other => AppError::store_failure(other),
        }
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    /// A storage failure: the database being out of reach is a 503 the person can retry (nothing
    /// was written); anything else is internal.
    pub fn store_failure(err: domain::ports::StoreError) -> Self {
        Self::store_failure_for(crate::api::context::request_meta().request_id, err)
    }

    /// [`AppError::store_failure`] for a request outside a server function (the agent API).
    pub fn store_failure_for(request_id: Option<String>, err: domain::ports::StoreError) -> Self {
        match err {
            domain::ports::StoreError::Unavailable(detail) => {
                tracing::warn!(
                    request_id = %request_id.unwrap_or_default(),
                    error = %detail,
                    "database unavailable"
                );
                AppError::Unavailable(
                    "The database is unavailable, so nothing was changed. Try again shortly."
                        .into(),
                )
            }
            other => AppError::internal_for(request_id, other),
        }
    }
}

/// tower-sessions carries a store's errors as text only: this prefix marks the database being
/// unavailable, so a session load or save that meets an outage answers as one (503).
#[cfg(feature = "ssr")]
const SESSION_STORE_UNAVAILABLE: &str = "database unavailable: ";

/// A storage failure as the session store's error (what a `SessionStore` returns).
#[cfg(feature = "ssr")]
pub fn session_store_error(err: domain::ports::StoreError) -> tower_sessions::session_store::Error {
    use tower_sessions::session_store::Error;
    match err {
        domain::ports::StoreError::Unavailable(detail) => {
            Error::Backend(format!("{SESSION_STORE_UNAVAILABLE}{detail}"))
        }
        other => Error::Backend(other.to_string()),
    }
}

/// The outage behind a session store's error made by [`session_store_error`], if it was one.
#[cfg(feature = "ssr")]
pub fn session_store_outage(
    err: &tower_sessions::session_store::Error,
) -> Option<domain::ports::StoreError> {
    match err {
        tower_sessions::session_store::Error::Backend(text) => text
            .strip_prefix(SESSION_STORE_UNAVAILABLE)
            .map(|detail| domain::ports::StoreError::Unavailable(detail.to_owned())),
        _ => None,
    }
}

#[cfg(feature = "ssr")]
impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        if let tower_sessions::session::Error::Store(store) = &err
            && let Some(outage) = session_store_outage(store)
        {
            return AppError::store_failure(outage);
        }
        AppError::internal(format!("session: {err}"))
    }
}
