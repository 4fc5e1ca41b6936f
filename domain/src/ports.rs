//! Small traits the server implements with real adapters (database, clock, hashing).

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::account::{Email, NewUser, PasswordHash, Role, User, UserCredentials, UserId};
use crate::audit::{AuditDraft, AuditEvent};

/// Time is a parameter: policies take `now` from here so tests never sleep.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Failures of a storage adapter. Details stay server-side; callers only branch on the kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with the same unique value already exists")]
    Conflict,
    #[error("record not found")]
    NotFound,
    #[error("storage failure: {0}")]
    Backend(String),
}

/// Users and their credentials. Every write takes the audit event that records it; the adapter
/// commits both in one transaction or neither.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    async fn create_user(&self, user: NewUser, audit: AuditDraft) -> Result<User, StoreError>;
    async fn find_credentials(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError>;
    async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// The users among `ids` that exist (in no particular order).
    async fn find_users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    async fn set_role(&self, id: UserId, role: Role, audit: AuditDraft)
    -> Result<User, StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Appends an event that accompanies no other change (a failed login, a logout).
    async fn record(&self, draft: AuditDraft) -> Result<AuditEvent, StoreError>;
    /// The newest events, newest first.
    async fn recent(&self, limit: u64) -> Result<Vec<AuditEvent>, StoreError>;
    /// Events with `seq > after`, oldest first, at most `limit` of them.
    async fn page(&self, after: i64, limit: u64) -> Result<Vec<AuditEvent>, StoreError>;
    /// The newest events about any of `resources`, newest first.
    async fn for_resources(
        &self,
        resources: &[String],
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}

/// Ends every session of a user ("log out everywhere"), recorded by the given audit event;
/// with `agent_tokens`, also revokes every live agent token of theirs in the same transaction
/// (one `agent.token_revoked` event each). Returns (sessions ended, tokens revoked).
#[async_trait]
pub trait SessionRevoker: Send + Sync + std::fmt::Debug {
    async fn revoke_all(
        &self,
        user: UserId,
        agent_tokens: bool,
        audit: AuditDraft,
    ) -> Result<(u64, u64), StoreError>;
}

/// Password hashing is slow on purpose; adapters run it off the async executor.
#[async_trait]
pub trait PasswordHasher: Send + Sync + std::fmt::Debug {
    async fn hash(&self, password: crate::account::Password) -> Result<PasswordHash, StoreError>;
    /// Returns whether `password` matches `hash`. A malformed hash never matches.
    async fn verify(&self, password: crate::account::Password, hash: PasswordHash) -> bool;
}

/// Counts failed logins per account and per client address and says when to try again.
/// Keys starting with `ip:` are client addresses; the others are accounts.
pub trait LoginThrottle: Send + Sync + std::fmt::Debug {
    /// Starts an attempt: `Err(seconds)` while any key is backing off. Otherwise the attempt
    /// counts as a possible failure until `finish`, so parallel guesses cannot all slip through.
    fn begin(&self, keys: &[String], now: OffsetDateTime) -> Result<(), u64>;
    /// Ends an attempt started by `begin`. Success clears the account's failures.
    fn finish(&self, keys: &[String], succeeded: bool, now: OffsetDateTime);
}

pub type SharedClock = Arc<dyn Clock>;
