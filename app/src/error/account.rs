//! Account errors as the person signing up, in, or administering users is told them.

use domain::account::{AccountError, Password, ValidationError};

use super::AppError;

impl From<AccountError> for AppError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(invalid) => invalid.into(),
            AccountError::BadCredentials => AppError::BadCredentials,
            AccountError::Throttled(secs) => AppError::RateLimited(secs),
            AccountError::EmailUnavailable => AppError::Conflict(
                "This email cannot be used to sign up. If you already have an account, sign in."
                    .into(),
            ),
            AccountError::NotFound => AppError::NotFound,
            AccountError::Forbidden => AppError::Forbidden,
            AccountError::OwnRole => {
                AppError::Invalid("You cannot change your own role; ask another admin.".into())
            }
            AccountError::RoleChanged => AppError::Conflict(
                "That user's role, or the request for it, changed meanwhile. Reload and try again."
                    .into(),
            ),
            AccountError::WrongCurrentPassword => {
                AppError::Invalid("Your current password is not right.".into())
            }
            AccountError::Store(e) => AppError::store_failure(e),
        }
    }
}

impl From<ValidationError> for AppError {
    fn from(err: ValidationError) -> Self {
        AppError::Invalid(match err {
            ValidationError::Email => "Enter an email address like name@example.com (letters, digits and punctuation only; an international domain in its xn-- form).".into(),
            ValidationError::PasswordLength => format!(
                "The password must be between {} and {} characters.",
                Password::MIN_CHARS,
                Password::MAX_CHARS
            ),
            ValidationError::Role => "Unknown role; use trader, reviewer or admin.".into(),
        })
    }
}
