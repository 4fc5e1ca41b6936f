//! Trading in the database: limits and controls, the IP blocklist, orders and fills, anomaly
//! cases, agent tokens and proposals.
//!
//! Every audited write runs in an [`AuditedTxn`]: the chain lock it takes first serialises the
//! writes, and the conditional updates below re-check their condition after it, so of two
//! concurrent claims of an order, decisions on a case or sign-offs of a proposal exactly one
//! matches a row. A write whose condition fails returns before committing, and dropping the
//! transaction rolls it back, so nothing (not even the audit event) lands.
//!
//! Amounts are stored as normalised decimal text and added up in Rust, never in SQL. Times are
//! canonical text; where SQL filters or sorts by a time, the row carries the same instant as
//! unix microseconds (`*_at_us`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use domain::account::UserId;
use domain::audit::{AuditDraft, canonical_time, parse_canonical_time};
use domain::keys::{ExchangeName, KeyEnvironment, KeyId, OrderType};
use domain::ports::{Clock, StoreError};
use domain::risk::{OrderSide, TradeSample, TradingState, Verdict};
use domain::trading::{
    AgentScope, AgentToken, AnomalyCase, ApprovalState, BlockedRange, CaseId, CaseStatus,
    ControlsChange, Fill, HoldKind, Order, OrderDecisionWrite, OrderId, OrderSource, OrderStatus,
    OrderUpdate, Proposal, ProposalStatus, TradingStore, Usage, UserControls, Venue,
    counted_notional,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{AuditedTxn, append_in};
use super::backend_error;
use super::entities::{
    agent_token, anomaly_case, fill, ip_block, order, proposal, risk_limit, trading_setting,
    user_trading,
};

/// The `risk_limits.scope` of the global limits; per-user limits use the user's id.
const GLOBAL_SCOPE: &str = "global";
const KILL_SWITCH_KEY: &str = "kill_switch";
const RELEASED_REASON: &str = "Released by a reviewer; sending";
const RELEASED_AWAITING_APPROVAL_REASON: &str = "Released by a reviewer. It still needs your approval with your security key or code before it is sent: approve it here.";
const APPROVED_REASON: &str = "Approved by you; sending";
const CONFIRMED_REASON: &str = "Cancelled: the reviewer confirmed the anomaly";

#[derive(Debug, Clone)]
pub struct SqlTradingStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl SqlTradingStore {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

// --- conversions ---------------------------------------------------------------------------

fn corrupt(table: &str, id: &str, what: &str) -> StoreError {
    StoreError::Backend(format!("{table} row {id} has an invalid {what}"))
}

/// The stored form of an amount: normalised, so equal amounts are equal text.
fn amount(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Unix microseconds, rounded down like [`canonical_time`] rounds, so both columns hold the
/// same instant.
fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX)
}

fn json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode the {what}: {e}")))
}

/// Reads one row's fields, naming the row in every error.
struct Fields<'a> {
    table: &'static str,
    id: &'a str,
}

impl Fields<'_> {
    fn bad(&self, what: &str) -> StoreError {
        corrupt(self.table, self.id, what)
    }

    fn uuid(&self, raw: &str, what: &str) -> Result<Uuid, StoreError> {
        Uuid::parse_str(raw).map_err(|_| self.bad(what))
    }

    fn user(&self, raw: &str, what: &str) -> Result<UserId, StoreError> {
        self.uuid(raw, what).map(UserId)
    }

    fn time(&self, raw: &str, what: &str) -> Result<OffsetDateTime, StoreError> {
        parse_canonical_time(raw).ok_or_else(|| self.bad(what))
    }

    fn opt_time(
        &self,
        raw: &Option<String>,
        what: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        raw.as_deref().map(|t| self.time(t, what)).transpose()
    }

    fn decimal(&self, raw: &str, what: &str) -> Result<Decimal, StoreError> {
        Decimal::from_str(raw).map_err(|_| self.bad(what))
    }

    fn opt_decimal(&self, raw: &Option<String>, what: &str) -> Result<Option<Decimal>, StoreError> {
        raw.as_deref().map(|d| self.decimal(d, what)).transpose()
    }

    fn side(&self, raw: &str) -> Result<OrderSide, StoreError> {
        OrderSide::parse(raw).ok_or_else(|| self.bad("side"))
    }

    fn order_type(&self, raw: &str) -> Result<OrderType, StoreError> {
        OrderType::parse(raw).ok_or_else(|| self.bad("order type"))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, raw: &str, what: &str) -> Result<T, StoreError> {
        serde_json::from_str(raw).map_err(|_| self.bad(what))
    }
}

fn to_order(row: &order::Model) -> Result<Order, StoreError> {
    let f = Fields {
        table: "orders",
        id: &row.id,
    };
    Ok(Order {
        id: OrderId(f.uuid(&row.id, "id")?),
        owner: f.user(&row.owner, "owner")?,
        venue: Venue {
            exchange: ExchangeName::parse(&row.exchange).map_err(|_| f.bad("exchange"))?,
            environment: KeyEnvironment::parse(&row.environment)
                .map_err(|_| f.bad("environment"))?,
            key: row
                .key_id
                .as_deref()
                .map(|k| KeyId::parse(k).ok_or_else(|| f.bad("key id")))
                .transpose()?,
        },
        client_order_id: row.client_order_id.clone(),
        symbol: row.symbol.clone(),
        side: f.side(&row.side)?,
        order_type: f.order_type(&row.order_type)?,
        quantity: f.decimal(&row.quantity, "quantity")?,
        limit_price: f.opt_decimal(&row.limit_price, "limit price")?,
        reference_price: f.decimal(&row.reference_price, "reference price")?,
        notional: f.decimal(&row.notional, "notional")?,
        status: OrderStatus::parse(&row.status).ok_or_else(|| f.bad("status"))?,
        hold: match row.hold_kind.as_deref() {
            Some(h) => Some(HoldKind::parse(h).ok_or_else(|| f.bad("hold kind"))?),
            // Held with no kind: held only for the owner's approval (see `hold_column`).
            None if row.status == OrderStatus::Held.as_str() => Some(HoldKind::Approval),
            None => None,
        },
        approval: ApprovalState::parse(&row.approval_state)
            .ok_or_else(|| f.bad("approval state"))?,
        status_reason: row.status_reason.clone(),
        verdict: Verdict::parse(&row.verdict).ok_or_else(|| f.bad("verdict"))?,
        hits: f.json(&row.hits, "rule hits")?,
        anomaly: row
            .anomaly
            .as_deref()
            .map(|a| f.json(a, "anomaly score"))
            .transpose()?,
        filled_quantity: f.decimal(&row.filled_quantity, "filled quantity")?,
        average_price: f.opt_decimal(&row.average_price, "average price")?,
        exchange_order_id: row.exchange_order_id.clone(),
        source: OrderSource::parse(&row.source).ok_or_else(|| f.bad("source"))?,
        case: row
            .case_id
            .as_deref()
            .map(|c| f.uuid(c, "case id").map(CaseId))
            .transpose()?,
        ip: row.ip.clone(),
        device: row.device.clone(),
        attempts: u32::try_from(row.attempts).map_err(|_| f.bad("attempt count"))?,
        created_at: f.time(&row.created_at, "created_at")?,
        updated_at: f.time(&row.updated_at, "updated_at")?,
    })
}

fn order_row(o: &Order) -> Result<order::ActiveModel, StoreError> {
    Ok(order::ActiveModel {
        id: Set(o.id.to_string()),
        owner: Set(o.owner.to_string()),
        exchange: Set(o.venue.exchange.as_str().to_owned()),
        environment: Set(o.venue.environment.as_str().to_owned()),
        key_id: Set(o.venue.key.map(|k| k.to_string())),
        client_order_id: Set(o.client_order_id.clone()),
        symbol: Set(o.symbol.clone()),
        side: Set(o.side.as_str().to_owned()),
        order_type: Set(o.order_type.as_str().to_owned()),
        quantity: Set(amount(o.quantity)),
        limit_price: Set(o.limit_price.map(amount)),
        reference_price: Set(amount(o.reference_price)),
        notional: Set(amount(o.notional)),
        status: Set(o.status.as_str().to_owned()),
        hold_kind: Set(hold_column(o.hold)),
        approval_state: Set(o.approval.as_str().to_owned()),
        status_reason: Set(o.status_reason.clone()),
        verdict: Set(o.verdict.as_str().to_owned()),
        hits: Set(json(&o.hits, "rule hits")?),
        anomaly: Set(o
            .anomaly
            .as_ref()
            .map(|a| json(a, "anomaly score"))
            .transpose()?),
        filled_quantity: Set(amount(o.filled_quantity)),
        average_price: Set(o.average_price.map(amount)),
        exchange_order_id: Set(o.exchange_order_id.clone()),
        source: Set(o.source.as_str().to_owned()),
        case_id: Set(o.case.map(|c| c.to_string())),
        ip: Set(o.ip.clone()),
        device: Set(o.device.clone()),
        attempts: Set(i32::try_from(o.attempts).map_err(|_| {
            StoreError::Backend(format!("order {} has too many attempts to store", o.id))
        })?),
        created_at: Set(canonical_time(o.created_at)),
        created_at_us: Set(micros(o.created_at)),
        updated_at: Set(canonical_time(o.updated_at)),
    })
}

/// The `hold_kind` column's value. Its CHECK (from the first trading migration) predates
/// `HoldKind::Approval`, and SQLite cannot change a CHECK in place, so an order held only for
/// its owner's approval is `held` with no kind.
fn hold_column(hold: Option<HoldKind>) -> Option<String> {
    match hold {
        None | Some(HoldKind::Approval) => None,
        Some(kind) => Some(kind.as_str().to_owned()),
    }
}

fn to_fill(row: &fill::Model) -> Result<Fill, StoreError> {
    let id = row.id.to_string();
    let f = Fields {
        table: "fills",
        id: &id,
    };
    Ok(Fill {
        order: OrderId(f.uuid(&row.order_id, "order id")?),
        owner: f.user(&row.owner, "owner")?,
        symbol: row.symbol.clone(),
        side: f.side(&row.side)?,
        quantity: f.decimal(&row.quantity, "quantity")?,
        price: f.decimal(&row.price, "price")?,
        at: f.time(&row.at, "time")?,
    })
}

fn to_case(row: &anomaly_case::Model) -> Result<AnomalyCase, StoreError> {
    let f = Fields {
        table: "anomaly_cases",
        id: &row.id,
    };
    Ok(AnomalyCase {
        id: CaseId(f.uuid(&row.id, "id")?),
        subject: f.user(&row.subject, "subject")?,
        order: row
            .order_id
            .as_deref()
            .map(|o| f.uuid(o, "order id").map(OrderId))
            .transpose()?,
        score: row.score,
        evidence: f.json(&row.evidence, "evidence")?,
        status: CaseStatus::parse(&row.status).ok_or_else(|| f.bad("status"))?,
        opened_at: f.time(&row.opened_at, "opened_at")?,
        decided_at: f.opt_time(&row.decided_at, "decided_at")?,
        decided_by: row
            .decided_by
            .as_deref()
            .map(|u| f.user(u, "reviewer"))
            .transpose()?,
        note: row.note.clone(),
        rationale: row.rationale.clone(),
    })
}

fn case_row(c: &AnomalyCase) -> Result<anomaly_case::ActiveModel, StoreError> {
    Ok(anomaly_case::ActiveModel {
        id: Set(c.id.to_string()),
        subject: Set(c.subject.to_string()),
        order_id: Set(c.order.map(|o| o.to_string())),
        // A score that is not a number is treated as maximal, as the domain does; SQLite
        // could not store NaN in a NOT NULL column anyway.
        score: Set(if c.score.is_finite() { c.score } else { 1.0 }),
        evidence: Set(json(&c.evidence, "case evidence")?),
        status: Set(c.status.as_str().to_owned()),
        opened_at: Set(canonical_time(c.opened_at)),
        opened_at_us: Set(micros(c.opened_at)),
        decided_at: Set(c.decided_at.map(canonical_time)),
        decided_by: Set(c.decided_by.map(|u| u.to_string())),
        note: Set(c.note.clone()),
        rationale: Set(c.rationale.clone()),
    })
}

fn to_controls(row: &user_trading::Model) -> Result<UserControls, StoreError> {
    let f = Fields {
        table: "user_trading",
        id: &row.user_id,
    };
    Ok(UserControls {
        user: f.user(&row.user_id, "user id")?,
        state: TradingState::parse(&row.state).ok_or_else(|| f.bad("state"))?,
        kill_switch: row.kill_switch,
        autonomous: row.autonomous,
    })
}

fn to_blocked(row: &ip_block::Model) -> Result<BlockedRange, StoreError> {
    let f = Fields {
        table: "ip_blocklist",
        id: &row.id,
    };
    Ok(BlockedRange {
        id: f.uuid(&row.id, "id")?,
        cidr: row.cidr.clone(),
        note: row.note.clone(),
        created_at: f.time(&row.created_at, "created_at")?,
    })
}

fn to_token(row: &agent_token::Model) -> Result<AgentToken, StoreError> {
    let f = Fields {
        table: "agent_tokens",
        id: &row.id,
    };
    let created_at = f.time(&row.created_at, "created_at")?;
    Ok(AgentToken {
        id: f.uuid(&row.id, "id")?,
        owner: f.user(&row.owner, "owner")?,
        name: row.name.clone(),
        prefix: row.prefix.clone(),
        scopes: row
            .scopes
            .split_whitespace()
            .map(|s| AgentScope::parse(s).ok_or_else(|| f.bad("scope")))
            .collect::<Result<_, _>>()?,
        created_at,
        last_used_at: f.opt_time(&row.last_used_at, "last_used_at")?,
        revoked_at: f.opt_time(&row.revoked_at, "revoked_at")?,
        expires_at: match f.opt_time(&row.expires_at, "expires_at")? {
            Some(at) => at,
            // Created before tokens expired: the default lifetime from creation.
            None => {
                created_at
                    + time::Duration::days(i64::from(
                        domain::trading::agent::DEFAULT_TOKEN_LIFETIME_DAYS,
                    ))
            }
        },
    })
}

fn to_proposal(row: &proposal::Model) -> Result<Proposal, StoreError> {
    let f = Fields {
        table: "proposals",
        id: &row.id,
    };
    Ok(Proposal {
        id: f.uuid(&row.id, "id")?,
        owner: f.user(&row.owner, "owner")?,
        token: f.uuid(&row.token_id, "token id")?,
        symbol: row.symbol.clone(),
        side: f.side(&row.side)?,
        order_type: f.order_type(&row.order_type)?,
        quantity: f.decimal(&row.quantity, "quantity")?,
        limit_price: f.opt_decimal(&row.limit_price, "limit price")?,
        rationale: row.rationale.clone(),
        status: ProposalStatus::parse(&row.status).ok_or_else(|| f.bad("status"))?,
        order: row
            .order_id
            .as_deref()
            .map(|o| f.uuid(o, "order id").map(OrderId))
            .transpose()?,
        created_at: f.time(&row.created_at, "created_at")?,
        decided_at: f.opt_time(&row.decided_at, "decided_at")?,
    })
}

fn all<T, R>(
    rows: &[R],
    convert: impl Fn(&R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(convert).collect()
}

// --- shared writes -----------------------------------------------------------------------

/// Sets a user's trading state inside `conn`, creating their controls row (with the other
/// controls at their defaults) if they have none.
async fn put_state<C: ConnectionTrait>(
    conn: &C,
    user: UserId,
    state: TradingState,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let defaults = UserControls::default_for(user);
    user_trading::Entity::insert(user_trading::ActiveModel {
        user_id: Set(user.to_string()),
        state: Set(state.as_str().to_owned()),
        kill_switch: Set(defaults.kill_switch),
        autonomous: Set(defaults.autonomous),
        updated_at: Set(canonical_time(at)),
    })
    .on_conflict(
        OnConflict::column(user_trading::Column::UserId)
            .update_columns([user_trading::Column::State, user_trading::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .map_err(backend_error)?;
    Ok(())
}

/// (id, status, notional, filled quantity, average price) of an order, as stored.
type UsageRow = (String, String, String, String, Option<String>);

/// What a stored order counts for in usage and the anomaly history (see `counted_notional`).
fn counted(
    id: &str,
    status: &str,
    notional: &str,
    filled: &str,
    average: &Option<String>,
) -> Result<Decimal, StoreError> {
    let f = Fields {
        table: "orders",
        id,
    };
    Ok(counted_notional(
        OrderStatus::parse(status).ok_or_else(|| f.bad("status"))?,
        f.decimal(notional, "notional")?,
        f.decimal(filled, "filled quantity")?,
        f.opt_decimal(average, "average price")?,
    ))
}

fn owned_by(owner: UserId) -> Condition {
    Condition::all().add(order::Column::Owner.eq(owner.to_string()))
}

#[async_trait]
impl TradingStore for SqlTradingStore {
    // --- limits and controls ---------------------------------------------------------------

    async fn limits(
        &self,
        user: UserId,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), StoreError> {
        let rows = risk_limit::Entity::find()
            .filter(risk_limit::Column::Scope.is_in([GLOBAL_SCOPE.to_owned(), user.to_string()]))
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        let (mut global, mut own) = (BTreeMap::new(), BTreeMap::new());
        for row in rows {
            if row.scope == GLOBAL_SCOPE {
                global.insert(row.field, row.value);
            } else {
                own.insert(row.field, row.value);
            }
        }
        Ok((global, own))
    }

    async fn set_limit(
        &self,
        user: Option<UserId>,
        field: &str,
        value: Option<&str>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let scope = user.map_or_else(|| GLOBAL_SCOPE.to_owned(), |u| u.to_string());
        let now = self.clock.now();
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        match value {
            Some(value) => {
                risk_limit::Entity::insert(risk_limit::ActiveModel {
                    scope: Set(scope),
                    field: Set(field.to_owned()),
                    value: Set(value.to_owned()),
                    updated_at: Set(canonical_time(now)),
                })
                .on_conflict(
                    OnConflict::columns([risk_limit::Column::Scope, risk_limit::Column::Field])
                        .update_columns([risk_limit::Column::Value, risk_limit::Column::UpdatedAt])
                        .to_owned(),
                )
                .exec_without_returning(txn.conn())
                .await
                .map_err(backend_error)?;
            }
            None => {
                risk_limit::Entity::delete_many()
                    .filter(risk_limit::Column::Scope.eq(scope))
                    .filter(risk_limit::Column::Field.eq(field))
                    .exec(txn.conn())
                    .await
                    .map_err(backend_error)?;
            }
        }
        txn.commit_with(audit, now).await.map_err(backend_error)?;
        Ok(())
    }

    async fn global_kill_switch(&self) -> Result<bool, StoreError> {
        let row = trading_setting::Entity::find_by_id(KILL_SWITCH_KEY.to_owned())
            .one(&self.db)
            .await
            .map_err(backend_error)?;
        match row.as_ref().map(|r| r.value.as_str()) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(corrupt("trading_settings", KILL_SWITCH_KEY, "value")),
        }
    }

    async fn set_global_kill_switch(&self, on: bool, audit: AuditDraft) -> Result<(), StoreError> {
        let now = self.clock.now();
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        trading_setting::Entity::insert(trading_setting::ActiveModel {
            key: Set(KILL_SWITCH_KEY.to_owned()),
            value: Set(on.to_string()),
            updated_at: Set(canonical_time(now)),
        })
        .on_conflict(
            OnConflict::column(trading_setting::Column::Key)
                .update_columns([
                    trading_setting::Column::Value,
                    trading_setting::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn.conn())
        .await
        .map_err(backend_error)?;
        txn.commit_with(audit, now).await.map_err(backend_error)?;
        Ok(())
    }

    async fn controls(&self, user: UserId) -> Result<UserControls, StoreError> {
        match user_trading::Entity::find_by_id(user.to_string())
            .one(&self.db)
            .await
            .map_err(backend_error)?
        {
            Some(row) => to_controls(&row),
            None => Ok(UserControls::default_for(user)),
        }
    }

    async fn restricted_users(&self) -> Result<Vec<UserControls>, StoreError> {
        let rows = user_trading::Entity::find()
            .filter(
                Condition::any()
                    .add(user_trading::Column::State.ne(TradingState::Active.as_str()))
                    .add(user_trading::Column::KillSwitch.eq(true))
                    .add(user_trading::Column::Autonomous.eq(true)),
            )
            .order_by_asc(user_trading::Column::UserId)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_controls)
    }

    async fn change_controls(
        &self,
        user: UserId,
        change: ControlsChange,
        audit: AuditDraft,
    ) -> Result<UserControls, StoreError> {
        let now = self.clock.now();
        // Read and written under the chain lock, so concurrent changes cannot lose each other.
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let mut controls = match user_trading::Entity::find_by_id(user.to_string())
            .one(txn.conn())
            .await
            .map_err(backend_error)?
        {
            Some(row) => to_controls(&row)?,
            None => UserControls::default_for(user),
        };
        if let Some(state) = change.state {
            controls.state = state;
        }
        if let Some(kill_switch) = change.kill_switch {
            controls.kill_switch = kill_switch;
        }
        if let Some(autonomous) = change.autonomous {
            controls.autonomous = autonomous;
        }
        user_trading::Entity::insert(user_trading::ActiveModel {
            user_id: Set(user.to_string()),
            state: Set(controls.state.as_str().to_owned()),
            kill_switch: Set(controls.kill_switch),
            autonomous: Set(controls.autonomous),
            updated_at: Set(canonical_time(now)),
        })
        .on_conflict(
            OnConflict::column(user_trading::Column::UserId)
                .update_columns([
                    user_trading::Column::State,
                    user_trading::Column::KillSwitch,
                    user_trading::Column::Autonomous,
                    user_trading::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn.conn())
        .await
        .map_err(backend_error)?;
        txn.commit_with(audit, now).await.map_err(backend_error)?;
        Ok(controls)
    }

    async fn blocklist(&self) -> Result<Vec<BlockedRange>, StoreError> {
        let rows = ip_block::Entity::find()
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        let mut ranges = all(&rows, to_blocked)?;
        // Canonical times do not sort as text; sort on the parsed times.
        ranges.sort_by(|a, b| (a.created_at, &a.cidr).cmp(&(b.created_at, &b.cidr)));
        Ok(ranges)
    }

    async fn add_blocked_range(
        &self,
        range: &BlockedRange,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        // A range already listed fails the UNIQUE constraint: `Conflict`.
        ip_block::Entity::insert(ip_block::ActiveModel {
            id: Set(range.id.to_string()),
            cidr: Set(range.cidr.clone()),
            note: Set(range.note.clone()),
            created_at: Set(canonical_time(range.created_at)),
        })
        .exec_without_returning(txn.conn())
        .await
        .map_err(backend_error)?;
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn remove_blocked_range(&self, id: Uuid, audit: AuditDraft) -> Result<(), StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let deleted = ip_block::Entity::delete_many()
            .filter(ip_block::Column::Id.eq(id.to_string()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    // --- orders ----------------------------------------------------------------------------

    async fn usage(
        &self,
        user: UserId,
        day_start: OffsetDateTime,
        window_start: OffsetDateTime,
    ) -> Result<Usage, StoreError> {
        // Cancelled and rejected orders are read too: what they filled before they ended
        // counts (`counted_notional`).
        let rows: Vec<UsageRow> = order::Entity::find()
            .select_only()
            .column(order::Column::Id)
            .column(order::Column::Status)
            .column(order::Column::Notional)
            .column(order::Column::FilledQuantity)
            .column(order::Column::AveragePrice)
            .filter(owned_by(user))
            .filter(order::Column::CreatedAtUs.gte(micros(day_start)))
            .filter(order::Column::Status.ne(OrderStatus::Denied.as_str()))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        let mut used_today = Decimal::ZERO;
        for (id, status, notional, filled, average) in &rows {
            let notional = counted(id, status, notional, filled, average)?;
            used_today = used_today.checked_add(notional).ok_or_else(|| {
                StoreError::Backend(format!("the notional used today by {user} overflows"))
            })?;
        }
        let in_window = order::Entity::find()
            .filter(owned_by(user))
            .filter(order::Column::CreatedAtUs.gte(micros(window_start)))
            .filter(order::Column::Status.ne(OrderStatus::Denied.as_str()))
            .count(&self.db)
            .await
            .map_err(backend_error)?;
        Ok(Usage {
            used_today,
            orders_in_window: u32::try_from(in_window).unwrap_or(u32::MAX),
        })
    }

    async fn trade_history(
        &self,
        user: UserId,
        limit: u64,
    ) -> Result<Vec<TradeSample>, StoreError> {
        // Orders that traded: filled, resting, and those that ended after a partial fill
        // (amounts are stored normalised, so no fill is exactly "0").
        let rows = order::Entity::find()
            .filter(owned_by(user))
            .filter(
                Condition::any()
                    .add(
                        order::Column::Status
                            .is_in([OrderStatus::Filled.as_str(), OrderStatus::Open.as_str()]),
                    )
                    .add(
                        Condition::all()
                            .add(order::Column::Status.is_in([
                                OrderStatus::Cancelled.as_str(),
                                OrderStatus::Rejected.as_str(),
                            ]))
                            .add(order::Column::FilledQuantity.ne(amount(Decimal::ZERO))),
                    ),
            )
            .order_by_desc(order::Column::CreatedAtUs)
            .order_by_desc(order::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        let mut samples = rows
            .iter()
            .map(|row| {
                let f = Fields {
                    table: "orders",
                    id: &row.id,
                };
                Ok(TradeSample {
                    at: f.time(&row.created_at, "created_at")?,
                    symbol: row.symbol.clone(),
                    notional: counted(
                        &row.id,
                        &row.status,
                        &row.notional,
                        &row.filled_quantity,
                        &row.average_price,
                    )?,
                    ip: row.ip.clone(),
                    device: row.device.clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        samples.reverse();
        Ok(samples)
    }

    async fn seen_before(
        &self,
        user: UserId,
        ip: Option<&str>,
        device: Option<&str>,
    ) -> Result<(bool, bool), StoreError> {
        let seen = |column: order::Column, value: Option<&str>| {
            let value = value.map(str::to_owned);
            async move {
                let Some(value) = value else {
                    return Ok(false);
                };
                let found = order::Entity::find()
                    .filter(owned_by(user))
                    .filter(order::Column::Status.ne(OrderStatus::Denied.as_str()))
                    // Only orders that passed step-up (or did not need it) make it familiar.
                    .filter(order::Column::ApprovalState.ne(ApprovalState::Awaiting.as_str()))
                    .filter(column.eq(value))
                    .count(&self.db)
                    .await
                    .map_err(backend_error)?;
                Ok::<_, StoreError>(found > 0)
            }
        };
        Ok((
            seen(order::Column::Ip, ip).await?,
            seen(order::Column::Device, device).await?,
        ))
    }

    async fn record_decision(&self, write: OrderDecisionWrite) -> Result<(), StoreError> {
        let OrderDecisionWrite {
            order: decided,
            proposal: placed_proposal,
            case,
            new_state,
            audit,
        } = write;
        let mut audit = audit.into_iter();
        let Some(first) = audit.next() else {
            // Fail closed: a decision without its audit record is not written.
            return Err(StoreError::Backend(format!(
                "order {} was decided without an audit event",
                decided.id
            )));
        };
        let row = order_row(&decided)?;
        let case_row = case.as_ref().map(case_row).transpose()?;
        let now = self.clock.now();
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        order::Entity::insert(row)
            .exec_without_returning(txn.conn())
            .await
            .map_err(backend_error)?;
        if let Some(id) = placed_proposal {
            // Claimed here, with the order: a proposal no longer pending is not placed again,
            // and the transaction (order included) rolls back.
            let settled = proposal::Entity::update_many()
                .set(proposal::ActiveModel {
                    status: Set(ProposalStatus::Placed.as_str().to_owned()),
                    order_id: Set(Some(decided.id.to_string())),
                    decided_at: Set(Some(canonical_time(decided.created_at))),
                    ..Default::default()
                })
                .filter(proposal::Column::Id.eq(id.to_string()))
                .filter(proposal::Column::Owner.eq(decided.owner.to_string()))
                .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
                .exec(txn.conn())
                .await
                .map_err(backend_error)?;
            if settled.rows_affected != 1 {
                return Err(StoreError::Conflict);
            }
        }
        if let Some(case_row) = case_row {
            anomaly_case::Entity::insert(case_row)
                .exec_without_returning(txn.conn())
                .await
                .map_err(backend_error)?;
        }
        if let Some(state) = new_state {
            put_state(txn.conn(), decided.owner, state, now).await?;
        }
        // Every event but the last is appended here; the last one commits. Should any append
        // fail, the transaction is dropped and rolls back the order, the case and the state.
        let mut pending = first;
        for next in audit {
            append_in(txn.conn(), pending, now)
                .await
                .map_err(backend_error)?;
            pending = next;
        }
        txn.commit_with(pending, now).await.map_err(backend_error)?;
        Ok(())
    }

    async fn claim_order(
        &self,
        id: OrderId,
        from: OrderStatus,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let claimed = order::Entity::update_many()
            .col_expr(
                order::Column::Status,
                Expr::val(OrderStatus::Submitting.as_str()),
            )
            .col_expr(
                order::Column::Attempts,
                Expr::col(order::Column::Attempts).add(1),
            )
            .col_expr(
                order::Column::UpdatedAt,
                Expr::val(canonical_time(self.clock.now())),
            )
            .filter(order::Column::Id.eq(id.to_string()))
            .filter(order::Column::Status.eq(from.as_str()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if claimed.rows_affected != 1 {
            // Dropping the transaction rolls it back: no event for a claim that did not happen.
            return Ok(false);
        }
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(true)
    }

    async fn record_update(
        &self,
        id: OrderId,
        update: OrderUpdate,
        fill: Option<Fill>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        // Only an order in flight takes an exchange's answer: a late answer cannot reopen a
        // final order.
        let updated = order::Entity::update_many()
            .set(order::ActiveModel {
                status: Set(update.status.as_str().to_owned()),
                hold_kind: Set(hold_column(update.hold)),
                status_reason: Set(update.status_reason.clone()),
                filled_quantity: Set(amount(update.filled_quantity)),
                average_price: Set(update.average_price.map(amount)),
                exchange_order_id: Set(update.exchange_order_id.clone()),
                updated_at: Set(canonical_time(now)),
                ..Default::default()
            })
            .filter(order::Column::Id.eq(id.to_string()))
            .filter(
                order::Column::Status
                    .is_in([OrderStatus::Submitting.as_str(), OrderStatus::Open.as_str()]),
            )
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if updated.rows_affected != 1 {
            return Err(StoreError::NotFound);
        }
        if let Some(fill) = fill {
            fill::Entity::insert(fill::ActiveModel {
                order_id: Set(fill.order.to_string()),
                owner: Set(fill.owner.to_string()),
                symbol: Set(fill.symbol.clone()),
                side: Set(fill.side.as_str().to_owned()),
                quantity: Set(amount(fill.quantity)),
                price: Set(amount(fill.price)),
                at: Set(canonical_time(fill.at)),
                at_us: Set(micros(fill.at)),
                ..Default::default()
            })
            .exec_without_returning(txn.conn())
            .await
            .map_err(backend_error)?;
        }
        txn.commit_with(audit, now).await.map_err(backend_error)?;
        Ok(())
    }

    async fn order(&self, owner: UserId, id: OrderId) -> Result<Option<Order>, StoreError> {
        order::Entity::find()
            .filter(owned_by(owner))
            .filter(order::Column::Id.eq(id.to_string()))
            .one(&self.db)
            .await
            .map_err(backend_error)?
            .as_ref()
            .map(to_order)
            .transpose()
    }

    async fn orders(&self, owner: UserId, limit: u64) -> Result<Vec<Order>, StoreError> {
        let rows = order::Entity::find()
            .filter(owned_by(owner))
            .order_by_desc(order::Column::CreatedAtUs)
            .order_by_desc(order::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_order)
    }

    async fn orders_in_status(
        &self,
        status: OrderStatus,
        hold: Option<HoldKind>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        let mut query = order::Entity::find().filter(order::Column::Status.eq(status.as_str()));
        match hold_column(hold) {
            Some(kind) => query = query.filter(order::Column::HoldKind.eq(kind)),
            None if hold == Some(HoldKind::Approval) => {
                query = query.filter(order::Column::HoldKind.is_null());
            }
            None => {}
        }
        let rows = query
            .order_by_asc(order::Column::CreatedAtUs)
            .order_by_asc(order::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_order)
    }

    async fn resting_orders(
        &self,
        owner: Option<UserId>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        let mut query =
            order::Entity::find().filter(order::Column::Status.eq(OrderStatus::Open.as_str()));
        if let Some(owner) = owner {
            query = query.filter(owned_by(owner));
        }
        let rows = query
            .order_by_asc(order::Column::CreatedAtUs)
            .order_by_asc(order::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_order)
    }

    async fn fills(
        &self,
        owner: UserId,
        exchange: Option<ExchangeName>,
    ) -> Result<Vec<Fill>, StoreError> {
        let mut query = fill::Entity::find().filter(fill::Column::Owner.eq(owner.to_string()));
        if let Some(exchange) = exchange {
            query = query.filter(
                fill::Column::OrderId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(order::Column::Id)
                        .from(order::Entity)
                        .and_where(order::Column::Exchange.eq(exchange.as_str()))
                        .to_owned(),
                ),
            );
        }
        let rows = query
            .order_by_asc(fill::Column::AtUs)
            .order_by_asc(fill::Column::Id)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_fill)
    }

    // --- anomaly cases ---------------------------------------------------------------------

    async fn cases(
        &self,
        status: Option<CaseStatus>,
        limit: u64,
    ) -> Result<Vec<AnomalyCase>, StoreError> {
        let mut query = anomaly_case::Entity::find();
        if let Some(status) = status {
            query = query.filter(anomaly_case::Column::Status.eq(status.as_str()));
        }
        let rows = query
            .order_by_desc(anomaly_case::Column::OpenedAtUs)
            .order_by_desc(anomaly_case::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_case)
    }

    async fn case(&self, id: CaseId) -> Result<Option<AnomalyCase>, StoreError> {
        anomaly_case::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await
            .map_err(backend_error)?
            .as_ref()
            .map(to_case)
            .transpose()
    }

    async fn open_cases_for(&self, user: UserId) -> Result<u64, StoreError> {
        anomaly_case::Entity::find()
            .filter(anomaly_case::Column::Subject.eq(user.to_string()))
            .filter(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()))
            .count(&self.db)
            .await
            .map_err(backend_error)
    }

    async fn decide_case(
        &self,
        id: CaseId,
        status: CaseStatus,
        reviewer: UserId,
        note: &str,
        at: OffsetDateTime,
        new_state: TradingState,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        if status == CaseStatus::Open {
            return Err(StoreError::Backend(format!(
                "case {id} can only be decided as released or confirmed"
            )));
        }
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let decided = anomaly_case::Entity::update_many()
            .set(anomaly_case::ActiveModel {
                status: Set(status.as_str().to_owned()),
                decided_at: Set(Some(canonical_time(at))),
                decided_by: Set(Some(reviewer.to_string())),
                note: Set(Some(note.to_owned())),
                ..Default::default()
            })
            .filter(anomaly_case::Column::Id.eq(id.to_string()))
            .filter(anomaly_case::Column::Status.eq(CaseStatus::Open.as_str()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if decided.rows_affected != 1 {
            return Ok(false);
        }
        let subject: Option<String> = anomaly_case::Entity::find_by_id(id.to_string())
            .select_only()
            .column(anomaly_case::Column::Subject)
            .into_tuple()
            .one(txn.conn())
            .await
            .map_err(backend_error)?;
        let subject = subject.ok_or(StoreError::NotFound)?;
        let subject = Fields {
            table: "anomaly_cases",
            id: &id.to_string(),
        }
        .user(&subject, "subject")?;
        put_state(txn.conn(), subject, new_state, at).await?;
        let held = order::ActiveModel {
            updated_at: Set(canonical_time(at)),
            ..Default::default()
        };
        if status == CaseStatus::Released {
            // Released, but still without the step-up it needed: it waits for its owner.
            order::Entity::update_many()
                .set(order::ActiveModel {
                    hold_kind: Set(hold_column(Some(HoldKind::Approval))),
                    status_reason: Set(Some(RELEASED_AWAITING_APPROVAL_REASON.to_owned())),
                    ..held.clone()
                })
                .filter(order::Column::CaseId.eq(id.to_string()))
                .filter(order::Column::Status.eq(OrderStatus::Held.as_str()))
                .filter(order::Column::HoldKind.eq(HoldKind::Review.as_str()))
                .filter(order::Column::ApprovalState.eq(ApprovalState::Awaiting.as_str()))
                .exec(txn.conn())
                .await
                .map_err(backend_error)?;
        }
        let held = if status == CaseStatus::Released {
            order::ActiveModel {
                hold_kind: Set(Some(HoldKind::Exchange.as_str().to_owned())),
                status_reason: Set(Some(RELEASED_REASON.to_owned())),
                ..held
            }
        } else {
            order::ActiveModel {
                status: Set(OrderStatus::Cancelled.as_str().to_owned()),
                hold_kind: Set(None),
                status_reason: Set(Some(CONFIRMED_REASON.to_owned())),
                ..held
            }
        };
        order::Entity::update_many()
            .set(held)
            .filter(order::Column::CaseId.eq(id.to_string()))
            .filter(order::Column::Status.eq(OrderStatus::Held.as_str()))
            .filter(order::Column::HoldKind.eq(HoldKind::Review.as_str()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(true)
    }

    async fn set_case_rationale(
        &self,
        id: CaseId,
        rationale: &str,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let updated = anomaly_case::Entity::update_many()
            .set(anomaly_case::ActiveModel {
                rationale: Set(Some(rationale.to_owned())),
                ..Default::default()
            })
            .filter(anomaly_case::Column::Id.eq(id.to_string()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn approve_held_order(
        &self,
        owner: UserId,
        id: OrderId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let approved = order::Entity::update_many()
            .set(order::ActiveModel {
                hold_kind: Set(hold_column(Some(HoldKind::Exchange))),
                approval_state: Set(ApprovalState::Approved.as_str().to_owned()),
                status_reason: Set(Some(APPROVED_REASON.to_owned())),
                updated_at: Set(canonical_time(at)),
                ..Default::default()
            })
            .filter(order::Column::Id.eq(id.to_string()))
            .filter(owned_by(owner))
            .filter(order::Column::Status.eq(OrderStatus::Held.as_str()))
            .filter(order::Column::HoldKind.is_null())
            .filter(order::Column::ApprovalState.eq(ApprovalState::Awaiting.as_str()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if approved.rows_affected != 1 {
            return Ok(false);
        }
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(true)
    }

    // --- agents ----------------------------------------------------------------------------

    async fn insert_agent_token(
        &self,
        token: &AgentToken,
        hash: &str,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        agent_token::Entity::insert(agent_token::ActiveModel {
            id: Set(token.id.to_string()),
            owner: Set(token.owner.to_string()),
            name: Set(token.name.clone()),
            prefix: Set(token.prefix.clone()),
            token_hash: Set(hash.to_owned()),
            scopes: Set(token
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")),
            created_at: Set(canonical_time(token.created_at)),
            last_used_at: Set(token.last_used_at.map(canonical_time)),
            revoked_at: Set(token.revoked_at.map(canonical_time)),
            expires_at: Set(Some(canonical_time(token.expires_at))),
            expires_at_us: Set(Some(micros(token.expires_at))),
        })
        .exec_without_returning(txn.conn())
        .await
        .map_err(backend_error)?;
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn agent_token_by_hash(
        &self,
        hash: &str,
        at: OffsetDateTime,
    ) -> Result<Option<AgentToken>, StoreError> {
        let Some(row) = agent_token::Entity::find()
            .filter(agent_token::Column::TokenHash.eq(hash))
            .filter(agent_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await
            .map_err(backend_error)?
        else {
            return Ok(None);
        };
        let mut token = to_token(&row)?;
        if token.is_expired(at) {
            // Refused by the caller: an expired token's use is not a use.
            return Ok(Some(token));
        }
        // Best effort: a missed stamp must not turn a valid token away.
        let stamped = agent_token::Entity::update_many()
            .set(agent_token::ActiveModel {
                last_used_at: Set(Some(canonical_time(at))),
                ..Default::default()
            })
            .filter(agent_token::Column::Id.eq(row.id.clone()))
            .filter(agent_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await;
        match stamped {
            Ok(_) => token.last_used_at = Some(at),
            Err(err) => {
                tracing::warn!(token = %row.id, error = %err, "could not stamp agent token use");
            }
        }
        Ok(Some(token))
    }

    async fn agent_tokens(&self, owner: UserId) -> Result<Vec<AgentToken>, StoreError> {
        let rows = agent_token::Entity::find()
            .filter(agent_token::Column::Owner.eq(owner.to_string()))
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        let mut tokens = all(&rows, to_token)?;
        // Canonical times do not sort as text; sort on the parsed times, oldest first.
        tokens.sort_by_key(|t| (t.created_at, t.id));
        Ok(tokens)
    }

    async fn revoke_agent_token(
        &self,
        owner: UserId,
        id: Uuid,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let revoked = agent_token::Entity::update_many()
            .set(agent_token::ActiveModel {
                revoked_at: Set(Some(canonical_time(at))),
                ..Default::default()
            })
            .filter(agent_token::Column::Id.eq(id.to_string()))
            .filter(agent_token::Column::Owner.eq(owner.to_string()))
            .filter(agent_token::Column::RevokedAt.is_null())
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if revoked.rows_affected != 1 {
            return Err(StoreError::NotFound);
        }
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn insert_proposal(
        &self,
        proposal: &Proposal,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        proposal::Entity::insert(proposal::ActiveModel {
            id: Set(proposal.id.to_string()),
            owner: Set(proposal.owner.to_string()),
            token_id: Set(proposal.token.to_string()),
            symbol: Set(proposal.symbol.clone()),
            side: Set(proposal.side.as_str().to_owned()),
            order_type: Set(proposal.order_type.as_str().to_owned()),
            quantity: Set(amount(proposal.quantity)),
            limit_price: Set(proposal.limit_price.map(amount)),
            rationale: Set(proposal.rationale.clone()),
            status: Set(proposal.status.as_str().to_owned()),
            order_id: Set(proposal.order.map(|o| o.to_string())),
            created_at: Set(canonical_time(proposal.created_at)),
            created_at_us: Set(micros(proposal.created_at)),
            decided_at: Set(proposal.decided_at.map(canonical_time)),
        })
        .exec_without_returning(txn.conn())
        .await
        .map_err(backend_error)?;
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn proposals(&self, owner: UserId, limit: u64) -> Result<Vec<Proposal>, StoreError> {
        let rows = proposal::Entity::find()
            .filter(proposal::Column::Owner.eq(owner.to_string()))
            .order_by_desc(proposal::Column::CreatedAtUs)
            .order_by_desc(proposal::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(backend_error)?;
        all(&rows, to_proposal)
    }

    async fn proposal(&self, owner: UserId, id: Uuid) -> Result<Option<Proposal>, StoreError> {
        proposal::Entity::find()
            .filter(proposal::Column::Id.eq(id.to_string()))
            .filter(proposal::Column::Owner.eq(owner.to_string()))
            .one(&self.db)
            .await
            .map_err(backend_error)?
            .as_ref()
            .map(to_proposal)
            .transpose()
    }

    async fn settle_proposal(
        &self,
        owner: UserId,
        id: Uuid,
        status: ProposalStatus,
        order: Option<OrderId>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        if status == ProposalStatus::Pending {
            return Err(StoreError::Backend(format!(
                "proposal {id} can only be settled as placed or rejected"
            )));
        }
        let txn = AuditedTxn::begin(&self.db).await.map_err(backend_error)?;
        let settled = proposal::Entity::update_many()
            .set(proposal::ActiveModel {
                status: Set(status.as_str().to_owned()),
                order_id: Set(order.map(|o| o.to_string())),
                decided_at: Set(Some(canonical_time(at))),
                ..Default::default()
            })
            .filter(proposal::Column::Id.eq(id.to_string()))
            .filter(proposal::Column::Owner.eq(owner.to_string()))
            .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
            .exec(txn.conn())
            .await
            .map_err(backend_error)?;
        if settled.rows_affected != 1 {
            return Ok(false);
        }
        txn.commit_with(audit, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(true)
    }
}
