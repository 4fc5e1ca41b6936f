//! Exchange API keys: validated entry, the permission policy and the key vault (`service`)
//! behind its store port (`store`). The exchange port and the credentials are in
//! [`crate::exchange`], alerts in [`crate::alerts`].

mod decoys;
mod maintenance;
mod receipts;
mod service;
mod store;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{UnknownValue, UserId, string_enum};
use crate::store_error::StoreError;
use crate::vault::{KmsError, SealedSecret, SecretBinding, VaultError};

pub use decoys::{Canary, PlantedCanary};
pub use maintenance::{KmsStatus, RewrapRun, RewrapRunId, RewrapRunner, RewrapScope};
pub use receipts::{KeyReceipt, ReceiptKind};
pub use service::{KeyVaultPorts, KeyVaultService};
pub use store::KeyStore;

// Re-exported while callers move to the new homes.
pub use crate::alerts::{SecurityAlert, SecurityAlerts};
pub use crate::exchange::{
    ApiCredentials, Exchange, ExchangeError, ExchangeName, Exchanges, InvalidCredential,
    KeyEnvironment, KeyPermissions, OrderType, Venue, VenueAck, VenueOrder, VenueOrderStatus,
};
pub use crate::ids::KeyId;

string_enum!(
    /// What the trader allows CryptoPulse to do with the key.
    KeyScope {
        ReadOnly = "read-only" / "Read only",
        Trade = "trade" / "Trade",
    }
);

string_enum!(
    KeyStatus {
        Active = "active" / "Active",
        Suspended = "suspended" / "Suspended",
        Revoked = "revoked" / "Revoked",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyInputError {
    #[error("unknown {0}")]
    Unknown(&'static str),
    #[error("the label must be 1 to {max} characters of plain text (no control or layout characters)", max = KeyLabel::MAX_CHARS)]
    Label,
    #[error(transparent)]
    Credential(#[from] InvalidCredential),
    #[error("{exchange} has no {environment} environment", exchange = .0.label(), environment = .1.as_str())]
    Environment(ExchangeName, KeyEnvironment),
}

impl From<UnknownValue> for KeyInputError {
    fn from(err: UnknownValue) -> Self {
        KeyInputError::Unknown(err.kind)
    }
}

/// A trader's name for a key ("Main testnet bot").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLabel(String);

impl KeyLabel {
    pub const MAX_CHARS: usize = 60;

    pub fn parse(raw: &str) -> Result<Self, KeyInputError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || !crate::text::is_plain(trimmed) {
            return Err(KeyInputError::Label);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a key's permissions are not acceptable. The text is the trader's explanation, kept on
/// the key as its status reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PermissionProblem {
    #[error(
        "This key can withdraw funds. Create a key without withdrawal permission and add that one instead."
    )]
    CanWithdraw,
    #[error("The exchange says this key cannot read the account.")]
    CannotRead,
    #[error(
        "You chose the trade scope, but the exchange says this key cannot trade. Enable spot trading on the key or choose read only."
    )]
    CannotTrade,
}

impl PermissionProblem {
    /// What is wrong with `permissions` for a key of `scope`, if anything.
    pub fn of(scope: KeyScope, permissions: &KeyPermissions) -> Option<Self> {
        if permissions.can_withdraw {
            Some(PermissionProblem::CanWithdraw)
        } else if !permissions.can_read {
            Some(PermissionProblem::CannotRead)
        } else if scope == KeyScope::Trade && !permissions.can_trade {
            Some(PermissionProblem::CannotTrade)
        } else {
            None
        }
    }
}

/// A stored key as everyone but the vault sees it: no ciphertext, no plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub owner: UserId,
    pub exchange: ExchangeName,
    pub environment: KeyEnvironment,
    pub scope: KeyScope,
    pub label: String,
    pub mask: String,
    pub status: KeyStatus,
    pub status_reason: Option<String>,
    pub permissions: KeyPermissions,
    /// The KMS key (and version) the data key is wrapped under; `None` once revoked.
    pub kms_key_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_checked_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// Exchange keys are to be replaced this often; the owner is reminded from
/// [`KEY_ROTATION_REMINDER_DAYS`] before.
pub const KEY_ROTATION_DAYS: i64 = 90;
pub const KEY_ROTATION_REMINDER_DAYS: i64 = 14;

impl KeyRecord {
    /// When the key should have been replaced by (its age reaches [`KEY_ROTATION_DAYS`]).
    pub fn rotation_due_at(&self) -> OffsetDateTime {
        self.created_at + time::Duration::days(KEY_ROTATION_DAYS)
    }

    /// A key still in the vault (not revoked) whose rotation is due within the reminder period
    /// or overdue.
    pub fn rotation_reminder(&self, now: OffsetDateTime) -> bool {
        self.status != KeyStatus::Revoked
            && now >= self.rotation_due_at() - time::Duration::days(KEY_ROTATION_REMINDER_DAYS)
    }

    pub fn binding(&self) -> SecretBinding {
        SecretBinding {
            owner: self.owner,
            record_id: self.id.0,
            exchange: self.exchange.as_str().to_owned(),
            environment: self.environment.as_str().to_owned(),
        }
    }
}

/// A key as the vault reads it: the record, its sealed secret (gone once revoked), and whether
/// it is a decoy.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub sealed: Option<SealedSecret>,
    pub canary: bool,
}

/// Why a key is being decrypted; written into its use receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPurpose {
    /// The trader asked to re-check the key's permissions.
    PermissionCheck,
    /// The periodic permission re-check.
    ScheduledCheck,
    /// Signing an order.
    Order(String),
    /// Cancelling a resting order at its venue (also with a suspended key: it only takes
    /// exposure away, and a stop must be able to take the order off the book).
    Cancel(String),
    /// Asking the venue how a sent order stands (also with a suspended key).
    Lookup(String),
    /// Revoking it: only ever a purpose for decoys, whose revocation raises their alert.
    Revocation,
}

impl KeyPurpose {
    pub fn describe(&self) -> String {
        match self {
            KeyPurpose::PermissionCheck => "permission check".into(),
            KeyPurpose::ScheduledCheck => "scheduled permission check".into(),
            KeyPurpose::Order(id) => format!("order {id}"),
            KeyPurpose::Cancel(id) => format!("cancelling order {id}"),
            KeyPurpose::Lookup(id) => format!("checking order {id}"),
            KeyPurpose::Revocation => "revocation".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error(transparent)]
    Invalid(#[from] KeyInputError),
    #[error("key not found")]
    NotFound,
    /// The key's permissions break the policy.
    #[error(transparent)]
    Refused(PermissionProblem),
    #[error("{} is not enabled on this server", .0.label())]
    ExchangeNotEnabled(ExchangeName),
    /// No user has the email a decoy was to be planted for.
    #[error("no user has that email")]
    UnknownOwner,
    /// The KMS rotates its keys elsewhere (AWS) or its key comes from the environment; the
    /// KMS's reason.
    #[error("the master key cannot be rotated here: {0}")]
    RotationRefused(String),
    #[error("this key was revoked")]
    Revoked,
    /// Revoking would strand orders only this key can cancel or follow at the exchange.
    #[error("this key has orders open or being sent at the exchange")]
    HasLiveOrders,
    /// Suspended keys and decoys: nothing more is said.
    #[error("this key cannot be used")]
    Unusable,
    #[error("the exchange refused the key: {0}")]
    ExchangeRejected(String),
    #[error("the exchange could not be reached")]
    ExchangeUnavailable,
    #[error("the key management service is unavailable")]
    KmsUnavailable,
    #[error("the stored key does not decrypt")]
    Tampered,
    #[error("the audit log could not be written")]
    AuditUnavailable,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for KeyVaultError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => KeyVaultError::NotFound,
            other => KeyVaultError::Store(other),
        }
    }
}

impl From<VaultError> for KeyVaultError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Tampered => KeyVaultError::Tampered,
            VaultError::Kms(KmsError::InvalidCiphertext) => KeyVaultError::Tampered,
            VaultError::Kms(_) => KeyVaultError::KmsUnavailable,
        }
    }
}

/// What a trader submits on the key-entry form.
#[derive(Debug)]
pub struct NewKeyRequest {
    pub exchange: ExchangeName,
    pub environment: KeyEnvironment,
    pub scope: KeyScope,
    pub label: KeyLabel,
    pub credentials: ApiCredentials,
}

/// Progress of a re-wrap run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RewrapProgress {
    pub total: u64,
    pub rewrapped: u64,
    pub already_current: u64,
    pub failed: u64,
}

impl RewrapProgress {
    pub fn done(&self) -> u64 {
        self.rewrapped + self.already_current + self.failed
    }
}

/// Outcome of a periodic permission re-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecheckReport {
    pub checked: u64,
    pub suspended: u64,
    pub failed: u64,
}
