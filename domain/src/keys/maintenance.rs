//! Keeping the vault healthy: the scheduled permission re-check, re-wrapping data keys under
//! the current master key, rotating the master key, and the KMS status.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::service::store_or_audit;
use super::{
    KeyPurpose, KeyStatus, KeyVaultError, KeyVaultService, RecheckReport, RewrapProgress, StoredKey,
};
use crate::audit::AuditLog;
use crate::audit::{Actor, AuditDraft, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::authz::{Admin, AdminReader};
use crate::ids::{KeyId, UserId};
use crate::vault::{self, KmsBackend, KmsError, RotationRecord};

/// Whose keys a re-wrap run covers: the caller's own, or everyone's (an admin action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapScope {
    Own(UserId),
    All(Admin),
}

impl RewrapScope {
    /// Who asked for the run.
    pub fn requester(&self) -> UserId {
        match self {
            RewrapScope::Own(owner) => *owner,
            RewrapScope::All(admin) => admin.id(),
        }
    }
}

/// Identifies a re-wrap run for whoever polls its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RewrapRunId(pub Uuid);

impl RewrapRunId {
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw.trim()).ok().map(Self)
    }
}

impl fmt::Display for RewrapRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A re-wrap run as its requester sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewrapRun {
    pub progress: RewrapProgress,
    pub finished: bool,
}

/// Runs [`KeyVaultService::rewrap_keys`] in the background so a page can poll its progress
/// (the server runs it on its runtime).
pub trait RewrapRunner: Send + Sync + fmt::Debug {
    /// Starts re-wrapping the scope's keys and returns the run's id.
    fn start(&self, scope: RewrapScope, meta: RequestMeta) -> RewrapRunId;
    /// The run's progress, if `requester` started it (nobody else may see it).
    fn status(&self, requester: UserId, run: RewrapRunId) -> Option<RewrapRun>;
}

/// The KMS as the admin's page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsStatus {
    pub backend: KmsBackend,
    /// The master key version new keys are wrapped under.
    pub current_key_id: String,
}

impl KeyVaultService {
    /// Re-checks every sealed, non-decoy key (the scheduled job).
    pub async fn recheck_all(&self) -> Result<RecheckReport, KeyVaultError> {
        let mut report = RecheckReport::default();
        for (owner, id) in self.keys.sealed_keys(None).await? {
            let Some(stored) = self.keys.find(owner, id).await? else {
                continue;
            };
            if stored.canary {
                // Checked like any key (decrypted, but its exchange is never asked), so its
                // check time and receipts do not give it away.
                match self.recheck_decoy(&stored).await {
                    Ok(()) => report.checked += 1,
                    Err(_) => report.failed += 1,
                }
                continue;
            }
            match self
                .check_key(
                    Actor::system("vault.recheck"),
                    owner,
                    id,
                    KeyPurpose::ScheduledCheck,
                    RequestMeta::default(),
                )
                .await
            {
                Ok(record) if record.status == KeyStatus::Suspended => {
                    report.checked += 1;
                    report.suspended += 1;
                }
                Ok(_) => report.checked += 1,
                Err(_) => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// The scheduled check of a decoy: the same two events a real key's check writes (its use
    /// receipt, then the check), marked `decoy` for reviewers, and the same columns stamped. It
    /// is decrypted like a real key (so a KMS outage fails its check as it fails theirs, with
    /// the same receipt), but its exchange is never asked and its planted permissions stand.
    async fn recheck_decoy(&self, stored: &StoredKey) -> Result<(), KeyVaultError> {
        let record = &stored.record;
        let Some(sealed) = stored.sealed.as_ref() else {
            return Ok(());
        };
        let actor = Actor::system("vault.recheck");
        let purpose = KeyPurpose::ScheduledCheck;
        let now = self.clock.now();
        let receipt = AuditDraft::new(
            actor.clone(),
            AuditAction::VaultKeyUsed,
            Outcome::Success,
            RequestMeta::default(),
        )
        .resource(record.id.resource())
        .detail("owner", record.owner.to_string())
        .detail("purpose", purpose.describe())
        .detail("kms_key_id", sealed.wrapped_key.kms_key_id.clone())
        .detail("decoy", true);
        self.keys
            .record_use(record.id, now, receipt)
            .await
            .map_err(store_or_audit)?;
        if let Err(err) = vault::open(self.kms.as_ref(), &record.binding(), sealed).await {
            let err = KeyVaultError::from(err);
            let failure = AuditDraft::new(
                actor,
                AuditAction::VaultKeyUseFailed,
                Outcome::Failure,
                RequestMeta::default(),
            )
            .resource(record.id.resource())
            .detail("purpose", purpose.describe())
            .detail("error", err.to_string())
            .detail("decoy", true);
            // Best effort, as for a real key: the use receipt is already written.
            let _ = self.audit.record(failure).await;
            return Err(err);
        }
        let mut check = AuditDraft::new(
            actor,
            AuditAction::VaultKeyChecked,
            Outcome::Success,
            RequestMeta::default(),
        )
        .resource(record.id.resource())
        .detail("status", record.status.as_str())
        .detail("can_trade", record.permissions.can_trade)
        .detail("can_withdraw", record.permissions.can_withdraw)
        .detail("ip_restricted", record.permissions.ip_restricted)
        .detail("decoy", true);
        if let Some(reason) = &record.status_reason {
            check = check.detail("reason", reason.clone());
        }
        self.keys
            .record_check(
                record.id,
                record.permissions,
                record.status,
                record.status_reason.clone(),
                now,
                check,
            )
            .await
            .map_err(store_or_audit)
    }

    /// Re-wraps data keys under the KMS's current key: the scope's. The ciphertexts do not
    /// change; `progress` is told after each key.
    pub async fn rewrap_keys(
        &self,
        scope: RewrapScope,
        meta: RequestMeta,
        mut progress: impl FnMut(RewrapProgress) + Send,
    ) -> Result<RewrapProgress, KeyVaultError> {
        let actor = Actor::user(scope.requester());
        let owner = match scope {
            RewrapScope::Own(owner) => Some(owner),
            RewrapScope::All(_) => None,
        };
        let targets = self.keys.sealed_keys(owner).await?;
        // Another server may have rotated: re-wrap under the newest version, not this one's.
        self.kms.refresh().await;
        let current = self.kms.current_key_id();
        let mut state = RewrapProgress {
            total: targets.len() as u64,
            ..RewrapProgress::default()
        };
        progress(state);
        for (key_owner, id) in targets {
            match self
                .rewrap_one(&actor, key_owner, id, &current, &meta)
                .await
            {
                Ok(true) => state.rewrapped += 1,
                Ok(false) => state.already_current += 1,
                Err(_) => state.failed += 1,
            }
            progress(state);
        }
        let outcome = if state.failed == 0 {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let scope = owner.map_or_else(|| "all".to_owned(), |o| o.to_string());
        let summary = AuditDraft::new(actor, AuditAction::VaultRewrap, outcome, meta)
            .detail("scope", scope)
            .detail("kms_key_id", current)
            .detail("total", state.total)
            .detail("rewrapped", state.rewrapped)
            .detail("already_current", state.already_current)
            .detail("failed", state.failed);
        self.audit
            .record(summary)
            .await
            .map_err(|_| KeyVaultError::AuditUnavailable)?;
        Ok(state)
    }

    async fn rewrap_one(
        &self,
        actor: &Actor,
        owner: UserId,
        id: KeyId,
        current: &str,
        meta: &RequestMeta,
    ) -> Result<bool, KeyVaultError> {
        let stored = self
            .keys
            .find(owner, id)
            .await?
            .ok_or(KeyVaultError::NotFound)?;
        let Some(sealed) = stored.sealed else {
            return Ok(false);
        };
        if sealed.wrapped_key.kms_key_id == current {
            return Ok(false);
        }
        let rewrapped = vault::rewrap(self.kms.as_ref(), &stored.record.binding(), &sealed).await?;
        let draft = AuditDraft::new(
            actor.clone(),
            AuditAction::VaultKeyRewrapped,
            Outcome::Success,
            meta.clone(),
        )
        .resource(id.resource())
        .detail("from", sealed.wrapped_key.kms_key_id.clone())
        .detail("to", rewrapped.wrapped_key.kms_key_id.clone());
        let swapped = self
            .keys
            .replace_wrapped_key(id, &sealed.wrapped_key, &rewrapped.wrapped_key, draft)
            .await
            .map_err(store_or_audit)?;
        if swapped {
            Ok(true)
        } else {
            Err(KeyVaultError::NotFound)
        }
    }

    /// Adds a master key version (local KMS) and returns the KMS's new status. The `kms.rotate` event is
    /// written first, while the KMS holds its rotation lock: if the audit log cannot be written,
    /// the key file and the current version stay as they were (`AuditUnavailable`). Should the
    /// key file then fail to take the version, a failure event says so.
    pub async fn rotate_master_key(
        &self,
        admin: &Admin,
        meta: RequestMeta,
    ) -> Result<KmsStatus, KeyVaultError> {
        let admin = admin.id();
        let rotation = AuditedRotation {
            audit: self.audit.as_ref(),
            actor: Actor::user(admin),
            meta: meta.clone(),
            from: self.kms.current_key_id(),
            recorded: std::sync::Mutex::new(None),
        };
        match self.kms.add_version(&rotation).await {
            Ok(current_key_id) => Ok(KmsStatus {
                backend: self.kms.backend(),
                current_key_id,
            }),
            Err(KmsError::NotRecorded) => Err(KeyVaultError::AuditUnavailable),
            Err(err) => {
                let recorded = rotation.recorded.lock().ok().and_then(|r| r.clone());
                if let Some(to) = recorded {
                    let failure = AuditDraft::new(
                        Actor::user(admin),
                        AuditAction::KmsRotate,
                        Outcome::Failure,
                        meta,
                    )
                    .detail("from", rotation.from.clone())
                    .detail("to", to)
                    .detail("error", err.to_string());
                    // Best effort: the success event is already in the chain.
                    let _ = self.audit.record(failure).await;
                }
                Err(match err {
                    KmsError::Refused(why) => KeyVaultError::RotationRefused(why),
                    _ => KeyVaultError::KmsUnavailable,
                })
            }
        }
    }

    /// Which KMS holds the master key, and its current version.
    pub async fn kms_status(&self, _reader: &AdminReader) -> KmsStatus {
        self.kms.refresh().await;
        KmsStatus {
            backend: self.kms.backend(),
            current_key_id: self.kms.current_key_id(),
        }
    }

    /// Whether `record`'s data key is wrapped under the current master key version (otherwise
    /// a re-wrap is due).
    pub fn wrapped_under_current(&self, record: &super::KeyRecord) -> bool {
        record.kms_key_id.as_deref() == Some(self.kms.current_key_id().as_str())
    }
}

/// Writes the `kms.rotate` event for [`KeyVaultService::rotate_master_key`].
struct AuditedRotation<'a> {
    audit: &'a dyn AuditLog,
    actor: Actor,
    meta: RequestMeta,
    from: String,
    /// The new key id, once its event is written.
    recorded: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl RotationRecord for AuditedRotation<'_> {
    async fn record(&self, new_key_id: &str) -> Result<(), KmsError> {
        let draft = AuditDraft::new(
            self.actor.clone(),
            AuditAction::KmsRotate,
            Outcome::Success,
            self.meta.clone(),
        )
        .detail("from", self.from.clone())
        .detail("to", new_key_id);
        self.audit
            .record(draft)
            .await
            .map_err(|_| KmsError::NotRecorded)?;
        if let Ok(mut recorded) = self.recorded.lock() {
            *recorded = Some(new_key_id.to_owned());
        }
        Ok(())
    }
}
