//! The one error type of every server function. Its messages are written for the person using
//! the app; internal details never cross the wire (they are logged with the request id).

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

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
        let request_id = crate::api::context::request_meta()
            .request_id
            .unwrap_or_default();
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
impl From<domain::account::AccountError> for AppError {
    fn from(err: domain::account::AccountError) -> Self {
        use domain::account::AccountError as E;
        match err {
            E::Invalid(v) => AppError::Invalid(capitalise(&v.to_string())),
            E::BadCredentials => AppError::BadCredentials,
            E::Throttled(secs) => AppError::RateLimited(secs),
            E::EmailUnavailable => AppError::Conflict(
                "This email cannot be used to sign up. If you already have an account, sign in."
                    .into(),
            ),
            E::NotFound => AppError::NotFound,
            E::Forbidden => AppError::Forbidden,
            E::Store(e) => AppError::internal(e),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::keys::KeyInputError> for AppError {
    fn from(err: domain::keys::KeyInputError) -> Self {
        AppError::Invalid(capitalise(&err.to_string()))
    }
}

#[cfg(feature = "ssr")]
impl From<domain::stepup::StepUpError> for AppError {
    fn from(err: domain::stepup::StepUpError) -> Self {
        use crate::api::stepup::StepUpNeed;
        use domain::stepup::{Assurance, StepUpError as E};
        match err {
            E::Required(Assurance::AnyFactor) => AppError::StepUpRequired(StepUpNeed::AnyFactor),
            E::Required(Assurance::SecurityKey) => {
                AppError::StepUpRequired(StepUpNeed::SecurityKey)
            }
            E::RecentSignInRequired => AppError::StepUpRequired(StepUpNeed::RecentSignIn),
            E::Invalid(msg) => AppError::Invalid(msg),
            E::LockedOut(secs) => AppError::RateLimited(secs),
            E::NotFound => AppError::NotFound,
            E::Forbidden => AppError::Forbidden,
            E::KeyAlreadyRegistered => AppError::Conflict(capitalise(&err.to_string())),
            E::WrongCode
            | E::Replayed
            | E::KeyRejected
            | E::CounterRegressed
            | E::NoCeremony
            | E::OrderMismatch => AppError::Invalid(capitalise(&err.to_string())),
            E::AuditUnavailable => {
                AppError::Unavailable("The audit log is unavailable; nothing was changed.".into())
            }
            E::KmsUnavailable(why) => {
                tracing::warn!(error = %why, "kms unavailable during step-up");
                AppError::Unavailable(
                    "The key service is unavailable; nothing was changed. Try again shortly."
                        .into(),
                )
            }
            E::Store(e) => AppError::internal(e),
            E::Internal(e) => AppError::internal(e),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::ports::StoreError> for AppError {
    fn from(err: domain::ports::StoreError) -> Self {
        match err {
            domain::ports::StoreError::NotFound => AppError::NotFound,
            other => AppError::internal(other),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        AppError::internal(format!("session: {err}"))
    }
}

#[cfg(feature = "ssr")]
pub(crate) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}
