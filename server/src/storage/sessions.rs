//! tower-sessions store over sea-orm. Rows are keyed by a SHA-256 of the session id and carry
//! the signed-in user's id, so "log out everywhere" can find and delete a user's sessions.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use app::api::context::{AUTHENTICATED_AT_KEY, USER_ID_KEY};
use async_trait::async_trait;
use domain::account::UserId;
use domain::audit::{AuditDraft, Outcome, canonical_time};
use domain::ports::{Clock, SessionRevoker, StoreError};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::audit::{AuditChain, AuditedTxn};
use super::entities::{agent_token, session, trusted_device, user, user_trading};
use super::{DbError, DbResult, converted};

/// A save that changes nothing but moves the expiry by less than this is skipped: the session
/// layer saves on every request, and a durable write per request (an fsync on SQLite) would
/// cost more than the request. The idle timeout is thereby kept to within this much.
const EXPIRY_SLACK_SECONDS: i64 = 60;
/// Bound on the remembered rows; past it the memory is simply cleared.
const MAX_REMEMBERED: usize = 100_000;

/// What this process last read or wrote for a session row: the digest of its data and its
/// expiry, so an unchanged save can be recognised without asking the database.
#[derive(Debug, Default)]
struct StoredRows(std::sync::Mutex<HashMap<String, ([u8; 32], i64)>>);

impl StoredRows {
    fn remember(&self, id_hash: &str, data: &str, expires_at: i64) {
        let mut rows = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if rows.len() >= MAX_REMEMBERED {
            rows.clear();
        }
        rows.insert(
            id_hash.to_owned(),
            (Sha256::digest(data).into(), expires_at),
        );
    }

    fn forget(&self, id_hash: &str) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id_hash);
    }

    /// Whether the row already holds `data` and an expiry close enough to `expires_at`.
    fn is_current(&self, id_hash: &str, data: &str, expires_at: i64) -> bool {
        let rows = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rows.get(id_hash).is_some_and(|(digest, stored_expiry)| {
            *stored_expiry >= expires_at - EXPIRY_SLACK_SECONDS
                && *digest == <[u8; 32]>::from(Sha256::digest(data))
        })
    }
}

#[derive(Debug, Clone)]
pub struct SqlSessionStore {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
    /// Each save pushes the row's expiry to now + this, measured on our clock (so it is
    /// testable); the session layer saves on every request.
    idle_timeout: time::Duration,
    stored: Arc<StoredRows>,
}

impl SqlSessionStore {
    pub fn new(
        chain: impl Into<AuditChain>,
        clock: Arc<dyn Clock>,
        idle_timeout: time::Duration,
    ) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            chain,
            clock,
            idle_timeout,
            stored: Arc::default(),
        }
    }

    fn expires_at(&self) -> i64 {
        (self.clock.now() + self.idle_timeout).unix_timestamp()
    }

    /// Removes expired rows; run periodically.
    pub async fn delete_expired(&self) -> DbResult<u64> {
        let now = self.clock.now().unix_timestamp();
        let txn = self.chain.begin().await?;
        let result = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lt(now))
            .exec(txn.conn())
            .await?;
        txn.commit_unaudited().await?;
        Ok(result.rows_affected)
    }

    /// The session's row, unless it has expired.
    async fn unexpired(&self, id: &Id) -> DbResult<Option<session::Model>> {
        let now = self.clock.now().unix_timestamp();
        Ok(session::Entity::find_by_id(id_hash(id))
            .filter(session::Column::ExpiresAt.gt(now))
            .one(&self.db)
            .await?)
    }
}

fn id_hash(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

/// The session data as JSON with its keys in order: the same data always gives the same text,
/// so an unchanged session is recognised (a `HashMap` iterates in a random order per map, and
/// half the saves of a two-key session were written again).
fn encode_data(record: &Record) -> session_store::Result<String> {
    let sorted: BTreeMap<&String, &serde_json::Value> = record.data.iter().collect();
    serde_json::to_string(&sorted).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn to_row(record: &Record, data: String, expires_at: i64) -> session::ActiveModel {
    let user_id = record
        .data
        .get(USER_ID_KEY)
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    session::ActiveModel {
        id_hash: Set(id_hash(&record.id)),
        user_id: Set(user_id),
        data: Set(data),
        expires_at: Set(expires_at),
    }
}

/// Whether a signed-in `record` may be stored under its new id: its sign-in is not older than
/// its user's last "sign out everywhere" or password change. A step-up cycles the session id
/// (a new row); one overlapping those would otherwise bring the ended session back. The check
/// writes the user's row (changing nothing), so it holds that row until the commit: a
/// concurrent revocation either comes first and is seen, or comes after and deletes this row.
async fn still_signed_in(txn: &AuditedTxn, record: &Record) -> DbResult<bool> {
    let Some(user_id) = record.data.get(USER_ID_KEY).and_then(|v| v.as_str()) else {
        return Ok(true);
    };
    let signed_in_at = record
        .data
        .get(AUTHENTICATED_AT_KEY)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(i64::MIN);
    let held = user::Entity::update_many()
        .col_expr(
            user::Column::SessionsRevokedAt,
            Expr::col(user::Column::SessionsRevokedAt),
        )
        .filter(user::Column::Id.eq(user_id))
        .filter(
            Condition::any()
                .add(user::Column::SessionsRevokedAt.is_null())
                .add(user::Column::SessionsRevokedAt.lte(signed_in_at)),
        )
        .exec(txn.conn())
        .await?;
    Ok(held.rows_affected == 1)
}

tokio::task_local! {
    /// The database outage a session-store call met while serving the current request.
    static OUTAGE: RefCell<Option<StoreError>>;
}

/// Runs `request` (the session layer and what it wraps) and returns its response with the
/// database outage a session load or save met meanwhile, if any. tower-sessions answers a
/// failed save with a bare 500 and keeps the error to itself; this is how the layer around it
/// learns that the cause was an outage. (The save runs in the request's own task.)
pub async fn watching_session_outages<R>(
    request: impl Future<Output = R>,
) -> (R, Option<StoreError>) {
    OUTAGE
        .scope(RefCell::new(None), async {
            let response = request.await;
            (response, OUTAGE.with(RefCell::take))
        })
        .await
}

impl From<DbError> for session_store::Error {
    fn from(err: DbError) -> Self {
        let err = StoreError::from(err);
        if matches!(err, StoreError::Unavailable(_)) {
            // Outside `watching_session_outages` (a background job) there is nobody to tell.
            let _ = OUTAGE.try_with(|outage| outage.replace(Some(err.clone())));
        }
        app::error::session_store_error(err)
    }
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh id on the (astronomically unlikely) collision, never an overwrite.
        loop {
            let (data, expires_at) = (encode_data(record)?, self.expires_at());
            let row = to_row(record, data.clone(), expires_at);
            // Session writes join the audit chain's write batch (see `commit_unaudited`).
            let txn = self.chain.begin().await?;
            if !still_signed_in(&txn, record).await? {
                txn.commit_unaudited().await?;
                return Ok(());
            }
            let inserted = session::Entity::insert(row)
                .exec_without_returning(txn.conn())
                .await;
            match inserted.map_err(DbError::from) {
                Ok(_) => {
                    txn.commit_unaudited().await?;
                    self.stored
                        .remember(&id_hash(&record.id), &data, expires_at);
                    return Ok(());
                }
                Err(err) if err.is_conflict() => record.id = Id::default(),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Updates an existing, unexpired row only. An insert here would let a request that was in
    /// flight during a logout (or "log out everywhere") write the deleted session back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (data, expires_at) = (encode_data(record)?, self.expires_at());
        let hash = id_hash(&record.id);
        if self.stored.is_current(&hash, &data, expires_at) {
            return Ok(());
        }
        let row = to_row(record, data.clone(), expires_at);
        let now = self.clock.now().unix_timestamp();
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = session::Entity::update_many()
                .set(session::ActiveModel {
                    user_id: row.user_id,
                    data: row.data,
                    expires_at: row.expires_at,
                    ..Default::default()
                })
                .filter(session::Column::IdHash.eq(hash.clone()))
                .filter(session::Column::ExpiresAt.gt(now))
                .exec(txn.conn())
                .await?;
            txn.commit_unaudited().await?;
            if updated.rows_affected == 1 {
                self.stored.remember(&hash, &data, expires_at);
            } else {
                self.stored.forget(&hash);
            }
            Ok(())
        })
        .await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(row) = self.unexpired(id).await? else {
            self.stored.forget(&id_hash(id));
            return Ok(None);
        };
        self.stored
            .remember(&row.id_hash, &row.data, row.expires_at);
        let data = serde_json::from_str(&row.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(row.expires_at)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.stored.forget(&id_hash(id));
        converted(async {
            let txn = self.chain.begin().await?;
            session::Entity::delete_by_id(id_hash(id))
                .exec(txn.conn())
                .await?;
            txn.commit_unaudited().await?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SessionRevoker for SqlSessionStore {
    async fn revoke_all(
        &self,
        user: UserId,
        agent_tokens: Option<&str>,
        audit: AuditDraft,
    ) -> Result<(u64, u64), StoreError> {
        let now = self.clock.now();
        converted(async {
            let mut txn = self.chain.begin().await?;
            let deleted = end_sessions_in(&txn, user, now).await?;
            let mut revoked = 0;
            if let Some(reason) = agent_tokens {
                revoked = revoke_agent_tokens_in(&mut txn, user, &audit, reason, now).await?;
            }
            txn.commit_with(
                audit
                    .detail("sessions_revoked", deleted)
                    .detail("agents_revoked", revoked),
                now,
            )
            .await?;
            Ok((deleted, revoked))
        })
        .await
    }
}

/// Ends every session of `user` in `txn`, and marks when: a session copied under a new id by a
/// request that overlapped this (a step-up) is then not stored (see `still_signed_in`).
/// Returns how many rows were deleted.
pub(super) async fn end_sessions_in(
    txn: &AuditedTxn,
    user: UserId,
    now: time::OffsetDateTime,
) -> DbResult<u64> {
    user::Entity::update_many()
        .set(user::ActiveModel {
            sessions_revoked_at: Set(Some(super::micros(now))),
            ..Default::default()
        })
        .filter(user::Column::Id.eq(user.to_string()))
        .exec(txn.conn())
        .await?;
    Ok(session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user.to_string()))
        .exec(txn.conn())
        .await?
        .rows_affected)
}

/// Forgets, in `txn`, every browser `user` signed in from but `keep` (a device token's hash):
/// each is a stranger again at its next sign-in. The browser that asked is kept, so someone
/// holding the account's sign-in back-off high cannot lock its owner out with it.
pub(super) async fn forget_devices_in(
    txn: &AuditedTxn,
    user: UserId,
    keep: Option<String>,
) -> DbResult<u64> {
    let mut forget = trusted_device::Entity::delete_many()
        .filter(trusted_device::Column::UserId.eq(user.to_string()));
    if let Some(kept) = keep {
        forget = forget.filter(trusted_device::Column::TokenHash.ne(kept));
    }
    Ok(forget.exec(txn.conn()).await?.rows_affected)
}

/// Revokes every live agent token of `user` in `txn`, one `agent.token_revoked` event each, by
/// the actor of `cause` (the event that ends the transaction), and turns autonomous agent
/// orders off. Under the chain lock: no token is created or revoked in between. Returns how
/// many tokens.
pub(super) async fn revoke_agent_tokens_in(
    txn: &mut AuditedTxn,
    user: UserId,
    cause: &AuditDraft,
    reason: &str,
    now: time::OffsetDateTime,
) -> DbResult<u64> {
    let live = agent_token::Entity::find()
        .filter(agent_token::Column::Owner.eq(user.to_string()))
        .filter(agent_token::Column::RevokedAt.is_null())
        .all(txn.conn())
        .await?;
    for row in &live {
        agent_token::Entity::update_many()
            .set(agent_token::ActiveModel {
                revoked_at: Set(Some(canonical_time(now))),
                ..Default::default()
            })
            .filter(agent_token::Column::Id.eq(row.id.clone()))
            .exec(txn.conn())
            .await?;
        let event = AuditDraft::new(
            cause.actor.clone(),
            domain::audit_action::AuditAction::AgentTokenRevoked,
            Outcome::Success,
            cause.meta.clone(),
        )
        .resource(format!("agent_token:{}", row.id))
        .detail("reason", reason);
        txn.append(event, now).await?;
    }
    withdraw_autonomy_in(txn, user, cause, reason, now).await?;
    Ok(live.len() as u64)
}

/// Turns `user`'s autonomous agent orders off in `txn`, with its event, when they were on:
/// the opt-in outlasts the step-up window that gave it, so whatever cuts a user's bots off
/// withdraws it too, and only a fresh step-up gives it again.
async fn withdraw_autonomy_in(
    txn: &mut AuditedTxn,
    user: UserId,
    cause: &AuditDraft,
    reason: &str,
    now: time::OffsetDateTime,
) -> DbResult<()> {
    let updated = user_trading::Entity::update_many()
        .set(user_trading::ActiveModel {
            autonomous: Set(false),
            updated_at: Set(canonical_time(now)),
            ..Default::default()
        })
        .filter(user_trading::Column::UserId.eq(user.to_string()))
        .filter(user_trading::Column::Autonomous.eq(true))
        .exec(txn.conn())
        .await?;
    if updated.rows_affected == 0 {
        return Ok(());
    }
    let event = AuditDraft::new(
        cause.actor.clone(),
        domain::audit_action::AuditAction::AgentAutonomousChanged,
        Outcome::Success,
        cause.meta.clone(),
    )
    .resource(format!("user:{user}"))
    .detail("autonomous", false)
    .detail("reason", reason);
    txn.append(event, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(keys: impl Iterator<Item = usize>) -> Record {
        Record {
            id: Id(7),
            data: keys
                .map(|k| (format!("key-{k}"), serde_json::json!({ "n": k })))
                .collect(),
            expiry_date: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_same_session_data_encodes_to_the_same_text_whatever_its_map_order() {
        let forward = record(0..16);
        let backward = record((0..16).rev());
        assert_eq!(forward.data, backward.data);
        let text = encode_data(&forward).expect("encode");
        assert_eq!(text, encode_data(&backward).expect("encode"));
        assert!(
            text.starts_with(r#"{"key-0":{"n":0},"key-1":{"n":1},"key-10""#),
            "{text}"
        );
    }
}
