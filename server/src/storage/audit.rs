//! The audit chain in the database. Every audited write runs in an [`AuditedTxn`], which takes
//! the chain lock first and appends the event as its last statement before committing.

use std::sync::Arc;

use async_trait::async_trait;
use domain::audit::{
    Actor, ActorKind, AuditDraft, AuditEvent, ChainHash, ChainHead, Outcome, RequestMeta,
    canonical_time, parse_canonical_time,
};
use domain::ports::{AuditLog, Clock, StoreError};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, TransactionTrait,
};
use time::OffsetDateTime;

use super::entities::audit_event;
use super::{DbResult, converted};

/// A transaction that holds the audit chain lock and must end with an audit event.
#[derive(Debug)]
pub struct AuditedTxn {
    txn: DatabaseTransaction,
}

impl AuditedTxn {
    pub async fn begin(db: &DatabaseConnection) -> DbResult<Self> {
        let txn = db.begin().await?;
        // Taking the lock row first serialises appends (across replicas too) and, on SQLite,
        // makes this transaction a writer up front so it cannot deadlock on upgrade.
        txn.execute_unprepared(
            "UPDATE audit_chain_lock SET lock_count = lock_count + 1 WHERE id = 1",
        )
        .await?;
        Ok(Self { txn })
    }

    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Appends the event and commits; if the append fails, nothing in the transaction lands.
    pub async fn commit_with(self, draft: AuditDraft, now: OffsetDateTime) -> DbResult<AuditEvent> {
        let event = append_in(&self.txn, draft, now).await?;
        self.txn.commit().await?;
        Ok(event)
    }
}

/// Seals `draft` onto the current chain head inside `txn` (which must hold the chain lock).
pub async fn append_in(
    txn: &DatabaseTransaction,
    draft: AuditDraft,
    now: OffsetDateTime,
) -> DbResult<AuditEvent> {
    let head = match audit_event::Entity::find()
        .order_by_desc(audit_event::Column::Seq)
        .one(txn)
        .await?
    {
        Some(row) => ChainHead {
            seq: row.seq,
            hash: ChainHash::from_hex(&row.hash).ok_or_else(|| {
                DbErr::Custom(format!("audit event {} has a malformed hash", row.seq))
            })?,
        },
        None => ChainHead::EMPTY,
    };
    let event = AuditEvent::seal(head, draft, now);
    audit_event::Entity::insert(to_row(&event))
        .exec_without_returning(txn)
        .await?;
    Ok(event)
}

fn to_row(event: &AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        seq: Set(event.seq),
        occurred_at: Set(canonical_time(event.occurred_at)),
        actor_kind: Set(event.actor.kind.as_str().to_owned()),
        actor_id: Set(event.actor.id.clone()),
        action: Set(event.action.clone()),
        resource: Set(event.resource.clone()),
        outcome: Set(event.outcome.as_str().to_owned()),
        ip: Set(event.meta.ip.clone()),
        user_agent: Set(event.meta.user_agent.clone()),
        request_id: Set(event.meta.request_id.clone()),
        details: Set(event.details.to_string()),
        prev_hash: Set(event.prev_hash.to_hex()),
        hash: Set(event.hash.to_hex()),
    }
}

/// Reads a stored row back. Unreadable fields become values that fail verification at this
/// seq rather than an error, so `audit verify` can name the broken event.
pub fn from_row(row: audit_event::Model) -> AuditEvent {
    AuditEvent {
        seq: row.seq,
        occurred_at: parse_canonical_time(&row.occurred_at).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        actor: Actor {
            kind: ActorKind::parse(&row.actor_kind).unwrap_or(ActorKind::Anonymous),
            id: row.actor_id,
        },
        action: row.action,
        resource: row.resource,
        outcome: Outcome::parse(&row.outcome).unwrap_or(Outcome::Failure),
        meta: RequestMeta {
            ip: row.ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
        },
        details: serde_json::from_str(&row.details)
            .unwrap_or(serde_json::Value::String(row.details)),
        prev_hash: ChainHash::from_hex(&row.prev_hash).unwrap_or(ChainHash::GENESIS),
        hash: ChainHash::from_hex(&row.hash).unwrap_or(ChainHash::GENESIS),
    }
}

#[derive(Debug, Clone)]
pub struct SqlAuditLog {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl SqlAuditLog {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// The first `limit` events `query` selects, in its order.
    async fn events(
        &self,
        query: Select<audit_event::Entity>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        converted(async {
            let rows = query.limit(limit).all(&self.db).await?;
            Ok(rows.into_iter().map(from_row).collect())
        })
        .await
    }
}

#[async_trait]
impl AuditLog for SqlAuditLog {
    async fn record(&self, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
        converted(async {
            let txn = AuditedTxn::begin(&self.db).await?;
            txn.commit_with(draft, self.clock.now()).await
        })
        .await
    }

    async fn recent(&self, limit: u64) -> Result<Vec<AuditEvent>, StoreError> {
        let newest_first = audit_event::Entity::find().order_by_desc(audit_event::Column::Seq);
        self.events(newest_first, limit).await
    }

    async fn page(&self, after: i64, limit: u64) -> Result<Vec<AuditEvent>, StoreError> {
        let after_seq = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.gt(after))
            .order_by_asc(audit_event::Column::Seq);
        self.events(after_seq, limit).await
    }

    async fn for_resources(
        &self,
        resources: &[String],
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if resources.is_empty() {
            return Ok(Vec::new());
        }
        let about = audit_event::Entity::find()
            .filter(audit_event::Column::Resource.is_in(resources.iter().cloned()))
            .order_by_desc(audit_event::Column::Seq);
        self.events(about, limit).await
    }
}
