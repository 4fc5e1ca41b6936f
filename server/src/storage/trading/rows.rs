//! Rows to domain types and back. A row that does not convert is reported as corrupt, naming
//! its table, id and field.

use domain::audit::canonical_time;
use domain::exchange::{ExchangeName, KeyEnvironment, Venue};
use domain::ids::KeyId;
use domain::ports::StoreError;
use domain::risk::{Standing, TradingState, Verdict};
use domain::trading::{
    AgentScope, AgentToken, AnomalyCase, ApprovalState, BlockedRange, CaseId, CaseStatus, Claim,
    Fill, HoldKind, Order, OrderId, OrderSource, OrderStatus, Proposal, ProposalStatus,
    UserControls, counted_notional,
};
use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;

use super::super::DbResult;
use super::super::entities::{
    agent_token, anomaly_case, fill, ip_block, order, proposal, user_trading,
};
use super::{Fields, amount, json, micros};

pub(super) fn to_order(row: &order::Model) -> DbResult<Order> {
    let f = Fields {
        table: "orders",
        id: &row.id,
    };
    let status = OrderStatus::parse(&row.status).ok_or_else(|| f.bad("status"))?;
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
        status,
        hold: match row.hold_kind.as_deref() {
            // Marked by a cancel's claim: held for it, or claimed for it (see `OrderClaim`).
            _ if row.cancel_requested
                && matches!(status, OrderStatus::Held | OrderStatus::Submitting) =>
            {
                Some(HoldKind::Cancelling)
            }
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

pub(super) fn order_row(o: &Order) -> DbResult<order::ActiveModel> {
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
        cancel_requested: Set(o.hold == Some(HoldKind::Cancelling)),
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
        counted_at_us: Set(micros(o.created_at)),
        updated_at: Set(canonical_time(o.updated_at)),
    })
}

/// The `hold_kind` column's value. Its CHECK (from the first trading migration) predates
/// `HoldKind::Approval` and `HoldKind::Cancelling`, and SQLite cannot change a CHECK in place,
/// so an order held only for its owner's approval is `held` with no kind, and one whose cancel
/// is pending is kind `exchange` with `cancel_requested` set.
pub(super) fn hold_column(hold: Option<HoldKind>) -> Option<String> {
    match hold {
        None | Some(HoldKind::Approval) => None,
        Some(HoldKind::Cancelling) => Some(HoldKind::Exchange.as_str().to_owned()),
        Some(kind) => Some(kind.as_str().to_owned()),
    }
}

pub(super) fn to_fill(row: &fill::Model) -> DbResult<Fill> {
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

pub(super) fn to_case(row: &anomaly_case::Model) -> DbResult<AnomalyCase> {
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

pub(super) fn case_row(c: &AnomalyCase) -> DbResult<anomaly_case::ActiveModel> {
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

pub(super) fn to_controls(row: &user_trading::Model) -> DbResult<UserControls> {
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

/// The trader's standing; `settled_state` NULL means nothing stands after their cases.
pub(super) fn to_standing(row: &user_trading::Model) -> DbResult<Standing> {
    let f = Fields {
        table: "user_trading",
        id: &row.user_id,
    };
    let parse = |raw: &str, what| TradingState::parse(raw).ok_or_else(|| f.bad(what));
    Ok(Standing {
        state: parse(&row.state, "state")?,
        settled: match &row.settled_state {
            None => TradingState::Active,
            Some(settled) => parse(settled, "settled_state")?,
        },
    })
}

pub(super) fn to_blocked(row: &ip_block::Model) -> DbResult<BlockedRange> {
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

pub(super) fn to_token(row: &agent_token::Model) -> DbResult<AgentToken> {
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

pub(super) fn to_proposal(row: &proposal::Model) -> DbResult<Proposal> {
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

/// (id, symbol, side, quantity, filled quantity, notional) of a live paper order.
pub(super) type ClaimRow = (String, String, String, String, String, String);

pub(super) fn to_claim(
    (id, symbol, side, quantity, filled, notional): &ClaimRow,
) -> DbResult<Claim> {
    let f = Fields {
        table: "orders",
        id,
    };
    Ok(Claim::unexecuted(
        OrderId(f.uuid(id, "id")?),
        symbol.clone(),
        f.side(side)?,
        f.decimal(quantity, "quantity")?,
        f.decimal(filled, "filled quantity")?,
        f.decimal(notional, "notional")?,
    ))
}

/// (id, status, notional, filled quantity, average price, created at in µs, counted from in
/// µs, approval state) of an order, as stored.
pub(super) type UsageRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
);

/// (id, created at, symbol, status, notional, filled quantity, average price, IP, device) of
/// an order, as stored: what the anomaly history reads.
pub(super) type HistoryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What a stored order counts for in usage and the anomaly history (see `counted_notional`).
pub(super) fn counted(
    id: &str,
    status: &str,
    notional: &str,
    filled: &str,
    average: &Option<String>,
) -> DbResult<Decimal> {
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
