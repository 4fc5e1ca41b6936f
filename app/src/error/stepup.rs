//! Step-up errors: which step-up the person needs, and what went wrong with a factor.

use domain::stepup::{Assurance, StepUpError};

use super::AppError;
use crate::api::stepup::StepUpNeed;

impl From<StepUpError> for AppError {
    fn from(err: StepUpError) -> Self {
        let invalid = |text: &str| AppError::Invalid(text.into());
        match err {
            StepUpError::Required(Assurance::AnyFactor) => {
                AppError::StepUpRequired(StepUpNeed::AnyFactor)
            }
            StepUpError::Required(Assurance::SecurityKey) => {
                AppError::StepUpRequired(StepUpNeed::SecurityKey)
            }
            StepUpError::RecentSignInRequired => AppError::StepUpRequired(StepUpNeed::RecentSignIn),
            StepUpError::Forbidden => AppError::Forbidden,
            StepUpError::NotFound => AppError::NotFound,
            StepUpError::LockedOut(secs) => AppError::RateLimited(secs),
            StepUpError::MalformedTotpCode => {
                invalid("Enter the 6-digit code from your authenticator app.")
            }
            StepUpError::TotpAlreadySetUp => invalid(
                "An authenticator app is already set up. Remove it first to set up another.",
            ),
            StepUpError::NoTotpApp => {
                invalid("You have no authenticator app set up; use your security key.")
            }
            StepUpError::RecoveryCodesNeedTotp => {
                invalid("Set up an authenticator app first; recovery codes stand in for it.")
            }
            StepUpError::InvalidKeyName => invalid(
                "Give the key a name of 1 to 40 characters, e.g. \"YubiKey on my keyring\".",
            ),
            StepUpError::WrongCode => invalid("That code is not valid."),
            StepUpError::Replayed => invalid("That code was already used."),
            StepUpError::KeyRejected => invalid("The security key could not be verified."),
            StepUpError::CounterRegressed => invalid(
                "This security key reported a signature counter that went backwards; it may be cloned and has been disabled.",
            ),
            StepUpError::NoCeremony => {
                invalid("No step-up is in progress, or it has expired; start again.")
            }
            StepUpError::OrderMismatch => invalid("This approval does not match the order."),
            StepUpError::KeyAlreadyRegistered => {
                AppError::Conflict("This security key is already registered.".into())
            }
            StepUpError::AuditUnavailable => {
                AppError::Unavailable("The audit log is unavailable; nothing was changed.".into())
            }
            StepUpError::KmsUnavailable(why) => {
                tracing::warn!(error = %why, "kms unavailable during step-up");
                AppError::Unavailable(
                    "The key service is unavailable; nothing was changed. Try again shortly."
                        .into(),
                )
            }
            StepUpError::Store(e) => AppError::store_failure(e),
            StepUpError::Internal(e) => AppError::internal(e),
        }
    }
}
