//! Key vault errors: what a trader entering, checking or using an exchange key is told, and
//! what an admin managing the master key and decoys is told.

use domain::exchange::{ApiCredentials, InvalidCredential};
use domain::ids::UnknownValue;
use domain::keys::{KeyInputError, KeyLabel, KeyVaultError};

use super::AppError;

impl From<KeyVaultError> for AppError {
    fn from(err: KeyVaultError) -> Self {
        match err {
            KeyVaultError::Invalid(e) => e.into(),
            KeyVaultError::NotFound => AppError::NotFound,
            KeyVaultError::Revoked | KeyVaultError::Unusable | KeyVaultError::HasLiveOrders => {
                AppError::Conflict(key_vault_message(&err))
            }
            KeyVaultError::ExchangeUnavailable
            | KeyVaultError::KmsUnavailable
            | KeyVaultError::AuditUnavailable => AppError::Unavailable(key_vault_message(&err)),
            KeyVaultError::Tampered => {
                AppError::internal("a stored exchange key failed to decrypt")
            }
            KeyVaultError::Store(e) => AppError::store_failure(e),
            _ => AppError::Invalid(key_vault_message(&err)),
        }
    }
}

/// How a key vault failure is worded for a person (also inside a trading refusal). Storage and
/// decryption failures say only that the vault failed: their detail is for the logs.
pub(super) fn key_vault_message(err: &KeyVaultError) -> String {
    match err {
        KeyVaultError::Invalid(e) => key_input_message(e),
        KeyVaultError::NotFound => "Key not found.".into(),
        KeyVaultError::Refused(problem) => problem.to_string(),
        KeyVaultError::ExchangeNotEnabled(exchange) => {
            format!("{} is not enabled on this server.", exchange.label())
        }
        KeyVaultError::UnknownOwner => "No user has that email.".into(),
        KeyVaultError::RotationRefused(why) => {
            format!("The master key cannot be rotated here: the KMS refused the request: {why}.")
        }
        KeyVaultError::Revoked => "This key was revoked.".into(),
        KeyVaultError::Unusable => "This key cannot be used right now.".into(),
        KeyVaultError::HasLiveOrders => "This key has orders the exchange may hold (open, being \
            sent, or held after a send attempt). Cancel them first: once the key is \
            revoked, CryptoPulse can no longer cancel or follow them."
            .into(),
        KeyVaultError::ExchangeRejected(why) => why.clone(),
        KeyVaultError::ExchangeUnavailable => {
            "The exchange could not be reached. Nothing was saved; try again shortly.".into()
        }
        KeyVaultError::KmsUnavailable => {
            "The key management service is unavailable. Nothing was decrypted or saved.".into()
        }
        KeyVaultError::AuditUnavailable => {
            "The audit log could not be written, so nothing was decrypted or saved.".into()
        }
        KeyVaultError::Tampered | KeyVaultError::Store(_) => "The key vault failed.".into(),
    }
}

impl From<KeyInputError> for AppError {
    fn from(err: KeyInputError) -> Self {
        AppError::Invalid(key_input_message(&err))
    }
}

fn key_input_message(err: &KeyInputError) -> String {
    match err {
        KeyInputError::Unknown(kind) => format!("Unknown {}.", value_kind(kind)),
        KeyInputError::Label => format!(
            "The label must be 1 to {} characters of plain text, without control or layout characters.",
            KeyLabel::MAX_CHARS
        ),
        KeyInputError::Credential(InvalidCredential { field }) => format!(
            "The {field} must be {} to {} visible characters without spaces.",
            ApiCredentials::MIN_CHARS,
            ApiCredentials::MAX_CHARS
        ),
        KeyInputError::Environment(exchange, environment) => format!(
            "{} has no {} environment.",
            exchange.label(),
            environment.as_str()
        ),
    }
}

/// The closed set a value was not in, in words.
fn value_kind(kind: &str) -> &str {
    match kind {
        "ExchangeName" => "exchange",
        "KeyEnvironment" => "environment",
        "KeyScope" => "scope",
        "KeyStatus" => "status",
        other => other,
    }
}

impl From<UnknownValue> for AppError {
    fn from(err: UnknownValue) -> Self {
        KeyInputError::from(err).into()
    }
}

impl From<InvalidCredential> for AppError {
    fn from(err: InvalidCredential) -> Self {
        KeyInputError::from(err).into()
    }
}
