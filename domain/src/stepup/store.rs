//! The second-factor store port.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{OrderApproval, SecurityKey, TotpAttempt, TotpFactor, TotpLockout, UsableFactors};
use crate::account::UserId;
use crate::audit::AuditDraft;
use crate::store_error::StoreError;

/// Persistence of second factors and order approvals. Each write carries its audit event and the
/// adapter commits both in one transaction or neither. Conditional writes return `false` when
/// their condition no longer holds (a concurrent request won).
#[async_trait]
pub trait FactorStore: Send + Sync + fmt::Debug {
    async fn totp(&self, user: UserId) -> Result<Option<TotpFactor>, StoreError>;
    /// Stores an unconfirmed secret, replacing an earlier unconfirmed one. `Conflict` when a
    /// confirmed factor exists.
    async fn save_pending_totp(
        &self,
        factor: &TotpFactor,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Confirms the pending factor with its first accepted step and stores fresh recovery
    /// code hashes (replacing any earlier ones).
    async fn confirm_totp(
        &self,
        user: UserId,
        step: u64,
        at: OffsetDateTime,
        recovery_hashes: &[String],
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    /// Counts one code against the pending (unconfirmed) factor before it is checked, in one
    /// conditional write: `false`, and nothing counted, when there is no pending factor or it
    /// has had `max_attempts` already.
    async fn reserve_enrolment_attempt(
        &self,
        user: UserId,
        max_attempts: u32,
    ) -> Result<bool, StoreError>;
    /// Reserves one attempt before a code is checked, in one conditional write: refused (not
    /// counted) while `locked_until` is after `now`; otherwise the count goes up by one (starting
    /// again at one when the count began [`TotpLockout::FAILURES_FORGOTTEN_AFTER`] ago) and
    /// `locked_until` is set from `lockout` and the new count.
    async fn reserve_totp_attempt(
        &self,
        user: UserId,
        now: OffsetDateTime,
        lockout: TotpLockout,
    ) -> Result<TotpAttempt, StoreError>;
    /// Accepts `step` if it is newer than the last accepted one and takes back the attempt's
    /// reservation (one off the count; the lock goes only if the count is back below the free
    /// failures). Other wrong codes stay counted.
    async fn accept_totp_step(
        &self,
        user: UserId,
        step: u64,
        lockout: TotpLockout,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    async fn remove_totp(&self, user: UserId, audit: AuditDraft) -> Result<bool, StoreError>;

    async fn recovery_codes_left(&self, user: UserId) -> Result<u32, StoreError>;
    async fn replace_recovery_codes(
        &self,
        user: UserId,
        hashes: &[String],
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Marks an unused code with this hash used.
    async fn use_recovery_code(
        &self,
        user: UserId,
        hash: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;

    /// A confirmed authenticator app, and a key that is not disabled: what `totp` and
    /// `security_keys` would tell, in one read.
    async fn usable_factors(&self, user: UserId) -> Result<UsableFactors, StoreError>;
    /// The user's keys, oldest first.
    async fn security_keys(&self, user: UserId) -> Result<Vec<SecurityKey>, StoreError>;
    /// Whether any account already registered this credential id.
    async fn credential_registered(&self, credential_id: &str) -> Result<bool, StoreError>;
    async fn insert_security_key(
        &self,
        key: &SecurityKey,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Saves the updated credential (its counter), the challenge answered and the time of use,
    /// only if the key is still stored as `previous` with `previous_challenge` (and not
    /// disabled): `Conflict` if it holds `challenge` already (that answer was saved),
    /// `NotFound` otherwise, and nothing is written.
    #[allow(clippy::too_many_arguments)]
    async fn record_security_key_use(
        &self,
        user: UserId,
        id: Uuid,
        previous: &str,
        previous_challenge: Option<&str>,
        credential: &str,
        challenge: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn flag_security_key(
        &self,
        user: UserId,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// `false` when the key is not the user's.
    async fn remove_security_key(
        &self,
        user: UserId,
        id: Uuid,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;

    async fn insert_order_approval(
        &self,
        approval: &OrderApproval,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Marks the user's unexpired, unused approval for `digest` used.
    async fn consume_order_approval(
        &self,
        user: UserId,
        digest: &str,
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
}
