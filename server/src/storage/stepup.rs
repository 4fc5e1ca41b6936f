//! Second factors and order approvals in the database.
//!
//! Every write runs in an [`AuditedTxn`]: the chain lock it takes first serialises the writes,
//! and the conditional updates below re-check their condition after it, so of two concurrent
//! requests for the same step, code or approval exactly one matches a row. A write whose
//! condition fails returns before `commit_with`, and dropping the transaction rolls it back, so
//! nothing (not even the audit event) lands.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use domain::account::UserId;
use domain::audit::{AuditDraft, canonical_time, parse_canonical_time};
use domain::ports::{Clock, StoreError};
use domain::stepup::{
    FactorStore, OrderApproval, SecurityKey, TotpAttempt, TotpFactor, TotpLockout, UsableFactors,
};
use domain::vault::{SealedSecret, WrappedKey};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query, SelectStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::AuditChain;
use super::entities::{order_approval, recovery_code, security_key, totp_factor};
use super::sessions::{end_sessions_in, revoke_agent_tokens_in};
use super::{DbResult, converted, from_micros, micros};

#[derive(Debug, Clone)]
pub struct SqlFactorStore {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
}

impl SqlFactorStore {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            chain,
            clock,
        }
    }
}

fn corrupt(table: &str, id: &str, what: &str) -> StoreError {
    StoreError::Backend(format!("{table} row {id} has an invalid {what}"))
}

fn optional_time(
    raw: &Option<String>,
    table: &str,
    id: &str,
    what: &str,
) -> Result<Option<OffsetDateTime>, StoreError> {
    raw.as_deref()
        .map(|t| parse_canonical_time(t).ok_or_else(|| corrupt(table, id, what)))
        .transpose()
}

/// Steps are `u64` in the domain and BIGINT in the schema; a step is `unix seconds / 30`, so
/// any real one fits, and one that does not is refused rather than wrapped.
fn step_column(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step)
        .map_err(|_| StoreError::Backend(format!("TOTP step {step} is out of range")))
}

fn to_totp(row: &totp_factor::Model) -> DbResult<TotpFactor> {
    let bad = |what: &str| corrupt("totp_factors", &row.user_id, what);
    let decode = |text: &str, what: &str| B64.decode(text).map_err(|_| bad(what));
    let nonce: [u8; 12] = decode(&row.nonce, "nonce")?
        .try_into()
        .map_err(|_| bad("nonce"))?;
    Ok(TotpFactor {
        user: UserId(Uuid::parse_str(&row.user_id).map_err(|_| bad("user id"))?),
        sealed: SealedSecret {
            wrapped_key: WrappedKey {
                kms_key_id: row.kms_key_id.clone(),
                blob: decode(&row.wrapped_key, "wrapped key")?,
            },
            nonce,
            ciphertext: decode(&row.ciphertext, "ciphertext")?,
        },
        confirmed: row.confirmed_at.is_some(),
        last_step: row
            .last_step
            .map(|s| u64::try_from(s).map_err(|_| bad("last step")))
            .transpose()?,
        failures: u32::try_from(row.failures).map_err(|_| bad("failure count"))?,
        // The number is what the reservation compares, so it is what counts.
        locked_until: row
            .locked_until_us
            .map(|us| from_micros(us).ok_or_else(|| bad("locked_until_us")))
            .transpose()?,
        created_at: parse_canonical_time(&row.created_at).ok_or_else(|| bad("created_at"))?,
    })
}

fn to_security_key(row: &security_key::Model) -> DbResult<SecurityKey> {
    let bad = |what: &str| corrupt("security_keys", &row.id, what);
    Ok(SecurityKey {
        id: Uuid::parse_str(&row.id).map_err(|_| bad("id"))?,
        user: UserId(Uuid::parse_str(&row.user_id).map_err(|_| bad("user id"))?),
        name: row.name.clone(),
        credential_id: row.credential_id.clone(),
        credential: row.credential.clone(),
        created_at: parse_canonical_time(&row.created_at).ok_or_else(|| bad("created_at"))?,
        last_used_at: optional_time(&row.last_used_at, "security_keys", &row.id, "last_used_at")?,
        flagged_at: optional_time(&row.flagged_at, "security_keys", &row.id, "flagged_at")?,
        last_challenge: row.last_challenge.clone(),
    })
}

/// Replaces the user's recovery codes with `hashes`, inside `txn`.
async fn put_recovery_codes(
    txn: &DatabaseTransaction,
    user: UserId,
    hashes: &[String],
    at: OffsetDateTime,
) -> DbResult<()> {
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user.to_string()))
        .exec(txn)
        .await?;
    if hashes.is_empty() {
        return Ok(());
    }
    let rows = hashes.iter().map(|hash| recovery_code::ActiveModel {
        id: Set(Uuid::new_v4().to_string()),
        user_id: Set(user.to_string()),
        code_hash: Set(hash.clone()),
        created_at: Set(canonical_time(at)),
        used_at: Set(None),
    });
    recovery_code::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

#[async_trait]
impl FactorStore for SqlFactorStore {
    async fn totp(&self, user: UserId) -> Result<Option<TotpFactor>, StoreError> {
        converted(async {
            totp_factor::Entity::find_by_id(user.to_string())
                .one(&self.db)
                .await?
                .as_ref()
                .map(to_totp)
                .transpose()
        })
        .await
    }

    async fn save_pending_totp(
        &self,
        factor: &TotpFactor,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // Only an unconfirmed row is replaced. A confirmed one survives the delete, so the
            // insert hits the primary key and fails as `Conflict`, rolling everything back.
            totp_factor::Entity::delete_many()
                .filter(totp_factor::Column::UserId.eq(factor.user.to_string()))
                .filter(totp_factor::Column::ConfirmedAt.is_null())
                .exec(txn.conn())
                .await?;
            totp_factor::Entity::insert(totp_factor::ActiveModel {
                user_id: Set(factor.user.to_string()),
                kms_key_id: Set(factor.sealed.wrapped_key.kms_key_id.clone()),
                wrapped_key: Set(B64.encode(&factor.sealed.wrapped_key.blob)),
                nonce: Set(B64.encode(factor.sealed.nonce)),
                ciphertext: Set(B64.encode(&factor.sealed.ciphertext)),
                // Pending by definition: confirmation sets this and the first step.
                confirmed_at: Set(None),
                last_step: Set(None),
                failures: Set(0),
                locked_until: Set(None),
                created_at: Set(canonical_time(factor.created_at)),
                locked_until_us: Set(None),
                failures_since_us: Set(None),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn confirm_totp(
        &self,
        user: UserId,
        step: u64,
        at: OffsetDateTime,
        recovery_hashes: &[String],
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let step = step_column(step)?;
            let txn = self.chain.begin().await?;
            let updated = totp_factor::Entity::update_many()
                .set(totp_factor::ActiveModel {
                    confirmed_at: Set(Some(canonical_time(at))),
                    last_step: Set(Some(step)),
                    failures: Set(0),
                    locked_until: Set(None),
                    locked_until_us: Set(None),
                    failures_since_us: Set(None),
                    ..Default::default()
                })
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .filter(totp_factor::Column::ConfirmedAt.is_null())
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                // Already confirmed (a concurrent request won) or no enrolment: write nothing.
                return Ok(false);
            }
            put_recovery_codes(txn.conn(), user, recovery_hashes, at).await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn reserve_enrolment_attempt(
        &self,
        user: UserId,
        max_attempts: u32,
    ) -> Result<bool, StoreError> {
        converted(async {
            // The gate is the WHERE clause, so concurrent guesses cannot share an attempt.
            let reserved = totp_factor::Entity::update_many()
                .col_expr(
                    totp_factor::Column::Failures,
                    Expr::col(totp_factor::Column::Failures).add(1),
                )
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .filter(totp_factor::Column::ConfirmedAt.is_null())
                .filter(
                    totp_factor::Column::Failures
                        .lt(i32::try_from(max_attempts).unwrap_or(i32::MAX)),
                )
                .exec(&self.db)
                .await?;
            Ok(reserved.rows_affected == 1)
        })
        .await
    }

    async fn reserve_totp_attempt(
        &self,
        user: UserId,
        now: OffsetDateTime,
        lockout: TotpLockout,
    ) -> Result<TotpAttempt, StoreError> {
        converted(async {
            let now_us = micros(now);
            // No audit event of its own: the attempt's outcome (failed, replayed, succeeded) is
            // audited next. If that never happens, the attempt stays counted: fail-safe.
            let txn = self.db.begin().await?;
            // The gate is this WHERE clause, not a read in Rust: of any number of concurrent
            // attempts, only those that find the app unlocked are counted and checked. The UPDATE
            // holds the row (PostgreSQL) or the database (SQLite) until commit, so the lock set
            // below is what the next attempt's WHERE sees.
            let reserved = totp_factor::Entity::update_many()
                .col_expr(
                    totp_factor::Column::Failures,
                    Expr::col(totp_factor::Column::Failures).add(1),
                )
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .filter(totp_factor::Column::ConfirmedAt.is_not_null())
                .filter(
                    Condition::any()
                        .add(totp_factor::Column::LockedUntilUs.is_null())
                        .add(totp_factor::Column::LockedUntilUs.lte(now_us)),
                )
                .exec(&txn)
                .await?;
            let row = totp_factor::Entity::find_by_id(user.to_string())
                .one(&txn)
                .await?;
            if reserved.rows_affected != 1 {
                // Dropping the transaction rolls back (nothing was written).
                return Ok(match row {
                    Some(row) if row.confirmed_at.is_some() => {
                        let until = row.locked_until_us.and_then(from_micros).unwrap_or(now);
                        TotpAttempt::Locked(until)
                    }
                    _ => TotpAttempt::NoFactor,
                });
            }
            let row = row.ok_or(StoreError::NotFound)?;
            let counted = u32::try_from(row.failures)
                .map_err(|_| corrupt("totp_factors", &row.user_id, "failure count"))?;
            let forget_us =
                i64::try_from(TotpLockout::FAILURES_FORGOTTEN_AFTER.whole_microseconds())
                    .unwrap_or(i64::MAX);
            // A count starts with its first attempt, and is forgotten a day after it began.
            let (failures, since_us) = match row.failures_since_us {
                Some(since) if counted > 1 && now_us.saturating_sub(since) < forget_us => {
                    (counted, since)
                }
                _ => (1, now_us),
            };
            let until = lockout.locked_until(failures, now);
            totp_factor::Entity::update_many()
                .set(totp_factor::ActiveModel {
                    failures: Set(i32::try_from(failures).unwrap_or(i32::MAX)),
                    failures_since_us: Set(Some(since_us)),
                    locked_until: Set(until.map(canonical_time)),
                    locked_until_us: Set(until.map(micros)),
                    ..Default::default()
                })
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            Ok(TotpAttempt::Reserved { failures })
        })
        .await
    }

    async fn accept_totp_step(
        &self,
        user: UserId,
        step: u64,
        lockout: TotpLockout,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let step = step_column(step)?;
            let txn = self.chain.begin().await?;
            // The replay check is this WHERE clause, not a read in Rust: a step is accepted once.
            let updated = totp_factor::Entity::update_many()
                .set(totp_factor::ActiveModel {
                    last_step: Set(Some(step)),
                    ..Default::default()
                })
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .filter(totp_factor::Column::ConfirmedAt.is_not_null())
                .filter(
                    Condition::any()
                        .add(totp_factor::Column::LastStep.is_null())
                        .add(totp_factor::Column::LastStep.lt(step)),
                )
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                return Ok(false);
            }
            // The row is held by the UPDATE above, so this read and write cannot interleave with
            // a reservation. Only this attempt's own count is taken back; wrong codes stay.
            let row = totp_factor::Entity::find_by_id(user.to_string())
                .one(txn.conn())
                .await?
                .ok_or(StoreError::NotFound)?;
            let failures = u32::try_from(row.failures)
                .map_err(|_| corrupt("totp_factors", &row.user_id, "failure count"))?
                .saturating_sub(1);
            let mut refund = totp_factor::ActiveModel {
                failures: Set(i32::try_from(failures).unwrap_or(i32::MAX)),
                ..Default::default()
            };
            if lockout.backoff.wait_after(failures).is_zero() {
                // The lock came from this attempt's own reservation: it goes with it.
                refund.locked_until = Set(None);
                refund.locked_until_us = Set(None);
            }
            totp_factor::Entity::update_many()
                .set(refund)
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .exec(txn.conn())
                .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn remove_totp(&self, user: UserId, audit: AuditDraft) -> Result<bool, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let deleted = totp_factor::Entity::delete_many()
                .filter(totp_factor::Column::UserId.eq(user.to_string()))
                .exec(txn.conn())
                .await?;
            if deleted.rows_affected == 0 {
                return Ok(false);
            }
            // Recovery codes stand in for the app, so they go with it.
            put_recovery_codes(txn.conn(), user, &[], self.clock.now()).await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn recovery_codes_left(&self, user: UserId) -> Result<u32, StoreError> {
        converted(async {
            let left = recovery_code::Entity::find()
                .filter(recovery_code::Column::UserId.eq(user.to_string()))
                .filter(recovery_code::Column::UsedAt.is_null())
                .count(&self.db)
                .await?;
            Ok(u32::try_from(left).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        user: UserId,
        hashes: &[String],
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            put_recovery_codes(txn.conn(), user, hashes, at).await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user: UserId,
        hash: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = recovery_code::Entity::update_many()
                .set(recovery_code::ActiveModel {
                    used_at: Set(Some(canonical_time(at))),
                    ..Default::default()
                })
                .filter(recovery_code::Column::UserId.eq(user.to_string()))
                .filter(recovery_code::Column::CodeHash.eq(hash))
                .filter(recovery_code::Column::UsedAt.is_null())
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn usable_factors(&self, user: UserId) -> Result<UsableFactors, StoreError> {
        converted(async {
            let user = user.to_string();
            let exists =
                |query: &mut SelectStatement| Expr::exists(query.expr(Expr::val(1)).take());
            let query = Query::select()
                .expr_as(
                    exists(
                        Query::select()
                            .from(totp_factor::Entity)
                            .and_where(totp_factor::Column::UserId.eq(user.as_str()))
                            .and_where(totp_factor::Column::ConfirmedAt.is_not_null()),
                    ),
                    "totp",
                )
                .expr_as(
                    exists(
                        Query::select()
                            .from(security_key::Entity)
                            .and_where(security_key::Column::UserId.eq(user.as_str()))
                            .and_where(security_key::Column::FlaggedAt.is_null()),
                    ),
                    "security_key",
                )
                .take();
            let row = self
                .db
                .query_one(&query)
                .await?
                .ok_or_else(|| StoreError::Backend("SELECT EXISTS returned no row".into()))?;
            let (totp, security_key) = row.try_get_many_by_index()?;
            Ok(UsableFactors { totp, security_key })
        })
        .await
    }

    async fn security_keys(&self, user: UserId) -> Result<Vec<SecurityKey>, StoreError> {
        converted(async {
            let rows = security_key::Entity::find()
                .filter(security_key::Column::UserId.eq(user.to_string()))
                .order_by_asc(security_key::Column::CreatedAt)
                .all(&self.db)
                .await?;
            let mut keys = rows
                .iter()
                .map(to_security_key)
                .collect::<Result<Vec<_>, _>>()?;
            // Canonical times are not fixed-width (".5Z" sorts before "Z"), so keys made within
            // the same second can come back out of order as text; sort on the parsed times.
            keys.sort_by_key(|k| k.created_at);
            Ok(keys)
        })
        .await
    }

    async fn credential_registered(&self, credential_id: &str) -> Result<bool, StoreError> {
        converted(async {
            let found = security_key::Entity::find()
                .filter(security_key::Column::CredentialId.eq(credential_id))
                .count(&self.db)
                .await?;
            Ok(found > 0)
        })
        .await
    }

    async fn insert_security_key(
        &self,
        key: &SecurityKey,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // A credential id registered anywhere already fails the UNIQUE constraint: `Conflict`.
            security_key::Entity::insert(security_key::ActiveModel {
                id: Set(key.id.to_string()),
                user_id: Set(key.user.to_string()),
                name: Set(key.name.clone()),
                credential_id: Set(key.credential_id.clone()),
                credential: Set(key.credential.clone()),
                created_at: Set(canonical_time(key.created_at)),
                last_used_at: Set(key.last_used_at.map(canonical_time)),
                flagged_at: Set(key.flagged_at.map(canonical_time)),
                last_challenge: Set(key.last_challenge.clone()),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

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
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // A key flagged meanwhile (counter regression) must not have its counter moved on,
            // nor one used meanwhile moved back (compare and set on the stored credential and
            // on the challenge last answered, which changes even when the counter stays 0).
            let same_challenge = match previous_challenge {
                Some(previous) => security_key::Column::LastChallenge.eq(previous),
                None => security_key::Column::LastChallenge.is_null(),
            };
            let updated = security_key::Entity::update_many()
                .set(security_key::ActiveModel {
                    credential: Set(credential.to_owned()),
                    last_used_at: Set(Some(canonical_time(at))),
                    last_challenge: Set(Some(challenge.to_owned())),
                    ..Default::default()
                })
                .filter(security_key::Column::Id.eq(id.to_string()))
                .filter(security_key::Column::UserId.eq(user.to_string()))
                .filter(security_key::Column::FlaggedAt.is_null())
                .filter(security_key::Column::Credential.eq(previous))
                .filter(same_challenge)
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                // Read in this transaction: a write of the same challenge that is not yet
                // visible outside it (the audit chain commits writes in groups) counts too.
                let answered = security_key::Entity::find()
                    .filter(security_key::Column::Id.eq(id.to_string()))
                    .filter(security_key::Column::UserId.eq(user.to_string()))
                    .filter(security_key::Column::LastChallenge.eq(challenge))
                    .count(txn.conn())
                    .await?;
                return Err(if answered > 0 {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                }
                .into());
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn flag_security_key(
        &self,
        user: UserId,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let mut txn = self.chain.begin().await?;
            // COALESCE keeps the first flag time; every detected regression is still audited.
            let updated = security_key::Entity::update_many()
                .col_expr(
                    security_key::Column::FlaggedAt,
                    Func::coalesce([
                        Expr::col(security_key::Column::FlaggedAt),
                        Expr::val(canonical_time(at)),
                    ])
                    .into(),
                )
                .filter(security_key::Column::Id.eq(id.to_string()))
                .filter(security_key::Column::UserId.eq(user.to_string()))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                return Err(StoreError::NotFound.into());
            }
            // A clone may have opened a privilege window already: every session of the user
            // ends with the key, and the owner signs in again. What such a window could leave
            // running after it (agent tokens, autonomous orders) ends too.
            let ended = end_sessions_in(&txn, user, at).await?;
            const REASON: &str = "a security key of the account looks cloned";
            let tokens = revoke_agent_tokens_in(&mut txn, user, &audit, REASON, at).await?;
            txn.commit_with(
                audit
                    .detail("sessions_ended", ended)
                    .detail("agents_revoked", tokens),
                self.clock.now(),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn remove_security_key(
        &self,
        user: UserId,
        id: Uuid,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let deleted = security_key::Entity::delete_many()
                .filter(security_key::Column::Id.eq(id.to_string()))
                .filter(security_key::Column::UserId.eq(user.to_string()))
                .exec(txn.conn())
                .await?;
            if deleted.rows_affected == 0 {
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn insert_order_approval(
        &self,
        approval: &OrderApproval,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            order_approval::Entity::insert(order_approval::ActiveModel {
                digest: Set(approval.digest.clone()),
                user_id: Set(approval.user.to_string()),
                method: Set(approval.method.as_str().to_owned()),
                approved_at: Set(canonical_time(approval.approved_at)),
                // Whole seconds, rounded down: an approval may end up to a second early, never late.
                expires_at: Set(approval.expires_at.unix_timestamp()),
                consumed_at: Set(None),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(())
        })
        .await
    }

    async fn consume_order_approval(
        &self,
        user: UserId,
        digest: &str,
        now: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // Spent once, by its own user, before it expires: all in the one conditional UPDATE.
            let updated = order_approval::Entity::update_many()
                .set(order_approval::ActiveModel {
                    consumed_at: Set(Some(canonical_time(now))),
                    ..Default::default()
                })
                .filter(order_approval::Column::Digest.eq(digest))
                .filter(order_approval::Column::UserId.eq(user.to_string()))
                .filter(order_approval::Column::ConsumedAt.is_null())
                .filter(order_approval::Column::ExpiresAt.gt(now.unix_timestamp()))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }
}
