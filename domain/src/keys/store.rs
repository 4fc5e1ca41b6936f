//! The key store port.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{KeyPermissions, KeyRecord, KeyStatus, StoredKey};
use crate::audit::AuditDraft;
use crate::ids::{KeyId, UserId};
use crate::store_error::StoreError;
use crate::vault::{SealedSecret, WrappedKey};

/// Persistence of key records. Each write carries its audit event; the adapter commits both in
/// one transaction or neither. Reads by owner return `None` for other users' keys.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug {
    async fn insert(
        &self,
        record: &KeyRecord,
        sealed: &SealedSecret,
        canary: bool,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// The owner's keys, newest first (decoys included: they must look like any other key).
    async fn list(&self, owner: UserId) -> Result<Vec<KeyRecord>, StoreError>;
    async fn find(&self, owner: UserId, id: KeyId) -> Result<Option<StoredKey>, StoreError>;
    /// Stamps `last_used_at` and appends the use receipt, atomically.
    async fn record_use(
        &self,
        id: KeyId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    async fn record_check(
        &self,
        id: KeyId,
        permissions: KeyPermissions,
        status: KeyStatus,
        reason: Option<String>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;
    /// Swaps the wrapped data key if it is still `old`; `Ok(false)` if the row changed meanwhile.
    async fn replace_wrapped_key(
        &self,
        id: KeyId,
        old: &WrappedKey,
        new: &WrappedKey,
        audit: AuditDraft,
    ) -> Result<bool, StoreError>;
    /// Deletes the ciphertext and marks the key revoked. `NotFound` for another owner's key;
    /// `Conflict`, changing nothing, while an order on the key may be at the exchange (being
    /// sent, open, or held after a send whose outcome is unknown).
    async fn revoke(
        &self,
        owner: UserId,
        id: KeyId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError>;
    /// Keys that still hold a ciphertext, as (owner, id), optionally for one owner.
    async fn sealed_keys(&self, owner: Option<UserId>) -> Result<Vec<(UserId, KeyId)>, StoreError>;
    /// All decoy keys, newest first.
    async fn canaries(&self) -> Result<Vec<KeyRecord>, StoreError>;
}
