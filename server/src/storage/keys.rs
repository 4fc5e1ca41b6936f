//! Exchange key records and security alerts in the database.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use domain::account::UserId;
use domain::alerts::{SecurityAlert, SecurityAlerts};
use domain::audit::{AuditDraft, canonical_time, parse_canonical_time};
use domain::exchange::{ExchangeName, KeyEnvironment, KeyPermissions};
use domain::keys::{KeyId, KeyRecord, KeyScope, KeyStatus, KeyStore, StoredKey};
use domain::ports::{Clock, StoreError};
use domain::trading::OrderStatus;
use domain::vault::{SealedSecret, WrappedKey};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::AuditChain;
use super::entities::{exchange_key, order, security_alert, vault_canary};
use super::{DbResult, converted};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct SqlKeyStore {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
}

impl SqlKeyStore {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            chain,
            clock,
        }
    }
}

fn corrupt(row: &exchange_key::Model, what: &str) -> StoreError {
    StoreError::Backend(format!("exchange key {} has an invalid {what}", row.id))
}

fn to_record(row: &exchange_key::Model) -> DbResult<KeyRecord> {
    let time = |raw: &Option<String>, what: &str| -> Result<Option<OffsetDateTime>, StoreError> {
        raw.as_deref()
            .map(|t| parse_canonical_time(t).ok_or_else(|| corrupt(row, what)))
            .transpose()
    };
    Ok(KeyRecord {
        id: KeyId::parse(&row.id).ok_or_else(|| corrupt(row, "id"))?,
        owner: UserId(Uuid::parse_str(&row.owner_id).map_err(|_| corrupt(row, "owner"))?),
        exchange: ExchangeName::parse(&row.exchange).map_err(|_| corrupt(row, "exchange"))?,
        environment: KeyEnvironment::parse(&row.environment)
            .map_err(|_| corrupt(row, "environment"))?,
        scope: KeyScope::parse(&row.scope).map_err(|_| corrupt(row, "scope"))?,
        label: row.label.clone(),
        mask: row.mask.clone(),
        status: KeyStatus::parse(&row.status).map_err(|_| corrupt(row, "status"))?,
        status_reason: row.status_reason.clone(),
        permissions: serde_json::from_str(&row.permissions)
            .map_err(|_| corrupt(row, "permissions"))?,
        kms_key_id: row.kms_key_id.clone(),
        created_at: parse_canonical_time(&row.created_at)
            .ok_or_else(|| corrupt(row, "created_at"))?,
        last_used_at: time(&row.last_used_at, "last_used_at")?,
        last_checked_at: time(&row.last_checked_at, "last_checked_at")?,
        revoked_at: time(&row.revoked_at, "revoked_at")?,
    })
}

fn to_sealed(row: &exchange_key::Model) -> DbResult<Option<SealedSecret>> {
    let (Some(kms_key_id), Some(wrapped), Some(nonce), Some(ciphertext)) = (
        &row.kms_key_id,
        &row.wrapped_key,
        &row.nonce,
        &row.ciphertext,
    ) else {
        return Ok(None);
    };
    let decode = |text: &str, what: &str| B64.decode(text).map_err(|_| corrupt(row, what));
    let nonce: [u8; 12] = decode(nonce, "nonce")?
        .try_into()
        .map_err(|_| corrupt(row, "nonce"))?;
    Ok(Some(SealedSecret {
        wrapped_key: WrappedKey {
            kms_key_id: kms_key_id.clone(),
            blob: decode(wrapped, "wrapped key")?,
        },
        nonce,
        ciphertext: decode(ciphertext, "ciphertext")?,
    }))
}

fn permissions_json(permissions: &KeyPermissions) -> String {
    serde_json::to_string(permissions).unwrap_or_else(|_| "{}".into())
}

/// On SQLite, copies the write-ahead log into the database file and empties it, so that the
/// page versions it still holds (a revoked key's ciphertext among them) are gone from the disk
/// too. Best effort: while a reader holds an older snapshot (a long report) the log stays until
/// a later checkpoint. Writers wait while it is pending, so it waits for readers only briefly.
async fn forget_old_pages(db: &DatabaseConnection) {
    if db.get_database_backend() == sea_orm::DbBackend::Sqlite
        && let Err(e) = db
            .execute_unprepared(
                "PRAGMA busy_timeout = 250; PRAGMA wal_checkpoint(TRUNCATE); \
                 PRAGMA busy_timeout = 5000;",
            )
            .await
    {
        tracing::warn!(error = %e, "the write-ahead log could not be emptied after a revocation");
    }
}

#[async_trait]
impl KeyStore for SqlKeyStore {
    async fn insert(
        &self,
        record: &KeyRecord,
        sealed: &SealedSecret,
        canary: bool,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let row = exchange_key::ActiveModel {
                id: Set(record.id.to_string()),
                owner_id: Set(record.owner.to_string()),
                exchange: Set(record.exchange.as_str().to_owned()),
                environment: Set(record.environment.as_str().to_owned()),
                scope: Set(record.scope.as_str().to_owned()),
                label: Set(record.label.clone()),
                mask: Set(record.mask.clone()),
                status: Set(record.status.as_str().to_owned()),
                status_reason: Set(record.status_reason.clone()),
                permissions: Set(permissions_json(&record.permissions)),
                kms_key_id: Set(Some(sealed.wrapped_key.kms_key_id.clone())),
                wrapped_key: Set(Some(B64.encode(&sealed.wrapped_key.blob))),
                nonce: Set(Some(B64.encode(sealed.nonce))),
                ciphertext: Set(Some(B64.encode(&sealed.ciphertext))),
                created_at: Set(canonical_time(record.created_at)),
                last_used_at: Set(record.last_used_at.map(canonical_time)),
                last_checked_at: Set(record.last_checked_at.map(canonical_time)),
                revoked_at: Set(None),
            };
            let txn = self.chain.begin().await?;
            exchange_key::Entity::insert(row)
                .exec_without_returning(txn.conn())
                .await?;
            if canary {
                vault_canary::Entity::insert(vault_canary::ActiveModel {
                    key_id: Set(record.id.to_string()),
                    planted_at: Set(canonical_time(record.created_at)),
                })
                .exec_without_returning(txn.conn())
                .await?;
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn list(&self, owner: UserId) -> Result<Vec<KeyRecord>, StoreError> {
        converted(async {
            let rows = exchange_key::Entity::find()
                .filter(exchange_key::Column::OwnerId.eq(owner.to_string()))
                .order_by_desc(exchange_key::Column::CreatedAt)
                .all(&self.db)
                .await?;
            rows.iter().map(to_record).collect()
        })
        .await
    }

    async fn find(&self, owner: UserId, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        converted(async {
            let Some(row) = exchange_key::Entity::find_by_id(id.to_string())
                .filter(exchange_key::Column::OwnerId.eq(owner.to_string()))
                .one(&self.db)
                .await?
            else {
                return Ok(None);
            };
            let canary = vault_canary::Entity::find_by_id(id.to_string())
                .one(&self.db)
                .await?
                .is_some();
            Ok(Some(StoredKey {
                record: to_record(&row)?,
                sealed: to_sealed(&row)?,
                canary,
            }))
        })
        .await
    }

    async fn record_use(
        &self,
        id: KeyId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = exchange_key::Entity::update_many()
                .set(exchange_key::ActiveModel {
                    last_used_at: Set(Some(canonical_time(at))),
                    ..Default::default()
                })
                .filter(exchange_key::Column::Id.eq(id.to_string()))
                .filter(exchange_key::Column::Ciphertext.is_not_null())
                .exec(txn.conn())
                .await?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn record_check(
        &self,
        id: KeyId,
        permissions: KeyPermissions,
        status: KeyStatus,
        reason: Option<String>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = exchange_key::Entity::update_many()
                .set(exchange_key::ActiveModel {
                    permissions: Set(permissions_json(&permissions)),
                    status: Set(status.as_str().to_owned()),
                    status_reason: Set(reason),
                    last_checked_at: Set(Some(canonical_time(at))),
                    ..Default::default()
                })
                .filter(exchange_key::Column::Id.eq(id.to_string()))
                .filter(exchange_key::Column::Status.ne(KeyStatus::Revoked.as_str()))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn replace_wrapped_key(
        &self,
        id: KeyId,
        old: &WrappedKey,
        new: &WrappedKey,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = exchange_key::Entity::update_many()
                .set(exchange_key::ActiveModel {
                    kms_key_id: Set(Some(new.kms_key_id.clone())),
                    wrapped_key: Set(Some(B64.encode(&new.blob))),
                    ..Default::default()
                })
                .filter(exchange_key::Column::Id.eq(id.to_string()))
                .filter(exchange_key::Column::KmsKeyId.eq(old.kms_key_id.clone()))
                .filter(exchange_key::Column::WrappedKey.eq(B64.encode(&old.blob)))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected == 0 {
                // Dropping the transaction rolls it back: no receipt for a swap that did not happen.
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn revoke(
        &self,
        owner: UserId,
        id: KeyId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let row = exchange_key::Entity::find_by_id(id.to_string())
                .filter(exchange_key::Column::OwnerId.eq(owner.to_string()))
                .one(txn.conn())
                .await?
                .ok_or(StoreError::NotFound)?;
            if row.status == KeyStatus::Revoked.as_str() {
                return to_record(&row);
            }
            let mut active: exchange_key::ActiveModel = row.clone().into();
            active.status = Set(KeyStatus::Revoked.as_str().to_owned());
            active.status_reason = Set(Some("Revoked by its owner.".into()));
            active.kms_key_id = Set(None);
            active.wrapped_key = Set(None);
            active.nonce = Set(None);
            active.ciphertext = Set(None);
            active.revoked_at = Set(Some(canonical_time(at)));
            let updated = exchange_key::Entity::update(active)
                .exec(txn.conn())
                .await?;
            // Orders the exchange may have: being sent, resting, or held again after a send
            // whose outcome is unknown. Audited writes are serialised by the audit chain's
            // lock, and a sender claims its order (an audited write) before it uses the key,
            // which needs the ciphertext: so either that claim is seen here, or the key can no
            // longer be used.
            let may_be_at_the_exchange = Condition::any()
                .add(
                    order::Column::Status
                        .is_in([OrderStatus::Submitting.as_str(), OrderStatus::Open.as_str()]),
                )
                .add(
                    Condition::all()
                        .add(order::Column::Status.eq(OrderStatus::Held.as_str()))
                        .add(
                            Condition::any()
                                .add(order::Column::Attempts.gt(0))
                                .add(order::Column::ExchangeOrderId.is_not_null()),
                        ),
                );
            let live_orders = order::Entity::find()
                .filter(order::Column::KeyId.eq(id.to_string()))
                .filter(may_be_at_the_exchange)
                .count(txn.conn())
                .await?;
            if live_orders > 0 {
                return Err(StoreError::Conflict.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            forget_old_pages(&self.db).await;
            to_record(&updated)
        })
        .await
    }

    async fn sealed_keys(&self, owner: Option<UserId>) -> Result<Vec<(UserId, KeyId)>, StoreError> {
        converted(async {
            let mut query = exchange_key::Entity::find()
                .select_only()
                .column(exchange_key::Column::OwnerId)
                .column(exchange_key::Column::Id)
                .filter(exchange_key::Column::Ciphertext.is_not_null())
                .order_by_asc(exchange_key::Column::CreatedAt);
            if let Some(owner) = owner {
                query = query.filter(exchange_key::Column::OwnerId.eq(owner.to_string()));
            }
            let rows: Vec<(String, String)> = query.into_tuple().all(&self.db).await?;
            let parse = |(owner, id): (String, String)| -> DbResult<(UserId, KeyId)> {
                let parsed = Uuid::parse_str(&owner).ok().zip(KeyId::parse(&id));
                let malformed = || StoreError::Backend(format!("exchange key {id} is malformed"));
                Ok(parsed
                    .map(|(owner, id)| (UserId(owner), id))
                    .ok_or_else(malformed)?)
            };
            rows.into_iter().map(parse).collect()
        })
        .await
    }

    async fn canaries(&self) -> Result<Vec<KeyRecord>, StoreError> {
        converted(async {
            let ids: Vec<String> = vault_canary::Entity::find()
                .all(&self.db)
                .await?
                .into_iter()
                .map(|c| c.key_id)
                .collect();
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let rows = exchange_key::Entity::find()
                .filter(exchange_key::Column::Id.is_in(ids))
                .order_by_desc(exchange_key::Column::CreatedAt)
                .all(&self.db)
                .await?;
            rows.iter().map(to_record).collect()
        })
        .await
    }
}

#[derive(Debug, Clone)]
pub struct SqlSecurityAlerts {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl SqlSecurityAlerts {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            chain,
            clock,
            metrics,
        }
    }
}

fn to_alert(row: security_alert::Model) -> DbResult<SecurityAlert> {
    let corrupt = || StoreError::Backend(format!("security alert {} is malformed", row.id));
    Ok(SecurityAlert {
        id: Uuid::parse_str(&row.id).map_err(|_| corrupt())?,
        raised_at: parse_canonical_time(&row.raised_at).ok_or_else(corrupt)?,
        acknowledged_at: match &row.acknowledged_at {
            Some(at) => Some(parse_canonical_time(at).ok_or_else(corrupt)?),
            None => None,
        },
        kind: row.kind,
        message: row.message,
        resource: row.resource,
        actor: row.actor,
    })
}

#[async_trait]
impl SecurityAlerts for SqlSecurityAlerts {
    async fn raise(&self, alert: SecurityAlert, audit: AuditDraft) -> Result<(), StoreError> {
        converted(async {
            // Counted before the write: a tripwire that fires must show even if storage is down.
            self.metrics.security_event(&alert.kind);
            tracing::warn!(kind = %alert.kind, alert = %alert.id, resource = ?alert.resource, "security alert");
            let txn = self.chain.begin().await?;
            security_alert::Entity::insert(security_alert::ActiveModel {
                id: Set(alert.id.to_string()),
                kind: Set(alert.kind),
                message: Set(alert.message),
                resource: Set(alert.resource),
                actor: Set(alert.actor),
                raised_at: Set(canonical_time(alert.raised_at)),
                acknowledged_at: Set(None),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now())
                .await?;
            Ok(())
        })
        .await
    }

    async fn recent(&self, limit: u64) -> Result<Vec<SecurityAlert>, StoreError> {
        converted(async {
            security_alert::Entity::find()
                .order_by_desc(security_alert::Column::RaisedAt)
                .limit(limit)
                .all(&self.db)
                .await?
                .into_iter()
                .map(to_alert)
                .collect()
        })
        .await
    }

    async fn acknowledge(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = security_alert::Entity::update_many()
                .set(security_alert::ActiveModel {
                    acknowledged_at: Set(Some(canonical_time(at))),
                    ..Default::default()
                })
                .filter(security_alert::Column::Id.eq(id.to_string()))
                .filter(security_alert::Column::AcknowledgedAt.is_null())
                .exec(txn.conn())
                .await?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound.into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }
}
