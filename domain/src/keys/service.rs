//! The key vault's core use cases: add, list, use with a receipt, check, revoke. Re-checks,
//! re-wraps and the master key are in `maintenance`, decoys in `decoys`, receipts in `receipts`.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    KeyInputError, KeyPurpose, KeyRecord, KeyStatus, KeyStore, KeyVaultError, NewKeyRequest,
    PermissionProblem,
};
use crate::account::AccountStore;
use crate::alerts::{SecurityAlert, SecurityAlerts};
use crate::audit::{Actor, AuditDraft, AuditLog, Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::clock::Clock;
use crate::exchange::{
    ApiCredentials, ExchangeError, ExchangeName, Exchanges, KeyEnvironment, KeyPermissions,
};
use crate::ids::{KeyId, UserId};
use crate::store_error::StoreError;
use crate::vault::{self, Kms};

/// The ports the key vault uses.
#[derive(Debug, Clone)]
pub struct KeyVaultPorts {
    pub keys: Arc<dyn KeyStore>,
    pub kms: Arc<dyn Kms>,
    pub audit: Arc<dyn AuditLog>,
    pub alerts: Arc<dyn SecurityAlerts>,
    /// Owners of decoys are found and named by email.
    pub accounts: Arc<dyn AccountStore>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone)]
pub struct KeyVaultService {
    pub(super) keys: Arc<dyn KeyStore>,
    pub(super) kms: Arc<dyn Kms>,
    pub(super) exchanges: Exchanges,
    pub(super) audit: Arc<dyn AuditLog>,
    pub(super) alerts: Arc<dyn SecurityAlerts>,
    pub(super) accounts: Arc<dyn AccountStore>,
    pub(super) clock: Arc<dyn Clock>,
}

impl KeyVaultService {
    pub fn new(ports: KeyVaultPorts, exchanges: Exchanges) -> Self {
        let KeyVaultPorts {
            keys,
            kms,
            audit,
            alerts,
            accounts,
            clock,
        } = ports;
        Self {
            keys,
            kms,
            exchanges,
            audit,
            alerts,
            accounts,
            clock,
        }
    }

    async fn permissions(
        &self,
        exchange: ExchangeName,
        environment: KeyEnvironment,
        credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, KeyVaultError> {
        let adapter = self
            .exchanges
            .get(exchange)
            .ok_or(KeyVaultError::ExchangeNotEnabled(exchange))?;
        adapter
            .key_permissions(environment, credentials)
            .await
            .map_err(|e| match e {
                ExchangeError::Rejected(why) => KeyVaultError::ExchangeRejected(why),
                // The adapter logs the cause; the trader hears "unreachable".
                ExchangeError::Unreachable(_)
                | ExchangeError::Timeout(_)
                | ExchangeError::RateLimited(_) => KeyVaultError::ExchangeUnavailable,
            })
    }

    /// Checks the key with its exchange, seals it and stores it. Refusals are audited; the
    /// credentials themselves never reach the audit log.
    pub async fn add_key(
        &self,
        owner: UserId,
        request: NewKeyRequest,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        if !request
            .exchange
            .environments()
            .contains(&request.environment)
        {
            return Err(KeyInputError::Environment(request.exchange, request.environment).into());
        }
        let mask = request.credentials.mask();
        let refused = |reason: &str| {
            AuditDraft::new(
                Actor::user(owner),
                AuditAction::VaultKeyRefused,
                Outcome::Denied,
                meta.clone(),
            )
            .detail("exchange", request.exchange.as_str())
            .detail("environment", request.environment.as_str())
            .detail("scope", request.scope.as_str())
            .detail("reason", reason)
        };
        let permissions = match self
            .permissions(request.exchange, request.environment, &request.credentials)
            .await
        {
            Ok(permissions) => permissions,
            Err(KeyVaultError::ExchangeRejected(why)) => {
                self.audit
                    .record(refused(&why))
                    .await
                    .map_err(|_| KeyVaultError::AuditUnavailable)?;
                return Err(KeyVaultError::ExchangeRejected(why));
            }
            Err(other) => return Err(other),
        };
        if let Some(problem) = PermissionProblem::of(request.scope, &permissions) {
            self.audit
                .record(refused(&problem.to_string()))
                .await
                .map_err(|_| KeyVaultError::AuditUnavailable)?;
            return Err(KeyVaultError::Refused(problem));
        }
        // One instant for the addition and its first check, as a decoy's planting has.
        let now = self.clock.now();
        let record = KeyRecord {
            id: KeyId::new_random(),
            owner,
            exchange: request.exchange,
            environment: request.environment,
            scope: request.scope,
            label: request.label.as_str().to_owned(),
            mask,
            status: KeyStatus::Active,
            status_reason: None,
            permissions,
            kms_key_id: None,
            created_at: now,
            last_used_at: None,
            last_checked_at: Some(now),
            revoked_at: None,
        };
        self.store_sealed(
            record,
            &request.credentials,
            false,
            Actor::user(owner),
            meta,
        )
        .await
    }

    pub(super) async fn store_sealed(
        &self,
        mut record: KeyRecord,
        credentials: &ApiCredentials,
        canary: bool,
        actor: Actor,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        let sealed = vault::seal(
            self.kms.as_ref(),
            &record.binding(),
            &credentials.to_plaintext(),
        )
        .await?;
        record.kms_key_id = Some(sealed.wrapped_key.kms_key_id.clone());
        let action = if canary {
            AuditAction::VaultCanaryPlanted
        } else {
            AuditAction::VaultKeyAdded
        };
        let draft = AuditDraft::new(actor, action, Outcome::Success, meta)
            .resource(record.id.resource())
            .detail("owner", record.owner.to_string())
            .detail("exchange", record.exchange.as_str())
            .detail("environment", record.environment.as_str())
            .detail("scope", record.scope.as_str())
            .detail("label", record.label.clone())
            .detail("mask", record.mask.clone())
            .detail("kms_key_id", sealed.wrapped_key.kms_key_id.clone());
        self.keys
            .insert(&record, &sealed, canary, draft)
            .await
            .map_err(store_or_audit)?;
        Ok(record)
    }

    pub async fn list_keys(&self, owner: UserId) -> Result<Vec<KeyRecord>, KeyVaultError> {
        Ok(self.keys.list(owner).await?)
    }

    /// Decrypts a key for one purpose. The use receipt is written first: if the audit log
    /// cannot be written, nothing is decrypted. A decoy raises an alert and is never decrypted.
    pub async fn use_key(
        &self,
        actor: Actor,
        owner: UserId,
        id: KeyId,
        purpose: KeyPurpose,
        meta: RequestMeta,
    ) -> Result<(KeyRecord, ApiCredentials), KeyVaultError> {
        let stored = self
            .keys
            .find(owner, id)
            .await?
            .ok_or(KeyVaultError::NotFound)?;
        if stored.canary {
            self.trip_canary(&actor, &stored.record, &purpose, meta)
                .await?;
            return Err(KeyVaultError::Unusable);
        }
        let Some(sealed) = stored.sealed.as_ref() else {
            return Err(KeyVaultError::Revoked);
        };
        let usable = match stored.record.status {
            KeyStatus::Active => true,
            KeyStatus::Suspended => !matches!(purpose, KeyPurpose::Order(_)),
            KeyStatus::Revoked => false,
        };
        if !usable {
            return Err(KeyVaultError::Unusable);
        }
        let now = self.clock.now();
        let receipt = AuditDraft::new(
            actor.clone(),
            AuditAction::VaultKeyUsed,
            Outcome::Success,
            meta.clone(),
        )
        .resource(id.resource())
        .detail("owner", owner.to_string())
        .detail("purpose", purpose.describe())
        .detail("kms_key_id", sealed.wrapped_key.kms_key_id.clone());
        self.keys
            .record_use(id, now, receipt)
            .await
            .map_err(store_or_audit)?;
        match vault::open(self.kms.as_ref(), &stored.record.binding(), sealed).await {
            Ok(plaintext) => {
                let credentials =
                    ApiCredentials::from_plaintext(&plaintext).ok_or(KeyVaultError::Tampered)?;
                let mut record = stored.record;
                record.last_used_at = Some(now);
                Ok((record, credentials))
            }
            Err(err) => {
                let err = KeyVaultError::from(err);
                let failure = AuditDraft::new(
                    actor,
                    AuditAction::VaultKeyUseFailed,
                    Outcome::Failure,
                    meta,
                )
                .resource(id.resource())
                .detail("purpose", purpose.describe())
                .detail("error", err.to_string());
                // Best effort: the use receipt is already written.
                let _ = self.audit.record(failure).await;
                Err(err)
            }
        }
    }

    async fn trip_canary(
        &self,
        actor: &Actor,
        record: &KeyRecord,
        purpose: &KeyPurpose,
        meta: RequestMeta,
    ) -> Result<(), KeyVaultError> {
        let alert = SecurityAlert {
            id: Uuid::new_v4(),
            kind: "canary_key_used".into(),
            message: format!(
                "Decoy key \"{}\" ({}) was used for {} from {}.",
                record.label,
                record.mask,
                purpose.describe(),
                meta.ip
                    .clone()
                    .unwrap_or_else(|| "an unknown address".into())
            ),
            resource: Some(record.id.resource()),
            actor: Some(match &actor.id {
                Some(id) => format!("{}:{id}", actor.kind.as_str()),
                None => actor.kind.as_str().to_owned(),
            }),
            raised_at: self.clock.now(),
            acknowledged_at: None,
        };
        let draft = AuditDraft::new(
            actor.clone(),
            AuditAction::SecurityCanaryTripped,
            Outcome::Denied,
            meta,
        )
        .resource(record.id.resource())
        .detail("owner", record.owner.to_string())
        .detail("purpose", purpose.describe())
        .detail("alert", alert.id.to_string());
        self.alerts
            .raise(alert, draft)
            .await
            .map_err(store_or_audit)
    }

    /// Decrypts the key, asks its exchange what it may do and records the result. A key that
    /// gained withdrawal permission (or lost what its scope needs) is suspended.
    pub async fn check_key(
        &self,
        actor: Actor,
        owner: UserId,
        id: KeyId,
        purpose: KeyPurpose,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        let (mut record, credentials) = self
            .use_key(actor.clone(), owner, id, purpose, meta.clone())
            .await?;
        let permissions = self
            .permissions(record.exchange, record.environment, &credentials)
            .await;
        drop(credentials);
        let (status, reason) = match &permissions {
            Ok(p) => match PermissionProblem::of(record.scope, p) {
                Some(problem) => (KeyStatus::Suspended, Some(problem.to_string())),
                None => (KeyStatus::Active, None),
            },
            Err(KeyVaultError::ExchangeRejected(why)) => (
                KeyStatus::Suspended,
                Some(format!("The exchange no longer accepts this key: {why}")),
            ),
            Err(_) => return permissions.map(|_| record),
        };
        let permissions = permissions.unwrap_or_default();
        // The check is stamped with its use's instant, as a decoy's re-check is: a gap of an
        // exchange round trip between the two would tell a real key from a decoy.
        let now = record.last_used_at.unwrap_or_else(|| self.clock.now());
        let outcome = if status == KeyStatus::Active {
            Outcome::Success
        } else {
            Outcome::Denied
        };
        let mut draft = AuditDraft::new(actor, AuditAction::VaultKeyChecked, outcome, meta)
            .resource(id.resource())
            .detail("status", status.as_str())
            .detail("can_trade", permissions.can_trade)
            .detail("can_withdraw", permissions.can_withdraw)
            .detail("ip_restricted", permissions.ip_restricted);
        if let Some(reason) = &reason {
            draft = draft.detail("reason", reason.clone());
        }
        self.keys
            .record_check(id, permissions, status, reason.clone(), now, draft)
            .await
            .map_err(store_or_audit)?;
        record.permissions = permissions;
        record.status = status;
        record.status_reason = reason;
        record.last_checked_at = Some(now);
        Ok(record)
    }

    /// Deletes the key's ciphertext (crypto-shredding: the wrapped data key goes with it).
    /// Refused while an order on the key may be at the exchange (being sent, resting, or held
    /// again after a send whose outcome is unknown): after it, nothing could cancel it there,
    /// not even a kill switch.
    /// Revoking a decoy looks the same to its owner and raises the alert using it would: the
    /// alert first, so if it cannot be raised, nothing is revoked.
    pub async fn revoke(
        &self,
        owner: UserId,
        id: KeyId,
        meta: RequestMeta,
    ) -> Result<KeyRecord, KeyVaultError> {
        let stored = self
            .keys
            .find(owner, id)
            .await?
            .ok_or(KeyVaultError::NotFound)?;
        if stored.canary {
            self.trip_canary(
                &Actor::user(owner),
                &stored.record,
                &KeyPurpose::Revocation,
                meta.clone(),
            )
            .await?;
        }
        let draft = AuditDraft::new(
            Actor::user(owner),
            AuditAction::VaultKeyRevoked,
            Outcome::Success,
            meta,
        )
        .resource(id.resource())
        .detail("owner", owner.to_string());
        match self.keys.revoke(owner, id, self.clock.now(), draft).await {
            Err(StoreError::Conflict) => Err(KeyVaultError::HasLiveOrders),
            other => other.map_err(store_or_audit),
        }
    }
}

/// A write that carries an audit event commits both or neither, so a backend failure means the
/// change was not recorded (and did not happen).
pub(super) fn store_or_audit(err: StoreError) -> KeyVaultError {
    match err {
        StoreError::NotFound => KeyVaultError::NotFound,
        StoreError::Conflict => KeyVaultError::Store(StoreError::Conflict),
        StoreError::Backend(_) | StoreError::Unavailable(_) => KeyVaultError::AuditUnavailable,
    }
}
