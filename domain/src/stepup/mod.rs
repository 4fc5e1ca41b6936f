//! Step-up authentication: second factors (TOTP, recovery codes, security keys / passkeys), the
//! privilege window a step-up opens (Kanidm's model), which action needs which assurance, and
//! approvals bound to one canonical order (PSD2-style dynamic linking).
//!
//! Secrets follow the vault's rules: the TOTP secret is sealed like an exchange key, recovery
//! codes are stored as hashes, and WebAuthn ceremony state never leaves the server.
//!
//! Layout: `policy` (assurance and the window), `totp`, `recovery`, `security_key`, `approval`
//! (each with its use cases), `store` (the port) and `service` (the service and step-up itself).

mod approval;
mod policy;
mod recovery;
mod security_key;
mod service;
mod store;
mod totp;

pub use approval::{
    MAX_ORDER_AMOUNT, OrderApproval, OrderApprovalStart, OrderChallenge, OrderIntent, OrderSide,
    OrderTerms, OrderToApprove,
};
pub use policy::{Assurance, SensitiveAction, StepUpGrant, StepUpMethod, StepUpPolicy};
pub use recovery::{RECOVERY_CODE_COUNT, generate_recovery_codes, recovery_code_hash};
pub use security_key::{CEREMONY_LIFETIME, Ceremony, KeyChange, KeyName, SecurityKey};
pub use service::{
    FactorProof, FactorSummary, PrivilegeWindow, StepUpPorts, StepUpService, UsableFactors,
};
pub use store::FactorStore;
pub use totp::{
    TotpAttempt, TotpCode, TotpEnrolment, TotpFactor, TotpLockout, code_at, matching_step,
};

use crate::store_error::StoreError;
use crate::vault::{KmsError, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum StepUpError {
    #[error("this action needs a fresh step-up")]
    Required(Assurance),
    #[error("this needs another role")]
    Forbidden,
    #[error("the code must be six digits")]
    MalformedTotpCode,
    #[error("an authenticator app is already set up")]
    TotpAlreadySetUp,
    #[error("no authenticator app is set up")]
    NoTotpApp,
    #[error("recovery codes need an authenticator app")]
    RecoveryCodesNeedTotp,
    #[error("a key name is 1 to 40 printable characters")]
    InvalidKeyName,
    #[error("that code is not valid")]
    WrongCode,
    #[error("that code was already used")]
    Replayed,
    #[error("too many wrong codes; try again in {0} seconds")]
    LockedOut(u64),
    #[error("no such factor")]
    NotFound,
    #[error("the security key could not be verified")]
    KeyRejected,
    #[error(
        "this security key reported a signature counter that went backwards; it may be cloned and has been disabled"
    )]
    CounterRegressed,
    #[error("this security key is already registered")]
    KeyAlreadyRegistered,
    #[error("no step-up is in progress, or it has expired; start again")]
    NoCeremony,
    #[error("adding a first second factor needs a recent sign-in")]
    RecentSignInRequired,
    #[error("this approval does not match the order")]
    OrderMismatch,
    #[error("the audit log is unavailable")]
    AuditUnavailable,
    #[error("the key service is unavailable: {0}")]
    KmsUnavailable(String),
    #[error("storage failure: {0}")]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for StepUpError {
    fn from(e: StoreError) -> Self {
        StepUpError::Store(e)
    }
}

impl From<VaultError> for StepUpError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Kms(KmsError::Unavailable(why)) => StepUpError::KmsUnavailable(why),
            other => StepUpError::Internal(other.to_string()),
        }
    }
}
