//! Orders: usage and history for screening, decisions, claims, exchange answers and fills.

use async_trait::async_trait;
use domain::account::UserId;
use domain::audit::{AuditDraft, canonical_time};
use domain::audit_action::AuditAction;
use domain::exchange::ExchangeName;
use domain::order::OrderSide;
use domain::ports::StoreError;
use domain::risk::{StateEvent, TradeSample};
use domain::trading::{
    ApprovalState, Claim, Fill, HoldKind, Order, OrderClaim, OrderDecisionWrite, OrderId,
    OrderStatus, OrderStore, OrderUpdate, PaperBook, Portfolio, ProposalStatus, Usage,
    UsageWindows,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, Func, OnConflict, Query, SelectStatement, UnionType,
};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use time::OffsetDateTime;

use super::super::entities::{anomaly_case, fill, order, paper_book, proposal};
use super::super::sqlite_reader::rows;
use super::super::{DbResult, converted, tuples};
use super::rows::{
    ClaimRow, HistoryRow, UsageRow, case_row, counted, hold_column, order_row, to_claim, to_fill,
    to_order,
};
use super::{Fields, SqlTradingStore, all, amount, json, micros, owned_by, put_state, standing_in};

const APPROVED_REASON: &str = "Approved by you; sending";

#[async_trait]
impl OrderStore for SqlTradingStore {
    async fn usage(
        &self,
        user: UserId,
        windows: UsageWindows,
        leaving_out: Option<OrderId>,
    ) -> Result<Usage, StoreError> {
        let query = usage_query(user, micros(windows.earliest()));
        // On SQLite, on the reader: a row per order in the windows, each a hand-off through sqlx.
        if let Some(reader) = &self.reader {
            return reader
                .read(move |txn| {
                    let rows = rows(txn, &query, |row| UsageRow::try_from(row))?;
                    Ok(usage_of(user, &rows, windows, leaving_out)?)
                })
                .await;
        }
        converted(async {
            let rows = tuples(&self.db, &query).await?;
            usage_of(user, &rows, windows, leaving_out)
        })
        .await
    }

    async fn trade_history(
        &self,
        user: UserId,
        limit: u64,
    ) -> Result<Vec<TradeSample>, StoreError> {
        converted(async {
            let rows = tuples(&self.db, &history_query(user, limit)).await?;
            history_of(rows)
        })
        .await
    }

    async fn seen_before(
        &self,
        user: UserId,
        ip: Option<&str>,
        device: Option<&str>,
    ) -> Result<(bool, bool), StoreError> {
        converted(async {
            let row = self
                .db
                .query_one(&familiarity_query(user, ip, device))
                .await?
                .ok_or_else(|| StoreError::Backend("SELECT EXISTS returned no row".into()))?;
            Ok(row.try_get_many_by_index()?)
        })
        .await
    }

    async fn record_decision(&self, write: OrderDecisionWrite) -> Result<(), StoreError> {
        converted(async {
            let OrderDecisionWrite {
                order: decided,
                proposal: placed_proposal,
                case,
                quarantine,
                audit,
            } = write;
            let mut audit = audit.into_iter();
            let Some(first) = audit.next() else {
                // Fail closed: a decision without its audit record is not written.
                return Err(StoreError::Backend(format!(
                    "order {} was decided without an audit event",
                    decided.id
                ))
                .into());
            };
            let row = order_row(&decided)?;
            let case_row = case.as_ref().map(case_row).transpose()?;
            let now = self.clock.now();
            let mut txn = self.chain.begin().await?;
            order::Entity::insert(row)
                .exec_without_returning(txn.conn())
                .await?;
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
                    .await?;
                if settled.rows_affected != 1 {
                    return Err(StoreError::Conflict.into());
                }
            }
            if let Some(case_row) = case_row {
                anomaly_case::Entity::insert(case_row)
                    .exec_without_returning(txn.conn())
                    .await?;
            }
            // The quarantine was judged on the state read while screening; it is applied to
            // the state as it is now, inside this write: an anomaly only tightens, so a halt an
            // admin set meanwhile stays. Its event says what was applied, or goes if nothing
            // changed.
            let mut audit: Vec<AuditDraft> = audit.collect();
            if let Some(target) = quarantine {
                let standing = standing_in(txn.conn(), decided.owner).await?;
                let after = standing.after(StateEvent::AnomalyDetected(target));
                let state_change = AuditAction::RiskTradingStateChanged.as_str();
                if after.state == standing.state {
                    audit.retain(|draft| draft.action != state_change);
                } else {
                    put_state(txn.conn(), decided.owner, after.state, None, now).await?;
                    for draft in audit.iter_mut().filter(|d| d.action == state_change) {
                        *draft = draft
                            .clone()
                            .detail("from", standing.state.as_str())
                            .detail("to", after.state.as_str());
                    }
                }
            }
            // Every event but the last is appended here; the last one commits. Should any append
            // fail, the transaction is dropped and rolls back the order, the case and the state.
            let mut pending = first;
            for next in audit.into_iter() {
                txn.append(pending, now).await?;
                pending = next;
            }
            txn.commit_with(pending, now).await?;
            Ok(())
        })
        .await
    }

    async fn claim_order(&self, claim: OrderClaim, audit: AuditDraft) -> Result<bool, StoreError> {
        converted(async {
            let attempts = i32::try_from(claim.attempts)
                .map_err(|_| StoreError::Backend("an order's attempts out of range".into()))?;
            let txn = self.chain.begin().await?;
            let mut update = order::Entity::update_many()
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
                );
            if claim.cancel {
                update = update.col_expr(order::Column::CancelRequested, Expr::val(true));
            }
            let claimed = update
                .filter(order::Column::Id.eq(claim.id.to_string()))
                .filter(order::Column::Status.eq(claim.from.as_str()))
                .filter(order::Column::Attempts.eq(attempts))
                .exec(txn.conn())
                .await?;
            if claimed.rows_affected != 1 {
                // Dropping the transaction rolls it back: no event for a claim that did not happen.
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn count_from(&self, id: OrderId, at: OffsetDateTime) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            let updated = order::Entity::update_many()
                .col_expr(order::Column::CountedAtUs, Expr::val(micros(at)))
                .filter(order::Column::Id.eq(id.to_string()))
                .filter(order::Column::Status.eq(OrderStatus::Submitting.as_str()))
                .exec(txn.conn())
                .await?;
            if updated.rows_affected != 1 {
                return Err(StoreError::NotFound.into());
            }
            // Bookkeeping for the limits: the claim that sends the order is audited.
            txn.commit_unaudited().await
        })
        .await
    }

    async fn record_update(
        &self,
        id: OrderId,
        update: OrderUpdate,
        fill: Option<Fill>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let now = self.clock.now();
            let txn = self.chain.begin().await?;
            // Only an order in flight takes an exchange's answer: a late answer cannot reopen a
            // final order.
            // A cancel's mark is cleared only by an outcome that ends the hold: a late write
            // holding the order again (a stale sweep's) cannot turn the cancel into a send.
            let cancel_requested = if update.status == OrderStatus::Held
                && update.hold != Some(HoldKind::Cancelling)
            {
                NotSet
            } else {
                Set(update.hold == Some(HoldKind::Cancelling))
            };
            let updated = order::Entity::update_many()
                .set(order::ActiveModel {
                    status: Set(update.status.as_str().to_owned()),
                    hold_kind: Set(hold_column(update.hold)),
                    cancel_requested,
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
                .await?;
            if updated.rows_affected != 1 {
                return Err(StoreError::NotFound.into());
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
                .await?;
            }
            txn.commit_with(audit, now).await?;
            Ok(())
        })
        .await
    }

    async fn approve_held_order(
        &self,
        owner: UserId,
        id: OrderId,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
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
                .await?;
            if approved.rows_affected != 1 {
                return Ok(false);
            }
            txn.commit_with(audit, self.clock.now()).await?;
            Ok(true)
        })
        .await
    }

    async fn order(&self, owner: UserId, id: OrderId) -> Result<Option<Order>, StoreError> {
        converted(async {
            order::Entity::find()
                .filter(owned_by(owner))
                .filter(order::Column::Id.eq(id.to_string()))
                .one(&self.db)
                .await?
                .as_ref()
                .map(to_order)
                .transpose()
        })
        .await
    }

    async fn orders(&self, owner: UserId, limit: u64) -> Result<Vec<Order>, StoreError> {
        converted(async {
            let rows = order::Entity::find()
                .filter(owned_by(owner))
                .order_by_desc(order::Column::CreatedAtUs)
                .order_by_desc(order::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            all(&rows, to_order)
        })
        .await
    }

    async fn orders_in_status(
        &self,
        status: OrderStatus,
        hold: Option<HoldKind>,
        after: Option<(OffsetDateTime, OrderId)>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        converted(async {
            let mut query = order::Entity::find().filter(order::Column::Status.eq(status.as_str()));
            if let Some((created_at, id)) = after {
                let created_at = micros(created_at);
                query = query.filter(
                    Condition::any()
                        .add(order::Column::CreatedAtUs.gt(created_at))
                        .add(
                            Condition::all()
                                .add(order::Column::CreatedAtUs.eq(created_at))
                                .add(order::Column::Id.gt(id.to_string())),
                        ),
                );
            }
            if let Some(hold @ (HoldKind::Exchange | HoldKind::Cancelling)) = hold {
                query =
                    query.filter(order::Column::CancelRequested.eq(hold == HoldKind::Cancelling));
            }
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
                .await?;
            all(&rows, to_order)
        })
        .await
    }

    async fn resting_orders(
        &self,
        owner: Option<UserId>,
        side: Option<OrderSide>,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        converted(async {
            let mut query =
                order::Entity::find().filter(order::Column::Status.eq(OrderStatus::Open.as_str()));
            if let Some(owner) = owner {
                query = query.filter(owned_by(owner));
            }
            if let Some(side) = side {
                query = query.filter(order::Column::Side.eq(side.as_str()));
            }
            let rows = query
                .order_by_asc(order::Column::CreatedAtUs)
                .order_by_asc(order::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            all(&rows, to_order)
        })
        .await
    }

    async fn fills(
        &self,
        owner: UserId,
        exchange: Option<ExchangeName>,
    ) -> Result<Vec<Fill>, StoreError> {
        converted(async {
            let mut query = fill::Entity::find().filter(fill::Column::Owner.eq(owner.to_string()));
            if let Some(exchange) = exchange {
                // A join looks up each of the owner's fills' order by its key. (An `IN` over
                // the exchange's orders scanned every user's orders, on every order placed.)
                let fill_order = fill::Entity::belongs_to(order::Entity)
                    .from(fill::Column::OrderId)
                    .to(order::Column::Id)
                    .into();
                query = query
                    .join(JoinType::InnerJoin, fill_order)
                    .filter(order::Column::Exchange.eq(exchange.as_str()));
            }
            let rows = query.order_by_asc(fill::Column::Id).all(&self.db).await?;
            all(&rows, to_fill)
        })
        .await
    }

    async fn recent_fills(&self, owner: UserId, limit: u64) -> Result<Vec<Fill>, StoreError> {
        converted(async {
            let rows = fill::Entity::find()
                .filter(fill::Column::Owner.eq(owner.to_string()))
                .order_by_desc(fill::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            all(&rows, to_fill)
        })
        .await
    }

    /// One statement reads the stored book and the paper fills recorded after it. A read that
    /// replayed many stores the book it ended with, so the next one starts there.
    ///
    /// Sound because fills become visible in id order: they are written only by audited
    /// writes, which the chain lock serialises (across replicas too), so a reader that sees
    /// fill N has seen every fill before it, and a book through N covers exactly those.
    async fn paper_portfolio(&self, owner: UserId) -> Result<Portfolio, StoreError> {
        converted(async {
            let owner_id = owner.to_string();
            let rows = tuples(&self.db, &paper_book_and_later_fills(&owner_id)).await?;
            self.paper_account(&owner_id, rows).await
        })
        .await
    }

    async fn paper_claims(&self, owner: UserId) -> Result<Vec<Claim>, StoreError> {
        converted(async {
            let rows: Vec<ClaimRow> = tuples(&self.db, &paper_claims_query(owner)).await?;
            all(&rows, to_claim)
        })
        .await
    }
}

/// The owner's live paper orders (held, being sent, resting) as [`ClaimRow`]s.
pub(super) fn paper_claims_query(owner: UserId) -> SelectStatement {
    order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .column(order::Column::Symbol)
        .column(order::Column::Side)
        .column(order::Column::Quantity)
        .column(order::Column::FilledQuantity)
        .column(order::Column::Notional)
        .filter(owned_by(owner))
        .filter(
            order::Column::Status.is_in(
                [
                    OrderStatus::Held,
                    OrderStatus::Submitting,
                    OrderStatus::Open,
                ]
                .map(OrderStatus::as_str),
            ),
        )
        .filter(order::Column::Exchange.eq(ExchangeName::Paper.as_str()))
        .into_query()
}

/// The owner's orders since `since` (µs) that were not denied, as [`UsageRow`]s. Cancelled and
/// rejected orders are read too: what they filled before they ended counts
/// (`counted_notional`).
pub(super) fn usage_query(user: UserId, since: i64) -> SelectStatement {
    order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .column(order::Column::Status)
        .column(order::Column::Notional)
        .column(order::Column::FilledQuantity)
        .column(order::Column::AveragePrice)
        .column(order::Column::CreatedAtUs)
        .column(order::Column::CountedAtUs)
        .column(order::Column::ApprovalState)
        .filter(owned_by(user))
        // Either: a row written without its count time (it reads 0) still counts from its
        // creation, never not at all.
        .filter(
            Condition::any()
                .add(order::Column::CreatedAtUs.gte(since))
                .add(order::Column::CountedAtUs.gte(since)),
        )
        .filter(order::Column::Status.ne(OrderStatus::Denied.as_str()))
        .into_query()
}

/// Every figure from one read: the rows of [`usage_query`] since the earliest of the windows,
/// without the order `leaving_out` (one being judged again before it is sent). The velocity
/// window counts orders by when they were placed; the day and the unapproved total by when they
/// count from (a held order: when it was claimed for sending).
pub(super) fn usage_of(
    user: UserId,
    rows: &[UsageRow],
    windows: UsageWindows,
    leaving_out: Option<OrderId>,
) -> DbResult<Usage> {
    let leaving_out = leaving_out.map(|id| id.to_string());
    let day_start = micros(windows.day_start);
    let velocity_start = micros(windows.velocity_start);
    let unapproved_start = micros(windows.unapproved_start);
    let overflow = || StoreError::Backend(format!("the notional used today by {user} overflows"));
    let approval_of = |id: &str, raw: &str| {
        ApprovalState::parse(raw).ok_or_else(|| {
            Fields {
                table: "orders",
                id,
            }
            .bad("approval state")
        })
    };
    // The count starts again from the last approved order; one placed in the same microsecond
    // still counts (never fewer than were placed after it).
    // (From when it was placed: never later than its owner gave the approval.)
    let mut unapproved_from = unapproved_start;
    for (id, _, _, _, _, created_at_us, _, approval) in rows {
        if *created_at_us >= unapproved_start
            && approval_of(id, approval)? == ApprovalState::Approved
        {
            unapproved_from = Ord::max(unapproved_from, *created_at_us);
        }
    }
    let mut usage = Usage::default();
    for (id, status, notional, filled, average, created_at_us, counted_at_us, approval) in rows {
        if leaving_out.as_deref() == Some(id.as_str()) {
            continue;
        }
        if *created_at_us >= velocity_start {
            usage.orders_in_window = usage.orders_in_window.saturating_add(1);
        }
        let counted_from = Ord::max(*created_at_us, *counted_at_us);
        let today = counted_from >= day_start;
        let unapproved = counted_from >= unapproved_from
            && approval_of(id, approval)? == ApprovalState::NotNeeded;
        if !today && !unapproved {
            continue;
        }
        let notional = counted(id, status, notional, filled, average)?;
        if today {
            usage.used_today = usage
                .used_today
                .checked_add(notional)
                .ok_or_else(overflow)?;
        }
        if unapproved {
            usage.unapproved_notional = usage
                .unapproved_notional
                .checked_add(notional)
                .ok_or_else(overflow)?;
        }
    }
    Ok(usage)
}

/// The owner's last `limit` orders that traded, newest first, as [`HistoryRow`]s: filled,
/// resting, and those that ended after a partial fill (amounts are stored normalised, so no
/// fill is exactly "0"). Only the columns a sample needs: a full row carries the rule hits and
/// anomaly evidence as JSON, and this reads up to `limit` rows on every order.
pub(super) fn history_query(user: UserId, limit: u64) -> SelectStatement {
    order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .column(order::Column::CreatedAt)
        .column(order::Column::Symbol)
        .column(order::Column::Status)
        .column(order::Column::Notional)
        .column(order::Column::FilledQuantity)
        .column(order::Column::AveragePrice)
        .column(order::Column::Ip)
        .column(order::Column::Device)
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
        .into_query()
}

/// The samples of [`history_query`]'s rows, oldest first.
pub(super) fn history_of(rows: Vec<HistoryRow>) -> DbResult<Vec<TradeSample>> {
    let mut samples = rows
        .into_iter()
        .map(
            |(id, created_at, symbol, status, notional, filled, average, ip, device)| {
                let f = Fields {
                    table: "orders",
                    id: &id,
                };
                Ok(TradeSample {
                    at: f.time(&created_at, "created_at")?,
                    notional: counted(&id, &status, &notional, &filled, &average)?,
                    symbol,
                    ip,
                    device,
                })
            },
        )
        .collect::<DbResult<Vec<_>>>()?;
    samples.reverse();
    Ok(samples)
}

/// One row `(ip seen, device seen)`: both answers in one statement, each stopping at the first
/// match.
pub(super) fn familiarity_query(
    user: UserId,
    ip: Option<&str>,
    device: Option<&str>,
) -> SelectStatement {
    let familiar = |column: order::Column, value: &str| {
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(order::Entity)
                .and_where(order::Column::Owner.eq(user.to_string()))
                .and_where(order::Column::Status.ne(OrderStatus::Denied.as_str()))
                // Only orders that passed step-up (or did not need it) make it familiar.
                .and_where(order::Column::ApprovalState.ne(ApprovalState::Awaiting.as_str()))
                .and_where(column.eq(value))
                .to_owned(),
        )
    };
    let mut query = Query::select();
    match ip {
        Some(ip) => query.expr_as(familiar(order::Column::Ip, ip), "ip_seen"),
        None => query.expr_as(Expr::val(false), "ip_seen"),
    };
    match device {
        Some(device) => query.expr_as(familiar(order::Column::Device, device), "device_seen"),
        None => query.expr_as(Expr::val(false), "device_seen"),
    };
    query
}

/// A read that replays at least this many fills stores the book it ended with: one small write
/// per that many paper fills, and no read replays many more.
const PAPER_BOOK_REPLAY_LIMIT: usize = 64;
const STORED_BOOK: &str = "book";
const LATER_FILL: &str = "fill";

/// `(kind, id, symbol, side, quantity, price)` of [`paper_book_and_later_fills`].
pub(super) type PaperRow = (String, i64, String, String, String, String);

/// `(kind, id, symbol, side, quantity, price)` rows: the owner's stored book (its JSON in
/// `symbol`, its last fill in `id`), then their paper fills after that fill.
pub(super) fn paper_book_and_later_fills(owner_id: &str) -> SelectStatement {
    let stored_through = Query::select()
        .column(paper_book::Column::ThroughFillId)
        .from(paper_book::Entity)
        .and_where(paper_book::Column::Owner.eq(owner_id))
        .to_owned();
    let fill_col = |column: fill::Column| Expr::col((fill::Entity, column));
    let mut query = Query::select()
        .expr_as(Expr::val(STORED_BOOK), "kind")
        .expr_as(Expr::col(paper_book::Column::ThroughFillId), "id")
        .expr_as(Expr::col(paper_book::Column::Book), "symbol")
        .expr_as(Expr::val(""), "side")
        .expr_as(Expr::val(""), "quantity")
        .expr_as(Expr::val(""), "price")
        .from(paper_book::Entity)
        .and_where(paper_book::Column::Owner.eq(owner_id))
        .to_owned();
    query.union(
        UnionType::All,
        Query::select()
            .expr_as(Expr::val(LATER_FILL), "kind")
            .expr_as(fill_col(fill::Column::Id), "id")
            .expr_as(fill_col(fill::Column::Symbol), "symbol")
            .expr_as(fill_col(fill::Column::Side), "side")
            .expr_as(fill_col(fill::Column::Quantity), "quantity")
            .expr_as(fill_col(fill::Column::Price), "price")
            .from(fill::Entity)
            .inner_join(
                order::Entity,
                Expr::col((order::Entity, order::Column::Id))
                    .equals((fill::Entity, fill::Column::OrderId)),
            )
            .and_where(fill_col(fill::Column::Owner).eq(owner_id))
            .and_where(
                Expr::col((order::Entity, order::Column::Exchange))
                    .eq(ExchangeName::Paper.as_str()),
            )
            .and_where(
                fill_col(fill::Column::Id)
                    .gt(Func::coalesce([Expr::from(stored_through), Expr::val(0)])),
            )
            .to_owned(),
    );
    query
}

impl SqlTradingStore {
    /// The paper account from [`paper_book_and_later_fills`]'s rows: the stored book with the
    /// later fills applied. A read that replayed many stores the book it ended with.
    pub(super) async fn paper_account(
        &self,
        owner_id: &str,
        rows: Vec<PaperRow>,
    ) -> DbResult<Portfolio> {
        let mut stored: Option<(i64, PaperBook)> = None;
        let mut later = Vec::with_capacity(rows.len());
        for (kind, id, symbol, side, quantity, price) in rows {
            if kind == STORED_BOOK {
                let f = Fields {
                    table: "paper_books",
                    id: owner_id,
                };
                stored = Some((id, f.json(&symbol, "book")?));
            } else {
                let fill_id = id.to_string();
                let f = Fields {
                    table: "fills",
                    id: &fill_id,
                };
                let side = f.side(&side)?;
                let quantity = f.decimal(&quantity, "quantity")?;
                let price = f.decimal(&price, "price")?;
                later.push((id, symbol, side, quantity, price));
            }
        }
        later.sort_by_key(|fill| fill.0);
        let (stored_through, mut book) = stored.unwrap_or_default();
        for (_, symbol, side, quantity, price) in &later {
            book.apply(symbol, *side, *quantity, *price);
        }
        if let Some((through, ..)) = later.last()
            && later.len() >= PAPER_BOOK_REPLAY_LIMIT
        {
            // Best effort: without it the next read only replays more.
            if let Err(err) = self.store_paper_book(owner_id, *through, &book).await {
                tracing::warn!(
                    owner = %owner_id,
                    from = stored_through,
                    through,
                    error = %err,
                    "could not store the paper book"
                );
            }
        }
        Ok(book.portfolio())
    }

    /// Stores `book` as the replay through fill `through`, unless a book through a later fill
    /// is already stored. It joins the audit chain's write batch, as every frequent write does
    /// (see `commit_unaudited`).
    async fn store_paper_book(
        &self,
        owner_id: &str,
        through: i64,
        book: &PaperBook,
    ) -> DbResult<()> {
        let book = json(book, "paper book")?;
        let txn = self.chain.begin().await?;
        paper_book::Entity::insert(paper_book::ActiveModel {
            owner: Set(owner_id.to_owned()),
            through_fill_id: Set(through),
            book: Set(book),
            updated_at: Set(canonical_time(self.clock.now())),
        })
        .on_conflict(
            OnConflict::column(paper_book::Column::Owner)
                .update_columns([
                    paper_book::Column::ThroughFillId,
                    paper_book::Column::Book,
                    paper_book::Column::UpdatedAt,
                ])
                .action_and_where(
                    Expr::col((paper_book::Entity, paper_book::Column::ThroughFillId)).lt(
                        Expr::col((Alias::new("excluded"), paper_book::Column::ThroughFillId)),
                    ),
                )
                .to_owned(),
        )
        .exec_without_returning(txn.conn())
        .await?;
        txn.commit_unaudited().await
    }
}
