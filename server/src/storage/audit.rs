//! The audit chain in the database. Every audited write runs in an [`AuditedTxn`], which takes
//! the chain lock first and appends the event as its last statement before committing.

use std::sync::Arc;

use async_trait::async_trait;
use domain::audit::filter::{bound_time, second_prefix};
use domain::audit::{
    Actor, ActorKind, AuditDraft, AuditEvent, AuditFilter, ChainHash, ChainHead, Outcome,
    RequestMeta, canonical_time, parse_canonical_time,
};
use domain::ports::{AuditLog, Clock, StoreError};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    TransactionTrait,
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

/// An event as the row that stores it (also how tests bulk-load chains).
pub fn to_row(event: &AuditEvent) -> audit_event::ActiveModel {
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

/// `occurred_at` as `YYYY-MM-DDTHH:MM:SS.ffffff` (see `fixed_width_time`): the stored canonical
/// text drops trailing zeros of the fraction, so it does not sort by time on its own. A constant
/// expression (no input in it), portable to SQLite and PostgreSQL.
const FIXED_WIDTH_OCCURRED_AT: &str = "(CASE WHEN length(occurred_at) = 20 \
     THEN substr(occurred_at, 1, 19) || '.000000' \
     ELSE substr(replace(occurred_at, 'Z', '') || '00000', 1, 26) END)";

/// The SQL form of [`AuditFilter::matches`]; every input is a bound value.
fn filter_condition(filter: &AuditFilter) -> Condition {
    use audit_event::Column;
    let mut cond = Condition::all();
    if let Some(from) = filter.from {
        // The whole-second bound lets the occurred_at index narrow the scan; the fixed-width
        // comparison is the exact one.
        cond = cond
            .add(Column::OccurredAt.gte(second_prefix(from)))
            .add(Expr::cust(FIXED_WIDTH_OCCURRED_AT).gte(bound_time(from)));
    }
    if let Some(to) = filter.to {
        cond = cond
            .add(Column::OccurredAt.lt(second_prefix(to + time::Duration::SECOND)))
            .add(Expr::cust(FIXED_WIDTH_OCCURRED_AT).lt(bound_time(to)));
    }
    if let Some(actor) = filter.actor_id() {
        cond = cond.add(Column::ActorId.eq(actor));
    }
    if let Some(prefix) = filter.action_prefix() {
        // substr, not LIKE: LIKE is case-blind in SQLite and would need `%`/`_` escaped.
        let chars = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
        cond = cond.add(
            Expr::expr(
                Func::cust("substr")
                    .arg(Expr::col(Column::Action))
                    .arg(1i32)
                    .arg(chars),
            )
            .eq(prefix),
        );
    }
    if let Some(outcome) = filter.outcome {
        cond = cond.add(Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(resource) = filter.resource() {
        cond = cond.add(Column::Resource.eq(resource));
    }
    if let Some(request_id) = filter.request_id() {
        cond = cond.add(Column::RequestId.eq(request_id));
    }
    if let Some(up_to) = filter.up_to_seq {
        cond = cond.add(Column::Seq.lte(up_to));
    }
    cond
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

    async fn search_after(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let query = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.gt(after))
            .filter(filter_condition(filter))
            .order_by_asc(audit_event::Column::Seq);
        self.events(query, limit).await
    }

    async fn search_before(
        &self,
        filter: &AuditFilter,
        before: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let query = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.lt(before))
            .filter(filter_condition(filter))
            .order_by_desc(audit_event::Column::Seq);
        self.events(query, limit).await
    }

    async fn head(&self) -> Result<ChainHead, StoreError> {
        let newest = self.recent(1).await?;
        Ok(newest.first().map_or(ChainHead::EMPTY, AuditEvent::head))
    }

    async fn event(&self, seq: i64) -> Result<Option<AuditEvent>, StoreError> {
        converted(async {
            let row = audit_event::Entity::find_by_id(seq).one(&self.db).await?;
            Ok(row.map(from_row))
        })
        .await
    }
}
